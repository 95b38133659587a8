//! What the panel tells nodes about backups (in their documents), and what they tell back.

use std::fmt;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::BackupHook;
use crate::ids::{BackupTargetId, NodeId, RestoreId, SiteId};

/// A secret in a node's document (a repository's key): it prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct WireSecret(pub String);

impl fmt::Debug for WireSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the site's node backs it up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SiteBackupSpec {
    /// The repository's name at every target (the site's id).
    pub repository: String,
    /// The repository's key (restic's password).
    pub password: WireSecret,
    pub every_minutes: u32,
    #[serde(default)]
    pub hook: Option<BackupHook>,
    pub targets: Vec<TargetEndpoint>,
    /// A backup asked for now (by a member, or after a move): due when the node's last
    /// backup of the site began before it.
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
}

/// One target, as a node reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetEndpoint {
    pub target_id: BackupTargetId,
    pub name: String,
    pub endpoint: Endpoint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Endpoint {
    /// Another node's agent, over the agents' mutual TLS, at the peer address it reported
    /// (none yet: it has not reported one).
    Vault {
        node_id: NodeId,
        peer: Option<SocketAddr>,
    },
    /// A restic REST server (`https://backup.example.org/`), the repository below it.
    Rest { url: String },
}

/// What a vault node keeps for others: each repository and the nodes that may write it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VaultSpec {
    pub repositories: Vec<VaultRepository>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VaultRepository {
    pub name: String,
    /// The site's node, the node it is moving to, nodes restoring from it.
    pub writers: Vec<NodeId>,
    /// The repository's key, for the vault to prune it (only the vault prunes).
    #[serde(default)]
    pub password: Option<WireSecret>,
    /// What to keep when pruning.
    #[serde(default)]
    pub retention: Option<super::Retention>,
}

/// A restore the node must carry out: a snapshot (the newest when none is named) of a
/// repository, whole or some of its paths, into one of its sites' volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestoreOrder {
    pub id: RestoreId,
    /// The site whose volume receives the files (stopped during a whole restore).
    pub site_id: SiteId,
    pub repository: String,
    pub password: WireSecret,
    pub target: TargetEndpoint,
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Files or folders of the snapshot (`/www/index.html`); empty: the whole site, whose
    /// volume then holds exactly the snapshot.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// A backup's outcome at one target, as the node's event tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupOutcome {
    pub target_id: BackupTargetId,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The new snapshot, when the backup succeeded.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub files: u64,
    /// What this backup added to the repository (after deduplication and compression).
    #[serde(default)]
    pub bytes_added: u64,
    /// The size of the site's files in the snapshot.
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub error: Option<String>,
}

/// How far a restore is, in the node's reports (until the panel no longer asks for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreProgress {
    pub id: RestoreId,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Set once it ended: `None` while it runs.
    #[serde(default)]
    pub finished: Option<RestoreEnd>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum RestoreEnd {
    Restored { snapshot_id: String },
    Failed { error: String },
}
