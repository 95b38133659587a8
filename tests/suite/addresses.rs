//! The co-op's addresses: pools at providers, allocations to nodes and sites, never twice.

use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn pools_hand_out_each_address_once_and_say_what_is_free() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let (_, node_view) = panel.get(&format!("/api/v1/nodes/{node}")).await;
        let provider = node_view["provider_id"].as_str().unwrap().to_owned();
        let pool = |prefix: &str| {
            panel.post(
                "/api/v1/ip-pools",
                json!({"provider_id": provider, "prefix": prefix}),
            )
        };
        let (status, created) = pool("203.0.113.0/29").await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(
            (created["usable"].as_u64(), created["free"].as_u64()),
            (Some(6), Some(6))
        );
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, refused) = pool("203.0.113.4/30").await;
        assert_eq!(status, 409, "overlap: {refused}");
        let (status, refused) = pool("203.0.113.1/29").await;
        assert_eq!(status, 400, "host bits: {refused}");
        assert_eq!(refused["errors"][0]["code"], "prefix.host_bits");
        let (status, v6) = pool("2001:db8:10::/64").await;
        assert_eq!(status, 201, "{v6}");

        // The first free address, then a chosen one; never one twice, never one outside.
        let allocations = format!("/api/v1/ip-pools/{id}/allocations");
        let allocate = |body: serde_json::Value| panel.post(&allocations, body);
        let (status, first) = allocate(json!({"node_id": node})).await;
        assert_eq!(
            (status, first["address"].as_str()),
            (201, Some("203.0.113.1"))
        );
        let (status, chosen) = allocate(json!({"node_id": node, "address": "203.0.113.5"})).await;
        assert_eq!(
            (status, chosen["address"].as_str()),
            (201, Some("203.0.113.5"))
        );
        let (status, twice) = allocate(json!({"node_id": node, "address": "203.0.113.5"})).await;
        assert_eq!(status, 409, "{twice}");
        for outside in ["203.0.113.0", "203.0.113.7", "198.51.100.1"] {
            let (status, _) = allocate(json!({"node_id": node, "address": outside})).await;
            assert_eq!(status, 409, "{outside}");
        }
        // Concurrent requests for one address: exactly one gets it.
        let mut racers = Vec::new();
        for _ in 0..10 {
            let (http, url, token) = (
                panel.http.clone(),
                format!("{}/api/v1/ip-pools/{id}/allocations", panel.base),
                panel.token.clone(),
            );
            let body = json!({"node_id": node, "address": "203.0.113.6"});
            racers.push(tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                201 => won += 1,
                409 => {}
                other => panic!("{other}"),
            }
        }
        assert_eq!(won, 1, "{}", db.backend());

        // A dedicated address is on its site's node.
        let (status, site) = panel
            .post(
                "/api/v1/sites",
                json!({"owner_id": member, "primary_domain": "dedicated.example.org", "image": "registry.example.org/s:1"}),
            )
            .await;
        assert_eq!(status, 201);
        let (status, dedicated) = allocate(json!({"node_id": node, "site_id": site["id"]})).await;
        assert_eq!(status, 201, "{dedicated}");
        assert_eq!(dedicated["site_id"], site["id"]);

        let page = panel.page("/addresses").await;
        assert!(
            page.contains("203.0.113.0&#x2F;29") && page.contains("203.0.113.6"),
            "{page}"
        );
        let inventory = panel.page("/inventory").await;
        // (As HTML: tera escapes the slash of a prefix.)
        assert!(
            inventory.contains("203.0.113.0&#x2F;29") && inventory.contains("203.0.113.6"),
            "{inventory}"
        );
        let (_, pools) = panel.get("/api/v1/ip-pools").await;
        let ours = pools
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id.as_str())
            .unwrap();
        assert_eq!(
            (ours["used"].as_u64(), ours["free"].as_u64()),
            (Some(4), Some(2))
        );
        let (status, _) = panel
            .call(Method::DELETE, &format!("/api/v1/ip-pools/{id}"), None)
            .await;
        assert_eq!(status, 409, "addresses are still allocated");
        let (status, _) = panel
            .call(Method::DELETE, "/api/v1/ip-allocations/203.0.113.5", None)
            .await;
        assert_eq!(status, 204);
        let (status, _) = panel
            .call(Method::DELETE, "/api/v1/ip-allocations/203.0.113.5", None)
            .await;
        assert_eq!(status, 404);
        let (status, again) = allocate(json!({"node_id": node, "address": "203.0.113.5"})).await;
        assert_eq!(status, 201, "released, it can go again: {again}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_sites_exposed_ports_and_dedicated_address_reach_its_nodes_desired_state() {
    for db in TestDb::all().await {
        let backend = db.backend();
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let node_id = node.parse().unwrap();
        let site = |ports: serde_json::Value, tier: &str| {
            json!({"owner_id": member, "primary_domain": "ports.example.org",
                   "image": "registry.example.org/coop/site:1",
                   "exposed_ports": ports, "limit_tier": tier})
        };
        // Bad input: a clear error for each field, and nothing stored.
        for (ports, tier, field) in [
            (
                json!([{"protocol": "tcp", "port": 443, "container_port": 8443}]),
                "standard",
                "exposed_ports[0]",
            ),
            (
                json!([{"protocol": "tcp", "port": 2222, "container_port": 22},
                       {"protocol": "tcp", "port": 2222, "container_port": 23}]),
                "standard",
                "exposed_ports[1]",
            ),
        ] {
            let (status, refused) = panel.post("/api/v1/sites", site(ports, tier)).await;
            assert_eq!(status, 400, "{backend}: {refused}");
            assert_eq!(refused["errors"][0]["field"], field, "{backend}: {refused}");
        }
        let (status, refused) = panel
            .post(
                "/api/v1/sites",
                site(
                    json!([{"protocol": "sctp; drop", "port": 1, "container_port": 1}]),
                    "standard",
                ),
            )
            .await;
        assert!(
            status == 400 || status == 422,
            "{backend}: {status} {refused}"
        );
        let (status, refused) = panel.post("/api/v1/sites", site(json!([]), "huge")).await;
        assert!(
            status == 400 || status == 422,
            "{backend}: {status} {refused}"
        );
        assert!(
            panel
                .store
                .desired_state(node_id)
                .await
                .unwrap()
                .sites
                .is_empty(),
            "{backend}: nothing stored"
        );

        let (status, created) = panel
            .post(
                "/api/v1/sites",
                site(
                    json!([{"protocol": "udp", "port": 5353, "container_port": 53},
                           {"protocol": "tcp", "port": 2222, "container_port": 22}]),
                    "large",
                ),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {created}");
        assert_eq!(created["limit_tier"], "large");
        assert_eq!(created["exposed_ports"][0]["protocol"], "tcp", "sorted");
        let site_id = created["id"].as_str().unwrap().to_owned();

        let before = panel.store.desired_state(node_id).await.unwrap();
        assert!(before.specs()[0].dedicated_addresses.is_empty());
        let (_, node_view) = panel.get(&format!("/api/v1/nodes/{node}")).await;
        let (_, pool) = panel
            .post(
                "/api/v1/ip-pools",
                json!({"provider_id": node_view["provider_id"], "prefix": "203.0.113.0/29"}),
            )
            .await;
        let (status, allocated) = panel
            .post(
                &format!(
                    "/api/v1/ip-pools/{}/allocations",
                    pool["id"].as_str().unwrap()
                ),
                json!({"node_id": node, "site_id": site_id}),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {allocated}");

        let after = panel.store.desired_state(node_id).await.unwrap();
        assert!(
            after.generation > before.generation,
            "{backend}: the node hears of its new address"
        );
        let spec = &after.specs()[0];
        assert_eq!(
            spec.dedicated_addresses,
            ["203.0.113.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(spec.exposed_ports.len(), 2);
        assert_eq!(spec.limit_tier, alveole_model::LimitTier::Large);

        let (status, _) = panel
            .call(Method::DELETE, "/api/v1/ip-allocations/203.0.113.1", None)
            .await;
        assert_eq!(status, 204, "{backend}");
        let released = panel.store.desired_state(node_id).await.unwrap();
        assert!(released.generation > after.generation, "{backend}");
        assert!(
            released.specs()[0].dedicated_addresses.is_empty(),
            "{backend}"
        );
        db.drop_db().await;
    }
}

/// A node's report as its agent sends it, with the addresses its uplink shows.
fn report(generation: u64, addresses: &[&str]) -> serde_json::Value {
    json!({
        "generation": generation, "sites": [], "agent_version": "test",
        "resources": {"cpus": 2, "load_1m": 0.1, "memory_total_bytes": 2, "memory_available_bytes": 1,
                      "disk_total_bytes": 2, "disk_available_bytes": 1},
        "addresses": addresses,
    })
}

#[tokio::test]
async fn an_address_moves_to_its_new_node_only_once_the_old_one_lets_it_go() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let scene = AddressScene::new(&panel, db.backend()).await;
        refused_address_moves_change_nothing(&panel, &scene).await;
        let release = the_old_node_lets_go_then_the_provider_routes_it(&panel, &scene).await;
        the_move_is_audited_in_order(&panel, &scene).await;
        a_forced_move_retries_and_a_cancelled_one_gives_back(&panel, &scene, release).await;
        db.drop_db().await;
    }
}

/// Two nodes; 203.0.113.1 allocated to the old one, whose agent the test plays.
struct AddressScene {
    backend: &'static str,
    old: String,
    new: String,
    old_id: alveole_model::NodeId,
    new_id: alveole_model::NodeId,
    member: String,
    /// The pool's allocations route.
    allocations: String,
    address: std::net::IpAddr,
    /// The old node's agent, and where it reports.
    agent: reqwest::Client,
    status_url: String,
}

const MOVE_PATH: &str = "/api/v1/ip-allocations/203.0.113.1/move";

impl AddressScene {
    async fn new(panel: &TestPanel, backend: &'static str) -> AddressScene {
        let (old, member) = panel.seed().await;
        let (_, old_view) = panel.get(&format!("/api/v1/nodes/{old}")).await;
        let (status, new) = panel
            .post(
                "/api/v1/nodes",
                json!({
                    "provider_id": old_view["provider_id"], "name": "node-2", "public_addresses": ["192.0.2.11"],
                    "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 500u64 << 30}
                }),
            )
            .await;
        assert_eq!(status, 201, "{backend}: {new}");
        let new = new["id"].as_str().unwrap().to_owned();
        let (_, pool) = panel
            .post(
                "/api/v1/ip-pools",
                json!({"provider_id": old_view["provider_id"], "prefix": "203.0.113.0/29"}),
            )
            .await;
        let allocations = format!(
            "/api/v1/ip-pools/{}/allocations",
            pool["id"].as_str().unwrap()
        );
        let body = json!({"node_id": old, "address": "203.0.113.1"});
        let (status, _) = panel.post(&allocations, body).await;
        assert_eq!(status, 201, "{backend}");
        let address: std::net::IpAddr = "203.0.113.1".parse().unwrap();
        let old_id = old.parse().unwrap();
        let held = panel.store.desired_state(old_id).await.unwrap();
        assert_eq!(held.addresses, [address], "{backend}");
        let agent = panel.agent_http(&panel.enrol(&old).await);
        AddressScene {
            backend,
            new_id: new.parse().unwrap(),
            old,
            new,
            old_id,
            member,
            allocations,
            address,
            agent,
            status_url: format!("{}/api/v1/agent/status", panel.agent_base),
        }
    }

    /// The old node's agent reports the generation it applied and its uplink's addresses.
    async fn report(&self, generation: u64, addresses: &[&str]) {
        let response = self
            .agent
            .post(&self.status_url)
            .json(&report(generation, addresses))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }
}

/// Refused: to its own node, to an unknown node, a bad address, a dedicated address whose
/// site runs elsewhere. Nothing changes.
async fn refused_address_moves_change_nothing(panel: &TestPanel, scene: &AddressScene) {
    let AddressScene {
        backend, old, new, ..
    } = scene;
    let (status, refused) = panel.post(MOVE_PATH, json!({"to_node": old})).await;
    assert_eq!(status, 409, "{backend}: {refused}");
    assert_eq!(refused["errors"][0]["code"], "address.same_node");
    let unknown = uuid::Uuid::now_v7();
    let (status, _) = panel.post(MOVE_PATH, json!({"to_node": unknown})).await;
    assert_eq!(status, 404, "{backend}");
    let (status, _) = panel
        .post(
            "/api/v1/ip-allocations/203.0.113.x/move",
            json!({"to_node": new}),
        )
        .await;
    assert_eq!(status, 400, "{backend}");
    let (_, site) = panel
        .post(
            "/api/v1/sites",
            json!({"owner_id": scene.member, "primary_domain": "moving.example.org", "image": "registry.example.org/s:1", "node_id": old}),
        )
        .await;
    let (status, dedicated) = panel
        .post(
            &scene.allocations,
            json!({"node_id": old, "site_id": site["id"], "address": "203.0.113.2"}),
        )
        .await;
    assert_eq!(status, 201, "{backend}: {dedicated}");
    let (status, refused) = panel
        .post(
            "/api/v1/ip-allocations/203.0.113.2/move",
            json!({"to_node": new}),
        )
        .await;
    assert_eq!(status, 409, "{backend}: {refused}");
    assert_eq!(refused["errors"][0]["code"], "address.site_elsewhere");
    assert!(panel.store.address_moves().await.unwrap().is_empty());
}

/// The old node loses the address at once and the new one does not have it yet; only a
/// report that applied the release generation and no longer shows the address finishes the
/// move, and a provider that refuses at first keeps it waiting, with the reason shown.
/// Returns the release generation.
async fn the_old_node_lets_go_then_the_provider_routes_it(
    panel: &TestPanel,
    scene: &AddressScene,
) -> u64 {
    let AddressScene {
        backend, address, ..
    } = scene;
    let new = &scene.new;
    let (status, moving) = panel.post(MOVE_PATH, json!({"to_node": new})).await;
    assert_eq!(status, 202, "{backend}: {moving}");
    let (status, again) = panel.post(MOVE_PATH, json!({"to_node": new})).await;
    assert_eq!(status, 409, "{backend}: one move at a time: {again}");
    let release = panel.store.desired_state(scene.old_id).await.unwrap();
    assert_eq!(moving["release_generation"], release.generation);
    assert!(!release.addresses.contains(address), "{backend}");
    let before = panel.store.desired_state(scene.new_id).await.unwrap();
    assert!(before.addresses.is_empty(), "{backend}");

    let generation = release.generation;
    let still_held = ["192.0.2.10", "203.0.113.1"];
    scene.report(generation - 1, &still_held).await;
    scene.report(generation, &still_held).await;
    let (_, pending) = panel.get("/api/v1/address-moves").await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "{backend}: {pending}");
    assert!(panel.provider.calls().is_empty(), "{backend}");

    panel.provider.refuse(Some("quota exceeded"));
    scene.report(generation, &["192.0.2.10"]).await;
    let (_, pending) = panel.get("/api/v1/address-moves").await;
    let reason = pending[0]["last_error"].as_str().unwrap();
    assert!(reason.contains("quota exceeded"), "{backend}: {pending}");
    let page = panel.page("/addresses").await;
    assert!(
        page.contains("quota exceeded"),
        "{backend}: shown on the page"
    );
    panel.provider.refuse(None);
    scene.report(generation, &["192.0.2.10"]).await;
    let (_, pending) = panel.get("/api/v1/address-moves").await;
    assert_eq!(pending, json!([]), "{backend}");
    let calls = panel.provider.calls();
    assert_eq!(calls.len(), 1, "{backend}");
    assert_eq!(
        (calls[0].address, calls[0].node.to_string()),
        (*address, new.clone())
    );
    let after = panel.store.desired_state(scene.new_id).await.unwrap();
    assert!(after.generation > before.generation, "{backend}");
    assert_eq!(after.addresses, [*address], "{backend}");
    let (_, listed) = panel.get("/api/v1/ip-allocations").await;
    let moved = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "203.0.113.1")
        .unwrap();
    assert_eq!(moved["node_id"], new.as_str(), "{backend}");
    generation
}

/// Audited in order: started by the admin, then completed by the failover with how long it
/// took.
async fn the_move_is_audited_in_order(panel: &TestPanel, scene: &AddressScene) {
    let backend = scene.backend;
    let (_, audit) = panel
        .get("/api/v1/audit/events?target_kind=ip_address&target_id=203.0.113.1")
        .await;
    let mut events: Vec<serde_json::Value> = audit["items"].as_array().unwrap().clone();
    events.sort_by_key(|e| e["seq"].as_i64());
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["ip.allocate", "ip.move.start", "ip.move.complete"],
        "{backend}"
    );
    assert_eq!(events[2]["actor"], "system:failover", "{backend}");
    assert_eq!(
        events[2]["after"]["node_id"],
        scene.new.as_str(),
        "{backend}"
    );
    assert!(events[2]["after"]["took_ms"].is_i64(), "{backend}");
}

/// Forced back (the new node is gone): finished at once when the provider routes it. It
/// refuses at first: the move waits, and any node's next report tries again. Then a move
/// cancelled gives the address back to its old node.
async fn a_forced_move_retries_and_a_cancelled_one_gives_back(
    panel: &TestPanel,
    scene: &AddressScene,
    release: u64,
) {
    let AddressScene {
        backend, address, ..
    } = scene;
    panel.provider.refuse(Some("api down"));
    let (status, forced) = panel
        .post(MOVE_PATH, json!({"to_node": scene.old, "force": true}))
        .await;
    assert_eq!(status, 202, "{backend}: {forced}");
    assert!(
        forced["last_error"].as_str().unwrap().contains("api down"),
        "{backend}: {forced}"
    );
    assert_eq!(panel.provider.calls().len(), 1, "{backend}");
    panel.provider.refuse(None);
    scene.report(release, &["192.0.2.10"]).await;
    assert_eq!(panel.provider.calls().len(), 2, "{backend}");
    assert_eq!(
        panel
            .store
            .desired_state(scene.old_id)
            .await
            .unwrap()
            .addresses,
        [*address, "203.0.113.2".parse().unwrap()],
        "{backend}"
    );
    let (status, _) = panel.post(MOVE_PATH, json!({"to_node": scene.new})).await;
    assert_eq!(status, 202, "{backend}");
    let (status, _) = panel.call(Method::DELETE, MOVE_PATH, None).await;
    assert_eq!(status, 204, "{backend}");
    let (status, _) = panel.call(Method::DELETE, MOVE_PATH, None).await;
    assert_eq!(status, 404, "{backend}");
    let held = panel.store.desired_state(scene.old_id).await.unwrap();
    assert!(held.addresses.contains(address), "{backend}");
}
