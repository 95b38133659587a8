//! What an evacuation ends with: a failed site tried again (after 30 s, 2 min, 8 min) on
//! another node, a site with no place still listed, a site that is moving waited for, and a
//! verdict that names what is left.

use alveole_agent::control::panel::Control;
use alveole_model::{Clock, MoveOutcome, SiteMoveId};
use alveole_tests::{TestDb, TestPanel};
use serde_json::{Value, json};

use super::{evacuation_when, fast_panel};
use crate::moves::{create_node, report_endpoints};
use crate::records::site;

/// The item of `site` in `evacuation`.
fn item_of<'a>(evacuation: &'a Value, site: &str) -> &'a Value {
    evacuation["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["site_id"] == site)
        .unwrap_or(&Value::Null)
}

async fn create_site(
    panel: &TestPanel,
    member: &str,
    node: &str,
    name: &str,
    memory_gib: u64,
) -> String {
    let mut body = site(member, name);
    body["node_id"] = json!(node);
    body["limits"] = json!({"cpu_millis": 500, "memory_bytes": memory_gib << 30, "pids": 64});
    let (status, created) = panel.post("/api/v1/sites", body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// A node at `provider` with `cpu_millis` and `memory_gib` of room, whose agent reports its
/// ingress on 127.0.0.1:`ingress_port`; its id and its agent.
async fn target(
    panel: &TestPanel,
    provider: &Value,
    name: &str,
    (cpu_millis, memory_gib): (u32, u64),
    ingress_port: u16,
) -> (String, alveole_agent::agent::PanelClient) {
    let id = create_node(panel, provider, name, (cpu_millis, memory_gib)).await;
    let agent = report_endpoints(panel, &id, ingress_port).await;
    (id, agent)
}

fn failure(reason: &str) -> MoveOutcome {
    MoveOutcome {
        progress: Default::default(),
        reason: Some(reason.into()),
    }
}

#[tokio::test]
async fn an_evacuation_that_leaves_sites_behind_ends_incomplete_naming_each_and_why() {
    for db in TestDb::all().await {
        // The targets stay heard from while the test moves the clock by minutes.
        let (panel, old, member) = fast_panel(&db, std::time::Duration::from_secs(3600)).await;
        let backend = db.backend();
        let old_agent = panel.agent_client();
        old_agent.authenticate(&panel.enrol(&old).await).unwrap();
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let (_, staying) = panel
            .post("/api/v1/providers", json!({"name": "Staying"}))
            .await;
        let (first, _) = target(&panel, &staying["id"], "t1", (8000, 4), 11).await;
        let (second, _) = target(&panel, &staying["id"], "t2", (8000, 4), 12).await;
        // Too big for either target (4 GiB of memory each): no place.
        let stays = create_site(&panel, &member, &old, "stays.example.org", 12).await;
        let retried = create_site(&panel, &member, &old, "retried.example.org", 1).await;
        let (status, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 1}),
            )
            .await;
        assert_eq!(status, 202, "{backend}: {started}");
        let job = started["id"].as_str().unwrap().to_owned();
        // Impossible as a whole (one site has no place), it still moves what it can.
        assert!(
            started["spec"]["statement"]
                .as_str()
                .unwrap()
                .starts_with("Impossible as things stand"),
            "{started}"
        );
        assert_eq!(started["items"].as_array().unwrap().len(), 1, "{started}");

        // Each try fails on its target; the next goes to the other node, after 30 s, 2 min,
        // 8 min (the test moves the panel's clock).
        let mut targets = Vec::new();
        for (attempt, wait) in [(0, 30), (1, 120), (2, 480), (3, 0)] {
            let moving = evacuation_when(&panel, &job, |e| {
                item_of(e, &retried)["state"] == "moving"
                    && item_of(e, &retried)["move_id"].is_string()
            })
            .await;
            let item = item_of(&moving, &retried);
            assert_eq!(item["attempts"], attempt, "{backend}: {moving}");
            targets.push(item["to_node"].as_str().unwrap().to_owned());
            let move_id: SiteMoveId = item["move_id"].as_str().unwrap().parse().unwrap();
            old_agent
                .move_outcome(move_id, "fail", &failure("the target is away"))
                .await
                .unwrap();
            if wait == 0 {
                break;
            }
            let waiting = evacuation_when(&panel, &job, |e| {
                item_of(e, &retried)["state"] == "pending"
                    && item_of(e, &retried)["retry_at"].is_string()
            })
            .await;
            let item = item_of(&waiting, &retried);
            assert_eq!(item["attempts"], attempt + 1, "{backend}: {waiting}");
            assert!(
                item["error"]
                    .as_str()
                    .unwrap()
                    .contains("the target is away")
            );
            let retry_at: chrono::DateTime<chrono::Utc> =
                item["retry_at"].as_str().unwrap().parse().unwrap();
            let after = retry_at - panel.clock.now();
            assert!(
                after > chrono::Duration::seconds(wait - 5)
                    && after <= chrono::Duration::seconds(wait),
                "{backend}: try {attempt} again after {wait} s, not {after}"
            );
            panel.clock.advance(chrono::Duration::seconds(wait + 1));
        }
        // A failed target is not tried twice in a row.
        assert!(
            targets.windows(2).all(|pair| pair[0] != pair[1]),
            "{backend}: {targets:?}"
        );
        assert!(targets.contains(&first) && targets.contains(&second));

        let ended = evacuation_when(&panel, &job, |e| e["finished_at"].is_string()).await;
        assert_eq!(ended["state"], "incomplete", "{backend}: {ended}");
        let remaining = ended["remaining"].as_array().unwrap();
        assert_eq!(remaining.len(), 2, "{backend}: {ended}");
        let why = |site: &str| {
            remaining
                .iter()
                .find(|r| r["site_id"] == site)
                .and_then(|r| r["reason"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            why(&stays).starts_with("no place for it"),
            "{}",
            why(&stays)
        );
        assert!(
            why(&retried).contains("after 4 tries") && why(&retried).contains("the target is away"),
            "{}",
            why(&retried)
        );
        // The audit record says the same as the API.
        let finish = panel
            .store
            .audit_events(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.action == "evacuation.finish")
            .expect("the evacuation's end is recorded");
        let after = finish.after.unwrap();
        assert_eq!(after["state"], "incomplete");
        assert_eq!(after["remaining"], ended["remaining"]);
        db.drop_db().await;
    }
}

/// The ingress a node's desired state forwards `site`'s requests to, if it forwards them.
async fn forwarded_to(agent: &alveole_agent::agent::PanelClient, site: &str) -> Option<String> {
    let desired = agent.desired_state().await.unwrap();
    desired
        .moves_out
        .iter()
        .find(|m| m.site_id.to_string() == site && m.phase == alveole_model::MovePhase::Forwarding)
        .map(|m| m.target_ingress.to_string())
}

#[tokio::test]
async fn a_site_moving_is_waited_for_and_one_that_just_moved_moves_on_while_it_forwards() {
    for db in TestDb::all().await {
        let (panel, old, member) = fast_panel(&db, std::time::Duration::from_secs(60)).await;
        let backend = db.backend();
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let (_, elsewhere) = panel
            .post("/api/v1/providers", json!({"name": "Elsewhere"}))
            .await;
        let (earlier, earlier_agent) =
            target(&panel, &elsewhere["id"], "earlier", (2000, 4), 11).await;
        let old_agent = report_endpoints(&panel, &old, 13).await;
        // Roomier than the first node: sites go there.
        let (next, _) = target(&panel, &elsewhere["id"], "next", (8000, 16), 12).await;
        // One site came to the node being emptied a minute ago: its old node still forwards.
        let arrived = create_site(&panel, &member, &earlier, "just-moved.example.org", 1).await;
        let (status, moved) = panel
            .post(
                &format!("/api/v1/sites/{arrived}/move"),
                json!({"to_node": old}),
            )
            .await;
        assert_eq!(status, 202, "{moved}");
        let first: SiteMoveId = moved["id"].as_str().unwrap().parse().unwrap();
        earlier_agent
            .move_outcome(first, "switch", &Default::default())
            .await
            .unwrap();
        // Another is being moved by hand as the evacuation starts.
        let busy = create_site(&panel, &member, &old, "busy.example.org", 1).await;
        let (status, by_hand) = panel
            .post(
                &format!("/api/v1/sites/{busy}/move"),
                json!({"to_node": earlier}),
            )
            .await;
        assert_eq!(status, 202, "{by_hand}");
        let by_hand: SiteMoveId = by_hand["id"].as_str().unwrap().parse().unwrap();

        let (status, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 2}),
            )
            .await;
        assert_eq!(status, 202, "{backend}: {started}");
        let job = started["id"].as_str().unwrap().to_owned();
        // The site that just moved moves on at once, while its first move still forwards.
        let moving = evacuation_when(&panel, &job, |e| {
            item_of(e, &arrived)["move_id"].is_string()
        })
        .await;
        assert_eq!(
            item_of(&moving, &arrived)["to_node"],
            next,
            "{backend}: {moving}"
        );
        let second: SiteMoveId = item_of(&moving, &arrived)["move_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The one moving by hand is waited for, not failed: several steps of the job pass.
        for _ in 0..5 {
            panel.service().poke(alveole_panel::background::Task::Jobs);
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
            let item = item_of(&evacuation, &busy);
            assert_eq!(item["state"], "pending", "{backend}: {evacuation}");
            assert_eq!(item["attempts"], 0, "{backend}: {evacuation}");
        }
        // Its move by hand fails: the evacuation moves it.
        old_agent
            .move_outcome(
                by_hand,
                "fail",
                &failure("the admin's move did not make it"),
            )
            .await
            .unwrap();
        let moving =
            evacuation_when(&panel, &job, |e| item_of(e, &busy)["move_id"].is_string()).await;
        let third: SiteMoveId = item_of(&moving, &busy)["move_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The first old node hears of the switch (its document's generation moves on).
        let before = earlier_agent.desired_state().await.unwrap().generation;
        old_agent
            .move_outcome(second, "switch", &Default::default())
            .await
            .unwrap();
        assert!(earlier_agent.desired_state().await.unwrap().generation > before);
        old_agent
            .move_outcome(third, "switch", &Default::default())
            .await
            .unwrap();
        let ended = evacuation_when(&panel, &job, |e| e["finished_at"].is_string()).await;
        assert_eq!(ended["state"], "done", "{backend}: {ended}");
        assert_eq!(ended["remaining"], json!([]));
        // No client is stranded: the first old node now forwards straight to the new one.
        for agent in [&earlier_agent, &old_agent] {
            assert_eq!(
                forwarded_to(agent, &arrived).await.as_deref(),
                Some("127.0.0.1:12"),
                "{backend}"
            );
        }
        db.drop_db().await;
    }
}
