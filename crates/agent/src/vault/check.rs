//! The vault's rotating check: each day it rereads a thirtieth of a repository's packs
//! (restic's `check --read-data-subset=n/30`, by pack id), so that every pack is reread at
//! least every 30 days, and says what is damaged. Reading only: nodes may write meanwhile.

use std::sync::Arc;

use rustic_core::{
    CheckOptions, Credentials, ReadSubsetOption, Repository, RepositoryBackends, RepositoryOptions,
};

use super::local::LocalBackend;
use super::repository::Repository as VaultRepository;
use crate::backup::BackupError;

/// Packs are reread once in this many days.
pub const CHECK_CYCLE_DAYS: u32 = 30;

/// Which share of the packs day `day` (days since the epoch) rereads: `n` of
/// [`CHECK_CYCLE_DAYS`].
pub fn share_of_day(day: i64) -> (u32, u32) {
    let n = u32::try_from(day.rem_euclid(i64::from(CHECK_CYCLE_DAYS))).unwrap_or(0) + 1;
    (n, CHECK_CYCLE_DAYS)
}

/// Checks the repository's structure and rereads `share` of its packs: the damage found, in
/// words (none: intact).
pub fn check(
    repository: &VaultRepository,
    password: &str,
    share: (u32, u32),
) -> Result<Vec<String>, BackupError> {
    let backend = LocalBackend::new(repository.clone(), "vault".into());
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    let credentials = Credentials::Password(password.to_owned());
    let opened = Repository::new(&RepositoryOptions::default(), &backends)?.open(&credentials)?;
    let mut options = CheckOptions::default();
    options.read_data = true;
    options.read_data_subset = ReadSubsetOption::IdSubSet(share);
    let results = opened.check(options)?;
    if results.is_ok().is_ok() {
        return Ok(Vec::new());
    }
    // rustic_core does not export the level's type: its name tells errors from warnings.
    Ok(results
        .0
        .iter()
        .filter(|(level, _)| format!("{level:?}") == "Error")
        .map(|(_, error)| error.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_reread_every_share_once() {
        let shares: std::collections::BTreeSet<u32> =
            (0..30).map(|day| share_of_day(20_000 + day).0).collect();
        assert_eq!(shares.len(), 30);
        assert_eq!(share_of_day(-1), (30, 30), "before the epoch too");
    }
}
