//! Backups: each site's repository key (made when its policy first names a target, sealed),
//! backups asked for now, what the site's page and the API show of them, restores, and the
//! backups part of a node's document.

use alveole_model::backup::{
    BackupRun, Restore, RestoreInput, RestoreOrder, SiteBackupSpec, WireSecret,
};
use alveole_model::series::SeriesName;
use alveole_model::{BackupTargetId, MemberId, RestoreId, Site, SiteId, SiteSpec};
use alveole_store::{AuditContext, NodeBackups, RestoreRequest, StoreError};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::Service;
use crate::error::{ApiError, ApiResult};

/// A site's backups as its page and the API show them.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SiteBackups {
    pub site_id: SiteId,
    /// Each target of its policy, with its newest snapshot.
    pub targets: Vec<TargetBackups>,
    /// Its data-loss window (RPO), in seconds: the age of its newest snapshot that passed a
    /// drill or a check; none before any did.
    pub window_seconds: Option<i64>,
    /// When that snapshot was taken.
    pub proven_at: Option<DateTime<Utc>>,
    /// The age of its newest snapshot at any target, in seconds, proven or not; none before
    /// its first backup.
    pub newest_snapshot_seconds: Option<i64>,
    /// Its restore time (RTO), in seconds: how long its last drill that passed took, from
    /// the start of the restore to the first good answer.
    pub restore_seconds: Option<f64>,
    /// What is wrong with its backups, each with its reason (audited as it is raised and
    /// cleared).
    pub alerts: Vec<alveole_store::BackupAlert>,
    /// Its latest drills, newest first.
    pub drills: Vec<alveole_model::backup::Drill>,
    pub requested_at: Option<DateTime<Utc>>,
    /// The latest backups, newest first.
    pub runs: Vec<BackupRun>,
    /// The latest restores into the site, newest first.
    pub restores: Vec<Restore>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TargetBackups {
    pub target_id: BackupTargetId,
    pub name: String,
    pub newest: Option<BackupRun>,
}

/// The series of a site's data-loss window (seconds) and of its backups' sizes (bytes).
pub fn window_series(site: SiteId) -> Option<SeriesName> {
    SeriesName::parse(&format!("site.{site}.backup_window_seconds")).ok()
}

pub fn size_series(site: SiteId) -> Option<SeriesName> {
    SeriesName::parse(&format!("site.{site}.backup_bytes")).ok()
}

impl Service {
    /// Asks the site's node to back it up now.
    pub async fn request_backup(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        site: SiteId,
    ) -> ApiResult<DateTime<Utc>> {
        self.get::<Site>(limited_to, site).await?;
        let at = self.store().request_backup(ctx, site).await?;
        self.tell_nodes();
        Ok(at)
    }

    pub async fn site_backups(
        &self,
        limited_to: Option<MemberId>,
        id: SiteId,
    ) -> ApiResult<SiteBackups> {
        let site = self.get::<Site>(limited_to, id).await?;
        let runs = self.store().backup_runs(id, 20).await?;
        let newest = self.store().latest_snapshots(Some(id)).await?;
        let places = self.store().target_places(&site.backup.targets).await?;
        let targets: Vec<TargetBackups> = places
            .into_iter()
            .map(|place| TargetBackups {
                target_id: place.id,
                name: place.name,
                newest: newest
                    .iter()
                    .find(|r| r.site_id == id && r.target_id == place.id)
                    .cloned(),
            })
            .collect();
        let newest_snapshot_seconds = targets
            .iter()
            .filter_map(|t| t.newest.as_ref())
            .map(|run| (self.now() - run.started_at).num_seconds().max(0))
            .min();
        let requested_at = self.store().backup_requested_at(id).await?;
        let proof = self.site_proofs(Some(id)).await?.into_iter().next();
        Ok(SiteBackups {
            site_id: id,
            targets,
            window_seconds: proof.as_ref().and_then(|p| p.window_seconds),
            proven_at: proof.as_ref().and_then(|p| p.proven_at),
            newest_snapshot_seconds,
            restore_seconds: proof.as_ref().and_then(|p| p.restore_seconds),
            alerts: self.store().backup_alerts(Some(id)).await?,
            drills: self.store().drills_of(id, 10).await?,
            requested_at,
            runs,
            restores: self.store().restores_into(id, 10).await?,
        })
    }

    /// Restores a backup of `source` into it, or into the site the input names (which the
    /// caller must reach too), on that site's node.
    pub async fn start_restore(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        source: SiteId,
        input: RestoreInput,
    ) -> ApiResult<Restore> {
        let new = input.validate()?;
        let site = self.get::<Site>(limited_to, source).await?;
        let target_id = match new.target_id {
            Some(target) if site.backup.targets.contains(&target) => target,
            Some(_) => {
                return Err(ApiError::field(
                    "target_id",
                    "restore.not_a_target",
                    "the site does not back up to this target",
                ));
            }
            None => *site.backup.targets.first().ok_or_else(|| {
                ApiError::field(
                    "target_id",
                    "backup.off",
                    "the site has no backup target to restore from",
                )
            })?,
        };
        let into = match new.into_site_id {
            Some(other) if other != source => {
                self.get::<Site>(limited_to, other)
                    .await
                    .map_err(|e| match e {
                        ApiError::NotFound(_) => ApiError::field(
                            "into_site_id",
                            "site.unknown",
                            "no site of yours has this id",
                        ),
                        other => other,
                    })?
                    .id
            }
            _ => source,
        };
        let restore = self
            .store()
            .create_restore(
                ctx,
                RestoreRequest {
                    site_id: into,
                    source_site_id: source,
                    target_id,
                    snapshot: new.snapshot,
                    paths: new.paths,
                },
            )
            .await?;
        self.tell_nodes();
        Ok(restore)
    }

    /// A restore, for whoever reaches the site it restores into.
    pub async fn get_restore(
        &self,
        limited_to: Option<MemberId>,
        id: RestoreId,
    ) -> ApiResult<Restore> {
        let restore = self.store().restore(id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => ApiError::NotFound("restore"),
            other => other.into(),
        })?;
        self.get::<Site>(limited_to, restore.site_id)
            .await
            .map_err(|_| ApiError::NotFound("restore"))?;
        Ok(restore)
    }

    /// Records a backup's size when its node reports it.
    pub(crate) async fn record_backup_sizes(&self, report: &alveole_model::NodeReport) {
        for event in &report.events {
            let (Some(site), Some(outcome)) = (event.site_id, &event.backup) else {
                continue;
            };
            if outcome.snapshot_id.is_none() {
                continue;
            }
            if let Some(series) = size_series(site) {
                let at = outcome.started_at;
                if let Err(error) = self
                    .store()
                    .record(&series, at, outcome.bytes_total as f64)
                    .await
                {
                    tracing::warn!(%site, %error, "the backup's size was not recorded");
                }
            }
        }
    }
}

/// The site's backups as its node runs them (with its opened key), when its policy names
/// targets and its key exists.
pub(crate) fn backup_spec(site: &Site, backups: &NodeBackups) -> Option<SiteBackupSpec> {
    if !site.backup.is_on() {
        return None;
    }
    let password = backups.keys.get(&site.id)?;
    Some(SiteBackupSpec {
        repository: site.id.to_string(),
        password: WireSecret(password.clone()),
        every_minutes: site.backup.every_minutes,
        hook: site.backup.hook.clone(),
        targets: site
            .backup
            .targets
            .iter()
            .filter_map(|t| backups.targets.get(t).cloned())
            .collect(),
        requested_at: backups.requested.get(&site.id).copied(),
    })
}

/// The restores a node carries out, with their sources' opened keys.
pub(crate) fn restore_orders(backups: &NodeBackups) -> Vec<RestoreOrder> {
    backups
        .restores
        .iter()
        .filter_map(|restore| {
            Some(RestoreOrder {
                id: restore.id,
                site_id: restore.site_id,
                repository: restore.source_site_id.to_string(),
                password: WireSecret(backups.keys.get(&restore.source_site_id)?.clone()),
                target: backups.targets.get(&restore.target_id)?.clone(),
                snapshot: restore.snapshot.clone(),
                paths: restore.paths.clone(),
            })
        })
        .collect()
}

/// The vault's part of its document, each repository with its opened key (only the vault
/// prunes, and pruning reads the repository).
pub(crate) fn vault_spec(backups: &NodeBackups) -> Option<alveole_model::backup::VaultSpec> {
    let mut vault = backups.vault.clone()?;
    for repository in &mut vault.repositories {
        repository.password = repository
            .name
            .parse::<SiteId>()
            .ok()
            .and_then(|site| backups.keys.get(&site))
            .map(|key| WireSecret(key.clone()));
    }
    Some(vault)
}

/// Fills in the backups part of each site spec.
pub(crate) fn with_backups(
    mut specs: Vec<SiteSpec>,
    sites: &[Site],
    backups: &NodeBackups,
) -> Vec<SiteSpec> {
    for spec in &mut specs {
        if let Some(site) = sites.iter().find(|s| s.id == spec.site_id) {
            spec.backup = backup_spec(site, backups);
        }
    }
    specs
}
