//! The agent's side of the control plane: its credential, the panel's client, the desired
//! state it holds (the ledger), the outbox of what it did on its own, and its inventory.

pub mod fake;
pub mod files;
pub mod identity;
pub mod inventory;
pub mod ledger;
pub mod outbox;
pub mod panel;
