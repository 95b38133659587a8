//! The move handlers of an agent that takes part in moves: the server other agents call
//! (this node as a move's target, and as a vault for their backups), and one driver per move
//! away from this node (its source), started and stopped as the held desired state lists them.

use std::collections::BTreeMap;
use std::sync::Arc;

use alveole_model::{DesiredState, MovePhase, SiteId, SiteMoveId};
use tokio::task::JoinHandle;

use crate::control::files::StateFiles;
use crate::control::identity::Credential;
use crate::control::panel::Control;
use crate::engine::runtime::{MoveRuntime, Naming};
use crate::ingress::{Ingress, Routes};
use crate::moves::Board;
use crate::moves::peer::{PeerHandler, PeerIdentity, PeerResponse};
use crate::moves::source::Source;
use crate::moves::target::Target;
use crate::vault::Vault;

/// What starting the handlers needs.
pub(super) struct MoveSetup<R> {
    pub listener: tokio::net::TcpListener,
    pub credential: Credential,
    pub ca_pem: String,
    pub files: Arc<dyn StateFiles>,
    pub runtime: Arc<R>,
    pub naming: Naming,
    pub ingress: Arc<Ingress>,
    pub control: Arc<dyn Control>,
    /// Other nodes' backups, kept under this directory when the panel grants them.
    pub vault: Arc<Vault>,
}

/// Routes other agents' requests: `/vault/` to the vault, the rest to the move target.
struct PeerRoutes<R> {
    target: Target<R>,
    vault: Arc<Vault>,
}

#[async_trait::async_trait]
impl<R: MoveRuntime + 'static> PeerHandler for PeerRoutes<R> {
    async fn handle(
        &self,
        peer: alveole_model::NodeId,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> PeerResponse {
        if request.uri().path().starts_with("/vault/") {
            self.vault.handle(peer, request).await
        } else {
            self.target.handle(peer, request).await
        }
    }
}

pub(super) struct MoveHandlers<R> {
    board: Arc<Board>,
    source: Arc<Source<R>>,
    identity: PeerIdentity,
    drivers: BTreeMap<SiteMoveId, (SiteId, JoinHandle<()>)>,
    server: JoinHandle<std::io::Result<()>>,
    vault: Arc<Vault>,
    /// The panel's own requests, answered from the held document.
    requests: Arc<crate::requests::PanelRequests<R>>,
}

impl<R> Drop for MoveHandlers<R> {
    fn drop(&mut self) {
        self.server.abort();
        for (_, driver) in self.drivers.values() {
            driver.abort();
        }
    }
}

impl<R: MoveRuntime + 'static> MoveHandlers<R> {
    /// Serves other agents on the setup's listener from now on.
    pub(super) fn start(setup: MoveSetup<R>) -> Self {
        let identity = PeerIdentity::new(setup.credential, setup.ca_pem);
        let board = Arc::new(Board::open(setup.files.clone()));
        let target = Target::new(
            setup.runtime.clone(),
            setup.naming.clone(),
            board.clone(),
            setup.ingress.clone(),
        );
        let requests = Arc::new(crate::requests::PanelRequests::new(
            setup.runtime.clone(),
            setup.naming.clone(),
            setup.files.locate("requests"),
        ));
        let server = tokio::spawn(crate::moves::peer::serve(
            setup.listener,
            identity.clone(),
            Arc::new(PeerRoutes {
                target,
                vault: setup.vault.clone(),
            }),
            Some(requests.clone()),
        ));
        let source = Arc::new(Source {
            runtime: setup.runtime,
            naming: setup.naming,
            ingress: setup.ingress,
            panel: setup.control,
            identity: identity.clone(),
            board: board.clone(),
        });
        Self {
            board,
            source,
            identity,
            drivers: BTreeMap::new(),
            server,
            vault: setup.vault,
            requests,
        }
    }

    pub(super) fn board(&self) -> Arc<Board> {
        self.board.clone()
    }

    pub(super) fn identity(&self) -> PeerIdentity {
        self.identity.clone()
    }

    /// Grants the vault's repositories to the nodes the held document names.
    fn grant(&self, held: &DesiredState) {
        let grants = held
            .vault
            .iter()
            .flat_map(|vault| &vault.repositories)
            .map(|repository| {
                (
                    repository.name.clone(),
                    repository.writers.iter().copied().collect(),
                )
            })
            .collect();
        self.vault.set_grants(grants);
    }

    /// Follows the held document's moves: ends forwardings, starts drivers for new moves,
    /// stops those of moves the panel cancelled.
    pub(super) fn follow(&mut self, held: &DesiredState, ingress: &Ingress) {
        self.grant(held);
        self.requests.follow(held);
        for site in self.board.follow(held) {
            tracing::info!(%site, "a moved site's forwarding is over");
            ingress.stop_forwarding(site);
        }
        let mut stopped = Vec::new();
        self.drivers.retain(|id, (site, driver)| {
            let listed = held.moves_out.iter().any(|m| m.id == *id);
            if !listed {
                driver.abort();
                stopped.push((*id, *site));
            }
            listed && !driver.is_finished()
        });
        for (id, site) in stopped {
            if self.board.is_switched(id) {
                continue;
            }
            // Cancelled, maybe during a freeze: the site must not stay paused.
            let (runtime, container) = (
                self.source.runtime.clone(),
                self.source.naming.container(site),
            );
            tokio::spawn(async move {
                let _ = runtime.unpause(&container).await;
            });
        }
        for movement in &held.moves_out {
            let driven = self.drivers.contains_key(&movement.id)
                || self.board.is_switched(movement.id)
                || self.board.is_rolled_back(movement.id);
            if movement.phase != MovePhase::Copying || driven {
                continue;
            }
            let Some(spec) = held.sites.iter().find(|s| s.site_id == movement.site_id) else {
                continue;
            };
            tracing::info!(move_id = %movement.id, site = %movement.site_id, to = %movement.to_node, "moving a site away");
            let driver = tokio::spawn(self.source.clone().drive(
                movement.clone(),
                spec.clone(),
                held.generation,
            ));
            self.drivers.insert(movement.id, (movement.site_id, driver));
        }
    }

    /// Adds what moves route through this node's ingress.
    pub(super) fn add_routes(&self, routes: &mut Routes, held: &DesiredState) {
        self.board.add_routes(routes, held);
    }
}
