//! Talking to the kernel's packet filter through the `nft` program, in the host's network
//! namespace or (tests, benchmarks) in a named one.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::session::{NftSession, SessionError};

/// The three things the router asks of nftables.
pub trait Nft: Send + Sync {
    /// Applies a JSON batch as one transaction: all of it or nothing.
    fn apply(&self, batch: &str) -> Result<(), NftError>;
    /// `nft -j list table inet NAME`, or `None` when there is no such table. Without
    /// `elements`, sets and maps are listed without their contents (`nft -t`), which costs
    /// little whatever the number of sites.
    fn list_table(&self, name: &str, elements: bool) -> Result<Option<String>, NftError>;
    /// The names of every chain of every table, as `(family, table, chain)`.
    fn chains(&self) -> Result<Vec<(String, String, String)>, NftError>;
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft refused: {0}")]
    Refused(String),
    #[error("nft printed something alveole cannot read: {0}")]
    Unreadable(String),
}

/// Batches up to this size go through the running session; larger ones (whole tables) to a
/// new `nft -f`, whose cost they dwarf anyway.
const SESSION_BATCH_MAX: usize = 64 * 1024;

/// The `nft` program.
#[derive(Clone, Debug, Default)]
pub struct NftCommand {
    /// A network namespace to work in (`ip netns exec`), or the agent's own.
    netns: Option<String>,
    /// The running `nft -j -i` for small transactions, started at the first one.
    session: Arc<Mutex<Option<NftSession>>>,
}

impl NftCommand {
    pub fn host() -> Self {
        Self::default()
    }

    pub fn in_netns(name: &str) -> Self {
        Self {
            netns: Some(name.to_owned()),
            ..Self::default()
        }
    }

    fn program(&self) -> Command {
        match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "nft"]);
                c
            }
            None => Command::new("nft"),
        }
    }

    /// The process id of the running `nft -j -i`, if one runs.
    pub fn session_pid(&self) -> Option<u32> {
        self.session.lock().ok()?.as_ref().map(NftSession::pid)
    }

    /// A small batch through the running session (started if need be). `None` when the
    /// session cannot be used: the caller runs nft once instead.
    fn apply_in_session(&self, batch: &str) -> Option<Result<(), NftError>> {
        let mut session = self.session.lock().ok()?;
        if session.is_none() {
            *session = NftSession::start(self.program())
                .map_err(|error| tracing::debug!(%error, "no nft session"))
                .ok();
        }
        match session.as_mut()?.apply(batch) {
            Ok(()) => Some(Ok(())),
            Err(SessionError::Refused(message)) => Some(Err(NftError::Refused(message))),
            Err(SessionError::Broken(reason)) => {
                tracing::debug!(%reason, "the nft session ended; running nft once");
                *session = None;
                None
            }
        }
    }

    /// Whether `nft` runs here (and may list the ruleset).
    pub fn available(&self) -> bool {
        self.run(&["list", "tables"], None).is_ok()
    }

    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<String, NftError> {
        let mut child = self
            .program()
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Spawn)?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input).map_err(NftError::Spawn)?;
        }
        let output = child.wait_with_output().map_err(NftError::Spawn)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(NftError::Refused(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ))
        }
    }
}

impl Nft for NftCommand {
    fn apply(&self, batch: &str) -> Result<(), NftError> {
        if batch.len() <= SESSION_BATCH_MAX
            && let Some(result) = self.apply_in_session(batch)
        {
            return result;
        }
        self.run(&["-j", "-f", "-"], Some(batch.as_bytes()))
            .map(|_| ())
    }

    fn list_table(&self, name: &str, elements: bool) -> Result<Option<String>, NftError> {
        let args: &[&str] = if elements {
            &["-j", "list", "table", "inet", name]
        } else {
            &["-j", "-t", "list", "table", "inet", name]
        };
        match self.run(args, None) {
            Ok(listing) => Ok(Some(listing)),
            Err(NftError::Refused(message)) if message.contains("No such file or directory") => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    fn chains(&self) -> Result<Vec<(String, String, String)>, NftError> {
        let listing = self.run(&["-j", "list", "chains"], None)?;
        let root: serde_json::Value =
            serde_json::from_str(&listing).map_err(|e| NftError::Unreadable(e.to_string()))?;
        Ok(root["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let chain = item.get("chain")?;
                Some((
                    chain["family"].as_str()?.to_owned(),
                    chain["table"].as_str()?.to_owned(),
                    chain["name"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }
}
