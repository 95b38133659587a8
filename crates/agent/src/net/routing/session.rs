//! One `nft -j -i` process kept running for small transactions. Starting `nft` costs about
//! 10 ms (a process, its libraries, its first look at the ruleset); a line written to a
//! running one costs well under a millisecond. Each line is one transaction, as with `-f`.
//! After each batch the session asks `describe tcp dport`, whose one-line answer marks the end
//! of what nft said about the batch: anything nft printed before it is the batch's error.
//! (`describe` needs nothing from the kernel; `list tables` would make nft fetch every set's
//! elements, 300 ms at 40,000.) nft's errors and answers share one pipe, so they arrive in the
//! order nft wrote them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::nft::NftError;

/// How long nft may take over one small transaction before the session is given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Asked after each batch; its answer starts with `MARKER`.
const MARKER_QUESTION: &str = "describe tcp dport";
const MARKER: &str = "payload expression, datatype inet_service";

pub struct NftSession {
    child: Child,
    stdin: ChildStdin,
    /// nft's output, line by line, read by a thread of its own (so a stuck nft cannot block
    /// the agent beyond `ANSWER_WITHIN`).
    lines: Receiver<String>,
}

impl std::fmt::Debug for NftSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSession")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl NftSession {
    /// Starts `nft -j -i` (`program` is `nft`, or `ip netns exec NS nft`).
    pub fn start(mut program: Command) -> Result<Self, NftError> {
        let (reader, writer) = std::io::pipe().map_err(NftError::Spawn)?;
        let mut child = program
            .args(["-j", "-i"])
            .stdin(Stdio::piped())
            .stdout(writer.try_clone().map_err(NftError::Spawn)?)
            .stderr(writer)
            .spawn()
            .map_err(NftError::Spawn)?;
        // The parent's copies of the writing end went with `program`: the reader sees the end
        // of the stream when nft exits.
        drop(program);
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| NftError::Unreadable("nft has no input".into()))?;
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Applies one JSON batch (a single line) as one transaction.
    pub fn apply(&mut self, batch: &str) -> Result<(), SessionError> {
        if batch.contains('\n') {
            return Err(SessionError::Broken("a batch is one line".into()));
        }
        let mut input = String::with_capacity(batch.len() + 16);
        input.push_str(batch);
        input.push('\n');
        input.push_str(MARKER_QUESTION);
        input.push('\n');
        self.stdin
            .write_all(input.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| SessionError::Broken(e.to_string()))?;
        let mut said = Vec::new();
        loop {
            match self.lines.recv_timeout(ANSWER_WITHIN) {
                Ok(line) if line.starts_with(MARKER) => break,
                Ok(line) => said.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(SessionError::Broken("nft did not answer in time".into()));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SessionError::Broken("nft exited".into()));
                }
            }
        }
        let said = said.join("\n");
        if said.trim().is_empty() {
            Ok(())
        } else {
            Err(SessionError::Refused(said.trim().to_owned()))
        }
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub enum SessionError {
    /// nft refused the batch (nothing of it was applied).
    Refused(String),
    /// The session no longer works (nft exited, hung, or cannot be written to): start
    /// another, or run nft once.
    Broken(String),
}
