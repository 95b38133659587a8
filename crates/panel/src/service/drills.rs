//! Restore drills: when each site's is due, where it runs (a node of another provider than
//! the site's, with room for a copy), and what drills and the vaults' checks prove: each
//! site's data-loss window (RPO) and restore time (RTO), recorded, plotted, and alerted on.

use alveole_model::backup::{CopyCheck, Drill, DrillOrder, DrillState, WireSecret, proven_at};
use alveole_model::capacity::{NodeLoad, choose_node};
use alveole_model::series::SeriesName;
use alveole_model::{DrillId, MemberId, NodeId, Site, SiteId};
use alveole_store::{AlertKind, AuditContext, DrillRequest, NodeBackups, StoreError};
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::Service;
use super::evacuations::Fleet;
use crate::error::{ApiError, ApiResult};

/// Passed drills count for the window this long.
const DRILLS_KEPT_DAYS: i64 = 100;
/// A drill that failed is tried again after a day (or at its period, when shorter).
const RETRY_FAILED_AFTER: Duration = Duration::days(1);
/// Drills a node is given at once by the schedule (it runs them one at a time).
const QUEUED_PER_NODE: usize = 2;
/// A drill still running after this long has failed (a 1 TB site restores in about an hour).
const LONGEST_DRILL: Duration = Duration::hours(6);

/// What a site's drills and checks prove.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SiteProof {
    pub site_id: SiteId,
    /// Its data-loss window (RPO), in seconds: the age of its newest snapshot that passed a
    /// drill or a check; none before any did.
    pub window_seconds: Option<i64>,
    /// When that snapshot was taken.
    pub proven_at: Option<DateTime<Utc>>,
    /// Its restore time (RTO), in seconds: how long its last drill that passed took, from
    /// the start of the restore to the first good answer.
    pub restore_seconds: Option<f64>,
}

/// The series of a site's restore time (seconds).
pub fn restore_series(site: SiteId) -> Option<SeriesName> {
    SeriesName::parse(&format!("site.{site}.restore_seconds")).ok()
}

fn audit(request: &str) -> AuditContext {
    AuditContext::new("system:drills", request)
}

impl Service {
    /// Every site, page after page.
    pub(crate) async fn all_sites(&self) -> ApiResult<Vec<Site>> {
        let store = self.store();
        let filter = &alveole_store::SiteFilter::default();
        Ok(crate::api::every(|page| {
            Box::pin(async move { store.sites().list(filter, &page).await })
        })
        .await?)
    }

    /// Drills the site's copy now (the one drilled least lately).
    pub async fn start_drill(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        site: SiteId,
    ) -> ApiResult<Drill> {
        let site = self.get::<Site>(limited_to, site).await?;
        if !site.backup.is_on() {
            return Err(ApiError::field(
                "backup.targets",
                "backup.off",
                "the site has no backup target: there is nothing to drill",
            ));
        }
        let recent = self.store().drills_of(site.id, 20).await?;
        let fleet = Fleet::read(self.store()).await?;
        let request = self.drill_request(&fleet, &site, &recent, &Default::default())?;
        let drill = self.store().create_drill(ctx, request).await?;
        self.tell_nodes();
        Ok(drill)
    }

    /// The site's latest drills, newest first.
    pub async fn site_drills(
        &self,
        limited_to: Option<MemberId>,
        site: SiteId,
    ) -> ApiResult<Vec<Drill>> {
        self.get::<Site>(limited_to, site).await?;
        Ok(self.store().drills_of(site, 20).await?)
    }

    /// A drill, for whoever reaches its site.
    pub async fn get_drill(&self, limited_to: Option<MemberId>, id: DrillId) -> ApiResult<Drill> {
        let drill = self.store().drill(id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => ApiError::NotFound("drill"),
            other => other.into(),
        })?;
        self.get::<Site>(limited_to, drill.site_id)
            .await
            .map_err(|_| ApiError::NotFound("drill"))?;
        Ok(drill)
    }

    /// Where the next drill of `site` runs, and of which copy: the target drilled least
    /// lately, on the node of another provider where a copy fits with the most headroom,
    /// among those not `busy` (none, with why, when no node can).
    fn drill_request(
        &self,
        fleet: &Fleet,
        site: &Site,
        recent: &[Drill],
        busy: &std::collections::BTreeSet<NodeId>,
    ) -> ApiResult<DrillRequest> {
        let target = site
            .backup
            .targets
            .iter()
            .min_by_key(|target| {
                recent
                    .iter()
                    .filter(|d| d.target_id == **target)
                    .map(|d| d.requested_at)
                    .max()
            })
            .copied()
            .ok_or_else(|| {
                ApiError::field("backup.targets", "backup.off", "the site has no target")
            })?;
        let leaving: Vec<NodeId> = site.node_id.into_iter().collect();
        let (destinations, _) =
            fleet.destinations(&leaving, self.now(), self.config().node_unreachable_after);
        let provider = site.node_id.and_then(|n| fleet.provider_of(n));
        let loads: Vec<NodeLoad> = destinations
            .iter()
            .filter(|d| Some(d.provider) != provider && !busy.contains(&d.load.node_id))
            .map(|d| d.load)
            .collect();
        let node_id = choose_node(&loads, site.reservation());
        let refused = match (node_id, loads.is_empty()) {
            (Some(_), _) => None,
            (None, true) => Some(
                "no node of another provider than the site's can run a drill now: each must \
                 have reported lately and listen for other agents"
                    .to_owned(),
            ),
            (None, false) => {
                Some("no node of another provider has room for a copy of the site".to_owned())
            }
        };
        Ok(DrillRequest {
            site_id: site.id,
            target_id: target,
            node_id,
            refused,
        })
    }

    /// Ends as failed the drills whose node went silent, or that ran too long: their sites'
    /// next drills can then be scheduled. How many.
    pub async fn expire_drills(&self) -> ApiResult<usize> {
        let now = self.now();
        let after = self.config().node_unreachable_after;
        let silent_for = Duration::from_std(after).unwrap_or(Duration::MAX);
        let heard: std::collections::BTreeMap<NodeId, DateTime<Utc>> = self
            .store()
            .node_statuses()
            .await?
            .into_iter()
            .map(|s| (s.node_id, s.reported_at))
            .collect();
        let mut expired = 0;
        for drill in self
            .store()
            .drills_since(now - Duration::days(DRILLS_KEPT_DAYS))
            .await?
            .into_iter()
            .filter(|d| d.state == DrillState::Running)
        {
            let last = drill.node_id.and_then(|n| heard.get(&n).copied());
            let reason = if now - drill.requested_at > LONGEST_DRILL {
                Some(format!(
                    "it was still running after {} h",
                    LONGEST_DRILL.num_hours()
                ))
            } else if now - drill.requested_at > silent_for
                && !super::agents::reachable(last, now, after)
            {
                Some(match last {
                    Some(at) => format!(
                        "its node stopped reporting (last at {})",
                        at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    None => "its node never reported".to_owned(),
                })
            } else {
                None
            };
            if let Some(reason) = reason
                && self
                    .store()
                    .fail_running_drill(&audit("drill-expiry"), drill.id, &reason)
                    .await?
                    .is_some()
            {
                tracing::warn!(drill = %drill.id, site = %drill.site_id, %reason, "a drill did not end");
                expired += 1;
            }
        }
        if expired > 0 {
            self.tell_nodes();
        }
        Ok(expired)
    }

    /// Starts the drills that are due: each site with backups and a drill period whose
    /// latest drill is that old (a failed one after a day), once it has a snapshot. How
    /// many started.
    pub async fn start_due_drills(&self) -> ApiResult<usize> {
        let now = self.now();
        let drills = self
            .store()
            .drills_since(now - Duration::days(DRILLS_KEPT_DAYS))
            .await?;
        let with_snapshots: std::collections::BTreeSet<SiteId> = self
            .store()
            .latest_snapshots(None)
            .await?
            .into_iter()
            .map(|run| run.site_id)
            .collect();
        // Each node runs drills one at a time: the scheduler gives a node a new drill only
        // once its queue is short, so that drills due together spread over the nodes and
        // over time instead of waiting (and timing out) in one node's queue.
        let mut queued: std::collections::BTreeMap<NodeId, usize> =
            std::collections::BTreeMap::new();
        for drill in drills.iter().filter(|d| d.state == DrillState::Running) {
            if let Some(node) = drill.node_id {
                *queued.entry(node).or_default() += 1;
            }
        }
        let busy = |queued: &std::collections::BTreeMap<NodeId, usize>| {
            queued
                .iter()
                .filter(|(_, n)| **n >= QUEUED_PER_NODE)
                .map(|(node, _)| *node)
                .collect::<std::collections::BTreeSet<_>>()
        };
        // Read once a run, when a drill is due (the nodes' loads do not change meanwhile but
        // for the drills this run places, which the queue counts).
        let mut fleet: Option<Fleet> = None;
        let mut started = 0;
        for site in self.all_sites().await? {
            let every = site.backup.drill.every_days;
            if !site.backup.is_on() || every == 0 || !with_snapshots.contains(&site.id) {
                continue;
            }
            let mine: Vec<Drill> = drills
                .iter()
                .filter(|d| d.site_id == site.id)
                .cloned()
                .collect();
            let latest = mine.iter().max_by_key(|d| d.requested_at);
            let period = Duration::days(i64::from(every));
            let due = match latest {
                None => true,
                Some(d) if d.state == DrillState::Running => false,
                Some(d) if d.state == DrillState::Failed => {
                    now - d.requested_at >= period.min(RETRY_FAILED_AFTER)
                }
                Some(d) => now - d.requested_at >= period,
            };
            if !due {
                continue;
            }
            let busy_now = busy(&queued);
            let fleet = match &fleet {
                Some(fleet) => fleet,
                None => fleet.insert(Fleet::read(self.store()).await?),
            };
            let request = self.drill_request(fleet, &site, &mine, &busy_now)?;
            // Only busy nodes could take it: it waits for a later minute, not failed.
            if request.node_id.is_none()
                && !busy_now.is_empty()
                && self
                    .drill_request(fleet, &site, &mine, &Default::default())?
                    .node_id
                    .is_some()
            {
                continue;
            }
            match self
                .store()
                .create_drill(&audit("scheduled-drill"), request)
                .await
            {
                Ok(drill) => {
                    started += 1;
                    if let Some(node) = drill.node_id {
                        *queued.entry(node).or_default() += 1;
                    }
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        if started > 0 {
            self.tell_nodes();
        }
        Ok(started)
    }

    /// What drills and checks prove of each site with backups (one site's only, when
    /// given).
    pub async fn site_proofs(&self, only: Option<SiteId>) -> ApiResult<Vec<SiteProof>> {
        let sites: Vec<Site> = match only {
            Some(site) => vec![self.get::<Site>(None, site).await?],
            None => self.all_sites().await?,
        };
        self.proofs_of(&sites, only).await
    }

    /// What drills and checks prove of `sites` (the checks read for `only`, when given).
    async fn proofs_of(&self, sites: &[Site], only: Option<SiteId>) -> ApiResult<Vec<SiteProof>> {
        let now = self.now();
        let checks = self.store().copy_checks(only).await?;
        let drills = self
            .store()
            .drills_since(now - Duration::days(DRILLS_KEPT_DAYS))
            .await?;
        Ok(sites
            .iter()
            .filter(|site| site.backup.is_on())
            .map(|site| proof_of(site, &checks, &drills, now))
            .collect())
    }

    /// Records each site's window into its series and raises or clears its window alert
    /// (written only when it changes: its reason names the proven snapshot's time, not the
    /// window's length, so that it changes with the proof, not every minute): how many sites.
    pub async fn watch_windows(&self) -> ApiResult<usize> {
        let now = self.now();
        let sites = self.all_sites().await?;
        let proofs = self.proofs_of(&sites, None).await?;
        let oldest_runs = self.store().oldest_backup_runs().await?;
        let raised = self.store().backup_alerts(None).await?;
        let ctx = audit("window-watch");
        for site in sites {
            let proof = proofs.iter().find(|p| p.site_id == site.id);
            if let (Some(window), Some(series)) = (
                proof.and_then(|p| p.window_seconds),
                super::backups::window_series(site.id),
            ) {
                self.store().record(&series, now, window as f64).await?;
            }
            let hours = site.backup.alert_window_hours;
            let limit = Duration::hours(i64::from(hours));
            let reason = match proof {
                None => None,
                Some(SiteProof {
                    window_seconds: Some(window),
                    proven_at: Some(at),
                    ..
                }) if Duration::seconds(*window) > limit => Some(format!(
                    "the data-loss window is above the policy's {hours} h: the newest snapshot \
                     that passed a drill or a check was taken {}",
                    at.format("%Y-%m-%d %H:%M UTC")
                )),
                Some(SiteProof {
                    window_seconds: None,
                    ..
                }) if oldest_runs
                    .get(&site.id)
                    .is_some_and(|first| now - *first > limit) =>
                {
                    Some(format!(
                        "no snapshot has passed a drill or a check in the policy's {hours} h"
                    ))
                }
                Some(_) => None,
            };
            let current = raised
                .iter()
                .find(|a| a.site_id == site.id && a.kind == AlertKind::Window)
                .map(|a| a.reason.as_str());
            match reason {
                Some(reason) if current != Some(reason.as_str()) => {
                    self.store()
                        .raise_alert(&ctx, site.id, AlertKind::Window, &reason)
                        .await?;
                }
                None if current.is_some() => {
                    self.store()
                        .clear_alert(&ctx, site.id, AlertKind::Window)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(proofs.len())
    }

    /// The drills a report ends that were running until now (their restore times are
    /// recorded once the report is).
    pub(crate) async fn drills_ending(&self, report: &alveole_model::NodeReport) -> Vec<Drill> {
        let mut ending = Vec::new();
        for progress in report.drills.iter().filter(|p| p.finished.is_some()) {
            if let Ok(drill) = self.store().drill(progress.id).await
                && drill.state == DrillState::Running
            {
                ending.push(drill);
            }
        }
        ending
    }

    /// Records the restore times of drills that just passed.
    pub(crate) async fn record_restore_times(&self, ended: &[Drill]) {
        for drill in ended {
            let Ok(now) = self.store().drill(drill.id).await else {
                continue;
            };
            let (Some(ms), Some(series)) = (now.restore_ms, restore_series(drill.site_id)) else {
                continue;
            };
            if let Err(error) = self
                .store()
                .record(&series, self.now(), ms as f64 / 1000.0)
                .await
            {
                tracing::warn!(site = %drill.site_id, %error, "the restore time was not recorded");
            }
        }
    }
}

/// What the drills and checks of `site`'s copies prove.
fn proof_of(site: &Site, checks: &[CopyCheck], drills: &[Drill], now: DateTime<Utc>) -> SiteProof {
    let mine: Vec<&Drill> = drills.iter().filter(|d| d.site_id == site.id).collect();
    let proven = site
        .backup
        .targets
        .iter()
        .filter_map(|target| {
            let check = checks
                .iter()
                .find(|c| c.site_id == site.id && c.target_id == *target);
            let drilled: Vec<Drill> = mine
                .iter()
                .filter(|d| d.target_id == *target)
                .map(|d| (*d).clone())
                .collect();
            proven_at(check, &drilled)
        })
        .max();
    let restore_seconds = mine
        .iter()
        .filter(|d| d.state == DrillState::Passed)
        .max_by_key(|d| d.requested_at)
        .and_then(|d| d.restore_ms)
        .map(|ms| ms as f64 / 1000.0);
    SiteProof {
        site_id: site.id,
        window_seconds: proven.map(|at| (now - at).num_seconds().max(0)),
        proven_at: proven,
        restore_seconds,
    }
}

/// The drills a node runs, each with the site's opened key and its scratch container's
/// shape (the site's, opened secrets included: the copy must start as the site does).
pub(crate) fn drill_orders(
    backups: &NodeBackups,
    offers: &[alveole_model::DatabaseOffer],
) -> Vec<DrillOrder> {
    backups
        .drills
        .iter()
        .filter_map(|(drill, site)| {
            // The copy runs with the site's databases, loaded from their dumps.
            let mut spec = [site.to_spec()];
            let served = std::collections::BTreeMap::from([(site.id, site)]);
            super::databases::with_databases(&mut spec, &served, offers);
            let [spec] = spec;
            Some(DrillOrder {
                id: drill.id,
                site_id: site.id,
                scratch: DrillOrder::scratch_of(drill.id, &spec),
                repository: site.id.to_string(),
                password: WireSecret(backups.keys.get(&site.id)?.clone()),
                target: backups.targets.get(&drill.target_id)?.clone(),
                health_path: site.backup.drill.health_path.clone(),
                hook: site.backup.drill.hook.clone(),
            })
        })
        .collect()
}

/// The worst window and the slowest restore of the co-op, for the dashboard.
pub fn worst(proofs: &[SiteProof]) -> (Option<&SiteProof>, Option<&SiteProof>) {
    let worst_window = proofs
        .iter()
        .filter(|p| p.window_seconds.is_some())
        .max_by_key(|p| p.window_seconds);
    let slowest = proofs
        .iter()
        .filter(|p| p.restore_seconds.is_some())
        .max_by(|a, b| {
            let seconds = |p: &SiteProof| p.restore_seconds.unwrap_or_default();
            seconds(a).total_cmp(&seconds(b))
        });
    (worst_window, slowest)
}
