//! Running an evacuation as a durable job, one step at a time: settle the moves that ended,
//! try failed sites again later (re-placed when their target can no longer receive), start
//! moves up to the parallelism in plan order, and end with the truth about what is left.

use std::collections::BTreeMap;

use alveole_model::evacuation::{
    self, CostBook, Estimate, Evacuation, EvacuationItem, EvacuationSpec, ItemState, JobState,
    Remaining,
};
use alveole_model::{JobId, MovePhase, NodeId, Reservation, Site, SiteId};
use alveole_store::{AuditContext, StoreError};

use super::{Fleet, PlanQuery, cannot_receive, sites_on};
use crate::error::{ApiError, ApiResult};
use crate::service::Service;

/// What to do with an item whose try did not work.
pub(super) enum Setback {
    /// Its site is busy moving already: try again at the next step, no try counted.
    Wait,
    /// The try failed for this reason: counted, tried again later while tries are left.
    Failed(String),
    /// No try can succeed (a site with databases cannot move yet): failed at once.
    Refused(String),
}

impl Service {
    /// Plans the evacuation, then records it as a job: moves start in the plan's order,
    /// `parallelism` at a time, in whichever panel process holds the job's lease. A late or
    /// impossible plan still moves what it can; the sites with no place stay, and are named
    /// at the end.
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
            recovery: None,
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

    /// An evacuation, with its expected end redone from what is left while it runs.
    pub async fn evacuation(&self, id: JobId) -> ApiResult<Evacuation> {
        let mut evacuation = self.store().get_evacuation(id).await?;
        if !evacuation.ended() {
            let fleet = Fleet::read(self.store()).await?;
            evacuation.estimate = Some(self.estimate(&fleet, &evacuation).await?);
        }
        Ok(evacuation)
    }

    /// Every evacuation, newest first, those under way with their expected end.
    pub async fn evacuations(&self) -> ApiResult<Vec<Evacuation>> {
        let mut all = self.store().evacuations().await?;
        if all.iter().any(|e| !e.ended()) {
            let fleet = Fleet::read(self.store()).await?;
            for evacuation in all.iter_mut().filter(|e| !e.ended()) {
                evacuation.estimate = Some(self.estimate(&fleet, evacuation).await?);
            }
        }
        Ok(all)
    }

    /// How long what is left takes: the moves under way for what they have left, then the
    /// pending sites in order, `parallelism` at a time, at the cost learned so far (this
    /// evacuation's own finished moves included).
    async fn estimate(&self, fleet: &Fleet, evacuation: &Evacuation) -> ApiResult<Estimate> {
        let now = self.now();
        let costs = fleet.costs(self.config().background.jobs_every);
        let ids: Vec<SiteId> = evacuation.items.iter().map(|i| i.site_id).collect();
        let leaving = fleet.scope(evacuation.spec.node_id, evacuation.spec.provider_id);
        let sites: BTreeMap<SiteId, _> = sites_on(self.store(), &leaving)
            .await?
            .into_iter()
            .filter(|s| ids.contains(&s.id))
            .filter_map(|s| Some((s.id, fleet.site_to_move(&s)?)))
            .collect();
        let mut durations = Vec::new();
        for item in &evacuation.items {
            let Some(site) = sites.get(&item.site_id) else {
                continue;
            };
            let to = fleet
                .provider_of(item.to_node)
                .unwrap_or(site.from_provider);
            let seconds = costs
                .between(site.from_provider, to)
                .seconds(site.volume_bytes);
            match (item.state, item.started_at) {
                (ItemState::Moving, Some(started)) => {
                    let spent = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
                    durations.insert(0, (seconds - spent).max(1.0));
                }
                (ItemState::Pending, _) => {
                    let wait = item
                        .retry_at
                        .map_or(0.0, |at| (at - now).num_seconds().max(0) as f64);
                    durations.push(seconds + wait);
                }
                _ => {}
            }
        }
        let (_, total) = evacuation::schedule(&durations, evacuation.spec.parallelism);
        let remaining_seconds = total.ceil() as u64;
        Ok(Estimate {
            remaining_seconds,
            finishes_at: now + chrono::Duration::seconds(remaining_seconds as i64),
            basis: costs.fleet.basis,
        })
    }

    /// One step of an evacuation: settle the moves that ended (a failed one is tried again
    /// later), start moves up to the parallelism (in plan order), end when nothing is left.
    /// The evacuation is read once; the store refuses what another writer made stale (an
    /// item no longer pending, an evacuation with sites left).
    pub async fn advance_evacuation(&self, id: JobId) -> ApiResult<()> {
        let store = self.store();
        let ctx = AuditContext::new(format!("job:{id}"), "-");
        let mut evacuation = store.get_evacuation(id).await?;
        if evacuation.spec.recovery.is_some() {
            return self.advance_recovery(evacuation).await;
        }
        for item in evacuation
            .items
            .iter_mut()
            .filter(|i| i.state == ItemState::Moving)
        {
            let Some(move_id) = item.move_id else {
                continue;
            };
            let movement = store.get_site_move(move_id).await?;
            match movement.phase {
                MovePhase::Forwarding | MovePhase::Done => {
                    store
                        .settle_evacuation_item(id, item.site_id, ItemState::Done, None)
                        .await?;
                    item.state = ItemState::Done;
                }
                // Someone stopped this move on purpose: not tried again.
                MovePhase::Cancelled => {
                    let reason = "its move was cancelled";
                    store
                        .settle_evacuation_item(id, item.site_id, ItemState::Failed, Some(reason))
                        .await?;
                    item.state = ItemState::Failed;
                    item.error = Some(reason.into());
                }
                MovePhase::Failed => {
                    let reason = movement
                        .error
                        .unwrap_or_else(|| "the move did not happen".into());
                    self.setback(id, item, Setback::Failed(reason)).await?;
                }
                MovePhase::Copying => {}
            }
        }
        if evacuation.state == JobState::Running {
            self.start_evacuation_moves(&ctx, &mut evacuation).await?;
        }
        self.end_if_over(&ctx, &evacuation).await
    }

    /// Ends the job when nothing is pending or under way, with the truth about what is left.
    pub(super) async fn end_if_over(
        &self,
        ctx: &AuditContext,
        evacuation: &Evacuation,
    ) -> ApiResult<()> {
        let open = evacuation
            .items
            .iter()
            .any(|i| matches!(i.state, ItemState::Pending | ItemState::Moving));
        if !open && matches!(evacuation.state, JobState::Running | JobState::Cancelled) {
            let id = evacuation.id;
            let remaining = self.remaining(evacuation).await?;
            let ended = self.store().finish_evacuation(ctx, id, &remaining).await?;
            tracing::info!(job = %id, state = ended.state.as_str(), items = ?ended.counts(),
                remaining = remaining.len(), "evacuation ended");
            self.tell_nodes();
        }
        Ok(())
    }

    /// The item's site while it is still on a node being emptied; else its item is settled
    /// (done: it left by other means; skipped: it was deleted) and `None`.
    pub(super) async fn still_leaving(
        &self,
        job: JobId,
        item: &mut EvacuationItem,
        leaving: &[NodeId],
    ) -> ApiResult<Option<Site>> {
        let (state, reason) = match self.store().sites().get(item.site_id).await {
            Ok(site) if site.node_id.is_some_and(|n| leaving.contains(&n)) => {
                return Ok(Some(site));
            }
            Ok(_) => (ItemState::Done, None),
            Err(StoreError::NotFound { .. }) => (ItemState::Skipped, Some("the site was deleted")),
            Err(error) => return Err(error.into()),
        };
        self.store()
            .settle_evacuation_item(job, item.site_id, state, reason)
            .await?;
        item.state = state;
        Ok(None)
    }

    /// Records a try that did not work: waits, retries later, or fails for good.
    pub(super) async fn setback(
        &self,
        job: JobId,
        item: &mut EvacuationItem,
        setback: Setback,
    ) -> ApiResult<()> {
        let (reason, retry) = match setback {
            Setback::Wait => {
                item.state = ItemState::Pending;
                return Ok(());
            }
            Setback::Failed(reason) => (reason, true),
            Setback::Refused(reason) => (reason, false),
        };
        let attempts = item.attempts.saturating_add(1);
        match evacuation::retry_after(attempts).filter(|_| retry) {
            Some(wait) => {
                let retry_at = self.now() + wait;
                tracing::warn!(%job, site = %item.site_id, %reason, attempts, %retry_at,
                    "a site of an evacuation did not move: trying again later");
                self.store()
                    .retry_evacuation_item(job, item.site_id, &reason, attempts, retry_at)
                    .await?;
                item.state = ItemState::Pending;
                item.attempts = attempts;
                item.retry_at = Some(retry_at);
            }
            None => {
                tracing::warn!(%job, site = %item.site_id, %reason, "a site of an evacuation did not move after every try");
                self.store()
                    .settle_evacuation_item(job, item.site_id, ItemState::Failed, Some(&reason))
                    .await?;
                item.state = ItemState::Failed;
            }
        }
        item.error = Some(reason);
        Ok(())
    }

    async fn start_evacuation_moves(
        &self,
        ctx: &AuditContext,
        evacuation: &mut Evacuation,
    ) -> ApiResult<()> {
        let now = self.now();
        let mut moving = evacuation
            .items
            .iter()
            .filter(|i| i.state == ItemState::Moving)
            .count();
        let parallelism = evacuation.spec.parallelism.max(1) as usize;
        let id = evacuation.id;
        let ready = |i: &EvacuationItem| {
            i.state == ItemState::Pending && i.retry_at.is_none_or(|at| at <= now)
        };
        if moving >= parallelism || !evacuation.items.iter().any(ready) {
            return Ok(());
        }
        let mut fleet = Fleet::read(self.store()).await?;
        let leaving = fleet.scope(evacuation.spec.node_id, evacuation.spec.provider_id);
        // Learned once a step: re-placing a site compares nodes with it.
        let costs = fleet.costs(self.config().background.jobs_every);
        // A site still copying to its last move's target is waited for; one forwarding from
        // its last move may move again (its earlier source then forwards to the new node).
        let busy: Vec<SiteId> = fleet
            .moves
            .iter()
            .filter(|m| m.phase == MovePhase::Copying)
            .map(|m| m.site_id)
            .collect();
        for item in evacuation.items.iter_mut().filter(|i| ready(i)) {
            if moving >= parallelism {
                break;
            }
            // The site's own move must switch first: wait, without counting a try.
            if busy.contains(&item.site_id) {
                continue;
            }
            // The site may have left by other means, or been deleted, since the plan.
            let Some(site) = self.still_leaving(id, item, &leaving).await? else {
                continue;
            };
            let started = match self.target_for(&fleet, &costs, &leaving, item, &site) {
                Ok((to, wanted)) => self
                    .store()
                    .start_evacuation_item(ctx, id, item.site_id, to, self.config().moves)
                    .await
                    .map(|started| (to, wanted, started))
                    .map_err(|error| match &error {
                        StoreError::Conflict { errors, .. }
                            if errors.iter().any(|e| {
                                e.code == "move.in_progress"
                                    || (e.field == "to_node" && e.code == "conflict.unique")
                            }) =>
                        {
                            Setback::Wait
                        }
                        StoreError::Conflict { errors, .. }
                            if errors.iter().any(|e| e.code == "move.has_databases") =>
                        {
                            Setback::Refused(ApiError::from(error).problem().detail)
                        }
                        _ => Setback::Failed(ApiError::from(error).problem().detail),
                    }),
                Err(reason) => Err(Setback::Failed(reason)),
            };
            match started {
                Ok((to, wanted, Some(movement))) => {
                    moving += 1;
                    item.state = ItemState::Moving;
                    item.to_node = to;
                    item.move_id = Some(movement.id);
                    // Later placements of this step count this site on its target.
                    if let Some(usage) = fleet.usage.iter_mut().find(|u| u.load.node_id == to) {
                        usage.load.reserved.cpu_millis += wanted.cpu_millis;
                        usage.load.reserved.memory_bytes += wanted.memory_bytes;
                        usage.load.reserved.disk_bytes += wanted.disk_bytes;
                    }
                    self.tell_nodes();
                }
                // No longer pending: another process started it, or the evacuation was
                // cancelled meanwhile. Counted as open until the next step reads it again.
                Ok((_, _, None)) => item.state = ItemState::Moving,
                Err(setback) => self.setback(id, item, setback).await?,
            }
        }
        Ok(())
    }

    /// Where `item`'s site goes now, and what it reserves there: its planned node while that
    /// node can receive it; after a failed try, or when the planned node can no longer
    /// receive, the node with the most room among the others that can (re-placed: the
    /// target may have been at fault); or why none can.
    pub(super) fn target_for(
        &self,
        fleet: &Fleet,
        costs: &CostBook,
        leaving: &[NodeId],
        item: &EvacuationItem,
        site: &Site,
    ) -> Result<(NodeId, Reservation), String> {
        let Some(wanted) = fleet.site_to_move(site) else {
            return Err("the site runs on no node".into());
        };
        let reservation = wanted.reservation;
        let now = self.now();
        let (destinations, _) =
            fleet.destinations(leaving, now, self.config().node_unreachable_after);
        let planned = destinations
            .iter()
            .find(|d| d.load.node_id == item.to_node)
            .filter(|d| d.load.check_fits(reservation).is_ok())
            .map(|d| d.load.node_id);
        if let (Some(planned), 0) = (planned, item.attempts) {
            return Ok((planned, reservation));
        }
        let others: Vec<_> = destinations
            .into_iter()
            .filter(|d| d.load.node_id != item.to_node)
            .collect();
        let replaced = evacuation::plan(vec![wanted], others, vec![], costs, 1, now, None);
        if let Some(placement) = replaced.placements.first() {
            tracing::info!(site = %item.site_id, from = %item.to_node, to = %placement.to_node,
                attempts = item.attempts, "an evacuation's site goes to another node");
            return Ok((placement.to_node, reservation));
        }
        if let Some(planned) = planned {
            return Ok((planned, reservation));
        }
        let why_not = cannot_receive(
            fleet.statuses.get(&item.to_node),
            now,
            self.config().node_unreachable_after,
        )
        .unwrap_or_else(|| "it has no room for the site any more".into());
        let elsewhere = replaced.unplaced.first().map_or_else(
            || "no other node can receive it".into(),
            |u| u.reason.clone(),
        );
        Err(format!(
            "{} cannot receive it ({why_not}), and {elsewhere}",
            fleet.node_name(item.to_node)
        ))
    }

    /// The sites still on the nodes the evacuation empties, each with why it is there.
    async fn remaining(&self, evacuation: &Evacuation) -> ApiResult<Vec<Remaining>> {
        let fleet = Fleet::read(self.store()).await?;
        let leaving = fleet.scope(evacuation.spec.node_id, evacuation.spec.provider_id);
        let sites = sites_on(self.store(), &leaving).await?;
        Ok(sites
            .into_iter()
            .filter_map(|site| {
                let node_id = site.node_id?;
                let item = evacuation.items.iter().find(|i| i.site_id == site.id);
                let unplaced = evacuation
                    .spec
                    .unplaced
                    .iter()
                    .find(|u| u.site_id == site.id);
                let reason = match (item, unplaced) {
                    (Some(item), _) => match item.state {
                        ItemState::Skipped => "not moved: the evacuation was cancelled".into(),
                        ItemState::Failed if evacuation.spec.recovery.is_some() => format!(
                            "not recovered: {}",
                            item.error.as_deref().unwrap_or("no reason given")
                        ),
                        ItemState::Failed => {
                            let why = item.error.as_deref().unwrap_or("no reason given");
                            match item.attempts {
                                0 => format!("not moved: {why}"),
                                tries => {
                                    format!("its move failed after {} tries: {why}", tries + 1)
                                }
                            }
                        }
                        ItemState::Done => "it moved, then came back".into(),
                        ItemState::Pending | ItemState::Moving => "its move did not end".into(),
                    },
                    (None, Some(unplaced)) => format!("no place for it: {}", unplaced.reason),
                    (None, None) => "it arrived after the evacuation was planned".into(),
                };
                Some(Remaining {
                    site_id: site.id,
                    name: site.primary_domain.to_unicode(),
                    node_id,
                    reason,
                })
            })
            .collect())
    }
}
