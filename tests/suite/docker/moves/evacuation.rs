//! An evacuation with real agents: twenty sites leave a node, four at a time.

use super::*;

#[tokio::test]
async fn docker_twenty_sites_are_evacuated_to_two_nodes_and_serve_from_there() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    panel
        .configure(|config| config.background.jobs_every = Duration::from_millis(200))
        .await;
    let (a, b, member) = two_nodes(&panel).await;
    let (status, third) = panel
        .post(
            "/api/v1/nodes",
            json!({
                "provider_id": panel.get(&format!("/api/v1/nodes/{}", b.id)).await.1["provider_id"],
                "name": "node-c", "public_addresses": ["198.51.100.11"],
                "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 500u64 << 30}
            }),
        )
        .await;
    assert_eq!(status, 201, "{third}");
    let c = enrolled(&panel, third["id"].as_str().unwrap()).await;
    let _cleanup = NodeCleanup::new([a.id, b.id, c.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let agents = [
        (b.id, start_agent(&panel, &b, any, any).await),
        (c.id, start_agent(&panel, &c, any, any).await),
    ];
    let mut hosts = Vec::new();
    for i in 0..20 {
        let host = format!("evacuated-{i}.example.org");
        let site = create_site(&panel, &member, a.id, &host).await;
        filled_and_serving(&site, a.id, agent_a.ingress, &host, (10, 1 << 20)).await;
        hosts.push((site, host));
    }
    reported(&panel, b.id).await;
    reported(&panel, c.id).await;

    let (_, node_a) = panel.get(&format!("/api/v1/nodes/{}", a.id)).await;
    let (status, started) = panel
        .post(
            "/api/v1/evacuations",
            json!({"node_id": a.id, "parallelism": 4,
                   "deadline": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert!(node_a["name"].is_string());
    let job = started["id"].as_str().unwrap().to_owned();
    assert!(
        started["spec"]["statement"]
            .as_str()
            .unwrap()
            .starts_with("The deadline holds: 20 sites"),
        "{started}"
    );
    let ended = wait_for("the evacuation", Duration::from_secs(300), async || {
        let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
        let moving = evacuation["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["state"] == "moving")
            .count();
        assert!(moving <= 4, "{evacuation}");
        (evacuation["state"] == "done").then_some(evacuation)
    })
    .await;
    let items = ended["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["state"] == "done"), "{ended}");
    let took = chrono::DateTime::parse_from_rfc3339(ended["finished_at"].as_str().unwrap())
        .unwrap()
        - chrono::DateTime::parse_from_rfc3339(ended["created_at"].as_str().unwrap()).unwrap();
    println!(
        "evacuated 20 sites: predicted {} s, took {} s",
        ended["spec"]["predicted_seconds"],
        took.num_seconds()
    );
    // Both targets received sites, and every site answers from its new node.
    for (node, agent) in &agents {
        let here: Vec<_> = items
            .iter()
            .filter(|i| i["to_node"] == json!(node))
            .collect();
        assert!(!here.is_empty(), "both nodes receive sites");
        for item in here {
            let (site, host) = hosts
                .iter()
                .find(|(site, _)| item["site_id"] == json!(site))
                .unwrap();
            let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
            assert_eq!(shown["node_id"], json!(node));
            assert_eq!(
                get_through(agent.ingress, host, "/").await,
                Some((200, "hello\n".into())),
                "{host} on its new node"
            );
        }
    }
    let finish = panel
        .store
        .audit_events(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "evacuation.finish")
        .expect("the evacuation's end is audited");
    let after = finish.after.unwrap();
    assert!(
        after["predicted_seconds"].is_u64() && after["took_seconds"].is_i64(),
        "{after}"
    );
}
