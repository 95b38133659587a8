//! Drills and what they prove, through the API on SQLite and PostgreSQL, with agents played
//! by the test: a drill placed on a node of another provider (and granted the copy by the
//! vault meanwhile), its progress and end as nodes report them, the vault's checks proving
//! or breaking snapshots, the data-loss window and restore time they set, and the alerts
//! (window, drill, damage) raised and cleared, each audited.

use std::time::Duration;

use alveole_agent::control::panel::Control;
use alveole_tests::{TestDb, TestPanel};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::moves::node_with_agent;
use crate::records::site;

async fn document(panel: &TestPanel, node: &str) -> alveole_model::DesiredState {
    panel
        .service()
        .desired_state(node.parse().unwrap(), None, Duration::ZERO)
        .await
        .unwrap()
}

/// A report of an agent the test plays: it still says where other agents reach it.
async fn report(agent: &alveole_agent::agent::PanelClient, extra: Value) {
    let mut body = json!({
        "generation": null, "sites": [], "agent_version": "test",
        "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                      "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
        "endpoints": {"peer": "127.0.0.1:9", "ingress": "127.0.0.1:10"}
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let report: alveole_model::NodeReport = serde_json::from_value(body).unwrap();
    agent.report(&report).await.unwrap();
}

async fn backups(panel: &TestPanel, site: &str) -> Value {
    let (status, backups) = panel.get(&format!("/api/v1/sites/{site}/backups")).await;
    assert_eq!(status, 200, "{backups}");
    backups
}

fn alert_kinds(backups: &Value) -> Vec<String> {
    backups["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn at(seconds_ago: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::seconds(seconds_ago)
}

#[tokio::test]
async fn drills_and_checks_set_the_window_and_restore_time_and_raise_alerts() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let (node, member) = panel.seed().await;
        let (_, there) = panel
            .post("/api/v1/providers", json!({"name": "Ailleurs"}))
            .await;
        let (vault_node, vault_agent) =
            node_with_agent(&panel, &there["id"], "vault-1", 8000).await;
        let (status, target) = panel
            .post(
                "/api/v1/backup-targets",
                json!({"name": "coffre", "node_id": vault_node}),
            )
            .await;
        assert_eq!(status, 201, "{target}");
        let target = target["id"].as_str().unwrap().to_owned();
        let mut body = site(&member, "exercice.example.org");
        body["node_id"] = json!(node);
        body["backup"] = json!({"targets": [target], "alert_window_hours": 1,
                                "drill": {"health_path": "/health"}});
        let (status, created) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201, "{backend}: {created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let site_agent = panel.agent_client();
        site_agent.authenticate(&panel.enrol(&node).await).unwrap();

        // A policy's drill fields are checked like the rest.
        let (_, current) = panel.get(&format!("/api/v1/sites/{id}")).await;
        let (status, refused) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/sites/{id}"),
                Some(
                    json!({"version": current["version"], "backup": {"targets": [target],
                    "every_minutes": 120, "alert_window_hours": 1,
                    "drill": {"every_days": 400, "health_path": "no slash"}}}),
                ),
            )
            .await;
        assert_eq!(status, 400, "{backend}: {refused}");
        let fields: Vec<&str> = refused["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "backup.drill.every_days",
                "backup.drill.health_path",
                "backup.alert_window_hours"
            ],
            "{backend}"
        );

        // A backup three hours old, then a drill: on the vault's node (the only node of
        // another provider), which the vault lets read the copy meanwhile.
        let snapshot = "ab".repeat(32);
        report(
            &site_agent,
            json!({"events": [{"seq": 1, "at": at(0), "kind": "backup_completed", "site_id": id,
                "detail": "backed up", "backup": {"target_id": target, "started_at": at(3 * 3600),
                "duration_ms": 900, "snapshot_id": snapshot, "files": 2, "bytes_added": 10,
                "bytes_total": 10}}]}),
        )
        .await;
        let drills = format!("/api/v1/sites/{id}/drills");
        let (status, drill) = panel.post(&drills, json!({})).await;
        assert_eq!(status, 202, "{backend}: {drill}");
        assert_eq!(drill["node_id"], vault_node.as_str(), "{backend}: {drill}");
        assert_eq!(drill["state"], "running");
        let (status, again) = panel.post(&drills, json!({})).await;
        assert_eq!(status, 409, "{backend}: one drill at a time: {again}");
        let drill_id = drill["id"].as_str().unwrap().to_owned();
        let doc = document(&panel, &vault_node).await;
        let order = &doc.drills[0];
        assert_eq!(order.id.to_string(), drill_id);
        assert_eq!(order.health_path, "/health");
        assert_eq!(
            order.scratch.site_id.to_string(),
            drill_id,
            "its own container"
        );
        assert!(
            order.scratch.dedicated_addresses.is_empty() && order.scratch.exposed_ports.is_empty()
        );
        assert_eq!(order.password.0.len(), 64, "with the repository's key");
        let vault = doc.vault.as_ref().unwrap();
        assert!(
            vault.repositories[0]
                .writers
                .contains(&vault_node.parse().unwrap()),
            "{backend}: the drilling node reads the copy meanwhile"
        );
        assert!(document(&panel, &node).await.drills.is_empty());

        // Its progress, then its end.
        let drill_path = format!("/api/v1/drills/{drill_id}");
        report(
            &vault_agent,
            json!({"drills": [{"id": drill_id, "phase": "verifying", "bytes_done": 10, "bytes_total": 10}]}),
        )
        .await;
        let (_, seen) = panel.get(&drill_path).await;
        assert_eq!(seen["phase"], "verifying", "{backend}: {seen}");
        assert!(backups(&panel, &id).await["window_seconds"].is_null());
        let taken = at(3 * 3600);
        report(
            &vault_agent,
            json!({"drills": [{"id": drill_id, "phase": "probing", "bytes_done": 10, "bytes_total": 10,
                "finished": {"outcome": "passed", "snapshot_id": snapshot, "snapshot_time": taken,
                             "files_verified": 2, "restore_ms": 2500, "answer_status": 200}}]}),
        )
        .await;
        let (_, seen) = panel.get(&drill_path).await;
        assert_eq!(seen["state"], "passed", "{backend}: {seen}");
        assert_eq!(seen["restore_ms"], 2500);
        assert!(
            document(&panel, &vault_node).await.drills.is_empty(),
            "{backend}"
        );
        let shown = backups(&panel, &id).await;
        assert_eq!(shown["restore_seconds"], 2.5, "{backend}: {shown}");
        let window = shown["window_seconds"].as_i64().unwrap();
        assert!(
            (3 * 3600 - 5..3 * 3600 + 60).contains(&window),
            "{backend}: {shown}"
        );
        assert_eq!(panel.events("drill.pass").await.len(), 1);
        let series = panel
            .store
            .points(
                &alveole_model::series::SeriesName::parse(&format!("site.{id}.restore_seconds"))
                    .unwrap(),
                at(600),
            )
            .await
            .unwrap();
        assert_eq!(
            series.len(),
            1,
            "{backend}: the restore time, recorded once"
        );

        // Three hours is above the policy's hour: the window alert, audited, with why.
        panel.service().watch_windows().await.unwrap();
        let shown = backups(&panel, &id).await;
        assert_eq!(alert_kinds(&shown), ["window"], "{backend}: {shown}");
        assert!(
            shown["alerts"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("above the policy's 1 h"),
            "{shown}"
        );

        // The vault finds the snapshot broken: the damage alert; neither its check nor the
        // drill of that snapshot proves anything now.
        report(
            &vault_agent,
            json!({"events": [{"seq": 1, "at": at(0), "kind": "vault_damaged", "site_id": id,
                "detail": format!("pack 1234abcd damaged; breaks snapshots {snapshot}"),
                "damage": {"packs": ["1234abcd".repeat(8)], "snapshots": [snapshot]}}]}),
        )
        .await;
        let shown = backups(&panel, &id).await;
        assert_eq!(
            alert_kinds(&shown),
            ["damage", "window"],
            "{backend}: {shown}"
        );
        assert!(shown["window_seconds"].is_null(), "{backend}: {shown}");

        // Whole again (repaired), and a newer backup that the next check proves.
        report(
            &site_agent,
            json!({"events": [{"seq": 2, "at": at(0), "kind": "backup_completed", "site_id": id,
                "detail": "backed up", "backup": {"target_id": target, "started_at": at(60),
                "duration_ms": 900, "snapshot_id": "cd".repeat(32), "files": 2, "bytes_added": 10,
                "bytes_total": 10}}]}),
        )
        .await;
        report(
            &vault_agent,
            json!({"events": [{"seq": 2, "at": at(0), "kind": "vault_checked", "site_id": id,
                "detail": "packs 3/30 reread: intact"}]}),
        )
        .await;
        panel.service().watch_windows().await.unwrap();
        let shown = backups(&panel, &id).await;
        assert!(alert_kinds(&shown).is_empty(), "{backend}: {shown}");
        assert!(
            shown["window_seconds"].as_i64().unwrap() < 600,
            "{backend}: {shown}"
        );
        assert_eq!(panel.events("backup.alert_cleared").await.len(), 2);

        // A drill that fails alerts until one passes.
        let (_, drill) = panel.post(&drills, json!({})).await;
        let failing = drill["id"].as_str().unwrap().to_owned();
        report(
            &vault_agent,
            json!({"drills": [{"id": failing, "phase": "probing", "bytes_done": 0, "bytes_total": 0,
                "finished": {"outcome": "failed", "error": "/health answered 500"}}]}),
        )
        .await;
        let shown = backups(&panel, &id).await;
        assert_eq!(alert_kinds(&shown), ["drill"], "{backend}: {shown}");
        assert!(
            shown["alerts"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("/health answered 500")
        );
        assert_eq!(shown["drills"][0]["state"], "failed");
        assert_eq!(panel.events("drill.fail").await.len(), 1);
        // The dashboard shows the co-op's worst window and slowest restore, and who is
        // alerted.
        let page = panel.page("/").await;
        assert!(page.contains("id=\"worst-window\""), "{backend}: {page}");
        assert!(page.contains(&format!("/sites/{id}")), "{backend}");
        db.drop_db().await;
    }
}

/// A drill whose node goes silent is ended as failed (with why, alerted), so that the site's
/// next drill can be scheduled.
#[tokio::test]
async fn a_drill_whose_node_goes_silent_fails_and_says_so() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        panel
            .configure(|config| config.node_unreachable_after = Duration::from_secs(1))
            .await;
        let backend = db.backend();
        let (node, member) = panel.seed().await;
        let (_, there) = panel
            .post("/api/v1/providers", json!({"name": "Ailleurs"}))
            .await;
        let (vault_node, vault_agent) =
            node_with_agent(&panel, &there["id"], "vault-1", 8000).await;
        let (_, target) = panel
            .post(
                "/api/v1/backup-targets",
                json!({"name": "coffre", "node_id": vault_node}),
            )
            .await;
        let mut body = site(&member, "muet.example.org");
        body["node_id"] = json!(node);
        body["backup"] = json!({"targets": [target["id"]]});
        let (_, created) = panel.post("/api/v1/sites", body).await;
        let id = created["id"].as_str().unwrap().to_owned();
        // Heard from just now: the drill goes there; then the node says nothing more.
        report(&vault_agent, json!({})).await;
        let (status, drill) = panel
            .post(&format!("/api/v1/sites/{id}/drills"), json!({}))
            .await;
        assert_eq!(status, 202, "{backend}: {drill}");
        assert_eq!(drill["state"], "running", "{backend}: {drill}");
        let path = format!("/api/v1/drills/{}", drill["id"].as_str().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ended = loop {
            panel.service().expire_drills().await.unwrap();
            let (_, seen) = panel.get(&path).await;
            if seen["state"] != "running" {
                break seen;
            }
            assert!(std::time::Instant::now() < deadline, "{backend}: {seen}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(ended["state"], "failed", "{backend}: {ended}");
        assert!(
            ended["error"]
                .as_str()
                .unwrap()
                .contains("its node stopped reporting"),
            "{backend}: {ended}"
        );
        let shown = backups(&panel, &id).await;
        assert_eq!(alert_kinds(&shown), ["drill"], "{backend}: {shown}");
        assert!(
            document(&panel, &vault_node).await.drills.is_empty(),
            "{backend}: the node is no longer asked"
        );
        db.drop_db().await;
    }
}

/// Drills due together are spread: a node is given two at a time by the schedule, the others
/// wait (not failed) until it has room in its queue.
#[tokio::test]
async fn drills_due_together_wait_for_room_in_a_nodes_queue() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let (node, member) = panel.seed().await;
        let (_, there) = panel
            .post("/api/v1/providers", json!({"name": "Ailleurs"}))
            .await;
        let (vault_node, vault_agent) =
            node_with_agent(&panel, &there["id"], "vault-1", 64000).await;
        let (_, target) = panel
            .post(
                "/api/v1/backup-targets",
                json!({"name": "coffre", "node_id": vault_node}),
            )
            .await;
        let site_agent = panel.agent_client();
        site_agent.authenticate(&panel.enrol(&node).await).unwrap();
        let mut sites = Vec::new();
        for i in 0..3 {
            let mut body = site(&member, &format!("file-{i}.example.org"));
            body["node_id"] = json!(node);
            body["backup"] = json!({"targets": [target["id"]]});
            let (status, created) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 201, "{backend}: {created}");
            let id = created["id"].as_str().unwrap().to_owned();
            report(
                &site_agent,
                json!({"events": [{"seq": i + 1, "at": at(0), "kind": "backup_completed",
                    "site_id": id, "detail": "backed up", "backup": {"target_id": target["id"],
                    "started_at": at(60), "duration_ms": 900, "snapshot_id": format!("{i:064}"),
                    "files": 1, "bytes_added": 1, "bytes_total": 1}}]}),
            )
            .await;
            sites.push(id);
        }
        let drills_of = async |site: &str| {
            let (_, drills) = panel.get(&format!("/api/v1/sites/{site}/drills")).await;
            drills.as_array().unwrap().clone()
        };
        assert_eq!(
            panel.service().start_due_drills().await.unwrap(),
            2,
            "{backend}"
        );
        assert!(
            drills_of(&sites[2]).await.is_empty(),
            "{backend}: the third waits"
        );
        assert_eq!(
            panel.service().start_due_drills().await.unwrap(),
            0,
            "{backend}"
        );
        // One ends: the third is given the node.
        let first = drills_of(&sites[0]).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        report(
            &vault_agent,
            json!({"drills": [{"id": first, "phase": "probing", "bytes_done": 1, "bytes_total": 1,
                "finished": {"outcome": "passed", "snapshot_id": format!("{:064}", 0),
                             "snapshot_time": at(60), "files_verified": 1, "restore_ms": 900,
                             "answer_status": 200}}]}),
        )
        .await;
        assert_eq!(
            panel.service().start_due_drills().await.unwrap(),
            1,
            "{backend}"
        );
        let third = drills_of(&sites[2]).await;
        assert_eq!(third[0]["state"], "running", "{backend}: {third:?}");
        assert!(
            panel.events("drill.fail").await.is_empty(),
            "{backend}: nobody failed"
        );
        db.drop_db().await;
    }
}
