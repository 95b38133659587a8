//! Backups: a site's policy (where its copies go, how often, the hook that makes its data
//! consistent), the placement rule that keeps copies away from the site's provider, and what
//! nodes are told and tell back (backups, restores, the vault's grants).

mod drill;
mod placement;
mod restore;
mod retention;
mod wire;

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};
use crate::ids::BackupTargetId;
use crate::text::Slug;

pub use drill::{
    ALERT_WINDOW_HOURS, CopyCheck, DRILL_EVERY_DAYS, Drill, DrillEnd, DrillOrder, DrillPhase,
    DrillPolicy, DrillProgress, DrillState, RepositoryDamage, proven_at,
};
pub use placement::{TargetPlace, check_placement, refuses_node};
pub use restore::{BackupRun, MAX_RESTORE_PATHS, NewRestore, Restore, RestoreInput, RestoreState};
pub use retention::{Retention, to_forget, validate_retention};
pub use wire::{
    BackupOutcome, Endpoint, RestoreEnd, RestoreOrder, RestoreProgress, SiteBackupSpec,
    TargetEndpoint, VaultRepository, VaultSpec, WireSecret,
};

/// At most this many copies of a site (each at its own provider).
pub const MAX_COPIES: usize = 2;
/// Backups at most every 5 minutes, at least daily.
pub const EVERY_MINUTES: std::ops::RangeInclusive<u32> = 5..=1440;

/// Where and how often a site is backed up. No target: no backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Refused by the API (`strict`), not by serde: stored forms are read back with it.
#[schemars(deny_unknown_fields)]
pub struct BackupPolicy {
    /// One or two backup targets, each at another provider than the site's (and than each
    /// other's): one copy in each.
    #[serde(default)]
    pub targets: Vec<BackupTargetId>,
    /// Minutes between two backups (5 to 1440); each node spreads its sites' backups
    /// within that period.
    #[serde(default = "default_every_minutes")]
    #[schemars(range(min = 5, max = 1440))]
    pub every_minutes: u32,
    /// A command run in the site's container before each backup: its output is kept in the
    /// snapshot at `/.alveole/hooks/<name>`, and a non-zero exit fails the backup.
    #[serde(default)]
    pub hook: Option<BackupHook>,
    /// What the vault keeps, by time (never by count).
    #[serde(default)]
    pub retention: Retention,
    /// How its copies are drilled (weekly by default).
    #[serde(default)]
    pub drill: DrillPolicy,
    /// An alert is raised when the site's data-loss window (the age of its newest snapshot
    /// that passed a drill or a check) exceeds this many hours (1 to 2160; 48 by default).
    #[serde(default = "drill::default_alert_window_hours")]
    #[schemars(range(min = 1, max = 2160))]
    pub alert_window_hours: u32,
}

fn default_every_minutes() -> u32 {
    60
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self {
            targets: vec![],
            every_minutes: default_every_minutes(),
            hook: None,
            retention: Retention::default(),
            drill: DrillPolicy::default(),
            alert_window_hours: drill::default_alert_window_hours(),
        }
    }
}

/// The pre-backup hook (a database dump, a cache flush).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BackupHook {
    /// Names the file of its output in the snapshot (`/.alveole/hooks/<name>`): lowercase
    /// letters, digits and hyphens.
    pub name: String,
    /// The command and its arguments, run without a shell.
    pub command: Vec<String>,
    /// The backup fails when the hook has not ended by then (1 to 3600 seconds).
    #[serde(default = "default_hook_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,
}

fn default_hook_timeout() -> u32 {
    300
}

impl BackupPolicy {
    pub fn is_on(&self) -> bool {
        !self.targets.is_empty()
    }
}

/// Checks what a policy says on its own (the placement rule needs the fleet: see
/// [`check_placement`]); field paths under `backup.`.
pub fn validate_policy(errors: &mut ValidationErrors, policy: &BackupPolicy) {
    if policy.targets.len() > MAX_COPIES {
        errors.push(FieldError::new(
            "backup.targets",
            "backup.too_many_copies",
            format!("at most {MAX_COPIES} copies, each at its own provider"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, target) in policy.targets.iter().enumerate() {
        if !seen.insert(target) {
            errors.push(FieldError::new(
                format!("backup.targets[{i}]"),
                "backup.duplicate_target",
                "this target is listed twice: a second copy must go to another provider",
            ));
        }
    }
    if !EVERY_MINUTES.contains(&policy.every_minutes) {
        errors.push(FieldError::new(
            "backup.every_minutes",
            "range",
            "between 5 and 1440 minutes",
        ));
    }
    validate_retention(errors, &policy.retention);
    drill::validate_drill(errors, &policy.drill);
    if !ALERT_WINDOW_HOURS.contains(&policy.alert_window_hours) {
        errors.push(FieldError::new(
            "backup.alert_window_hours",
            "range",
            "between 1 and 2160 hours",
        ));
    } else if policy.alert_window_hours * 60 < policy.every_minutes {
        errors.push(FieldError::new(
            "backup.alert_window_hours",
            "backup.window_below_period",
            "at least the time between two backups: the window is never shorter",
        ));
    }
    if let Some(hook) = &policy.hook {
        validate_hook(errors, "backup.hook", hook);
    }
}

/// Checks a hook, field paths under `prefix`.
fn validate_hook(errors: &mut ValidationErrors, prefix: &str, hook: &BackupHook) {
    errors.check(&format!("{prefix}.name"), Slug::parse(&hook.name));
    if hook.command.is_empty() || hook.command.len() > 64 {
        errors.push(FieldError::new(
            format!("{prefix}.command"),
            "hook.command",
            "a command and at most 63 arguments",
        ));
    }
    for (i, arg) in hook.command.iter().enumerate() {
        if arg.contains('\0') || arg.len() > 4096 || (i == 0 && arg.trim().is_empty()) {
            errors.push(FieldError::new(
                format!("{prefix}.command[{i}]"),
                "command.invalid",
                "at most 4 KiB and no NUL (and a command first)",
            ));
        }
    }
    if !(1..=3600).contains(&hook.timeout_seconds) {
        errors.push(FieldError::new(
            format!("{prefix}.timeout_seconds"),
            "range",
            "between 1 and 3600 seconds",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(policy: &BackupPolicy) -> Vec<String> {
        let mut errors = ValidationErrors::default();
        validate_policy(&mut errors, policy);
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_policy_names_every_wrong_field() {
        let target = BackupTargetId::generate();
        let policy = BackupPolicy {
            targets: vec![target, target, BackupTargetId::generate()],
            every_minutes: 1,
            hook: Some(BackupHook {
                name: "Dump!".into(),
                command: vec![" ".into(), "a\0b".into()],
                timeout_seconds: 0,
            }),
            retention: Retention::default(),
            drill: DrillPolicy::default(),
            alert_window_hours: 48,
        };
        assert_eq!(
            fields(&policy),
            [
                "backup.targets",
                "backup.targets[1]",
                "backup.every_minutes",
                "backup.hook.name",
                "backup.hook.command[0]",
                "backup.hook.command[1]",
                "backup.hook.timeout_seconds"
            ]
        );
        assert!(fields(&BackupPolicy::default()).is_empty());
        let hourly: BackupPolicy = serde_json::from_str(r#"{"targets": []}"#).unwrap();
        assert_eq!(hourly.every_minutes, 60, "hourly by default");
    }
}
