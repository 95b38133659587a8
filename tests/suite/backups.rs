//! Backups through the API, on SQLite and PostgreSQL, with agents played by the test: the
//! placement rule refused in the API (and kept through moves, node and target changes), the
//! repository key sealed and handed only to the nodes that need it, the vault's grants, a
//! backup asked for, what nodes report, and restores with their progress, each audited.

use std::time::Duration;

use alveole_agent::control::panel::Control;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use crate::moves::node_with_agent;
use crate::records::site;

/// The fleet of a test: the site's node at provider "here", a vault at "there", another
/// node at "there", a REST server at "elsewhere", and targets at each.
struct Fleet {
    member: String,
    node: String,
    here: Value,
    there: Value,
    vault_node: String,
    other_node_there: String,
    /// A vault at "there".
    vault: String,
    /// A REST server at "elsewhere".
    rest: String,
    /// A REST server at "here" (the site's own provider).
    rest_here: String,
    /// A vault on the site's own node.
    on_the_node: String,
    /// Another vault at "there".
    vault_2: String,
}

async fn provider(panel: &TestPanel, name: &str) -> Value {
    let (status, created) = panel.post("/api/v1/providers", json!({"name": name})).await;
    assert_eq!(status, 201, "{created}");
    created["id"].clone()
}

async fn target(panel: &TestPanel, body: Value) -> String {
    let (status, created) = panel.post("/api/v1/backup-targets", body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn fleet(panel: &TestPanel) -> Fleet {
    let (node, member) = panel.seed().await;
    let (_, seeded) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    let here = seeded["provider_id"].clone();
    let there = provider(panel, "Ailleurs").await;
    let elsewhere = provider(panel, "Loin").await;
    let (vault_node, _) = node_with_agent(panel, &there, "vault-1", 1000).await;
    let (other_node_there, _) = node_with_agent(panel, &there, "node-there", 8000).await;
    let vault = target(panel, json!({"name": "vault-there", "node_id": vault_node})).await;
    let vault_2 = target(
        panel,
        json!({"name": "vault-there-2", "node_id": other_node_there}),
    )
    .await;
    let rest = target(
        panel,
        json!({"name": "rest-far", "url": "https://backup.example.net/coop", "provider_id": elsewhere}),
    )
    .await;
    let rest_here = target(
        panel,
        json!({"name": "rest-here", "url": "https://backup.example.org/", "provider_id": here}),
    )
    .await;
    let on_the_node = target(panel, json!({"name": "self", "node_id": node})).await;
    Fleet {
        member,
        node,
        here,
        there,
        vault_node,
        other_node_there,
        vault,
        rest,
        rest_here,
        on_the_node,
        vault_2,
    }
}

fn with_backups(member: &str, domain: &str, targets: &[&str], node: &str) -> Value {
    let mut body = site(member, domain);
    body["node_id"] = json!(node);
    body["backup"] = json!({"targets": targets});
    body
}

/// The codes of a refusal's field errors, by field.
fn codes(answer: &Value) -> Vec<(String, String)> {
    answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_owned(),
                e["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_placement_rule_is_refused_in_the_api_and_holds_through_every_later_change() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let f = fleet(&panel).await;
        let backend = db.backend();
        let head = panel.store.audit_head().await.unwrap();
        for (targets, expected) in [
            (
                vec![f.rest_here.as_str()],
                ("backup.targets[0]", "backup.same_provider"),
            ),
            (
                vec![f.on_the_node.as_str()],
                ("backup.targets[0]", "backup.same_node"),
            ),
            (
                vec![f.vault.as_str(), f.vault_2.as_str()],
                ("backup.targets[1]", "backup.same_provider_twice"),
            ),
            (
                vec![f.vault.as_str(), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"],
                ("backup.targets[1]", "target.unknown"),
            ),
            (
                vec![f.vault.as_str(), f.vault.as_str()],
                ("backup.targets[1]", "backup.duplicate_target"),
            ),
        ] {
            let (status, refused) = panel
                .post(
                    "/api/v1/sites",
                    with_backups(&f.member, "refused.example.org", &targets, &f.node),
                )
                .await;
            assert!(status == 409 || status == 400, "{backend}: {refused}");
            assert!(
                codes(&refused).contains(&(expected.0.into(), expected.1.into())),
                "{backend}: {expected:?} in {refused}"
            );
            assert!(
                refused.to_string().contains("provider")
                    || refused.to_string().contains("node")
                    || refused.to_string().contains("twice")
                    || refused.to_string().contains("no backup target"),
                "says why: {refused}"
            );
        }
        assert_eq!(
            panel.store.audit_head().await.unwrap(),
            head,
            "{backend}: refusals record nothing"
        );
        let (_, sites) = panel.get("/api/v1/sites").await;
        assert_eq!(sites["items"].as_array().unwrap().len(), 0, "nothing made");

        // Two copies at two other providers.
        let (status, created) = panel
            .post(
                "/api/v1/sites",
                with_backups(
                    &f.member,
                    "sauve.example.org",
                    &[&f.vault, &f.rest],
                    &f.node,
                ),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["backup"]["every_minutes"], 60, "hourly by default");

        // An edit toward the site's provider is refused, the site left as it was.
        let patch = json!({"version": 1, "backup": {"targets": [f.rest_here]}});
        let (status, refused) = panel
            .call(Method::PATCH, &format!("/api/v1/sites/{id}"), Some(patch))
            .await;
        assert_eq!(status, 409, "{backend}: {refused}");
        assert_eq!(panel.get(&format!("/api/v1/sites/{id}")).await.1, created);

        // A move to the vault's provider is refused, naming the rule.
        let (status, refused) = panel
            .post(
                &format!("/api/v1/sites/{id}/move"),
                json!({"to_node": f.other_node_there}),
            )
            .await;
        assert_eq!(status, 409, "{backend}: {refused}");
        assert_eq!(
            codes(&refused),
            [("to_node".to_owned(), "backup.same_provider".to_owned())]
        );
        // The vault's node may not go to the site's provider, nor the vault to a node there.
        let (_, vault_node) = panel.get(&format!("/api/v1/nodes/{}", f.vault_node)).await;
        let patch = json!({"version": vault_node["version"], "provider_id": f.here});
        let (status, refused) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/nodes/{}", f.vault_node),
                Some(patch),
            )
            .await;
        assert_eq!(status, 409, "{backend}: {refused}");
        assert!(
            refused.to_string().contains("sauve.example.org"),
            "{refused}"
        );
        let (_, vault) = panel
            .get(&format!("/api/v1/backup-targets/{}", f.vault))
            .await;
        let patch = json!({"version": vault["version"], "node_id": f.node});
        let (status, refused) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/backup-targets/{}", f.vault),
                Some(patch),
            )
            .await;
        assert_eq!(status, 409, "{backend}: {refused}");
        // A target in use, or a vault's node, may not go.
        for path in [
            format!("/api/v1/backup-targets/{}", f.vault),
            format!("/api/v1/nodes/{}", f.vault_node),
        ] {
            let (status, refused) = panel.call(Method::DELETE, &path, None).await;
            assert_eq!(status, 409, "{backend}: {path}: {refused}");
        }
        // A node moving to a third provider keeps the rule: allowed.
        let patch = json!({"version": vault_node["version"], "provider_id": f.there});
        let (status, _) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/nodes/{}", f.vault_node),
                Some(patch),
            )
            .await;
        assert_eq!(status, 200, "{backend}: an unchanged provider is fine");
        db.drop_db().await;
    }
}

/// The node's document, as its agent gets it.
async fn document(panel: &TestPanel, node: &str) -> alveole_model::DesiredState {
    panel
        .service()
        .desired_state(node.parse().unwrap(), None, Duration::ZERO)
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_grants_backups_and_restores_reach_only_the_nodes_that_need_them() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let f = fleet(&panel).await;
        let backend = db.backend();
        let (status, created) = panel
            .post(
                "/api/v1/sites",
                with_backups(&f.member, "sauve.example.org", &[&f.vault], &f.node),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {created}");
        let id = created["id"].as_str().unwrap().to_owned();

        // The site's node gets the key and where the vault listens; the vault grants it.
        let on_node = document(&panel, &f.node).await;
        let spec = on_node.sites[0]
            .backup
            .clone()
            .expect("backups in the document");
        let key = spec.password.0.clone();
        assert_eq!(key.len(), 64, "{backend}: 32 random bytes");
        assert_eq!(spec.repository, id);
        assert!(
            matches!(
                spec.targets[0].endpoint,
                alveole_model::backup::Endpoint::Vault { peer: Some(_), .. }
            ),
            "{:?}",
            spec.targets
        );
        let vault = document(&panel, &f.vault_node)
            .await
            .vault
            .expect("a vault");
        assert_eq!(vault.repositories.len(), 1);
        assert_eq!(vault.repositories[0].name, id);
        assert_eq!(vault.repositories[0].writers, [f.node.parse().unwrap()]);
        let other = document(&panel, &f.other_node_there).await.vault.unwrap();
        assert!(
            other.repositories.is_empty(),
            "another vault grants nothing"
        );
        // Never in clear in the database, the API or the audit record.
        let dump = db.dump().await;
        assert!(!dump.contains(&key), "{backend}: the key is in the dump");
        let (_, read) = panel.get(&format!("/api/v1/sites/{id}")).await;
        let (_, backups) = panel.get(&format!("/api/v1/sites/{id}/backups")).await;
        let (_, audit) = panel.get("/api/v1/audit?limit=500").await;
        for answer in [&read, &backups, &audit] {
            assert!(
                !answer.to_string().contains(&key),
                "{backend}: the key shows"
            );
        }

        // A backup asked for now reaches the node's document, audited.
        let (status, asked) = panel
            .post(&format!("/api/v1/sites/{id}/backups"), json!({}))
            .await;
        assert_eq!(status, 202, "{backend}: {asked}");
        assert!(
            document(&panel, &f.node).await.sites[0]
                .backup
                .as_ref()
                .unwrap()
                .requested_at
                .is_some()
        );
        assert_eq!(panel.events("backup.request").await.len(), 1);

        // The node reports a backup: recorded, shown with the data-loss window, audited.
        let agent = panel.agent_client();
        agent.authenticate(&panel.enrol(&f.node).await).unwrap();
        let now = chrono::Utc::now();
        let report: alveole_model::NodeReport = serde_json::from_value(json!({
            "generation": null, "sites": [], "agent_version": "test",
            "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                          "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
            "events": [{"seq": 1, "at": now, "kind": "backup_completed", "site_id": id,
                        "detail": "backed up", "backup": {"target_id": f.vault,
                        "started_at": now, "duration_ms": 1200, "snapshot_id": "ab".repeat(32),
                        "files": 3, "bytes_added": 100, "bytes_total": 300}}]
        }))
        .unwrap();
        agent.report(&report).await.unwrap();
        let (_, backups) = panel.get(&format!("/api/v1/sites/{id}/backups")).await;
        assert_eq!(
            backups["targets"][0]["newest"]["snapshot_id"],
            "ab".repeat(32)
        );
        assert!(
            backups["newest_snapshot_seconds"].as_i64().unwrap() < 60,
            "{backups}"
        );
        assert!(
            backups["window_seconds"].is_null(),
            "no drill nor check has proven it yet: {backups}"
        );
        assert_eq!(panel.events("backup.completed").await.len(), 1);

        // Restores: paths inside the volume, targets of the site, one at a time.
        let restores = format!("/api/v1/sites/{id}/restores");
        let (status, refused) = panel
            .post(&restores, json!({"paths": ["/www/../../etc/passwd"]}))
            .await;
        assert_eq!(status, 400, "{backend}: {refused}");
        assert_eq!(codes(&refused)[0].0, "paths[0]");
        let (status, refused) = panel.post(&restores, json!({"target_id": f.rest})).await;
        assert_eq!(status, 400, "{backend}: {refused}");
        assert_eq!(codes(&refused)[0].0, "target_id");
        let (status, restore) = panel
            .post(&restores, json!({"paths": ["/www/index.html"]}))
            .await;
        assert_eq!(status, 202, "{backend}: {restore}");
        let (status, _) = panel.post(&restores, json!({})).await;
        assert_eq!(status, 409, "{backend}: one restore at a time");
        let order = document(&panel, &f.node).await.restores;
        assert_eq!(order.len(), 1);
        assert_eq!(order[0].password.0, key, "the node restoring gets the key");
        assert_eq!(order[0].paths, ["/www/index.html"]);

        // The node says how far it is, then that it is done: audited, and no longer asked.
        let restore_id = restore["id"].as_str().unwrap().to_owned();
        for (done, finished) in [
            (10, Value::Null),
            (
                20,
                json!({"outcome": "restored", "snapshot_id": "ab".repeat(32)}),
            ),
        ] {
            let mut progress = report.clone();
            progress.events.clear();
            progress.restores = vec![
                serde_json::from_value(json!({"id": restore_id, "bytes_done": done,
                    "bytes_total": 20, "finished": finished}))
                .unwrap(),
            ];
            agent.report(&progress).await.unwrap();
            let (_, seen) = panel.get(&format!("/api/v1/restores/{restore_id}")).await;
            assert_eq!(seen["bytes_done"], done, "{backend}: {seen}");
        }
        let (_, seen) = panel.get(&format!("/api/v1/restores/{restore_id}")).await;
        assert_eq!(seen["state"], "restored");
        assert_eq!(panel.events("restore.start").await.len(), 1);
        assert_eq!(panel.events("restore.finish").await.len(), 1);
        assert!(document(&panel, &f.node).await.restores.is_empty());

        // Turning backups off: the vault no longer grants the node.
        let patch = json!({"version": read["version"], "backup": {"targets": []}});
        let (status, _) = panel
            .call(Method::PATCH, &format!("/api/v1/sites/{id}"), Some(patch))
            .await;
        assert_eq!(status, 200);
        let vault = document(&panel, &f.vault_node).await.vault.unwrap();
        assert!(vault.repositories.is_empty(), "{vault:?}");
        assert!(document(&panel, &f.node).await.sites[0].backup.is_none());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_site_page_refuses_a_policy_that_breaks_the_rule_and_shows_the_backups() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let f = fleet(&panel).await;
    let (status, created) = panel
        .post(
            "/api/v1/sites",
            with_backups(&f.member, "page.example.org", &[&f.vault], &f.node),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (cookie, csrf) = crate::authorization::admin_page_session(&panel, &browser).await;
    let base = panel.base.clone();
    let page = |path: String| {
        let (browser, cookie, base) = (browser.clone(), cookie.clone(), base.clone());
        async move {
            let response = browser
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // The edit form offers the targets, the current one chosen.
    let (status, form) = page(format!("/sites/{id}/edit")).await;
    assert_eq!(status, 200);
    assert!(
        form.contains("vault-there") && form.contains("rest-here"),
        "{form}"
    );
    let (_, read) = panel.get(&format!("/api/v1/sites/{id}")).await;
    let version = read["version"].to_string();
    let fields = [
        ("csrf", csrf.as_str()),
        ("version", version.as_str()),
        ("primary_domain", "page.example.org"),
        ("owner_id", f.member.as_str()),
        ("image", "registry.example.org/coop/site:1"),
        ("http_port", "8080"),
        ("limits.cpu_millis", "0.5"),
        ("limits.memory_bytes", "256M"),
        ("limits.pids", "256"),
        ("limits.request_body_bytes", "64M"),
        ("volume.quota_bytes", "1G"),
        ("volume.mount_path", "/data"),
        ("node_id", f.node.as_str()),
        ("phase", "pending"),
        ("backup.targets", f.rest_here.as_str()),
        ("backup.every_minutes", "30"),
    ];
    let refused = browser
        .post(format!("{}/sites/{id}/edit", panel.base))
        .header("cookie", &cookie)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains(r#"data-field="backup.targets""#)
            && body.contains("rest-here is at the site&#x27;s provider"),
        "the refusal is next to the field and says why: {body}"
    );
    assert_eq!(
        panel.get(&format!("/api/v1/sites/{id}")).await.1,
        read,
        "unchanged"
    );

    // Two copies at two providers, every 30 minutes: saved.
    let mut good = fields.to_vec();
    good[14] = ("backup.targets", f.vault.as_str());
    good.push(("backup.second_target", f.rest.as_str()));
    let saved = browser
        .post(format!("{}/sites/{id}/edit", panel.base))
        .header("cookie", &cookie)
        .form(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(
        saved.status().as_u16(),
        303,
        "{}",
        saved.text().await.unwrap()
    );
    let (_, read) = panel.get(&format!("/api/v1/sites/{id}")).await;
    assert_eq!(read["backup"]["targets"], json!([f.vault, f.rest]));
    assert_eq!(read["backup"]["every_minutes"], 30);

    // The site's page shows its backups and the restore form.
    let (status, shown) = page(format!("/sites/{id}")).await;
    assert_eq!(status, 200);
    for part in [
        r#"id="backups""#,
        r#"id="back-up-now""#,
        r#"id="drill-now""#,
        r#"id="restore-form""#,
        r#"id="restore-time""#,
        "<svg",
    ] {
        assert!(shown.contains(part), "{part} on the site's page");
    }

    // "Drill now": placed on a node of the other provider; the page shows it running, and
    // refreshes itself until it ends.
    let drilled = browser
        .post(format!("{}/sites/{id}/drill", panel.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(drilled.status().as_u16(), 303);
    let (_, shown) = page(format!("/sites/{id}")).await;
    assert!(
        shown.contains(r#"class="drill" data-state="running""#)
            && shown.contains(r#"http-equiv="refresh""#),
        "{shown}"
    );
    db.drop_db().await;
}
