//! Durable jobs, run by whichever panel process holds their lease. Each pass takes (or keeps)
//! the lease of unfinished jobs nobody else holds, and moves each one forward by a step. A
//! process that dies stops renewing its leases; another takes its jobs over once they expire,
//! from what the database says, so nothing is done twice: a site's move starts in the same
//! transaction as its item becomes `moving`.

use async_trait::async_trait;

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

pub(super) struct RunJobs {
    /// This process in the jobs' leases.
    owner: String,
}

impl RunJobs {
    pub(super) fn new(owner: String) -> Self {
        Self { owner }
    }
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

#[async_trait]
impl Activity for RunJobs {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let now = service.now();
        let lease = chrono::Duration::from_std(service.config().background.job_lease)
            .unwrap_or(chrono::Duration::seconds(30));
        let claimed = service
            .store()
            .claim_jobs(&self.owner, now, now + lease)
            .await?;
        for id in &claimed {
            if let Err(error) = service.advance_evacuation(*id).await {
                tracing::warn!(%error, job = %id, "a job's step failed; the next pass tries again");
            }
        }
        Ok(String::new())
    }
}
