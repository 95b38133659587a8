//! `alveole serve` runs an agent for the machine it runs on.

use super::*;

#[tokio::test]
async fn docker_serve_runs_a_local_agent_for_this_machine() {
    use alveole::local::{LOCAL_NODE, LocalAgentConfig, start};
    use alveole_tests::{TestDb, TestPanel};
    use serde_json::json;

    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let state_dir =
        std::env::temp_dir().join(format!("alveole-local-{}", uuid::Uuid::now_v7().simple()));
    let config = LocalAgentConfig {
        state_dir: state_dir.clone(),
        ingress_listen: "127.0.0.1:0".parse().unwrap(),
        peer_listen: Some("127.0.0.1:0".parse().unwrap()),
        pass: std::time::Duration::from_millis(200),
    };
    let local = start(
        panel.service(),
        &panel.agent_base,
        &panel.tls.ca.ca_pem,
        config,
    )
    .await
    .unwrap()
    .expect("Docker is here");
    let _cleanup = NodeCleanup::new([local.node_id]).with_dir(&state_dir);

    // The panel now knows this machine as the node `local`, and places sites there.
    let (_, nodes) = panel.get("/api/v1/nodes").await;
    assert_eq!(nodes["items"][0]["name"], LOCAL_NODE);
    let (_, member) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": "Local", "email": "local@example.org"}),
        )
        .await;
    let site = json!({
        "owner_id": member["id"], "primary_domain": "hello.localhost", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "local"}]
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["node_id"], local.node_id.to_string());

    // The agent picks it up on one of its next passes (bounded wait on its outcome).
    let mut answer = (0, String::new());
    for _ in 0..100 {
        answer = through_ingress(local.ingress_address, "hello.localhost").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, "hello from local\n".to_owned()));

    // It listens for other agents by default, and said so: sites may move to it.
    let mut receives = Err(String::new());
    for _ in 0..100 {
        receives = panel
            .service()
            .check_move_target(local.node_id)
            .await
            .map_err(|e| e.problem().detail);
        if receives.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(receives, Ok(()));

    drop(local);
    db.drop_db().await;
}
