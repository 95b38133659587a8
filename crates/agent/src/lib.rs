//! alveole's node agent, by concern:
//! - `control/`: talking to the panel: the held desired state (ledger), the client, the
//!   agent's credential, the outbox of its own actions, the reports;
//! - `engine/`: the container engine: the runtime traits, Docker, a fake, the planner (pure)
//!   and the reconciler that applies its plan;
//! - `net/`: the node's network: the nftables table (routing), the public addresses on the
//!   uplink, the input filter applied commit-confirmed;
//! - `ingress/`: the HTTP ingress every site's requests go through, and its metrics;
//! - `moves/`: moving a site to another node (the volume copy, the agents' protocol);
//! - `agent.rs`, `tasks/`: the agent itself, as tasks joined by channels.

pub mod agent;
pub mod backup;
pub mod control;
pub mod engine;
pub mod ingress;
pub mod moves;
pub mod net;
pub mod requests;
pub mod vault;

pub use control::ledger::{Ledger, LedgerError, Verdict};

/// An error and its causes on one line (`a: b: c`): what reports and logs show, since each
/// error's own text leaves its source out.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
pub use engine::reconcile::{Reconciler, Report};
pub use engine::runtime::{Action, Naming, Observed, Runtime, RuntimeError};
