//! A site moves while a reader and a writer use it: no request fails, no write is lost.

use super::*;

#[tokio::test]
async fn docker_a_site_moves_while_requested_and_written_with_no_request_failed() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut agent_a = start_agent(&panel, &a, any, any).await;
    let agent_b = start_agent(&panel, &b, any, any).await;

    const HOST: &str = "moving.example.org";
    let site = create_site(&panel, &member, a.id, HOST).await;
    // About 200 MB in 2,000 files.
    let source_dir =
        filled_and_serving(&site, a.id, agent_a.ingress, HOST, (2_000, 200 << 20)).await;
    assert_eq!(
        get_through(agent_a.ingress, HOST, "/cgi-bin/append?0").await,
        Some((200, "ok 0\n".into()))
    );

    let (move_id, moved, traffic) =
        moved_under_traffic(&panel, &site, &a, &b, agent_a.ingress, HOST).await;
    let freeze = no_request_failed_and_no_gap_outlasted_the_freeze(&traffic, &moved);
    the_data_and_every_acknowledged_write_arrived(&panel, &site, &b, &source_dir, &traffic).await;
    the_move_is_recorded_and_shown(&panel, &site, &move_id, freeze).await;

    // An admin ends the forwarding early: node A stops answering for the site and drops its
    // copy.
    let (status, finished) = panel
        .post(&format!("/api/v1/site-moves/{move_id}/finish"), json!({}))
        .await;
    assert_eq!(status, 200, "{finished}");
    assert_eq!(finished["phase"], "done");
    wait_for(
        "node A to drop the site",
        Duration::from_secs(30),
        async || {
            let gone = get_through(agent_a.ingress, HOST, "/")
                .await
                .is_some_and(|r| r.0 == 404);
            (gone && !source_dir.exists()).then_some(())
        },
    )
    .await;

    // Node A's agent dies after the switch: node B serves the site.
    agent_a.kill();
    assert_eq!(
        get_through(agent_b.ingress, HOST, "/").await,
        Some((200, "hello\n".into()))
    );
}

/// Moves the site from A to B while a reader and a writer go through node A's ingress for the
/// whole move (and for a while after the switch, forwarded): the move's id, its record at the
/// switch, and the traffic.
async fn moved_under_traffic(
    panel: &TestPanel,
    site: &str,
    a: &NodeSetup,
    b: &NodeSetup,
    ingress: SocketAddr,
    host: &'static str,
) -> (String, Value, Traffic) {
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let clients = spawn_traffic(ingress, host, stop.clone(), traffic.clone());
    let answered = || traffic.lock().unwrap().requests.len();
    wait_for("traffic under way", Duration::from_secs(30), async || {
        (answered() >= 20).then_some(())
    })
    .await;

    // A target that has not said where agents reach it is refused; node B has.
    let path = format!("/api/v1/sites/{site}/move");
    let (status, refused) = panel.post(&path, json!({"to_node": a.id})).await;
    assert_eq!(status, 409, "{refused}");
    let (status, started) = panel.post(&path, json!({"to_node": b.id})).await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();
    let (status, again) = panel.post(&path, json!({"to_node": b.id})).await;
    assert_eq!(status, 409, "one move at a time: {again}");

    let moved = wait_for("the switch", Duration::from_secs(180), async || {
        let movement = the_move(panel, &move_id).await;
        assert_ne!(movement["phase"], "failed", "{movement}");
        (movement["phase"] == "forwarding" && movement["progress"]["freeze_ms"].is_u64())
            .then_some(movement)
    })
    .await;
    // Some more traffic after the switch, through node A (forwarded) still.
    let at_switch = answered();
    wait_for(
        "traffic after the switch",
        Duration::from_secs(30),
        async || (answered() >= at_switch + 50).then_some(()),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let traffic = std::mem::take(&mut *traffic.lock().unwrap());
    (move_id, moved, traffic)
}

/// No request failed (they were held), and the longest silence a client saw is the freeze
/// plus one request's own time. Returns the freeze.
fn no_request_failed_and_no_gap_outlasted_the_freeze(traffic: &Traffic, moved: &Value) -> Duration {
    let progress = &moved["progress"];
    let freeze = Duration::from_millis(progress["freeze_ms"].as_u64().unwrap());
    println!(
        "moved: {} requests, longest gap {:?}, freeze {:?}, {} passes, {} bytes sent, steps {}",
        traffic.requests.len(),
        traffic.longest_gap(),
        freeze,
        progress["passes"],
        progress["bytes_sent"],
        progress["freeze_steps"]
    );
    assert!(
        traffic.requests.len() > 200,
        "traffic ran: {}",
        traffic.requests.len()
    );
    assert_eq!(traffic.failures(), Vec::<String>::new(), "held, not failed");
    let one_request = Duration::from_millis(100);
    assert!(
        traffic.longest_gap() <= freeze + one_request,
        "longest gap {:?} > freeze {:?}",
        traffic.longest_gap(),
        freeze
    );
    assert!(progress["passes"].as_u64().unwrap() >= 2, "{progress}");
    assert!(
        progress["bytes_sent"].as_u64().unwrap() >= 200 << 20,
        "{progress}"
    );
    freeze
}

/// The site is node B's now, in a volume of its own with the same data; every acknowledged
/// write is on the target, and the source's log (frozen at the switch) is where the target's
/// began.
async fn the_data_and_every_acknowledged_write_arrived(
    panel: &TestPanel,
    site: &str,
    b: &NodeSetup,
    source_dir: &Path,
    traffic: &Traffic,
) {
    let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
    assert_eq!(shown["node_id"], json!(b.id), "{shown}");
    let target_dir = volume_dir(b.id, site);
    assert_ne!(
        source_dir, target_dir,
        "the target volume is another volume"
    );
    let digest =
        |dir: &Path| alveole_agent::moves::volume_sync::tree_digest(&dir.join("files")).unwrap();
    assert_eq!(
        digest(source_dir),
        digest(&target_dir),
        "the data arrived whole"
    );
    let target_log = std::fs::read_to_string(target_dir.join("log.txt")).unwrap();
    let source_log = std::fs::read_to_string(source_dir.join("log.txt")).unwrap();
    assert!(
        target_log.starts_with(&source_log),
        "no write lost or reordered"
    );
    let written: std::collections::BTreeSet<u64> =
        target_log.lines().filter_map(|l| l.parse().ok()).collect();
    let lost: Vec<u64> = traffic
        .acknowledged
        .iter()
        .filter(|seq| !written.contains(seq))
        .copied()
        .collect();
    assert!(traffic.acknowledged.len() > 50, "the writer ran");
    assert_eq!(
        lost,
        Vec::<u64>::new(),
        "acknowledged writes missing on the target"
    );
}

/// The move is in the site's history and in the audit record; the site's page shows it, its
/// freeze window, and the form that ends forwarding.
async fn the_move_is_recorded_and_shown(
    panel: &TestPanel,
    site: &str,
    move_id: &str,
    freeze: Duration,
) {
    let (_, history) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
    assert_eq!(history[0]["id"], json!(move_id), "{history}");
    let actions: Vec<String> = panel
        .store
        .audit_events(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["site.move.start", "site.move.switch"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    let page = panel.page(&format!("/sites/{site}")).await;
    assert!(page.contains(r#"data-phase="forwarding""#), "{page}");
    assert!(
        page.contains(&format!("{} ms", freeze.as_millis())),
        "{page}"
    );
    assert!(page.contains(r#"id="finish-move""#));
}
