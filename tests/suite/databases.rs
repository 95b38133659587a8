//! A site's databases as the panel keeps them, on SQLite and PostgreSQL: field errors, the
//! versions the co-op offers, passwords made at creation, sealed at rest, shown nowhere but
//! in the node's document (with the site's connection variables), kept through edits and
//! the secrets key's rotation, changed by a rotation; a site with databases does not move;
//! a database over its quota raises its site's alert.

use std::time::Duration;

use alveole_model::DesiredState;
use alveole_store::AuditContext;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use crate::records::site;

async fn document(panel: &TestPanel, node: &str) -> DesiredState {
    panel
        .service()
        .desired_state(node.parse().unwrap(), None, Duration::ZERO)
        .await
        .unwrap()
}

fn fields(refused: &Value) -> Vec<String> {
    refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Everything the panel shows or keeps, as text: API answers, the site's page, the audit
/// record and the database's dump.
async fn everything(panel: &TestPanel, db: &TestDb, id: &str) -> String {
    let mut text = panel
        .get(&format!("/api/v1/sites/{id}"))
        .await
        .1
        .to_string();
    text.push_str(&panel.get("/api/v1/sites").await.1.to_string());
    text.push_str(
        &panel
            .get(&format!("/api/v1/sites/{id}/databases"))
            .await
            .1
            .to_string(),
    );
    text.push_str(&panel.page(&format!("/sites/{id}")).await);
    for action in ["site.create", "site.update", "database.password_rotate"] {
        for event in panel.events(action).await {
            text.push_str(&serde_json::to_string(&event).unwrap());
        }
    }
    text.push_str(&db.dump().await);
    text
}

#[tokio::test]
async fn a_sites_databases_get_passwords_no_one_sees_but_its_node() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let mut body = site(&member, "boutique.exemple.org");

        // Every bad setting is named, nothing is kept.
        body["databases"] = json!([
            {"name": "shop", "engine": "mariadb", "version": "10.11"},
            {"name": "shop", "engine": "postgresql", "version": "15"},
            {"name": "9lives", "engine": "postgresql", "version": "15", "quota_bytes": 1},
        ]);
        body["env"] = json!([{"name": "DATABASE_URL", "value": "mine"}]);
        let (status, refused) = panel.post("/api/v1/sites", body.clone()).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            fields(&refused),
            [
                "databases[1].name",
                "databases[2].name",
                "databases[2].quota_bytes",
                "env[0].name"
            ],
            "{refused}"
        );
        body["env"] = json!([]);
        body["databases"] = json!([{"name": "shop", "engine": "postgresql", "version": "9.6"}]);
        let (status, refused) = panel.post("/api/v1/sites", body.clone()).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), ["databases[0].version"]);
        assert!(
            refused
                .to_string()
                .contains("the co-op offers postgresql 15")
        );
        assert_eq!(panel.get("/api/v1/sites").await.1["items"], json!([]));

        // Made with two passwords the node alone gets, and the site's variables.
        body["databases"] = json!([{"name": "shop", "engine": "mariadb", "version": "10.11"}]);
        let (status, created) = panel.post("/api/v1/sites", body.clone()).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(
            created["databases"],
            json!([{"name": "shop", "engine": "mariadb", "version": "10.11",
                    "limits": {"cpu_millis": 250, "memory_bytes": 268435456, "pids": 128},
                    "quota_bytes": 1073741824}])
        );
        let sent = document(&panel, &node).await;
        let spec = &sent.sites[0];
        let shop = &spec.databases[0];
        assert_eq!(shop.image.as_str(), "alveole-test/mariadb:10.11");
        let (password, admin) = (shop.password.0.clone(), shop.admin_password.0.clone());
        assert_eq!(password.len(), 32);
        assert_ne!(password, admin);
        let variable = |name: &str| {
            spec.env
                .iter()
                .find(|v| v.name == name)
                .map(|v| v.value.clone())
        };
        assert_eq!(variable("ALVEOLE_DB_SHOP_PASSWORD"), Some(password.clone()));
        assert_eq!(
            variable("DATABASE_URL"),
            Some(format!("mysql://shop:{password}@127.0.0.1:3306/shop"))
        );
        let (_, listed) = panel.get(&format!("/api/v1/sites/{id}/databases")).await;
        assert_eq!(listed[0]["port"], 3306);
        assert_eq!(listed[0]["variables"][4], "ALVEOLE_DB_SHOP_PASSWORD");
        let shown = everything(&panel, &db, &id).await;
        assert!(
            !shown.contains(&password) && !shown.contains(&admin),
            "hidden"
        );

        // An edit keeps them; the engine does not change; the secrets key's rotation
        // reseals them.
        let path = format!("/api/v1/sites/{id}");
        let version = panel.get(&path).await.1["version"].clone();
        let patch = json!({"version": version, "databases": [
            {"name": "shop", "engine": "mariadb", "version": "10.11", "quota_bytes": 2147483648u64}]});
        let (status, edited) = panel.call(Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 200, "{edited}");
        let patch = json!({"version": edited["version"], "databases": [
            {"name": "shop", "engine": "postgresql", "version": "15"}]});
        let (status, refused) = panel.call(Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), ["databases[0].engine"]);
        let ctx = AuditContext::new("test", "rotate");
        panel.service().rotate_secrets_key(&ctx).await.unwrap();
        let kept = &document(&panel, &node).await.sites[0].databases[0];
        assert_eq!(
            (&kept.password.0, &kept.admin_password.0),
            (&password, &admin)
        );

        // A rotation gives the user a new password (not the administrator), audited without it.
        let before = document(&panel, &node).await.generation;
        let (status, rotated) = panel
            .post(&format!("{path}/databases/shop/password"), json!({}))
            .await;
        assert_eq!(status, 200, "{rotated}");
        let after = document(&panel, &node).await;
        assert!(after.generation > before, "the node hears of it");
        let new = &after.sites[0].databases[0];
        assert_ne!(new.password.0, password);
        assert_eq!(new.admin_password.0, admin);
        assert_eq!(panel.events("database.password_rotate").await.len(), 1);
        let (status, _) = panel
            .post(&format!("{path}/databases/other/password"), json!({}))
            .await;
        assert_eq!(status, 404);
        let shown = everything(&panel, &db, &id).await;
        assert!(!shown.contains(&new.password.0), "hidden");

        // Its capacity counts the database; it does not move (its data would not follow).
        let (_, provider) = panel.get(&format!("/api/v1/nodes/{node}")).await;
        let (other, _agent) =
            crate::moves::node_with_agent(&panel, &provider["provider_id"], "autre", 64_000).await;
        let (status, refused) = panel
            .post(&format!("{path}/move"), json!({"to_node": other}))
            .await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["errors"][0]["code"], "move.has_databases");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_database_over_its_quota_raises_its_sites_alert() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let mut body = site(&member, "journal.exemple.org");
        body["databases"] = json!([{"name": "news", "engine": "postgresql", "version": "15",
                                    "quota_bytes": 16777216}]);
        let (status, created) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201, "{created}");
        let agent = crate::moves::report_endpoints(&panel, &node, 10).await;
        let report = |bytes: u64| {
            serde_json::from_value::<alveole_model::NodeReport>(json!({
                "generation": null, "agent_version": "test",
                "sites": [{"site_id": created["id"], "state": "running", "volume_bytes": 4096,
                           "database_bytes": {"news": bytes}}],
                "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                              "memory_available_bytes": 1, "disk_total_bytes": 1,
                              "disk_available_bytes": 1}
            }))
            .unwrap()
        };
        use alveole_agent::control::panel::Control;
        agent.report(&report(1 << 20)).await.unwrap();
        let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
        assert_eq!(status["alerts"], json!([]), "{status}");
        agent.report(&report(40 << 20)).await.unwrap();
        let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
        assert_eq!(
            status["alerts"][0]["kind"], "database_over_quota",
            "{status}"
        );
        assert_eq!(
            status["alerts"][0]["message"],
            "journal.exemple.org's database news uses 40M of its 16M quota"
        );
        let id = created["id"].as_str().unwrap();
        let (_, listed) = panel.get(&format!("/api/v1/sites/{id}/databases")).await;
        assert_eq!(listed[0]["used_bytes"], 40u64 << 20);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_database_counts_in_its_sites_room_on_its_node() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let mut body = site(&member, "grand.exemple.org");
        body["node_id"] = json!(node);
        body["limits"] = json!({"cpu_millis": 1000, "memory_bytes": 15u64 << 30, "pids": 100});
        body["databases"] = json!([{"name": "big", "engine": "postgresql", "version": "15",
                                    "limits": {"cpu_millis": 500, "memory_bytes": 2u64 << 30,
                                               "pids": 128}}]);
        let (status, problem) = panel.post("/api/v1/sites", body.clone()).await;
        assert_eq!(
            status, 409,
            "the site fits, not with its database: {problem}"
        );
        assert_eq!(problem["errors"][0]["code"], "capacity.exceeded");
        body["databases"][0]["limits"]["memory_bytes"] = json!(512u64 << 20);
        let (status, created) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201, "{created}");
        // Growing the database later is checked the same way.
        let path = format!("/api/v1/sites/{}", created["id"].as_str().unwrap());
        let patch = json!({"version": created["version"], "databases": [
            {"name": "big", "engine": "postgresql", "version": "15",
             "limits": {"cpu_millis": 500, "memory_bytes": 4u64 << 30, "pids": 128}}]});
        let (status, problem) = panel.call(Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 409, "{problem}");
        db.drop_db().await;
    }
}
