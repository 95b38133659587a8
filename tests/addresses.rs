//! The co-op's addresses: pools at providers, allocations to nodes and sites, never twice.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

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
