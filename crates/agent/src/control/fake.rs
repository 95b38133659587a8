//! A panel in memory, for tests of the agent without a network: it serves the desired state
//! it was given, keeps every report, and can go away and come back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use alveole_model::{DesiredState, MoveOutcome, MoveProgress, NodeReport, SiteMove, SiteMoveId};
use tokio::sync::Notify;

use super::identity::{Credential, IssuedCertificate};
use super::panel::{AgentError, Control};

#[derive(Debug, Default)]
pub struct FakePanel {
    document: Mutex<Option<DesiredState>>,
    reports: Mutex<Vec<NodeReport>>,
    outcomes: Mutex<Vec<(SiteMoveId, String)>>,
    away: AtomicBool,
    changed: Notify,
    /// Long polls begun so far.
    polls: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakePanel {
    /// What the panel wants on the node from now on.
    pub fn publish(&self, document: DesiredState) {
        *lock(&self.document) = Some(document);
        self.changed.notify_waiters();
    }

    /// Every report received, oldest first.
    pub fn reports(&self) -> Vec<NodeReport> {
        lock(&self.reports).clone()
    }

    /// How many long polls have begun.
    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    /// Every move outcome asked for (`switch`, `fail`), oldest first.
    pub fn outcomes(&self) -> Vec<(SiteMoveId, String)> {
        lock(&self.outcomes).clone()
    }

    /// The panel stops answering (or answers again).
    pub fn set_away(&self, away: bool) {
        self.away.store(away, Ordering::SeqCst);
    }

    fn answer(&self) -> Result<(), AgentError> {
        if self.away.load(Ordering::SeqCst) {
            return Err(AgentError::Refused {
                status: 503,
                detail: "the fake panel is away".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Control for FakePanel {
    async fn desired_state_after(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<DesiredState, AgentError> {
        let deadline = tokio::time::Instant::now() + wait;
        self.polls.fetch_add(1, Ordering::SeqCst);
        loop {
            self.answer()?;
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let current = lock(&self.document).clone();
            match current {
                Some(document)
                    if after.is_none_or(|after| document.generation > after)
                        || tokio::time::Instant::now() >= deadline =>
                {
                    return Ok(document);
                }
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(AgentError::Refused {
                        status: 404,
                        detail: "the fake panel has no desired state yet".into(),
                    });
                }
                _ => {
                    let _ = tokio::time::timeout_at(deadline, changed).await;
                }
            }
        }
    }

    async fn report(&self, report: &NodeReport) -> Result<(), AgentError> {
        self.answer()?;
        lock(&self.reports).push(report.clone());
        Ok(())
    }

    async fn move_progress(&self, _: SiteMoveId, _: &MoveProgress) -> Result<(), AgentError> {
        self.answer()
    }

    async fn move_outcome(
        &self,
        id: SiteMoveId,
        verb: &str,
        _: &MoveOutcome,
    ) -> Result<SiteMove, AgentError> {
        self.answer()?;
        lock(&self.outcomes).push((id, verb.to_owned()));
        Err(AgentError::Refused {
            status: 404,
            detail: "the fake panel knows no moves".into(),
        })
    }

    async fn renewed(&self, credential: &Credential) -> Result<Credential, AgentError> {
        self.answer()?;
        let lifetime = credential.not_after - credential.not_before;
        Ok(credential.renewed(IssuedCertificate {
            node_id: credential.node_id,
            certificate_pem: credential.certificate_pem.clone(),
            not_before: credential.not_after,
            not_after: credential.not_after + lifetime,
        }))
    }
}
