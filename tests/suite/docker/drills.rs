//! Restore drills end to end: a real panel, three real agents standing for three providers
//! (the sites' node, a vault, another node), the machine's Docker engine. Ten sites are
//! backed up to the vault and drilled on the schedule, on nodes of other providers, while a
//! probe on each live site counts failures; then a pack of one site's repository is damaged
//! on the vault's disk: the check names it and the snapshot it breaks, the next drill fails,
//! and the site's window stops advancing, each with an alert on the site.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alveole_tests::docker::{NodeCleanup, docker};
use alveole_tests::{TestDb, TestPanel, ensure_test_image};
use reqwest::Method;
use serde_json::{Value, json};

use super::backups::{node, provider, write};
use super::moves::{
    create_site, enrolled, get_through, reported, start_agent, volume_dir, wait_for,
};

const SITES: usize = 10;

fn host(i: usize) -> String {
    format!("drill-{i}.example.org")
}

/// The id of the container serving `site` on `node`.
fn live_container(node: alveole_model::NodeId, site: &str) -> String {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=coop.alveole.node={node}"),
        "--filter",
        &format!("label=coop.alveole.site={site}"),
    ])
}

/// Asks every live site for its page, round after round, until `stop` (or five minutes):
/// (requests, failures).
fn probe_live_sites(
    ingress: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let requests = AtomicU64::new(0);
        let mut failures = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
            for i in 0..SITES {
                requests.fetch_add(1, Ordering::Relaxed);
                let answer = get_through(ingress, &host(i), "/").await;
                if answer != Some((200, format!("site {i}\n"))) {
                    failures.push(format!("{}: {answer:?}", host(i)));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (requests.load(Ordering::Relaxed), failures)
    })
}

async fn backups_of(panel: &TestPanel, site: &str) -> Value {
    let (status, backups) = panel.get(&format!("/api/v1/sites/{site}/backups")).await;
    assert_eq!(status, 200, "{backups}");
    backups
}

fn has_alert(backups: &Value, kind: &str) -> Option<String> {
    backups["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["kind"] == kind)
        .map(|a| a["reason"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn docker_drills_prove_ten_sites_backups_without_touching_them_and_catch_damage() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node_a, member) = panel.seed().await;
    let vault_provider = provider(&panel, "Coffre").await;
    let far_provider = provider(&panel, "Ailleurs").await;
    let vault_node = node(&panel, &vault_provider, "vault-1").await;
    let node_c = node(&panel, &far_provider, "node-c").await;
    let a = enrolled(&panel, &node_a).await;
    let v = enrolled(&panel, &vault_node).await;
    let c = enrolled(&panel, &node_c).await;
    let _cleanup = NodeCleanup::new([a.id, v.id, c.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let agent_v = start_agent(&panel, &v, any, any).await;
    let _agent_c = start_agent(&panel, &c, any, any).await;
    reported(&panel, a.id).await;
    reported(&panel, v.id).await;
    reported(&panel, c.id).await;
    let (status, target) = panel
        .post(
            "/api/v1/backup-targets",
            json!({"name": "coffre", "node_id": vault_node}),
        )
        .await;
    assert_eq!(status, 201, "{target}");

    // Ten sites, each serving its own page; half are probed on a health path of their own.
    let mut sites = Vec::new();
    for i in 0..SITES {
        let site = create_site(&panel, &member, a.id, &host(i)).await;
        let volume = wait_for("a site's volume", Duration::from_secs(60), async || {
            Some(volume_dir(a.id, &site)).filter(|dir| dir.is_dir())
        })
        .await;
        write(&volume, "www/index.html", &format!("site {i}\n"));
        write(&volume, "www/health.txt", "ok\n");
        sites.push(site);
    }
    for (i, site) in sites.iter().enumerate() {
        wait_for("the site to serve", Duration::from_secs(60), async || {
            (get_through(agent_a.ingress, &host(i), "/").await
                == Some((200, format!("site {i}\n"))))
            .then_some(())
        })
        .await;
        let health = if i % 2 == 0 { "/health.txt" } else { "/" };
        // The site's phase may move between the read and the write: read it again then.
        wait_for(
            "the policy to be set",
            Duration::from_secs(30),
            async || {
                let (_, current) = panel.get(&format!("/api/v1/sites/{site}")).await;
                let policy = json!({"version": current["version"], "backup": {
                "targets": [target["id"]], "drill": {"health_path": health}}});
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
    let live: Vec<String> = sites.iter().map(|s| live_container(a.id, s)).collect();
    assert!(live.iter().all(|id| !id.is_empty()), "{live:?}");

    // Backed up, then drilled on the schedule (the panel's task, poked so as not to wait its
    // minute), while every live site is probed.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe_live_sites(agent_a.ingress, stop.clone());
    let drills = wait_for("ten drills to pass", Duration::from_secs(420), async || {
        panel
            .service()
            .poke(alveole_panel::background::Task::Backups);
        let mut passed = Vec::new();
        for site in &sites {
            let (_, drills) = panel.get(&format!("/api/v1/sites/{site}/drills")).await;
            let latest = drills.as_array()?.first()?.clone();
            assert_ne!(latest["state"], "failed", "a drill failed: {latest}");
            passed.push(latest);
        }
        passed
            .iter()
            .all(|d| d["state"] == "passed")
            .then_some(passed)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = probe.await.unwrap();
    assert!(requests >= SITES as u64, "the live sites were probed");
    assert!(
        failures.is_empty(),
        "{} of {requests} requests to live sites failed during the drills: {failures:?}",
        failures.len()
    );
    let still: Vec<String> = sites.iter().map(|s| live_container(a.id, s)).collect();
    assert_eq!(still, live, "the live containers were never touched");
    for drill in &drills {
        let on = drill["node_id"].as_str().unwrap();
        assert!(
            on == v.id.to_string() || on == c.id.to_string(),
            "drilled at another provider than the site's: {drill}"
        );
        assert!(drill["files_verified"].as_u64().unwrap() >= 2, "{drill}");
        assert!(drill["restore_ms"].as_u64().unwrap() > 0, "{drill}");
        assert!(matches!(drill["answer_status"].as_u64(), Some(200..=399)));
        // Its scratch container and volume are gone.
        let scratch = format!("label=coop.alveole.site={}", drill["id"].as_str().unwrap());
        assert_eq!(docker(&["ps", "-aq", "--filter", &scratch]), "", "{drill}");
        assert_eq!(docker(&["volume", "ls", "-q", "--filter", &scratch]), "");
    }
    for site in &sites {
        let backups = backups_of(&panel, site).await;
        assert!(backups["window_seconds"].is_i64(), "{backups}");
        assert!(backups["restore_seconds"].is_f64(), "{backups}");
        assert!(
            backups["alerts"].as_array().unwrap().is_empty(),
            "{backups}"
        );
    }
    assert_eq!(panel.events("drill.pass").await.len(), SITES);

    // One pack of the first site's repository damaged on the vault's disk, as a failing disk
    // would; the vault's next check (made due again) finds it.
    let site = sites[0].clone();
    let before = backups_of(&panel, &site).await;
    drop(agent_v);
    let data = v.state_dir.path().join("vault").join(&site).join("data");
    let pack = walk_files(&data)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let mut permissions = std::fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)] // the test plays a failing disk
    permissions.set_readonly(false);
    std::fs::set_permissions(&pack, permissions).unwrap();
    std::fs::write(&pack, &bytes).unwrap();
    let journal = v.state_dir.path().join("backups.json");
    let mut kept: Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    kept["checked"].as_object_mut().unwrap().remove(&site);
    std::fs::write(&journal, serde_json::to_vec(&kept).unwrap()).unwrap();
    let _agent_v = start_agent(&panel, &v, any, any).await;
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let reason = wait_for("the damage alert", Duration::from_secs(120), async || {
        has_alert(&backups_of(&panel, &site).await, "damage")
    })
    .await;
    assert!(
        reason.contains(&pack_name[..8]),
        "the pack is named: {reason}"
    );
    assert!(reason.contains("breaks snapshots"), "{reason}");

    // The next drill fails loudly, and the window does not advance past the damage, even
    // after a new backup.
    let (status, drill) = panel
        .post(&format!("/api/v1/sites/{site}/drills"), json!({}))
        .await;
    assert_eq!(status, 202, "{drill}");
    let path = format!("/api/v1/drills/{}", drill["id"].as_str().unwrap());
    let failed = wait_for("the drill to end", Duration::from_secs(120), async || {
        let (_, seen) = panel.get(&path).await;
        (seen["state"] != "running").then_some(seen)
    })
    .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let (status, asked) = panel
        .post(&format!("/api/v1/sites/{site}/backups"), json!({}))
        .await;
    assert_eq!(status, 202, "{asked}");
    let runs = before["runs"].as_array().unwrap().len();
    let after = wait_for("a new backup", Duration::from_secs(120), async || {
        let seen = backups_of(&panel, &site).await;
        (seen["runs"].as_array()?.len() > runs).then_some(seen)
    })
    .await;
    assert!(has_alert(&after, "drill").is_some(), "{after}");
    let proven = |b: &Value| b["proven_at"].as_str().map(str::to_owned);
    assert!(
        proven(&after).is_none_or(|at| Some(at) <= proven(&before)),
        "the window stopped advancing: {before} then {after}"
    );
    assert!(!panel.events("vault.damaged").await.is_empty());
    assert!(!panel.events("drill.fail").await.is_empty());
    assert!(panel.events("backup.alert").await.len() >= 2);
    db.drop_db().await;
}

/// Every file under `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}
