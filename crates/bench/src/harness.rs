//! A panel and node agents in this process, on a scratch SQLite database and the real Docker
//! engine: what the end-to-end benchmarks measure through. Dropped, it stops them and removes
//! what its nodes left in the engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alveole_agent::agent::{Agent, PanelClient, Timing, credential};
use alveole_agent::engine::docker::DockerRuntime;
use alveole_agent::ingress::Ingress;
use alveole_model::{
    Capacity, MemberInput, NodeId, NodeInput, Overcommit, ProviderId, ProviderInput, Role,
};
use alveole_panel::PanelConfig;
use alveole_store::{AuditContext, Store};

pub struct BenchPanel {
    pub store: Arc<dyn Store>,
    pub ctx: AuditContext,
    pub token: String,
    /// The API, over HTTP.
    pub url: String,
    agents_url: String,
    ca_pem: String,
    pub dir: PathBuf,
    provider: ProviderId,
    nodes: Vec<NodeId>,
    tasks: Vec<tokio::task::AbortHandle>,
    /// The panel's background tasks (durable jobs among them); they stop when dropped.
    _background: alveole_panel::background::Background,
}

/// One node's running agent.
#[derive(Debug)]
pub struct BenchAgent {
    pub ingress: SocketAddr,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl BenchPanel {
    pub async fn start(config: PanelConfig) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("alveole-bench-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let store =
            alveole_store::connect(&format!("sqlite://{}", dir.join("panel.db").display())).await?;
        let ctx = AuditContext::new("system:bench", "bench");
        let token = alveole_panel::auth::reset_bootstrap_token(store.as_ref(), &ctx).await?;
        let provider = store
            .providers()
            .create(
                &ctx,
                ProviderInput {
                    name: "Bench".into(),
                    ..Default::default()
                }
                .validate()?,
            )
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let tls = alveole_panel::tls::load_or_create(
            &dir.join("tls"),
            &[],
            alveole_panel::tls::DEFAULT_AGENT_CERTIFICATE_LIFETIME,
        )?;
        let config = PanelConfig {
            agent_tls: Some(tls.clone()),
            ..config
        };
        let state = alveole_panel::AppState::new(store.clone(), config)?;
        let background = alveole_panel::background::start(state.service(), "bench".into());
        let agents = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let agents_url = format!("https://{}", agents.local_addr()?);
        let for_agents = tokio::spawn(alveole_panel::serving::serve_agents(
            alveole_panel::app(state.clone()),
            agents,
            tls.server.clone(),
            alveole_listen::Limits::default(),
            std::future::pending(),
        ));
        let for_people = tokio::spawn(alveole::serve::serve(
            state,
            listener,
            None,
            alveole_listen::Limits::default(),
        ));
        Ok(Self {
            store,
            ctx,
            token,
            url,
            agents_url,
            ca_pem: tls.ca.ca_pem.clone(),
            dir,
            provider: provider.id,
            nodes: Vec::new(),
            tasks: vec![for_agents.abort_handle(), for_people.abort_handle()],
            _background: background,
        })
    }

    /// A roomy node.
    pub async fn node(&mut self, name: &str) -> anyhow::Result<NodeId> {
        let node = NodeInput {
            provider_id: self.provider,
            name: name.into(),
            public_addresses: vec![],
            capacity: Capacity {
                cpu_millis: 64_000,
                memory_bytes: 64 << 30,
                disk_bytes: 1 << 40,
            },
            overcommit: Overcommit::default(),
            input_filter: false,
            input_allowed: vec![],
        };
        let node = self
            .store
            .nodes()
            .create(&self.ctx, node.validate()?)
            .await?;
        self.nodes.push(node.id);
        Ok(node.id)
    }

    pub async fn member(&self) -> anyhow::Result<alveole_model::MemberId> {
        let member = MemberInput {
            display_name: "Bench".into(),
            email: "bench@example.org".into(),
            role: Role::Member,
        };
        Ok(self
            .store
            .members()
            .create(&self.ctx, member.validate()?)
            .await?
            .id)
    }

    /// Enrols and runs `node`'s agent (passes every `pass`); with `moves`, it also serves
    /// other agents for site moves.
    pub async fn agent(
        &self,
        node: NodeId,
        pass: Duration,
        moves: bool,
    ) -> anyhow::Result<BenchAgent> {
        self.agent_measuring(node, pass, moves, Duration::from_secs(60))
            .await
    }

    /// As [`Self::agent`], measuring its sites' volumes every `usage_every`.
    pub async fn agent_measuring(
        &self,
        node: NodeId,
        pass: Duration,
        moves: bool,
        usage_every: Duration,
    ) -> anyhow::Result<BenchAgent> {
        let join = alveole_panel::auth::new_token("alj_");
        let expires = chrono::Utc::now() + chrono::Duration::minutes(5);
        self.store
            .create_join_token(
                &self.ctx,
                node,
                &alveole_panel::auth::hash_token(&join),
                expires,
            )
            .await?;
        let state_dir = self.dir.join(format!("agent-{node}"));
        let client = PanelClient::with_ca(&self.agents_url, &self.ca_pem)?;
        let credential = credential(&client, &state_dir, Some(&join)).await?;
        let ingress = Arc::new(Ingress::new());
        let ingress_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ingress_address = ingress_listener.local_addr()?;
        let serving = tokio::spawn(ingress.clone().serve(ingress_listener));
        let mut agent = Agent::new(
            credential,
            client,
            &state_dir,
            DockerRuntime::connect().await?,
            ingress,
        )
        .with_usage_interval(usage_every);
        if moves {
            let peers = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let endpoints = alveole_model::AgentEndpoints {
                peer: Some(peers.local_addr()?),
                ingress: Some(ingress_address),
            };
            agent = agent.with_moves(peers, endpoints)?;
        }
        let running = tokio::spawn(agent.run(Timing { pass }, std::future::pending()));
        Ok(BenchAgent {
            ingress: ingress_address,
            tasks: vec![serving.abort_handle(), running.abort_handle()],
        })
    }
}

impl Drop for BenchPanel {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for node in &self.nodes {
            crate::docker::remove_node(&alveole_agent::Naming { node_id: *node });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
