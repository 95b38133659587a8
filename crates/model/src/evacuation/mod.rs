//! Evacuations: emptying a node, or a provider's nodes, before a deadline.
//!
//! - [`plan`]: where each site goes, in which order, how long it takes, whether the deadline
//!   holds;
//! - [`cost`]: what a move costs, learned from the moves already made;
//! - [`job`]: the evacuation as a durable job, its sites, and what was left at its end.

pub mod cost;
pub mod job;
pub mod plan;

pub use cost::{CostBook, MoveCost, MoveSample};
pub use job::{
    Estimate, Evacuation, EvacuationItem, EvacuationSpec, ItemState, JobState, LostNode,
    RecoverySpec, Remaining, retry_after,
};
pub use plan::{
    Destination, EvacuationPlan, ExcludedNode, MAX_PARALLELISM, Placement, SiteToMove, Unplaced,
    Verdict, duration_text, plan, schedule,
};
