//! The all-in-one mode of `alveole serve`: when this machine has a Docker engine, the panel
//! also runs an agent for it. That agent is enrolled through the same HTTP enrolment as a
//! remote one, so a site created in the panel is actually served on this machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alveole_agent::agent::{Agent, Credential, PanelClient, Timing, credential};
use alveole_agent::control::files::{StateDir, StateFiles};
use alveole_agent::engine::docker::DockerRuntime;
use alveole_agent::ingress::Ingress;
use alveole_model::{Capacity, NodeId, NodeInput, Overcommit, ProviderInput};
use alveole_panel::Service;
use alveole_store::{AuditContext, NodeFilter, PageRequest, ProviderFilter, Store};
use anyhow::Context;

/// The node this machine is, in the panel.
pub const LOCAL_NODE: &str = "local";
const LOCAL_PROVIDER: &str = "This machine";
/// Declared disk of the local node; change it in the panel to match the machine.
const LOCAL_DISK_BYTES: u64 = 100 << 30;

#[derive(Clone, Debug)]
pub struct LocalAgentConfig {
    pub state_dir: PathBuf,
    pub ingress_listen: SocketAddr,
    /// Where it listens for other agents on this machine (moves to and from it); `None`: it
    /// takes no part in moves.
    pub peer_listen: Option<SocketAddr>,
    pub pass: Duration,
}

/// A running local agent; stops when dropped.
#[derive(Debug)]
pub struct LocalAgent {
    pub node_id: NodeId,
    pub ingress_address: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the local agent, or returns `None` (and says why) when no Docker engine answers.
pub async fn start(
    service: &Service,
    panel_url: &str,
    panel_ca_pem: &str,
    config: LocalAgentConfig,
) -> anyhow::Result<Option<LocalAgent>> {
    let runtime = match DockerRuntime::connect().await {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "no usable Docker engine on this machine: the local agent is off");
            return Ok(None);
        }
    };
    let node_id = ensure_local_node(service.store()).await?;
    // The panel's CA is known here first-hand: nothing to pin.
    let client = PanelClient::with_ca(panel_url, panel_ca_pem)?;
    // A credential left by another database (another node) or CA, or by an older version,
    // is useless: enrol again.
    let files = StateDir::new(&config.state_dir);
    let kept = match Credential::load(&files) {
        Ok(Some(credential))
            if credential.node_id == node_id
                && credential.not_after > service.now()
                && alveole_panel::tls::issued_by(&credential.certificate_pem, panel_ca_pem) =>
        {
            true
        }
        Ok(None) => false,
        _ => {
            Credential::forget(&files).context("forgetting a stale local credential")?;
            let _ = files.remove("desired-state.json");
            false
        }
    };
    let join_token = if kept {
        None
    } else {
        let ctx = AuditContext::new("system:local-agent", "local-agent");
        let issued = service.issue_join_token(&ctx, node_id, None).await?;
        Some(issued.join_token)
    };
    let credential = credential(&client, &config.state_dir, join_token.as_deref())
        .await
        .context("enrolling the local agent")?;

    let ingress = Arc::new(Ingress::new());
    let listener = tokio::net::TcpListener::bind(config.ingress_listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} for the local ingress",
                config.ingress_listen
            )
        })?;
    let ingress_address = listener.local_addr()?;
    let serving = tokio::spawn({
        let ingress = ingress.clone();
        async move {
            if let Err(error) = ingress.serve(listener).await {
                tracing::error!(%error, "the local ingress stopped");
            }
        }
    });
    let mut agent = Agent::new(credential, client, &config.state_dir, runtime, ingress)
        .with_ingress_ports(alveole_agent::net::routing::IngressPorts {
            http: ingress_address.port(),
            https: None,
        });
    if let Some(listen) = config.peer_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} for other agents"))?;
        let endpoints = alveole_model::AgentEndpoints {
            peer: Some(listener.local_addr()?),
            ingress: Some(ingress_address),
        };
        agent = agent
            .with_moves(listener, endpoints)
            .context("serving other agents")?;
    }
    let running = tokio::spawn(agent.run(Timing { pass: config.pass }, std::future::pending()));
    Ok(Some(LocalAgent {
        node_id,
        ingress_address,
        tasks: vec![serving, running],
    }))
}

/// The `local` node (and its provider), created with this machine's CPUs and memory if absent.
async fn ensure_local_node(store: &dyn Store) -> anyhow::Result<NodeId> {
    let all = PageRequest {
        after: None,
        limit: 500,
    };
    let nodes = store.nodes().list(&NodeFilter::default(), &all).await?;
    if let Some(node) = nodes.items.iter().find(|n| n.name.as_str() == LOCAL_NODE) {
        return Ok(node.id);
    }
    let ctx = AuditContext::new("system:local-agent", "local-agent");
    let providers = store
        .providers()
        .list(&ProviderFilter::default(), &all)
        .await?;
    let provider = match providers
        .items
        .into_iter()
        .find(|p| p.name.as_str() == LOCAL_PROVIDER)
    {
        Some(provider) => provider,
        None => {
            let input = ProviderInput {
                name: LOCAL_PROVIDER.into(),
                notes: Some("Created by alveole serve for its local agent.".into()),
                ..Default::default()
            };
            store.providers().create(&ctx, input.validate()?).await?
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let input = NodeInput {
        provider_id: provider.id,
        name: LOCAL_NODE.into(),
        public_addresses: vec!["127.0.0.1".into()],
        capacity: Capacity {
            cpu_millis: u32::try_from(cpus * 1000).unwrap_or(u32::MAX),
            memory_bytes: memory_bytes().unwrap_or(4 << 30),
            disk_bytes: LOCAL_DISK_BYTES,
        },
        overcommit: Overcommit::default(),
        input_filter: false,
        input_allowed: vec![],
    };
    Ok(store.nodes().create(&ctx, input.validate()?).await?.id)
}

/// MemTotal from /proc/meminfo.
fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
