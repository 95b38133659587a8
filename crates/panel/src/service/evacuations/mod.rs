//! Evacuations: the plan (where every site of a node, or of a provider's nodes, would go, how
//! long moving them would take at the cost learned from past moves, and whether a deadline
//! holds), running it as a durable job one step at a time (`job.rs`; `background/jobs.rs`
//! runs the steps of the jobs this process holds), and how ready the co-op is to leave each
//! provider (`readiness.rs`).

mod job;
mod readiness;
mod recovery;

use std::collections::{BTreeMap, BTreeSet};

use alveole_model::evacuation::{
    self, CostBook, Destination, EvacuationPlan, ExcludedNode, MoveSample, SiteToMove,
};
use alveole_model::{MovePhase, Node, NodeId, ProviderId, Site, SiteId, SiteMove};
use alveole_store::{NodeFilter, NodeStatus, NodeUsage, ProviderFilter, SiteFilter, Store};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub use readiness::{ExitReadiness, ProviderReadiness};

use super::Service;
use super::agents::reachable;
use crate::api::every;
use crate::error::{ApiError, ApiResult};

/// What to empty, by when, how many moves at once.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    pub node_id: Option<NodeId>,
    pub provider_id: Option<ProviderId>,
    /// RFC 3339, e.g. 2026-11-29T20:00:00Z.
    pub deadline: Option<DateTime<Utc>>,
    /// Moves at once (1 to 32; 4 by default).
    #[schemars(range(min = 1, max = 32))]
    pub parallelism: Option<u32>,
}

/// Why a node whose agent reported `status` cannot receive a site now, if it cannot: its agent
/// must have reported lately and said where other agents reach it.
pub fn cannot_receive(
    status: Option<&NodeStatus>,
    now: DateTime<Utc>,
    unreachable_after: std::time::Duration,
) -> Option<String> {
    let Some(status) = status else {
        return Some("its agent has never reported".into());
    };
    if !reachable(Some(status.reported_at), now, unreachable_after) {
        return Some(format!(
            "its agent has not reported since {}",
            status.reported_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    let endpoints = status.report.endpoints.as_ref();
    if endpoints.is_none_or(|e| e.peer.is_none() || e.ingress.is_none()) {
        return Some(
            "its agent has not said where other agents reach it: start it with --peer-listen \
             (on by default) and, when it listens on 0.0.0.0, --peer-advertise and \
             --ingress-advertise (the join command gives them)"
                .into(),
        );
    }
    None
}

/// The fleet as an evacuation sees it, read once.
pub(crate) struct Fleet {
    pub nodes: Vec<Node>,
    pub provider_names: BTreeMap<ProviderId, String>,
    pub statuses: BTreeMap<NodeId, NodeStatus>,
    pub usage: Vec<NodeUsage>,
    /// Newest first.
    pub moves: Vec<SiteMove>,
    /// Bytes each site's volume held at its node's last report.
    pub volumes: BTreeMap<SiteId, u64>,
    /// Nodes some unfinished evacuation is emptying.
    pub emptying: BTreeSet<NodeId>,
    /// Where each site's backups are: it never goes there.
    pub backup_places: BTreeMap<SiteId, Vec<alveole_model::backup::TargetPlace>>,
    /// Nodes declared lost: nothing goes there again.
    pub fenced: BTreeSet<NodeId>,
}

impl Fleet {
    pub async fn read(store: &dyn Store) -> ApiResult<Fleet> {
        let nodes = every(|page| {
            Box::pin(async move { store.nodes().list(&NodeFilter::default(), &page).await })
        })
        .await?;
        let provider_names = every(|page| {
            Box::pin(async move {
                store
                    .providers()
                    .list(&ProviderFilter::default(), &page)
                    .await
            })
        })
        .await?
        .into_iter()
        .map(|p| (p.id, p.name.to_string()))
        .collect();
        let statuses: BTreeMap<NodeId, NodeStatus> = store
            .node_statuses()
            .await?
            .into_iter()
            .map(|s| (s.node_id, s))
            .collect();
        let volumes = statuses
            .values()
            .flat_map(|s| &s.report.sites)
            .filter_map(|r| Some((r.site_id, r.volume_bytes?)))
            .collect();
        let mut backup_places: BTreeMap<SiteId, Vec<_>> = BTreeMap::new();
        for (site, place) in store.sites_backup_places().await? {
            backup_places.entry(site).or_default().push(place);
        }
        let mut fleet = Fleet {
            backup_places,
            provider_names,
            statuses,
            usage: store.node_usage().await?,
            moves: store.site_moves(None).await?,
            volumes,
            emptying: BTreeSet::new(),
            fenced: store
                .fenced_nodes()
                .await?
                .into_iter()
                .map(|(node, _)| node)
                .collect(),
            nodes,
        };
        for running in store.evacuations().await?.iter().filter(|e| !e.ended()) {
            let scope = fleet.scope(running.spec.node_id, running.spec.provider_id);
            fleet.emptying.extend(scope);
        }
        Ok(fleet)
    }

    pub fn provider_of(&self, node: NodeId) -> Option<ProviderId> {
        self.nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.provider_id)
    }

    pub fn node_name(&self, node: NodeId) -> String {
        self.nodes
            .iter()
            .find(|n| n.id == node)
            .map_or_else(|| node.to_string(), |n| n.name.to_string())
    }

    /// The nodes an evacuation of `node` or of `provider` empties.
    pub fn scope(&self, node: Option<NodeId>, provider: Option<ProviderId>) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| Some(n.id) == node || Some(n.provider_id) == provider)
            .map(|n| n.id)
            .collect()
    }

    /// The nodes that may receive sites from `leaving`, with their loads, and those left out
    /// with why (being emptied, silent, not listening for other agents). Room is the
    /// planner's to check.
    pub fn destinations(
        &self,
        leaving: &[NodeId],
        now: DateTime<Utc>,
        unreachable_after: std::time::Duration,
    ) -> (Vec<Destination>, Vec<ExcludedNode>) {
        let mut destinations = Vec::new();
        let mut excluded = Vec::new();
        // A node listening on loopback only is reachable from its own machine: not from
        // nodes known to be elsewhere.
        let peer_of = |node: NodeId| {
            self.statuses
                .get(&node)
                .and_then(|s| s.report.endpoints.as_ref())
                .and_then(|e| e.peer)
        };
        let from_elsewhere = leaving
            .iter()
            .any(|n| peer_of(*n).is_some_and(|a| !a.ip().is_loopback()));
        for usage in &self.usage {
            let node = usage.load.node_id;
            if leaving.contains(&node) {
                continue;
            }
            let Some(provider) = self.provider_of(node) else {
                continue;
            };
            let loopback = peer_of(node).filter(|a| from_elsewhere && a.ip().is_loopback());
            let reason = if self.fenced.contains(&node) {
                Some("it is fenced: it was declared lost".to_owned())
            } else if self.emptying.contains(&node) {
                Some("it is being emptied by another evacuation".to_owned())
            } else if let Some(address) = loopback {
                Some(format!(
                    "its agent listens for other agents on {address} only, which nodes on \
                     other machines cannot reach: start it with --peer-listen on an address \
                     they reach"
                ))
            } else {
                cannot_receive(self.statuses.get(&node), now, unreachable_after)
            };
            match reason {
                Some(reason) => excluded.push(ExcludedNode {
                    node_id: node,
                    name: usage.name.to_string(),
                    reason,
                }),
                None => destinations.push(Destination {
                    load: usage.load,
                    name: usage.name.to_string(),
                    provider,
                }),
            }
        }
        (destinations, excluded)
    }

    /// What moves cost, learned from the moves that switched (start to switch), per pair of
    /// providers where there is history, plus the wait for the job's next step.
    pub fn costs(&self, job_step: std::time::Duration) -> CostBook {
        let samples: Vec<MoveSample> = self
            .moves
            .iter()
            .filter(|m| matches!(m.phase, MovePhase::Forwarding | MovePhase::Done))
            .filter_map(|m| {
                let took = (m.switched_at? - m.started_at).num_milliseconds();
                Some(MoveSample {
                    from_provider: self.provider_of(m.from_node)?,
                    to_provider: self.provider_of(m.to_node)?,
                    bytes: m.progress.bytes_sent,
                    seconds: took.max(0) as f64 / 1000.0,
                })
            })
            .collect();
        CostBook::learn(&samples, |provider| {
            self.provider_names
                .get(&provider)
                .cloned()
                .unwrap_or_else(|| provider.to_string())
        })
        .with_job_step(job_step.as_secs_f64())
    }

    /// A site to move, its volume as last measured (else its quota).
    pub fn site_to_move(&self, site: &Site) -> Option<SiteToMove> {
        let node = site.node_id?;
        Some(SiteToMove {
            site_id: site.id,
            name: site.primary_domain.to_unicode(),
            from_node: node,
            from_provider: self.provider_of(node)?,
            reservation: site.reservation(),
            volume_bytes: self
                .volumes
                .get(&site.id)
                .copied()
                .unwrap_or(site.volume.quota_bytes),
            backups_at: self
                .backup_places
                .get(&site.id)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// Every site on `nodes`.
pub(crate) async fn sites_on(store: &dyn Store, nodes: &[NodeId]) -> ApiResult<Vec<Site>> {
    let mut sites = Vec::new();
    for node in nodes {
        let filter = SiteFilter {
            node_id: Some(*node),
            ..Default::default()
        };
        let filter = &filter;
        sites.extend(
            every(|page| Box::pin(async move { store.sites().list(filter, &page).await })).await?,
        );
    }
    Ok(sites)
}

impl Service {
    /// Where every site would go, how long it would take, and whether the deadline holds.
    pub async fn plan_evacuation(&self, query: &PlanQuery) -> ApiResult<EvacuationPlan> {
        if query
            .parallelism
            .is_some_and(|n| !(1..=evacuation::MAX_PARALLELISM).contains(&n))
        {
            return Err(ApiError::field(
                "parallelism",
                "parallelism.range",
                format!("from 1 to {} moves at once", evacuation::MAX_PARALLELISM),
            ));
        }
        let store = self.store();
        match (query.node_id, query.provider_id) {
            (Some(node), None) => {
                store.nodes().get(node).await?;
            }
            (None, Some(provider)) => {
                store.providers().get(provider).await?;
            }
            _ => {
                return Err(ApiError::field(
                    "node_id",
                    "evacuation.scope",
                    "give either node_id or provider_id",
                ));
            }
        }
        let fleet = Fleet::read(store).await?;
        self.plan_with(&fleet, query, query.deadline).await
    }

    /// The plan for `query`'s scope on `fleet` as read.
    pub(crate) async fn plan_with(
        &self,
        fleet: &Fleet,
        query: &PlanQuery,
        deadline: Option<DateTime<Utc>>,
    ) -> ApiResult<EvacuationPlan> {
        let leaving = fleet.scope(query.node_id, query.provider_id);
        let sites = sites_on(self.store(), &leaving)
            .await?
            .iter()
            .filter_map(|site| fleet.site_to_move(site))
            .collect();
        let now = self.now();
        let (destinations, excluded) =
            fleet.destinations(&leaving, now, self.config().node_unreachable_after);
        Ok(evacuation::plan(
            sites,
            destinations,
            excluded,
            &fleet.costs(self.config().background.jobs_every),
            query.parallelism.unwrap_or(4),
            now,
            deadline,
        ))
    }
}
