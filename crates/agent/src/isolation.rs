//! Keeps sites away from the host's own services (the agent, a panel, SSH...). A site's
//! container reaches the host through the node bridge, and Docker filters none of it. One
//! small nftables table per node drops what enters the host from that bridge, except replies
//! to connections the host opened (the ingress talking to the sites).
//!
//! The table is written as nft JSON and applied in one atomic `nft -j -f -` transaction
//! (table, flush, chain, rules), so applying it again changes nothing. The only values in it
//! are derived from the node's id. The nftables issue extends this into alveole's one table.

use std::io::Write;
use std::process::{Command, Stdio};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::runtime::{Naming, RuntimeError};

/// Puts the node's isolation in place; called on every pass, so it also repairs drift.
#[async_trait]
pub trait Isolation: Send + Sync {
    async fn ensure(&self, naming: &Naming) -> Result<(), RuntimeError>;
}

/// The nftables implementation (needs `nft` and the right to change the host's ruleset).
#[derive(Clone, Debug, Default)]
pub struct NftIsolation;

impl NftIsolation {
    /// `Some` when `nft` runs on this host.
    pub fn detect() -> Option<Self> {
        Command::new("nft")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| Self)
    }

    pub fn table(naming: &Naming) -> String {
        format!(
            "alveole_isolation_{}",
            naming.bridge().trim_start_matches("alv-")
        )
    }

    /// The whole table as nft JSON.
    pub fn ruleset(naming: &Naming) -> Value {
        let table = Self::table(naming);
        let from_bridge = json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": naming.bridge()}});
        let replies = json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}});
        let rule = |expr: Vec<Value>| json!({"add": {"rule": {"family": "inet", "table": table, "chain": "input", "expr": expr}}});
        json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": table}}},
            {"flush": {"table": {"family": "inet", "name": table}}},
            {"add": {"chain": {"family": "inet", "table": table, "name": "input", "type": "filter", "hook": "input", "prio": -1, "policy": "accept"}}},
            rule(vec![from_bridge.clone(), replies, json!({"accept": null})]),
            rule(vec![from_bridge, json!({"drop": null})]),
        ]})
    }

    fn nft(args: &[&str], input: Option<&[u8]>) -> Result<String, RuntimeError> {
        let mut child = Command::new("nft")
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RuntimeError::Engine(format!("cannot run nft: {e}")))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(input)
                .map_err(|e| RuntimeError::Engine(format!("nft: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| RuntimeError::Engine(format!("nft: {e}")))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(RuntimeError::Engine(format!(
                "nft refused: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Whether the table is there with exactly its two rules.
    fn in_place(naming: &Naming) -> bool {
        let Ok(listing) = Self::nft(&["-j", "list", "table", "inet", &Self::table(naming)], None)
        else {
            return false;
        };
        let parsed: Value = serde_json::from_str(&listing).unwrap_or(Value::Null);
        let rules = parsed["nftables"].as_array().map_or(0, |items| {
            items.iter().filter(|i| i.get("rule").is_some()).count()
        });
        rules == 2
    }

    /// Removes the node's table (when the node is retired, and in tests).
    pub fn remove(naming: &Naming) -> Result<(), RuntimeError> {
        Self::nft(&["delete", "table", "inet", &Self::table(naming)], None).map(|_| ())
    }
}

#[async_trait]
impl Isolation for NftIsolation {
    async fn ensure(&self, naming: &Naming) -> Result<(), RuntimeError> {
        let naming = naming.clone();
        tokio::task::spawn_blocking(move || {
            if Self::in_place(&naming) {
                return Ok(());
            }
            tracing::info!(table = %Self::table(&naming), "putting the node's isolation table in place");
            let ruleset = Self::ruleset(&naming).to_string();
            Self::nft(&["-j", "-f", "-"], Some(ruleset.as_bytes())).map(|_| ())
        })
        .await
        .map_err(|e| RuntimeError::Engine(format!("isolation task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alveole_model::NodeId;

    #[test]
    fn the_ruleset_names_only_the_nodes_bridge() {
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let text = NftIsolation::ruleset(&naming).to_string();
        assert!(text.contains(&naming.bridge()));
        assert!(
            naming.bridge().len() <= 15,
            "a Linux interface name has at most 15 bytes"
        );
        assert!(
            naming
                .bridge()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
    }
}
