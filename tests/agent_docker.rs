//! The agent against the real Docker engine of this machine. Each test works as its own node
//! (a fresh node id), so it sees and touches only its own objects, and removes them at the end.
//! These tests run one at a time (nextest group `serial`).

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use alveole_agent::control::panel::Control;
use alveole_agent::engine::docker::DockerRuntime;
use alveole_agent::engine::runtime::MoveRuntime;
use alveole_agent::net::routing::{IngressPorts, NftCommand, NftRouting, Shape};
use alveole_agent::{Action, Naming, Reconciler};
use alveole_model::{
    DesiredState, Hostname, ImageRef, Limits, NodeId, SiteId, SiteSpec, Volume, Wildcard, WireEnv,
};
use alveole_tests::{TEST_IMAGE, ensure_test_image, hello_command};

/// A table whose dedicated addresses' port 80 stays port 80 (no ingress in these tests).
const NO_INGRESS: IngressPorts = IngressPorts {
    http: 80,
    https: None,
};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

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
        },
        security: Default::default(),
        run: true,
        dedicated_addresses: vec![],
        exposed_ports: vec![],
        limit_tier: Default::default(),
    }
}

/// Removes everything labelled for `node`, whatever state the test left.
struct NodeCleanup(NodeId, Naming);

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let filter = format!("label=coop.alveole.node={}", self.0);
        for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
            docker(&["rm", "-f", id]);
        }
        for volume in docker(&["volume", "ls", "-q", "--filter", &filter]).lines() {
            docker(&["volume", "rm", "-f", volume]);
        }
        docker(&["network", "rm", &self.1.network()]);
        alveole_agent::net::routing::remove_node_table(&NftCommand::host(), &self.1);
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
    let cleanup = NodeCleanup(naming.node_id, naming.clone());
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

#[tokio::test]
async fn docker_a_site_runs_hardened_and_drift_is_repaired() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    // The optional hardening too: a read-only root and an unprivileged user.
    let mut alpha = spec("alpha");
    alpha.security = alveole_model::Security {
        read_only_root: true,
        user: Some("1000:1000".into()),
    };
    let mut desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![alpha],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let site = desired.sites[0].site_id;

    let report = reconciler.reconcile(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let address = report.addresses[&site];
    assert_eq!(get(address).await.unwrap().trim(), "hello from alpha");
    let container = naming.container(site);
    let first_id = docker(&["inspect", "-f", "{{.Id}}", &container]);

    // Nothing changed: nothing done, same container.
    let again = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(again.actions, []);
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &container]), first_id);

    // Hardening, as the engine reports it.
    let inspect: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", &container])).unwrap();
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges:true"])
    );
    assert_eq!(host["Memory"], 64 << 20);
    assert_eq!(host["NanoCpus"], 250_000_000);
    assert_eq!(host["PidsLimit"], 64);
    assert!(
        !inspect.to_string().contains("docker.sock"),
        "no engine socket inside"
    );
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(inspect[0]["Config"]["User"], "1000:1000");
    // By behaviour: the image cannot be written to, /tmp can, and nobody is root.
    let write_root = Command::new("docker")
        .args(["exec", &container, "/bin/busybox", "touch", "/x"])
        .output()
        .unwrap();
    assert!(
        !write_root.status.success(),
        "the root file system is read-only"
    );
    assert_eq!(
        docker(&["exec", &container, "/bin/busybox", "id", "-u"]),
        "1000"
    );

    // Drift: removed by hand → back; stopped by hand → running again.
    docker(&["rm", "-f", &container]);
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(report.actions, [Action::Create { site }]);
    assert_eq!(
        get(report.addresses[&site]).await.unwrap().trim(),
        "hello from alpha"
    );
    docker(&["stop", "-t", "1", &container]);
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert!(
        matches!(report.actions.as_slice(), [Action::Start { .. }]),
        "{:?}",
        report.actions
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &container]),
        "true"
    );

    // Containers of other nodes, and unlabelled ones, are never touched; this node's
    // containers for sites no longer desired are removed.
    let other_node = format!("coop.alveole.node={}", NodeId::generate());
    let gone = SiteId::generate();
    let leftover_site = format!("coop.alveole.site={gone}");
    let this_node = format!("coop.alveole.node={}", naming.node_id);
    let foreign = docker(&[
        "create",
        "--label",
        &other_node,
        "--label",
        &leftover_site,
        TEST_IMAGE,
        "/bin/sleep",
        "60",
    ]);
    let unlabelled = docker(&["create", TEST_IMAGE, "/bin/sleep", "60"]);
    let leftover = docker(&[
        "create",
        "--label",
        &this_node,
        "--label",
        &leftover_site,
        TEST_IMAGE,
        "/bin/sleep",
        "60",
    ]);
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(
        report.actions,
        [Action::Remove {
            site: gone,
            container: leftover.clone()
        }]
    );
    assert!(
        docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("id={leftover}")
        ])
        .is_empty()
    );
    for kept in [&foreign, &unlabelled] {
        assert_eq!(
            docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={kept}")]),
            *kept
        );
        docker(&["rm", "-f", kept]);
    }

    // A changed environment replaces the container; the volume stays.
    desired.generation = 2;
    desired.sites[0].env[0].value = "beta".into();
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(
        get(report.addresses[&site]).await.unwrap().trim(),
        "hello from beta"
    );
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", &container]), first_id);

    // The site is no longer desired: container gone, volume kept until purge.
    desired.generation = 3;
    desired.sites.clear();
    reconciler.reconcile(&desired).await.unwrap();
    assert!(docker(&["ps", "-aq", "--filter", &format!("name={container}")]).is_empty());
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", naming.volume(site))
        ]),
        naming.volume(site)
    );
}

#[tokio::test]
async fn docker_sites_cannot_reach_each_other() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("a"), spec("b")],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let (a, b) = (desired.sites[0].site_id, desired.sites[1].site_id);
    // Positive first: the host reaches both, and A's own server answers inside A.
    assert_eq!(
        get(report.addresses[&b]).await.unwrap().trim(),
        "hello from b"
    );
    assert_eq!(
        get(report.addresses[&a]).await.unwrap().trim(),
        "hello from a"
    );
    let inside = docker(&[
        "exec",
        &naming.container(a),
        "/bin/busybox",
        "timeout",
        "3",
        "wget",
        "-O",
        "-",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(inside, "hello from a");
    // Then A → B by address fails. (busybox 1.35's wget crashes with -q or -T: `timeout` bounds it.)
    let url = format!("http://{}:8080/", report.addresses[&b]);
    let status = Command::new("docker")
        .args([
            "exec",
            &naming.container(a),
            "/bin/busybox",
            "timeout",
            "3",
            "wget",
            "-O",
            "-",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "A reached B: {}",
        String::from_utf8_lossy(&status.stdout)
    );
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

#[tokio::test]
async fn docker_panel_and_agent_serve_a_site_end_to_end() {
    use alveole_agent::agent::{Agent, credential};
    use alveole_agent::ingress::Ingress;
    use alveole_tests::{TestDb, TestPanel};
    use serde_json::json;
    use std::sync::Arc;

    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    let (node, member) = panel.seed().await;
    let node_id: NodeId = node.parse().unwrap();
    let _cleanup = NodeCleanup(node_id, Naming { node_id });

    // Enrolment: an admin asks for a join token; the agent trades it for its credential.
    let (status, join) = panel
        .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201, "{join}");
    let state_dir =
        std::env::temp_dir().join(format!("alveole-agent-{}", uuid::Uuid::now_v7().simple()));
    let client = panel.agent_client();
    let credential = credential(&client, &state_dir, join["join_token"].as_str())
        .await
        .unwrap();
    assert_eq!(credential.node_id, node_id);
    let reused = panel
        .agent_client()
        .enroll(
            join["join_token"].as_str().unwrap(),
            &alveole_agent::control::identity::NewKey::generate()
                .unwrap()
                .csr_pem,
        )
        .await;
    assert!(reused.is_err(), "a join token works once");

    let ingress = Arc::new(Ingress::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress_address = listener.local_addr().unwrap();
    let server = tokio::spawn(ingress.clone().serve(listener));
    let runtime = DockerRuntime::connect().await.unwrap();
    let mut agent = Agent::new(
        credential.clone(),
        client.clone(),
        &state_dir,
        runtime,
        ingress.clone(),
    );

    // A site created through the API is served by the node's ingress.
    let site = json!({
        "owner_id": member, "primary_domain": "e2e.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "e2e"}],
        "limits": {"cpu_millis": 250, "memory_bytes": 67108864, "pids": 64}
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    let site_id = created["id"].as_str().unwrap().to_owned();
    let report = agent.pass().await.expect("a pass");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        through_ingress(ingress_address, "E2E.example.org").await,
        (200, "hello from e2e\n".to_owned())
    );
    // The agent reported the site running: the panel shows it, and the node as reachable.
    assert_eq!(
        panel.get(&format!("/api/v1/sites/{site_id}")).await.1["phase"],
        "running"
    );
    let (_, node_status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert_eq!(node_status["reachable"], true, "{node_status}");
    assert_eq!(node_status["report"]["sites"][0]["state"], "running");

    // A change arrives with the next pass: the container is replaced while the ingress holds
    // the site's requests, and a request loop running through the replacement sees no failure.
    let container = Naming { node_id }.container(site_id.parse().unwrap());
    let first_id = docker(&["inspect", "-f", "{{.Id}}", &container]);
    let version = panel.get(&format!("/api/v1/sites/{site_id}")).await.1["version"].clone();
    let patch = json!({"version": version, "env": [{"name": "SITE_NAME", "value": "changed"}]});
    let (status, _) = panel
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sites/{site_id}"),
            Some(patch),
        )
        .await;
    assert_eq!(status, 200);
    let replaced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requests = {
        let replaced = replaced.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap();
            let (mut failures, mut bodies) = (
                Vec::new(),
                std::collections::BTreeMap::<String, usize>::new(),
            );
            // Bounded: at most 3,000 requests; stops 20 requests after the replacement ended.
            let mut after = 0;
            for _ in 0..3_000 {
                match client
                    .get(format!("http://{ingress_address}/"))
                    .header("host", "e2e.example.org")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        *bodies.entry(r.text().await.unwrap()).or_default() += 1
                    }
                    Ok(r) => failures.push(r.status().to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
                if replaced.load(std::sync::atomic::Ordering::SeqCst) {
                    after += 1;
                    if after >= 20 {
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            (failures, bodies)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let report = agent.pass().await.expect("a pass");
    replaced.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        matches!(
            report.actions.as_slice(),
            [alveole_agent::Action::Replace { .. }]
        ),
        "{:?}",
        report.actions
    );
    let (failures, bodies) = requests.await.unwrap();
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "no request failed during the replacement"
    );
    assert!(
        bodies.contains_key("hello from e2e\n") && bodies.contains_key("hello from changed\n"),
        "{bodies:?}"
    );
    assert_eq!(agent.held_generation(), Some(2));
    assert_eq!(
        through_ingress(ingress_address, "e2e.example.org").await.1,
        "hello from changed\n"
    );
    let second_id = docker(&["inspect", "-f", "{{.Id}}", &container]);
    assert_ne!(first_id, second_id);

    // The panel goes away: the site keeps answering, through an agent restart too, with the
    // same container.
    let panel_base = panel.base.clone();
    panel.stop().await;
    assert!(
        reqwest::get(format!("{panel_base}/healthz")).await.is_err(),
        "the panel is down"
    );
    agent.pass().await.expect("a pass from the held state");
    drop(agent);
    let runtime = DockerRuntime::connect().await.unwrap();
    let mut restarted = Agent::new(credential, client, &state_dir, runtime, ingress.clone());
    assert_eq!(
        restarted.held_generation(),
        Some(2),
        "the held document survived the restart"
    );
    let report = restarted.pass().await.expect("a pass from the held state");
    assert_eq!(report.actions, [], "nothing to change after a restart");
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &container]), second_id);
    assert_eq!(
        through_ingress(ingress_address, "e2e.example.org").await.1,
        "hello from changed\n"
    );

    // The panel comes back; a change made there reaches the node.
    panel.resume().await;
    let version = panel.get(&format!("/api/v1/sites/{site_id}")).await.1["version"].clone();
    let patch = json!({"version": version, "env": [{"name": "SITE_NAME", "value": "back"}]});
    let (status, _) = panel
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sites/{site_id}"),
            Some(patch),
        )
        .await;
    assert_eq!(status, 200);
    restarted.pass().await.expect("a pass");
    assert_eq!(
        through_ingress(ingress_address, "e2e.example.org").await.1,
        "hello from back\n"
    );

    // Unknown hosts get alveole's own page.
    let (status, body) = through_ingress(ingress_address, "nobody.example.org").await;
    assert_eq!(status, 404);
    assert!(body.contains("alveole") && body.contains("nobody.example.org"));

    // The ingress counted all of it, per site, for Prometheus.
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_address = metrics_listener.local_addr().unwrap();
    let metrics_server = tokio::spawn(alveole_agent::ingress::serve_metrics(
        ingress.clone(),
        metrics_listener,
    ));
    let metrics = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served = metrics
        .lines()
        .find(|l| {
            l.starts_with("alveole_ingress_requests_total")
                && l.contains(&site_id)
                && l.contains("2xx")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(served.is_some_and(|n| n > 20), "{metrics}");
    assert!(
        metrics.contains(r#"alveole_ingress_requests_total{site="none",class="4xx"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("alveole_ingress_request_duration_seconds_bucket"),
        "{metrics}"
    );
    metrics_server.abort();

    // Purged: the site's name gets alveole's own page; container and volume are gone.
    let (status, _) = panel
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site_id}/purge"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let report = restarted.pass().await.expect("a pass");
    assert!(
        report
            .actions
            .iter()
            .any(|a| matches!(a, alveole_agent::Action::RemoveVolume { .. })),
        "{:?}",
        report.actions
    );
    let (status, body) = through_ingress(ingress_address, "e2e.example.org").await;
    assert_eq!(status, 404);
    assert!(body.contains("alveole"));
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name={container}")]).is_empty(),
        "container gone"
    );
    let volume = Naming { node_id }.volume(site_id.parse().unwrap());
    assert!(
        docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]).is_empty(),
        "volume gone"
    );
    server.abort();
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_serve_runs_a_local_agent_for_this_machine() {
    use alveole::local::{LOCAL_NODE, LocalAgentConfig, start};
    use alveole_tests::{TestDb, TestPanel};
    use serde_json::json;

    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let state_dir =
        std::env::temp_dir().join(format!("alveole-local-{}", uuid::Uuid::now_v7().simple()));
    let config = LocalAgentConfig {
        state_dir: state_dir.clone(),
        ingress_listen: "127.0.0.1:0".parse().unwrap(),
        pass: std::time::Duration::from_millis(200),
    };
    let local = start(
        panel.service(),
        &panel.agent_base,
        &panel.tls.ca.ca_pem,
        config,
    )
    .await
    .unwrap()
    .expect("Docker is here");
    let _cleanup = NodeCleanup(
        local.node_id,
        Naming {
            node_id: local.node_id,
        },
    );

    // The panel now knows this machine as the node `local`, and places sites there.
    let (_, nodes) = panel.get("/api/v1/nodes").await;
    assert_eq!(nodes["items"][0]["name"], LOCAL_NODE);
    let (_, member) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": "Local", "email": "local@example.org"}),
        )
        .await;
    let site = json!({
        "owner_id": member["id"], "primary_domain": "hello.localhost", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "local"}]
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["node_id"], local.node_id.to_string());

    // The agent picks it up on one of its next passes (bounded wait on its outcome).
    let mut answer = (0, String::new());
    for _ in 0..100 {
        answer = through_ingress(local.ingress_address, "hello.localhost").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, "hello from local\n".to_owned()));

    drop(local);
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_drift_is_repaired_on_engine_events_without_waiting_for_the_timer() {
    use alveole_agent::agent::{Agent, Timing};
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        node_id,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let site = json!({
        "owner_id": member, "primary_domain": "events.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "events"}]
    });
    let (_, created) = panel.post("/api/v1/sites", site).await;
    let container = Naming { node_id }.container(created["id"].as_str().unwrap().parse().unwrap());

    // A timer of an hour: after the first pass, only engine events can trigger another.
    let agent = Agent::new(
        credential,
        client,
        &state_dir,
        DockerRuntime::connect().await.unwrap(),
        Arc::new(Ingress::new()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.run(
        Timing {
            pass: std::time::Duration::from_secs(3600),
        },
        async {
            let _ = stopped.await;
        },
    ));
    let running_id = |name: &str| {
        docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("name={name}"),
        ])
    };
    let wait_for = |want_new_than: String| {
        let container = container.clone();
        async move {
            // Bounded: 60 s, for a loaded CI machine; usually about one second.
            for _ in 0..600 {
                let id = running_id(&container);
                if !id.is_empty() && id != want_new_than {
                    return id;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the container did not come back");
        }
    };
    let first = wait_for(String::new()).await;
    docker(&["rm", "-f", &container]);
    let second = wait_for(first.clone()).await;
    assert_ne!(first, second, "a new container replaced the removed one");

    let _ = stop.send(());
    running.await.unwrap();
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_limits_hold_and_the_neighbour_keeps_serving() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let mut greedy = spec("greedy");
    greedy.limits = Limits {
        cpu_millis: 250,
        memory_bytes: 32 << 20,
        pids: 32,
    };
    let neighbour = spec("neighbour");
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![greedy.clone(), neighbour.clone()],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let neighbour_address = report.addresses[&neighbour.site_id];
    let greedy_container = naming.container(greedy.site_id);

    // A fork storm (bounded: 200 tries) stops at the process limit.
    let storm = Command::new("docker")
        .args([
            "exec",
            &greedy_container,
            "/bin/sh",
            "-c",
            "for i in $(/bin/busybox seq 1 200); do /bin/sleep 30 & done 2>/dev/null; true",
        ])
        .output()
        .unwrap();
    assert!(
        !storm.status.success(),
        "the storm hit the limit: {}",
        String::from_utf8_lossy(&storm.stderr)
    );
    let pids: u32 = docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.PIDs}}",
        &greedy_container,
    ])
    .parse()
    .unwrap();
    assert!(pids <= 32, "{pids} processes in a container limited to 32");
    assert_eq!(
        get(neighbour_address).await.unwrap().trim(),
        "hello from neighbour"
    );

    // Eating memory past the limit gets the eater killed (137); the neighbour is untouched.
    docker(&["restart", "-t", "0", &greedy_container]);
    let eat = Command::new("docker")
        .args([
            "exec",
            &greedy_container,
            "/bin/sh",
            "-c",
            "a=$(/bin/busybox head -c 100000000 /dev/zero | /bin/busybox tr '\\0' a); echo ${#a}",
        ])
        .output()
        .unwrap();
    assert_eq!(eat.status.code(), Some(137), "out of memory: killed");
    assert_eq!(
        get(neighbour_address).await.unwrap().trim(),
        "hello from neighbour"
    );
}

#[tokio::test]
async fn docker_forty_sites_share_one_node_network() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let sites: Vec<SiteSpec> = (0..40)
        .map(|i| {
            let mut s = spec(&format!("site{i}"));
            s.limits = Limits {
                cpu_millis: 50,
                memory_bytes: 16 << 20,
                pids: 16,
            };
            s
        })
        .collect();
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: sites.clone(),
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        report.addresses.len(),
        40,
        "more sites than Docker's default ~31 networks, on one network"
    );
    let networks = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=coop.alveole.node={}", naming.node_id),
    ]);
    assert_eq!(networks.lines().count(), 1);
    for (i, site) in sites.iter().enumerate() {
        assert_eq!(
            get(report.addresses[&site.site_id]).await.unwrap().trim(),
            format!("hello from site{i}")
        );
    }
    assert_eq!(
        reconciler.reconcile(&desired).await.unwrap().actions,
        [],
        "and a second pass changes nothing"
    );
}

/// A TCP service on every address of the host, standing for the agent's or the panel's port:
/// answers one line of HTTP to whoever connects.
async fn host_service() -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\n\r\nhost service\n")
                .await;
        }
    });
    (port, task)
}

#[tokio::test]
async fn docker_sites_cannot_reach_the_hosts_own_services() {
    use std::sync::Arc;

    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    if !NftCommand::host().available() {
        alveole_tests::skip_or_fail("nftables", "nft is not installed (.ci/run installs it)");
        return;
    }
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("a")],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let a = naming.container(desired.sites[0].site_id);
    let gateway = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &naming.network(),
    ]);
    let (port, service) = host_service().await;
    let from_a = |url: String| {
        let a = a.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new("docker")
                    .args([
                        "exec",
                        &a,
                        "/bin/busybox",
                        "timeout",
                        "3",
                        "wget",
                        "-O",
                        "-",
                        &url,
                    ])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let url = format!("http://{gateway}:{port}/");

    // Positive first: without isolation, A reaches the host's service (so the probe works).
    let open = from_a(url.clone()).await;
    assert_eq!(
        String::from_utf8_lossy(&open.stdout).trim(),
        "host service",
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );

    // With the node's isolation in place, it does not; the host still reaches the site.
    let isolated = Reconciler::new(DockerRuntime::connect().await.unwrap(), naming.clone())
        .with_routing(Arc::new(NftRouting::new(NftCommand::host(), NO_INGRESS)));
    let report_isolated = isolated.reconcile(&desired).await.unwrap();
    assert_eq!(report_isolated.routing_error, None);
    let blocked = from_a(url.clone()).await;
    assert!(
        !blocked.status.success(),
        "A reached the host: {}",
        String::from_utf8_lossy(&blocked.stdout)
    );
    assert_eq!(
        get(report.addresses[&desired.sites[0].site_id])
            .await
            .unwrap()
            .trim(),
        "hello from a"
    );

    // Someone deletes the table: the next pass puts it back.
    alveole_agent::net::routing::remove_node_table(&NftCommand::host(), &naming);
    let table_listed = || {
        Command::new("nft")
            .args([
                "list",
                "table",
                "inet",
                &Shape::of(&naming, NO_INGRESS).table,
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!table_listed(), "the table is gone");
    let repaired = isolated.reconcile(&desired).await.unwrap();
    assert!(table_listed(), "the pass put it back");
    assert!(
        repaired
            .routing_drift()
            .is_some_and(|d| d.lines.iter().any(|l| l.starts_with("- table inet"))),
        "and said so: {:?}",
        repaired.routing
    );
    assert!(
        !from_a(url).await.status.success(),
        "closed again after the pass"
    );
    service.abort();
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

#[tokio::test]
async fn docker_a_volume_over_its_quota_raises_an_alert() {
    use alveole_agent::agent::Agent;
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        node,
        node_id,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let site = json!({
        "owner_id": member, "primary_domain": "quota.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "quota"}],
        "volume": {"quota_bytes": 1048576, "mount_path": "/data"}
    });
    let (_, created) = panel.post("/api/v1/sites", site).await;
    let site_id: SiteId = created["id"].as_str().unwrap().parse().unwrap();
    let runtime = DockerRuntime::connect().await.unwrap();
    let mut agent = Agent::new(
        credential,
        client,
        &state_dir,
        runtime,
        Arc::new(Ingress::new()),
    )
    .with_usage_interval(std::time::Duration::ZERO);
    agent.pass().await.expect("a pass");
    let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert_eq!(status["alerts"], json!([]), "within its quota: {status}");

    // The site writes 3 MiB into its 1 MiB volume: the next report raises the alert.
    let container = Naming { node_id }.container(site_id);
    docker(&[
        "exec",
        &container,
        "/bin/sh",
        "-c",
        "/bin/busybox head -c 3145728 /dev/zero > /data/big",
    ]);
    agent.pass().await.expect("a pass");
    let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert_eq!(status["alerts"][0]["kind"], "volume_over_quota", "{status}");
    assert_eq!(status["alerts"][0]["site_id"], site_id.to_string());
    let used = status["report"]["sites"][0]["volume_bytes"]
        .as_u64()
        .unwrap();
    assert!(used >= 3 << 20, "measured {used} bytes");
    // And for Prometheus, the usage beside the quota.
    let metrics = reqwest::get(format!("{}/metrics", panel.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&site_id.to_string()))
            .map(str::to_owned)
    };
    assert_eq!(
        line("alveole_site_volume_quota_bytes")
            .unwrap()
            .rsplit(' ')
            .next(),
        Some("1048576")
    );
    assert!(line("alveole_site_volume_bytes").is_some(), "{metrics}");
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_a_new_site_is_served_without_waiting_for_the_timer() {
    use alveole_agent::agent::{Agent, Timing};
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let ingress = Arc::new(Ingress::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress_address = listener.local_addr().unwrap();
    let serving = tokio::spawn(ingress.clone().serve(listener));
    let agent = Agent::new(
        credential,
        client,
        &state_dir,
        DockerRuntime::connect().await.unwrap(),
        ingress,
    );
    // A timer of an hour: only the long poll can bring the new site in time.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.run(
        Timing {
            pass: std::time::Duration::from_secs(3600),
        },
        async {
            let _ = stopped.await;
        },
    ));

    let site = json!({
        "owner_id": member, "primary_domain": "fresh.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "fresh"}]
    });
    assert_eq!(panel.post("/api/v1/sites", site).await.0, 201);
    let mut answer = (0, String::new());
    for _ in 0..200 {
        answer = through_ingress(ingress_address, "fresh.example.org").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, "hello from fresh\n".to_owned()));

    let _ = stop.send(());
    running.await.unwrap();
    serving.abort();
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_a_corrupt_state_file_stops_nothing() {
    use alveole_agent::agent::Agent;
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        mut panel,
        node_id,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let site = json!({
        "owner_id": member, "primary_domain": "corrupt.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "corrupt"}]
    });
    let (_, created) = panel.post("/api/v1/sites", site).await;
    let container = Naming { node_id }.container(created["id"].as_str().unwrap().parse().unwrap());
    let runtime = || async { DockerRuntime::connect().await.unwrap() };
    let mut agent = Agent::new(
        credential.clone(),
        client.clone(),
        &state_dir,
        runtime().await,
        Arc::new(Ingress::new()),
    );
    agent.pass().await.expect("a pass");
    let running = docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &container]);
    assert!(running.ends_with("true"));

    // The panel is away and the held document is damaged: the restarted agent says so, and
    // changes nothing (it does not read the damage as "nothing is desired").
    panel.stop().await;
    drop(agent);
    std::fs::write(
        state_dir.join("desired-state.json"),
        "{ this is not a desired state",
    )
    .unwrap();
    let mut restarted = Agent::new(
        credential,
        client,
        &state_dir,
        runtime().await,
        Arc::new(Ingress::new()),
    );
    assert_eq!(restarted.held_generation(), None, "nothing usable held");
    assert!(
        restarted.pass().await.is_none(),
        "no reconcile without a usable document"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &container]),
        running,
        "still running, untouched"
    );

    // The panel answers again: the agent takes its document and carries on.
    panel.resume().await;
    let report = restarted.pass().await.expect("a pass");
    assert_eq!(report.actions, [], "the node already matched");
    assert!(restarted.held_generation().is_some());
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

/// A panel with a provider, a node and a member, and an agent enrolled for the node; the
/// node's engine objects go when `cleanup` is dropped. `None` (said loudly) without Docker.
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
        let cleanup = NodeCleanup(node_id, Naming { node_id });
        let (credential, client, state_dir) = enroll(&panel, &node).await;
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

#[tokio::test]
async fn docker_an_agent_renews_its_certificate_at_half_life_and_keeps_it_on_disk() {
    use alveole_agent::agent::Agent;
    use alveole_agent::control::files::StateDir;
    use alveole_agent::control::identity::Credential;
    use alveole_agent::ingress::Ingress;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        mut credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    // As if more than half of the certificate's life had passed.
    let lifetime = credential.not_after - credential.not_before;
    credential.not_before = chrono::Utc::now() - lifetime * 2;
    let before = credential.certificate_pem.clone();
    let runtime = DockerRuntime::connect().await.unwrap();
    let mut agent = Agent::new(
        credential,
        client.clone(),
        &state_dir,
        runtime,
        Arc::new(Ingress::new()),
    );
    agent.pass().await;
    let renewed = agent.credential().clone();
    assert_ne!(renewed.certificate_pem, before, "renewed during the pass");
    assert!(!renewed.renewal_due(chrono::Utc::now()));
    let on_disk = Credential::load(&StateDir::new(&state_dir))
        .unwrap()
        .unwrap();
    assert_eq!(
        on_disk.certificate_pem, renewed.certificate_pem,
        "kept for restarts"
    );
    // The client now presents the renewed certificate, and the panel takes it.
    assert!(
        client
            .desired_state_after(None, std::time::Duration::ZERO)
            .await
            .is_ok()
    );
    let (_, status) = panel
        .get(&format!("/api/v1/nodes/{}/status", renewed.node_id))
        .await;
    assert_eq!(status["reachable"], true, "{status}");
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_drift_repairs_reach_the_audit_record_in_order_after_the_panel_was_away() {
    use alveole_agent::agent::Agent;
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        mut panel,
        node_id,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let site = json!({
        "owner_id": member, "primary_domain": "outbox.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "outbox"}]
    });
    let (_, created) = panel.post("/api/v1/sites", site).await;
    let site_id = created["id"].as_str().unwrap().to_owned();
    let container = Naming { node_id }.container(site_id.parse().unwrap());
    let mut agent = Agent::new(
        credential,
        client,
        &state_dir,
        DockerRuntime::connect().await.unwrap(),
        Arc::new(Ingress::new()),
    );
    agent.pass().await.expect("a pass");
    let agent_events = |panel_events: Vec<alveole_store::AuditEvent>| {
        panel_events
            .into_iter()
            .filter(|e| e.action.starts_with("agent."))
            .map(|e| (e.action, e.target_id, e.after.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let recorded = agent_events(panel.store.audit_events(0, 10_000).await.unwrap());
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].0, "agent.applied");

    // The panel goes away; the container is removed by hand, then stopped by hand.
    panel.stop().await;
    docker(&["rm", "-f", &container]);
    agent.pass().await.expect("a pass");
    docker(&["stop", "-t", "1", &container]);
    agent.pass().await.expect("a pass");
    assert_eq!(
        agent_events(panel.store.audit_events(0, 10_000).await.unwrap()).len(),
        1,
        "nothing arrives while the panel is away"
    );

    // Back: both repairs arrive, in order, about the site, recorded once.
    panel.resume().await;
    agent.pass().await.expect("a pass");
    agent.pass().await.expect("a pass");
    let recorded = agent_events(panel.store.audit_events(0, 10_000).await.unwrap());
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    for (action, target, _) in &recorded[1..] {
        assert_eq!(
            (action.as_str(), target.as_str()),
            ("agent.drift_repaired", site_id.as_str()),
            "{recorded:?}"
        );
    }
    assert!(
        recorded[1].2["detail"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    assert!(
        recorded[2].2["detail"]
            .as_str()
            .unwrap()
            .contains("stopped")
    );
    assert!(recorded[1].2["seq"].as_u64() < recorded[2].2["seq"].as_u64());
    let events = panel.store.audit_events(0, 10_000).await.unwrap();
    let actor = &events
        .iter()
        .find(|e| e.action == "agent.drift_repaired")
        .unwrap()
        .actor;
    assert_eq!(actor, &format!("node:{node_id}"));
    assert!(
        alveole_store::verify_audit(panel.store.as_ref(), &[], None)
            .await
            .unwrap()
            .intact
    );
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

#[tokio::test]
async fn docker_the_platform_inventory_shows_each_node_s_software_and_the_licences() {
    use alveole_agent::agent::Agent;
    use alveole_agent::ingress::Ingress;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        node,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let (status, before) = panel.get("/api/v1/inventory").await;
    assert_eq!(status, 200);
    assert_eq!(
        before["providers"][0]["nodes"][0]["inventory"],
        serde_json::Value::Null,
        "nothing reported yet"
    );
    let mut agent = Agent::new(
        credential,
        client,
        &state_dir,
        DockerRuntime::connect().await.unwrap(),
        Arc::new(Ingress::new()),
    );
    agent.pass().await;
    let (_, inventory) = panel.get("/api/v1/inventory").await;
    let entry = &inventory["providers"][0]["nodes"][0];
    assert_eq!(entry["id"], node.as_str());
    assert_eq!(entry["agent_version"], env!("CARGO_PKG_VERSION"));
    let software = &entry["inventory"];
    assert!(
        software["engine_version"]
            .as_str()
            .unwrap()
            .starts_with("Docker Engine "),
        "{software}"
    );
    assert!(!software["kernel"].as_str().unwrap().is_empty());
    if std::path::Path::new("/usr/bin/dpkg-query").exists() {
        assert!(software["packages"].as_array().unwrap().len() > 50);
    }
    assert!(inventory["components"]["count"].as_u64().unwrap() > 100);
    // The status keeps the frequent report small: the package list is kept apart.
    let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert!(status["report"]["inventory"].is_null(), "{status}");
    let page = panel.page("/inventory").await;
    assert!(
        page.contains("Docker Engine") && page.contains("AGPL-3.0-or-later"),
        "{page}"
    );
    let _ = std::fs::remove_dir_all(&state_dir);
    db.drop_db().await;
}

/// Every table but alveole's, as nft lists it without counters: what Docker (and anyone
/// else) owns, which alveole must never change.
fn foreign_tables() -> String {
    let tables = Command::new("nft")
        .args(["-j", "list", "tables"])
        .output()
        .unwrap();
    let tables: serde_json::Value = serde_json::from_slice(&tables.stdout).unwrap();
    let mut listing = String::new();
    for table in tables["nftables"].as_array().unwrap() {
        let Some(table) = table.get("table") else {
            continue;
        };
        let (family, name) = (
            table["family"].as_str().unwrap(),
            table["name"].as_str().unwrap(),
        );
        if name.starts_with("alveole_") {
            continue;
        }
        let out = Command::new("nft")
            .args(["-s", "list", "table", family, name])
            .output()
            .unwrap();
        listing.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    listing
}

/// A veth from the host to a client namespace, removed on drop.
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exposed_ports_and_egress_work_beside_dockers_rules_which_stay_unchanged() {
    use alveole_model::{ExposedPort, Transport};
    use alveole_tests::netns::{self, Netns};
    use std::sync::Arc;

    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    if !netns::available() {
        return;
    }
    const DEDICATED: &str = "203.0.113.77";
    const CLIENT: &str = "198.51.100.2";
    // The client reaches the host over a veth; the host holds the dedicated address.
    let client = Netns::new("dc");
    let host_end = format!("alvh{}", &naming.node_id.0.simple().to_string()[26..]);
    let _link = HostLink(host_end.clone());
    let run = |args: &[&str]| netns::sh("ip", args);
    run(&[
        "link",
        "add",
        &host_end,
        "type",
        "veth",
        "peer",
        "name",
        "c0",
        "netns",
        &client.name,
    ]);
    run(&["addr", "add", "198.51.100.1/30", "dev", &host_end]);
    run(&["addr", "add", &format!("{DEDICATED}/32"), "dev", &host_end]);
    run(&["link", "set", &host_end, "up"]);
    client.ip(&["link", "set", "c0", "up"]);
    client.ip(&["addr", "add", &format!("{CLIENT}/30"), "dev", "c0"]);
    client.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    netns::serve_tcp(&client, 9000, "outside");
    // The ingress's stand-in, on the host.
    let ingress = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let ingress_port = ingress.local_addr().unwrap().port();
    netns::answer_tcp(ingress, "ingress");

    // The site answers its client's address on port 8080 (busybox httpd runs CGI scripts).
    let mut site = spec("dnat");
    site.command = vec![
        "/bin/sh".into(),
        "-c".into(),
        "mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \"peer $REMOTE_ADDR\"\\n' > /tmp/www/cgi-bin/peer && chmod +x /tmp/www/cgi-bin/peer && exec /bin/httpd -f -p 8080 -h /tmp/www".into(),
    ];
    site.dedicated_addresses = vec![DEDICATED.parse().unwrap()];
    site.exposed_ports = vec![ExposedPort {
        protocol: Transport::Tcp,
        port: 2222,
        container_port: 8080,
    }];
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![site.clone()],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    // The container first, with Docker's rules for it; then alveole's table.
    reconciler.reconcile(&desired).await.unwrap();
    let docker_before = foreign_tables();
    assert!(
        docker_before.contains("DOCKER"),
        "Docker's chains are listed: {docker_before}"
    );
    let routed = Reconciler::new(DockerRuntime::connect().await.unwrap(), naming.clone())
        .with_routing(Arc::new(NftRouting::new(
            NftCommand::host(),
            IngressPorts {
                http: ingress_port,
                https: None,
            },
        )));
    let report = routed.reconcile(&desired).await.unwrap();
    assert_eq!(report.routing_error, None);
    assert!(report.actions.is_empty(), "{:?}", report.actions);

    let client = Arc::new(client);
    let ask = |port: u16, request: &'static [u8]| {
        let client = client.clone();
        tokio::task::spawn_blocking(move || {
            netns::ask(
                &client,
                std::net::SocketAddr::new(DEDICATED.parse().unwrap(), port),
                request,
            )
        })
    };
    let answer = ask(2222, b"GET /cgi-bin/peer HTTP/1.0\r\n\r\n")
        .await
        .unwrap()
        .expect("the exposed port answers");
    assert!(
        // busybox prints it IPv4-mapped: `peer [::ffff:198.51.100.2]`.
        answer
            .lines()
            .any(|l| l.starts_with("peer") && l.contains(CLIENT)),
        "the container sees the client's address: {answer}"
    );
    assert_eq!(
        ask(80, b"").await.unwrap().unwrap(),
        format!("ingress {CLIENT}")
    );
    assert!(netns::dropped(ask(2223, b"").await.unwrap()));
    let container = naming.container(site.site_id);
    let egress = tokio::task::spawn_blocking(move || {
        Command::new("docker")
            .args([
                "exec",
                &container,
                "/bin/busybox",
                "timeout",
                "5",
                "nc",
                CLIENT,
                "9000",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&egress.stdout).trim(),
        format!("outside {DEDICATED}"),
        "the site's connections leave from its dedicated address: {}",
        String::from_utf8_lossy(&egress.stderr)
    );
    assert_eq!(
        foreign_tables(),
        docker_before,
        "alveole changed nothing in Docker's tables"
    );
}

/// With no registry, an agent ships a site's image to another as `docker save` writes it,
/// and the other loads it: the same image, by id. Something else than an archive is refused.
#[tokio::test]
async fn docker_an_image_saved_on_one_node_loads_on_another() {
    use futures::TryStreamExt;

    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let runtime = DockerRuntime::connect().await.expect("connect to Docker");
    let tag = format!(
        "alveole-test/ship-{}:1",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    docker(&["tag", TEST_IMAGE, &tag]);
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert!(id.starts_with("sha256:"), "{id}");
    let archive: Vec<_> = runtime
        .save_image(&ImageRef::parse(&tag).unwrap())
        .try_collect()
        .await
        .unwrap();
    let size: usize = archive.iter().map(|chunk| chunk.len()).sum();
    assert!(size > 100_000, "an archive of {size} bytes");
    // The tag goes (the test image keeps the layers), as on a node that never had it.
    docker(&["rmi", &tag]);
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), "");

    let truncated = futures::stream::iter([Ok::<_, std::io::Error>(archive[0].slice(..512))]);
    assert!(
        runtime.load_image(Box::pin(truncated)).await.is_err(),
        "not a whole archive"
    );
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), "");

    let shipped = futures::stream::iter(archive.into_iter().map(Ok::<_, std::io::Error>));
    runtime.load_image(Box::pin(shipped)).await.unwrap();
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), id);
    docker(&["rmi", &tag]);
}

/// A paused site's requests wait instead of failing, and are answered once it is unpaused:
/// what a move's freeze relies on.
#[tokio::test]
async fn docker_a_paused_site_holds_its_requests_until_unpaused() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("frozen")],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let site = desired.sites[0].site_id;
    let report = reconciler.reconcile(&desired).await.unwrap();
    let address = report.addresses[&site];
    assert_eq!(get(address).await.unwrap().trim(), "hello from frozen");
    let container = naming.container(site);

    reconciler.runtime().pause(&container).await.unwrap();
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Paused}}", &container]),
        "true"
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let mut pending = tokio::spawn(async move {
        client
            .get(format!("http://{address}:8080/"))
            .send()
            .await?
            .text()
            .await
    });
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut pending).await;
    assert!(early.is_err(), "no answer while paused: {early:?}");
    // A pass while paused changes nothing: a paused container is not drift.
    let during = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(during.actions, []);

    reconciler.runtime().unpause(&container).await.unwrap();
    let answer = pending.await.unwrap().unwrap();
    assert_eq!(answer.trim(), "hello from frozen", "held, not failed");
}
