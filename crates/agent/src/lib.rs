//! alveole's node agent: holds the node's desired state (`ledger`), plans the changes that make
//! the node match it (`plan`, pure), and applies them through a narrow runtime trait
//! (`runtime`) implemented for Docker (`docker`) and in memory for tests (`fake`).

pub mod confirm;
pub mod docker;
pub mod fake;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod moves;
pub mod outbox;
pub mod panel_client;
pub mod plan;
pub mod reconcile;
pub mod routing;
pub mod runtime;
pub mod uplink;
pub mod volume_sync;

pub use ledger::{Ledger, LedgerError, Verdict};
pub use reconcile::{Reconciler, Report};
pub use runtime::{Action, Naming, Observed, Runtime, RuntimeError};
pub mod ingress;
pub mod inventory;
pub mod run;
