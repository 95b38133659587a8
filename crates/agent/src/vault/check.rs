//! The vault's rotating check: each day it rereads a thirtieth of a repository's packs
//! (restic's `check --read-data-subset=n/30`, by pack id), so that every pack is reread at
//! least every 30 days, and says what is damaged. Reading only: nodes may write meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use alveole_model::backup::RepositoryDamage;
use rustic_core::{
    CheckOptions, Credentials, ReadSubsetOption, Repository, RepositoryBackends, RepositoryOptions,
};

use super::local::LocalBackend;
use super::repository::{Kind, Repository as VaultRepository};
use crate::backup::BackupError;

/// Packs are reread once in this many days.
pub const CHECK_CYCLE_DAYS: u32 = 30;

/// Which share of the packs day `day` (days since the epoch) rereads: `n` of
/// [`CHECK_CYCLE_DAYS`].
pub fn share_of_day(day: i64) -> (u32, u32) {
    let n = u32::try_from(day.rem_euclid(i64::from(CHECK_CYCLE_DAYS))).unwrap_or(0) + 1;
    (n, CHECK_CYCLE_DAYS)
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The damage found, in words (none: intact).
    pub errors: Vec<String>,
    /// The packs whose bytes no longer hash to their names, and the snapshots that need them.
    pub damage: RepositoryDamage,
}

/// Checks the repository's structure and rereads `share` of its packs, and the packs found
/// damaged before (`suspects`: until they are whole again, every check rereads them). When
/// something is wrong, every pack is hashed to name the damaged ones, and the snapshots
/// that need them are named.
pub fn check(
    repository: &VaultRepository,
    password: &str,
    share: (u32, u32),
    suspects: &[String],
) -> Result<Checked, BackupError> {
    let backend = LocalBackend::new(repository.clone(), "vault".into());
    let backends = RepositoryBackends::new(Arc::new(backend), None);
    let credentials = Credentials::Password(password.to_owned());
    let opened = Repository::new(&RepositoryOptions::default(), &backends)?.open(&credentials)?;
    let mut options = CheckOptions::default();
    options.read_data = true;
    options.read_data_subset = ReadSubsetOption::IdSubSet(share);
    let results = opened.check(options)?;
    // rustic_core does not export the level's type: its name tells errors from warnings.
    let mut errors: Vec<String> = results
        .0
        .iter()
        .filter(|(level, _)| format!("{level:?}") == "Error")
        .map(|(_, error)| error.to_string())
        .collect();
    let suspects_damaged: Vec<String> = suspects
        .iter()
        .filter(|pack| !matches!(repository.intact(Kind::Data, pack), Ok(true) | Err(_)))
        .cloned()
        .collect();
    if errors.is_empty() && suspects_damaged.is_empty() {
        return Ok(Checked::default());
    }
    let mut packs = damaged_packs(repository)?;
    if packs.is_empty() && !suspects_damaged.is_empty() {
        packs = suspects_damaged;
    }
    for pack in &packs {
        if !errors.iter().any(|e| e.contains(pack.as_str())) {
            errors.push(format!("pack {pack} no longer hashes to its name"));
        }
    }
    let snapshots = broken_snapshots(opened.to_indexed()?, &packs)?;
    Ok(Checked {
        errors,
        damage: RepositoryDamage { packs, snapshots },
    })
}

/// Every pack whose bytes no longer hash to its name.
fn damaged_packs(repository: &VaultRepository) -> Result<Vec<String>, BackupError> {
    let listed = repository
        .list(Kind::Data)
        .map_err(|e| BackupError::Path(format!("the vault's packs: {e}")))?;
    Ok(listed
        .into_iter()
        .filter(|(pack, _)| matches!(repository.intact(Kind::Data, pack), Ok(false)))
        .map(|(pack, _)| pack)
        .collect())
}

/// The snapshots whose trees or files need a blob of one of `packs`, newest first.
fn broken_snapshots<S: rustic_core::IndexedFull>(
    repository: Repository<S>,
    packs: &[String],
) -> Result<Vec<String>, BackupError> {
    let walk = Walk {
        repository: &repository,
        packs: packs.iter().map(String::as_str).collect(),
    };
    let mut snapshots = repository.get_all_snapshots()?;
    snapshots.sort_by(|a, b| b.time.cmp(&a.time));
    let mut broken = Vec::new();
    // Trees are shared between snapshots: each is walked once, and remembered.
    let mut walked = BTreeMap::new();
    for snapshot in snapshots {
        if walk.tree_broken(snapshot.tree, &mut walked) {
            broken.push(snapshot.id.to_hex().as_str().to_owned());
        }
    }
    Ok(broken)
}

struct Walk<'a, S> {
    repository: &'a Repository<S>,
    packs: BTreeSet<&'a str>,
}

impl<S: rustic_core::IndexedFull> Walk<'_, S> {
    /// Whether the blob is in a damaged pack (or in no pack at all).
    fn lost<T: rustic_core::PackedId>(&self, blob: &T) -> bool {
        self.repository.get_index_entry(blob).map_or(true, |entry| {
            self.packs.contains(entry.pack.to_hex().as_str())
        })
    }

    fn tree_broken(
        &self,
        tree: rustic_core::TreeId,
        walked: &mut BTreeMap<rustic_core::TreeId, bool>,
    ) -> bool {
        if let Some(known) = walked.get(&tree) {
            return *known;
        }
        let broken = self.lost(&tree)
            || match self.repository.get_tree(&tree) {
                Err(_) => true,
                Ok(read) => read.nodes.iter().any(|node| {
                    node.content.iter().flatten().any(|blob| self.lost(blob))
                        || node
                            .subtree
                            .is_some_and(|sub| self.tree_broken(sub, walked))
                }),
            };
        walked.insert(tree, broken);
        broken
    }
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
