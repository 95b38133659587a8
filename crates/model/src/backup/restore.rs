//! Restores as members ask for them and as the panel keeps them, and backups as nodes did them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};
use crate::ids::{BackupTargetId, NodeId, RestoreId, SiteId};

/// At most this many files or folders in one restore.
pub const MAX_RESTORE_PATHS: usize = 100;

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreInput {
    /// The target to restore from; the site's first when absent.
    #[serde(default)]
    pub target_id: Option<BackupTargetId>,
    /// A snapshot's id (or its first 8 hex digits); the newest when absent.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Files or folders to restore (`/www/index.html`), over what is there; the whole site
    /// when empty, which then holds exactly the snapshot (the site is stopped meanwhile).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Another site to restore into (on any node, at any provider); the site itself when
    /// absent.
    #[serde(default)]
    pub into_site_id: Option<SiteId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewRestore {
    pub target_id: Option<BackupTargetId>,
    pub snapshot: Option<String>,
    pub paths: Vec<String>,
    pub into_site_id: Option<SiteId>,
}

impl RestoreInput {
    pub fn validate(self) -> Result<NewRestore, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let snapshot = self
            .snapshot
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s != "latest");
        if let Some(id) = &snapshot
            && !(id.len() >= 8 && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            errors.push(FieldError::new(
                "snapshot",
                "snapshot.invalid",
                "a snapshot id: 8 to 64 hexadecimal digits, or latest",
            ));
        }
        if self.paths.len() > MAX_RESTORE_PATHS {
            errors.push(FieldError::new(
                "paths",
                "paths.too_many",
                format!("at most {MAX_RESTORE_PATHS} files or folders: restore their folder"),
            ));
        }
        let mut paths = Vec::new();
        for (i, raw) in self.paths.iter().enumerate() {
            match normal_path(raw) {
                Some(path) => paths.push(path),
                None => errors.push(FieldError::new(
                    format!("paths[{i}]"),
                    "path.invalid",
                    "a path in the site's volume such as /www/index.html (no '..', at most 4 KiB)",
                )),
            }
        }
        errors.finish(|| {
            Some(NewRestore {
                target_id: self.target_id,
                snapshot,
                paths,
                into_site_id: self.into_site_id,
            })
        })
    }
}

/// `/a/b` from `a/b/` or `/a//b`; `None` for `..`, NUL, the root itself or an overlong path.
fn normal_path(raw: &str) -> Option<String> {
    if raw.len() > 4096 || raw.contains('\0') {
        return None;
    }
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreState {
    Running,
    Restored,
    Failed,
}

impl RestoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreState::Running => "running",
            RestoreState::Restored => "restored",
            RestoreState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Restored, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A restore, as the panel keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Restore {
    pub id: RestoreId,
    /// The site that receives the files.
    pub site_id: SiteId,
    /// The site whose backups they come from.
    pub source_site_id: SiteId,
    pub target_id: BackupTargetId,
    /// The node that restores (the receiving site's).
    pub node_id: NodeId,
    pub snapshot: Option<String>,
    pub paths: Vec<String>,
    pub state: RestoreState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The snapshot restored, once it is known.
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One backup of a site at one target, as its node told it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct BackupRun {
    pub site_id: SiteId,
    pub target_id: BackupTargetId,
    pub node_id: NodeId,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub snapshot_id: Option<String>,
    pub files: u64,
    pub bytes_added: u64,
    pub bytes_total: u64,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_paths_stay_inside_the_volume() {
        let input = RestoreInput {
            paths: vec!["www//index.html/".into(), "/./a".into()],
            snapshot: Some("LATEST".into()),
            ..Default::default()
        };
        let new = input.validate().unwrap();
        assert_eq!(new.paths, ["/www/index.html", "/a"]);
        assert_eq!(new.snapshot, None, "latest is the newest");
        let bad = RestoreInput {
            paths: vec!["/".into(), "/a/../../etc".into(), "a\0".into()],
            snapshot: Some("xyz".into()),
            ..Default::default()
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["snapshot", "paths[0]", "paths[1]", "paths[2]"]);
    }
}
