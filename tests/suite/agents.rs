//! The panel's side of node agents: enrolment, reports, the long poll, TLS pinned by the join
//! command, short-lived certificates, and each node's desired generation.

use alveole_agent::control::panel::Control;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use crate::records::site;

#[tokio::test]
async fn a_nodes_desired_generation_follows_every_change_to_its_sites() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let node_id = node.parse().unwrap();
        let generation = || async {
            let desired = panel.store.desired_state(node_id).await.unwrap();
            (desired.generation, desired.sites)
        };
        let (start, sites) = generation().await;
        assert!(sites.is_empty());
        let (_, created) = panel
            .post("/api/v1/sites", site(&member, "gen.example.org"))
            .await;
        let id = created["id"].as_str().unwrap();
        let (after_create, sites) = generation().await;
        // The site, then its admission key (made once the site has its id): two bumps.
        assert_eq!(
            (after_create, sites.len()),
            (start + 2, 1),
            "{}",
            db.backend()
        );
        let patch = json!({"version": 1, "phase": "stopped"});
        assert_eq!(
            panel
                .call(Method::PATCH, &format!("/api/v1/sites/{id}"), Some(patch))
                .await
                .0,
            200
        );
        let (after_update, sites) = generation().await;
        assert_eq!(after_update, after_create + 1);
        assert!(
            !sites[0].to_spec().run,
            "a stopped site is kept but not run"
        );
        assert_eq!(
            panel
                .call(Method::DELETE, &format!("/api/v1/sites/{id}"), None)
                .await
                .0,
            204
        );
        assert_eq!(generation().await, (after_update + 1, vec![]));
        // Refused changes leave the generation alone.
        assert_eq!(
            panel
                .post("/api/v1/sites", site(&member, "bad;name"))
                .await
                .0,
            400
        );
        assert_eq!(generation().await.0, after_update + 1);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn agents_enrol_report_and_stay_in_their_lane() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let (_, created) = panel
            .post("/api/v1/sites", site(&member, "report.example.org"))
            .await;
        let site_id = created["id"].as_str().unwrap().to_owned();

        let credential = panel.enrol(&node).await;
        assert_eq!(credential.node_id.to_string(), node);
        let agent = panel.agent_http(&credential);
        let as_agent = |method: Method, path: &str, body: Option<Value>| {
            let mut request = agent.request(method, format!("{}{path}", panel.agent_base));
            if let Some(body) = body {
                request = request.json(&body);
            }
            async move { request.send().await.unwrap() }
        };

        // The agent reads its own desired state (with secrets), and nothing of the admin API.
        let desired: Value = as_agent(Method::GET, "/api/v1/agent/desired-state", None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(desired["sites"][0]["site_id"], site_id);
        assert_eq!(
            as_agent(Method::GET, "/api/v1/sites", None).await.status(),
            403
        );
        assert_eq!(
            panel.get("/api/v1/agent/desired-state").await.0,
            403,
            "the admin is no agent"
        );

        let report = |state: &str, reason: Option<&str>| {
            json!({
                "generation": desired["generation"], "agent_version": "test",
                "sites": [{"site_id": site_id, "state": state, "reason": reason},
                          {"site_id": uuid::Uuid::now_v7(), "state": "running"}],
                "resources": {"cpus": 2, "load_1m": 0.5, "memory_total_bytes": 1, "memory_available_bytes": 1,
                              "disk_total_bytes": 1, "disk_available_bytes": 1},
                "warnings": ["sites are not isolated from this host: test"]
            })
        };
        let events_before = panel.store.audit_events(0, 1000).await.unwrap().len();
        let read_before_the_report = created["version"].clone();
        let sent = as_agent(
            Method::POST,
            "/api/v1/agent/status",
            Some(report("failing", Some("image missing"))),
        )
        .await;
        assert_eq!(sent.status(), 204);
        assert_eq!(
            panel.get(&format!("/api/v1/sites/{site_id}")).await.1["phase"],
            "failed"
        );
        let sent = as_agent(
            Method::POST,
            "/api/v1/agent/status",
            Some(report("failing", Some("image missing"))),
        )
        .await;
        assert_eq!(sent.status(), 204);
        let events = panel.store.audit_events(0, 1000).await.unwrap();
        let phase_events: Vec<_> = events[events_before..].iter().collect();
        assert_eq!(
            phase_events.len(),
            1,
            "a repeated report changes nothing: {phase_events:?}"
        );
        assert_eq!(phase_events[0].action, "site.phase");
        // What the node saw is no edit: a form read before the report still saves.
        let (status, edited) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/sites/{site_id}"),
                Some(json!({"version": read_before_the_report, "env": [{"name": "A", "value": "1"}]})),
            )
            .await;
        assert_eq!(status, 200, "{edited}");
        assert_eq!(edited["phase"], "failed", "{edited}");
        assert_eq!(phase_events[0].actor, format!("node:{node}"));
        assert_eq!(
            phase_events[0].after.as_ref().unwrap()["reason"],
            "image missing"
        );

        let page = panel.page(&format!("/sites/{site_id}")).await;
        assert!(
            page.contains("failing") && page.contains("image missing"),
            "the site page shows the report"
        );
        as_agent(
            Method::POST,
            "/api/v1/agent/status",
            Some(report("running", None)),
        )
        .await;
        assert_eq!(
            panel.get(&format!("/api/v1/sites/{site_id}")).await.1["phase"],
            "running"
        );
        let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
        assert_eq!(status["reachable"], true, "{status}");
        assert_eq!(status["report"]["resources"]["cpus"], 2);
        let node_page = panel.page(&format!("/nodes/{node}")).await;
        assert!(
            node_page.contains("sites are not isolated from this host"),
            "the node page shows its warnings"
        );

        // Revoked: the agent is refused from now on, and the revocation is in the record.
        let (status, _) = panel
            .call(
                Method::DELETE,
                &format!("/api/v1/nodes/{node}/credential"),
                None,
            )
            .await;
        assert_eq!(status, 204);
        assert_eq!(
            as_agent(Method::GET, "/api/v1/agent/desired-state", None)
                .await
                .status(),
            401
        );
        let last = panel
            .store
            .audit_events(0, 1000)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (last.action.as_str(), last.target_id.as_str()),
            ("node.revoke", node.as_str())
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_agents_long_poll_answers_when_its_node_changes() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let client = panel.agent_http(&panel.enrol(&node).await);
        let poll = |after: u64, wait: u64| {
            let request = client.get(format!(
                "{}/api/v1/agent/desired-state?after={after}&wait={wait}",
                panel.agent_base
            ));
            async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let now = poll(0, 0).await["generation"].as_u64().unwrap();

        // Nothing newer within the wait: the same generation comes back.
        assert_eq!(poll(now, 1).await["generation"].as_u64(), Some(now));

        // A change while an agent waits: the wait ends with the new generation.
        let waiting = tokio::spawn(poll(now, 30));
        let (status, _) = panel
            .post("/api/v1/sites", site(&member, "longpoll.example.org"))
            .await;
        assert_eq!(status, 201);
        let answer = waiting.await.unwrap();
        // Newer (the site, and perhaps already its admission key): the wait ended.
        let newer = answer["generation"].as_u64().unwrap_or(0);
        assert!(
            (now + 1..=now + 2).contains(&newer),
            "{}: {newer} after {now}",
            db.backend()
        );
        assert_eq!(answer["sites"][0]["hostnames"][0], "longpoll.example.org");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn agents_reach_the_panel_over_tls_pinned_by_their_join_command() {
    use alveole_agent::agent::{PanelClient, credential};

    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node, _) = panel.seed().await;
    let ca = &panel.tls.ca;

    // The join command names the agents' address and pins the CA.
    let (status, join) = panel
        .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201);
    let command = join["command"].as_str().unwrap();
    assert!(
        command.contains(&format!("--panel-ca-sha256 {}", ca.fingerprint)),
        "{command}"
    );

    // A wrong fingerprint: refused, nothing saved.
    let state_dir =
        std::env::temp_dir().join(format!("alveole-pinned-{}", uuid::Uuid::now_v7().simple()));
    let wrong = PanelClient::trusting(&panel.agent_base, &state_dir, Some(&"0".repeat(64))).await;
    assert!(wrong.is_err() && !state_dir.join("panel-ca.pem").exists());

    // The right one: the agent enrols and reads its state over TLS.
    let client = PanelClient::trusting(&panel.agent_base, &state_dir, Some(&ca.fingerprint))
        .await
        .unwrap();
    let enrolled = credential(&client, &state_dir, join["join_token"].as_str())
        .await
        .unwrap();
    assert_eq!(enrolled.node_id.to_string(), node);
    assert!(
        client
            .desired_state_after(None, std::time::Duration::ZERO)
            .await
            .is_ok()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state_dir.join("credential.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key stays private on the node");

    // Later, a panel with another CA (an impostor at another address) is not trusted.
    let other_db = TestDb::sqlite().await;
    let impostor = TestPanel::start(&other_db).await;
    let pinned = PanelClient::trusting(&impostor.agent_base, &state_dir, None)
        .await
        .unwrap();
    pinned.authenticate(&enrolled).unwrap();
    assert!(
        pinned.desired_state().await.is_err(),
        "only the pinned CA is trusted"
    );
    let _ = std::fs::remove_dir_all(state_dir);
    db.drop_db().await;
    other_db.drop_db().await;
}

#[tokio::test]
async fn agent_certificates_are_short_lived_renewed_revocable_and_the_only_agent_credential() {
    use alveole_agent::control::identity::NewKey;
    use alveole_panel::tls::SigningRequest;

    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, _) = panel.seed().await;
        let desired = |client: reqwest::Client, base: String| async move {
            client
                .get(format!("{base}/api/v1/agent/desired-state"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        };
        let trusting_ca = || {
            reqwest::Client::builder()
                .tls_certs_only([
                    reqwest::Certificate::from_pem(panel.tls.ca.ca_pem.as_bytes()).unwrap(),
                ])
                .build()
                .unwrap()
        };

        // A bad signing request is refused and leaves the join token usable; it works once.
        let (_, join) = panel
            .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
            .await;
        let enrol = |csr: String| {
            let request = trusting_ca()
                .post(format!("{}/api/v1/agent/enroll", panel.agent_base))
                .json(&json!({"join_token": join["join_token"], "csr_pem": csr}));
            async move { request.send().await.unwrap() }
        };
        let refused = enrol(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
        )
        .await;
        assert_eq!(refused.status(), 400);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "csr_pem", "{problem}");
        let key = NewKey::generate().unwrap();
        let first = enrol(key.csr_pem.clone()).await;
        assert_eq!(first.status(), 201);
        let credential = key.certified(first.json().await.unwrap());
        assert_eq!(
            enrol(NewKey::generate().unwrap().csr_pem).await.status(),
            401,
            "a join token works once"
        );

        // The certificate works on the agent listener only; nothing else stands for an agent.
        let agent = panel.agent_http(&credential);
        assert_eq!(
            desired(agent.clone(), panel.agent_base.clone())
                .await
                .unwrap(),
            200
        );
        assert_eq!(
            desired(reqwest::Client::new(), panel.base.clone())
                .await
                .unwrap(),
            401,
            "plain HTTP carries no certificate"
        );
        assert_eq!(
            desired(trusting_ca(), panel.agent_base.clone())
                .await
                .unwrap(),
            401,
            "TLS without a certificate"
        );

        // A certificate from another CA, or an expired one from this CA, fails the handshake.
        let other_db = TestDb::sqlite().await;
        let other = TestPanel::start(&other_db).await;
        let (other_node, _) = other.seed().await;
        let foreign = panel.agent_http(&other.enrol(&other_node).await);
        assert!(desired(foreign, panel.agent_base.clone()).await.is_err());
        let expired = panel
            .tls
            .issuer
            .issue_between(
                credential.node_id,
                &SigningRequest::parse(&credential.signing_request().unwrap()).unwrap(),
                chrono::Utc::now() - chrono::Duration::hours(2),
                chrono::Utc::now() - chrono::Duration::hours(1),
            )
            .unwrap();
        let expired =
            panel.agent_http(&credential.renewed(serde_json::from_value(json!(expired)).unwrap()));
        assert!(desired(expired, panel.agent_base.clone()).await.is_err());

        // Renewal: a fresh certificate for the same key; another key needs a new enrolment.
        let client = panel.agent_client();
        client.authenticate(&credential).unwrap();
        let renewed = credential.renewed(
            client
                .renew(&credential.signing_request().unwrap())
                .await
                .unwrap(),
        );
        assert_ne!(renewed.certificate_pem, credential.certificate_pem);
        assert!(renewed.not_after >= credential.not_after);
        assert_eq!(
            desired(panel.agent_http(&renewed), panel.agent_base.clone())
                .await
                .unwrap(),
            200
        );
        let other_key = client.renew(&NewKey::generate().unwrap().csr_pem).await;
        assert!(
            matches!(
                other_key,
                Err(alveole_agent::agent::AgentError::Refused { status: 400, .. })
            ),
            "{other_key:?}"
        );

        // Revoked: every certificate for the key stops working at once, renewal too.
        let (status, _) = panel
            .call(
                Method::DELETE,
                &format!("/api/v1/nodes/{node}/credential"),
                None,
            )
            .await;
        assert_eq!(status, 204);
        assert_eq!(desired(agent, panel.agent_base.clone()).await.unwrap(), 401);
        assert_eq!(
            desired(panel.agent_http(&renewed), panel.agent_base.clone())
                .await
                .unwrap(),
            401
        );
        assert!(matches!(
            client.renew(&credential.signing_request().unwrap()).await,
            Err(alveole_agent::agent::AgentError::Refused { status: 401, .. })
        ));
        other_db.drop_db().await;
        db.drop_db().await;
    }
}
