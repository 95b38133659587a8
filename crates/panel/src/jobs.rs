//! Durable jobs, run by whichever panel process holds their lease. Every process runs this
//! loop: each second it takes (or keeps) the lease of unfinished jobs nobody else holds, and
//! moves each one forward by a step. A process that dies stops renewing its leases; another
//! takes its jobs over once they expire, from what the database says, so nothing is done
//! twice: a site's move starts in the same transaction as its item becomes `moving`.

use std::time::Duration;

use alveole_model::evacuation::{Evacuation, ItemState, JobState};
use alveole_model::{JobId, MovePhase};
use alveole_store::AuditContext;

use crate::AppState;
use crate::error::ApiError;

/// How a panel process takes part in running jobs.
#[derive(Clone, Copy, Debug)]
pub struct JobsConfig {
    /// Whether this process runs jobs at all.
    pub run: bool,
    /// How long a lease lasts without renewal: a dead process's jobs wait this long.
    pub lease: Duration,
    /// How often the loop runs.
    pub every: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            run: true,
            lease: Duration::from_secs(30),
            every: Duration::from_secs(1),
        }
    }
}

/// Runs jobs as `owner` (a name unique to this process) for as long as the task lives.
pub fn spawn(state: AppState, owner: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = state.config().jobs.every;
        loop {
            run_once(&state, &owner).await;
            tokio::time::sleep(every).await;
        }
    })
}

/// A name for this process's leases: host, process id, and a random part (a restarted
/// process is another owner).
pub fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}-{}-{}",
        host.trim(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// One turn of the loop: claim, then advance each claimed job.
pub async fn run_once(state: &AppState, owner: &str) {
    let now = state.config().clock.now();
    let lease = chrono::Duration::from_std(state.config().jobs.lease)
        .unwrap_or(chrono::Duration::seconds(30));
    let claimed = match state.store().claim_jobs(owner, now, now + lease).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, "could not claim jobs");
            return;
        }
    };
    for id in claimed {
        if let Err(error) = advance(state, id).await {
            tracing::warn!(%error, job = %id, "a job's step failed; the next turn tries again");
        }
    }
}

/// One step of an evacuation: settle the moves that ended, start moves up to the
/// parallelism (in plan order), finish when nothing is left.
async fn advance(state: &AppState, id: JobId) -> Result<(), ApiError> {
    let store = state.store();
    let ctx = AuditContext::new(format!("job:{id}"), "-");
    let evacuation = store.get_evacuation(id).await?;
    for item in evacuation
        .items
        .iter()
        .filter(|i| i.state == ItemState::Moving)
    {
        let Some(move_id) = item.move_id else {
            continue;
        };
        let movement = store.get_site_move(move_id).await?;
        let settled = match movement.phase {
            MovePhase::Forwarding | MovePhase::Done => Some((ItemState::Done, None)),
            MovePhase::Failed | MovePhase::Cancelled => Some((
                ItemState::Failed,
                Some(
                    movement
                        .error
                        .unwrap_or_else(|| "the move did not happen".into()),
                ),
            )),
            MovePhase::Copying => None,
        };
        if let Some((settled, error)) = settled {
            store
                .settle_evacuation_item(id, item.site_id, settled, error.as_deref())
                .await?;
        }
    }
    let evacuation = store.get_evacuation(id).await?;
    if evacuation.state == JobState::Running {
        start_moves(state, &ctx, &evacuation).await?;
    }
    let evacuation = store.get_evacuation(id).await?;
    let open = evacuation
        .items
        .iter()
        .any(|i| matches!(i.state, ItemState::Pending | ItemState::Moving));
    if !open && matches!(evacuation.state, JobState::Running | JobState::Cancelled) {
        // Finished: done, or still cancelled (the moves under way have ended).
        let done = store.finish_evacuation(&ctx, id).await?;
        tracing::info!(job = %id, items = ?done.counts(), "evacuation finished");
        state.changed().notify_waiters();
    }
    Ok(())
}

async fn start_moves(
    state: &AppState,
    ctx: &AuditContext,
    evacuation: &Evacuation,
) -> Result<(), ApiError> {
    let store = state.store();
    let mut moving = evacuation
        .items
        .iter()
        .filter(|i| i.state == ItemState::Moving)
        .count();
    let parallelism = evacuation.spec.parallelism.max(1) as usize;
    for item in evacuation
        .items
        .iter()
        .filter(|i| i.state == ItemState::Pending)
    {
        if moving >= parallelism {
            break;
        }
        let started = match crate::api::site_moves::check_target(state, item.to_node).await {
            Ok(()) => store
                .start_evacuation_item(ctx, evacuation.id, item.site_id, state.config().moves)
                .await
                .map_err(ApiError::from),
            Err(error) => Err(error),
        };
        match started {
            Ok(Some(_)) => {
                moving += 1;
                state.changed().notify_waiters();
            }
            // Another process started it first.
            Ok(None) => {}
            // This site cannot move now; the others go on.
            Err(error) => {
                // The problem's detail names the field and why, as the API would answer.
                let reason = error.problem().detail;
                tracing::warn!(job = %evacuation.id, site = %item.site_id, %reason, "a site of an evacuation cannot move");
                store
                    .settle_evacuation_item(
                        evacuation.id,
                        item.site_id,
                        ItemState::Failed,
                        Some(&reason),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}
