//! The agent, as a few tasks joined by channels:
//! - `fetch`: long-polls the panel and hands each newer desired state to the ledger (after
//!   telling the panel of any rollback it has not heard of);
//! - `ledger`: accepts documents (a newer generation only), keeps them, publishes the held one;
//! - `passes`: on a newly held document, an engine event or the timer, observes the node,
//!   plans and acts (taking no input from what woke it), follows moves, routes the ingress,
//!   and publishes what the pass found;
//! - `report`: sends each pass's report with the events of the outbox, and renews the
//!   agent's certificate at half its life;
//! - the move handlers (`moves`): the peer server and one driver per outgoing move.
//!
//! `Agent::pass` runs the same steps once, in order, for tests that drive the agent by hand.

mod backups;
mod fetch;
mod moves;
mod passes;
mod report;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alveole_model::{AgentEndpoints, Clock, DesiredState, SystemClock};

pub use crate::control::identity::{Credential, credential};
pub use crate::control::panel::{AgentError, Control, PanelClient};
pub use passes::{Pass, routes_of, site_reports};

use crate::control::files::{StateDir, StateFiles};
use crate::control::ledger::{Ledger, Verdict};
use crate::control::outbox::Outbox;
use crate::engine::reconcile::{Reconciler, Report};
use crate::engine::runtime::{MoveRuntime, Naming};
use crate::ingress::Ingress;
use crate::net::confirm::{DEFAULT_WINDOW, InputFilterGuard};
use crate::net::routing::{IngressPorts, NftCommand, NftRouting, Routing};
use crate::net::uplink::{Interface, Uplink};

/// Until told otherwise, dedicated addresses' port 80 stays port 80 (an ingress listening
/// there), and 443 is closed.
const DEFAULT_INGRESS_PORTS: IngressPorts = IngressPorts {
    http: 80,
    https: None,
};

/// How often the agent reconciles when nothing wakes it sooner (and retries the panel).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub pass: Duration,
}

/// What an agent is made of: its side effects, each behind a narrow trait (the real ones in
/// production, fakes in tests).
#[derive(Debug)]
pub struct Parts<R> {
    pub credential: Credential,
    pub control: Arc<dyn Control>,
    pub files: Arc<dyn StateFiles>,
    pub runtime: R,
    pub ingress: Arc<Ingress>,
    pub clock: Arc<dyn Clock>,
    /// The node's table; `None`: no routing (nft is missing), said in every report.
    pub routing: Option<Arc<dyn Routing>>,
    /// The panel's CA, when pinned: moves need it.
    pub panel_ca: Option<String>,
}

/// One node's agent.
pub struct Agent<R> {
    fetcher: fetch::Fetcher,
    ledger: Ledger,
    passes: passes::Passes<R>,
    reporter: report::Reporter,
    files: Arc<dyn StateFiles>,
    control: Arc<dyn Control>,
    /// Shared with the passes (which decide) and the reporter (which confirms).
    filter: Arc<Mutex<InputFilterGuard>>,
    panel_ca: Option<String>,
    outbox: Arc<Mutex<Outbox>>,
    clock: Arc<dyn Clock>,
    vault_dir: Option<std::path::PathBuf>,
}

impl<R> std::fmt::Debug for Agent<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.reporter.credential().node_id)
            .field("generation", &self.ledger.held().map(|h| h.generation))
            .finish_non_exhaustive()
    }
}

impl<R: MoveRuntime + 'static> Agent<R> {
    /// The agent of a real node: the state directory on disk, the system's clock, and the
    /// node's table through `nft` when it is installed.
    pub fn new(
        credential: Credential,
        panel: PanelClient,
        state_dir: &Path,
        runtime: R,
        ingress: Arc<Ingress>,
    ) -> Self {
        let naming = Naming {
            node_id: credential.node_id,
        };
        let nft = NftCommand::host();
        let routing: Option<Arc<dyn Routing>> = if nft.available() {
            crate::net::routing::remove_legacy_table(&nft, &naming);
            Some(Arc::new(NftRouting::new(nft, DEFAULT_INGRESS_PORTS)))
        } else {
            tracing::error!(
                "nft is not installed: this node routes no dedicated address, and its sites can reach the host's own services (install nftables)"
            );
            None
        };
        Self::assemble(Parts {
            credential,
            panel_ca: panel.ca_pem().map(str::to_owned),
            control: Arc::new(panel),
            files: Arc::new(StateDir::new(state_dir)),
            runtime,
            ingress,
            clock: Arc::new(SystemClock),
            routing,
        })
    }

    /// An agent from its parts.
    pub fn assemble(parts: Parts<R>) -> Self {
        let naming = Naming {
            node_id: parts.credential.node_id,
        };
        let files = parts.files;
        let outbox = Arc::new(Mutex::new(Outbox::open(files.clone())));
        let filter = Arc::new(Mutex::new(InputFilterGuard::load(
            files.clone(),
            DEFAULT_WINDOW,
        )));
        // Replacements hold and repoint the site's requests in this agent's ingress.
        let traffic: Arc<dyn crate::engine::runtime::Traffic> = Arc::new(parts.ingress.clone());
        let mut reconciler = Reconciler::new(parts.runtime, naming.clone()).with_traffic(traffic);
        if let Some(routing) = parts.routing {
            reconciler.set_routing(routing);
        }
        let engine_version = reconciler.runtime().engine_version();
        Self {
            fetcher: fetch::Fetcher::new(parts.control.clone()),
            ledger: Ledger::open(naming.node_id, files.clone()),
            passes: passes::Passes::new(
                reconciler,
                parts.ingress,
                parts.clock.clone(),
                outbox.clone(),
                filter.clone(),
            ),
            reporter: report::Reporter::new(report::ReporterParts {
                credential: parts.credential,
                control: parts.control.clone(),
                files: files.clone(),
                clock: parts.clock.clone(),
                outbox: outbox.clone(),
                filter: filter.clone(),
                engine_version,
            }),
            files,
            control: parts.control,
            filter,
            panel_ca: parts.panel_ca,
            outbox,
            clock: parts.clock,
            vault_dir: None,
        }
    }

    /// How long a new input filter may go without the panel being reached before the agent
    /// rolls it back.
    pub fn with_input_filter_window(self, window: Duration) -> Self {
        *self
            .filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            InputFilterGuard::load(self.files.clone(), window);
        self
    }

    /// Where ports 80 and 443 of dedicated addresses lead: the ports this agent's ingress
    /// listens on.
    pub fn with_ingress_ports(mut self, ports: IngressPorts) -> Self {
        if self.passes.routes_addresses() {
            self.passes
                .set_routing(Arc::new(NftRouting::new(NftCommand::host(), ports)));
        }
        self
    }

    /// Keeps the node's table through `routing` (another namespace's `nft`, a fake).
    pub fn with_routing(mut self, routing: Arc<dyn Routing>) -> Self {
        self.passes.set_routing(routing);
        self
    }

    /// Holds the node's public addresses on `interface` (its uplink): adds, announces and
    /// removes them as the desired state says, and reports them.
    pub fn with_uplink(mut self, interface: Box<dyn Interface>) -> Self {
        let uplink = Uplink::new(interface, self.files.clone());
        self.passes.set_uplink(Arc::new(uplink));
        self
    }

    /// How often volumes are measured (walking them costs I/O).
    pub fn with_usage_interval(mut self, every: Duration) -> Self {
        self.passes.set_usage_interval(every);
        self
    }

    /// Keeps other nodes' backups (when the panel makes this node a vault) under `dir`
    /// rather than the state directory's `vault/`. Before `with_moves`.
    pub fn with_vault_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.vault_dir = Some(dir);
        self
    }

    /// Takes part in site moves, backups and vaults: serves other agents on `listener`
    /// (mutual TLS with the panel's CA) and tells the panel `endpoints`, where other agents
    /// reach this one. Needs the panel's CA pinned (an agent enrolled with
    /// `--panel-ca-sha256`).
    pub fn with_moves(
        mut self,
        listener: tokio::net::TcpListener,
        endpoints: AgentEndpoints,
    ) -> Result<Self, AgentError> {
        let ca_pem = self.panel_ca.clone().ok_or(AgentError::NoPinnedCa)?;
        let vault_dir = self
            .vault_dir
            .clone()
            .unwrap_or_else(|| self.files.locate("vault"));
        let vault = Arc::new(crate::vault::Vault::new(vault_dir));
        let handlers = moves::MoveHandlers::start(moves::MoveSetup {
            listener,
            credential: self.reporter.credential().clone(),
            ca_pem,
            files: self.files.clone(),
            runtime: self.passes.shared_runtime(),
            naming: self.passes.naming().clone(),
            ingress: self.passes.ingress(),
            control: self.control.clone(),
            vault: vault.clone(),
        });
        self.fetcher.set_board(handlers.board());
        self.reporter
            .take_part_in_moves(endpoints, handlers.identity());
        // Backups reach vaults as moves reach targets: with the agent's peer identity.
        self.passes.set_backups(backups::Backups::new(
            self.passes.shared_runtime(),
            vault,
            self.passes.naming().clone(),
            handlers.identity(),
            self.files.clone(),
            self.outbox.clone(),
            self.clock.clone(),
        ));
        self.passes.set_moves(handlers);
        Ok(self)
    }

    pub fn held_generation(&self) -> Option<u64> {
        self.ledger.held().map(|h| h.generation)
    }

    pub fn credential(&self) -> &Credential {
        self.reporter.credential()
    }

    /// Asks the panel for a fresh certificate for the same key, keeps it, uses it.
    pub async fn renew_certificate(&mut self) -> Result<(), AgentError> {
        self.reporter.renew_certificate().await
    }

    /// One turn of every task, in order: ask the panel (if it answers), keep a newer
    /// document, reconcile from the held one, report. `None` when there is no document yet,
    /// or the engine did not answer.
    pub async fn pass(&mut self) -> Option<Report> {
        self.reporter.renew_certificate_if_due().await;
        match self.fetcher.fetch(None, Duration::ZERO).await {
            Ok(offered) => {
                accept(&mut self.ledger, offered);
            }
            Err(error) => {
                tracing::warn!(error = %crate::describe(&error), generation = ?self.held_generation(), "panel unreachable; serving from the held desired state");
            }
        }
        let held = self.ledger.held()?.clone();
        let pass = self.passes.pass(&held).await;
        self.reporter.report(&pass).await;
        pass.engine
    }

    /// Runs the tasks until `shutdown` resolves.
    pub async fn run(mut self, timing: Timing, shutdown: impl std::future::Future<Output = ()>) {
        // Back from an outage, the panel may have replaced the held document meanwhile (a
        // node declared lost is given nothing to run): ask it first, briefly, so as never to
        // serve what it no longer asks for. Unreachable, the held document is served.
        match tokio::time::timeout(START_ASK, self.fetcher.fetch(None, Duration::ZERO)).await {
            Ok(Ok(offered)) => {
                accept(&mut self.ledger, offered);
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %crate::describe(&error), "panel unreachable at start; serving from the held desired state");
            }
            Err(_) => tracing::warn!(
                "the panel did not answer at start; serving from the held desired state"
            ),
        }
        let held = self.ledger.held().cloned().map(Arc::new);
        let (documents, offered) = tokio::sync::mpsc::channel(4);
        let (publish_held, held) = tokio::sync::watch::channel(held);
        let (publish_pass, passes) = tokio::sync::watch::channel(None);
        // A set, so that the helpers stop with this future however it ends (dropped too).
        let mut helpers = tokio::task::JoinSet::new();
        helpers.spawn(self.fetcher.run(held.clone(), documents, timing.pass));
        helpers.spawn(keep(self.ledger, offered, publish_held));
        helpers.spawn(self.reporter.run(passes));
        tokio::select! {
            () = shutdown => {}
            () = self.passes.run(held, publish_pass, timing.pass) => {}
        }
        helpers.abort_all();
    }
}

/// How long an agent that starts waits for the panel before serving its held document.
const START_ASK: Duration = Duration::from_secs(5);

/// Offers a document to the ledger; says what became of it.
fn accept(ledger: &mut Ledger, offered: DesiredState) -> bool {
    let generation = offered.generation;
    match ledger.offer(offered) {
        Ok(Verdict::Accepted) => {
            tracing::info!(generation, "accepted a new desired state");
            true
        }
        Ok(Verdict::Unchanged) => false,
        Ok(Verdict::Rejected(reason)) => {
            tracing::warn!(%reason, "refused a desired state");
            false
        }
        Err(error) => {
            tracing::error!(error = %crate::describe(&error), "could not keep the desired state");
            false
        }
    }
}

/// The ledger task: keeps each document the fetcher hands it, and publishes the held one.
async fn keep(
    mut ledger: Ledger,
    mut offered: tokio::sync::mpsc::Receiver<DesiredState>,
    held: tokio::sync::watch::Sender<Option<Arc<DesiredState>>>,
) {
    while let Some(document) = offered.recv().await {
        if accept(&mut ledger, document) {
            held.send_replace(ledger.held().cloned().map(Arc::new));
        }
    }
}

#[cfg(test)]
mod tests;
