//! Restore drills: a site's newest snapshot restored into a scratch container on a node of
//! another provider, its files compared with the snapshot's, the copy started and probed on
//! its health path, the site's drill hook run, everything removed. What a drill proves, with
//! the vault's checks, sets the site's data-loss window (RPO) and restore time (RTO).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BackupHook, TargetEndpoint, WireSecret};
use crate::desired::SiteSpec;
use crate::error::{FieldError, ValidationErrors};
use crate::ids::{BackupTargetId, DrillId, NodeId, SiteId};

/// Days between two drills: at most 90 (0: no drills).
pub const DRILL_EVERY_DAYS: std::ops::RangeInclusive<u32> = 0..=90;
/// The data-loss window above which the site is alerted: 1 hour to 90 days.
pub const ALERT_WINDOW_HOURS: std::ops::RangeInclusive<u32> = 1..=2160;

/// How a site's backups are drilled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DrillPolicy {
    /// Days between two drills (1 to 90, weekly by default); 0: no scheduled drills (one
    /// may still be asked for).
    #[serde(default = "default_every_days")]
    #[schemars(range(min = 0, max = 90))]
    pub every_days: u32,
    /// The path probed on the restored copy: an answer below 400 passes (`/` by default).
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// A command run in the restored copy once it answers (row counts, a consistency
    /// check): a non-zero exit fails the drill.
    #[serde(default)]
    pub hook: Option<BackupHook>,
}

fn default_every_days() -> u32 {
    7
}

fn default_health_path() -> String {
    "/".into()
}

pub(super) fn default_alert_window_hours() -> u32 {
    48
}

impl Default for DrillPolicy {
    fn default() -> Self {
        Self {
            every_days: default_every_days(),
            health_path: default_health_path(),
            hook: None,
        }
    }
}

/// Checks a drill policy, field paths under `backup.drill.`.
pub(super) fn validate_drill(errors: &mut ValidationErrors, drill: &DrillPolicy) {
    if !DRILL_EVERY_DAYS.contains(&drill.every_days) {
        errors.push(FieldError::new(
            "backup.drill.every_days",
            "range",
            "between 0 (no scheduled drills) and 90 days",
        ));
    }
    let path = &drill.health_path;
    if !path.starts_with('/') || path.len() > 512 || !path.bytes().all(|b| b.is_ascii_graphic()) {
        errors.push(FieldError::new(
            "backup.drill.health_path",
            "health_path.invalid",
            "a path starting with /, at most 512 visible ASCII characters (no spaces)",
        ));
    }
    if let Some(hook) = &drill.hook {
        super::validate_hook(errors, "backup.drill.hook", hook);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    Running,
    Passed,
    Failed,
}

impl DrillState {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillState::Running => "running",
            DrillState::Passed => "passed",
            DrillState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Passed, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The step a drill is at (or failed at).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillPhase {
    /// Waiting for a node to take it.
    Waiting,
    Restoring,
    /// The restored files compared with the snapshot's, blob by blob.
    Verifying,
    Starting,
    Probing,
    Hook,
}

impl DrillPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillPhase::Waiting => "waiting",
            DrillPhase::Restoring => "restoring",
            DrillPhase::Verifying => "verifying",
            DrillPhase::Starting => "starting",
            DrillPhase::Probing => "probing",
            DrillPhase::Hook => "hook",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Waiting,
            Self::Restoring,
            Self::Verifying,
            Self::Starting,
            Self::Probing,
            Self::Hook,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A drill, as the panel keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Drill {
    pub id: DrillId,
    pub site_id: SiteId,
    /// The target whose copy is drilled.
    pub target_id: BackupTargetId,
    /// The node that runs it (at another provider than the site's); none when no node
    /// could (the drill then failed, saying why).
    pub node_id: Option<NodeId>,
    pub state: DrillState,
    pub phase: DrillPhase,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The snapshot restored, and when it was taken.
    pub snapshot_id: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    /// Files compared with the snapshot's, and found equal.
    pub files_verified: u64,
    /// From the start of the restore to the first good answer (its restore time).
    pub restore_ms: Option<u64>,
    /// The status of the first good answer on the health path.
    pub answer_status: Option<u16>,
    pub error: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A drill a node must carry out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DrillOrder {
    pub id: DrillId,
    /// The site drilled.
    pub site_id: SiteId,
    /// The scratch container's shape: the site's, under the drill's own id, never routed,
    /// without addresses or ports.
    pub scratch: SiteSpec,
    pub repository: String,
    pub password: WireSecret,
    pub target: TargetEndpoint,
    pub health_path: String,
    #[serde(default)]
    pub hook: Option<BackupHook>,
}

impl DrillOrder {
    /// The scratch container's shape for drill `id` of a site whose node runs `site`: its
    /// image, command, environment and limits, nothing that reaches the outside.
    pub fn scratch_of(id: DrillId, site: &SiteSpec) -> SiteSpec {
        let mut scratch = site.clone();
        scratch.site_id = SiteId(id.0);
        scratch.hostnames.clear();
        scratch.dedicated_addresses.clear();
        scratch.exposed_ports.clear();
        scratch.backup = None;
        scratch.admission = None;
        scratch.run = true;
        scratch
    }
}

/// How far a drill is, in the node's reports (until the panel no longer asks for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillProgress {
    pub id: DrillId,
    pub phase: DrillPhase,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Set once it ended: `None` while it runs.
    #[serde(default)]
    pub finished: Option<DrillEnd>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum DrillEnd {
    Passed {
        snapshot_id: String,
        snapshot_time: DateTime<Utc>,
        files_verified: u64,
        restore_ms: u64,
        answer_status: u16,
    },
    Failed {
        error: String,
        #[serde(default)]
        snapshot_id: Option<String>,
        #[serde(default)]
        snapshot_time: Option<DateTime<Utc>>,
    },
}

/// What a vault's check found damaged in a repository: packs, and the snapshots that need
/// them (they no longer restore whole).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryDamage {
    pub packs: Vec<String>,
    pub snapshots: Vec<String>,
}

/// The latest check of a site's copy at a target, as the panel keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CopyCheck {
    pub site_id: SiteId,
    pub target_id: BackupTargetId,
    pub checked_at: DateTime<Utc>,
    pub intact: bool,
    /// Snapshots a damaged pack breaks.
    pub broken_snapshots: Vec<String>,
    pub detail: String,
    /// The newest snapshot taken before the check (proven by it when intact).
    pub newest_before: Option<DateTime<Utc>>,
}

/// The time of the newest snapshot of one copy that passed a drill or a check: a check
/// proves the snapshots taken before it when it found the copy intact; a drill proves the
/// snapshot it restored, unless a check found it broken since.
pub fn proven_at(check: Option<&CopyCheck>, drills: &[Drill]) -> Option<DateTime<Utc>> {
    let broken: &[String] = check.map_or(&[], |c| &c.broken_snapshots);
    let by_check = check.filter(|c| c.intact).and_then(|c| c.newest_before);
    let by_drill = drills
        .iter()
        .filter(|d| d.state == DrillState::Passed)
        .filter(|d| d.snapshot_id.as_ref().is_none_or(|s| !broken.contains(s)))
        .filter_map(|d| d.snapshot_time)
        .max();
    by_check.max(by_drill)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(state: DrillState, snapshot: &str, at: i64) -> Drill {
        Drill {
            id: DrillId::generate(),
            site_id: SiteId::generate(),
            target_id: BackupTargetId::generate(),
            node_id: None,
            state,
            phase: DrillPhase::Probing,
            bytes_done: 0,
            bytes_total: 0,
            snapshot_id: Some(snapshot.into()),
            snapshot_time: DateTime::from_timestamp(at, 0),
            files_verified: 0,
            restore_ms: None,
            answer_status: None,
            error: None,
            requested_by: "test".into(),
            requested_at: Utc::now(),
            finished_at: None,
        }
    }

    fn check(intact: bool, broken: &[&str], before: i64) -> CopyCheck {
        CopyCheck {
            site_id: SiteId::generate(),
            target_id: BackupTargetId::generate(),
            checked_at: Utc::now(),
            intact,
            broken_snapshots: broken.iter().map(|s| s.to_string()).collect(),
            detail: String::new(),
            newest_before: DateTime::from_timestamp(before, 0),
        }
    }

    #[test]
    fn only_drills_that_passed_and_intact_checks_prove_snapshots() {
        let at = |s| DateTime::from_timestamp(s, 0);
        let drills = [
            drill(DrillState::Passed, "a", 100),
            drill(DrillState::Failed, "c", 300),
            drill(DrillState::Passed, "b", 200),
        ];
        assert_eq!(proven_at(None, &drills), at(200));
        assert_eq!(proven_at(Some(&check(true, &[], 250)), &drills), at(250));
        // Damage: the check proves nothing, and a drilled snapshot it breaks no longer counts.
        assert_eq!(
            proven_at(Some(&check(false, &["b"], 250)), &drills),
            at(100)
        );
        assert_eq!(
            proven_at(Some(&check(false, &["a", "b"], 250)), &drills),
            None
        );
    }

    #[test]
    fn a_drill_policy_names_its_wrong_fields() {
        let mut errors = ValidationErrors::default();
        validate_drill(
            &mut errors,
            &DrillPolicy {
                every_days: 91,
                health_path: "health check".into(),
                hook: Some(BackupHook {
                    name: "rows".into(),
                    command: vec![],
                    timeout_seconds: 30,
                }),
            },
        );
        let fields: Vec<String> = errors.0.into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "backup.drill.every_days",
                "backup.drill.health_path",
                "backup.drill.hook.command"
            ]
        );
        let policy: DrillPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!((policy.every_days, policy.health_path.as_str()), (7, "/"));
    }
}
