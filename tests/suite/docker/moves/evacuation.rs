//! An evacuation on a real fleet: thirty sites of mixed sizes (empty to 200 MB) leave a
//! provider for two nodes of another, four at a time. A third node there cannot receive (its
//! agent never reported), one site has just moved in and still forwards from its old node,
//! and one target's agent is killed during the run and comes back 30 s later. Every site
//! ends at the other provider and serves there, or the job ends incomplete and names exactly
//! the sites that did not.

use std::collections::BTreeSet;

use super::*;

const SITES: usize = 30;

/// The volume of site `i`: `(files, bytes)`. One of 200 MB, a few of tens of MB, the rest
/// small or empty.
fn size_of(i: usize) -> (usize, usize) {
    match i {
        0 => (200, 200 << 20),
        _ if i % 10 == 1 => (50, 30 << 20),
        _ if i.is_multiple_of(3) => (1, 0),
        _ => (10, 1 << 20),
    }
}

struct Fleet {
    a: NodeSetup,
    b: NodeSetup,
    c: NodeSetup,
    deaf: String,
    member: String,
    agent_a: RunningAgent,
    agent_b: RunningAgent,
    agent_c: RunningAgent,
}

/// Node a (leaving), b and c at another provider with agents, and "deaf" beside them, whose
/// agent never reported.
async fn fleet(panel: &TestPanel) -> Fleet {
    let (a, b, member) = two_nodes(panel).await;
    let provider = panel.get(&format!("/api/v1/nodes/{}", b.id)).await.1["provider_id"].clone();
    let node = |name: &'static str, address: &'static str| {
        let provider = provider.clone();
        async move {
            let (status, created) = panel
                .post(
                    "/api/v1/nodes",
                    json!({
                        "provider_id": provider, "name": name, "public_addresses": [address],
                        "capacity": {"cpu_millis": 64000, "memory_bytes": 64u64 << 30, "disk_bytes": 500u64 << 30}
                    }),
                )
                .await;
            assert_eq!(status, 201, "{created}");
            created["id"].as_str().unwrap().to_owned()
        }
    };
    let c = enrolled(panel, &node("node-c", "198.51.100.11").await).await;
    let deaf = node("node-deaf", "198.51.100.12").await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(panel, &a, any, any).await;
    let agent_b = start_agent(panel, &b, any, any).await;
    // Killed and started again on the same addresses: ports no outgoing connection can take.
    let (ingress_c, peer_c) = (
        alveole_tests::restartable_addr(),
        alveole_tests::restartable_addr(),
    );
    let agent_c = start_agent(panel, &c, ingress_c, peer_c).await;
    reported(panel, b.id).await;
    reported(panel, c.id).await;
    Fleet {
        a,
        b,
        c,
        deaf,
        member,
        agent_a,
        agent_b,
        agent_c,
    }
}

/// A site that came from node b to node a just now: switched, its old node still forwards.
async fn a_site_that_just_moved_in(panel: &TestPanel, fleet: &Fleet) -> (String, String) {
    let host = "moved-in.example.org".to_owned();
    let site = create_site(panel, &fleet.member, fleet.b.id, &host).await;
    filled_and_serving(
        &site,
        fleet.b.id,
        fleet.agent_b.ingress,
        &host,
        (10, 1 << 20),
    )
    .await;
    let (status, moved) = panel
        .post(
            &format!("/api/v1/sites/{site}/move"),
            json!({"to_node": fleet.a.id}),
        )
        .await;
    assert_eq!(status, 202, "{moved}");
    let id = moved["id"].as_str().unwrap().to_owned();
    wait_for("the move in", Duration::from_secs(120), async || {
        (the_move(panel, &id).await["phase"] == "forwarding").then_some(())
    })
    .await;
    (site, host)
}

#[tokio::test]
async fn docker_thirty_sites_leave_a_provider_past_a_deaf_node_a_forwarding_site_and_a_dead_agent()
{
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    panel
        .configure(|config| config.background.jobs_every = Duration::from_millis(200))
        .await;
    let mut fleet = fleet(&panel).await;
    let deaf: NodeId = fleet.deaf.parse().unwrap();
    let _cleanup = NodeCleanup::new([fleet.a.id, fleet.b.id, fleet.c.id, deaf]);
    let mut hosts = vec![a_site_that_just_moved_in(&panel, &fleet).await];
    for i in 0..SITES - 1 {
        let host = format!("evacuated-{i}.example.org");
        let site = create_site(&panel, &fleet.member, fleet.a.id, &host).await;
        filled_and_serving(&site, fleet.a.id, fleet.agent_a.ingress, &host, size_of(i)).await;
        hosts.push((site, host));
    }
    let provider =
        panel.get(&format!("/api/v1/nodes/{}", fleet.a.id)).await.1["provider_id"].clone();
    let (_, plan) = panel
        .get(&format!(
            "/api/v1/evacuation-plan?provider_id={}",
            provider.as_str().unwrap()
        ))
        .await;
    let excluded: Vec<&Value> = plan["excluded"].as_array().unwrap().iter().collect();
    assert!(
        excluded.len() == 1 && excluded[0]["node_id"] == fleet.deaf,
        "only the deaf node is left out: {plan}"
    );
    let (status, started) = panel
        .post(
            "/api/v1/evacuations",
            json!({"provider_id": provider, "parallelism": 4}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let job = started["id"].as_str().unwrap().to_owned();
    let ended = run_with_a_dead_agent(&panel, &mut fleet, &job).await;
    every_site_left_and_serves_or_is_named(&panel, &fleet, &hosts, &ended).await;
}

/// Follows the evacuation (never more than four moves at once); once five sites are done,
/// node c's agent dies, and comes back 30 s later. The evacuation as it ended.
async fn run_with_a_dead_agent(panel: &TestPanel, fleet: &mut Fleet, job: &str) -> Value {
    let mut killed_at: Option<Instant> = None;
    let mut restarted = false;
    let ended = wait_for("the evacuation", Duration::from_secs(900), async || {
        let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
        let items = evacuation["items"].as_array().unwrap();
        let count = |state: &str| items.iter().filter(|i| i["state"] == state).count();
        assert!(count("moving") <= 4, "{evacuation}");
        assert!(
            items.iter().all(|i| i["to_node"] != json!(fleet.deaf)),
            "{evacuation}"
        );
        if killed_at.is_none() && count("done") >= 5 {
            fleet.agent_c.kill();
            killed_at = Some(Instant::now());
        }
        // Back as a restarted agent process is: on its configured addresses.
        if !restarted && killed_at.is_some_and(|at| at.elapsed() >= Duration::from_secs(30)) {
            let (ingress, peer) = (fleet.agent_c.ingress, fleet.agent_c.peer);
            fleet.agent_c = start_agent(panel, &fleet.c, ingress, peer).await;
            restarted = true;
        }
        evacuation["finished_at"].is_string().then_some(evacuation)
    })
    .await;
    assert!(
        killed_at.is_some(),
        "node c's agent was killed during the run"
    );
    if !restarted {
        let (ingress, peer) = (fleet.agent_c.ingress, fleet.agent_c.peer);
        fleet.agent_c = start_agent(panel, &fleet.c, ingress, peer).await;
    }
    println!(
        "evacuated {SITES} sites: {}, predicted {} s, took {} s",
        ended["state"],
        ended["spec"]["predicted_seconds"],
        (chrono::DateTime::parse_from_rfc3339(ended["finished_at"].as_str().unwrap()).unwrap()
            - chrono::DateTime::parse_from_rfc3339(ended["created_at"].as_str().unwrap()).unwrap())
        .num_seconds()
    );
    ended
}

/// Every site is at the other provider and answers from its node (the one that just moved
/// in, also through its first old node), or the evacuation ended incomplete naming exactly
/// the sites still on node a.
async fn every_site_left_and_serves_or_is_named(
    panel: &TestPanel,
    fleet: &Fleet,
    hosts: &[(String, String)],
    ended: &Value,
) {
    let mut left_behind = BTreeSet::new();
    for (site, host) in hosts {
        let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
        let ingress = if shown["node_id"] == json!(fleet.b.id) {
            fleet.agent_b.ingress
        } else if shown["node_id"] == json!(fleet.c.id) {
            fleet.agent_c.ingress
        } else {
            assert_eq!(shown["node_id"], json!(fleet.a.id), "{shown}");
            left_behind.insert(site.clone());
            continue;
        };
        let served = wait_for(
            "the site on its new node",
            Duration::from_secs(60),
            async || {
                get_through(ingress, host, "/")
                    .await
                    .filter(|(status, _)| *status == 200)
            },
        )
        .await;
        assert_eq!(served.1, "hello\n", "{host}");
    }
    let named: BTreeSet<String> = ended["remaining"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["site_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(named, left_behind, "{ended}");
    let state = if left_behind.is_empty() {
        "done"
    } else {
        "incomplete"
    };
    assert_eq!(ended["state"], state, "{ended}");
    // The site that had just moved in: its first old node forwards to where it is now.
    let (_, host) = &hosts[0];
    assert_eq!(
        get_through(fleet.agent_b.ingress, host, "/").await,
        Some((200, "hello\n".into())),
        "through its first old node"
    );
}
