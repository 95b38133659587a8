//! Site moves through the API, with agents played by the test: checks, both nodes' documents,
//! cancel, switch, a lost switch undone, and forwarding that ends on its own.

use alveole_agent::control::panel::Control;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use crate::records::site;

/// A node at `provider` with `cpu_millis` and `memory_gib` of room: its id.
pub(crate) async fn create_node(
    panel: &TestPanel,
    provider: &Value,
    name: &str,
    (cpu_millis, memory_gib): (u32, u64),
) -> String {
    let (status, node) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": provider, "name": name, "public_addresses": [],
                   "capacity": {"cpu_millis": cpu_millis, "memory_bytes": memory_gib << 30,
                                "disk_bytes": 500u64 << 30}}),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    node["id"].as_str().unwrap().to_owned()
}

/// Enrols an agent for `node` and has it report that other agents reach it on
/// 127.0.0.1:9 and its ingress on 127.0.0.1:`ingress_port`; the agent.
pub(crate) async fn report_endpoints(
    panel: &TestPanel,
    node: &str,
    ingress_port: u16,
) -> alveole_agent::agent::PanelClient {
    let agent = panel.agent_client();
    agent.authenticate(&panel.enrol(node).await).unwrap();
    let report: alveole_model::NodeReport = serde_json::from_value(json!({
        "generation": null, "sites": [], "agent_version": "test",
        "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                      "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
        "endpoints": {"peer": "127.0.0.1:9", "ingress": format!("127.0.0.1:{ingress_port}")}
    }))
    .unwrap();
    agent.report(&report).await.unwrap();
    agent
}

/// A node whose agent reported where other agents reach it, with `cpu_millis` of room.
pub(crate) async fn node_with_agent(
    panel: &TestPanel,
    provider: &Value,
    name: &str,
    cpu_millis: u32,
) -> (String, alveole_agent::agent::PanelClient) {
    let id = create_node(panel, provider, name, (cpu_millis, 16)).await;
    let agent = report_endpoints(panel, &id, 10).await;
    (id, agent)
}

#[tokio::test]
async fn a_site_move_is_checked_recorded_told_to_both_nodes_and_cancellable() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        let scene = refused_moves_record_nothing(&panel, db.backend()).await;
        let move_id = a_started_move_holds_room_and_both_nodes_hear_of_it(&panel, &scene).await;
        a_cancelled_move_leaves_the_site(&panel, &scene, &move_id).await;
        a_switch_heard_with_a_late_rollback_is_undone(&panel, &scene).await;
        an_address_follows_its_site_once_forwarding_ends(&panel, &scene).await;
        a_forwarding_ends_by_itself(&mut panel, &scene).await;
        db.drop_db().await;
    }
}

/// A site on node A, and node B with room, both with agents the test plays.
struct MoveScene {
    backend: &'static str,
    site: String,
    provider: Value,
    node_a: String,
    node_b: String,
    agent_a: alveole_agent::agent::PanelClient,
    agent_b: alveole_agent::agent::PanelClient,
    /// The site's move route.
    path: String,
}

fn to(node: &str) -> Value {
    json!({"to_node": node})
}

fn move_id_of(started: &Value) -> alveole_model::SiteMoveId {
    started["id"].as_str().unwrap().parse().unwrap()
}

/// Refused, naming why, with nothing recorded: a node no agent reached, one without room,
/// the node the site is on, a node that does not exist.
async fn refused_moves_record_nothing(panel: &TestPanel, backend: &'static str) -> MoveScene {
    let (node_a, member) = panel.seed().await;
    let (_, site) = panel
        .post("/api/v1/sites", site(&member, "moving.example.org"))
        .await;
    let site = site["id"].as_str().unwrap().to_owned();
    let (_, provider) = panel.get(&format!("/api/v1/nodes/{node_a}")).await;
    let provider = provider["provider_id"].clone();
    let path = format!("/api/v1/sites/{site}/move");

    let (status, silent) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": provider, "name": "silent", "public_addresses": [],
                   "capacity": {"cpu_millis": 8000, "memory_bytes": 17179869184u64, "disk_bytes": 536870912000u64}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, refused) = panel.post(&path, to(silent["id"].as_str().unwrap())).await;
    assert_eq!(status, 400, "{backend}: {refused}");
    assert_eq!(refused["errors"][0]["code"], "move.target_unreachable");
    let agent_a = panel.agent_client();
    agent_a.authenticate(&panel.enrol(&node_a).await).unwrap();
    let (tiny, _) = node_with_agent(panel, &provider, "tiny", 1).await;
    let (status, refused) = panel.post(&path, to(&tiny)).await;
    assert_eq!(status, 409, "{backend}: no room: {refused}");
    let (node_b, agent_b) = node_with_agent(panel, &provider, "roomy", 8000).await;
    let (status, refused) = panel.post(&path, to(&node_a)).await;
    assert_eq!(status, 400, "{backend}: {refused}");
    let (status, _) = panel
        .post(&path, to(&uuid::Uuid::now_v7().to_string()))
        .await;
    assert_eq!(status, 404);
    let (_, history) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
    assert_eq!(history, json!([]), "{backend}");
    MoveScene {
        backend,
        site,
        provider,
        node_a,
        node_b,
        agent_a,
        agent_b,
        path,
    }
}

/// Started: one move at a time, it holds its room on the target, both nodes hear of it, and
/// only the source's agent reports on it. Returns the move's id.
async fn a_started_move_holds_room_and_both_nodes_hear_of_it(
    panel: &TestPanel,
    scene: &MoveScene,
) -> String {
    let MoveScene {
        backend,
        site,
        path,
        node_b,
        ..
    } = scene;
    let (status, started) = panel.post(path, to(node_b)).await;
    assert_eq!(status, 202, "{backend}: {started}");
    assert_eq!(started["phase"], "copying");
    let move_id = started["id"].as_str().unwrap().to_owned();
    let (status, again) = panel.post(path, to(node_b)).await;
    assert_eq!(status, 409, "{backend}: {again}");
    // The move holds its room on the target: 256 MiB of its 16 GiB of memory.
    let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
    let mut crowding = self::site(shown["owner_id"].as_str().unwrap(), "crowding.example.org");
    crowding["node_id"] = json!(node_b);
    let left = (16u64 << 30) - (256 << 20);
    crowding["limits"] = json!({"cpu_millis": 500, "memory_bytes": left + 1, "pids": 64});
    let (status, refused) = panel.post("/api/v1/sites", crowding.clone()).await;
    assert_eq!(status, 409, "{backend}: {refused}");
    crowding["limits"]["memory_bytes"] = json!(left);
    let (status, fits) = panel.post("/api/v1/sites", crowding).await;
    assert_eq!(status, 201, "{backend}: {fits}");
    let fits = format!(
        "/api/v1/sites/{}?version={}",
        fits["id"].as_str().unwrap(),
        fits["version"]
    );
    assert_eq!(panel.call(Method::DELETE, &fits, None).await.0, 204);

    let source = scene.agent_a.desired_state().await.unwrap();
    assert_eq!(source.moves_out.len(), 1, "{backend}");
    assert_eq!(source.moves_out[0].target_peer.to_string(), "127.0.0.1:9");
    assert_eq!(
        source.moves_out[0].target_ingress.to_string(),
        "127.0.0.1:10"
    );
    assert!(source.sites.iter().any(|s| s.site_id.to_string() == *site));
    let target = scene.agent_b.desired_state().await.unwrap();
    assert_eq!(target.moves_in.len(), 1, "{backend}");
    assert_eq!(target.moves_in[0].site.site_id.to_string(), *site);
    // Its admission (limits and key) comes with it: its visitors keep their places.
    let admission = source
        .sites
        .iter()
        .find(|s| s.site_id.to_string() == *site)
        .and_then(|s| s.admission.clone());
    assert!(admission.is_some(), "{backend}");
    assert_eq!(target.moves_in[0].site.admission, admission, "{backend}");
    assert!(
        target.sites.is_empty(),
        "not the target's before the switch"
    );
    let refused = scene
        .agent_b
        .move_outcome(move_id.parse().unwrap(), "switch", &Default::default())
        .await;
    assert!(refused.is_err(), "{backend}: the target cannot switch");
    let (_, listed) = panel.get("/api/v1/site-moves").await;
    assert_eq!(listed[0]["id"], json!(move_id));
    move_id
}

/// Cancelled: the site stays, both nodes hear of it, the target may drop its copy.
async fn a_cancelled_move_leaves_the_site(panel: &TestPanel, scene: &MoveScene, move_id: &str) {
    let backend = scene.backend;
    let cancel = format!("/api/v1/site-moves/{move_id}/cancel");
    let (status, cancelled) = panel.post(&cancel, json!({})).await;
    assert_eq!(status, 200, "{backend}: {cancelled}");
    assert_eq!(cancelled["phase"], "cancelled");
    assert_eq!(panel.post(&cancel, json!({})).await.0, 409);
    let (status, _) = panel
        .post(&format!("/api/v1/site-moves/{move_id}/finish"), json!({}))
        .await;
    assert_eq!(status, 409, "only a switched move has a forwarding to end");
    let target = scene.agent_b.desired_state().await.unwrap();
    assert!(target.moves_in.is_empty());
    assert_eq!(target.purge_volumes.len(), 1, "{backend}: its copy goes");
    let source = scene.agent_a.desired_state().await.unwrap();
    assert!(source.moves_out.is_empty());
    let (_, shown) = panel.get(&format!("/api/v1/sites/{}", scene.site)).await;
    assert_eq!(shown["node_id"], json!(scene.node_a));
}

/// Switched: the site is the target's, its source forwards, a repeated switch is answered the
/// same; a rollback the panel hears after switching (its answer was lost) undoes the switch.
async fn a_switch_heard_with_a_late_rollback_is_undone(panel: &TestPanel, scene: &MoveScene) {
    let MoveScene {
        backend,
        site,
        agent_a,
        ..
    } = scene;
    let (_, started) = panel.post(&scene.path, to(&scene.node_b)).await;
    let move_id = move_id_of(&started);
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
    assert_eq!(shown["node_id"], json!(scene.node_b));
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
    let late = alveole_model::MoveOutcome {
        progress: Default::default(),
        reason: Some("the freeze outlived its deadline".into()),
    };
    let failed = agent_a.move_outcome(move_id, "fail", &late).await.unwrap();
    assert_eq!(failed.phase, alveole_model::MovePhase::Failed);
    let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
    assert_eq!(shown["node_id"], json!(scene.node_a), "{backend}");
    let (_, history) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["error"], "the freeze outlived its deadline");
}

/// A site's dedicated address stays on the old node while it forwards, and follows the site
/// when the forwarding ends.
async fn an_address_follows_its_site_once_forwarding_ends(panel: &TestPanel, scene: &MoveScene) {
    let backend = scene.backend;
    let (status, pool) = panel
        .post(
            "/api/v1/ip-pools",
            json!({"provider_id": scene.provider, "prefix": "203.0.113.0/29"}),
        )
        .await;
    assert_eq!(status, 201, "{backend}: {pool}");
    let (status, allocated) = panel
        .post(
            &format!(
                "/api/v1/ip-pools/{}/allocations",
                pool["id"].as_str().unwrap()
            ),
            json!({"node_id": scene.node_a, "site_id": scene.site}),
        )
        .await;
    assert_eq!(status, 201, "{backend}: {allocated}");
    let (_, started) = panel.post(&scene.path, to(&scene.node_b)).await;
    let move_id = move_id_of(&started);
    scene
        .agent_a
        .move_outcome(move_id, "switch", &Default::default())
        .await
        .unwrap();
    let address: std::net::IpAddr = allocated["address"].as_str().unwrap().parse().unwrap();
    let source = scene.agent_a.desired_state().await.unwrap();
    assert!(source.addresses.contains(&address));
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
    assert_eq!(moving[0]["to_node"], json!(scene.node_b));
}

/// A forwarding ends by itself once its period is over (a node's report pokes the task that
/// ends it).
async fn a_forwarding_ends_by_itself(panel: &mut TestPanel, scene: &MoveScene) {
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
    scene.agent_a.report(&report).await.unwrap();
    let (_, started) = panel.post(&scene.path, to(&scene.node_a)).await;
    let back = move_id_of(&started);
    scene
        .agent_b
        .move_outcome(back, "switch", &Default::default())
        .await
        .unwrap();
    scene.agent_a.report(&report).await.unwrap();
    let mut ended = json!(null);
    for _ in 0..100 {
        ended = panel.get(&format!("/api/v1/site-moves/{back}")).await.1;
        if ended["phase"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ended["phase"], "done", "{}: {ended}", scene.backend);
    assert!(ended["finished_at"].is_string());
}
