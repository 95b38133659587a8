//! Backups and restores on the node, one at a time beside the passes: each pass looks at the
//! held document, and when nothing runs, starts the restore it asks for, else the most
//! overdue backup, else a drill (`drill.rs`). A backup runs the site's hook, then copies its
//! volume to each target (a vault over the agents' mutual TLS, or a REST server); each
//! outcome goes to the outbox (the panel records it, audited). A site the document asks to
//! restore whole stays stopped until its files are back (the passes see `stopped_sites`). A
//! vault prunes each repository it keeps about daily, once no node has used it for ten
//! minutes, and rereads a thirtieth of its packs daily (`vault_jobs.rs`). What began and
//! ended is kept in `backups.json`, so that a restarted agent neither backs everything up at
//! once nor restores or drills twice.

mod drill;
mod vault_jobs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alveole_model::backup::{
    BackupOutcome, DrillOrder, DrillProgress, Endpoint, RestoreEnd, RestoreOrder, RestoreProgress,
    SiteBackupSpec, TargetEndpoint, VaultRepository,
};
use alveole_model::{Clock, DatabaseSpec, DesiredState, DrillId, RestoreId, SiteId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::backup::progress::ByteProgress;
use crate::backup::{RestBackend, RestoreWhat, back_up_site, restore_into, schedule};
use crate::control::files::StateFiles;
use crate::control::outbox::Outbox;
use crate::engine::runtime::{MoveRuntime, Naming};
use crate::moves::peer::PeerIdentity;
use crate::vault::{Pruning, Vault};

const JOURNAL: &str = "backups.json";

/// A vault prunes each repository about daily, once no node has used it for a while.
const PRUNE_EVERY: chrono::Duration = chrono::Duration::hours(24);
const PRUNE_IDLE: Duration = Duration::from_secs(600);
/// And rereads a share of each repository's packs daily (all of them within 30 days).
const CHECK_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// What began and ended, kept across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// When each site's last backup began here.
    started: BTreeMap<SiteId, DateTime<Utc>>,
    /// Restores that ended, reported until the panel stops asking for them.
    ended: BTreeMap<RestoreId, RestoreProgress>,
    /// Drills that ended, reported until the panel stops asking for them.
    #[serde(default)]
    drills_ended: BTreeMap<DrillId, DrillProgress>,
    /// When this vault last pruned each repository it keeps.
    #[serde(default)]
    pruned: BTreeMap<String, DateTime<Utc>>,
    /// When this vault last checked each repository it keeps.
    #[serde(default)]
    checked: BTreeMap<String, DateTime<Utc>>,
    /// Packs this vault's checks found damaged, by repository: reread at every check until
    /// they are whole again.
    #[serde(default)]
    damaged: BTreeMap<String, Vec<String>>,
}

/// The job under way.
enum Job {
    Backup,
    Restore {
        id: RestoreId,
        site: SiteId,
        whole: bool,
        progress: ByteProgress,
    },
    Drill {
        id: DrillId,
        tracker: drill::DrillTracker,
    },
    Prune,
    Check,
}

pub(super) struct Backups<R> {
    shared: Arc<Shared<R>>,
    running: Option<(Job, JoinHandle<()>)>,
}

/// What a job needs, shared with its task.
struct Shared<R> {
    runtime: Arc<R>,
    vault: Arc<Vault>,
    /// When this agent started: a repository unused since counts as idle from then.
    started: std::time::Instant,
    naming: Naming,
    identity: PeerIdentity,
    files: Arc<dyn StateFiles>,
    outbox: Arc<Mutex<Outbox>>,
    clock: Arc<dyn Clock>,
    journal: Mutex<Journal>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R: MoveRuntime + 'static> Backups<R> {
    pub(super) fn new(
        runtime: Arc<R>,
        vault: Arc<Vault>,
        naming: Naming,
        identity: PeerIdentity,
        files: Arc<dyn StateFiles>,
        outbox: Arc<Mutex<Outbox>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let journal = match files.read(JOURNAL) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::error!(%error, "the backups journal is unreadable; starting a new one");
                let _ = files.set_aside(JOURNAL, "backups.json.unreadable");
                Journal::default()
            }),
            _ => Journal::default(),
        };
        Self {
            shared: Arc::new(Shared {
                runtime,
                vault,
                started: std::time::Instant::now(),
                naming,
                identity,
                files,
                outbox,
                clock,
                journal: Mutex::new(journal),
            }),
            running: None,
        }
    }

    /// Looks at the held document: forgets restores and drills it no longer asks for, and
    /// when nothing runs, starts the restore it asks for, else the most overdue backup, else a
    /// drill, else (a vault) a pruning that is due, else a check.
    pub(super) fn tick(&mut self, held: &DesiredState) {
        if self
            .running
            .as_ref()
            .is_some_and(|(_, task)| task.is_finished())
        {
            self.running = None;
        }
        {
            let mut journal = lock(&self.shared.journal);
            let asked: BTreeSet<RestoreId> = held.restores.iter().map(|r| r.id).collect();
            let drills: BTreeSet<DrillId> = held.drills.iter().map(|d| d.id).collect();
            let before = (journal.ended.len(), journal.drills_ended.len());
            journal.ended.retain(|id, _| asked.contains(id));
            journal.drills_ended.retain(|id, _| drills.contains(id));
            if (journal.ended.len(), journal.drills_ended.len()) != before {
                self.shared.save(&journal);
            }
        }
        if self.running.is_some() {
            return;
        }
        if let Some(order) = self.next_restore(held) {
            let progress = ByteProgress::default();
            let job = Job::Restore {
                id: order.id,
                site: order.site_id,
                whole: order.paths.is_empty(),
                progress: progress.clone(),
            };
            let shared = self.shared.clone();
            let databases = databases_of(held, order.site_id);
            let task =
                tokio::spawn(async move { shared.restore(order, progress, databases).await });
            self.running = Some((job, task));
            return;
        }
        if let Some((site, spec)) = self.next_backup(held) {
            let shared = self.shared.clone();
            let running = held.sites.iter().any(|s| s.site_id == site && s.run);
            let databases = databases_of(held, site);
            let task =
                tokio::spawn(async move { shared.back_up(site, spec, running, databases).await });
            self.running = Some((Job::Backup, task));
            return;
        }
        if let Some(order) = self.next_drill(held) {
            let tracker = drill::DrillTracker::default();
            let job = Job::Drill {
                id: order.id,
                tracker: tracker.clone(),
            };
            let shared = self.shared.clone();
            let task = tokio::spawn(async move { shared.drill(order, tracker).await });
            self.running = Some((job, task));
            return;
        }
        if let Some((repository, pruning)) = self.next_prune(held) {
            let shared = self.shared.clone();
            let task = tokio::spawn(async move { shared.prune(repository, pruning).await });
            self.running = Some((Job::Prune, task));
            return;
        }
        if let Some(repository) = self.next_check(held) {
            let shared = self.shared.clone();
            let task = tokio::spawn(async move { shared.check(repository).await });
            self.running = Some((Job::Check, task));
        }
    }

    /// A repository this vault keeps whose daily check is due (reading only: nodes may
    /// write meanwhile).
    fn next_check(&self, held: &DesiredState) -> Option<VaultRepository> {
        let now = self.shared.clock.now();
        let journal = lock(&self.shared.journal);
        held.vault
            .iter()
            .flat_map(|vault| &vault.repositories)
            .find(|repository| {
                repository.password.is_some()
                    && journal
                        .checked
                        .get(&repository.name)
                        .is_none_or(|last| now - *last >= CHECK_EVERY)
                    && self.shared.vault.repository(&repository.name).initialised()
            })
            .cloned()
    }

    /// A repository this vault keeps whose pruning is due, and idle now.
    fn next_prune(&self, held: &DesiredState) -> Option<(VaultRepository, Pruning)> {
        let now = self.shared.clock.now();
        let journal = lock(&self.shared.journal);
        held.vault
            .iter()
            .flat_map(|vault| &vault.repositories)
            .filter(|repository| repository.password.is_some() && repository.retention.is_some())
            .filter(|repository| {
                journal
                    .pruned
                    .get(&repository.name)
                    .is_none_or(|last| now - *last >= PRUNE_EVERY)
                    && self.shared.vault.repository(&repository.name).initialised()
            })
            .find_map(|repository| {
                let pruning = self.shared.vault.start_pruning(
                    &repository.name,
                    PRUNE_IDLE,
                    self.shared.started,
                )?;
                Some((repository.clone(), pruning))
            })
    }

    fn next_restore(&self, held: &DesiredState) -> Option<RestoreOrder> {
        let journal = lock(&self.shared.journal);
        held.restores
            .iter()
            .find(|order| {
                !journal.ended.contains_key(&order.id)
                    && held.sites.iter().any(|s| s.site_id == order.site_id)
            })
            .cloned()
    }

    /// A drill the document asks for that has not ended here.
    fn next_drill(&self, held: &DesiredState) -> Option<DrillOrder> {
        let journal = lock(&self.shared.journal);
        held.drills
            .iter()
            .find(|order| !journal.drills_ended.contains_key(&order.id))
            .cloned()
    }

    /// The due site whose backup is the most overdue.
    fn next_backup(&self, held: &DesiredState) -> Option<(SiteId, SiteBackupSpec)> {
        let now = self.shared.clock.now();
        let journal = lock(&self.shared.journal);
        held.sites
            .iter()
            .filter_map(|site| Some((site.site_id, site.backup.clone()?)))
            .filter(|(site, spec)| {
                !spec.targets.is_empty()
                    && schedule::due(
                        *site,
                        spec.every_minutes,
                        journal.started.get(site).copied(),
                        spec.requested_at,
                        now,
                    )
            })
            .min_by_key(|(site, _)| journal.started.get(site).copied())
    }

    /// Sites a whole restore keeps stopped: the one under way, and those the document asks
    /// for that have not ended (their volume is not theirs yet: a site recovered on this
    /// node must not serve an empty volume before its files are back).
    pub(super) fn stopped_sites(&self, held: &DesiredState) -> BTreeSet<SiteId> {
        let journal = lock(&self.shared.journal);
        let mut stopped: BTreeSet<SiteId> = held
            .restores
            .iter()
            .filter(|order| order.paths.is_empty() && !journal.ended.contains_key(&order.id))
            .map(|order| order.site_id)
            .collect();
        if let Some((
            Job::Restore {
                site, whole: true, ..
            },
            task,
        )) = &self.running
            && !task.is_finished()
        {
            stopped.insert(*site);
        }
        stopped
    }

    /// How far each drill the held document asks for is.
    pub(super) fn drill_progress(&self, held: &DesiredState) -> Vec<DrillProgress> {
        let journal = lock(&self.shared.journal);
        held.drills
            .iter()
            .filter_map(|order| {
                if let Some(ended) = journal.drills_ended.get(&order.id) {
                    return Some(ended.clone());
                }
                match &self.running {
                    Some((Job::Drill { id, tracker }, _)) if *id == order.id => {
                        Some(tracker.now(*id))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// How far each restore the held document asks for is.
    pub(super) fn progress(&self, held: &DesiredState) -> Vec<RestoreProgress> {
        let journal = lock(&self.shared.journal);
        held.restores
            .iter()
            .filter_map(|order| {
                if let Some(ended) = journal.ended.get(&order.id) {
                    return Some(ended.clone());
                }
                match &self.running {
                    Some((Job::Restore { id, progress, .. }, _)) if *id == order.id => {
                        Some(RestoreProgress {
                            id: *id,
                            bytes_done: progress.done(),
                            bytes_total: progress.total(),
                            finished: None,
                        })
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

impl<R: MoveRuntime + 'static> Shared<R> {
    fn save(&self, journal: &Journal) {
        let text = serde_json::to_vec(journal).unwrap_or_default();
        if let Err(error) = self.files.write(JOURNAL, &text) {
            tracing::warn!(%error, "could not keep the backups journal");
        }
    }

    /// The repository `name` at `target`, through the agent's own client.
    fn backend(&self, target: &TargetEndpoint, repository: &str) -> Result<RestBackend, String> {
        let (http, base) = match &target.endpoint {
            Endpoint::Vault { node_id, peer } => {
                let at = peer.ok_or_else(|| {
                    format!(
                        "the vault {} has not said where it listens yet",
                        target.name
                    )
                })?;
                let (http, base) = self
                    .identity
                    .http_client(*node_id, at)
                    .map_err(|e| format!("no client for the vault {}: {e}", target.name))?;
                (http, format!("{base}/vault/"))
            }
            Endpoint::Rest { url } => (
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build()
                    .map_err(|e| e.to_string())?,
                url.clone(),
            ),
        };
        Ok(RestBackend::new(
            http,
            format!("{base}{repository}/"),
            tokio::runtime::Handle::current(),
        ))
    }

    /// Runs the site's hook and dumps its databases, then backs its volume up to each target.
    async fn back_up(
        self: Arc<Self>,
        site: SiteId,
        spec: SiteBackupSpec,
        running: bool,
        databases: Vec<DatabaseSpec>,
    ) {
        let began = self.clock.now();
        {
            let mut journal = lock(&self.journal);
            journal.started.insert(site, began);
            self.save(&journal);
        }
        let prepared = self.prepare(site, &spec, running, &databases).await;
        for target in &spec.targets {
            let started_at = self.clock.now();
            let clock = tokio::time::Instant::now();
            let result = match &prepared {
                Ok(volume) => self.copy(target, &spec, volume).await,
                Err(error) => Err(error.clone()),
            };
            let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            let outcome = match result {
                Ok(backed) => {
                    tracing::info!(%site, target = %target.name, snapshot = %backed.snapshot_id, "backed up");
                    BackupOutcome {
                        target_id: target.target_id,
                        started_at,
                        duration_ms,
                        snapshot_id: Some(backed.snapshot_id),
                        files: backed.files,
                        bytes_added: backed.bytes_added,
                        bytes_total: backed.bytes_total,
                        error: None,
                    }
                }
                Err(error) => {
                    tracing::warn!(%site, target = %target.name, %error, "backup failed");
                    BackupOutcome {
                        target_id: target.target_id,
                        started_at,
                        duration_ms,
                        snapshot_id: None,
                        files: 0,
                        bytes_added: 0,
                        bytes_total: 0,
                        error: Some(error),
                    }
                }
            };
            if let Err(error) = lock(&self.outbox).push_backup(site, outcome, self.clock.now()) {
                tracing::warn!(error = %crate::describe(&error), "could not record the backup");
            }
        }
        if let (Ok(volume), Some(hook)) = (&prepared, &spec.hook) {
            let _ = std::fs::remove_file(hook_file(volume, &hook.name));
        }
        if let Ok(volume) = &prepared {
            for db in &databases {
                let dump = dump_file(volume, &db.name);
                let _ = std::fs::remove_file(counts_file(&dump));
                let _ = std::fs::remove_file(dump);
            }
        }
    }

    /// The site's volume, with its hook's output in `/.alveole/hooks/<name>` when it has one
    /// and each database's dump in `/.alveole/databases/<name>.sql`.
    async fn prepare(
        &self,
        site: SiteId,
        spec: &SiteBackupSpec,
        running: bool,
        databases: &[DatabaseSpec],
    ) -> Result<std::path::PathBuf, String> {
        let volume = self
            .runtime
            .volume_path(&self.naming, site)
            .await
            .map_err(|e| format!("the site's volume: {}", crate::describe(&e)))?;
        if let Some(hook) = &spec.hook {
            if !running {
                return Err(format!(
                    "the hook {} cannot run: the site is stopped",
                    hook.name
                ));
            }
            let output = hook_file(&volume, &hook.name);
            self.run_hook(site, hook, &output, "hook").await?;
        }
        for db in databases {
            if !running {
                return Err(format!(
                    "the database {} cannot be dumped: the site is stopped",
                    db.name
                ));
            }
            let output = dump_file(&volume, &db.name);
            if let Some(dir) = output.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("the dumps' folder: {e}"))?;
            }
            let server = self.naming.database(site, &db.name);
            crate::engine::database::dump(self.runtime.as_ref(), &server, db, &output).await?;
            write_counts(db, &output).await?;
        }
        Ok(volume)
    }

    /// Runs `hook` (no shell) in the container of `site`, its standard output into `output`,
    /// within its timeout: why it failed, if it did (`what` names it: "hook", "drill hook").
    async fn run_hook(
        &self,
        site: SiteId,
        hook: &alveole_model::backup::BackupHook,
        output: &Path,
        what: &str,
    ) -> Result<(), String> {
        if let Some(dir) = output.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("the {what}'s folder: {e}"))?;
        }
        let container = self.naming.container(site);
        let ran = tokio::time::timeout(
            Duration::from_secs(u64::from(hook.timeout_seconds)),
            self.runtime
                .exec_to_file(&container, &hook.command, &[], output),
        )
        .await;
        match ran {
            Err(_) => Err(format!(
                "the {what} {} did not end within {} s",
                hook.name, hook.timeout_seconds
            )),
            Ok(Err(error)) => Err(format!(
                "the {what} {} could not run: {}",
                hook.name,
                crate::describe(&error)
            )),
            Ok(Ok(outcome)) if outcome.exit_code != 0 => Err(format!(
                "the {what} {} exited with {}: {}",
                hook.name, outcome.exit_code, outcome.stderr_tail
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }

    async fn copy(
        &self,
        target: &TargetEndpoint,
        spec: &SiteBackupSpec,
        volume: &Path,
    ) -> Result<crate::backup::Backed, String> {
        let backend = self.backend(target, &spec.repository)?;
        let (password, volume, host) = (
            spec.password.0.clone(),
            volume.to_path_buf(),
            spec.repository.clone(),
        );
        tokio::task::spawn_blocking(move || back_up_site(backend, &password, &volume, &host))
            .await
            .map_err(|e| format!("the backup stopped: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// Restores a snapshot into the site's volume (a whole one with the site stopped, its
    /// databases then loaded from their dumps in it).
    async fn restore(
        self: Arc<Self>,
        order: RestoreOrder,
        progress: ByteProgress,
        databases: Vec<DatabaseSpec>,
    ) {
        let result = self.restoring(&order, &progress, &databases).await;
        let finished = match result {
            Ok(snapshot_id) => {
                tracing::info!(site = %order.site_id, restore = %order.id, %snapshot_id, "restored");
                RestoreEnd::Restored { snapshot_id }
            }
            Err(error) => {
                tracing::warn!(site = %order.site_id, restore = %order.id, %error, "restore failed");
                RestoreEnd::Failed { error }
            }
        };
        let mut journal = lock(&self.journal);
        journal.ended.insert(
            order.id,
            RestoreProgress {
                id: order.id,
                bytes_done: progress.done(),
                bytes_total: progress.total(),
                finished: Some(finished),
            },
        );
        self.save(&journal);
    }

    async fn restoring(
        &self,
        order: &RestoreOrder,
        progress: &ByteProgress,
        databases: &[DatabaseSpec],
    ) -> Result<String, String> {
        let volume = self
            .runtime
            .volume_path(&self.naming, order.site_id)
            .await
            .map_err(|e| format!("the site's volume: {}", crate::describe(&e)))?;
        if order.paths.is_empty() {
            // The passes keep it stopped from now on; stop it at once, before writing.
            let container = self.naming.container(order.site_id);
            if let Err(error) = self.runtime.stop(&container).await {
                tracing::debug!(error = %crate::describe(&error), "the site was not running");
            }
        }
        let what = RestoreWhat {
            snapshot: order.snapshot.clone(),
            paths: order.paths.clone(),
        };
        let snapshot = until_granted(|| async {
            let backend = self.backend(&order.target, &order.repository)?;
            let (password, progress) = (order.password.0.clone(), progress.clone());
            let (what, volume) = (what.clone(), volume.clone());
            tokio::task::spawn_blocking(move || {
                restore_into(backend, &password, &what, &volume, &progress)
            })
            .await
            .map_err(|e| format!("the restore stopped: {e}"))?
            .map_err(|e| e.to_string())
        })
        .await?;
        if order.paths.is_empty() {
            self.load_dumps(order.site_id, databases, &volume).await?;
        }
        Ok(snapshot)
    }

    /// Loads each database from its dump in the restored volume (a database without one,
    /// from a snapshot taken before it existed, is left as it is), then removes the dumps.
    async fn load_dumps(
        &self,
        site: SiteId,
        databases: &[DatabaseSpec],
        volume: &Path,
    ) -> Result<(), String> {
        for db in databases {
            let dump = dump_file(volume, &db.name);
            if !dump.exists() {
                tracing::info!(%site, database = %db.name, "no dump of this database in the snapshot");
                continue;
            }
            let server = self.naming.database(site, &db.name);
            crate::engine::database::load(self.runtime.as_ref(), &server, db, &dump).await?;
            let _ = std::fs::remove_file(counts_file(&dump));
            let _ = std::fs::remove_file(&dump);
            tracing::info!(%site, database = %db.name, "database restored from its dump");
        }
        Ok(())
    }
}

/// How long a node reading from a vault waits for the vault to hear that it may: both learn
/// it from their documents, which may reach them a pass apart.
const GRANT_WITHIN: Duration = Duration::from_secs(20);

/// Runs `read` again while the vault answers that this node is not granted the repository
/// yet, within [`GRANT_WITHIN`].
async fn until_granted<T, F>(mut read: impl FnMut() -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + GRANT_WITHIN;
    loop {
        match read().await {
            Err(error)
                if error.contains("403 Forbidden") && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(%error, "the vault has not heard of this read yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

fn hook_file(volume: &Path, name: &str) -> std::path::PathBuf {
    volume.join(".alveole/hooks").join(name)
}

/// Beside a dump, each table's rows in it (JSON), for drills to compare with.
pub(super) fn counts_file(dump: &Path) -> std::path::PathBuf {
    dump.with_extension("counts.json")
}

/// Counts the rows of each table in the dump and writes them beside it.
async fn write_counts(db: &DatabaseSpec, dump: &Path) -> Result<(), String> {
    let (engine, dump) = (db.engine, dump.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&dump).map_err(|e| e.to_string())?;
        let counts = crate::backup::dump_counts::count(engine, std::io::BufReader::new(file))
            .map_err(|e| e.to_string())?;
        let text = serde_json::to_vec(&counts).map_err(|e| e.to_string())?;
        std::fs::write(counts_file(&dump), text).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("counting the dump's rows stopped: {e}"))?
    .map_err(|e| format!("counting the dump's rows: {e}"))
}

/// Where a database's dump is in the site's volume while it is backed up or restored.
pub(super) fn dump_file(volume: &Path, database: &str) -> std::path::PathBuf {
    volume
        .join(".alveole/databases")
        .join(format!("{database}.sql"))
}

/// The databases of `site` in the held document.
fn databases_of(held: &DesiredState, site: SiteId) -> Vec<DatabaseSpec> {
    held.sites
        .iter()
        .find(|s| s.site_id == site)
        .map(|s| s.databases.clone())
        .unwrap_or_default()
}
