//! Backups' bookkeeping, every minute: keys for sites that have none yet (made before keys
//! of their kind existed, or a write cut short), drills whose node went silent ended, the drills that are due started, each site's data-loss window (the age of its
//! newest snapshot that passed a drill or a check) into its time series and alerted on when
//! above its policy's, and runs older than 35 days forgotten (each target's newest success
//! is kept).

use async_trait::async_trait;

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

/// How long what nodes said of each backup is kept.
const RUNS_KEPT_DAYS: i64 = 35;

pub(super) struct BackupWindows;

#[async_trait]
impl Activity for BackupWindows {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let keys = service.make_missing_site_keys().await?;
        let expired = service.expire_drills().await?;
        let drills = service.start_due_drills().await?;
        let windows = service.watch_windows().await?;
        let before = service.now() - chrono::Duration::days(RUNS_KEPT_DAYS);
        let forgotten = service.store().remove_old_backup_runs(before).await?;
        Ok(
            if keys + expired + drills + usize::from(forgotten > 0) > 0 {
                format!(
                    "made {keys} site keys; ended {expired} silent drills; started {drills} \
                 drills; recorded {windows} windows; forgot {forgotten} runs"
                )
            } else {
                String::new()
            },
        )
    }
}
