//! The whole agent with the panel: a site served end to end, new sites served at once, a
//! corrupt state file, certificate renewal, drift repairs reported after the panel was away,
//! and the platform inventory.

use std::sync::Arc;

use alveole_agent::agent::Agent;
use alveole_agent::ingress::Ingress;
use serde_json::json;

use super::*;

#[tokio::test]
async fn docker_panel_and_agent_serve_a_site_end_to_end() {
    use alveole_tests::{TestDb, TestPanel};

    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    let (node, member) = panel.seed().await;
    let node_id: NodeId = node.parse().unwrap();
    let state_dir =
        std::env::temp_dir().join(format!("alveole-agent-{}", uuid::Uuid::now_v7().simple()));
    let _cleanup = NodeCleanup::new([node_id]).with_dir(&state_dir);
    let (credential, client) = a_join_token_enrols_once(&panel, &node, &state_dir).await;

    let ingress = Arc::new(Ingress::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress_address = listener.local_addr().unwrap();
    let server = tokio::spawn(ingress.clone().serve(listener));
    let runtime = DockerRuntime::connect().await.unwrap();
    let agent = Agent::new(
        credential.clone(),
        client.clone(),
        &state_dir,
        runtime,
        ingress.clone(),
    );
    let mut served = Served {
        agent,
        node_id,
        site_id: String::new(),
        ingress: ingress_address,
    };
    a_created_site_is_served(&panel, &mut served, &node, &member).await;
    let second_id =
        a_change_replaces_the_container_with_no_failed_request(&panel, &mut served).await;

    // The panel goes away: the site keeps answering, through an agent restart too, with the
    // same container.
    let panel_base = panel.base.clone();
    panel.stop().await;
    assert!(
        reqwest::get(format!("{panel_base}/healthz")).await.is_err(),
        "the panel is down"
    );
    served
        .agent
        .pass()
        .await
        .expect("a pass from the held state");
    let runtime = DockerRuntime::connect().await.unwrap();
    served.agent = Agent::new(credential, client, &state_dir, runtime, ingress.clone());
    assert_eq!(
        served.agent.held_generation(),
        Some(3),
        "the held document survived the restart"
    );
    let report = served
        .agent
        .pass()
        .await
        .expect("a pass from the held state");
    assert_eq!(report.actions, [], "nothing to change after a restart");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}}", &served.container()]),
        second_id
    );
    assert_eq!(served.answer().await.1, "hello from changed\n");

    // The panel comes back; a change made there reaches the node.
    panel.resume().await;
    served.change_env(&panel, "back").await;
    served.agent.pass().await.expect("a pass");
    assert_eq!(served.answer().await.1, "hello from back\n");
    // Unknown hosts get alveole's own page.
    let (status, body) = through_ingress(ingress_address, "nobody.example.org").await;
    assert_eq!(status, 404);
    assert!(body.contains("alveole") && body.contains("nobody.example.org"));

    the_ingress_counted_it_all(&ingress, &served.site_id).await;
    a_purged_site_leaves_nothing(&panel, &mut served).await;
    server.abort();
    db.drop_db().await;
}

/// The node's agent and the site it serves through its ingress.
struct Served {
    agent: Agent<DockerRuntime>,
    node_id: NodeId,
    site_id: String,
    ingress: std::net::SocketAddr,
}

impl Served {
    fn container(&self) -> String {
        Naming {
            node_id: self.node_id,
        }
        .container(self.site_id.parse().unwrap())
    }

    async fn answer(&self) -> (u16, String) {
        through_ingress(self.ingress, "e2e.example.org").await
    }

    /// Changes the site's `SITE_NAME` through the API (its answer's name).
    async fn change_env(&self, panel: &alveole_tests::TestPanel, name: &str) {
        let path = format!("/api/v1/sites/{}", self.site_id);
        let version = panel.get(&path).await.1["version"].clone();
        let patch = json!({"version": version, "env": [{"name": "SITE_NAME", "value": name}]});
        let (status, _) = panel.call(reqwest::Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 200);
    }
}

/// Enrolment: an admin asks for a join token; the agent trades it for its credential, once.
async fn a_join_token_enrols_once(
    panel: &alveole_tests::TestPanel,
    node: &str,
    state_dir: &std::path::Path,
) -> (
    alveole_agent::agent::Credential,
    alveole_agent::agent::PanelClient,
) {
    let (status, join) = panel
        .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201, "{join}");
    let client = panel.agent_client();
    let credential =
        alveole_agent::agent::credential(&client, state_dir, join["join_token"].as_str())
            .await
            .unwrap();
    assert_eq!(credential.node_id.to_string(), node);
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
    (credential, client)
}

/// A site created through the API is served by the node's ingress; the agent reports it
/// running, and the panel shows it, and the node as reachable.
async fn a_created_site_is_served(
    panel: &alveole_tests::TestPanel,
    served: &mut Served,
    node: &str,
    member: &str,
) {
    let site = json!({
        "owner_id": member, "primary_domain": "e2e.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "e2e"}],
        "limits": {"cpu_millis": 250, "memory_bytes": 67108864, "pids": 64}
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    served.site_id = created["id"].as_str().unwrap().to_owned();
    let report = served.agent.pass().await.expect("a pass");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        through_ingress(served.ingress, "E2E.example.org").await,
        (200, "hello from e2e\n".to_owned())
    );
    let (_, shown) = panel
        .get(&format!("/api/v1/sites/{}", served.site_id))
        .await;
    assert_eq!(shown["phase"], "running");
    let (_, node_status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert_eq!(node_status["reachable"], true, "{node_status}");
    assert_eq!(node_status["report"]["sites"][0]["state"], "running");
}

/// A change arrives with the next pass: the container is replaced while the ingress holds the
/// site's requests, and a request loop running through the replacement sees no failure.
/// Returns the new container's id.
async fn a_change_replaces_the_container_with_no_failed_request(
    panel: &alveole_tests::TestPanel,
    served: &mut Served,
) -> String {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let container = served.container();
    let first_id = docker(&["inspect", "-f", "{{.Id}}", &container]);
    served.change_env(panel, "changed").await;
    let (replaced, answered) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let requests = tokio::spawn({
        let (replaced, answered, ingress) = (replaced.clone(), answered.clone(), served.ingress);
        async move {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap();
            let mut failures = Vec::new();
            let mut bodies = std::collections::BTreeMap::<String, usize>::new();
            // Bounded: at most 3,000 requests; stops 20 requests after the replacement ended.
            let mut after = 0;
            for _ in 0..3_000 {
                let sent = client
                    .get(format!("http://{ingress}/"))
                    .header("host", "e2e.example.org")
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        *bodies.entry(r.text().await.unwrap()).or_default() += 1
                    }
                    Ok(r) => failures.push(r.status().to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
                answered.fetch_add(1, Ordering::SeqCst);
                if replaced.load(Ordering::SeqCst) {
                    after += 1;
                    if after >= 20 {
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            (failures, bodies)
        }
    });
    // The loop is under way before the replacement starts.
    while answered.load(Ordering::SeqCst) < 5 && !requests.is_finished() {
        tokio::task::yield_now().await;
    }
    let report = served.agent.pass().await.expect("a pass");
    replaced.store(true, Ordering::SeqCst);
    assert!(
        matches!(report.actions.as_slice(), [Action::Replace { .. }]),
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
    // The site (1), its admission key (2), its change (3).
    assert_eq!(served.agent.held_generation(), Some(3));
    assert_eq!(served.answer().await.1, "hello from changed\n");
    let second_id = docker(&["inspect", "-f", "{{.Id}}", &container]);
    assert_ne!(first_id, second_id);
    second_id
}

/// The ingress counted all of it, per site, for Prometheus.
async fn the_ingress_counted_it_all(ingress: &Arc<Ingress>, site_id: &str) {
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
                && l.contains(site_id)
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
}

/// Purged: the site's name gets alveole's own page; container and volume are gone.
async fn a_purged_site_leaves_nothing(panel: &alveole_tests::TestPanel, served: &mut Served) {
    let path = format!("/api/v1/sites/{}/purge", served.site_id);
    let (status, _) = panel.call(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 204);
    let report = served.agent.pass().await.expect("a pass");
    assert!(
        report
            .actions
            .iter()
            .any(|a| matches!(a, Action::RemoveVolume { .. })),
        "{:?}",
        report.actions
    );
    let (status, body) = served.answer().await;
    assert_eq!(status, 404);
    assert!(body.contains("alveole"));
    let container = served.container();
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name={container}")]).is_empty(),
        "container gone"
    );
    let volume = Naming {
        node_id: served.node_id,
    }
    .volume(served.site_id.parse().unwrap());
    assert!(
        docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]).is_empty(),
        "volume gone"
    );
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
    db.drop_db().await;
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
    db.drop_db().await;
}
