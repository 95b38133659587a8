//! The pass task: makes the node match the held desired state. A pass takes no input from
//! what woke it (a new document, an engine event, the timer): it follows the document's
//! moves, decides the input filter, observes, plans and acts, routes the ingress, and says
//! what it found, for the report.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alveole_model::{AgentEventKind, Clock, DesiredState, SiteId, SiteReport, SiteState};
use tokio::sync::watch;

use super::moves::MoveHandlers;
use crate::control::outbox::Outbox;
use crate::engine::reconcile::{Reconciler, Report};
use crate::engine::runtime::{Action, MoveRuntime, Naming};
use crate::ingress::{Ingress, Routes, Upstream};
use crate::net::confirm::InputFilterGuard;
use crate::net::routing::Routing;
use crate::net::uplink::Uplink;

/// How many lines of a table's drift an event keeps (a flushed table lists every rule).
const DRIFT_LINES_KEPT: usize = 40;

/// What one pass found, for the report.
#[derive(Clone, Debug)]
pub struct Pass {
    /// The input filter's pass number: a report of a later pass confirms a filter on trial.
    pub number: u64,
    pub generation: u64,
    pub sites: Vec<SiteReport>,
    pub warnings: Vec<String>,
    /// What the uplink answers for, when the agent holds the node's addresses.
    pub addresses: Option<Vec<IpAddr>>,
    /// Whether the node's table is in place (only then does a report vouch for a filter).
    pub table_in_place: bool,
    /// What the engine did, when it answered.
    pub engine: Option<Report>,
    /// How far the restores the document asks for are.
    pub restores: Vec<alveole_model::backup::RestoreProgress>,
    /// How far the drills the document asks for are.
    pub drills: Vec<alveole_model::backup::DrillProgress>,
}

pub(super) struct Passes<R> {
    reconciler: Reconciler<R>,
    ingress: Arc<Ingress>,
    clock: Arc<dyn Clock>,
    outbox: Arc<Mutex<Outbox>>,
    filter: Arc<Mutex<InputFilterGuard>>,
    moves: Option<MoveHandlers<R>>,
    backups: Option<super::backups::Backups<R>>,
    /// The latest measurement of each site's volume, and when it was taken.
    usage: BTreeMap<SiteId, crate::engine::runtime::VolumeUsage>,
    usage_measured: Option<tokio::time::Instant>,
    usage_every: Duration,
    /// The generation the last pass applied: actions taken for the same generation are drift
    /// repairs.
    applied: Option<u64>,
    /// The generation whose certificates the ingress serves, and what did not load of them
    /// (loaded once a document: parsing keys is not a pass's work).
    certificates: Option<(u64, Vec<String>)>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R: MoveRuntime + 'static> Passes<R> {
    pub(super) fn new(
        reconciler: Reconciler<R>,
        ingress: Arc<Ingress>,
        clock: Arc<dyn Clock>,
        outbox: Arc<Mutex<Outbox>>,
        filter: Arc<Mutex<InputFilterGuard>>,
    ) -> Self {
        Self {
            reconciler,
            ingress,
            clock,
            outbox,
            filter,
            moves: None,
            backups: None,
            usage: BTreeMap::new(),
            usage_measured: None,
            usage_every: Duration::from_secs(60),
            applied: None,
            certificates: None,
        }
    }

    pub(super) fn set_routing(&mut self, routing: Arc<dyn Routing>) {
        self.reconciler.set_routing(routing);
    }

    /// Whether the node's table is kept (nft was found, or a table was given).
    pub(super) fn routes_addresses(&self) -> bool {
        self.reconciler.has_routing()
    }

    pub(super) fn set_uplink(&mut self, uplink: Arc<Uplink>) {
        self.reconciler.set_uplink(uplink);
    }

    pub(super) fn set_usage_interval(&mut self, every: Duration) {
        self.usage_every = every;
    }

    pub(super) fn set_moves(&mut self, moves: MoveHandlers<R>) {
        self.moves = Some(moves);
    }

    pub(super) fn set_backups(&mut self, backups: super::backups::Backups<R>) {
        self.backups = Some(backups);
    }

    #[cfg(test)]
    pub(super) fn runtime(&self) -> &R {
        self.reconciler.runtime()
    }

    pub(super) fn shared_runtime(&self) -> Arc<R> {
        self.reconciler.shared_runtime()
    }

    pub(super) fn naming(&self) -> &Naming {
        self.reconciler.naming()
    }

    pub(super) fn ingress(&self) -> Arc<Ingress> {
        self.ingress.clone()
    }

    /// One pass toward `held`.
    pub(super) async fn pass(&mut self, held: &DesiredState) -> Pass {
        if let Some(moves) = self.moves.as_mut() {
            moves.follow(held, &self.ingress);
        }
        let (restores, drills) = match self.backups.as_mut() {
            Some(backups) => {
                backups.tick(held);
                (backups.progress(held), backups.drill_progress(held))
            }
            None => (Vec::new(), Vec::new()),
        };
        // A site being restored whole stays stopped until its files are back.
        let stopped = self
            .backups
            .as_ref()
            .map(|backups| backups.stopped_sites(held))
            .unwrap_or_default();
        let adjusted;
        let held = if stopped.is_empty() {
            held
        } else {
            let mut copy = held.clone();
            for site in copy
                .sites
                .iter_mut()
                .filter(|s| stopped.contains(&s.site_id))
            {
                site.run = false;
                site.databases_stay_up = true;
            }
            adjusted = copy;
            &adjusted
        };
        let now = self.clock.now();
        let filter = lock(&self.filter).decide(held.input_filter.as_ref(), now);
        if let Some(detail) = &filter.rolled_back {
            tracing::warn!(%detail, "input filter rolled back");
            let event = (AgentEventKind::InputFilterRolledBack, None, detail.clone());
            if let Err(error) = lock(&self.outbox).push(vec![event], now) {
                tracing::warn!(error = %crate::describe(&error), "could not record the rollback");
            }
        }
        self.record_room_changes();
        let outcome = self
            .reconciler
            .reconcile_with(held, filter.filter.as_ref())
            .await;
        if let Ok(report) = &outcome {
            self.record_events(held.generation, report);
            self.refresh_usage().await;
        }
        let mut warnings: Vec<String> = filter.warning.into_iter().collect();
        // The CA's challenges are answered whatever the engine does (they need no container).
        self.ingress.set_challenges(&held.acme_challenges);
        let sites = match &outcome {
            Ok(report) => {
                let mut routes = routes_of(held, report);
                if let Some(moves) = &self.moves {
                    moves.add_routes(&mut routes, held);
                }
                self.ingress.set_body_limits(
                    held.sites
                        .iter()
                        .map(|spec| (spec.site_id, spec.limits.request_body_bytes))
                        .collect(),
                );
                // Sites moving here are protected from the switch on, with their own keys:
                // their visitors keep their places.
                let protected: Vec<_> = held
                    .sites
                    .iter()
                    .chain(held.moves_in.iter().map(|m| &m.site))
                    .cloned()
                    .collect();
                self.ingress.set_admissions(&protected);
                self.ingress.set_routes(routes);
                if self
                    .certificates
                    .as_ref()
                    .is_none_or(|(generation, _)| *generation != held.generation)
                {
                    // A site moving here is served with its certificate from the switch on.
                    let served: Vec<_> = held
                        .sites
                        .iter()
                        .chain(held.moves_in.iter().map(|m| &m.site))
                        .cloned()
                        .collect();
                    let unloaded = self.ingress.set_certificates(&served);
                    self.certificates = Some((held.generation, unloaded));
                }
                warnings.extend(self.certificates.iter().flat_map(|(_, w)| w.clone()));
                let mut sites = site_reports(held, report, &self.usage);
                for site in &mut sites {
                    site.traffic = self.ingress.traffic(site.site_id);
                }
                sites
            }
            Err(error) => {
                let error = crate::describe(error);
                tracing::warn!(%error, "the container engine is unreachable; routes unchanged");
                let reason = format!("the node's container engine is unreachable: {error}");
                held.sites
                    .iter()
                    .map(|s| SiteReport {
                        site_id: s.site_id,
                        state: SiteState::Failing,
                        reason: Some(reason.clone()),
                        volume_bytes: self.usage.get(&s.site_id).and_then(|u| u.site),
                        database_bytes: self
                            .usage
                            .get(&s.site_id)
                            .map(|u| u.databases.clone())
                            .unwrap_or_default(),
                        traffic: self.ingress.traffic(s.site_id),
                    })
                    .collect()
            }
        };
        let table_in_place = outcome.as_ref().is_ok_and(|p| p.routing_error.is_none());
        if let Ok(pass) = &outcome {
            warnings.extend(table_warnings(pass, filter.filter.is_some()));
        }
        if !self.reconciler.has_routing() {
            warnings.push(
                "nft is not installed: no dedicated address is routed, and sites can reach this host's own services"
                    .to_owned(),
            );
        }
        let uplink = match &outcome {
            Ok(pass) => pass.uplink.clone(),
            Err(_) => self.reconciler.converge_uplink(held).await,
        };
        if let Some(uplink) = &uplink {
            warnings.extend(uplink.problems.iter().map(|p| format!("uplink: {p}")));
        }
        Pass {
            number: filter.pass,
            generation: held.generation,
            sites,
            warnings,
            addresses: uplink.map(|u| u.held),
            table_in_place,
            engine: outcome.ok(),
            restores,
            drills,
        }
    }

    /// Passes until the held document's sender goes: at each newly held document, engine
    /// event, and tick of `every`. Each pass is published for the report.
    pub(super) async fn run(
        mut self,
        mut held: watch::Receiver<Option<Arc<DesiredState>>>,
        passes: watch::Sender<Option<Arc<Pass>>>,
        every: Duration,
    ) {
        let poke = Arc::new(tokio::sync::Notify::new());
        let watcher = self
            .reconciler
            .runtime()
            .watch(self.reconciler.naming(), poke.clone());
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = held.changed() => if changed.is_err() { break },
                _ = ticker.tick() => {}
                () = poke.notified() => {}
            }
            let document = held.borrow_and_update().clone();
            if let Some(document) = document {
                let pass = self.pass(&document).await;
                passes.send_replace(Some(Arc::new(pass)));
            }
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
    }

    /// Measures the volumes when the last measurement is older than the interval.
    async fn refresh_usage(&mut self) {
        if self
            .usage_measured
            .is_some_and(|at| at.elapsed() < self.usage_every)
        {
            return;
        }
        match self
            .reconciler
            .runtime()
            .volume_usage(self.reconciler.naming())
            .await
        {
            Ok(usage) => {
                self.usage = usage;
                self.usage_measured = Some(tokio::time::Instant::now());
            }
            Err(error) => {
                tracing::warn!(error = %crate::describe(&error), "could not measure the volumes");
            }
        }
    }

    /// Puts the waiting rooms that opened or closed since the last pass in the outbox (the
    /// panel audits them).
    fn record_room_changes(&mut self) {
        let events: Vec<_> = self
            .ingress
            .take_room_changes()
            .into_iter()
            .map(|change| {
                let (kind, what) = if change.opened {
                    (AgentEventKind::WaitingRoomOpened, "opened")
                } else {
                    (AgentEventKind::WaitingRoomClosed, "closed")
                };
                let detail = format!(
                    "the waiting room {what} at {} ({} waiting, {} active)",
                    change
                        .at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    change.waiting,
                    change.active
                );
                (kind, Some(change.site), detail)
            })
            .collect();
        if !events.is_empty()
            && let Err(error) = lock(&self.outbox).push(events, self.clock.now())
        {
            tracing::warn!(error = %crate::describe(&error), "could not record the waiting rooms");
        }
    }

    /// Puts what this pass did in the outbox: the application of a new desired state, or
    /// repairs of drift when the desired state had not changed.
    fn record_events(&mut self, generation: u64, report: &Report) {
        let mut events: Vec<_> = if self.applied == Some(generation) {
            report
                .actions
                .iter()
                .map(|action| {
                    let (site, detail) = describe_repair(action);
                    (AgentEventKind::DriftRepaired, site, detail)
                })
                .collect()
        } else if report.actions.is_empty() {
            Vec::new()
        } else {
            vec![(
                AgentEventKind::Applied,
                None,
                format!(
                    "applied desired state {generation}: {} change(s) on the node",
                    report.actions.len()
                ),
            )]
        };
        if let Some(drift) = report.routing_drift() {
            events.push((
                AgentEventKind::DriftRepaired,
                None,
                describe_table_drift(drift),
            ));
        }
        self.applied = Some(generation);
        if let Err(error) = lock(&self.outbox).push(events, self.clock.now()) {
            tracing::warn!(error = %crate::describe(&error), "could not record the pass's events");
        }
    }
}

/// What the report says of the node's table after a pass.
fn table_warnings(pass: &Report, filter_wanted: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(error) = &pass.routing_error {
        if filter_wanted {
            warnings.push("the input filter is not in place: the node's table is not".to_owned());
        }
        warnings.push(format!(
            "the node's table is not in place (no dedicated address is routed, sites are not isolated from this host): {error}"
        ));
    }
    warnings.extend(
        pass.routing_conflicts
            .iter()
            .map(|c| format!("not routed: {c}")),
    );
    if pass.routing_drift().is_some_and(|d| d.docker_rules_lost) {
        warnings.push(
            "the whole ruleset was flushed: restart Docker (systemctl restart docker) to get its rules back"
                .to_owned(),
        );
    }
    warnings
}

fn describe_table_drift(drift: &crate::net::routing::Drift) -> String {
    let mut detail =
        String::from("the node's nftables table differed from alveole's: replaced whole.");
    for line in drift.lines.iter().take(DRIFT_LINES_KEPT) {
        detail.push('\n');
        detail.push_str(line);
    }
    if drift.lines.len() > DRIFT_LINES_KEPT {
        detail.push_str(&format!(
            "\n… and {} more",
            drift.lines.len() - DRIFT_LINES_KEPT
        ));
    }
    detail
}

/// The site a repair concerns and what it was, in words.
fn describe_repair(action: &Action) -> (Option<SiteId>, String) {
    let (site, detail) = match action {
        Action::CreateNetwork => {
            return (None, "the node's network was missing: made again".into());
        }
        Action::CreateVolume { site } => {
            (site, "its volume was missing: made again (empty)".into())
        }
        Action::Create { site } => (site, "its container was missing: made again".into()),
        Action::Replace { site, .. } => (
            site,
            "its container differed from its spec: replaced".into(),
        ),
        Action::Start { site, container } => (
            site,
            format!(
                "its container {container} had stopped (crashed or stopped by hand): started again"
            ),
        ),
        Action::Stop { site, container } => (
            site,
            format!("its container {container} ran although the site is stopped: stopped"),
        ),
        Action::Remove { site, container } => (
            site,
            format!("container {container} is not wanted on this node: removed"),
        ),
        Action::RemoveVolume { site } => {
            (site, "its purged volume was still there: removed".into())
        }
        Action::CreatePod { site } => (
            site,
            "its pod (the holder of its network namespace) was missing or differed: made again"
                .into(),
        ),
        Action::CreateDatabaseVolume { site, database } => (
            site,
            format!("the volume of its database {database} was missing: made again (empty)"),
        ),
        Action::CreateDatabase { site, database } => (
            site,
            format!("the server of its database {database} was missing: made again"),
        ),
        Action::ReplaceDatabase { site, database, .. } => (
            site,
            format!("the server of its database {database} differed from its spec: replaced"),
        ),
        Action::StartPod { site, container } => (
            site,
            format!("its pod {container} had stopped: started again"),
        ),
        Action::StartDatabase { site, container } => (
            site,
            format!("its database server {container} had stopped: started again"),
        ),
    };
    (Some(*site), detail)
}

/// The ingress routes for what runs: every host name of every running site with an address.
pub fn routes_of(desired: &DesiredState, report: &Report) -> Routes {
    let mut routes = Routes::default();
    for spec in &desired.sites {
        let Some(address) = report.addresses.get(&spec.site_id) else {
            continue;
        };
        let upstream = Upstream {
            site: spec.site_id,
            address: std::net::SocketAddr::new(*address, spec.http_port),
        };
        for hostname in &spec.hostnames {
            routes.insert(hostname, upstream);
        }
    }
    routes
}

/// How each site of the held document is, after a pass.
pub fn site_reports(
    desired: &DesiredState,
    report: &Report,
    usage: &BTreeMap<SiteId, crate::engine::runtime::VolumeUsage>,
) -> Vec<SiteReport> {
    desired
        .sites
        .iter()
        .map(|spec| {
            let failure = report.failures.iter().find(|(action, _)| match action {
                Action::Create { site }
                | Action::Replace { site, .. }
                | Action::CreateVolume { site }
                | Action::CreatePod { site }
                | Action::CreateDatabaseVolume { site, .. }
                | Action::CreateDatabase { site, .. }
                | Action::ReplaceDatabase { site, .. }
                | Action::StartPod { site, .. }
                | Action::StartDatabase { site, .. } => *site == spec.site_id,
                _ => false,
            });
            let (state, reason) = match (
                failure,
                spec.run,
                report.addresses.contains_key(&spec.site_id),
            ) {
                (Some((_, why)), _, _) => (SiteState::Failing, Some(why.clone())),
                (None, false, _) => (SiteState::Stopped, None),
                (None, true, true) => (SiteState::Running, None),
                (None, true, false) => (
                    SiteState::Failing,
                    Some("the container is not running".to_owned()),
                ),
            };
            SiteReport {
                site_id: spec.site_id,
                state,
                reason,
                volume_bytes: usage.get(&spec.site_id).and_then(|u| u.site),
                database_bytes: usage
                    .get(&spec.site_id)
                    .map(|u| u.databases.clone())
                    .unwrap_or_default(),
                traffic: None,
            }
        })
        .collect()
}
