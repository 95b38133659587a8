//! The source's side of a move: copy, freeze, switch, or roll back.
//!
//! 1. **Image.** If the target lacks the site's image, it is streamed there (`docker save` →
//!    `docker load`): no registry needed.
//! 2. **Copy while serving.** Passes over the volume (see `volume_sync`), each sending what
//!    changed since the last, until one is small. A failure here is retried with a growing
//!    pause; the next pass sends only what the target still lacks.
//! 3. **Freeze**, each step timed: hold the site's new requests and let those in flight
//!    finish, pause the container, send the last changes, have the target start the site and
//!    pass a health check, ask the panel for the switch. Then the held requests are released
//!    to the target, and the site's requests keep being forwarded there.
//! 4. **Deadline.** The source enforces the freeze deadline alone: if the target or the panel
//!    does not answer in time, it drops the target's copy, unpauses the site and serves it
//!    again, and tells the panel once it can. The panel undoes a switch whose answer was lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alveole_model::{
    FreezeStep, MoveOutcome, MoveProgress, MoveStep, OutgoingMove, SiteMoveId, SiteSpec,
};
use tokio::time::Instant;

use super::peer::{PeerClient, PeerError, PeerIdentity};
use super::{Board, Switched};
use crate::control::panel::Control;
use crate::engine::runtime::{MoveRuntime, Naming, RuntimeError, Traffic};
use crate::ingress::Ingress;
use crate::moves::volume_sync::{PassReport, SourceTree, plan, scan};

/// Copying while the site serves stops after this many passes, or once a pass is this small:
/// the freeze then sends about as little.
const MAX_PASSES_WHILE_SERVING: u32 = 8;
const SMALL_PASS_BYTES: u64 = 4 * 1024 * 1024;
const SMALL_PASS_FILES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Tree(#[from] crate::moves::volume_sync::SyncError),
    #[error(transparent)]
    Wire(#[from] super::wire::WireError),
    #[error("the panel")]
    Panel(#[from] crate::control::panel::AgentError),
    #[error("a copy task stopped")]
    Task(#[from] tokio::task::JoinError),
}

/// Drives this node's outgoing moves.
#[derive(Debug)]
pub struct Source<R> {
    pub runtime: Arc<R>,
    pub naming: Naming,
    pub ingress: Arc<Ingress>,
    pub panel: Arc<dyn Control>,
    pub identity: PeerIdentity,
    pub board: Arc<Board>,
}

/// How a freeze ended.
enum Freeze {
    Switched,
    RolledBack(String),
}

impl<R: MoveRuntime + 'static> Source<R> {
    /// Runs the move until it switched or rolled back (the agent aborts the task if the
    /// panel cancels the move). `generation` is the desired state that listed it.
    pub async fn drive(self: Arc<Self>, movement: OutgoingMove, spec: SiteSpec, generation: u64) {
        let mut progress = MoveProgress::default();
        let report = self.reporter(movement.id);
        // A freeze cut short by a restart may have left the site paused.
        let _ = self
            .runtime
            .unpause(&self.naming.container(movement.site_id))
            .await;
        let mut pause = Duration::from_secs(1);
        loop {
            progress.attempts += 1;
            let attempt = if self.board.was_switching(movement.id) {
                Ok(Freeze::RolledBack(
                    "the agent restarted while the switch was asked: rolled back, which undoes a switch the panel made"
                        .into(),
                ))
            } else {
                self.attempt(&movement, &spec, &mut progress, &report).await
            };
            match attempt {
                Ok(Freeze::Switched) => {
                    tracing::info!(move_id = %movement.id, freeze_ms = ?progress.freeze_ms, "switched");
                    self.board.switched(
                        movement.id,
                        Switched {
                            site: movement.site_id,
                            hostnames: movement.hostnames.clone(),
                            to: movement.target_ingress,
                            generation,
                        },
                    );
                    // The freeze's figures; the panel keeps them on the move.
                    report.send_replace(progress);
                    return;
                }
                Ok(Freeze::RolledBack(reason)) => {
                    tracing::warn!(move_id = %movement.id, %reason, "the freeze rolled back; serving the site here");
                    report.send_replace(progress.clone());
                    let outcome = MoveOutcome {
                        progress,
                        reason: Some(reason),
                    };
                    self.board.rolled_back(movement.id, outcome.clone());
                    if self
                        .panel
                        .move_outcome(movement.id, "fail", &outcome)
                        .await
                        .is_ok()
                    {
                        tracing::info!(move_id = %movement.id, "the panel knows of the rollback");
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(move_id = %movement.id, %error, "a move's copy failed; trying again");
                    progress.last_error = Some(error.to_string());
                    report.send_replace(progress.clone());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Sends the latest progress in the background, in order: the move never waits for the
    /// panel, and the panel ends with the latest figures even if it was away for a while (up
    /// to an hour of retries: telemetry, not state).
    fn reporter(&self, id: SiteMoveId) -> tokio::sync::watch::Sender<MoveProgress> {
        const GIVE_UP_AFTER: u32 = 1_800;
        let (sender, mut latest) = tokio::sync::watch::channel(MoveProgress::default());
        let panel = self.panel.clone();
        tokio::spawn(async move {
            let mut sent = MoveProgress::default();
            let mut failures = 0u32;
            loop {
                let progress = latest.borrow_and_update().clone();
                // Retried (the latest each time) for as long as there is something new.
                while progress != sent && failures < GIVE_UP_AFTER {
                    match panel.move_progress(id, &progress).await {
                        Ok(()) => sent = progress.clone(),
                        Err(error) => {
                            failures += 1;
                            tracing::debug!(%error, "could not send a move's progress");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            break;
                        }
                    }
                }
                if failures >= GIVE_UP_AFTER {
                    tracing::warn!(move_id = %id, "gave up sending a move's progress: the panel was away for an hour");
                    return;
                }
                if progress == sent && latest.changed().await.is_err() {
                    return;
                }
            }
        });
        sender
    }

    async fn attempt(
        &self,
        movement: &OutgoingMove,
        spec: &SiteSpec,
        progress: &mut MoveProgress,
        report: &tokio::sync::watch::Sender<MoveProgress>,
    ) -> Result<Freeze, MoveError> {
        let peer = self
            .identity
            .client(movement.to_node, movement.target_peer)?;
        if !peer.has_image(movement.id).await? {
            progress.step = MoveStep::ShippingImage;
            report.send_replace(progress.clone());
            let archive = self.runtime.save_image(&spec.image);
            peer.send_image(movement.id, reqwest::Body::wrap_stream(archive))
                .await?;
        }
        progress.step = MoveStep::Copying;
        report.send_replace(progress.clone());
        let volume = self
            .runtime
            .volume_path(&self.naming, movement.site_id)
            .await?;
        for pass in 0..MAX_PASSES_WHILE_SERVING {
            let sent = send_pass(&peer, movement.id, &volume, progress, pass == 0).await?;
            report.send_replace(progress.clone());
            if sent.bytes <= SMALL_PASS_BYTES && sent.files <= SMALL_PASS_FILES {
                break;
            }
        }
        progress.step = MoveStep::Freezing;
        progress.freeze_steps.clear();
        report.send_replace(progress.clone());
        Ok(self.freeze(&peer, movement, &volume, progress).await)
    }

    async fn freeze(
        &self,
        peer: &PeerClient,
        movement: &OutgoingMove,
        volume: &Path,
        progress: &mut MoveProgress,
    ) -> Freeze {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(movement.freeze_deadline_ms);
        let container = self.naming.container(movement.site_id);
        let mut steps = Vec::new();
        let step = |steps: &mut Vec<FreezeStep>, name: &str| {
            steps.push(FreezeStep {
                step: name.to_owned(),
                at_ms: started.elapsed().as_millis() as u64,
            })
        };
        let held = tokio::time::timeout_at(deadline, self.ingress.hold(movement.site_id)).await;
        let Ok(hold) = held else {
            progress.freeze_ms = Some(started.elapsed().as_millis() as u64);
            return Freeze::RolledBack(
                "requests in flight did not finish before the freeze deadline".into(),
            );
        };
        step(&mut steps, "hold");
        let mut paused = false;
        let switched = tokio::time::timeout_at(deadline, async {
            self.runtime.pause(&container).await?;
            paused = true;
            step(&mut steps, "pause");
            send_pass(peer, movement.id, volume, progress, false).await?;
            step(&mut steps, "final_pass");
            let left = deadline.saturating_duration_since(Instant::now());
            peer.start(movement.id, left).await?;
            step(&mut steps, "target_started");
            let asked = MoveOutcome {
                progress: MoveProgress {
                    freeze_steps: steps.clone(),
                    ..progress.clone()
                },
                reason: None,
            };
            self.board.switching(movement.id);
            self.panel
                .move_outcome(movement.id, "switch", &asked)
                .await?;
            step(&mut steps, "switch");
            Ok::<_, MoveError>(())
        })
        .await;
        let failure = match switched {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!(
                "the freeze outlived its deadline of {} ms",
                movement.freeze_deadline_ms
            )),
        };
        match failure {
            None => {
                // Held requests go to the target as soon as the hold ends.
                self.ingress
                    .forward(movement.site_id, movement.target_ingress);
                drop(hold);
                step(&mut steps, "release");
                progress.step = MoveStep::Switched;
                progress.freeze_ms = Some(started.elapsed().as_millis() as u64);
                progress.freeze_steps = steps;
                progress.last_error = None;
                Freeze::Switched
            }
            Some(reason) => {
                // The target's copy must not answer: dropped in the background.
                let (peer, id) = (peer.clone(), movement.id);
                tokio::spawn(async move {
                    if let Err(error) = peer.abort(id).await {
                        tracing::warn!(%error, "could not drop the target's copy; its agent drops it when the move leaves its desired state");
                    }
                });
                if paused && let Err(error) = self.runtime.unpause(&container).await {
                    tracing::error!(%error, "could not unpause the site after a rollback");
                }
                drop(hold);
                step(&mut steps, "release");
                progress.step = MoveStep::RolledBack;
                progress.freeze_ms = Some(started.elapsed().as_millis() as u64);
                progress.freeze_steps = steps;
                progress.last_error = Some(reason.clone());
                Freeze::RolledBack(reason)
            }
        }
    }
}

/// One pass to the target: its manifest, the delta, the stream. Counted into `progress`.
async fn send_pass(
    peer: &PeerClient,
    id: SiteMoveId,
    volume: &Path,
    progress: &mut MoveProgress,
    first_of_attempt: bool,
) -> Result<PassReport, MoveError> {
    let theirs = peer.manifest(id).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let root: PathBuf = volume.to_owned();
    let producer = tokio::task::spawn_blocking(move || {
        let ours = scan(&root)?;
        let delta = plan(&ours.entries, &theirs);
        let tree = SourceTree::open(&root)?;
        let total: u64 = ours
            .entries
            .values()
            .map(|e| match e {
                crate::moves::volume_sync::Entry::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        let mut out =
            std::io::BufWriter::with_capacity(super::wire::CHUNK + 64, ChannelWriter { sender });
        let sent = super::wire::send_pass(&ours, &theirs, &delta, &tree, &mut out)?;
        Ok::<_, MoveError>((sent, total))
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let applied = peer.pass(id, reqwest::Body::wrap_stream(body)).await;
    let (sent, total) = producer.await??;
    applied?;
    progress.passes += 1;
    progress.bytes_sent += sent.bytes;
    progress.files_sent += sent.files as u64;
    progress.volume_bytes = total;
    if first_of_attempt {
        progress.bytes_already_there = total.saturating_sub(sent.bytes);
    }
    Ok(sent)
}

/// Hands what a blocking pass writes to the request body, a chunk at a time.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.sender
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(bytes)))
            .map_err(|_| std::io::Error::other("the peer stopped reading"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
