//! The API's resources, tokens, addresses and deletions.

use reqwest::Method;
use serde_json::json;

use super::agents::Agents;
use super::{ADMIN, Walk, id_of, node_body, site_body};

/// What the API steps made.
pub(super) struct Made {
    pub(super) provider: String,
    pub(super) member: String,
    pub(super) node: String,
    pub(super) site: String,
}

/// Each resource created and changed through the API.
pub(super) async fn api_resources(walk: &mut Walk<'_>) -> Made {
    let mut ids = Vec::new();
    for (plural, kind, body, change) in [
        (
            "providers",
            "provider",
            json!({"name": "Audit walk"}),
            json!({"notes": "changed"}),
        ),
        (
            "members",
            "member",
            json!({"display_name": "Walker", "email": "walker@example.org"}),
            json!({"display_name": "Walker Two"}),
        ),
    ] {
        let created = walk.create(&format!("/api/v1/{plural}"), body).await;
        let id = id_of(&created);
        walk.by_admin(
            "POST",
            format!("/api/v1/{plural}"),
            &format!("{kind}.create"),
            id.clone(),
        )
        .await;
        let mut change = change;
        change["version"] = created["version"].clone();
        let (status, body) = walk
            .panel
            .call(
                Method::PATCH,
                &format!("/api/v1/{plural}/{id}"),
                Some(change),
            )
            .await;
        assert_eq!(status, 200, "{plural}: {body}");
        walk.by_admin(
            "PATCH",
            format!("/api/v1/{plural}/{{id}}"),
            &format!("{kind}.update"),
            id.clone(),
        )
        .await;
        ids.push(id);
    }
    let (provider, member) = (ids[0].clone(), ids[1].clone());
    let node = walk
        .create(
            "/api/v1/nodes",
            node_body(&provider, "walk-1", "192.0.2.30", false),
        )
        .await;
    let node_id = id_of(&node);
    walk.by_admin("POST", "/api/v1/nodes", "node.create", node_id.clone())
        .await;
    let change = json!({"version": node["version"], "public_addresses": ["192.0.2.31"]});
    let path = format!("/api/v1/nodes/{node_id}");
    assert_eq!(
        walk.panel.call(Method::PATCH, &path, Some(change)).await.0,
        200
    );
    walk.by_admin(
        "PATCH",
        "/api/v1/nodes/{id}",
        "node.update",
        node_id.clone(),
    )
    .await;
    let site = walk
        .create("/api/v1/sites", site_body(&member, "walk.example.org"))
        .await;
    let site_id = id_of(&site);
    walk.by_admin("POST", "/api/v1/sites", "site.create", site_id.clone())
        .await;
    let change = json!({"version": site["version"], "http_port": 8081});
    let path = format!("/api/v1/sites/{site_id}");
    assert_eq!(
        walk.panel.call(Method::PATCH, &path, Some(change)).await.0,
        200
    );
    walk.by_admin(
        "PATCH",
        "/api/v1/sites/{id}",
        "site.update",
        site_id.clone(),
    )
    .await;
    Made {
        provider,
        member,
        node: node_id,
        site: site_id,
    }
}

/// A member's API token, made and revoked.
pub(super) async fn api_tokens(walk: &mut Walk<'_>, made: &Made) {
    let token = walk
        .create(
            &format!("/api/v1/members/{}/tokens", made.member),
            json!({"name": "walk", "scope": "read"}),
        )
        .await;
    let token_id = id_of(&token);
    walk.by_admin(
        "POST",
        "/api/v1/members/{id}/tokens",
        "api_token.create",
        token_id.clone(),
    )
    .await;
    walk.delete(&format!("/api/v1/tokens/{token_id}")).await;
    walk.by_admin(
        "DELETE",
        "/api/v1/tokens/{id}",
        "api_token.revoke",
        token_id,
    )
    .await;
}

/// Pools and allocations through the API, an address moved (forced, then started and
/// cancelled); returns the node the address moved to.
pub(super) async fn api_addresses(walk: &mut Walk<'_>, made: &Made) -> String {
    let body = json!({"provider_id": made.provider, "prefix": "198.51.100.0/28"});
    let pool_id = id_of(&walk.create("/api/v1/ip-pools", body).await);
    walk.by_admin(
        "POST",
        "/api/v1/ip-pools",
        "ip_pool.create",
        pool_id.clone(),
    )
    .await;
    let allocations = format!("/api/v1/ip-pools/{pool_id}/allocations");
    let body = json!({"node_id": made.node, "site_id": made.site});
    walk.create(&allocations, body).await;
    let first = "198.51.100.1".to_owned();
    walk.by_admin(
        "POST",
        "/api/v1/ip-pools/{id}/allocations",
        "ip.allocate",
        first.clone(),
    )
    .await;
    walk.delete(&format!("/api/v1/ip-allocations/{first}"))
        .await;
    walk.by_admin(
        "DELETE",
        "/api/v1/ip-allocations/{address}",
        "ip.release",
        first,
    )
    .await;

    let address = "198.51.100.2".to_owned();
    let body = json!({"node_id": made.node, "address": address});
    walk.create(&allocations, body).await;
    walk.by_admin(
        "POST",
        "/api/v1/ip-pools/{id}/allocations",
        "ip.allocate",
        address.clone(),
    )
    .await;
    let other = walk
        .create(
            "/api/v1/nodes",
            node_body(&made.provider, "walk-2", "192.0.2.31", true),
        )
        .await;
    let other_node = id_of(&other);
    walk.by_admin("POST", "/api/v1/nodes", "node.create", other_node.clone())
        .await;
    let move_path = format!("/api/v1/ip-allocations/{address}/move");
    let forced = json!({"to_node": other_node, "force": true});
    walk.act(&move_path, forced, 202).await;
    walk.expect(
        "POST",
        "/api/v1/ip-allocations/{address}/move",
        &[
            (ADMIN, "ip.move.start", address.clone()),
            (ADMIN, "ip.move.complete", address.clone()),
        ],
    )
    .await;
    walk.act(&move_path, json!({"to_node": made.node}), 202)
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/ip-allocations/{address}/move",
        "ip.move.start",
        address.clone(),
    )
    .await;
    walk.delete(&move_path).await;
    walk.by_admin(
        "DELETE",
        "/api/v1/ip-allocations/{address}/move",
        "ip.move.cancel",
        address.clone(),
    )
    .await;
    walk.delete(&format!("/api/v1/ip-allocations/{address}"))
        .await;
    walk.by_admin(
        "DELETE",
        "/api/v1/ip-allocations/{address}",
        "ip.release",
        address,
    )
    .await;
    walk.delete(&format!("/api/v1/ip-pools/{pool_id}")).await;
    walk.by_admin("DELETE", "/api/v1/ip-pools/{id}", "ip_pool.delete", pool_id)
        .await;
    other_node
}

/// A member disabled and enabled again, a site purged, then everything the API steps made deleted.
pub(super) async fn offboarding_and_deletions(
    walk: &mut Walk<'_>,
    made: &Made,
    agents: &Agents,
    other_node: &str,
) {
    let leaver = walk
        .create(
            "/api/v1/members",
            json!({"display_name": "Leaver", "email": "leaver@example.org"}),
        )
        .await;
    walk.pass_over(1); // its creation
    let leaver = id_of(&leaver);
    walk.act(&format!("/api/v1/members/{leaver}/disable"), json!({}), 204)
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/members/{id}/disable",
        "member.disable",
        leaver.clone(),
    )
    .await;
    walk.act(&format!("/api/v1/members/{leaver}/enable"), json!({}), 200)
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/members/{id}/enable",
        "member.enable",
        leaver,
    )
    .await;

    let purged = walk
        .create(
            "/api/v1/sites",
            site_body(&made.member, "purge.example.org"),
        )
        .await;
    walk.pass_over(1);
    let purged = id_of(&purged);
    walk.act(&format!("/api/v1/sites/{purged}/purge"), json!({}), 204)
        .await;
    walk.by_admin("POST", "/api/v1/sites/{id}/purge", "site.purge", purged)
        .await;
    for (plural, kind, id) in [
        ("sites", "site", &made.site),
        ("nodes", "node", &made.node),
        ("nodes", "node", &other_node.to_owned()),
        ("nodes", "node", &agents.node_b),
        ("members", "member", &made.member),
        ("providers", "provider", &made.provider),
    ] {
        walk.delete(&format!("/api/v1/{plural}/{id}")).await;
        walk.by_admin(
            "DELETE",
            format!("/api/v1/{plural}/{{id}}"),
            &format!("{kind}.delete"),
            id.clone(),
        )
        .await;
    }
}
