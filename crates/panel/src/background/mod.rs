//! Background tasks, one file each. Each runs on a timer and when poked
//! ([`Service::poke`]), takes no input from what woke it, and is idempotent: a pass that fails
//! is simply the next pass's work (the shape of Omicron's `nexus/src/app/background`).

mod audit_verification;
mod backups;
mod certificates;
mod checkpoints;
mod cleanup;
mod forwardings;
mod jobs;

use std::time::Duration;

use async_trait::async_trait;

use crate::error::ApiError;
use crate::service::Service;

pub use jobs::owner_name;

/// The panel's background tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Ends the forwarding of moves whose period is over.
    Forwardings,
    /// Forgets expired sessions, sign-ins, break-glass links and join tokens.
    Cleanup,
    /// Takes the leases of durable jobs and moves each forward a step.
    Jobs,
    /// Signs a checkpoint of the audit chain when it has grown.
    Checkpoints,
    /// Checks the audit chain from the last check onwards (and whole, now and then).
    AuditVerification,
    /// Records each site's data-loss window, makes missing repository keys, forgets old runs.
    Backups,
    /// Orders and renews sites' certificates from the co-op's ACME CA.
    Certificates,
}

impl Task {
    pub const ALL: [Task; 7] = [
        Task::Forwardings,
        Task::Cleanup,
        Task::Jobs,
        Task::Checkpoints,
        Task::AuditVerification,
        Task::Backups,
        Task::Certificates,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::Forwardings => "forwardings",
            Task::Cleanup => "cleanup",
            Task::Jobs => "jobs",
            Task::Checkpoints => "checkpoints",
            Task::AuditVerification => "audit_verification",
            Task::Backups => "backups",
            Task::Certificates => "certificates",
        }
    }
}

/// Whether and how often this process runs its background tasks.
#[derive(Clone, Copy, Debug)]
pub struct BackgroundConfig {
    /// Whether this process runs them at all (tests of a panel without them turn this off).
    pub run: bool,
    /// How long a job's lease lasts without renewal: a dead process's jobs wait this long.
    pub job_lease: Duration,
    pub jobs_every: Duration,
    pub forwardings_every: Duration,
    pub cleanup_every: Duration,
    pub checkpoints_every: Duration,
    pub verification_every: Duration,
    /// How often a check of the audit chain starts from its first event again.
    pub full_verification_every: Duration,
    /// How often each site's data-loss window is recorded (its plot's resolution).
    pub backups_every: Duration,
    /// How often certificates due are ordered (each site's ACME changes poke it at once).
    pub certificates_every: Duration,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            run: true,
            job_lease: Duration::from_secs(30),
            jobs_every: Duration::from_secs(1),
            forwardings_every: Duration::from_secs(5),
            cleanup_every: Duration::from_secs(600),
            checkpoints_every: Duration::from_secs(3600),
            verification_every: Duration::from_secs(60),
            full_verification_every: Duration::from_secs(24 * 3600),
            backups_every: Duration::from_secs(60),
            certificates_every: Duration::from_secs(60),
        }
    }
}

/// One background task's pass.
#[async_trait]
trait Activity: Send + 'static {
    /// Does what is due now; returns what it did, for the log.
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError>;
}

/// The running tasks of this process; dropping it stops them.
#[derive(Debug)]
pub struct Background {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// Starts this process's tasks (none when `run` is off); `owner` names this process in job
/// leases (unique to it: a restarted process is another owner).
pub fn start(service: &Service, owner: String) -> Background {
    let config = service.config().background;
    if !config.run {
        return Background { handles: vec![] };
    }
    let mut tasks: Vec<(Task, Duration, Box<dyn Activity>)> = vec![
        (
            Task::Forwardings,
            config.forwardings_every,
            Box::new(forwardings::EndForwardings),
        ),
        (
            Task::Cleanup,
            config.cleanup_every,
            Box::new(cleanup::RemoveExpired),
        ),
        (
            Task::Jobs,
            config.jobs_every,
            Box::new(jobs::RunJobs::new(owner)),
        ),
        (
            Task::AuditVerification,
            config.verification_every,
            Box::new(audit_verification::VerifyAudit::default()),
        ),
        (
            Task::Backups,
            config.backups_every,
            Box::new(backups::BackupWindows),
        ),
    ];
    if service.config().acme.is_some() {
        tasks.push((
            Task::Certificates,
            config.certificates_every,
            Box::new(certificates::OrderCertificates),
        ));
    }
    if service.config().notary.is_some() {
        tasks.push((
            Task::Checkpoints,
            config.checkpoints_every,
            Box::new(checkpoints::SignCheckpoints),
        ));
    }
    let handles = tasks
        .into_iter()
        .map(|(task, every, activity)| tokio::spawn(drive(service.clone(), task, every, activity)))
        .collect();
    Background { handles }
}

/// Runs `activity` every `every` (the first time one period after start) and whenever the
/// task is poked.
async fn drive(service: Service, task: Task, every: Duration, mut activity: Box<dyn Activity>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = service.poked(task).notified() => {}
        }
        match activity.activate(&service).await {
            Ok(done) if done.is_empty() => {}
            Ok(done) => tracing::debug!(task = task.name(), %done, "background task ran"),
            Err(error) => {
                tracing::warn!(task = task.name(), %error, "background task failed; its next pass tries again");
            }
        }
    }
}
