//! Moves that meet failures: a target that dies mid-copy, a panel that dies during the freeze.

use super::*;

#[tokio::test]
async fn docker_a_move_whose_target_died_mid_copy_resumes_where_it_stopped() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    // Started again on the same addresses below: ports no outgoing connection can take.
    let (ingress_b, peer_b) = (
        alveole_tests::restartable_addr(),
        alveole_tests::restartable_addr(),
    );
    let mut agent_b = start_agent(&panel, &b, ingress_b, peer_b).await;
    const HOST: &str = "resumed.example.org";
    let site = create_site(&panel, &member, a.id, HOST).await;
    let source_dir =
        filled_and_serving(&site, a.id, agent_a.ingress, HOST, (2_000, 200 << 20)).await;
    reported(&panel, b.id).await;
    let (status, started) = panel
        .post(
            &format!("/api/v1/sites/{site}/move"),
            json!({"to_node": b.id}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();

    // The target's agent dies once part of the volume arrived.
    let target_dir = wait_for("the target's volume", Duration::from_secs(60), async || {
        Some(volume_dir(b.id, &site)).filter(|dir| dir.is_dir())
    })
    .await;
    let arrived = |dir: &Path| -> usize {
        (0..20)
            .map(|d| {
                std::fs::read_dir(dir.join(format!("files/d{d:02}")))
                    .map(|entries| entries.count())
                    .unwrap_or(0)
            })
            .sum()
    };
    wait_for("part of the copy", Duration::from_secs(60), async || {
        (arrived(&target_dir) >= 300).then_some(())
    })
    .await;
    let (ingress, peer) = (agent_b.ingress, agent_b.peer);
    agent_b.kill();
    let had = arrived(&target_dir);
    assert!(had < 2_000, "killed mid-copy ({had} files there)");
    let failed = wait_for(
        "the source to see the copy fail",
        Duration::from_secs(30),
        async || {
            let movement = the_move(&panel, &move_id).await;
            movement["progress"]["last_error"]
                .is_string()
                .then_some(movement)
        },
    )
    .await;
    assert_eq!(
        failed["phase"], "copying",
        "a failed copy is tried again, not given up: {failed}"
    );

    // Back on the same addresses: the move resumes and completes.
    let _agent_b = start_agent(&panel, &b, ingress, peer).await;
    let moved = wait_for("the switch", Duration::from_secs(180), async || {
        let movement = the_move(&panel, &move_id).await;
        (movement["phase"] == "forwarding" && movement["progress"]["freeze_ms"].is_u64())
            .then_some(movement)
    })
    .await;
    let progress = &moved["progress"];
    println!("resumed: {progress}");
    let total = progress["volume_bytes"].as_u64().unwrap();
    let already_there = progress["bytes_already_there"].as_u64().unwrap();
    assert!(progress["attempts"].as_u64().unwrap() >= 2, "{progress}");
    assert!(
        already_there > 0 && total - already_there < total,
        "the resumed copy sent again less than the whole volume: {progress}"
    );
    assert_eq!(
        alveole_agent::moves::volume_sync::tree_digest(&source_dir.join("files")).unwrap(),
        alveole_agent::moves::volume_sync::tree_digest(&target_dir.join("files")).unwrap()
    );
}

#[tokio::test]
async fn docker_when_the_panel_dies_during_the_freeze_the_source_serves_again() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    let deadline = Duration::from_secs(8);
    panel
        .configure(|config| config.moves.freeze_deadline_ms = deadline.as_millis() as u64)
        .await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let agent_b = start_agent(&panel, &b, any, any).await;
    const HOST: &str = "stays.example.org";
    // A site that takes a few seconds to start: the target's start keeps the freeze open long
    // enough for the panel to die during it.
    let site = json!({
        "owner_id": member, "primary_domain": HOST, "image": TEST_IMAGE, "node_id": a.id,
        "command": ["/bin/sh", "-c", "mkdir -p /data/www/cgi-bin && sleep 3 && exec /bin/httpd -f -p 8080 -h /data/www"],
        "limits": {"cpu_millis": 500, "memory_bytes": 134217728, "pids": 64}
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    let site = created["id"].as_str().unwrap().to_owned();
    let source_dir = filled_and_serving(&site, a.id, agent_a.ingress, HOST, (200, 20 << 20)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let clients = spawn_traffic(agent_a.ingress, HOST, stop.clone(), traffic.clone());
    reported(&panel, b.id).await;
    let (status, started) = panel
        .post(
            &format!("/api/v1/sites/{site}/move"),
            json!({"to_node": b.id}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();
    wait_for("the freeze", Duration::from_secs(120), async || {
        let movement = the_move(&panel, &move_id).await;
        assert!(
            ["waiting", "shipping_image", "copying", "freezing"]
                .contains(&movement["progress"]["step"].as_str().unwrap_or_default()),
            "{movement}"
        );
        (movement["progress"]["step"] == "freezing").then_some(())
    })
    .await;
    panel.stop().await;

    // Without the panel's switch the source rolls back by itself and serves again.
    wait_for(
        "the site to serve from node A again",
        deadline * 3,
        async || {
            let served = traffic
                .lock()
                .unwrap()
                .requests
                .iter()
                .rev()
                .take(20)
                .filter(|r| r.2)
                .count();
            (served == 20).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let traffic = std::mem::take(&mut *traffic.lock().unwrap());
    println!(
        "rolled back: {} requests, longest gap {:?}",
        traffic.requests.len(),
        traffic.longest_gap()
    );
    assert_eq!(
        traffic.failures(),
        Vec::<String>::new(),
        "held, then served by the source"
    );
    assert!(
        traffic.longest_gap() <= deadline,
        "served again within the freeze deadline: {:?}",
        traffic.longest_gap()
    );
    let written: std::collections::BTreeSet<u64> =
        std::fs::read_to_string(source_dir.join("log.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
    assert!(
        traffic.acknowledged.iter().all(|seq| written.contains(seq)),
        "every acknowledged write is on the source"
    );
    assert_ne!(
        get_through(agent_b.ingress, HOST, "/").await.map(|r| r.0),
        Some(200),
        "the target's copy does not answer"
    );

    // The panel comes back and hears of the rollback: the move failed, the site stayed.
    panel.resume().await;
    let failed = wait_for(
        "the panel to hear of the rollback",
        Duration::from_secs(60),
        async || {
            let movement = the_move(&panel, &move_id).await;
            (movement["phase"] == "failed").then_some(movement)
        },
    )
    .await;
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
    assert_eq!(shown["node_id"], json!(a.id));
    assert_eq!(
        get_through(agent_a.ingress, HOST, "/").await,
        Some((200, "hello\n".into()))
    );
}
