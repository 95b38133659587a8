//! The fetch task: long-polls the panel for a desired state newer than the one held, and hands
//! each to the ledger, so that a change reaches the node in about the time of a request. A
//! rollback the panel has not heard of goes first: until it has, no newer document is fetched
//! (one might drop the site the agent kept serving).

use std::sync::Arc;
use std::time::Duration;

use alveole_model::DesiredState;
use tokio::sync::{mpsc, watch};

use crate::control::panel::{AgentError, Control};
use crate::moves::Board;

/// How long one long poll of the panel may wait (under the client's 30 s timeout).
const LONG_POLL: Duration = Duration::from_secs(25);

pub(super) struct Fetcher {
    control: Arc<dyn Control>,
    /// The moves' board, when the agent takes part in moves (its unheard rollbacks).
    board: Option<Arc<Board>>,
}

impl Fetcher {
    pub(super) fn new(control: Arc<dyn Control>) -> Self {
        Self {
            control,
            board: None,
        }
    }

    pub(super) fn set_board(&mut self, board: Arc<Board>) {
        self.board = Some(board);
    }

    /// Tells the panel of rollbacks it has not heard of; false while one is unheard.
    async fn report_rollbacks(&self) -> bool {
        let Some(board) = &self.board else {
            return true;
        };
        let mut all_heard = true;
        for (id, outcome) in board.unreported() {
            if let Err(error) = self.control.move_outcome(id, "fail", &outcome).await {
                tracing::warn!(error = %crate::describe(&error), move_id = %id, "the panel has not heard of a rollback yet");
                all_heard = false;
            }
        }
        all_heard
    }

    /// The panel's desired state, once it is newer than `after` or `wait` has passed.
    pub(super) async fn fetch(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<DesiredState, AgentError> {
        if !self.report_rollbacks().await {
            return Err(AgentError::RollbackUnheard);
        }
        self.control.desired_state_after(after, wait).await
    }

    /// Hands every newer document to the ledger, for as long as the ledger listens. When the
    /// panel is unreachable, tries again every `pause`.
    pub(super) async fn run(
        self,
        held: watch::Receiver<Option<Arc<DesiredState>>>,
        ledger: mpsc::Sender<DesiredState>,
        pause: Duration,
    ) {
        // The newest generation handed over, whatever the ledger made of it: a refused
        // document is not asked for again.
        let mut handed: Option<u64> = None;
        loop {
            let held_generation = held.borrow().as_ref().map(|d| d.generation);
            let seen = held_generation.max(handed);
            match self.fetch(seen, LONG_POLL).await {
                Ok(offered) if seen.is_none_or(|seen| offered.generation > seen) => {
                    handed = Some(offered.generation);
                    if ledger.send(offered).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %crate::describe(&error), generation = ?held_generation, "panel unreachable; serving from the held desired state");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}
