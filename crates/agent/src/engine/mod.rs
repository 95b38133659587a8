//! The container engine: the narrow traits the agent drives it through (`runtime`), Docker
//! (`docker`, tested against the real engine), an in-memory fake (`fake`), the pure planner
//! (`plan`) and the reconciler that applies its actions (`reconcile`).

pub mod database;
pub mod docker;
mod docker_pods;
pub mod fake;
pub mod plan;
pub mod reconcile;
pub mod runtime;
