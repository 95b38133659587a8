//! What a move costs, learned from the moves already made: a history of tiny moves teaches
//! the fixed part and leaves the rate assumed (it once made a 197 MB site "impossible: 431
//! h"); moves of different sizes teach the rate too.

use alveole_agent::control::panel::Control;
use alveole_model::{Clock, MoveOutcome, MoveProgress, SiteMoveId};
use alveole_tests::{TestDb, TestPanel};
use serde_json::{Value, json};

use crate::moves::{node_with_agent, report_endpoints};
use crate::records::site;

/// Moves a new site of `bytes` from `from` to `to`, switched `seconds` later by the panel's
/// clock, as the source agent would report it.
async fn a_move_of(
    panel: &TestPanel,
    source: &alveole_agent::agent::PanelClient,
    (member, from, to): (&str, &str, &str),
    name: &str,
    (bytes, seconds): (u64, i64),
) {
    let mut body = site(member, name);
    body["node_id"] = json!(from);
    let (status, created) = panel.post("/api/v1/sites", body).await;
    assert_eq!(status, 201, "{created}");
    let (status, moved) = panel
        .post(
            &format!("/api/v1/sites/{}/move", created["id"].as_str().unwrap()),
            json!({"to_node": to}),
        )
        .await;
    assert_eq!(status, 202, "{moved}");
    let id: SiteMoveId = moved["id"].as_str().unwrap().parse().unwrap();
    panel.clock.advance(chrono::Duration::seconds(seconds));
    let outcome = MoveOutcome {
        progress: MoveProgress {
            bytes_sent: bytes,
            volume_bytes: bytes,
            ..Default::default()
        },
        reason: None,
    };
    source.move_outcome(id, "switch", &outcome).await.unwrap();
}

/// The plan of emptying `node` in 60 hours.
async fn plan_of(panel: &TestPanel, node: &str) -> Value {
    let deadline = (panel.clock.now() + chrono::Duration::hours(60))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, plan) = panel
        .get(&format!(
            "/api/v1/evacuation-plan?node_id={node}&deadline={deadline}"
        ))
        .await;
    assert_eq!(status, 200, "{plan}");
    plan
}

#[tokio::test]
async fn tiny_moves_teach_the_fixed_part_and_moves_of_different_sizes_the_rate() {
    for db in TestDb::all().await {
        let mut panel = TestPanel::start(&db).await;
        let backend = db.backend();
        panel
            .configure(|config| {
                config.node_unreachable_after = std::time::Duration::from_secs(86_400)
            })
            .await;
        let (old, member) = panel.seed().await;
        let source = report_endpoints(&panel, &old, 10).await;
        let (_, elsewhere) = panel
            .post("/api/v1/providers", json!({"name": "Elsewhere"}))
            .await;
        let (target, _) = node_with_agent(&panel, &elsewhere["id"], "target", 8000).await;
        let route = (member.as_str(), old.as_str(), target.as_str());
        // Five near-empty sites, two seconds each.
        for i in 0..5 {
            a_move_of(
                &panel,
                &source,
                route,
                &format!("tiny{i}.example.org"),
                (266, 2),
            )
            .await;
        }
        // A site of 197 MB still to move.
        let mut body = site(&member, "big.example.org");
        body["node_id"] = json!(old);
        body["volume"] = json!({"quota_bytes": 197_000_000u64, "mount_path": "/data"});
        let (status, big) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201, "{big}");

        let plan = plan_of(&panel, &old).await;
        assert_eq!(plan["verdict"], "holds", "{backend}: {plan}");
        let seconds = plan["placements"][0]["seconds"].as_u64().unwrap();
        assert!(
            (4..=10).contains(&seconds),
            "{backend}: 2 s + 197 MB at 50 MiB/s, not {seconds} s: {plan}"
        );
        let basis = plan["cost"]["basis"].as_str().unwrap();
        assert!(
            basis.contains("5 move(s)") && basis.contains("assumed"),
            "{backend}: {basis}"
        );

        // Moves of 50, 100 and 150 MB at 2 s plus 10 MB/s: the rate is measured now.
        for (i, megabytes) in [50u64, 100, 150].into_iter().enumerate() {
            let seconds = 2 + megabytes as i64 / 10;
            a_move_of(
                &panel,
                &source,
                route,
                &format!("mid{i}.example.org"),
                (megabytes * 1_000_000, seconds),
            )
            .await;
        }
        let plan = plan_of(&panel, &old).await;
        assert_eq!(plan["cost"]["rate_measured"], true, "{backend}: {plan}");
        let rate = plan["cost"]["bytes_per_second"].as_u64().unwrap();
        assert!(
            (9_000_000..=11_000_000).contains(&rate),
            "{backend}: {plan}"
        );
        let seconds = plan["placements"][0]["seconds"].as_u64().unwrap();
        assert!(
            (19..=24).contains(&seconds),
            "{backend}: 2 s + 197 MB at 10 MB/s, not {seconds} s"
        );
        db.drop_db().await;
    }
}
