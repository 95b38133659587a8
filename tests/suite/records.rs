//! Providers, nodes, members and sites through the API, on SQLite and PostgreSQL: the five
//! operations, names and capacity, paging, and every change audited with secrets kept out.

use std::collections::BTreeSet;

use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) fn site(owner: &str, domain: &str) -> Value {
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
        // The secret was kept for the node all the same (sealed in the database).
        let stored = panel.store.sites().get(id.parse().unwrap()).await.unwrap();
        let keyring = panel.service().config().secrets.clone();
        assert_eq!(
            keyring.open(stored.env[0].expose()).unwrap(),
            "s3cr3t-value-xyz"
        );
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
