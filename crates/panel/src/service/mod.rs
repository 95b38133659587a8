//! The panel's rules, one file per area: what may be done, with which checks, in which order.
//! The JSON API (`api/`), the pages (`pages/`) and the background tasks (`background/`) are
//! adapters over it: they turn requests or timers into calls here, and never call each other.

pub mod addresses;
pub mod agent_requests;
pub mod agents;
pub mod audit;
pub mod backups;
pub mod certificates;
pub mod databases;
pub mod drills;
pub mod evacuations;
pub mod members;
pub mod records;
pub mod secrets;
pub mod site_keys;
pub mod site_moves;
pub mod traffic;

use std::sync::Arc;

use alveole_store::Store;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::background::Task;
use crate::config::PanelConfig;

pub use records::Resource;

/// The rules over the store, with the panel's settings and clock.
#[derive(Clone, Debug)]
pub struct Service(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    config: PanelConfig,
    /// Woken after every change, for agents waiting on their desired state.
    changed: Notify,
    /// One per background task: wakes it before its timer.
    pokes: [Notify; Task::ALL.len()],
    /// The account at the co-op's ACME CA, once reached.
    ca: tokio::sync::Mutex<Option<crate::acme::Ca>>,
    /// The generation each node last reported holding, and a wake-up at each report: ACME
    /// orders wait for the nodes to answer their challenges.
    reported: std::sync::Mutex<std::collections::HashMap<alveole_model::NodeId, u64>>,
    report_seen: Notify,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, config: PanelConfig) -> Self {
        Self(Arc::new(Inner {
            store,
            config,
            changed: Notify::new(),
            pokes: std::array::from_fn(|_| Notify::new()),
            ca: tokio::sync::Mutex::new(None),
            reported: std::sync::Mutex::default(),
            report_seen: Notify::new(),
        }))
    }

    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    pub fn store_arc(&self) -> Arc<dyn Store> {
        self.0.store.clone()
    }

    pub fn config(&self) -> &PanelConfig {
        &self.0.config
    }

    /// Now, as the panel's clock says.
    pub fn now(&self) -> DateTime<Utc> {
        self.0.config.clock.now()
    }

    /// What agents waiting for a newer desired state wait on.
    pub fn changed(&self) -> &Notify {
        &self.0.changed
    }

    /// Wakes the agents waiting for their desired state: something may concern their node.
    pub fn tell_nodes(&self) {
        self.0.changed.notify_waiters();
    }

    /// Runs a background task now rather than at its next tick.
    pub fn poke(&self, task: Task) {
        self.0.pokes[task as usize].notify_one();
    }

    pub(crate) fn poked(&self, task: Task) -> &Notify {
        &self.0.pokes[task as usize]
    }
}
