//! The desired state of one node: what the panel wants running there, as one document with a
//! generation number. The agent accepts only newer generations, persists the document, and
//! reconciles its node toward it, so it can keep serving from the last document it accepted
//! when the panel is away.

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exposure::{ExposedPort, LimitTier, Transport};
use crate::hostname::Hostname;
use crate::ids::{NodeId, SiteId};
use crate::image::ImageRef;
use crate::resources::{Limits, Security, Volume};

/// Everything a node should run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DesiredState {
    pub node_id: NodeId,
    /// Grows with every change that concerns this node.
    pub generation: u64,
    pub sites: Vec<SiteSpec>,
    /// Sites whose volumes must go (deleted and purged): removed once no container uses them.
    #[serde(default)]
    pub purge_volumes: Vec<SiteId>,
    /// Every public address the node answers on (its own and its sites' dedicated ones): the
    /// agent holds them on its uplink and announces them. An address moving to another node
    /// is in no node's list until the old node has let it go.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The node's input filter, when its admins opted in.
    #[serde(default)]
    pub input_filter: Option<InputFilter>,
    /// Sites this node moves away (it copies them out, then forwards their requests).
    #[serde(default)]
    pub moves_out: Vec<crate::site_move::OutgoingMove>,
    /// Sites moving here: their containers are the move's, not the reconciler's, until the
    /// switch makes them this node's sites.
    #[serde(default)]
    pub moves_in: Vec<crate::site_move::IncomingMove>,
    /// Other nodes' repositories this node keeps, when it is a vault.
    #[serde(default)]
    pub vault: Option<crate::backup::VaultSpec>,
    /// Restores into this node's sites, until the node reports them ended.
    #[serde(default)]
    pub restores: Vec<crate::backup::RestoreOrder>,
    /// Restore drills this node runs for sites of other providers, until it reports them
    /// ended: their scratch containers are the drill's, not the reconciler's.
    #[serde(default)]
    pub drills: Vec<crate::backup::DrillOrder>,
    /// Answers to the ACME CA's HTTP-01 challenges for this node's sites, while their orders
    /// run: the ingress answers them over plain HTTP, before any redirect or site.
    #[serde(default)]
    pub acme_challenges: Vec<crate::https::AcmeChallenge>,
}

/// The host's own services (SSH, the agent's ports) answer only these networks: the admins'
/// allow list and the co-op's other nodes. The ingress stays open to all. The agent applies a
/// new filter "commit-confirmed": unless it reaches the panel after applying it, it goes back
/// to the filter it had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InputFilter {
    /// Sorted, each once.
    pub allowed: Vec<crate::Prefix>,
}

/// One site as a node runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteSpec {
    pub site_id: SiteId,
    /// The names the ingress routes to this site, primary first.
    pub hostnames: Vec<Hostname>,
    pub image: ImageRef,
    pub command: Vec<String>,
    /// With secret values: this document travels only between the panel and the node's agent
    /// and is stored on the node with mode 0600.
    pub env: Vec<WireEnv>,
    /// The port the site's container serves HTTP on.
    pub http_port: u16,
    pub volume: Volume,
    pub limits: Limits,
    #[serde(default)]
    pub security: Security,
    /// Whether the container should be running (a stopped site keeps its container and volume).
    pub run: bool,
    /// The public addresses the panel allocated to this site alone (an IPv4 and an IPv6 one,
    /// say): their ports 80/443 go to the node's ingress, their exposed ports to the
    /// container, and the site's egress leaves from them.
    #[serde(default)]
    pub dedicated_addresses: Vec<IpAddr>,
    /// Extra ports of the dedicated address forwarded to the container.
    #[serde(default)]
    pub exposed_ports: Vec<ExposedPort>,
    #[serde(default)]
    pub limit_tier: LimitTier,
    /// Its backups, when its policy names targets (with the repository's key).
    #[serde(default)]
    pub backup: Option<crate::backup::SiteBackupSpec>,
    /// Its certificate, when it has one: the ingress serves HTTPS for its names with it.
    #[serde(default)]
    pub tls: Option<SiteTls>,
    /// Its admission limits and key, when protection is on.
    #[serde(default)]
    pub admission: Option<crate::admission::SiteAdmission>,
    /// Its databases, each a server beside the site, in the site's network namespace (the
    /// site's `env` already holds the variables that say how to reach them).
    #[serde(default)]
    pub databases: Vec<crate::database::DatabaseSpec>,
    /// Set by the node's agent alone, never sent: the site is stopped while its volume is
    /// restored, its databases keep running to take their dumps back.
    #[serde(skip)]
    pub databases_stay_up: bool,
}

/// A site's certificate as its node serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SiteTls {
    /// The certificate, then its chain, in PEM.
    pub chain_pem: String,
    /// Its private key in PEM (PKCS#8, SEC1 or PKCS#1), for the node only.
    pub key_pem: crate::backup::WireSecret,
    /// Plain HTTP requests are redirected to HTTPS (the ACME challenge path excepted).
    #[serde(default = "redirect_by_default")]
    pub redirect: bool,
    /// `Strict-Transport-Security: max-age` on its HTTPS answers; 0: none.
    #[serde(default)]
    pub hsts_seconds: u32,
}

fn redirect_by_default() -> bool {
    true
}

/// An environment variable with its value, for the node only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WireEnv {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for WireEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=[redacted]", self.name)
    }
}

impl SiteSpec {
    /// The container ports the site exposes, each protocol and port once.
    pub fn published_ports(&self) -> Vec<(Transport, u16)> {
        let ports: std::collections::BTreeSet<_> = self
            .exposed_ports
            .iter()
            .map(|p| (p.protocol, p.container_port))
            .collect();
        ports.into_iter().collect()
    }

    /// A digest of everything that shapes the container (not whether it runs): a container
    /// whose recorded digest differs is replaced.
    pub fn container_digest(&self) -> String {
        let mut shape = serde_json::json!({
            "image": self.image,
            "command": self.command,
            "env": self.env,
            "http_port": self.http_port,
            "volume": self.volume,
            "limits": self.limits,
            "security": self.security,
        });
        // The container publishes its exposed ports (see the agent's routing), but which
        // public port or address leads there is routing, not shape. Absent when empty, so
        // containers made before exposed ports existed keep their digest.
        let published = self.published_ports();
        if !published.is_empty() {
            shape["published"] = serde_json::json!(published);
        }
        // A site with databases joins its pod's network namespace instead of the bridge.
        if !self.databases.is_empty() {
            shape["pod"] = serde_json::json!(true);
        }
        short_digest(&shape)
    }

    /// A digest of what shapes the site's pod: the ports it publishes for the site.
    pub fn pod_digest(&self) -> String {
        short_digest(&serde_json::json!({ "published": self.published_ports() }))
    }
}

/// The first 16 bytes of the SHA-256 of `shape`'s JSON, in hex.
pub(crate) fn short_digest(shape: &serde_json::Value) -> String {
    let digest = Sha256::digest(shape.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl DesiredState {
    /// A digest of the whole document, to tell two documents of the same generation apart.
    pub fn content_digest(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Wildcard;

    pub(crate) fn spec() -> SiteSpec {
        SiteSpec {
            site_id: SiteId::generate(),
            hostnames: vec![Hostname::parse("a.example.org", Wildcard::Refused).unwrap()],
            image: ImageRef::parse("alveole-test/busybox:1").unwrap(),
            command: vec![],
            env: vec![WireEnv {
                name: "PASSWORD".into(),
                value: "hunter2".into(),
            }],
            http_port: 8080,
            volume: Volume::default(),
            limits: Limits::default(),
            security: Default::default(),
            run: true,
            dedicated_addresses: vec![],
            exposed_ports: vec![],
            limit_tier: LimitTier::Standard,
            backup: None,
            tls: None,
            admission: None,
            databases: vec![],
            databases_stay_up: false,
        }
    }

    #[test]
    fn the_container_digest_follows_the_container_shape_only() {
        let a = spec();
        let mut stopped = a.clone();
        stopped.run = false;
        stopped.hostnames.clear();
        assert_eq!(
            a.container_digest(),
            stopped.container_digest(),
            "running or routing is not shape"
        );
        let mut changed = a.clone();
        changed.env[0].value = "other".into();
        assert_ne!(a.container_digest(), changed.container_digest());
        assert!(!format!("{a:?}").contains("hunter2"), "values never print");
        let mut routed = a.clone();
        routed.dedicated_addresses = vec!["192.0.2.10".parse().unwrap()];
        routed.limit_tier = LimitTier::Large;
        assert_eq!(
            a.container_digest(),
            routed.container_digest(),
            "the address and tier are routing, not shape"
        );
        routed.exposed_ports = vec![ExposedPort {
            protocol: Transport::Tcp,
            port: 2222,
            container_port: 22,
        }];
        assert_ne!(a.container_digest(), routed.container_digest());
        let mut moved = routed.clone();
        moved.exposed_ports[0].port = 2022;
        assert_eq!(
            routed.container_digest(),
            moved.container_digest(),
            "a new public port needs no new container"
        );
    }
}
