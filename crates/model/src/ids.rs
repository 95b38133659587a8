//! Opaque identifiers. UUIDv7: random enough to be unguessable, time-ordered so that
//! keyset pagination on the id also lists resources in creation order.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// A hosting provider (a company or a co-op's own racks).
    ProviderId
);
typed_id!(
    /// A node: one Linux host with a container engine.
    NodeId
);
typed_id!(
    /// A person: co-op member, admin or auditor.
    MemberId
);
typed_id!(
    /// A member's web site.
    SiteId
);
typed_id!(
    /// One move of a site from a node to another.
    SiteMoveId
);
typed_id!(
    /// A durable job (an evacuation, for now).
    JobId
);
typed_id!(
    /// Where sites' backups go: a vault node, or an external restic REST server.
    BackupTargetId
);
typed_id!(
    /// One restore of a site's backup, in place or into another site.
    RestoreId
);
typed_id!(
    /// One restore drill of a site: its newest snapshot restored, started and probed in a
    /// scratch container on a node of another provider.
    DrillId
);
