//! Evacuations: the plan, and running it as a durable job (shared by two processes, resumed
//! after a restart, paused and cancelled); what it ends with (`outcome`), what moves cost
//! (`costs`), and how ready the co-op is to leave each provider (`readiness`).

mod costs;
mod outcome;
mod readiness;
mod recovery;

use std::collections::BTreeSet;

use alveole_agent::control::panel::Control;
use alveole_tests::{TestDb, TestPanel};
use serde_json::{Value, json};

use crate::moves::{node_with_agent, report_endpoints};
use crate::records::site;

/// A panel on `db` whose jobs step every 100 ms (and whose nodes stay heard from for
/// `unreachable_after`), seeded: the panel, the seeded node and the member.
pub(crate) async fn fast_panel(
    db: &TestDb,
    unreachable_after: std::time::Duration,
) -> (TestPanel, String, String) {
    let mut panel = TestPanel::start(db).await;
    panel
        .configure(|config| {
            config.background.jobs_every = std::time::Duration::from_millis(100);
            config.node_unreachable_after = unreachable_after;
        })
        .await;
    let (node, member) = panel.seed().await;
    (panel, node, member)
}

/// Polls an evacuation until `done(evacuation)` holds (at most 20 s); the last one read.
pub(crate) async fn evacuation_when(
    panel: &TestPanel,
    job: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
        if done(&evacuation) {
            return evacuation;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the evacuation never got there: {evacuation}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_evacuation_plan_never_overfills_a_node_and_says_when_a_deadline_cannot_hold() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let (_, member) = panel.seed().await;
        let provider = |name: &str| {
            let body = json!({"name": name});
            let panel = &panel;
            async move {
                let (status, created) = panel.post("/api/v1/providers", body).await;
                assert_eq!(status, 201, "{created}");
                created["id"].as_str().unwrap().to_owned()
            }
        };
        let (leaving, staying) = (provider("Leaving").await, provider("Staying").await);
        let node = |provider: String, name: &'static str, memory_gib: u64| {
            let panel = &panel;
            async move {
                let (status, created) = panel
                    .post(
                        "/api/v1/nodes",
                        json!({"provider_id": provider, "name": name, "public_addresses": [],
                               "overcommit": {"cpu": 1.0, "memory": 1.0},
                               "capacity": {"cpu_millis": 8000, "memory_bytes": memory_gib << 30,
                                            "disk_bytes": 500u64 << 30}}),
                    )
                    .await;
                assert_eq!(status, 201, "{created}");
                created["id"].as_str().unwrap().to_owned()
            }
        };
        let old = node(leaving.clone(), "old", 16).await;
        let (big, small) = (
            node(staying.clone(), "big", 4).await,
            node(staying.clone(), "small", 3).await,
        );
        // Only nodes whose agents report, and say where other agents reach them, receive.
        for target in [&big, &small] {
            report_endpoints(&panel, target, 10).await;
        }
        for i in 0..3 {
            let mut body = site(&member, &format!("s{i}.example.org"));
            body["node_id"] = json!(old);
            body["limits"] = json!({"cpu_millis": 500, "memory_bytes": 2u64 << 30, "pids": 64});
            let (status, created) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 201, "{created}");
        }

        // A naive placement (each site where most room is left at the start) would put all
        // three on "big": 6 GiB on 4.
        let (status, plan) = panel
            .get(&format!("/api/v1/evacuation-plan?provider_id={leaving}"))
            .await;
        assert_eq!(status, 200, "{backend}: {plan}");
        let placements = plan["placements"].as_array().unwrap();
        assert_eq!(placements.len(), 3, "{backend}: {plan}");
        let on = |node: &str| placements.iter().filter(|p| p["to_node"] == node).count() as u64;
        assert!(
            on(&big) * 2 <= 4 && on(&small) * 2 <= 3,
            "{backend}: {plan}"
        );
        assert_eq!(plan["verdict"], "no_deadline");
        assert_eq!(plan["cost"]["rate_measured"], false);
        assert!(
            plan["cost"]["basis"]
                .as_str()
                .unwrap()
                .starts_with("assumed"),
            "{plan}"
        );

        // One second is too short for any move: impossible, and why.
        let deadline = (chrono::Utc::now() + chrono::Duration::seconds(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (status, plan) = panel
            .get(&format!(
                "/api/v1/evacuation-plan?node_id={old}&deadline={deadline}&parallelism=8"
            ))
            .await;
        assert_eq!(status, 200, "{backend}: {plan}");
        assert_eq!(plan["verdict"], "impossible", "{backend}: {plan}");
        assert!(
            plan["statement"]
                .as_str()
                .unwrap()
                .contains("one move alone outlasts"),
            "{plan}"
        );
        assert!(
            plan["suggestions"][0]
                .as_str()
                .unwrap()
                .contains("alone takes about"),
            "{plan}"
        );

        // Neither a node nor a provider: said so.
        let (status, refused) = panel.get("/api/v1/evacuation-plan").await;
        assert_eq!(status, 400, "{refused}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_evacuation_runs_as_a_durable_job_shared_by_two_processes_and_resumed_after_a_restart() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        let backend = db.backend();
        let fast = alveole_panel::background::BackgroundConfig {
            job_lease: std::time::Duration::from_secs(2),
            jobs_every: std::time::Duration::from_millis(100),
            ..Default::default()
        };
        panel.configure(|config| config.background = fast).await;
        let (old, member) = panel.seed().await;
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let old_agent = panel.agent_client();
        old_agent.authenticate(&panel.enrol(&old).await).unwrap();
        let (status, staying) = panel
            .post("/api/v1/providers", json!({"name": "Staying"}))
            .await;
        assert_eq!(status, 201);
        let (big, _) = node_with_agent(&panel, &staying["id"], "big", 8000).await;
        let (small, _) = node_with_agent(&panel, &staying["id"], "small", 8000).await;
        let mut sites = Vec::new();
        for i in 0..6 {
            let mut body = site(&member, &format!("e{i}.example.org"));
            body["node_id"] = json!(old);
            let (status, created) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 201, "{created}");
            sites.push(created["id"].as_str().unwrap().to_owned());
        }
        // A second panel process on the same database, running jobs too.
        let other = alveole_panel::AppState::new(
            alveole_store::connect(&db.url).await.unwrap(),
            alveole_panel::PanelConfig {
                background: fast,
                ..Default::default()
            },
        )
        .unwrap();
        let other_runner =
            alveole_panel::background::start(other.service(), "the-other-process".into());

        let (_, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 2}),
            )
            .await;
        assert!(started["id"].is_string(), "{backend}: {started}");
        let job = started["id"].as_str().unwrap().to_owned();
        assert_eq!(started["items"].as_array().unwrap().len(), 6);

        // The old node's agent switches each move it is given; the panel restarts halfway.
        let mut switched = BTreeSet::new();
        let mut restarted = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        let finished = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: the evacuation never ended"
            );
            let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
            if evacuation["state"] == "done" {
                break evacuation;
            }
            let items = evacuation["items"].as_array().unwrap();
            let moving: Vec<&Value> = items.iter().filter(|i| i["state"] == "moving").collect();
            assert!(
                moving.len() <= 2,
                "{backend}: at most 2 at once: {evacuation}"
            );
            for item in moving {
                let move_id: alveole_model::SiteMoveId =
                    item["move_id"].as_str().unwrap().parse().unwrap();
                if switched.insert(move_id) {
                    old_agent
                        .move_outcome(move_id, "switch", &Default::default())
                        .await
                        .unwrap();
                }
            }
            let done = items.iter().filter(|i| i["state"] == "done").count();
            if done >= 3 && !restarted {
                panel.stop().await;
                panel.resume().await;
                restarted = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        drop(other_runner);
        assert!(restarted);
        let items = finished["items"].as_array().unwrap();
        assert!(
            items.iter().all(|i| i["state"] == "done"),
            "{backend}: {finished}"
        );
        // Every site is on its planned node, moved exactly once.
        for item in items {
            let site = item["site_id"].as_str().unwrap();
            let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
            assert_eq!(shown["node_id"], item["to_node"], "{backend}");
            assert!(item["to_node"] == json!(big) || item["to_node"] == json!(small));
            let (_, moves) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
            assert_eq!(
                moves.as_array().unwrap().len(),
                1,
                "{backend}: moved once: {moves}"
            );
        }
        let finish = panel
            .store
            .audit_events(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.action == "evacuation.finish")
            .expect("the evacuation's end is in the audit record");
        assert!(finish.after.unwrap()["took_seconds"].is_number());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_cancelled_evacuation_skips_what_did_not_start_and_ends_once_its_moves_have() {
    for db in TestDb::all().await {
        let (panel, old, member) = fast_panel(&db, std::time::Duration::from_secs(60)).await;
        let backend = db.backend();
        let old_agent = panel.agent_client();
        old_agent.authenticate(&panel.enrol(&old).await).unwrap();
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let (_, staying) = panel
            .post("/api/v1/providers", json!({"name": "Staying"}))
            .await;
        node_with_agent(&panel, &staying["id"], "target", 8000).await;
        for i in 0..3 {
            let mut body = site(&member, &format!("c{i}.example.org"));
            body["node_id"] = json!(old);
            assert_eq!(panel.post("/api/v1/sites", body).await.0, 201);
        }
        let (_, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 1}),
            )
            .await;
        let job = started["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/evacuations/{job}");
        let mut moving = None;
        for _ in 0..200 {
            let (_, evacuation) = panel.get(&path).await;
            if let Some(id) = evacuation["items"][0]["move_id"].as_str() {
                moving = Some(id.parse::<alveole_model::SiteMoveId>().unwrap());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let moving = moving.expect("the first site's move started");
        let (status, cancelled) = panel.post(&format!("{path}/cancel"), json!({})).await;
        assert_eq!(status, 200, "{backend}: {cancelled}");
        let states: Vec<&str> = cancelled["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["moving", "skipped", "skipped"], "{backend}");
        let (status, _) = panel.post(&format!("{path}/resume"), json!({})).await;
        assert_eq!(status, 409, "a cancelled evacuation stays cancelled");
        old_agent
            .move_outcome(moving, "switch", &Default::default())
            .await
            .unwrap();
        let mut ended = Value::Null;
        for _ in 0..200 {
            let (_, evacuation) = panel.get(&path).await;
            if evacuation["finished_at"].is_string() {
                ended = evacuation;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(ended["state"], "cancelled", "{backend}: {ended}");
        assert_eq!(ended["items"][0]["state"], "done");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_evacuation_fails_a_site_with_databases_at_once_and_moves_the_others() {
    for db in TestDb::all().await {
        let (panel, old, member) = fast_panel(&db, std::time::Duration::from_secs(60)).await;
        let backend = db.backend();
        let old_agent = panel.agent_client();
        old_agent.authenticate(&panel.enrol(&old).await).unwrap();
        let (_, view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let (_, staying) = panel
            .post("/api/v1/providers", json!({"name": "Staying"}))
            .await;
        node_with_agent(&panel, &staying["id"], "target", 8000).await;
        let mut with_data = site(&member, "donnees.example.org");
        with_data["node_id"] = json!(old);
        with_data["databases"] = json!([{"name": "app", "engine": "postgresql", "version": "15"}]);
        let (status, with_data) = panel.post("/api/v1/sites", with_data).await;
        assert_eq!(status, 201, "{backend}: {with_data}");
        let mut plain = site(&member, "simple.example.org");
        plain["node_id"] = json!(old);
        assert_eq!(panel.post("/api/v1/sites", plain).await.0, 201);
        let (status, started) = panel
            .post(
                "/api/v1/evacuations",
                json!({"provider_id": view["provider_id"], "parallelism": 2}),
            )
            .await;
        assert_eq!(status, 202, "{backend}: {started}");
        let job = started["id"].as_str().unwrap().to_owned();
        let item = |evacuation: &Value, site: &Value| {
            evacuation["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["site_id"] == site["id"])
                .cloned()
                .unwrap_or_default()
        };
        let evacuation = evacuation_when(&panel, &job, |e| {
            item(e, &with_data)["state"] == "failed"
                && e["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["state"] == "moving")
        })
        .await;
        let failed = item(&evacuation, &with_data);
        assert!(
            failed["error"].as_str().unwrap().contains("databases"),
            "{backend}: the reason is named: {failed}"
        );
        assert!(
            failed["retry_at"].is_null(),
            "{backend}: no retry: {failed}"
        );
        db.drop_db().await;
    }
}
