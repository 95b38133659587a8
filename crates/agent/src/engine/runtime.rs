//! The container engine as the agent sees it: a narrow trait, so the reconciler can be tested
//! against a fake that records calls, and a Docker implementation (`docker.rs`) tested against
//! the real engine.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use alveole_model::{DatabaseSpec, NodeId, SiteId, SiteSpec};
use async_trait::async_trait;

/// Labels on every object alveole creates. Every listing filters on `NODE`, so agents sharing
/// one engine never touch each other's objects, and unlabelled objects are never touched.
pub mod labels {
    pub const NODE: &str = "coop.alveole.node";
    pub const SITE: &str = "coop.alveole.site";
    /// Digest of the container's shape (`SiteSpec::container_digest`).
    pub const DIGEST: &str = "coop.alveole.digest";
    /// What a container is to its site when it is not the site's own: `pod` (the holder of
    /// the site's network namespace) or `database`.
    pub const ROLE: &str = "coop.alveole.role";
    /// The name of the database a `database` container or volume holds.
    pub const DATABASE: &str = "coop.alveole.database";
    /// On a container in a pod: the pod's endpoint on the node's network when the container
    /// was made. A pod started again has a new namespace and endpoint: its containers, left
    /// in the old namespace, are made again in the new one.
    pub const POD_ENDPOINT: &str = "coop.alveole.pod-endpoint";
}

/// How the objects of one node are named in the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    pub node_id: NodeId,
}

impl Naming {
    fn node_short(&self) -> String {
        self.node_id.0.simple().to_string()[20..].to_owned()
    }

    /// One bridge per node, with inter-container traffic disabled.
    pub fn network(&self) -> String {
        format!("alveole-{}", self.node_short())
    }

    /// The Linux name of the node's bridge (at most 15 bytes), named so the host's filter can
    /// refer to it.
    pub fn bridge(&self) -> String {
        let short = self.node_short();
        format!("alv-{}", &short[short.len() - 11..])
    }

    pub fn container(&self, site: SiteId) -> String {
        format!("alveole-{}-{}", site.0.simple(), self.node_short())
    }

    /// The holder of a site's network namespace, which the site and its databases join.
    pub fn pod(&self, site: SiteId) -> String {
        format!("alveole-{}-{}-pod", site.0.simple(), self.node_short())
    }

    pub fn database(&self, site: SiteId, database: &str) -> String {
        format!(
            "alveole-{}-{}-db-{database}",
            site.0.simple(),
            self.node_short()
        )
    }

    /// A database's data, kept like the site's volume: removed only when the site is purged.
    pub fn database_volume(&self, site: SiteId, database: &str) -> String {
        format!(
            "alveole-{}-{}-db-{database}-data",
            site.0.simple(),
            self.node_short()
        )
    }

    /// Volumes outlive containers and are removed only when a site is purged. Named per node
    /// too: a move's target makes its own copy, even on an engine two nodes share.
    pub fn volume(&self, site: SiteId) -> String {
        format!("alveole-{}-{}-data", site.0.simple(), self.node_short())
    }

    pub fn labels(&self, site: Option<SiteId>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([(labels::NODE.to_owned(), self.node_id.to_string())]);
        if let Some(site) = site {
            labels.insert(labels::SITE.to_owned(), site.to_string());
        }
        labels
    }
}

/// A container of this node as the engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub site_id: SiteId,
    pub digest: String,
    pub running: bool,
    /// Its address on the node's network, while running.
    pub address: Option<IpAddr>,
    /// In a pod: the pod's endpoint when it was made (`labels::POD_ENDPOINT`).
    pub pod_endpoint: Option<String>,
}

/// What a container beside a site's own is to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartRole {
    /// Holds the site's network namespace (and its address on the node's network).
    Pod,
    /// Runs the site's database of this name.
    Database(String),
}

/// A container of this node that serves a site without being its own: its pod or a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPart {
    pub id: String,
    pub site_id: SiteId,
    pub role: PartRole,
    pub digest: String,
    pub running: bool,
    /// A pod's address on the node's network, while running.
    pub address: Option<IpAddr>,
    /// A pod's endpoint on the node's network, while running; a database's pod's when it was
    /// made (`labels::POD_ENDPOINT`).
    pub pod_endpoint: Option<String>,
}

/// What a site's volumes use on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeUsage {
    /// Its own volume's bytes, when it has one.
    pub site: Option<u64>,
    /// Each of its databases' volumes, by database.
    pub databases: BTreeMap<String, u64>,
}

/// What exists on the node now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub network: bool,
    pub volumes: Vec<String>,
    /// The sites' own containers (a site in a pod has its pod's address).
    pub containers: Vec<ObservedContainer>,
    /// Pods and databases.
    pub parts: Vec<ObservedPart>,
}

/// One change to the node. Plans contain only changes: an unchanged node plans nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    CreateNetwork,
    CreateVolume {
        site: SiteId,
    },
    /// Create (and start, if the spec says run) the container of a site.
    Create {
        site: SiteId,
    },
    /// Swap a site's container for one of the new shape, its requests held meanwhile.
    Replace {
        site: SiteId,
        old: String,
    },
    Start {
        site: SiteId,
        container: String,
    },
    Stop {
        site: SiteId,
        container: String,
    },
    Remove {
        site: SiteId,
        container: String,
    },
    /// Remove a purged site's volumes, its databases' included (its containers are gone by
    /// then).
    RemoveVolume {
        site: SiteId,
    },
    /// Create and start the holder of a site's network namespace.
    CreatePod {
        site: SiteId,
    },
    CreateDatabaseVolume {
        site: SiteId,
        database: String,
    },
    /// Create a site's database server (started and waited for when the site runs).
    CreateDatabase {
        site: SiteId,
        database: String,
    },
    /// Swap a database's server for one of the new shape (its data stays in its volume).
    ReplaceDatabase {
        site: SiteId,
        database: String,
        old: String,
    },
    /// Start a stopped pod before its databases and the site's container.
    StartPod {
        site: SiteId,
        container: String,
    },
    /// Start a stopped database before the site's container.
    StartDatabase {
        site: SiteId,
        container: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// What the engine answered, kept whole (its own error is the source).
    #[error("the container engine refused")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the image {0} is not on this node")]
    ImageMissing(String),
    #[error("the image did not load: {0}")]
    ImageLoad(String),
    #[error(
        "the Docker engine speaks API {found}; alveole needs {needed} (Docker Engine 20.10) or newer"
    )]
    EngineTooOld { found: String, needed: String },
    #[error("container {0} has no address on the node's network")]
    NoAddress(String),
    #[error("nothing accepts connections at {address} after {waited:?}")]
    NotReady {
        address: SocketAddr,
        waited: std::time::Duration,
    },
    #[error("there is no container {0} on this node")]
    NoSuchContainer(String),
    #[error("the engine work stopped before it finished")]
    Task(#[source] tokio::task::JoinError),
    #[error("a pod takes its image from the site's first database: this site has none")]
    NoPodImage,
    #[error("the database {database} is not ready: {reason}")]
    DatabaseNotReady { database: String, reason: String },
    #[error("{0}")]
    Fake(String),
}

/// The engine operations the agent needs to run sites. `observe` reads; everything else
/// changes the node.
#[async_trait]
pub trait Runtime: Send + Sync {
    async fn observe(&self, naming: &Naming) -> Result<Observed, RuntimeError>;
    async fn create_network(&self, naming: &Naming) -> Result<(), RuntimeError>;
    async fn create_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError>;
    /// Creates the holder of the site's network namespace, on the node's network, with the
    /// site's published ports; returns its id.
    async fn create_pod(&self, naming: &Naming, spec: &SiteSpec) -> Result<String, RuntimeError>;
    async fn create_database_volume(
        &self,
        naming: &Naming,
        site: SiteId,
        database: &str,
    ) -> Result<(), RuntimeError>;
    /// Creates a database's server, hardened, in the site's pod; returns its id.
    async fn create_database(
        &self,
        naming: &Naming,
        site: SiteId,
        database: &DatabaseSpec,
    ) -> Result<String, RuntimeError>;
    /// Runs `command` (no shell) in a running container with `env` added: its exit code and
    /// the end of its standard error (its standard output is dropped).
    async fn exec(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
    ) -> Result<ExecOutcome, RuntimeError>;
    /// Creates the container of `spec`, hardened, on the node's network (in its pod, when it
    /// has databases); returns its id.
    async fn create_container(
        &self,
        naming: &Naming,
        spec: &SiteSpec,
    ) -> Result<String, RuntimeError>;
    async fn start(&self, container: &str) -> Result<(), RuntimeError>;
    async fn stop(&self, container: &str) -> Result<(), RuntimeError>;
    async fn remove(&self, container: &str) -> Result<(), RuntimeError>;
    async fn remove_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError>;
    /// The container's address on the node's network, once it runs.
    async fn address(
        &self,
        naming: &Naming,
        container: &str,
    ) -> Result<Option<IpAddr>, RuntimeError>;
    /// Waits (bounded) until the site's server accepts connections at `address`.
    async fn ready(&self, address: SocketAddr) -> Result<(), RuntimeError>;
    /// Bytes each site's volume and each of its databases' volumes use on the node (for
    /// quota alerts).
    async fn volume_usage(
        &self,
        naming: &Naming,
    ) -> Result<BTreeMap<SiteId, VolumeUsage>, RuntimeError>;
    /// Calls `poke` whenever the engine reports a change to this node's containers, for as
    /// long as the returned task runs (the agent aborts it when it stops). `None`: the engine
    /// tells nothing, and the agent's timer alone brings passes.
    fn watch(
        &self,
        naming: &Naming,
        poke: std::sync::Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>>;
    /// The engine's version, for the platform inventory.
    fn engine_version(&self) -> Option<String>;
}

/// What moving a site needs of the engine beyond running sites.
#[async_trait]
pub trait MoveRuntime: Runtime {
    /// Freezes a container's processes (their connections wait; nothing is lost).
    async fn pause(&self, container: &str) -> Result<(), RuntimeError>;
    async fn unpause(&self, container: &str) -> Result<(), RuntimeError>;
    /// The directory on this host that holds the site's volume, made if missing.
    async fn volume_path(
        &self,
        naming: &Naming,
        site: SiteId,
    ) -> Result<std::path::PathBuf, RuntimeError>;
    async fn has_image(&self, image: &alveole_model::ImageRef) -> Result<bool, RuntimeError>;
    /// The image as `docker save` writes it, streamed.
    fn save_image(&self, image: &alveole_model::ImageRef) -> ByteStream<RuntimeError>;
    /// Loads what [`MoveRuntime::save_image`] wrote (`docker load`).
    async fn load_image(&self, archive: ByteStream<std::io::Error>) -> Result<(), RuntimeError>;
    /// Runs `command` (no shell) in a running container with `env` added, its standard output
    /// written to `output` as it comes (a database dump may be large): its exit code and the
    /// end of its standard error.
    async fn exec_to_file(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        output: &std::path::Path,
    ) -> Result<ExecOutcome, RuntimeError>;
    /// Runs `command` (no shell) in a running container with `env` added, the file `input` as
    /// its standard input (a dump loaded into a database).
    async fn exec_from_file(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        input: &std::path::Path,
    ) -> Result<ExecOutcome, RuntimeError>;
}

/// How a command run in a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// Its last 2 KiB of standard error, for the reason of a failure.
    pub stderr_tail: String,
}

/// A stream of bytes from or to the engine.
pub type ByteStream<E> = futures::stream::BoxStream<'static, Result<bytes::Bytes, E>>;

/// Creates the site's container and, if it should run, starts it and waits (bounded) until it
/// accepts connections, so no request is routed to a server not yet listening: its address,
/// or `None` for a site that does not run.
pub async fn launch<R: Runtime + ?Sized>(
    runtime: &R,
    naming: &Naming,
    spec: &SiteSpec,
) -> Result<Option<SocketAddr>, RuntimeError> {
    let id = runtime.create_container(naming, spec).await?;
    if !spec.run {
        return Ok(None);
    }
    runtime.start(&id).await?;
    let Some(ip) = runtime.address(naming, &id).await? else {
        return Err(RuntimeError::NoAddress(id));
    };
    let address = SocketAddr::new(ip, spec.http_port);
    runtime.ready(address).await?;
    Ok(Some(address))
}

/// How long a new container may take to accept connections before its replacement fails.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until something accepts TCP connections at `address` (the site's server is up).
pub async fn wait_until_accepting(address: SocketAddr) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(RuntimeError::NotReady {
                address,
                waited: READY_WITHIN,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// What the reconciler asks of whatever carries the node's traffic (the ingress).
#[async_trait]
pub trait Traffic: Send + Sync {
    /// Holds new requests for `site` and waits (bounded) for those in flight to finish. The
    /// hold lasts until the returned guard is dropped.
    async fn hold(&self, site: SiteId) -> Box<dyn Send + Sync>;
    /// Sends the site's requests to a new address (called before the hold is released).
    fn repoint(&self, site: SiteId, address: SocketAddr);
}

/// For a node without an ingress (and for tests): nothing to hold.
#[derive(Debug, Default)]
pub struct NoTraffic;

#[async_trait]
impl Traffic for NoTraffic {
    async fn hold(&self, _: SiteId) -> Box<dyn Send + Sync> {
        Box::new(())
    }
    fn repoint(&self, _: SiteId, _: SocketAddr) {}
}
