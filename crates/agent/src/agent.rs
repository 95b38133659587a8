//! The agent's main loop. Pulls the node's desired state from the panel, offers it to the
//! ledger, and reconciles on every pass from the document it holds, so it keeps serving and
//! repairing drift when the panel is away, across its own restarts too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alveole_model::{DesiredState, NodeReport, NodeResources, SiteReport, SiteState};

pub use crate::control::identity::{Credential, credential};
use crate::control::ledger::{Ledger, Verdict};
pub use crate::control::panel::{AgentError, PanelClient};
use crate::engine::reconcile::{Reconciler, Report};
use crate::engine::runtime::Action;
use crate::engine::runtime::{Naming, Runtime};
use crate::ingress::{Ingress, Routes, Upstream};
use crate::net::routing::{IngressPorts, NftCommand, NftRouting};

/// Until told otherwise, dedicated addresses' port 80 stays port 80 (an ingress listening
/// there), and 443 is closed.
const DEFAULT_INGRESS_PORTS: IngressPorts = IngressPorts {
    http: 80,
    https: None,
};

/// How often the agent asks the panel and reconciles.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub pass: Duration,
}

/// One agent: ledger, reconciler, ingress.
pub struct Agent<R> {
    credential: Credential,
    credential_path: PathBuf,
    panel: PanelClient,
    ledger: Ledger,
    reconciler: Reconciler<R>,
    ingress: Arc<Ingress>,
    held: Option<DesiredState>,
    /// The latest measurement of each site's volume, and when it was taken.
    usage: std::collections::BTreeMap<alveole_model::SiteId, u64>,
    usage_measured: Option<tokio::time::Instant>,
    usage_every: Duration,
    /// Whether the node's isolation from the host can be put in place (nft is there).
    isolated: bool,
    /// What the agent did on its own, until the panel has it.
    outbox: crate::control::outbox::Outbox,
    /// The generation the last successful pass applied: actions taken for the same
    /// generation are drift repairs.
    applied: Option<u64>,
    /// When the panel last took the node's inventory (sent at start, then hourly).
    inventory_sent: Option<tokio::time::Instant>,
    /// Applies the node's input filter commit-confirmed.
    input_filter: crate::net::confirm::InputFilterGuard,
    /// Site moves, when the agent listens for other agents.
    moves: Option<Moves<R>>,
}

/// What an agent that takes part in moves holds.
struct Moves<R> {
    board: Arc<crate::moves::Board>,
    source: Arc<crate::moves::source::Source<R>>,
    identity: crate::moves::peer::PeerIdentity,
    endpoints: alveole_model::AgentEndpoints,
    drivers: std::collections::BTreeMap<
        alveole_model::SiteMoveId,
        (alveole_model::SiteId, tokio::task::JoinHandle<()>),
    >,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl<R> Drop for Moves<R> {
    fn drop(&mut self) {
        self.server.abort();
        for (_, driver) in self.drivers.values() {
            driver.abort();
        }
    }
}

impl<R> std::fmt::Debug for Agent<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.credential.node_id)
            .field("generation", &self.held.as_ref().map(|h| h.generation))
            .finish()
    }
}

impl<R: Runtime + 'static> Agent<R> {
    /// Loads the held document. An unreadable one is reported and treated as "nothing known
    /// yet": the agent then changes nothing until the panel sends a document.
    pub fn new(
        credential: Credential,
        panel: PanelClient,
        state_dir: &Path,
        runtime: R,
        ingress: Arc<Ingress>,
    ) -> Self {
        let ledger = Ledger::new(credential.node_id, state_dir);
        let held = match ledger.load() {
            Ok(held) => held,
            Err(error) => {
                tracing::error!(%error, "the held desired state is unreadable; keeping what runs until the panel answers");
                None
            }
        };
        // Replacements hold and repoint the site's requests in this agent's ingress.
        let traffic: Arc<dyn crate::engine::runtime::Traffic> = Arc::new(ingress.clone());
        let naming = Naming {
            node_id: credential.node_id,
        };
        let mut reconciler = Reconciler::new(runtime, naming.clone()).with_traffic(traffic);
        let nft = NftCommand::host();
        let isolated = nft.available();
        if isolated {
            crate::net::routing::remove_legacy_table(&nft, &naming);
            reconciler.set_routing(Arc::new(NftRouting::new(nft, DEFAULT_INGRESS_PORTS)));
        } else {
            tracing::error!(
                "nft is not installed: this node routes no dedicated address, and its sites can reach the host's own services (install nftables)"
            );
        }
        Self {
            credential,
            credential_path: crate::control::identity::credential_path(state_dir),
            panel,
            ledger,
            reconciler,
            ingress,
            held,
            usage: Default::default(),
            usage_measured: None,
            usage_every: Duration::from_secs(60),
            isolated,
            outbox: crate::control::outbox::Outbox::open(state_dir),
            applied: None,
            inventory_sent: None,
            input_filter: crate::net::confirm::InputFilterGuard::load(
                state_dir,
                crate::net::confirm::DEFAULT_WINDOW,
            ),
            moves: None,
        }
    }

    /// How long a new input filter may go without the panel being reached before the agent
    /// rolls it back.
    pub fn with_input_filter_window(mut self, window: Duration) -> Self {
        self.input_filter = crate::net::confirm::InputFilterGuard::load(self.state_dir(), window);
        self
    }

    /// Where the agent keeps its state (the held desired state's directory).
    fn state_dir(&self) -> &Path {
        self.ledger.path().parent().unwrap_or(self.ledger.path())
    }

    /// Where ports 80 and 443 of dedicated addresses lead: the ports this agent's ingress
    /// listens on.
    pub fn with_ingress_ports(mut self, ports: IngressPorts) -> Self {
        if self.isolated {
            self.reconciler
                .set_routing(Arc::new(NftRouting::new(NftCommand::host(), ports)));
        }
        self
    }

    /// Keeps the node's table through `routing` (another namespace's `nft`, in tests).
    pub fn with_routing(mut self, routing: Arc<dyn crate::net::routing::Routing>) -> Self {
        self.reconciler.set_routing(routing);
        self.isolated = true;
        self
    }

    /// Holds the node's public addresses on `interface` (its uplink): adds, announces and
    /// removes them as the desired state says, and reports them.
    pub fn with_uplink(mut self, interface: Box<dyn crate::net::uplink::Interface>) -> Self {
        let uplink = crate::net::uplink::Uplink::new(interface, self.state_dir());
        self.reconciler.set_uplink(Arc::new(uplink));
        self
    }

    /// Takes part in site moves: serves other agents on `listener` (mutual TLS with the
    /// panel's CA) and tells the panel `endpoints`, where other agents reach this one. Needs
    /// the panel's CA pinned (an agent enrolled with `--panel-ca-sha256`).
    pub fn with_moves(
        mut self,
        listener: tokio::net::TcpListener,
        endpoints: alveole_model::AgentEndpoints,
    ) -> Result<Self, AgentError> {
        let ca_pem = self.panel.ca_pem().ok_or_else(|| AgentError::Refused {
            status: 0,
            detail: "moves need the panel's CA: enrol with --panel-ca-sha256".into(),
        })?;
        let identity =
            crate::moves::peer::PeerIdentity::new(self.credential.clone(), ca_pem.to_owned());
        let board = Arc::new(crate::moves::Board::open(self.state_dir()));
        let runtime = self.reconciler.shared_runtime();
        let naming = self.reconciler.naming().clone();
        let target = crate::moves::target::Target::new(
            runtime.clone(),
            naming.clone(),
            board.clone(),
            self.ingress.clone(),
        );
        let server = tokio::spawn(crate::moves::peer::serve(
            listener,
            identity.clone(),
            Arc::new(target),
        ));
        let source = Arc::new(crate::moves::source::Source {
            runtime,
            naming,
            ingress: self.ingress.clone(),
            panel: self.panel.clone(),
            identity: identity.clone(),
            board: board.clone(),
        });
        self.moves = Some(Moves {
            board,
            source,
            identity,
            endpoints,
            drivers: Default::default(),
            server,
        });
        Ok(self)
    }

    /// Tells the panel of rollbacks it has not heard of. False while one is unheard: the
    /// agent then keeps its held document, which still has the site (a newer one might not,
    /// if the panel had switched it, and the site would go).
    async fn report_rollbacks(&self) -> bool {
        let Some(moves) = &self.moves else {
            return true;
        };
        let mut all_heard = true;
        for (id, outcome) in moves.board.unreported() {
            if let Err(error) = self.panel.move_outcome(id, "fail", &outcome).await {
                tracing::warn!(%error, move_id = %id, "the panel has not heard of a rollback yet");
                all_heard = false;
            }
        }
        all_heard
    }

    /// Follows the held document's moves: ends forwardings, starts drivers for new moves,
    /// stops those of moves the panel cancelled.
    fn follow_moves(&mut self) {
        let (Some(moves), Some(held)) = (self.moves.as_mut(), self.held.as_ref()) else {
            return;
        };
        for site in moves.board.follow(held) {
            tracing::info!(%site, "a moved site's forwarding is over");
            self.ingress.stop_forwarding(site);
        }
        let mut stopped = Vec::new();
        moves.drivers.retain(|id, (site, driver)| {
            let listed = held.moves_out.iter().any(|m| m.id == *id);
            if !listed {
                driver.abort();
                stopped.push((*id, *site));
            }
            listed && !driver.is_finished()
        });
        for (id, site) in stopped {
            if moves.board.is_switched(id) {
                continue;
            }
            // Cancelled, maybe during a freeze: the site must not stay paused.
            let (runtime, container) = (
                moves.source.runtime.clone(),
                moves.source.naming.container(site),
            );
            tokio::spawn(async move {
                let _ = runtime.unpause(&container).await;
            });
        }
        for movement in &held.moves_out {
            let driven = moves.drivers.contains_key(&movement.id)
                || moves.board.is_switched(movement.id)
                || moves.board.is_rolled_back(movement.id);
            if movement.phase != alveole_model::MovePhase::Copying || driven {
                continue;
            }
            let Some(spec) = held.sites.iter().find(|s| s.site_id == movement.site_id) else {
                continue;
            };
            tracing::info!(move_id = %movement.id, site = %movement.site_id, to = %movement.to_node, "moving a site away");
            let driver = tokio::spawn(moves.source.clone().drive(
                movement.clone(),
                spec.clone(),
                held.generation,
            ));
            moves
                .drivers
                .insert(movement.id, (movement.site_id, driver));
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
            Err(error) => tracing::warn!(%error, "could not measure the volumes"),
        }
    }

    /// How often volumes are measured (walking them costs I/O).
    pub fn with_usage_interval(mut self, every: Duration) -> Self {
        self.usage_every = every;
        self
    }

    pub fn held_generation(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.generation)
    }

    /// Renews the agent's certificate once half its life has passed. Failing is not fatal:
    /// the next pass tries again, and the agent serves from its held state meanwhile.
    async fn renew_certificate_if_due(&mut self) {
        if !self.credential.renewal_due(chrono::Utc::now()) {
            return;
        }
        match self.renew_certificate().await {
            Ok(()) => {
                tracing::info!(not_after = %self.credential.not_after, "renewed the agent certificate")
            }
            Err(error) => {
                tracing::warn!(%error, not_after = %self.credential.not_after, "could not renew the agent certificate; an expired one means enrolling again")
            }
        }
    }

    /// Asks the panel for a fresh certificate for the same key, keeps it on disk, uses it.
    pub async fn renew_certificate(&mut self) -> Result<(), AgentError> {
        let issued = self
            .panel
            .renew(&self.credential.signing_request()?)
            .await?;
        let renewed = self.credential.renewed(issued);
        renewed.save(&self.credential_path)?;
        self.panel.authenticate(&renewed)?;
        if let Some(moves) = &self.moves {
            moves.identity.update(renewed.clone());
        }
        self.credential = renewed;
        Ok(())
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// One pass: ask the panel (if it answers), then reconcile from the held document.
    pub async fn pass(&mut self) -> Option<Report> {
        self.renew_certificate_if_due().await;
        let fetched = if self.report_rollbacks().await {
            self.panel.desired_state().await
        } else {
            Err(AgentError::Refused {
                status: 0,
                detail: "a rollback must reach the panel before a newer desired state".into(),
            })
        };
        match fetched {
            Ok(offered) => match self.ledger.offer(self.held.as_ref(), &offered) {
                Ok(Verdict::Accepted) => {
                    tracing::info!(
                        generation = offered.generation,
                        "accepted a new desired state"
                    );
                    self.held = Some(offered);
                }
                Ok(Verdict::Unchanged) => {}
                Ok(Verdict::Rejected(reason)) => tracing::warn!(%reason, "refused a desired state"),
                Err(error) => tracing::error!(%error, "could not persist the desired state"),
            },
            Err(error) => {
                tracing::warn!(%error, generation = ?self.held_generation(), "panel unreachable; serving from the held desired state")
            }
        }
        self.follow_moves();
        let filter = self.input_filter.decide(
            self.held.as_ref()?.input_filter.as_ref(),
            chrono::Utc::now(),
        );
        if let Some(detail) = &filter.rolled_back {
            tracing::warn!(%detail, "input filter rolled back");
            let event = (
                alveole_model::AgentEventKind::InputFilterRolledBack,
                None,
                detail.clone(),
            );
            if let Err(error) = self.outbox.push(vec![event], chrono::Utc::now()) {
                tracing::warn!(%error, "could not record the rollback");
            }
        }
        let outcome = self
            .reconciler
            .reconcile_with(self.held.as_ref()?, filter.filter.as_ref())
            .await;
        if let Ok(report) = &outcome {
            self.record_events(report);
            self.refresh_usage().await;
        }
        let held = self.held.as_ref()?;
        let sites = match &outcome {
            Ok(report) => {
                let mut routes = routes_of(held, report);
                if let Some(moves) = &self.moves {
                    moves.board.add_routes(&mut routes, held);
                }
                self.ingress.set_routes(routes);
                site_reports(held, report, &self.usage)
            }
            Err(error) => {
                tracing::warn!(%error, "the container engine is unreachable; routes unchanged");
                let reason = format!("the node's container engine is unreachable: {error}");
                held.sites
                    .iter()
                    .map(|s| SiteReport {
                        site_id: s.site_id,
                        state: SiteState::Failing,
                        reason: Some(reason.clone()),
                        volume_bytes: self.usage.get(&s.site_id).copied(),
                    })
                    .collect()
            }
        };
        let mut warnings: Vec<String> = filter.warning.into_iter().collect();
        if let Ok(pass) = &outcome
            && pass.routing_error.is_some()
            && filter.filter.is_some()
        {
            warnings.push("the input filter is not in place: the node's table is not".to_owned());
        }
        if !self.isolated {
            warnings.push(
                "nft is not installed: no dedicated address is routed, and sites can reach this host's own services"
                    .to_owned(),
            );
        }
        if let Ok(pass) = &outcome {
            if let Some(error) = &pass.routing_error {
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
        }
        let uplink = match &outcome {
            Ok(pass) => pass.uplink.clone(),
            Err(_) => self.reconciler.converge_uplink(held).await,
        };
        if let Some(uplink) = &uplink {
            warnings.extend(uplink.problems.iter().map(|p| format!("uplink: {p}")));
        }
        let report = NodeReport {
            generation: Some(held.generation),
            sites,
            resources: resources(self.ledger.path()),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            warnings,
            events: self.outbox.pending().to_vec(),
            inventory: self
                .inventory_sent
                .is_none_or(|at| at.elapsed() >= INVENTORY_EVERY)
                .then(|| {
                    crate::control::inventory::collect(self.reconciler.runtime().engine_version())
                }),
            addresses: uplink.map(|u| u.held),
            endpoints: self.moves.as_ref().map(|m| m.endpoints),
        };
        match self.panel.report(&report).await {
            Ok(()) => {
                // Only a pass whose table is in place vouches for its filter.
                if outcome.as_ref().is_ok_and(|p| p.routing_error.is_none())
                    && self.input_filter.panel_reached()
                {
                    tracing::info!(
                        "the input filter is confirmed: the panel answers with it in place"
                    );
                }
                if report.inventory.is_some() {
                    self.inventory_sent = Some(tokio::time::Instant::now());
                }
                if let Some(last) = report.events.last()
                    && let Err(error) = self.outbox.acknowledge(last.seq)
                {
                    tracing::warn!(%error, "could not update the outbox");
                }
            }
            Err(error) => {
                tracing::debug!(%error, "could not send the report; the next pass will")
            }
        }
        outcome.ok()
    }

    /// Puts what this pass did in the outbox: the application of a new desired state, or
    /// repairs of drift when the desired state had not changed.
    fn record_events(&mut self, report: &Report) {
        let Some(generation) = self.held_generation() else {
            return;
        };
        let mut events: Vec<_> = if self.applied == Some(generation) {
            report
                .actions
                .iter()
                .map(|action| {
                    let (site, detail) = describe_repair(action);
                    (alveole_model::AgentEventKind::DriftRepaired, site, detail)
                })
                .collect()
        } else if report.actions.is_empty() {
            Vec::new()
        } else {
            vec![(
                alveole_model::AgentEventKind::Applied,
                None,
                format!(
                    "applied desired state {generation}: {} change(s) on the node",
                    report.actions.len()
                ),
            )]
        };
        if let Some(drift) = report.routing_drift() {
            events.push((
                alveole_model::AgentEventKind::DriftRepaired,
                None,
                describe_table_drift(drift),
            ));
        }
        self.applied = Some(generation);
        if let Err(error) = self.outbox.push(events, chrono::Utc::now()) {
            tracing::warn!(%error, "could not record the pass's events");
        }
    }

    /// Runs passes until `shutdown` resolves: on a timer, and as soon as the engine reports a
    /// change to this node's containers (drift is repaired without waiting for the timer).
    pub async fn run(mut self, timing: Timing, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let poke = Arc::new(tokio::sync::Notify::new());
        let watcher = self
            .reconciler
            .runtime()
            .watch(self.reconciler.naming(), poke.clone());
        let listener = tokio::spawn(listen_for_changes(
            self.panel.clone(),
            self.held_generation(),
            poke.clone(),
            timing.pass,
        ));
        let mut ticker = tokio::time::interval(timing.pass);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
                () = poke.notified() => {}
            }
            self.pass().await;
        }
        listener.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
    }
}

/// How often the node's inventory (packages, versions) is sent again.
const INVENTORY_EVERY: Duration = Duration::from_secs(3600);

/// How long one long poll of the panel may wait (under the client's 30 s timeout).
const LONG_POLL: Duration = Duration::from_secs(25);

/// Long-polls the panel for a desired state newer than the last one seen, and pokes the agent
/// loop when there is one: a change reaches the node in about the time of a request, not of a
/// timer. When the panel is unreachable, retries every `pause`.
async fn listen_for_changes(
    panel: PanelClient,
    mut seen: Option<u64>,
    poke: Arc<tokio::sync::Notify>,
    pause: Duration,
) {
    loop {
        match panel.desired_state_after(seen, LONG_POLL).await {
            Ok(offered) if seen.is_none_or(|seen| offered.generation > seen) => {
                seen = Some(offered.generation);
                poke.notify_one();
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(pause).await,
        }
    }
}

/// The site a repair concerns and what it was, in words.
/// How many lines of a table's drift an event keeps (a flushed table lists every rule).
const DRIFT_LINES_KEPT: usize = 40;

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

fn describe_repair(action: &Action) -> (Option<alveole_model::SiteId>, String) {
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
    usage: &std::collections::BTreeMap<alveole_model::SiteId, u64>,
) -> Vec<SiteReport> {
    desired
        .sites
        .iter()
        .map(|spec| {
            let failure = report.failures.iter().find(|(action, _)| match action {
                Action::Create { site }
                | Action::Replace { site, .. }
                | Action::CreateVolume { site } => *site == spec.site_id,
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
                volume_bytes: usage.get(&spec.site_id).copied(),
            }
        })
        .collect()
}

/// This machine's CPUs, load, memory (from /proc) and the disk holding `path` (from `df`).
fn resources(path: &Path) -> NodeResources {
    let read = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let kib = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n * 1024)
    };
    let load_1m = read("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(dir)
        .output()
        .ok();
    let disk: Vec<u64> = df
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    NodeResources {
        cpus: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        load_1m,
        memory_total_bytes: kib("MemTotal:"),
        memory_available_bytes: kib("MemAvailable:"),
        disk_total_bytes: disk.first().copied().unwrap_or(0),
        disk_available_bytes: disk.get(1).copied().unwrap_or(0),
    }
}
