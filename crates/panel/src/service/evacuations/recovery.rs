//! "This node (or this provider) is lost": an evacuation whose sites cannot be copied from
//! where they were, so each is placed elsewhere by the evacuation's planner and restored
//! there from its newest backup outside the lost nodes. The lost nodes are fenced in the same
//! transaction as the job starts: they are given nothing to run, their reports and renewals
//! are refused, and an agent that comes back serves nothing. Each site's addresses fail over
//! to its new node; each site's item says what it lost (from its restored snapshot to when
//! its node was last heard from).

use std::collections::BTreeSet;

use alveole_model::backup::RestoreState;
use alveole_model::evacuation::{
    Evacuation, EvacuationItem, EvacuationSpec, ItemState, JobState, LostNode, RecoverySpec,
    Unplaced,
};
use alveole_model::{BackupTargetId, NodeId, SiteId};
use alveole_store::AuditContext;

use super::job::Setback;
use super::{Fleet, PlanQuery};
use crate::error::{ApiError, ApiResult};
use crate::service::Service;

impl Service {
    /// Plans each site of the lost nodes elsewhere, fences the nodes and records the
    /// recovery as a job (run `parallelism` sites at a time by whichever panel process holds
    /// its lease). A site without a copy outside the lost nodes cannot be recovered: it is
    /// named, with why.
    pub async fn start_recovery(
        &self,
        ctx: &AuditContext,
        request: &PlanQuery,
    ) -> ApiResult<Evacuation> {
        let plan = self.plan_evacuation(request).await?;
        let fleet = Fleet::read(self.store()).await?;
        let lost: Vec<NodeId> = fleet.scope(request.node_id, request.provider_id);
        let places = self.store().sites_backup_places().await?;
        let now = self.now();
        let mut unplaced = plan.unplaced.clone();
        let mut items = Vec::new();
        for placement in &plan.placements {
            let copies = places
                .iter()
                .filter(|(site, place)| {
                    *site == placement.site_id && place.node_id.is_none_or(|n| !lost.contains(&n))
                })
                .count();
            if copies == 0 {
                unplaced.push(Unplaced {
                    site_id: placement.site_id,
                    name: placement.name.clone(),
                    reason: "it has no backup outside the lost nodes: there is nothing to \
                             restore it from"
                        .into(),
                });
                continue;
            }
            items.push((placement.site_id, placement.to_node));
        }
        let spec = EvacuationSpec {
            node_id: request.node_id,
            provider_id: request.provider_id,
            deadline: None,
            parallelism: plan.parallelism,
            predicted_seconds: plan.estimated_seconds,
            statement: plan.statement.clone(),
            unplaced,
            recovery: Some(RecoverySpec {
                homes: super::sites_on(self.store(), &lost)
                    .await?
                    .into_iter()
                    .filter_map(|site| Some((site.id, site.node_id?)))
                    .collect(),
                lost: lost
                    .iter()
                    .map(|node| LostNode {
                        node_id: *node,
                        last_heard: fleet
                            .statuses
                            .get(node)
                            .map_or(now, |status| status.reported_at),
                    })
                    .collect(),
            }),
        };
        let recovery = self.store().create_evacuation(ctx, &spec, &items).await?;
        tracing::warn!(job = %recovery.id, lost = ?lost, sites = items.len(), "recovering lost nodes");
        self.tell_nodes();
        self.poke(crate::background::Task::Jobs);
        Ok(recovery)
    }

    /// One step of a recovery: settle the restores that ended (a failed one is tried again
    /// later), start restores up to the parallelism, end when nothing is left.
    pub(super) async fn advance_recovery(&self, mut recovery: Evacuation) -> ApiResult<()> {
        let id = recovery.id;
        let ctx = AuditContext::new(format!("job:{id}"), "-");
        let spec = recovery.spec.recovery.clone().unwrap_or(RecoverySpec {
            lost: vec![],
            homes: Default::default(),
        });
        for item in recovery
            .items
            .iter_mut()
            .filter(|i| i.state == ItemState::Moving)
        {
            let Some(restore_id) = item.restore_id else {
                continue;
            };
            let restore = self.store().restore(restore_id).await?;
            match restore.state {
                RestoreState::Running => {
                    // A restore on a node that went silent is given up, and the site placed
                    // again elsewhere.
                    if let Some(reason) = self.silent(restore.node_id, restore.requested_at).await?
                        && self
                            .store()
                            .fail_running_restore(&ctx, restore.id, &reason)
                            .await?
                            .is_some()
                    {
                        self.setback(id, item, Setback::Failed(reason)).await?;
                    }
                }
                RestoreState::Restored => {
                    let lost = self
                        .data_loss(&spec, item, restore.snapshot_id.as_deref())
                        .await?;
                    self.store()
                        .settle_recovered_item(id, item.site_id, lost)
                        .await?;
                    item.state = ItemState::Done;
                }
                RestoreState::Failed => {
                    let reason = restore
                        .error
                        .unwrap_or_else(|| "the restore did not happen".into());
                    self.setback(id, item, Setback::Failed(reason)).await?;
                }
            }
        }
        if recovery.state == JobState::Running {
            self.start_recoveries(&ctx, &mut recovery).await?;
        }
        self.end_if_over(&ctx, &recovery).await
    }

    /// Starts restores of pending sites up to the parallelism.
    async fn start_recoveries(
        &self,
        ctx: &AuditContext,
        recovery: &mut Evacuation,
    ) -> ApiResult<()> {
        let now = self.now();
        let parallelism = recovery.spec.parallelism.max(1) as usize;
        let mut running = recovery
            .items
            .iter()
            .filter(|i| i.state == ItemState::Moving)
            .count();
        let ready = |i: &EvacuationItem| {
            i.state == ItemState::Pending && i.retry_at.is_none_or(|at| at <= now)
        };
        if running >= parallelism || !recovery.items.iter().any(ready) {
            return Ok(());
        }
        let fleet = Fleet::read(self.store()).await?;
        let lost = fleet.scope(recovery.spec.node_id, recovery.spec.provider_id);
        let costs = fleet.costs(self.config().background.jobs_every);
        let id = recovery.id;
        for item in recovery.items.iter_mut().filter(|i| ready(i)) {
            if running >= parallelism {
                break;
            }
            // Still on a lost node, or on the node of a try that failed: to recover.
            let mut from = lost.clone();
            from.extend(item.restore_id.map(|_| item.to_node));
            let Some(site) = self.still_leaving(id, item, &from).await? else {
                continue;
            };
            let started = match (
                self.target_for(&fleet, &costs, &lost, item, &site),
                self.newest_copy(site.id, &lost).await?,
            ) {
                (Err(reason), _) => Err(reason),
                (_, None) => Err("it has no backup outside the lost nodes".to_owned()),
                (Ok((to, _)), Some(target)) => self
                    .store()
                    .start_recovery_item(ctx, id, site.id, to, target)
                    .await
                    .map(|restore| (to, restore))
                    .map_err(|e| ApiError::from(e).problem().detail),
            };
            match started {
                Ok((to, Some(restore))) => {
                    running += 1;
                    item.state = ItemState::Moving;
                    item.to_node = to;
                    item.restore_id = Some(restore.id);
                    self.fail_over_addresses(ctx, site.id, to).await;
                    self.tell_nodes();
                }
                Ok((_, None)) => item.state = ItemState::Moving,
                Err(reason) => self.setback(id, item, Setback::Failed(reason)).await?,
            }
        }
        Ok(())
    }

    /// Why a node that was given work at `since` will not do it: it has not reported for
    /// longer than the panel waits (none when it is heard from).
    async fn silent(
        &self,
        node: NodeId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> ApiResult<Option<String>> {
        let now = self.now();
        let after = self.config().node_unreachable_after;
        let waited = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        let last = self
            .store()
            .node_statuses()
            .await?
            .into_iter()
            .find(|s| s.node_id == node)
            .map(|s| s.reported_at);
        if now - since <= waited || crate::service::agents::reachable(last, now, after) {
            return Ok(None);
        }
        Ok(Some(match last {
            Some(at) => format!(
                "its new node stopped reporting (last at {})",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => "its new node never reported".to_owned(),
        }))
    }

    /// The target holding the site's newest snapshot, among those outside the lost nodes.
    async fn newest_copy(
        &self,
        site: SiteId,
        lost: &[NodeId],
    ) -> ApiResult<Option<BackupTargetId>> {
        let usable: BTreeSet<BackupTargetId> = self
            .store()
            .sites_backup_places()
            .await?
            .into_iter()
            .filter(|(s, place)| *s == site && place.node_id.is_none_or(|n| !lost.contains(&n)))
            .map(|(_, place)| place.id)
            .collect();
        Ok(self
            .store()
            .latest_snapshots(Some(site))
            .await?
            .into_iter()
            .filter(|run| usable.contains(&run.target_id))
            .max_by_key(|run| run.started_at)
            .map(|run| run.target_id))
    }

    /// Moves the site's dedicated addresses to its new node at once (its old node is lost:
    /// the provider's routing alone keeps the two apart).
    async fn fail_over_addresses(&self, ctx: &AuditContext, site: SiteId, to: NodeId) {
        let allocations = match self.store().ip_allocations().await {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%site, %error, "cannot read the site's addresses");
                return;
            }
        };
        for allocation in allocations.iter().filter(|a| a.site_id == Some(site)) {
            let request = crate::service::addresses::MoveRequest {
                to_node: to,
                force: true,
            };
            if let Err(error) = self
                .start_address_move(ctx, allocation.address, &request)
                .await
            {
                tracing::warn!(%site, address = %allocation.address, %error, "the address did not fail over yet");
            }
        }
    }

    /// What a recovered site lost: from its restored snapshot to when its node was last
    /// heard from (none when the snapshot's time is not known any more).
    async fn data_loss(
        &self,
        spec: &RecoverySpec,
        item: &EvacuationItem,
        snapshot: Option<&str>,
    ) -> ApiResult<Option<i64>> {
        let Some(snapshot) = snapshot else {
            return Ok(None);
        };
        let taken = self
            .store()
            .backup_runs(item.site_id, 500)
            .await?
            .into_iter()
            .filter(|run| run.snapshot_id.as_deref() == Some(snapshot))
            .map(|run| run.started_at)
            .min();
        // Its node's last word; a recovery recorded before homes were kept: the latest
        // among the lost nodes.
        let home = spec.homes.get(&item.site_id);
        let heard = match spec.lost.iter().find(|l| Some(&l.node_id) == home) {
            Some(lost) => Some(lost.last_heard),
            None => spec.lost.iter().map(|l| l.last_heard).max(),
        };
        Ok(taken
            .zip(heard)
            .map(|(taken, heard)| (heard - taken).num_seconds().max(0)))
    }
}
