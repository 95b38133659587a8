//! The agent against the real Docker engine of this machine. Each test works as its own node
//! (a fresh node id), so it sees and touches only its own objects, and removes them at the end,
//! even when it fails ([`NodeCleanup`]). These tests run one at a time (nextest group `serial`).

use std::process::Command;

use alveole_agent::control::panel::Control;
use alveole_agent::engine::docker::DockerRuntime;
use alveole_agent::engine::runtime::MoveRuntime;
use alveole_agent::net::routing::{IngressPorts, NftCommand, NftRouting, Shape};
use alveole_agent::{Action, Naming, Reconciler};
use alveole_model::{
    DesiredState, Hostname, ImageRef, Limits, NodeId, SiteId, SiteSpec, Volume, Wildcard, WireEnv,
};
use alveole_tests::docker::{NodeCleanup, docker};
use alveole_tests::{TEST_IMAGE, ensure_test_image, hello_command};

mod agent;
mod backups;
mod database_backups;
mod databases;
mod drills;
mod engine;
mod https;
mod local;
mod moves;
mod network;
mod recovery;

/// A table whose dedicated addresses' port 80 stays port 80 (no ingress in these tests).
const NO_INGRESS: IngressPorts = IngressPorts {
    http: 80,
    https: None,
};

fn spec(name: &str) -> SiteSpec {
    SiteSpec {
        site_id: SiteId::generate(),
        hostnames: vec![
            Hostname::parse(&format!("{name}.example.org"), Wildcard::Refused).unwrap(),
        ],
        image: ImageRef::parse(TEST_IMAGE).unwrap(),
        command: hello_command(),
        env: vec![WireEnv {
            name: "SITE_NAME".into(),
            value: name.into(),
        }],
        http_port: 8080,
        volume: Volume::default(),
        limits: Limits {
            cpu_millis: 250,
            memory_bytes: 64 << 20,
            pids: 64,
            ..Limits::default()
        },
        security: Default::default(),
        run: true,
        dedicated_addresses: vec![],
        exposed_ports: vec![],
        limit_tier: Default::default(),
        backup: None,
        tls: None,
        admission: None,
        databases: vec![],
        databases_stay_up: false,
    }
}

async fn setup() -> Option<(Reconciler<DockerRuntime>, Naming, NodeCleanup)> {
    if !ensure_test_image() {
        return None;
    }
    let runtime = DockerRuntime::connect().await.expect("connect to Docker");
    let naming = Naming {
        node_id: NodeId::generate(),
    };
    let cleanup = NodeCleanup::new([naming.node_id]);
    Some((Reconciler::new(runtime, naming.clone()), naming, cleanup))
}

async fn get(address: std::net::IpAddr) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    // The server may need a moment after start: retry a bounded number of times on refusal.
    let mut last = None;
    for _ in 0..50 {
        match client.get(format!("http://{address}:8080/")).send().await {
            Ok(response) => return response.text().await,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last.expect("an error"))
}

/// GET `/` through the ingress with `Host: host`: (status, body).
async fn through_ingress(ingress: std::net::SocketAddr, host: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{ingress}/"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Enrols an agent for `node` with the panel: its credential, a client, its state directory.
async fn enroll(
    panel: &alveole_tests::TestPanel,
    node: &str,
) -> (
    alveole_agent::agent::Credential,
    alveole_agent::agent::PanelClient,
    std::path::PathBuf,
) {
    let (status, join) = panel
        .post(
            &format!("/api/v1/nodes/{node}/join-token"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 201, "{join}");
    let state_dir =
        std::env::temp_dir().join(format!("alveole-agent-{}", uuid::Uuid::now_v7().simple()));
    let client = panel.agent_client();
    let credential =
        alveole_agent::agent::credential(&client, &state_dir, join["join_token"].as_str())
            .await
            .unwrap();
    (credential, client, state_dir)
}

/// A panel with a provider, a node and a member, and an agent enrolled for the node; the
/// node's engine objects and its agent's state directory go when `cleanup` is dropped. `None` (said loudly) without Docker.
struct Fixture {
    db: alveole_tests::TestDb,
    panel: alveole_tests::TestPanel,
    node: String,
    node_id: NodeId,
    member: String,
    credential: alveole_agent::agent::Credential,
    client: alveole_agent::agent::PanelClient,
    state_dir: std::path::PathBuf,
    cleanup: NodeCleanup,
}

impl Fixture {
    async fn start() -> Option<Fixture> {
        alveole_tests::init();
        if !ensure_test_image() {
            return None;
        }
        let db = alveole_tests::TestDb::sqlite().await;
        let panel = alveole_tests::TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let node_id: NodeId = node.parse().unwrap();
        let (credential, client, state_dir) = enroll(&panel, &node).await;
        let cleanup = NodeCleanup::new([node_id]).with_dir(&state_dir);
        Some(Fixture {
            db,
            panel,
            node,
            node_id,
            member,
            credential,
            client,
            state_dir,
            cleanup,
        })
    }
}
