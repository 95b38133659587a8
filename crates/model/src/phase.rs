//! The lifecycle of a site, as one explicit enum that later capabilities extend.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a site is in its life. Moves will add `frozen`, `receiving` and `forwarding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SitePhase {
    /// Accepted by the panel, not yet running on its node.
    Pending,
    Running,
    /// Stopped on purpose (by its owner or an admin).
    Stopped,
    /// The node could not run it; the reason is in the site's status.
    Failed,
    /// Being removed from its node.
    Deleting,
}

impl SitePhase {
    pub const ALL: [SitePhase; 5] = [
        Self::Pending,
        Self::Running,
        Self::Stopped,
        Self::Failed,
        Self::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Deleting => "deleting",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == input)
    }
}
