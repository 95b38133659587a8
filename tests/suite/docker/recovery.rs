//! "This node is lost", end to end: a real panel, four real agents (the lost node A, a vault,
//! B at A's provider and C at a third), the machine's Docker engine. Node A is destroyed (its
//! agent, containers and volumes); the recovery restores its sites on B and C from their
//! newest backups; each serves its backup's content there, and the loss the recovery reports
//! covers exactly the writes acknowledged after that backup. A's agent, back with its old
//! state, is fenced: it runs and serves nothing.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use alveole_tests::docker::{NodeCleanup, docker};
use alveole_tests::{TestDb, TestPanel, ensure_test_image};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use super::backups::{node, provider, write};
use super::moves::{
    APPEND_SCRIPT, create_site, enrolled, get_through, reported, start_agent, volume_dir, wait_for,
};

const SITES: usize = 4;

fn host(i: usize) -> String {
    format!("perdu-{i}.example.org")
}

/// Appends `word` to the writer site's log through `ingress`: when it was acknowledged.
async fn acknowledged_write(ingress: SocketAddr, word: &str) -> DateTime<Utc> {
    let answer = get_through(ingress, &host(0), &format!("/cgi-bin/append?{word}")).await;
    assert_eq!(answer, Some((200, format!("ok {word}\n"))));
    Utc::now()
}

async fn set_policy(panel: &TestPanel, site: &str, target: &Value) {
    wait_for(
        "the policy to be set",
        Duration::from_secs(30),
        async || {
            let (_, current) = panel.get(&format!("/api/v1/sites/{site}")).await;
            let policy =
                json!({"version": current["version"], "backup": {"targets": [target["id"]]}});
            let (status, changed) = panel
                .call(
                    Method::PATCH,
                    &format!("/api/v1/sites/{site}"),
                    Some(policy),
                )
                .await;
            assert!(status == 200 || status == 409, "{changed}");
            (status == 200).then_some(())
        },
    )
    .await;
}

/// Asks for a backup of `site` and waits for it: when it began.
async fn backed_up(panel: &TestPanel, site: &str) -> DateTime<Utc> {
    let (_, before) = panel.get(&format!("/api/v1/sites/{site}/backups")).await;
    let runs = before["runs"].as_array().map_or(0, Vec::len);
    let (status, asked) = panel
        .post(&format!("/api/v1/sites/{site}/backups"), json!({}))
        .await;
    assert_eq!(status, 202, "{asked}");
    let run = wait_for("a backup", Duration::from_secs(120), async || {
        let (_, seen) = panel.get(&format!("/api/v1/sites/{site}/backups")).await;
        let all = seen["runs"].as_array()?;
        (all.len() > runs).then(|| all[0].clone())
    })
    .await;
    assert!(run["error"].is_null(), "{run}");
    run["started_at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn docker_a_lost_node_is_fenced_and_its_sites_restored_elsewhere_losing_only_what_followed_their_backup()
 {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node_a, member) = panel.seed().await;
    let (_, seeded) = panel.get(&format!("/api/v1/nodes/{node_a}")).await;
    let vault_provider = provider(&panel, "Coffre").await;
    let far_provider = provider(&panel, "Ailleurs").await;
    let vault_node = node(&panel, &vault_provider, "vault-1").await;
    let node_b = node(&panel, &seeded["provider_id"], "node-b").await;
    let node_c = node(&panel, &far_provider, "node-c").await;
    let a = enrolled(&panel, &node_a).await;
    let v = enrolled(&panel, &vault_node).await;
    let b = enrolled(&panel, &node_b).await;
    let c = enrolled(&panel, &node_c).await;
    let _cleanup = NodeCleanup::new([a.id, v.id, b.id, c.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let _agent_v = start_agent(&panel, &v, any, any).await;
    let agent_b = start_agent(&panel, &b, any, any).await;
    let agent_c = start_agent(&panel, &c, any, any).await;
    for node in [a.id, v.id, b.id, c.id] {
        reported(&panel, node).await;
    }
    let (status, target) = panel
        .post(
            "/api/v1/backup-targets",
            json!({"name": "coffre", "node_id": vault_node}),
        )
        .await;
    assert_eq!(status, 201, "{target}");

    // Four sites on A, backed up to the vault; the first takes writes through its CGI.
    let mut sites = Vec::new();
    for i in 0..SITES {
        let site = create_site(&panel, &member, a.id, &host(i)).await;
        let volume = wait_for("a site's volume", Duration::from_secs(60), async || {
            Some(volume_dir(a.id, &site)).filter(|dir| dir.is_dir())
        })
        .await;
        write(&volume, "www/index.html", &format!("site {i}\n"));
        if i == 0 {
            write(&volume, "www/cgi-bin/append", APPEND_SCRIPT);
            let script = volume.join("www/cgi-bin/append");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        sites.push(site);
    }
    for (i, site) in sites.iter().enumerate() {
        wait_for("the site to serve", Duration::from_secs(60), async || {
            (get_through(agent_a.ingress, &host(i), "/").await
                == Some((200, format!("site {i}\n"))))
            .then_some(())
        })
        .await;
        set_policy(&panel, site, &target).await;
    }
    let mut kept = Vec::new();
    for word in ["w1", "w2", "w3"] {
        kept.push((word, acknowledged_write(agent_a.ingress, word).await));
    }
    for site in &sites {
        backed_up(&panel, site).await;
    }
    // The writer's last backup, then writes that follow it: those are what A's loss takes.
    let backup_at = backed_up(&panel, &sites[0]).await;
    let mut lost = Vec::new();
    for word in ["w4", "w5"] {
        lost.push((word, acknowledged_write(agent_a.ingress, word).await));
    }

    // Node A is destroyed: its agent, its containers, its volumes.
    drop(agent_a);
    let label = format!("label=coop.alveole.node={}", a.id);
    for id in docker(&["ps", "-aq", "--filter", &label]).lines() {
        docker(&["rm", "-f", id]);
    }
    for volume in docker(&["volume", "ls", "-q", "--filter", &label]).lines() {
        docker(&["volume", "rm", "-f", volume]);
    }
    let (status, recovery) = panel
        .post("/api/v1/recoveries", json!({"node_id": node_a}))
        .await;
    assert_eq!(status, 202, "{recovery}");
    assert!(
        recovery["spec"]["unplaced"].as_array().unwrap().is_empty(),
        "{recovery}"
    );
    let path = format!("/api/v1/evacuations/{}", recovery["id"].as_str().unwrap());
    let ended = wait_for(
        "the recovery to end",
        Duration::from_secs(300),
        async || {
            panel.service().poke(alveole_panel::background::Task::Jobs);
            let (_, seen) = panel.get(&path).await;
            seen["finished_at"].is_string().then_some(seen)
        },
    )
    .await;
    assert_eq!(ended["state"], "done", "{ended}");

    // Each site serves its backup's content from B or C.
    for (i, site) in sites.iter().enumerate() {
        let (_, now) = panel.get(&format!("/api/v1/sites/{site}")).await;
        let on = now["node_id"].as_str().unwrap();
        let ingress = if on == node_b {
            agent_b.ingress
        } else {
            assert_eq!(on, node_c, "recovered on B or C: {now}");
            agent_c.ingress
        };
        wait_for(
            "the recovered site to serve",
            Duration::from_secs(60),
            async || {
                (get_through(ingress, &host(i), "/").await == Some((200, format!("site {i}\n"))))
                    .then_some(())
            },
        )
        .await;
    }
    // The writer's log holds exactly the writes acknowledged before its backup; the loss
    // reported covers the ones after it.
    let (_, writer) = panel.get(&format!("/api/v1/sites/{}", sites[0])).await;
    let on: alveole_model::NodeId = writer["node_id"].as_str().unwrap().parse().unwrap();
    let log = std::fs::read_to_string(volume_dir(on, &sites[0]).join("log.txt")).unwrap();
    let restored: Vec<&str> = log.lines().collect();
    assert_eq!(restored, ["w1", "w2", "w3"], "{log}");
    let item = ended["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["site_id"] == sites[0].as_str())
        .unwrap();
    let reported = item["data_loss_seconds"].as_i64().unwrap();
    let last_lost = lost.last().unwrap().1;
    let lost_span = (last_lost - backup_at).num_seconds();
    assert!(
        reported >= lost_span && reported <= lost_span + 30,
        "the loss reported ({reported} s) covers the writes after the backup ({lost_span} s)"
    );
    assert!(
        ended["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["data_loss_seconds"].is_i64())
    );
    assert_eq!(panel.events("node.fence").await.len(), 1);
    assert_eq!(panel.events("site.recover").await.len(), SITES);

    // A's agent comes back with its old state: fenced, it runs and serves nothing.
    let back = start_agent(&panel, &a, any, any).await;
    let ledger = a.state_dir.path().join("desired-state.json");
    wait_for(
        "A's agent to hear it is fenced",
        Duration::from_secs(60),
        async || {
            let held: Value = serde_json::from_slice(&std::fs::read(&ledger).ok()?).ok()?;
            held["sites"].as_array()?.is_empty().then_some(())
        },
    )
    .await;
    for i in 0..SITES {
        let answer = get_through(back.ingress, &host(i), "/").await;
        assert_ne!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    }
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &label]),
        "",
        "no container on A"
    );
    let (status, refused) = panel.get(&format!("/api/v1/nodes/{node_a}/status")).await;
    assert_eq!(status, 200, "{refused}");
    db.drop_db().await;
}
