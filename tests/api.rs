//! The API's acceptance tests, each run against SQLite and PostgreSQL with a fresh database.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use alveole_agent::control::panel::Control;
use std::collections::BTreeSet;

use alveole_panel::routes::{Surface, routes};
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

fn site(owner: &str, domain: &str) -> Value {
    json!({"owner_id": owner, "primary_domain": domain, "image": "registry.example.org/coop/site:1"})
}

#[tokio::test]
async fn resources_are_created_read_changed_and_deleted() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let backend = db.backend();

        let (status, created) = panel
            .post("/api/v1/sites", site(&member, "Exemple.ORG."))
            .await;
        assert_eq!(status, 201, "{backend}: {created}");
        assert_eq!(created["primary_domain"], "exemple.org");
        assert_eq!(
            created["node_id"], node,
            "{backend}: placed on the only node"
        );
        let id = created["id"].as_str().unwrap();

        let (status, read) = panel.get(&format!("/api/v1/sites/{id}")).await;
        assert_eq!(
            (status, &read),
            (200, &created),
            "{backend}: read back as created"
        );
        let (_, found) = panel.get("/api/v1/sites?hostname=EXEMPLE.org.").await;
        assert_eq!(
            found["items"][0]["id"], id,
            "{backend}: found by any spelling"
        );

        let patch = json!({"version": 1, "aliases": ["www.exemple.org"], "limits": {"pids": 64}});
        let (status, changed) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/sites/{id}"),
                Some(patch.clone()),
            )
            .await;
        assert_eq!(status, 200, "{backend}: {changed}");
        assert_eq!(
            (
                changed["version"].as_i64(),
                changed["limits"]["pids"].as_i64()
            ),
            (Some(2), Some(64))
        );
        assert_eq!(
            changed["limits"]["cpu_millis"], created["limits"]["cpu_millis"],
            "untouched fields kept"
        );

        let (status, stale) = panel
            .call(Method::PATCH, &format!("/api/v1/sites/{id}"), Some(patch))
            .await;
        assert_eq!(status, 409, "{backend}: stale version: {stale}");
        assert_eq!(stale["errors"][0]["field"], "version");

        let (status, refused) = panel
            .call(Method::DELETE, &format!("/api/v1/nodes/{node}"), None)
            .await;
        assert_eq!(status, 409, "{backend}: node with sites: {refused}");
        assert!(
            refused["detail"].as_str().unwrap().contains("exemple.org"),
            "names the site: {refused}"
        );

        let (status, _) = panel
            .call(
                Method::DELETE,
                &format!("/api/v1/sites/{id}?version=2"),
                None,
            )
            .await;
        assert_eq!(status, 204);
        let (status, _) = panel.get(&format!("/api/v1/sites/{id}")).await;
        assert_eq!(status, 404);
        let (status, _) = panel
            .call(Method::DELETE, &format!("/api/v1/nodes/{node}"), None)
            .await;
        assert_eq!(status, 204, "{backend}: an empty node can go");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn twenty_concurrent_spellings_of_one_name_make_exactly_one_site() {
    let spellings = [
        "exemple-école.org",
        "EXEMPLE-ÉCOLE.ORG",
        "Exemple-École.org.",
        "xn--exemple-cole-ieb.org",
        "XN--EXEMPLE-COLE-IEB.ORG.",
        "exemple-ÉCOLE.org",
    ];
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, member) = panel.seed().await;
        let calls = (0..20).map(|i| {
            // Separate clients: separate connections.
            let client = reqwest::Client::new();
            let (url, token) = (format!("{}/api/v1/sites", panel.base), panel.token.clone());
            let body = site(&member, spellings[i % spellings.len()]);
            async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        });
        let statuses: Vec<u16> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("answer"))
            .collect();
        let created = statuses.iter().filter(|s| **s == 201).count();
        let conflicts = statuses.iter().filter(|s| **s == 409).count();
        assert_eq!(
            (created, conflicts),
            (1, 19),
            "{}: {statuses:?}",
            db.backend()
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn invalid_input_is_refused_naming_the_field_and_changes_nothing() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, member) = panel.seed().await;
        for bad in [
            "a;b.org",
            "a b.org",
            "$(reboot).org",
            "pаypal.com",
            "-x.org",
            "single",
        ] {
            let (status, problem) = panel.post("/api/v1/sites", site(&member, bad)).await;
            assert_eq!(status, 400, "{bad}: {problem}");
            assert_eq!(
                problem["errors"][0]["field"], "primary_domain",
                "{bad}: {problem}"
            );
        }
        let (status, problem) = panel
            .post(
                "/api/v1/sites",
                json!({"owner_id": member, "primary_domain": 5}),
            )
            .await;
        assert_eq!(status, 400, "wrong JSON type: {problem}");
        let (status, problem) = panel.get("/api/v1/sites?limit=0&colour=blue").await;
        assert_eq!(status, 400);
        let fields: BTreeSet<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, BTreeSet::from(["limit", "colour"]));
        let (status, _) = panel.get("/api/v1/sites/not-a-uuid").await;
        assert_eq!(status, 400);
        assert_eq!(
            panel.store.counts().await.unwrap().sites,
            0,
            "nothing half-created"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn wildcards_and_capacity_are_enforced() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, ana) = panel.seed().await;
        let (_, bob) = panel
            .post(
                "/api/v1/members",
                json!({"display_name": "Bob", "email": "bob@exemple.org"}),
            )
            .await;
        let bob = bob["id"].as_str().unwrap();

        let mut wild = site(&ana, "a.org");
        wild["aliases"] = json!(["*.a.org"]);
        assert_eq!(panel.post("/api/v1/sites", wild).await.0, 201);
        let (status, problem) = panel.post("/api/v1/sites", site(bob, "x.a.org")).await;
        assert_eq!(
            status, 409,
            "another member's name under ana's wildcard: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], "primary_domain");
        assert_eq!(
            panel.post("/api/v1/sites", site(&ana, "x.a.org")).await.0,
            201,
            "ana's own name is fine"
        );

        let mut huge = site(&ana, "huge.org");
        huge["limits"] = json!({"cpu_millis": 1000, "memory_bytes": 17u64 << 30, "pids": 100});
        huge["node_id"] = json!(node);
        let (status, problem) = panel.post("/api/v1/sites", huge).await;
        assert_eq!(status, 409, "over the node's memory: {problem}");
        assert_eq!(problem["errors"][0]["code"], "capacity.exceeded");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn lists_are_paginated_by_cursor() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        for i in 0..7 {
            let (status, _) = panel
                .post(
                    "/api/v1/members",
                    json!({"display_name": format!("M{i}"), "email": format!("m{i}@exemple.org")}),
                )
                .await;
            assert_eq!(status, 201);
        }
        let mut seen = Vec::new();
        let mut path = "/api/v1/members?limit=3".to_owned();
        let mut pages = 0;
        loop {
            let (status, page) = panel.get(&path).await;
            assert_eq!(status, 200, "{page}");
            pages += 1;
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["email"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/members?limit=3&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..7).map(|i| format!("m{i}@exemple.org")).collect();
        assert_eq!(seen, expected, "every member once, in creation order");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn every_change_writes_one_audit_event_and_secrets_stay_out() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let before = panel.store.audit_events(0, 1000).await.unwrap().len();
        let (node, member) = panel.seed().await;
        let mut body = site(&member, "secret.example.org");
        body["env"] = json!([{"name": "DB_PASSWORD", "value": "s3cr3t-value-xyz", "secret": true}]);
        let (status, created) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201);
        assert!(
            !created.to_string().contains("s3cr3t-value-xyz"),
            "not in the answer"
        );
        let id = created["id"].as_str().unwrap();
        let patch = json!({"version": 1, "image": "registry.example.org/coop/site:2"});
        assert_eq!(
            panel
                .call(Method::PATCH, &format!("/api/v1/sites/{id}"), Some(patch))
                .await
                .0,
            200
        );
        let (_, listed) = panel.get("/api/v1/sites").await;
        assert!(
            !listed.to_string().contains("s3cr3t-value-xyz"),
            "not in lists"
        );
        // A refused change writes nothing.
        assert_eq!(
            panel
                .call(Method::DELETE, &format!("/api/v1/nodes/{node}"), None)
                .await
                .0,
            409
        );

        let events = panel.store.audit_events(0, 1000).await.unwrap();
        let actions: Vec<&str> = events[before..].iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "provider.create",
                "node.create",
                "member.create",
                "site.create",
                "site.update"
            ],
            "{}",
            db.backend()
        );
        let update = events.last().unwrap();
        assert_eq!(
            (update.actor.as_str(), update.target_id.as_str()),
            ("bootstrap-admin", id)
        );
        assert_eq!(
            update.before.as_ref().unwrap()["image"],
            "registry.example.org/coop/site:1"
        );
        assert!(
            !update.request_id.is_empty() && update.request_id != "-",
            "request id recorded"
        );
        for event in &events {
            assert!(
                !serde_json::to_string(event)
                    .unwrap()
                    .contains("s3cr3t-value-xyz"),
                "not in audit events"
            );
        }
        // The secret was kept for the node all the same.
        let stored = panel.store.sites().get(id.parse().unwrap()).await.unwrap();
        assert_eq!(stored.env[0].expose(), "s3cr3t-value-xyz");
        db.drop_db().await;
    }
}

/// Makes audit writes fail with a database trigger: the change they belong to must not stay.
#[tokio::test]
async fn a_failed_audit_write_rolls_the_change_back() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, member) = panel.seed().await;
        let triggers: &[&str] = if db.backend() == "sqlite" {
            &[
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
            ]
        } else {
            &[
                "CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION no_audit()",
            ]
        };
        run_sql(&db, triggers).await;
        let (status, _) = panel
            .post("/api/v1/sites", site(&member, "rollback.example.org"))
            .await;
        assert_eq!(status, 500, "{}", db.backend());
        let (status, _) = panel
            .post(
                "/api/v1/members",
                json!({"display_name": "Zoé", "email": "zoe@exemple.org"}),
            )
            .await;
        assert_eq!(status, 500);
        let counts = panel.store.counts().await.unwrap();
        assert_eq!(
            (counts.sites, counts.members),
            (0, 1),
            "{}: the changes were rolled back",
            db.backend()
        );
        let (_, found) = panel
            .get("/api/v1/sites?hostname=rollback.example.org")
            .await;
        assert_eq!(found["items"], json!([]), "no host name left behind");
        db.drop_db().await;
    }
}

async fn run_sql(db: &TestDb, statements: &[&str]) {
    use sqlx::Connection;
    if db.backend() == "sqlite" {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn the_openapi_document_and_the_route_table_agree() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (status, document) = panel.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = routes()
        .iter()
        .filter(|r| r.surface == Surface::Api)
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(documented, table);
    assert!(
        table.len() >= 21,
        "four resources × five operations + the document itself"
    );
    // Every documented $ref resolves.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{name} is not defined"
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn every_route_requires_its_credentials() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = uuid::Uuid::now_v7();
    for route in routes() {
        let path = route
            .path
            .replace("{id}", &id.to_string())
            .replace("{lang}", "fr");
        let response = anonymous
            .request(route.method.clone(), format!("{}{path}", panel.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        match (route.access, route.surface) {
            (alveole_panel::routes::Access::Public, _) => {
                assert!(status < 500 && status != 401, "{path}: {status}")
            }
            (_, Surface::Api) => assert_eq!(status, 401, "{} {path}", route.method),
            (_, _) => assert_eq!(
                (status, response.headers()["location"].to_str().unwrap()),
                (303, "/login"),
                "{} {path}",
                route.method
            ),
        }
    }
    let (status, _) = panel.get("/healthz").await;
    assert_eq!(status, 200);
    let metrics = reqwest::get(format!("{}/metrics", panel.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("alveole_sites{phase=\"running\"}"),
        "{metrics}"
    );
    db.drop_db().await;
}

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
        assert_eq!(
            (after_create, sites.len()),
            (start + 1, 1),
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
        assert_eq!(after_update, start + 2);
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
        assert_eq!(generation().await, (start + 3, vec![]));
        // Refused changes leave the generation alone.
        assert_eq!(
            panel
                .post("/api/v1/sites", site(&member, "bad;name"))
                .await
                .0,
            400
        );
        assert_eq!(generation().await.0, start + 3);
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
        assert_eq!(
            answer["generation"].as_u64(),
            Some(now + 1),
            "{}",
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

/// A node whose agent reported where other agents reach it, with `cpu_millis` of room.
async fn node_with_agent(
    panel: &TestPanel,
    provider: &Value,
    name: &str,
    cpu_millis: u32,
) -> (String, alveole_agent::agent::PanelClient) {
    let (status, node) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": provider, "name": name, "public_addresses": [],
                   "capacity": {"cpu_millis": cpu_millis, "memory_bytes": 17179869184u64, "disk_bytes": 536870912000u64}}),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    let id = node["id"].as_str().unwrap().to_owned();
    let agent = panel.agent_client();
    agent.authenticate(&panel.enrol(&id).await).unwrap();
    let report: alveole_model::NodeReport = serde_json::from_value(json!({
        "generation": null, "sites": [], "agent_version": "test",
        "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                      "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
        "endpoints": {"peer": "127.0.0.1:9", "ingress": "127.0.0.1:10"}
    }))
    .unwrap();
    agent.report(&report).await.unwrap();
    (id, agent)
}

#[tokio::test]
async fn a_site_move_is_checked_recorded_told_to_both_nodes_and_cancellable() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let (node_a, member) = panel.seed().await;
        let (_, site) = panel
            .post("/api/v1/sites", site(&member, "moving.example.org"))
            .await;
        let site = site["id"].as_str().unwrap().to_owned();
        let (_, provider) = panel.get(&format!("/api/v1/nodes/{node_a}")).await;
        let provider = provider["provider_id"].clone();
        let moved = |to: &str| json!({"to_node": to});
        let path = format!("/api/v1/sites/{site}/move");

        // Refused, naming why, with nothing recorded.
        let (status, silent) = panel
            .post(
                "/api/v1/nodes",
                json!({"provider_id": provider, "name": "silent", "public_addresses": [],
                       "capacity": {"cpu_millis": 8000, "memory_bytes": 17179869184u64, "disk_bytes": 536870912000u64}}),
            )
            .await;
        assert_eq!(status, 201);
        let (status, refused) = panel
            .post(&path, moved(silent["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 400, "{backend}: {refused}");
        assert_eq!(refused["errors"][0]["code"], "move.target_unreachable");
        let (node_a_agent_id, agent_a) = (node_a.clone(), panel.agent_client());
        agent_a
            .authenticate(&panel.enrol(&node_a_agent_id).await)
            .unwrap();
        let (tiny, _) = node_with_agent(&panel, &provider, "tiny", 1).await;
        let (status, refused) = panel.post(&path, moved(&tiny)).await;
        assert_eq!(status, 409, "{backend}: no room: {refused}");
        let (node_b, agent_b) = node_with_agent(&panel, &provider, "roomy", 8000).await;
        let (status, refused) = panel.post(&path, moved(&node_a)).await;
        assert_eq!(status, 400, "{backend}: {refused}");
        let (status, _) = panel
            .post(&path, moved(&uuid::Uuid::now_v7().to_string()))
            .await;
        assert_eq!(status, 404);
        let (_, history) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
        assert_eq!(history, json!([]), "{backend}");

        // Started: both nodes hear of it; one move at a time.
        let (status, started) = panel.post(&path, moved(&node_b)).await;
        assert_eq!(status, 202, "{backend}: {started}");
        assert_eq!(started["phase"], "copying");
        let move_id = started["id"].as_str().unwrap().to_owned();
        let (status, again) = panel.post(&path, moved(&node_b)).await;
        assert_eq!(status, 409, "{backend}: {again}");
        // The move holds its room on the target: 256 MiB of its 16 GiB of memory.
        let mut crowding = self::site(&member, "crowding.example.org");
        crowding["node_id"] = json!(node_b);
        let left = (16u64 << 30) - (256 << 20);
        crowding["limits"] = json!({"cpu_millis": 500, "memory_bytes": left + 1, "pids": 64});
        let (status, refused) = panel.post("/api/v1/sites", crowding.clone()).await;
        assert_eq!(status, 409, "{backend}: {refused}");
        crowding["limits"]["memory_bytes"] = json!(left);
        let (status, fits) = panel.post("/api/v1/sites", crowding).await;
        assert_eq!(status, 201, "{backend}: {fits}");
        let (status, _) = panel
            .call(
                Method::DELETE,
                &format!(
                    "/api/v1/sites/{}?version={}",
                    fits["id"].as_str().unwrap(),
                    fits["version"]
                ),
                None,
            )
            .await;
        assert_eq!(status, 204);
        let source = agent_a.desired_state().await.unwrap();
        assert_eq!(source.moves_out.len(), 1, "{backend}");
        assert_eq!(source.moves_out[0].target_peer.to_string(), "127.0.0.1:9");
        assert_eq!(
            source.moves_out[0].target_ingress.to_string(),
            "127.0.0.1:10"
        );
        assert!(source.sites.iter().any(|s| s.site_id.to_string() == site));
        let target = agent_b.desired_state().await.unwrap();
        assert_eq!(target.moves_in.len(), 1, "{backend}");
        assert_eq!(target.moves_in[0].site.site_id.to_string(), site);
        assert!(
            target.sites.is_empty(),
            "not the target's before the switch"
        );

        // Only the source's agent reports on it.
        let refused = agent_b
            .move_outcome(move_id.parse().unwrap(), "switch", &Default::default())
            .await;
        assert!(refused.is_err(), "{backend}: the target cannot switch");
        let (_, listed) = panel.get("/api/v1/site-moves").await;
        assert_eq!(listed[0]["id"], json!(move_id));

        // Cancelled: the site stays, both nodes hear of it, the target may drop its copy.
        let (status, cancelled) = panel
            .post(&format!("/api/v1/site-moves/{move_id}/cancel"), json!({}))
            .await;
        assert_eq!(status, 200, "{backend}: {cancelled}");
        assert_eq!(cancelled["phase"], "cancelled");
        let (status, _) = panel
            .post(&format!("/api/v1/site-moves/{move_id}/cancel"), json!({}))
            .await;
        assert_eq!(status, 409);
        let (status, _) = panel
            .post(&format!("/api/v1/site-moves/{move_id}/finish"), json!({}))
            .await;
        assert_eq!(status, 409, "only a switched move has a forwarding to end");
        let target = agent_b.desired_state().await.unwrap();
        assert!(target.moves_in.is_empty());
        assert_eq!(target.purge_volumes.len(), 1, "{backend}: its copy goes");
        assert!(agent_a.desired_state().await.unwrap().moves_out.is_empty());
        let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
        assert_eq!(shown["node_id"], json!(node_a));

        // Switched: the site is the target's, its source forwards; a repeated switch is
        // answered the same.
        let (_, started) = panel.post(&path, moved(&node_b)).await;
        let move_id: alveole_model::SiteMoveId = started["id"].as_str().unwrap().parse().unwrap();
        let switched = agent_a
            .move_outcome(move_id, "switch", &Default::default())
            .await
            .unwrap();
        assert_eq!(switched.phase, alveole_model::MovePhase::Forwarding);
        let again = agent_a
            .move_outcome(move_id, "switch", &Default::default())
            .await
            .unwrap();
        assert_eq!(again.forward_until, switched.forward_until, "{backend}");
        let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
        assert_eq!(shown["node_id"], json!(node_b));
        let source = agent_a.desired_state().await.unwrap();
        assert!(source.sites.is_empty());
        assert_eq!(
            source.moves_out[0].phase,
            alveole_model::MovePhase::Forwarding
        );
        assert_eq!(
            source.moves_out[0].hostnames[0].to_string(),
            "moving.example.org"
        );
        // A rollback the panel hears after switching (its answer was lost) undoes the switch.
        let failed = agent_a
            .move_outcome(
                move_id,
                "fail",
                &alveole_model::MoveOutcome {
                    progress: Default::default(),
                    reason: Some("the freeze outlived its deadline".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(failed.phase, alveole_model::MovePhase::Failed);
        let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
        assert_eq!(shown["node_id"], json!(node_a), "{backend}");
        let (_, history) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
        assert_eq!(history.as_array().unwrap().len(), 2);
        assert_eq!(history[0]["error"], "the freeze outlived its deadline");

        // A site's dedicated address stays on the old node while it forwards, and follows the
        // site when the forwarding ends.
        let (status, pool) = panel
            .post(
                "/api/v1/ip-pools",
                json!({"provider_id": provider, "prefix": "203.0.113.0/29"}),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {pool}");
        let (status, allocated) = panel
            .post(
                &format!(
                    "/api/v1/ip-pools/{}/allocations",
                    pool["id"].as_str().unwrap()
                ),
                json!({"node_id": node_a, "site_id": site}),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {allocated}");
        let (_, started) = panel.post(&path, moved(&node_b)).await;
        let move_id: alveole_model::SiteMoveId = started["id"].as_str().unwrap().parse().unwrap();
        agent_a
            .move_outcome(move_id, "switch", &Default::default())
            .await
            .unwrap();
        let address: std::net::IpAddr = allocated["address"].as_str().unwrap().parse().unwrap();
        assert!(
            agent_a
                .desired_state()
                .await
                .unwrap()
                .addresses
                .contains(&address)
        );
        let (_, moving) = panel.get("/api/v1/address-moves").await;
        assert_eq!(moving, json!([]), "not while the old node forwards");
        let (status, _) = panel
            .post(&format!("/api/v1/site-moves/{move_id}/finish"), json!({}))
            .await;
        assert_eq!(status, 200);
        let (_, moving) = panel.get("/api/v1/address-moves").await;
        assert_eq!(
            moving[0]["address"],
            json!(address.to_string()),
            "{backend}: {moving}"
        );
        assert_eq!(moving[0]["to_node"], json!(node_b));

        // A forwarding ends by itself once its period is over (a node's report pokes the task
        // that ends it).
        panel
            .configure(|config| config.moves.forward_seconds = 0)
            .await;
        let report: alveole_model::NodeReport = serde_json::from_value(json!({
            "generation": null, "sites": [], "agent_version": "test",
            "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                          "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
            "endpoints": {"peer": "127.0.0.1:11", "ingress": "127.0.0.1:12"}
        }))
        .unwrap();
        agent_a.report(&report).await.unwrap();
        let (_, started) = panel.post(&path, moved(&node_a)).await;
        let back: alveole_model::SiteMoveId = started["id"].as_str().unwrap().parse().unwrap();
        agent_b
            .move_outcome(back, "switch", &Default::default())
            .await
            .unwrap();
        agent_a.report(&report).await.unwrap();
        let mut ended = json!(null);
        for _ in 0..100 {
            ended = panel.get(&format!("/api/v1/site-moves/{back}")).await.1;
            if ended["phase"] == "done" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(ended["phase"], "done", "{backend}: {ended}");
        assert!(ended["finished_at"].is_string());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_evacuation_plan_never_overfills_a_node_and_says_when_a_deadline_cannot_hold() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let (_, member) = panel.seed().await;
        let provider = |name: &str| {
            let body = json!({"name": name});
            let panel = &panel;
            async move {
                let (status, created) = panel.post("/api/v1/providers", body).await;
                assert_eq!(status, 201, "{created}");
                created["id"].as_str().unwrap().to_owned()
            }
        };
        let (leaving, staying) = (provider("Leaving").await, provider("Staying").await);
        let node = |provider: String, name: &'static str, memory_gib: u64| {
            let panel = &panel;
            async move {
                let (status, created) = panel
                    .post(
                        "/api/v1/nodes",
                        json!({"provider_id": provider, "name": name, "public_addresses": [],
                               "overcommit": {"cpu": 1.0, "memory": 1.0},
                               "capacity": {"cpu_millis": 8000, "memory_bytes": memory_gib << 30,
                                            "disk_bytes": 500u64 << 30}}),
                    )
                    .await;
                assert_eq!(status, 201, "{created}");
                created["id"].as_str().unwrap().to_owned()
            }
        };
        let old = node(leaving.clone(), "old", 16).await;
        let (big, small) = (
            node(staying.clone(), "big", 4).await,
            node(staying.clone(), "small", 3).await,
        );
        for i in 0..3 {
            let mut body = site(&member, &format!("s{i}.example.org"));
            body["node_id"] = json!(old);
            body["limits"] = json!({"cpu_millis": 500, "memory_bytes": 2u64 << 30, "pids": 64});
            let (status, created) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 201, "{created}");
        }

        // A naive placement (each site where most room is left at the start) would put all
        // three on "big": 6 GiB on 4.
        let (status, plan) = panel
            .get(&format!("/api/v1/evacuation-plan?provider_id={leaving}"))
            .await;
        assert_eq!(status, 200, "{backend}: {plan}");
        let placements = plan["placements"].as_array().unwrap();
        assert_eq!(placements.len(), 3, "{backend}: {plan}");
        let on = |node: &str| placements.iter().filter(|p| p["to_node"] == node).count() as u64;
        assert!(
            on(&big) * 2 <= 4 && on(&small) * 2 <= 3,
            "{backend}: {plan}"
        );
        assert_eq!(plan["verdict"], "no_deadline");
        assert_eq!(plan["throughput"]["measured"], false);

        // One second is too short for any move: impossible, and why.
        let deadline = (chrono::Utc::now() + chrono::Duration::seconds(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (status, plan) = panel
            .get(&format!(
                "/api/v1/evacuation-plan?node_id={old}&deadline={deadline}&parallelism=8"
            ))
            .await;
        assert_eq!(status, 200, "{backend}: {plan}");
        assert_eq!(plan["verdict"], "impossible", "{backend}: {plan}");
        assert!(
            plan["statement"]
                .as_str()
                .unwrap()
                .contains("one move alone outlasts"),
            "{plan}"
        );
        assert!(
            plan["suggestions"][0]
                .as_str()
                .unwrap()
                .contains("alone takes about"),
            "{plan}"
        );

        // Neither a node nor a provider: said so.
        let (status, refused) = panel.get("/api/v1/evacuation-plan").await;
        assert_eq!(status, 400, "{refused}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_evacuation_runs_as_a_durable_job_shared_by_two_processes_and_resumed_after_a_restart() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let fast = alveole_panel::background::BackgroundConfig {
            job_lease: std::time::Duration::from_secs(2),
            jobs_every: std::time::Duration::from_millis(100),
            ..Default::default()
        };
        panel.configure(|config| config.background = fast).await;
        let (old, member) = panel.seed().await;
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let old_agent = panel.agent_client();
        old_agent.authenticate(&panel.enrol(&old).await).unwrap();
        let (status, staying) = panel
            .post("/api/v1/providers", json!({"name": "Staying"}))
            .await;
        assert_eq!(status, 201);
        let (big, _) = node_with_agent(&panel, &staying["id"], "big", 8000).await;
        let (small, _) = node_with_agent(&panel, &staying["id"], "small", 8000).await;
        let mut sites = Vec::new();
        for i in 0..6 {
            let mut body = site(&member, &format!("e{i}.example.org"));
            body["node_id"] = json!(old);
            let (status, created) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 201, "{created}");
            sites.push(created["id"].as_str().unwrap().to_owned());
        }
        // A second panel process on the same database, running jobs too.
        let other = alveole_panel::AppState::new(
            alveole_store::connect(&db.url).await.unwrap(),
            alveole_panel::PanelConfig {
                background: fast,
                ..Default::default()
            },
        )
        .unwrap();
        let other_runner =
            alveole_panel::background::start(other.service(), "the-other-process".into());

        let (status, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 2}),
            )
            .await;
        assert_eq!(status, 202, "{backend}: {started}");
        let job = started["id"].as_str().unwrap().to_owned();
        assert_eq!(started["items"].as_array().unwrap().len(), 6);

        // The old node's agent switches each move it is given; the panel restarts halfway.
        let mut switched = BTreeSet::new();
        let mut restarted = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        let finished = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: the evacuation never ended"
            );
            let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
            if evacuation["state"] == "done" {
                break evacuation;
            }
            let items = evacuation["items"].as_array().unwrap();
            let moving: Vec<&Value> = items.iter().filter(|i| i["state"] == "moving").collect();
            assert!(
                moving.len() <= 2,
                "{backend}: at most 2 at once: {evacuation}"
            );
            for item in moving {
                let move_id: alveole_model::SiteMoveId =
                    item["move_id"].as_str().unwrap().parse().unwrap();
                if switched.insert(move_id) {
                    old_agent
                        .move_outcome(move_id, "switch", &Default::default())
                        .await
                        .unwrap();
                }
            }
            let done = items.iter().filter(|i| i["state"] == "done").count();
            if done >= 3 && !restarted {
                panel.stop().await;
                panel.resume().await;
                restarted = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        drop(other_runner);
        assert!(restarted);
        let items = finished["items"].as_array().unwrap();
        assert!(
            items.iter().all(|i| i["state"] == "done"),
            "{backend}: {finished}"
        );
        // Every site is on its planned node, moved exactly once.
        for item in items {
            let site = item["site_id"].as_str().unwrap();
            let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
            assert_eq!(shown["node_id"], item["to_node"], "{backend}");
            assert!(item["to_node"] == json!(big) || item["to_node"] == json!(small));
            let (_, moves) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
            assert_eq!(
                moves.as_array().unwrap().len(),
                1,
                "{backend}: moved once: {moves}"
            );
        }
        let finish = panel
            .store
            .audit_events(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.action == "evacuation.finish")
            .expect("the evacuation's end is in the audit record");
        assert!(finish.after.unwrap()["took_seconds"].is_number());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_cancelled_evacuation_skips_what_did_not_start_and_ends_once_its_moves_have() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        let backend = db.backend();
        panel
            .configure(|config| {
                config.background.jobs_every = std::time::Duration::from_millis(100)
            })
            .await;
        let (old, member) = panel.seed().await;
        let old_agent = panel.agent_client();
        old_agent.authenticate(&panel.enrol(&old).await).unwrap();
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let (_, staying) = panel
            .post("/api/v1/providers", json!({"name": "Staying"}))
            .await;
        node_with_agent(&panel, &staying["id"], "target", 8000).await;
        for i in 0..3 {
            let mut body = site(&member, &format!("c{i}.example.org"));
            body["node_id"] = json!(old);
            assert_eq!(panel.post("/api/v1/sites", body).await.0, 201);
        }
        let (_, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 1}),
            )
            .await;
        let job = started["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/evacuations/{job}");
        let mut moving = None;
        for _ in 0..200 {
            let (_, evacuation) = panel.get(&path).await;
            if let Some(id) = evacuation["items"][0]["move_id"].as_str() {
                moving = Some(id.parse::<alveole_model::SiteMoveId>().unwrap());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let moving = moving.expect("the first site's move started");
        let (status, cancelled) = panel.post(&format!("{path}/cancel"), json!({})).await;
        assert_eq!(status, 200, "{backend}: {cancelled}");
        let states: Vec<&str> = cancelled["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["moving", "skipped", "skipped"], "{backend}");
        let (status, _) = panel.post(&format!("{path}/resume"), json!({})).await;
        assert_eq!(status, 409, "a cancelled evacuation stays cancelled");
        old_agent
            .move_outcome(moving, "switch", &Default::default())
            .await
            .unwrap();
        let mut ended = Value::Null;
        for _ in 0..200 {
            let (_, evacuation) = panel.get(&path).await;
            if evacuation["finished_at"].is_string() {
                ended = evacuation;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(ended["state"], "cancelled", "{backend}: {ended}");
        assert_eq!(ended["items"][0]["state"], "done");
        db.drop_db().await;
    }
}
