//! A vault's own jobs: pruning each repository it keeps by its retention, and the daily
//! check of a share of its packs (with the packs found damaged before, until they are whole).

use std::sync::Arc;

use alveole_model::SiteId;
use alveole_model::backup::VaultRepository;

use super::{Shared, lock};
use crate::engine::runtime::MoveRuntime;
use crate::vault::Pruning;

impl<R: MoveRuntime + 'static> Shared<R> {
    /// Prunes a repository this vault keeps (requests on it wait meanwhile): an event says
    /// what went.
    pub(super) async fn prune(self: Arc<Self>, repository: VaultRepository, pruning: Pruning) {
        let (Some(password), Some(retention)) = (repository.password, repository.retention) else {
            return;
        };
        let now = self.clock.now();
        let kept = self.vault.repository(&repository.name);
        let result = tokio::task::spawn_blocking(move || {
            crate::vault::prune::prune(&kept, &password.0, &retention, now)
        })
        .await;
        drop(pruning);
        let site = repository.name.parse::<SiteId>().ok();
        let detail = match result {
            Ok(Ok(pruned)) => {
                tracing::info!(repository = %repository.name, forgotten = pruned.forgotten, kept = pruned.kept, "pruned");
                format!(
                    "pruned: {} snapshots forgotten, {} kept",
                    pruned.forgotten, pruned.kept
                )
            }
            Ok(Err(error)) => {
                tracing::warn!(repository = %repository.name, %error, "pruning failed");
                format!("pruning failed: {error}")
            }
            Err(error) => format!("pruning stopped: {error}"),
        };
        {
            let mut journal = lock(&self.journal);
            journal.pruned.insert(repository.name.clone(), now);
            self.save(&journal);
        }
        let event = (alveole_model::AgentEventKind::VaultPruned, site, detail);
        if let Err(error) = lock(&self.outbox).push([event], self.clock.now()) {
            tracing::warn!(error = %crate::describe(&error), "could not record the pruning");
        }
    }
}

impl<R: MoveRuntime + 'static> Shared<R> {
    /// Rereads today's share of a repository's packs, and those found damaged before: an
    /// event says it is intact, or what is damaged and which snapshots that breaks.
    pub(super) async fn check(self: Arc<Self>, repository: VaultRepository) {
        let Some(password) = repository.password else {
            return;
        };
        let now = self.clock.now();
        let share = crate::vault::check::share_of_day(now.timestamp().div_euclid(86_400));
        let kept = self.vault.repository(&repository.name);
        let suspects = lock(&self.journal)
            .damaged
            .get(&repository.name)
            .cloned()
            .unwrap_or_default();
        let result = tokio::task::spawn_blocking(move || {
            crate::vault::check::check(&kept, &password.0, share, &suspects)
        })
        .await;
        let site = repository.name.parse::<SiteId>().ok();
        let (detail, damage) = match result {
            Ok(Ok(checked)) if checked.errors.is_empty() => (
                format!("packs {}/{} reread: intact", share.0, share.1),
                None,
            ),
            Ok(Ok(checked)) => {
                tracing::error!(repository = %repository.name, errors = ?checked.errors, "the vault's check found damage");
                let snapshots = if checked.damage.snapshots.is_empty() {
                    "no snapshot needs the damaged packs".to_owned()
                } else {
                    format!("breaks snapshots {}", checked.damage.snapshots.join(", "))
                };
                (
                    format!(
                        "packs {}/{} reread, damage found: {}; {snapshots}",
                        share.0,
                        share.1,
                        checked.errors.join("; ")
                    ),
                    Some(checked.damage),
                )
            }
            Ok(Err(error)) => (
                format!("the check could not run: {error}"),
                Some(Default::default()),
            ),
            Err(error) => (
                format!("the check stopped: {error}"),
                Some(Default::default()),
            ),
        };
        {
            let mut journal = lock(&self.journal);
            journal.checked.insert(repository.name.clone(), now);
            match &damage {
                Some(found) if !found.packs.is_empty() => {
                    journal
                        .damaged
                        .insert(repository.name.clone(), found.packs.clone());
                }
                Some(_) => {}
                None => {
                    journal.damaged.remove(&repository.name);
                }
            }
            self.save(&journal);
        }
        let pushed = match damage {
            None => lock(&self.outbox).push(
                [(alveole_model::AgentEventKind::VaultChecked, site, detail)],
                self.clock.now(),
            ),
            Some(damage) => lock(&self.outbox).push_damage(site, detail, damage, self.clock.now()),
        };
        if let Err(error) = pushed {
            tracing::warn!(error = %crate::describe(&error), "could not record the check");
        }
    }
}
