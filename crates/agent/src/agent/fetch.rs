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
            let fetched = match &self.board {
                // A rollback recorded during a long poll goes to the panel at once, not when
                // the poll ends (up to 25 s later).
                Some(board) => tokio::select! {
                    fetched = self.fetch(seen, LONG_POLL) => fetched,
                    () = board.rollback_recorded() => continue,
                },
                None => self.fetch(seen, LONG_POLL).await,
            };
            match fetched {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fake::FakePanel;
    use crate::control::files::MemoryFiles;
    use alveole_model::{MoveOutcome, NodeId, SiteMoveId};

    fn document(generation: u64) -> DesiredState {
        DesiredState {
            node_id: NodeId::generate(),
            generation,
            sites: vec![],
            purge_volumes: vec![],
            addresses: vec![],
            input_filter: None,
            moves_out: vec![],
            moves_in: vec![],
            restores: vec![],
            drills: vec![],
            acme_challenges: vec![],
            vault: None,
        }
    }

    #[tokio::test]
    async fn a_rollback_recorded_during_a_long_poll_reaches_the_panel_at_once() {
        let panel = Arc::new(FakePanel::default());
        panel.publish(document(1));
        let board = Arc::new(Board::open(Arc::new(MemoryFiles::default())));
        let mut fetcher = Fetcher::new(panel.clone());
        fetcher.set_board(board.clone());
        // The node holds generation 1: the fetcher waits in a long poll for a newer one.
        let (_held_tx, held) = watch::channel(Some(Arc::new(document(1))));
        let (ledger, _offered) = mpsc::channel(4);
        let fetching = tokio::spawn(fetcher.run(held, ledger, Duration::from_millis(100)));
        while panel.polls() == 0 {
            tokio::task::yield_now().await;
        }

        let id = SiteMoveId::generate();
        let outcome = MoveOutcome {
            progress: Default::default(),
            reason: Some("the freeze outlived its deadline".into()),
        };
        board.rolled_back(id, outcome);
        // Well before the long poll's 25 s are over.
        let told = tokio::time::timeout(Duration::from_secs(5), async {
            while !panel.outcomes().contains(&(id, "fail".to_owned())) {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        fetching.abort();
        assert!(told.is_ok(), "told: {:?}", panel.outcomes());
    }
}
