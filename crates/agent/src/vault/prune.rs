//! The vault's pruning: it forgets the snapshots its retention no longer keeps (by when each
//! reached the vault, on the vault's clock: [`alveole_model::backup::to_forget`]), then
//! removes the data only they used, with rustic_core on the repository on its own disk. It
//! runs only while no node uses the repository ([`super::Vault::start_pruning`]): pruning
//! beside a writer destroys data.

use std::sync::Arc;

use alveole_model::backup::{Retention, to_forget};
use chrono::{DateTime, Utc};
use rustic_core::{Credentials, PruneOptions, Repository, RepositoryBackends, RepositoryOptions};

use super::local::LocalBackend;
use super::repository::{Kind, Repository as VaultRepository};
use crate::backup::BackupError;

/// What a pruning did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    pub forgotten: usize,
    pub kept: usize,
}

/// Forgets what `retention` no longer keeps of `repository`, as of `now`, and removes the
/// data only those snapshots used. Blocks: run it on a blocking thread.
pub fn prune(
    repository: &VaultRepository,
    password: &str,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Result<Pruned, BackupError> {
    let io = |e: super::repository::RepositoryError| BackupError::Path(e.to_string());
    let arrivals: Vec<(String, DateTime<Utc>)> = repository
        .arrivals(Kind::Snapshots)
        .map_err(io)?
        .into_iter()
        .map(|(name, at)| (name, DateTime::<Utc>::from(at)))
        .collect();
    let forgotten = to_forget(&arrivals, now, retention);
    let pruned = Pruned {
        forgotten: forgotten.len(),
        kept: arrivals.len() - forgotten.len(),
    };
    if forgotten.is_empty() {
        return Ok(pruned);
    }
    // Opening checks the key before anything goes.
    let backend = LocalBackend::new(repository.clone(), "vault".into());
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    let credentials = Credentials::Password(password.to_owned());
    let opened = Repository::new(&RepositoryOptions::default(), &backends)?.open(&credentials)?;
    for name in &forgotten {
        repository.remove(Kind::Snapshots, name).map_err(io)?;
    }
    let opened = opened.to_indexed_ids()?;
    // At once, not marked for a later pruning: nothing else uses the repository meanwhile
    // (the vault refuses its requests, and starts only once no node has used it for a while).
    let mut options = PruneOptions::default();
    options.instant_delete = true;
    let plan = opened.prune_plan(&options)?;
    opened.prune(&options, plan)?;
    Ok(pruned)
}
