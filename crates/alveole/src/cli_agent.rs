//! `alveole agent`'s flags and `ALVEOLE_*` variables: the panel it joins, its listeners
//! (ingress, metrics, other agents), its uplink, the vault's place and overload protection.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::cli::IngressConnectionArgs;

/// A listening address, or none (`off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// `0.0.0.0:8444`, or `off`.
pub(crate) fn listen_or_off(text: &str) -> Result<Listen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|address| Listen(Some(address)))
        .map_err(|_| format!("{text} is not an address and port (0.0.0.0:8444), nor `off`"))
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The panel's address, as the node reaches it.
    #[arg(long, env = "ALVEOLE_PANEL_URL")]
    pub panel_url: String,
    /// Where the agent keeps its credential and the last desired state it accepted.
    #[arg(long, env = "ALVEOLE_STATE_DIR", default_value = "/var/lib/alveole")]
    pub state_dir: PathBuf,
    /// SHA-256 of the panel's CA, from the join command: the agent trusts that CA only.
    #[arg(long, env = "ALVEOLE_PANEL_CA_SHA256")]
    pub panel_ca_sha256: Option<String>,
    /// The one-time token from `POST /api/v1/nodes/{id}/join-token` (first start only).
    #[arg(long, env = "ALVEOLE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Address and port of the node's HTTP ingress.
    #[arg(long, env = "ALVEOLE_INGRESS_LISTEN", default_value = "0.0.0.0:80")]
    pub ingress_listen: SocketAddr,
    /// Address and port of the node's HTTPS ingress (each site with a certificate, chosen by
    /// the name the client asks for; port 443 of dedicated addresses leads here). Unset: no
    /// HTTPS.
    #[arg(long, env = "ALVEOLE_INGRESS_HTTPS_LISTEN")]
    pub ingress_https_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub connections: IngressConnectionArgs,
    /// Where the agent serves its ingress's Prometheus metrics (`/metrics`).
    #[arg(long, env = "ALVEOLE_METRICS_LISTEN", default_value = "127.0.0.1:9101")]
    pub metrics_listen: SocketAddr,
    /// Seconds between two passes (ask the panel, then reconcile).
    #[arg(long, env = "ALVEOLE_PASS_SECONDS", default_value_t = 5)]
    pub pass_seconds: u64,
    /// The interface that carries the node's public addresses (eth0): the agent then adds
    /// the addresses the panel gives the node there, announces them (gratuitous ARP,
    /// unsolicited neighbour advertisements) and removes those moved away. Without it the
    /// node's addresses are configured by hand.
    #[arg(long, env = "ALVEOLE_UPLINK", value_parser = uplink_name)]
    pub uplink: Option<String>,
    /// Seconds a new input filter may go without the agent reaching the panel before the
    /// agent rolls it back to the previous one (commit-confirmed).
    #[arg(
        long,
        env = "ALVEOLE_INPUT_FILTER_CONFIRM_SECONDS",
        default_value_t = 60
    )]
    pub input_filter_confirm_seconds: u64,
    /// Where the agent listens for other agents (site moves, mutual TLS with the panel's CA).
    /// `off`: the node takes no part in moves (neither way).
    #[arg(long, env = "ALVEOLE_PEER_LISTEN", default_value = "0.0.0.0:8444", value_parser = listen_or_off)]
    pub peer_listen: Listen,
    /// The address other agents reach the peer listener at, when not the listening address
    /// (behind NAT, or listening on 0.0.0.0; the join command gives it from the node's
    /// first public address).
    #[arg(long, env = "ALVEOLE_PEER_ADVERTISE")]
    pub peer_advertise: Option<SocketAddr>,
    /// The address other nodes reach this node's ingress at (a moved site's old node forwards
    /// its requests there), when not the listening address.
    #[arg(long, env = "ALVEOLE_INGRESS_ADVERTISE")]
    pub ingress_advertise: Option<SocketAddr>,
    /// Where this node keeps other nodes' backups when the panel makes it a vault (a backup
    /// target): restic repositories, one per site. `vault/` of the state directory when not
    /// given; a disk of its own is better.
    #[arg(long, env = "ALVEOLE_VAULT_DIR")]
    pub vault_dir: Option<PathBuf>,
    /// A stylesheet (CSS) applied to the waiting room's page after its own: the co-op's
    /// colours, fonts and logo.
    #[arg(long, env = "ALVEOLE_WAITING_ROOM_CSS")]
    pub waiting_room_css: Option<PathBuf>,
    /// Node pressure (Linux PSI, the larger of CPU's and memory's `some avg10`, in percent)
    /// above which every site's admissions are lowered, in proportion to their limits (to a
    /// quarter at full pressure). 100: never.
    #[arg(long, env = "ALVEOLE_PRESSURE_THRESHOLD", default_value_t = 40, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub pressure_threshold: u8,
}

fn uplink_name(text: &str) -> Result<String, String> {
    if alveole_agent::net::uplink::valid_interface_name(text) {
        Ok(text.to_owned())
    } else {
        Err("not a network interface name (at most 15 letters, digits, '.', '-', '_')".into())
    }
}
