//! "This node is lost" through the API, on SQLite and PostgreSQL, with agents played by the
//! test: the recovery places the node's sites elsewhere, names those it cannot recover (no
//! copy outside the lost node), fences the node (an empty document, its reports refused),
//! restores each site on its new node from its newest backup (its address following it), and
//! ends saying what each lost.

use alveole_agent::control::panel::Control;
use alveole_tests::TestDb;
use serde_json::{Value, json};

use super::{evacuation_when, fast_panel};
use crate::moves::node_with_agent;
use crate::records::site;

fn report(extra: Value) -> alveole_model::NodeReport {
    let mut body = json!({
        "generation": null, "sites": [], "agent_version": "test",
        "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                      "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
        "endpoints": {"peer": "127.0.0.1:9", "ingress": "127.0.0.1:10"}
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn a_lost_node_is_fenced_and_its_sites_restored_elsewhere_or_named() {
    for db in TestDb::all().await {
        let (panel, node_a, member) = fast_panel(&db, std::time::Duration::from_secs(60)).await;
        let backend = db.backend();
        let (_, there) = panel
            .post("/api/v1/providers", json!({"name": "Coffre"}))
            .await;
        let (_, seeded) = panel.get(&format!("/api/v1/nodes/{node_a}")).await;
        let here = seeded["provider_id"].clone();
        let (vault_node, _) = node_with_agent(&panel, &there["id"], "vault-1", 8000).await;
        // B is at A's provider: the site's addresses, that provider's, can follow it there.
        let (node_b, agent_b) = node_with_agent(&panel, &here, "node-b", 8000).await;
        let (_, target) = panel
            .post(
                "/api/v1/backup-targets",
                json!({"name": "coffre", "node_id": vault_node}),
            )
            .await;
        let mut sites = Vec::new();
        for (domain, backup) in [
            ("garde.example.org", json!({"targets": [target["id"]]})),
            ("sans.example.org", json!({"targets": []})),
        ] {
            let mut body = site(&member, domain);
            body["node_id"] = json!(node_a);
            body["backup"] = backup;
            let (status, created) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 201, "{backend}: {created}");
            sites.push(created["id"].as_str().unwrap().to_owned());
        }
        let (_, pool) = panel
            .post(
                "/api/v1/ip-pools",
                json!({"provider_id": here, "prefix": "203.0.113.0/29"}),
            )
            .await;
        let (status, allocated) = panel
            .post(
                &format!(
                    "/api/v1/ip-pools/{}/allocations",
                    pool["id"].as_str().unwrap()
                ),
                json!({"node_id": node_a, "site_id": sites[0]}),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {allocated}");
        let agent_a = panel.agent_client();
        agent_a.authenticate(&panel.enrol(&node_a).await).unwrap();
        let taken = chrono::Utc::now() - chrono::Duration::minutes(10);
        let snapshot = "ef".repeat(32);
        agent_a
            .report(&report(
                json!({"events": [{"seq": 1, "at": chrono::Utc::now(),
                "kind": "backup_completed", "site_id": sites[0], "detail": "backed up",
                "backup": {"target_id": target["id"], "started_at": taken, "duration_ms": 900,
                           "snapshot_id": snapshot, "files": 2, "bytes_added": 10,
                           "bytes_total": 10}}]}),
            ))
            .await
            .unwrap();

        let (status, recovery) = panel
            .post("/api/v1/recoveries", json!({"node_id": node_a}))
            .await;
        assert_eq!(status, 202, "{backend}: {recovery}");
        let unplaced = recovery["spec"]["unplaced"].as_array().unwrap();
        assert_eq!(unplaced.len(), 1, "{backend}: {recovery}");
        assert_eq!(unplaced[0]["site_id"], sites[1].as_str());
        assert!(
            unplaced[0]["reason"]
                .as_str()
                .unwrap()
                .contains("no backup outside the lost nodes")
        );
        assert_eq!(
            recovery["spec"]["recovery"]["homes"][&sites[0]],
            node_a.as_str(),
            "{backend}: where each site was, for what it lost"
        );
        let job = recovery["id"].as_str().unwrap().to_owned();

        // Fenced: nothing to run, its reports refused.
        let fenced = panel
            .service()
            .desired_state(node_a.parse().unwrap(), None, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(
            fenced.sites.is_empty() && fenced.addresses.is_empty(),
            "{backend}"
        );
        let refused = agent_a.report(&report(json!({}))).await;
        assert!(
            refused.is_err(),
            "{backend}: a fenced node's report is refused"
        );

        // The site is B's now, restored there from its newest snapshot (and stopped until then).
        let restoring =
            evacuation_when(&panel, &job, |e| e["items"][0]["restore_id"].is_string()).await;
        let restore = restoring["items"][0]["restore_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, moved) = panel.get(&format!("/api/v1/sites/{}", sites[0])).await;
        assert_eq!(moved["node_id"], node_b.as_str(), "{backend}: {moved}");
        let doc = panel
            .service()
            .desired_state(node_b.parse().unwrap(), None, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(doc.sites.len(), 1);
        assert_eq!(
            doc.sites[0].dedicated_addresses,
            ["203.0.113.1".parse::<std::net::IpAddr>().unwrap()],
            "{backend}: its address failed over"
        );
        assert_eq!(doc.restores[0].id.to_string(), restore);
        assert!(doc.restores[0].paths.is_empty(), "a whole restore");
        assert_eq!(doc.restores[0].snapshot, None, "its newest snapshot");
        agent_b
            .report(&report(
                json!({"restores": [{"id": restore, "bytes_done": 10,
                "bytes_total": 10, "finished": {"outcome": "restored", "snapshot_id": snapshot}}]}),
            ))
            .await
            .unwrap();
        let ended = evacuation_when(&panel, &job, |e| e["finished_at"].is_string()).await;
        assert_eq!(ended["state"], "incomplete", "{backend}: {ended}");
        assert_eq!(ended["items"][0]["state"], "done");
        let lost = ended["items"][0]["data_loss_seconds"].as_i64().unwrap();
        assert!(
            (600..660).contains(&lost),
            "{backend}: lost {lost} s: {ended}"
        );
        let remaining = ended["remaining"].as_array().unwrap();
        assert_eq!(remaining.len(), 1);
        assert!(
            remaining[0]["reason"]
                .as_str()
                .unwrap()
                .contains("no backup outside the lost nodes"),
            "{ended}"
        );
        for action in [
            "recovery.start",
            "node.fence",
            "site.recover",
            "restore.finish",
            "recovery.finish",
        ] {
            assert_eq!(panel.events(action).await.len(), 1, "{backend}: {action}");
        }
        db.drop_db().await;
    }
}

/// A site whose restore's node goes silent during a recovery is restored on another node:
/// the silent node's restore is given up (`restore.fail`), and the site placed again.
#[tokio::test]
async fn a_recovery_whose_new_node_goes_silent_restores_the_site_elsewhere() {
    for db in TestDb::all().await {
        let (panel, node_a, member) = fast_panel(&db, std::time::Duration::from_secs(2)).await;
        let backend = db.backend();
        let (_, there) = panel
            .post("/api/v1/providers", json!({"name": "Coffre"}))
            .await;
        let (_, seeded) = panel.get(&format!("/api/v1/nodes/{node_a}")).await;
        let here = seeded["provider_id"].clone();
        let (vault_node, vault_agent) =
            node_with_agent(&panel, &there["id"], "vault-1", 8000).await;
        // B has the most room, so the site goes there first; C is where it ends.
        let (node_b, agent_b) = node_with_agent(&panel, &here, "node-b", 16000).await;
        let (node_c, agent_c) = node_with_agent(&panel, &here, "node-c", 8000).await;
        let (_, target) = panel
            .post(
                "/api/v1/backup-targets",
                json!({"name": "coffre", "node_id": vault_node}),
            )
            .await;
        let mut body = site(&member, "relais.example.org");
        body["node_id"] = json!(node_a);
        body["backup"] = json!({"targets": [target["id"]]});
        let (_, created) = panel.post("/api/v1/sites", body).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let agent_a = panel.agent_client();
        agent_a.authenticate(&panel.enrol(&node_a).await).unwrap();
        let snapshot = "ab".repeat(32);
        agent_a
            .report(&report(
                json!({"events": [{"seq": 1, "at": chrono::Utc::now(),
                "kind": "backup_completed", "site_id": id, "detail": "backed up",
                "backup": {"target_id": target["id"], "started_at": chrono::Utc::now(),
                           "duration_ms": 900, "snapshot_id": snapshot, "files": 2,
                           "bytes_added": 10, "bytes_total": 10}}]}),
            ))
            .await
            .unwrap();
        // The vault and C keep reporting; B reports once more, then falls silent.
        let heartbeat = tokio::spawn({
            let (vault_agent, agent_c) = (vault_agent.clone(), agent_c.clone());
            async move {
                for _ in 0..600 {
                    let _ = vault_agent.report(&report(json!({}))).await;
                    let _ = agent_c.report(&report(json!({}))).await;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        });
        agent_b.report(&report(json!({}))).await.unwrap();
        let (status, recovery) = panel
            .post("/api/v1/recoveries", json!({"node_id": node_a}))
            .await;
        assert_eq!(status, 202, "{backend}: {recovery}");
        let job = recovery["id"].as_str().unwrap().to_owned();
        let first =
            evacuation_when(&panel, &job, |e| e["items"][0]["restore_id"].is_string()).await;
        assert_eq!(
            first["items"][0]["to_node"],
            node_b.as_str(),
            "{backend}: {first}"
        );

        // B never restores it: after the panel's wait, and the retry's, C is given the site.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let second = loop {
            let (_, seen) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
            if seen["items"][0]["to_node"] == node_c.as_str()
                && seen["items"][0]["state"] == "moving"
            {
                break seen;
            }
            assert!(std::time::Instant::now() < deadline, "{backend}: {seen}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(second["items"][0]["attempts"], 1, "{backend}: {second}");
        assert!(
            second["items"][0]["error"]
                .as_str()
                .unwrap()
                .contains("its new node stopped reporting"),
            "{second}"
        );
        let restore = second["items"][0]["restore_id"]
            .as_str()
            .unwrap()
            .to_owned();
        agent_c
            .report(&report(
                json!({"restores": [{"id": restore, "bytes_done": 10,
                "bytes_total": 10, "finished": {"outcome": "restored", "snapshot_id": snapshot}}]}),
            ))
            .await
            .unwrap();
        let ended = evacuation_when(&panel, &job, |e| e["finished_at"].is_string()).await;
        assert_eq!(ended["state"], "done", "{backend}: {ended}");
        let (_, recovered) = panel.get(&format!("/api/v1/sites/{id}")).await;
        assert_eq!(recovered["node_id"], node_c.as_str(), "{backend}");
        assert_eq!(panel.events("restore.fail").await.len(), 1, "{backend}");
        heartbeat.abort();
        db.drop_db().await;
    }
}
