//! Site moves, on the agents' side. The source agent drives a move ([`source`]): it copies
//! the site's volume to the target agent in passes while the site serves, then holds the
//! site's requests, pauses it, sends the last changes, has the target start it, asks the
//! panel for the switch, and releases the held requests to the target. The target agent
//! ([`target`]) answers the source over mutual TLS ([`peer`], [`wire`]).
//!
//! The [`Board`] is what the agent loop, the move drivers and the peer server share: the
//! moves the node's desired state lists, the sites this node switched away (it forwards their
//! requests), and the rollbacks the panel has not heard of yet. The last two are kept on disk:
//! after a restart, the agent must neither serve a site it gave away nor forget to tell the
//! panel it kept one.

pub mod peer;
pub mod source;
pub mod target;
pub mod volume_sync;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alveole_model::{
    DesiredState, Hostname, IncomingMove, MoveOutcome, MovePhase, SiteId, SiteMoveId,
};
use serde::{Deserialize, Serialize};

use crate::control::files::StateFiles;
use crate::ingress::{Routes, Upstream};

const FILE: &str = "moves.json";

/// A site this node switched to another: its requests go to the target's ingress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Switched {
    pub site: SiteId,
    pub hostnames: Vec<Hostname>,
    pub to: SocketAddr,
    /// The generation this node held when it switched: a later document without the move
    /// means its forwarding is over.
    pub generation: u64,
}

/// What must survive a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Kept {
    switched: BTreeMap<SiteMoveId, Switched>,
    /// Rollbacks to report; the move is not tried again while listed.
    rolled_back: BTreeMap<SiteMoveId, MoveOutcome>,
    /// Moves whose switch was asked and not yet answered: after a restart, whether the panel
    /// switched is unknown, so the move is rolled back (which undoes a switch).
    #[serde(default)]
    switching: std::collections::BTreeSet<SiteMoveId>,
}

/// Shared by the agent loop, the move drivers and the peer server.
#[derive(Debug)]
pub struct Board {
    files: Arc<dyn StateFiles>,
    kept: Mutex<Kept>,
    incoming: Mutex<BTreeMap<SiteMoveId, IncomingMove>>,
    /// Sites a move started here before their switch, and where they answer.
    started: Mutex<BTreeMap<SiteMoveId, SocketAddr>>,
    /// Wakes whoever tells the panel of rollbacks (the fetch task) when one is recorded.
    rollbacks: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Board {
    /// The board kept in `files` (`moves.json`); an unreadable file is reported and read as
    /// empty.
    pub fn open(files: Arc<dyn StateFiles>) -> Self {
        let kept = match files.read(FILE) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::error!(%error, path = %files.locate(FILE).display(), "the moves file is unreadable; starting without it");
                Kept::default()
            }),
            Ok(None) | Err(_) => Kept::default(),
        };
        Self {
            files,
            kept: Mutex::new(kept),
            incoming: Mutex::new(BTreeMap::new()),
            started: Mutex::new(BTreeMap::new()),
            rollbacks: tokio::sync::Notify::new(),
        }
    }

    fn save(&self, kept: &Kept) {
        let written = serde_json::to_vec(kept)
            .map_err(std::io::Error::other)
            .and_then(|bytes| self.files.write(FILE, &bytes));
        if let Err(error) = written {
            tracing::error!(%error, path = %self.files.locate(FILE).display(), "could not keep the moves file");
        }
    }

    /// Follows a newly held desired state: the moves this node may receive, and the ends of
    /// forwarding periods. Returns the sites whose forwarding ended.
    pub fn follow(&self, desired: &DesiredState) -> Vec<SiteId> {
        *lock(&self.incoming) = desired.moves_in.iter().map(|m| (m.id, m.clone())).collect();
        lock(&self.started).retain(|id, _| desired.moves_in.iter().any(|m| m.id == *id));
        let mut kept = lock(&self.kept);
        let mut ended = Vec::new();
        kept.switched.retain(|id, switched| {
            let listed = desired.moves_out.iter().any(|m| m.id == *id);
            let keep = listed || desired.generation <= switched.generation;
            if !keep {
                ended.push(switched.site);
            }
            keep
        });
        // A rollback the panel recorded: the move is failed, hence no longer listed.
        let before = kept.rolled_back.len() + kept.switching.len();
        let listed = |id: &SiteMoveId| desired.moves_out.iter().any(|m| m.id == *id);
        kept.rolled_back.retain(|id, _| listed(id));
        kept.switching.retain(|id| listed(id));
        if !ended.is_empty() || kept.rolled_back.len() + kept.switching.len() != before {
            self.save(&kept);
        }
        ended
    }

    pub fn incoming(&self, id: SiteMoveId) -> Option<IncomingMove> {
        lock(&self.incoming).get(&id).cloned()
    }

    pub fn started(&self, id: SiteMoveId, at: SocketAddr) {
        lock(&self.started).insert(id, at);
    }

    pub fn forget_started(&self, id: SiteMoveId) {
        lock(&self.started).remove(&id);
    }

    pub fn switched(&self, id: SiteMoveId, switched: Switched) {
        let mut kept = lock(&self.kept);
        kept.switching.remove(&id);
        kept.switched.insert(id, switched);
        self.save(&kept);
    }

    /// Kept before the switch is asked.
    pub fn switching(&self, id: SiteMoveId) {
        let mut kept = lock(&self.kept);
        kept.switching.insert(id);
        self.save(&kept);
    }

    /// Whether a switch was asked and its answer never arrived (the agent restarted).
    pub fn was_switching(&self, id: SiteMoveId) -> bool {
        lock(&self.kept).switching.contains(&id)
    }

    pub fn is_switched(&self, id: SiteMoveId) -> bool {
        lock(&self.kept).switched.contains_key(&id)
    }

    pub fn rolled_back(&self, id: SiteMoveId, outcome: MoveOutcome) {
        let mut kept = lock(&self.kept);
        kept.switching.remove(&id);
        kept.rolled_back.insert(id, outcome);
        self.save(&kept);
        // A permit is kept when nobody waits: the next wait sees it at once.
        self.rollbacks.notify_one();
    }

    /// Resolves once a rollback is recorded (at once if one was since the last wait).
    pub async fn rollback_recorded(&self) {
        self.rollbacks.notified().await;
    }

    pub fn is_rolled_back(&self, id: SiteMoveId) -> bool {
        lock(&self.kept).rolled_back.contains_key(&id)
    }

    /// Rollbacks the panel has not acknowledged yet.
    pub fn unreported(&self) -> Vec<(SiteMoveId, MoveOutcome)> {
        lock(&self.kept)
            .rolled_back
            .iter()
            .map(|(id, outcome)| (*id, outcome.clone()))
            .collect()
    }

    /// Adds what moves route through this node's ingress: the sites it switched away (to the
    /// target's ingress, also once the desired state no longer lists them) and the sites a
    /// move started here before their switch (so forwarded requests find them at once).
    pub fn add_routes(&self, routes: &mut Routes, desired: &DesiredState) {
        let kept = lock(&self.kept);
        let switched = kept.switched.values().map(|s| (s.site, &s.hostnames, s.to));
        let forwarding = desired
            .moves_out
            .iter()
            .filter(|m| m.phase == MovePhase::Forwarding)
            .map(|m| (m.site_id, &m.hostnames, m.target_ingress));
        for (site, hostnames, to) in switched.chain(forwarding) {
            for hostname in hostnames {
                routes.insert(hostname, Upstream { site, address: to });
            }
        }
        let incoming = lock(&self.incoming);
        for (id, at) in lock(&self.started).iter() {
            if let Some(movement) = incoming.get(id) {
                for hostname in &movement.site.hostnames {
                    routes.insert(
                        hostname,
                        Upstream {
                            site: movement.site.site_id,
                            address: *at,
                        },
                    );
                }
            }
        }
    }
}
