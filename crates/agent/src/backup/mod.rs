//! A site's backups, on its node: its files copied into the site's restic repository with
//! rustic_core, in-process, and restored from it. The repository is restic's format
//! (Debian's `restic` lists, checks and restores it without alveole), behind restic's REST
//! protocol ([`rest`]): a vault at another provider, over the agents' mutual TLS.
//!
//! rustic_core works synchronously on its own threads: these functions block, and run on a
//! blocking thread of the runtime (`spawn_blocking`).

pub mod rest;

use std::path::Path;
use std::sync::Arc;

use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, KeyOptions, LocalDestination, PathList, Repository,
    RepositoryBackends, RepositoryOptions, RestoreOptions, SnapshotOptions,
};

pub use rest::RestBackend;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Repository(#[from] Box<rustic_core::RusticError>),
    #[error("the repository holds no snapshot")]
    NoSnapshot,
    #[error("{0} is not a path rustic can read")]
    Path(String),
}

fn repository(backend: RestBackend) -> Result<Repository<()>, BackupError> {
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    Ok(Repository::new(&RepositoryOptions::default(), &backends)?)
}

/// Backs up `source` (a directory) into the repository behind `backend`, made first when it
/// does not exist (with `password`): the new snapshot's id.
pub fn back_up(backend: RestBackend, password: &str, source: &Path) -> Result<String, BackupError> {
    let credentials = Credentials::Password(password.to_owned());
    let repository = repository(backend)?;
    let repository = if repository.config_id()?.is_some() {
        repository.open(&credentials)?
    } else {
        repository.init(
            &credentials,
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )?
    };
    let repository = repository.to_indexed_ids()?;
    let source = source
        .to_str()
        .ok_or_else(|| BackupError::Path(source.display().to_string()))?;
    let paths = PathList::from_string(source)?
        .sanitize()
        .map_err(|e| BackupError::Path(format!("{source}: {e}")))?;
    let snapshot = SnapshotOptions::default().to_snapshot()?;
    let snapshot = repository.backup(&BackupOptions::default(), &paths, snapshot)?;
    Ok(snapshot.id.to_hex().as_str().to_owned())
}

/// Restores the newest snapshot of the repository behind `backend` into `target` (its
/// paths below it, as restic's `restore` does): the snapshot's id.
pub fn restore_newest(
    backend: RestBackend,
    password: &str,
    target: &Path,
) -> Result<String, BackupError> {
    let credentials = Credentials::Password(password.to_owned());
    let repository = repository(backend)?.open(&credentials)?.to_indexed()?;
    let snapshot = repository
        .get_all_snapshots()?
        .into_iter()
        .max_by_key(|snapshot| snapshot.time.clone())
        .ok_or(BackupError::NoSnapshot)?;
    let node = repository.node_from_snapshot_and_path(&snapshot, "")?;
    let files = repository.ls(&node, &Default::default())?;
    let target = target
        .to_str()
        .ok_or_else(|| BackupError::Path(target.display().to_string()))?;
    let destination = LocalDestination::new(target, true, !node.is_dir())?;
    let options = RestoreOptions::default();
    let plan = repository.prepare_restore(&options, files.clone(), &destination, false)?;
    repository.restore(plan, &options, files, &destination)?;
    Ok(snapshot.id.to_hex().as_str().to_owned())
}
