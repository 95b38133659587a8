//! A site's backups, on its node: its files copied into the site's restic repository with
//! rustic_core, in-process, and restored from it. The repository is restic's format
//! (Debian's `restic` lists, checks and restores it without alveole), behind restic's REST
//! protocol ([`rest`]): a vault at another provider, over the agents' mutual TLS.
//!
//! rustic_core works synchronously on its own threads: these functions block, and run on a
//! blocking thread of the runtime (`spawn_blocking`).

pub mod dump_counts;
pub mod progress;
pub mod rest;
pub mod schedule;

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
    #[error("{0} is not in the snapshot")]
    NotInSnapshot(String),
    #[error("the restored files differ from the snapshot: {0}")]
    Differs(String),
}

/// What rustic_core hands a backend to write, in one buffer.
pub(crate) fn joined(content: rustic_core::BytesList) -> Vec<u8> {
    let mut body = Vec::with_capacity(content.size());
    for part in content.into_vec() {
        body.extend_from_slice(&part);
    }
    body
}

fn repository(backend: RestBackend) -> Result<Repository<()>, BackupError> {
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    Ok(Repository::new(&RepositoryOptions::default(), &backends)?)
}

/// Reads only from the target: a restore, and above all a drill, must prove what the target
/// holds, not what a local cache of its trees remembers.
fn uncached() -> RepositoryOptions {
    RepositoryOptions::default().no_cache(true)
}

/// What a backup made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backed {
    pub snapshot_id: String,
    pub files: u64,
    /// Added to the repository (deduplicated, compressed).
    pub bytes_added: u64,
    /// The site's files in the snapshot.
    pub bytes_total: u64,
}

/// Backs up `source` (a directory) into the repository behind `backend`, made first when it
/// does not exist (with `password`). The snapshot holds the directory's contents at its root
/// (`/www/index.html`), under the host name `host` (the site's repository: its backups are
/// each other's parents wherever the site runs).
pub fn back_up_site(
    backend: RestBackend,
    password: &str,
    source: &Path,
    host: &str,
) -> Result<Backed, BackupError> {
    let mut options = SnapshotOptions::default();
    options.host = Some(host.to_owned());
    let mut backup = BackupOptions::default();
    backup.as_path = Some("/".into());
    let snapshot = backup_into(backend, password, source, options, backup)?;
    let summary = snapshot.summary.clone().unwrap_or_default();
    Ok(Backed {
        snapshot_id: snapshot.id.to_hex().as_str().to_owned(),
        files: summary.total_files_processed,
        bytes_added: summary.data_added_packed,
        bytes_total: summary.total_bytes_processed,
    })
}

/// Backs up `source` (a directory, at its own path in the snapshot, as restic's `backup`
/// does) into the repository behind `backend`: the new snapshot's id.
pub fn back_up(backend: RestBackend, password: &str, source: &Path) -> Result<String, BackupError> {
    let snapshot = backup_into(
        backend,
        password,
        source,
        SnapshotOptions::default(),
        BackupOptions::default(),
    )?;
    Ok(snapshot.id.to_hex().as_str().to_owned())
}

/// Opens the repository behind `backend` (made first, with `password`, when it does not
/// exist) and backs `source` up into it.
fn backup_into(
    backend: RestBackend,
    password: &str,
    source: &Path,
    options: SnapshotOptions,
    mut backup: BackupOptions,
) -> Result<rustic_core::repofile::SnapshotFile, BackupError> {
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
    // No walk of the whole tree first to estimate the time left: nobody watches a bar here.
    backup.no_scan = true;
    Ok(repository.backup(&backup, &paths, options.to_snapshot()?)?)
}

/// What to restore, and how.
#[derive(Clone, Debug, Default)]
pub struct RestoreWhat {
    /// A snapshot id or its prefix; the newest when `None`.
    pub snapshot: Option<String>,
    /// Paths in the snapshot (`/www/index.html`); the whole snapshot when empty, which
    /// then replaces the target's contents (what the snapshot lacks is removed).
    pub paths: Vec<String>,
}

/// Restores a snapshot into `target`: its root's contents at the target's root (a snapshot of
/// one directory made by restic's CLI too: that directory's contents), counting the bytes
/// written in `progress`. The snapshot's id.
pub fn restore_into(
    backend: RestBackend,
    password: &str,
    what: &RestoreWhat,
    target: &Path,
    progress: &progress::ByteProgress,
) -> Result<String, BackupError> {
    let credentials = Credentials::Password(password.to_owned());
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    let repository = Repository::new_with_progress(&uncached(), &backends, progress.clone())?
        .open(&credentials)?
        .to_indexed()?;
    let snapshot = match &what.snapshot {
        Some(id) => repository.get_snapshot_from_str(id, |_| true)?,
        None => repository
            .get_all_snapshots()?
            .into_iter()
            .max_by_key(|snapshot| snapshot.time.clone())
            .ok_or(BackupError::NoSnapshot)?,
    };
    // A snapshot of one directory (restic's `backup /some/dir`) restores that directory's
    // contents; alveole's snapshots are of "/".
    let root = match snapshot.paths.iter().collect::<Vec<_>>().as_slice() {
        [only] if only.as_str() != "/" => only.trim_end_matches('/').to_owned(),
        _ => String::new(),
    };
    let wanted: Vec<String> = if what.paths.is_empty() {
        vec![String::new()]
    } else {
        what.paths.clone()
    };
    for path in &wanted {
        let inside = format!("{root}{path}");
        let node = repository
            .node_from_snapshot_and_path(&snapshot, &inside)
            .map_err(|_| BackupError::NotInSnapshot(path.clone()))?;
        let files = repository.ls(&node, &Default::default())?;
        let destination = target.join(path.trim_start_matches('/'));
        let destination = destination
            .to_str()
            .ok_or_else(|| BackupError::Path(destination.display().to_string()))?;
        let destination = LocalDestination::new(destination, true, !node.is_dir())?;
        let mut options = RestoreOptions::default();
        options.delete = what.paths.is_empty();
        let plan = repository.prepare_restore(&options, files.clone(), &destination, false)?;
        progress.add_total(plan.restore_size);
        repository.restore(plan, &options, files, &destination)?;
    }
    Ok(snapshot.id.to_hex().as_str().to_owned())
}

/// What a comparison of restored files with their snapshot found equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub files: u64,
    /// When the snapshot was taken.
    pub snapshot_time: chrono::DateTime<chrono::Utc>,
}

/// Compares what `target` holds with snapshot `snapshot` (as [`restore_into`] wrote it
/// whole): every file read back and hashed blob by blob against the snapshot's blobs,
/// nothing missing, nothing more. Reads only.
pub fn verify_restored(
    backend: RestBackend,
    password: &str,
    snapshot: &str,
    target: &Path,
) -> Result<Verified, BackupError> {
    let credentials = Credentials::Password(password.to_owned());
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    let repository = Repository::new(&uncached(), &backends)?
        .open(&credentials)?
        .to_indexed()?;
    let snapshot = repository.get_snapshot_from_str(snapshot, |_| true)?;
    let root = match snapshot.paths.iter().collect::<Vec<_>>().as_slice() {
        [only] if only.as_str() != "/" => only.trim_end_matches('/').to_owned(),
        _ => String::new(),
    };
    let node = repository.node_from_snapshot_and_path(&snapshot, &root)?;
    let files = repository.ls(&node, &Default::default())?;
    let destination = target
        .to_str()
        .ok_or_else(|| BackupError::Path(target.display().to_string()))?;
    let destination = LocalDestination::new(destination, false, !node.is_dir())?;
    let mut options = RestoreOptions::default();
    options.delete = true;
    options.verify_existing = true;
    let plan = repository.prepare_restore(&options, files, &destination, true)?;
    let (f, d) = (&plan.stats.files, &plan.stats.dirs);
    if plan.restore_size > 0 || f.restore + f.modify + f.additional + d.restore + d.additional > 0 {
        return Err(BackupError::Differs(format!(
            "{} file(s) missing, {} different, {} more than the snapshot; {} folder(s) \
             missing, {} more ({} bytes to write again)",
            f.restore, f.modify, f.additional, d.restore, d.additional, plan.restore_size
        )));
    }
    let at = snapshot.time.timestamp();
    Ok(Verified {
        files: f.verified + f.unchanged,
        snapshot_time: chrono::DateTime::from_timestamp(at.as_second(), 0).unwrap_or_default(),
    })
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
