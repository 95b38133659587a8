//! Overload protection as the panel keeps it, on SQLite and PostgreSQL: a site's settings
//! with their defaults, field errors, and what its node gets (the limits worked out from the
//! CPU limit, the site's key: sealed at rest, the same through edits and key rotations).

use std::time::Duration;

use alveole_model::SiteAdmission;
use alveole_store::AuditContext;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::json;

use crate::records::site;

async fn on_the_node(panel: &TestPanel, node: &str) -> Option<SiteAdmission> {
    let desired = panel
        .service()
        .desired_state(node.parse().unwrap(), None, Duration::ZERO)
        .await
        .unwrap();
    desired.sites[0].admission.clone()
}

#[tokio::test]
async fn a_sites_node_gets_its_admission_limits_and_a_key_that_stays_the_sites() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let mut body = site(&member, "ecole.exemple.org");
        body["limits"] = json!({"cpu_millis": 500, "memory_bytes": 268435456, "pids": 256});
        let (status, created) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["admission"]["enabled"], true);

        // Limits left out follow the CPU limit (half a core); the key is the site's alone.
        let sent = on_the_node(&panel, &node)
            .await
            .expect("protected by default");
        assert_eq!(
            (
                sent.active_visitors,
                sent.concurrent_requests,
                sent.new_visitors_per_minute
            ),
            (500, 32, 300)
        );
        assert_eq!(sent.key.0.len(), 64, "32 random bytes, hex");
        let dump = db.dump().await;
        assert!(!dump.contains(&sent.key.0), "sealed at rest");

        // Every bad setting is named; nothing changes.
        let patch = |version: &serde_json::Value, admission: serde_json::Value| json!({"version": version, "admission": admission});
        let (status, refused) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/sites/{id}"),
                Some(patch(
                    &created["version"],
                    json!({"refresh_seconds": 1, "classes": [{"name": "profs", "share_percent": 60}],
                           "rules": [{"path_prefix": "/prof", "class": "pupils"}]}),
                )),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        let fields: Vec<_> = refused["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            fields,
            ["admission.refresh_seconds", "admission.rules[0].class"]
        );

        // Set by the member: sent as set, with the same key; off: not sent.
        let (status, changed) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/sites/{id}"),
                Some(patch(
                    &created["version"],
                    json!({"active_visitors": 40, "refresh_seconds": 2,
                           "classes": [{"name": "profs", "share_percent": 60}],
                           "rules": [{"network": "192.0.2.0/24", "class": "profs"}]}),
                )),
            )
            .await;
        assert_eq!(status, 200, "{changed}");
        let again = on_the_node(&panel, &node).await.unwrap();
        assert_eq!((again.active_visitors, again.refresh_seconds), (40, 2));
        assert_eq!(
            again.rules[0].network.map(|n| n.to_string()).as_deref(),
            Some("192.0.2.0/24")
        );
        assert_eq!(again.key, sent.key);
        let ctx = AuditContext::new("admin:test", "-");
        panel.service().rotate_secrets_key(&ctx).await.unwrap();
        assert_eq!(
            on_the_node(&panel, &node).await.unwrap().key,
            sent.key,
            "a rotation reseals the key, visitors keep their passes"
        );
        let (status, off) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/sites/{id}"),
                Some(patch(&changed["version"], json!({"enabled": false}))),
            )
            .await;
        assert_eq!(status, 200, "{off}");
        assert_eq!(on_the_node(&panel, &node).await, None);
        assert!(!off.to_string().contains(&sent.key.0));
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_sites_traffic_and_waiting_room_are_plotted_on_its_page() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node, member) = panel.seed().await;
    let (_, created) = panel
        .post("/api/v1/sites", site(&member, "ecole.exemple.org"))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ctx = AuditContext::new(format!("node:{node}"), "-");
    let report = |requests: u64, waiting: u64| -> alveole_model::NodeReport {
        serde_json::from_value(json!({
            "generation": 1, "agent_version": "test",
            "sites": [{"site_id": id, "state": "running",
                       "traffic": {"requests": requests, "waiting": waiting, "active": 200}}],
            "resources": {"cpus": 2, "load_1m": 0.5, "memory_total_bytes": 1,
                          "memory_available_bytes": 1, "disk_total_bytes": 1,
                          "disk_available_bytes": 1}
        }))
        .unwrap()
    };
    let node_id = node.parse().unwrap();
    panel
        .service()
        .report(&ctx, node_id, &report(1_000, 0))
        .await
        .unwrap();
    panel
        .service()
        .report(&ctx, node_id, &report(61_000, 340))
        .await
        .unwrap();
    let site_id = id.parse().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let waiting = panel
        .store
        .points(
            &alveole_panel::service::traffic::waiting_series(site_id).unwrap(),
            since,
        )
        .await
        .unwrap();
    let most = waiting.iter().map(|(_, p)| p.max).fold(0.0, f64::max);
    assert_eq!(most, 340.0, "{waiting:?}");
    let requests = panel
        .store
        .points(
            &alveole_panel::service::traffic::requests_series(site_id).unwrap(),
            since,
        )
        .await
        .unwrap();
    let counted: u64 = requests.iter().map(|(_, p)| p.count).sum();
    assert_eq!(counted, 1, "a rate needs two readings: {requests:?}");
    assert!(requests[0].1.max > 0.0);
    let page = panel.page(&format!("/sites/{id}")).await;
    assert!(
        page.contains("id=\"traffic\"") && page.matches("<svg").count() >= 2,
        "{page}"
    );
    db.drop_db().await;
}
