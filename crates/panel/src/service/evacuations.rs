//! Evacuations: the plan (where every site of a node, or of a provider's nodes, would go, how
//! long moving them would take at the throughput measured between nodes, and whether a
//! deadline holds), and running it as a durable job, one step at a time
//! (`background/jobs.rs` runs the steps of the jobs this process holds).

use std::collections::BTreeMap;

use alveole_model::evacuation::{
    self, Destination, Evacuation, EvacuationPlan, EvacuationSpec, ItemState, JobState, SiteToMove,
    Throughput,
};
use alveole_model::{JobId, MovePhase, NodeId, ProviderId, SiteMove};
use alveole_store::{AuditContext, PageRequest, SiteFilter};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Service;
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
    pub parallelism: Option<u32>,
}

/// The throughput assumed when no move was measured yet: 50 MiB/s.
const ASSUMED_BYTES_PER_SECOND: u64 = 50 << 20;
/// How many recent moves the measured throughput is the median of.
const MEASURED_MOVES: usize = 20;

/// The median throughput (bytes sent over the time from start to switch) of the latest moves
/// away from the nodes being emptied, else of the co-op's latest moves; an assumption when
/// there were none.
fn measured_throughput(moves: &[SiteMove], leaving: &[NodeId]) -> Throughput {
    let rate_of = |m: &SiteMove| {
        let took = (m.switched_at? - m.started_at).num_milliseconds();
        let switched = matches!(m.phase, MovePhase::Forwarding | MovePhase::Done);
        (switched && took > 0 && m.progress.bytes_sent > 0)
            .then(|| m.progress.bytes_sent.saturating_mul(1000) / took as u64)
    };
    let median = |mut rates: Vec<u64>| {
        rates.sort_unstable();
        rates.get(rates.len() / 2).copied()
    };
    let from_here: Vec<u64> = moves
        .iter()
        .filter(|m| leaving.contains(&m.from_node))
        .filter_map(rate_of)
        .take(MEASURED_MOVES)
        .collect();
    let anywhere: Vec<u64> = moves
        .iter()
        .filter_map(rate_of)
        .take(MEASURED_MOVES)
        .collect();
    match median(from_here).or_else(|| median(anywhere)) {
        Some(rate) => Throughput {
            bytes_per_second: rate,
            measured: true,
        },
        None => Throughput {
            bytes_per_second: ASSUMED_BYTES_PER_SECOND,
            measured: false,
        },
    }
}

impl Service {
    /// Where every site would go, how long it would take, and whether the deadline holds.
    pub async fn plan_evacuation(&self, query: &PlanQuery) -> ApiResult<EvacuationPlan> {
        let store = self.store();
        let all = PageRequest {
            after: None,
            limit: 500,
        };
        let nodes = store.nodes().list(&Default::default(), &all).await?.items;
        let leaving: Vec<NodeId> = match (query.node_id, query.provider_id) {
            (Some(node), None) => {
                store.nodes().get(node).await?;
                vec![node]
            }
            (None, Some(provider)) => {
                store.providers().get(provider).await?;
                nodes
                    .iter()
                    .filter(|n| n.provider_id == provider)
                    .map(|n| n.id)
                    .collect()
            }
            _ => {
                return Err(ApiError::field(
                    "node_id",
                    "evacuation.scope",
                    "give either node_id or provider_id",
                ));
            }
        };
        let provider_of: BTreeMap<NodeId, ProviderId> =
            nodes.iter().map(|n| (n.id, n.provider_id)).collect();
        let measured: BTreeMap<_, _> = store
            .node_statuses()
            .await?
            .into_iter()
            .flat_map(|s| s.report.sites)
            .filter_map(|r| Some((r.site_id, r.volume_bytes?)))
            .collect();
        let mut sites = Vec::new();
        for node in &leaving {
            let filter = SiteFilter {
                node_id: Some(*node),
                ..Default::default()
            };
            for site in store.sites().list(&filter, &all).await?.items {
                sites.push(SiteToMove {
                    site_id: site.id,
                    name: site.primary_domain.to_unicode(),
                    from_node: *node,
                    from_provider: provider_of
                        .get(node)
                        .copied()
                        .unwrap_or(ProviderId(uuid::Uuid::nil())),
                    reservation: site.reservation(),
                    volume_bytes: measured
                        .get(&site.id)
                        .copied()
                        .unwrap_or(site.volume.quota_bytes),
                });
            }
        }
        let destinations: Vec<Destination> = store
            .node_usage()
            .await?
            .into_iter()
            .filter(|u| !leaving.contains(&u.load.node_id))
            .filter_map(|u| {
                Some(Destination {
                    provider: *provider_of.get(&u.load.node_id)?,
                    name: u.name.to_string(),
                    load: u.load,
                })
            })
            .collect();
        let throughput = measured_throughput(&store.site_moves(None).await?, &leaving);
        Ok(evacuation::plan(
            sites,
            destinations,
            throughput,
            query.parallelism.unwrap_or(4),
            self.now(),
            query.deadline,
        ))
    }

    /// Plans the evacuation, then records it as a job: moves start in the plan's order,
    /// `parallelism` at a time, in whichever panel process holds the job's lease.
    pub async fn start_evacuation(
        &self,
        ctx: &AuditContext,
        request: &PlanQuery,
    ) -> ApiResult<Evacuation> {
        let plan = self.plan_evacuation(request).await?;
        let spec = EvacuationSpec {
            node_id: request.node_id,
            provider_id: request.provider_id,
            deadline: request.deadline,
            parallelism: plan.parallelism,
            predicted_seconds: plan.estimated_seconds,
            statement: plan.statement.clone(),
            unplaced: plan.unplaced.clone(),
        };
        let items: Vec<_> = plan
            .placements
            .iter()
            .map(|p| (p.site_id, p.to_node))
            .collect();
        let evacuation = self.store().create_evacuation(ctx, &spec, &items).await?;
        self.poke(crate::background::Task::Jobs);
        Ok(evacuation)
    }

    /// Pauses (no new move starts; those under way finish), resumes, or cancels (the sites
    /// not started stay).
    pub async fn set_evacuation_state(
        &self,
        ctx: &AuditContext,
        id: JobId,
        to: JobState,
    ) -> ApiResult<Evacuation> {
        let evacuation = self.store().set_evacuation_state(ctx, id, to).await?;
        self.poke(crate::background::Task::Jobs);
        Ok(evacuation)
    }

    /// One step of an evacuation: settle the moves that ended, start moves up to the
    /// parallelism (in plan order), finish when nothing is left. The evacuation is read once;
    /// the store refuses what another writer made stale (an item no longer pending, an
    /// evacuation with sites left).
    pub async fn advance_evacuation(&self, id: JobId) -> ApiResult<()> {
        let store = self.store();
        let ctx = AuditContext::new(format!("job:{id}"), "-");
        let mut evacuation = store.get_evacuation(id).await?;
        for item in evacuation
            .items
            .iter_mut()
            .filter(|i| i.state == ItemState::Moving)
        {
            let Some(move_id) = item.move_id else {
                continue;
            };
            let movement = store.get_site_move(move_id).await?;
            let (settled, error) = match movement.phase {
                MovePhase::Forwarding | MovePhase::Done => (ItemState::Done, None),
                MovePhase::Failed | MovePhase::Cancelled => (
                    ItemState::Failed,
                    Some(
                        movement
                            .error
                            .unwrap_or_else(|| "the move did not happen".into()),
                    ),
                ),
                MovePhase::Copying => continue,
            };
            store
                .settle_evacuation_item(id, item.site_id, settled, error.as_deref())
                .await?;
            item.state = settled;
        }
        if evacuation.state == JobState::Running {
            self.start_evacuation_moves(&ctx, &mut evacuation).await?;
        }
        let open = evacuation
            .items
            .iter()
            .any(|i| matches!(i.state, ItemState::Pending | ItemState::Moving));
        if !open && matches!(evacuation.state, JobState::Running | JobState::Cancelled) {
            // Finished: done, or still cancelled (the moves under way have ended).
            let done = store.finish_evacuation(&ctx, id).await?;
            tracing::info!(job = %id, items = ?done.counts(), "evacuation finished");
            self.tell_nodes();
        }
        Ok(())
    }

    async fn start_evacuation_moves(
        &self,
        ctx: &AuditContext,
        evacuation: &mut Evacuation,
    ) -> ApiResult<()> {
        let store = self.store();
        let mut moving = evacuation
            .items
            .iter()
            .filter(|i| i.state == ItemState::Moving)
            .count();
        let parallelism = evacuation.spec.parallelism.max(1) as usize;
        let id = evacuation.id;
        for item in evacuation
            .items
            .iter_mut()
            .filter(|i| i.state == ItemState::Pending)
        {
            if moving >= parallelism {
                break;
            }
            let started = match self.check_move_target(item.to_node).await {
                Ok(()) => store
                    .start_evacuation_item(ctx, id, item.site_id, self.config().moves)
                    .await
                    .map_err(ApiError::from),
                Err(error) => Err(error),
            };
            match started {
                Ok(Some(_)) => {
                    moving += 1;
                    item.state = ItemState::Moving;
                    self.tell_nodes();
                }
                // No longer pending: another process started it, or the evacuation was
                // cancelled meanwhile. Counted as open until the next step reads it again.
                Ok(None) => item.state = ItemState::Moving,
                // This site cannot move now; the others go on.
                Err(error) => {
                    // The problem's detail names the field and why, as the API would answer.
                    let reason = error.problem().detail;
                    tracing::warn!(job = %id, site = %item.site_id, %reason, "a site of an evacuation cannot move");
                    store
                        .settle_evacuation_item(id, item.site_id, ItemState::Failed, Some(&reason))
                        .await?;
                    item.state = ItemState::Failed;
                }
            }
        }
        Ok(())
    }
}
