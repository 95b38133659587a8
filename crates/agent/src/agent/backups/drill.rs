//! A restore drill, on a node of another provider than the site's: the newest snapshot
//! restored into a scratch volume, the files compared with the snapshot's blob by blob, a
//! scratch container of the site's shape started on them (on the node's bridge, where
//! containers cannot reach each other, and never routed: it is in no site's place), probed
//! on its health path, the site's drill hook run in it, then the container and the volume
//! removed, whatever happened. Its restore time runs from the start of the restore to the
//! first good answer, without the comparison.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alveole_model::backup::{DrillEnd, DrillOrder, DrillPhase, DrillProgress};

use super::{Shared, lock};
use crate::backup::progress::ByteProgress;
use crate::backup::{RestoreWhat, restore_into, verify_restored};
use crate::engine::runtime::{MoveRuntime, launch};

/// How long a restored copy may take to answer well on its health path once it accepts
/// connections.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// How far a drill is, shared with its task.
#[derive(Clone, Debug)]
pub(super) struct DrillTracker {
    phase: Arc<Mutex<DrillPhase>>,
    pub(super) bytes: ByteProgress,
}

impl Default for DrillTracker {
    fn default() -> Self {
        Self {
            phase: Arc::new(Mutex::new(DrillPhase::Restoring)),
            bytes: ByteProgress::default(),
        }
    }
}

impl DrillTracker {
    fn enter(&self, phase: DrillPhase) {
        *lock(&self.phase) = phase;
    }

    pub(super) fn now(&self, id: alveole_model::DrillId) -> DrillProgress {
        DrillProgress {
            id,
            phase: *lock(&self.phase),
            bytes_done: self.bytes.done(),
            bytes_total: self.bytes.total(),
            finished: None,
        }
    }
}

/// Why a drill failed, and what it had restored by then.
struct Failure {
    error: String,
    snapshot: Option<(String, Option<chrono::DateTime<chrono::Utc>>)>,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Self {
            error,
            snapshot: None,
        }
    }
}

impl<R: MoveRuntime + 'static> Shared<R> {
    /// Runs the drill, removes what it made, and keeps its end for the reports.
    pub(super) async fn drill(self: Arc<Self>, order: DrillOrder, tracker: DrillTracker) {
        let end = match self.drilling(&order, &tracker).await {
            Ok(passed) => passed,
            Err(failure) => {
                tracing::warn!(site = %order.site_id, drill = %order.id, error = %failure.error, "drill failed");
                let (snapshot_id, snapshot_time) = match failure.snapshot {
                    Some((id, at)) => (Some(id), at),
                    None => (None, None),
                };
                DrillEnd::Failed {
                    error: failure.error,
                    snapshot_id,
                    snapshot_time,
                }
            }
        };
        self.remove_scratch(&order).await;
        let mut progress = tracker.now(order.id);
        progress.finished = Some(end);
        let mut journal = lock(&self.journal);
        journal.drills_ended.insert(order.id, progress);
        self.save(&journal);
    }

    async fn drilling(
        &self,
        order: &DrillOrder,
        tracker: &DrillTracker,
    ) -> Result<DrillEnd, Failure> {
        let scratch = order.scratch.site_id;
        self.runtime
            .create_volume(&self.naming, scratch)
            .await
            .map_err(|e| format!("the scratch volume: {}", crate::describe(&e)))?;
        let volume = self
            .runtime
            .volume_path(&self.naming, scratch)
            .await
            .map_err(|e| format!("the scratch volume: {}", crate::describe(&e)))?;
        let began = tokio::time::Instant::now();
        let snapshot_id = super::until_granted(|| async {
            let backend = self.backend(&order.target, &order.repository)?;
            let (password, into, bytes) = (
                order.password.0.clone(),
                volume.clone(),
                tracker.bytes.clone(),
            );
            tokio::task::spawn_blocking(move || {
                restore_into(backend, &password, &RestoreWhat::default(), &into, &bytes)
            })
            .await
            .map_err(|e| format!("the restore stopped: {e}"))?
            .map_err(|e| format!("the restore failed: {e}"))
        })
        .await?;
        let restoring = began.elapsed();
        tracker.enter(DrillPhase::Verifying);
        let backend = self.backend(&order.target, &order.repository)?;
        let (password, snapshot, into) = (
            order.password.0.clone(),
            snapshot_id.clone(),
            volume.clone(),
        );
        let verified = tokio::task::spawn_blocking(move || {
            verify_restored(backend, &password, &snapshot, &into)
        })
        .await
        .map_err(|e| format!("the comparison stopped: {e}"))?
        .map_err(|e| Failure {
            error: e.to_string(),
            snapshot: Some((snapshot_id.clone(), None)),
        })?;
        let failed = |error: String| Failure {
            error,
            snapshot: Some((snapshot_id.clone(), Some(verified.snapshot_time))),
        };
        tracker.enter(DrillPhase::Starting);
        // A drill cut short by a restart may have left its container: this run makes its own.
        if let Err(error) = self.runtime.remove(&self.naming.container(scratch)).await {
            tracing::debug!(error = %crate::describe(&error), "no earlier scratch container");
        }
        let starting = tokio::time::Instant::now();
        self.restore_scratch_databases(order, &volume)
            .await
            .map_err(failed)?;
        let address = launch(&*self.runtime, &self.naming, &order.scratch)
            .await
            .map_err(|e| failed(format!("the copy did not start: {}", crate::describe(&e))))?
            .ok_or_else(|| failed("the copy did not start".into()))?;
        tracker.enter(DrillPhase::Probing);
        let host = order.scratch.hostnames.first().map(|h| h.to_string());
        let status = probe(address, &order.health_path, host.as_deref())
            .await
            .map_err(failed)?;
        let restore_ms = u64::try_from((restoring + starting.elapsed()).as_millis()).unwrap_or(0);
        if let Some(hook) = &order.hook {
            tracker.enter(DrillPhase::Hook);
            let output = volume
                .join(".alveole/hooks")
                .join(format!("drill-{}", hook.name));
            self.run_hook(scratch, hook, &output, "drill hook")
                .await
                .map_err(failed)?;
        }
        tracing::info!(site = %order.site_id, drill = %order.id, snapshot = %snapshot_id, restore_ms, "drill passed");
        Ok(DrillEnd::Passed {
            snapshot_id,
            snapshot_time: verified.snapshot_time,
            files_verified: verified.files,
            restore_ms,
            answer_status: status,
        })
    }

    /// The copy's databases, from their dumps in the restored volume, in a pod of its own:
    /// each must answer and hold exactly the rows its dump holds.
    async fn restore_scratch_databases(
        &self,
        order: &DrillOrder,
        volume: &std::path::Path,
    ) -> Result<(), String> {
        let scratch = &order.scratch;
        if scratch.databases.is_empty() {
            return Ok(());
        }
        let site = scratch.site_id;
        let engine = |what: &str, e: crate::engine::runtime::RuntimeError| {
            format!("the copy's {what}: {}", crate::describe(&e))
        };
        let pod = self
            .runtime
            .create_pod(&self.naming, scratch)
            .await
            .map_err(|e| engine("pod", e))?;
        self.runtime
            .start(&pod)
            .await
            .map_err(|e| engine("pod", e))?;
        for db in &scratch.databases {
            let dump = super::dump_file(volume, &db.name);
            let expected: crate::backup::dump_counts::Counts =
                std::fs::read(super::counts_file(&dump))
                    .ok()
                    .and_then(|text| serde_json::from_slice(&text).ok())
                    .ok_or_else(|| {
                        format!("the backup holds no dump of the database {}", db.name)
                    })?;
            self.runtime
                .create_database_volume(&self.naming, site, &db.name)
                .await
                .map_err(|e| engine("database volume", e))?;
            let server = self
                .runtime
                .create_database(&self.naming, site, db)
                .await
                .map_err(|e| engine("database", e))?;
            self.runtime
                .start(&server)
                .await
                .map_err(|e| engine("database", e))?;
            crate::engine::database::load(self.runtime.as_ref(), &server, db, &dump).await?;
            let counted = volume
                .join(".alveole/databases")
                .join(format!("{}.counted", db.name));
            let found =
                crate::engine::database::row_counts(self.runtime.as_ref(), &server, db, &counted)
                    .await?;
            if let Some(difference) = crate::backup::dump_counts::differs(&expected, &found) {
                return Err(format!(
                    "the restored database {} does not hold its backup's rows: {difference}",
                    db.name
                ));
            }
        }
        Ok(())
    }

    /// The scratch container and volume go, whatever happened (a drill that never made them
    /// removes nothing), with the copy's databases and pod.
    async fn remove_scratch(&self, order: &DrillOrder) {
        let scratch = order.scratch.site_id;
        if let Err(error) = self.runtime.remove(&self.naming.container(scratch)).await {
            tracing::debug!(error = %crate::describe(&error), "no scratch container to remove");
        }
        for db in &order.scratch.databases {
            let _ = self
                .runtime
                .remove(&self.naming.database(scratch, &db.name))
                .await;
        }
        if !order.scratch.databases.is_empty() {
            let _ = self.runtime.remove(&self.naming.pod(scratch)).await;
        }
        if let Err(error) = self.runtime.remove_volume(&self.naming, scratch).await {
            tracing::warn!(drill = %order.id, error = %crate::describe(&error), "the scratch volume stays");
        }
    }
}

/// Asks the copy for `path` until it answers below 400 (the status), within
/// [`ANSWER_WITHIN`]; the last answer or error otherwise.
async fn probe(
    address: std::net::SocketAddr,
    path: &str,
    host: Option<&str>,
) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let url = format!("http://{address}{path}");
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        let mut request = client.get(&url);
        if let Some(host) = host {
            request = request.header(reqwest::header::HOST, host);
        }
        let last = match request.send().await {
            Ok(answer) if answer.status().as_u16() < 400 => return Ok(answer.status().as_u16()),
            Ok(answer) => format!("{path} answered {}", answer.status()),
            Err(error) => format!("{path} did not answer: {error}"),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the copy did not answer well within {} s: {last}",
                ANSWER_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
