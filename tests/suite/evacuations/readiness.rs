//! Exit readiness: for each provider, whether leaving it fits in the notice period now, and
//! what stands in the way; only nodes that can take part receive sites; a node joined as
//! told takes part in moves.

use alveole_agent::control::panel::Control;
use alveole_tests::{TestDb, TestPanel};
use serde_json::{Value, json};

use crate::moves::{create_node, node_with_agent};
use crate::records::site;

async fn readiness_of(panel: &TestPanel, provider: &str) -> Value {
    let (status, readiness) = panel.get("/api/v1/exit-readiness").await;
    assert_eq!(status, 200, "{readiness}");
    assert_eq!(readiness["notice_seconds"], 60 * 3600);
    readiness["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == provider)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn leaving_a_provider_is_ready_only_once_nodes_elsewhere_can_receive_its_sites() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let (old, member) = panel.seed().await;
        let mut body = site(&member, "stays.example.org");
        body["node_id"] = json!(old);
        assert_eq!(panel.post("/api/v1/sites", body).await.0, 201);

        // Nowhere to go: not ready, and why.
        let leaving = readiness_of(&panel, "Hébergeur").await;
        assert_eq!(leaving["ready"], false, "{backend}: {leaving}");
        assert_eq!(leaving["sites"], 1);
        let blockers = leaving["blockers"].to_string();
        assert!(
            blockers.contains("add room at another provider"),
            "{backend}: {leaving}"
        );

        // Nodes elsewhere that cannot receive: still not ready, each named with why.
        let (_, elsewhere) = panel
            .post("/api/v1/providers", json!({"name": "Elsewhere"}))
            .await;
        create_node(&panel, &elsewhere["id"], "silent", (8000, 16)).await;
        let deaf = create_node(&panel, &elsewhere["id"], "deaf", (8000, 16)).await;
        let deaf_agent = panel.agent_client();
        deaf_agent.authenticate(&panel.enrol(&deaf).await).unwrap();
        let report: alveole_model::NodeReport = serde_json::from_value(json!({
            "generation": null, "sites": [], "agent_version": "test",
            "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                          "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1}
        }))
        .unwrap();
        deaf_agent.report(&report).await.unwrap();
        let leaving = readiness_of(&panel, "Hébergeur").await;
        assert_eq!(leaving["ready"], false, "{backend}: {leaving}");
        let blockers = leaving["blockers"].to_string();
        assert!(
            blockers.contains("silent (its agent has never reported)")
                && blockers.contains("deaf (its agent has not said where other agents reach it"),
            "{backend}: {leaving}"
        );
        // The plan says the same, and places nothing on them.
        let (_, plan) = panel
            .get(&format!("/api/v1/evacuation-plan?node_id={old}"))
            .await;
        assert_eq!(plan["placements"], json!([]), "{backend}: {plan}");
        assert_eq!(plan["excluded"].as_array().unwrap().len(), 2, "{plan}");
        assert_eq!(plan["verdict"], "impossible", "{plan}");

        // One node that can: ready, within the notice.
        let (ready, _) = node_with_agent(&panel, &elsewhere["id"], "ready", 8000).await;
        let leaving = readiness_of(&panel, "Hébergeur").await;
        assert_eq!(leaving["ready"], true, "{backend}: {leaving}");
        assert_eq!(leaving["blockers"], json!([]));
        assert!(
            leaving["estimated_seconds"].as_u64().unwrap() < 60,
            "{leaving}"
        );
        let (_, plan) = panel
            .get(&format!("/api/v1/evacuation-plan?node_id={old}"))
            .await;
        assert_eq!(plan["placements"][0]["to_node"], ready, "{plan}");
        // A provider with nodes and no site is ready to be left too.
        assert_eq!(readiness_of(&panel, "Elsewhere").await["ready"], true);

        // The same, for alerting.
        let metrics = reqwest::get(format!("{}/metrics", panel.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("alveole_provider_exit_ready{provider=\"Hébergeur\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("alveole_exit_notice_seconds 216000"),
            "{metrics}"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_join_command_has_everything_a_node_needs_to_take_part_in_moves() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    // The seeded node's first public address is 192.0.2.10.
    let (node, _) = panel.seed().await;
    let (status, join) = panel
        .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201, "{join}");
    let command = join["command"].as_str().unwrap();
    assert!(
        command.contains("--peer-listen 0.0.0.0:8444")
            && command.contains("--peer-advertise 192.0.2.10:8444")
            && command.contains("--ingress-advertise 192.0.2.10:80"),
        "{command}"
    );
    db.drop_db().await;
}
