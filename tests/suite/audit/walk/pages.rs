//! The pages' forms, signing out, and break-glass.

use super::{Walk, id_of, node_body};
use crate::audit::Browser;

/// What the page steps made, and the browser they made it with.
pub(super) struct PageMade {
    pub(super) browser: Browser,
    pub(super) session: String,
    pub(super) provider: String,
    pub(super) member: String,
    pub(super) node: String,
    pub(super) site: String,
}

pub(super) fn node_form(provider: &str, name: &str) -> Vec<(&'static str, String)> {
    [
        ("name", name),
        ("provider_id", provider),
        ("public_addresses", "192.0.2.40"),
        ("capacity.cpu_millis", "8"),
        ("capacity.memory_bytes", "17179869184"),
        ("capacity.disk_bytes", "536870912000"),
        ("overcommit.cpu", "1"),
        ("overcommit.memory", "1"),
    ]
    .map(|(field, value)| (field, value.to_owned()))
    .to_vec()
}

pub(super) fn site_form(member: &str, domain: &str) -> Vec<(&'static str, String)> {
    [
        ("primary_domain", domain),
        ("owner_id", member),
        ("image", "registry.example.org/s:1"),
        ("http_port", "8080"),
        ("limits.cpu_millis", "0.5"),
        ("limits.memory_bytes", "268435456"),
        ("limits.pids", "64"),
        ("limits.request_body_bytes", "64M"),
        ("volume.quota_bytes", "1073741824"),
        ("volume.mount_path", "/data"),
        ("phase", "running"),
    ]
    .map(|(field, value)| (field, value.to_owned()))
    .to_vec()
}

pub(super) fn borrowed<'f>(form: &'f [(&'static str, String)]) -> Vec<(&'static str, &'f str)> {
    form.iter()
        .map(|(field, value)| (*field, value.as_str()))
        .collect()
}

/// Signing in, then one of each resource created through the pages' forms.
pub(super) async fn page_resources(walk: &mut Walk<'_>) -> PageMade {
    let (browser, status) = Browser::sign_in(walk.panel).await;
    assert_eq!(status, 303);
    let session = walk.next_target().await;
    walk.by_admin("POST", "/login", "session.create", session.clone())
        .await;
    let (_, provider) = browser
        .submit("/providers/new", &[("name", "Page walk")])
        .await;
    walk.by_admin(
        "POST",
        "/providers/new",
        "provider.create",
        provider.clone(),
    )
    .await;
    let member_form = [
        ("display_name", "Page walker"),
        ("email", "pw@example.org"),
        ("role", "member"),
    ];
    let (_, member) = browser.submit("/members/new", &member_form).await;
    walk.by_admin("POST", "/members/new", "member.create", member.clone())
        .await;
    let form = node_form(&provider, "page-1");
    let (_, node) = browser.submit("/nodes/new", &borrowed(&form)).await;
    walk.by_admin("POST", "/nodes/new", "node.create", node.clone())
        .await;
    let form = site_form(&member, "page.example.org");
    let (_, site) = browser.submit("/sites/new", &borrowed(&form)).await;
    walk.by_admin("POST", "/sites/new", "site.create", site.clone())
        .await;
    PageMade {
        browser,
        session,
        provider,
        member,
        node,
        site,
    }
}

/// Each resource's edit form, and a node's join token from its page.
pub(super) async fn page_edits(walk: &mut Walk<'_>, made: &PageMade) {
    // A site changes node by a move, not by an edit: the edit names the node it is on.
    let placed_on = walk
        .panel
        .get(&format!("/api/v1/sites/{}", made.site))
        .await
        .1["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut site = site_form(&made.member, "page2.example.org");
    site.push(("node_id", placed_on));
    let member = [
        ("display_name", "Page walker 2"),
        ("email", "pw@example.org"),
        ("role", "member"),
    ]
    .map(|(field, value)| (field, value.to_owned()))
    .to_vec();
    for (plural, kind, id, mut form) in [
        (
            "providers",
            "provider",
            &made.provider,
            vec![("name", "Page walk 2".to_owned())],
        ),
        ("members", "member", &made.member, member),
        (
            "nodes",
            "node",
            &made.node,
            node_form(&made.provider, "page-2"),
        ),
        ("sites", "site", &made.site, site),
    ] {
        form.push(("version", "1".to_owned()));
        made.browser
            .submit(&format!("/{plural}/{id}/edit"), &borrowed(&form))
            .await;
        walk.by_admin(
            "POST",
            format!("/{plural}/{{id}}/edit"),
            &format!("{kind}.update"),
            id.clone(),
        )
        .await;
    }
    made.browser
        .submit(&format!("/nodes/{}/join-token", made.node), &[])
        .await;
    walk.by_admin(
        "POST",
        "/nodes/{id}/join-token",
        "node.join_token",
        made.node.clone(),
    )
    .await;
}

/// The addresses page's forms: a pool, an allocation, a move started and cancelled, a release.
pub(super) async fn page_addresses(walk: &mut Walk<'_>, made: &PageMade) {
    let browser = &made.browser;
    let pool_form = [
        ("provider_id", made.provider.as_str()),
        ("prefix", "198.51.100.16/28"),
    ];
    browser.submit("/addresses/pools", &pool_form).await;
    let pool_id = walk.store.ip_pools().await.unwrap()[0].0.id.to_string();
    walk.by_admin(
        "POST",
        "/addresses/pools",
        "ip_pool.create",
        pool_id.clone(),
    )
    .await;
    let allocation = [("pool_id", pool_id.as_str()), ("node_id", &made.node)];
    browser.submit("/addresses/allocations", &allocation).await;
    let address = "198.51.100.17".to_owned();
    walk.by_admin(
        "POST",
        "/addresses/allocations",
        "ip.allocate",
        address.clone(),
    )
    .await;
    let spare = walk
        .create(
            "/api/v1/nodes",
            node_body(&made.provider, "page-spare", "192.0.2.32", true),
        )
        .await;
    let spare = id_of(&spare);
    walk.by_admin("POST", "/api/v1/nodes", "node.create", spare.clone())
        .await;
    let allocation = format!("/addresses/allocations/{address}");
    browser
        .submit(&format!("{allocation}/move"), &[("to_node", &spare)])
        .await;
    walk.by_admin(
        "POST",
        "/addresses/allocations/{address}/move",
        "ip.move.start",
        address.clone(),
    )
    .await;
    browser
        .submit(&format!("{allocation}/cancel-move"), &[])
        .await;
    walk.by_admin(
        "POST",
        "/addresses/allocations/{address}/cancel-move",
        "ip.move.cancel",
        address.clone(),
    )
    .await;
    walk.delete(&format!("/api/v1/nodes/{spare}")).await;
    walk.by_admin("DELETE", "/api/v1/nodes/{id}", "node.delete", spare)
        .await;
    browser.submit(&format!("{allocation}/release"), &[]).await;
    walk.by_admin(
        "POST",
        "/addresses/allocations/{address}/release",
        "ip.release",
        address,
    )
    .await;
    // The provider can go afterwards.
    walk.delete(&format!("/api/v1/ip-pools/{pool_id}")).await;
    walk.by_admin("DELETE", "/api/v1/ip-pools/{id}", "ip_pool.delete", pool_id)
        .await;
}

/// A checkpoint signed from the audit page, each resource deleted from its page, signing out.
pub(super) async fn page_deletions(walk: &mut Walk<'_>, made: &PageMade) {
    let head = walk.store.audit_head().await.unwrap().length;
    made.browser.submit("/audit/checkpoints", &[]).await;
    walk.by_admin(
        "POST",
        "/audit/checkpoints",
        "audit.checkpoint",
        head.to_string(),
    )
    .await;
    for (plural, kind, id) in [
        ("sites", "site", &made.site),
        ("nodes", "node", &made.node),
        ("members", "member", &made.member),
        ("providers", "provider", &made.provider),
    ] {
        made.browser
            .submit(&format!("/{plural}/{id}/delete"), &[("version", "2")])
            .await;
        walk.by_admin(
            "POST",
            format!("/{plural}/{{id}}/delete"),
            &format!("{kind}.delete"),
            id.clone(),
        )
        .await;
    }
    made.browser.submit("/logout", &[]).await;
    walk.by_admin("POST", "/logout", "session.delete", made.session.clone())
        .await;
    // A back-channel logout on a panel without an identity provider: refused, nothing
    // recorded. (With one, each session it ends is a `session.delete` by `oidc:<subject>`:
    // `oidc::back_channel`.)
    let refused = made
        .browser
        .http
        .post(format!(
            "{}/login/oidc/back-channel-logout",
            walk.panel.base
        ))
        .form(&[("logout_token", "a.b.c")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    walk.expect("POST", "/login/oidc/back-channel-logout", &[])
        .await;
}

/// Break-glass: issued on the panel's host, used in a browser.
pub(super) async fn break_glass(walk: &mut Walk<'_>, browser: &Browser) {
    let link = alveole_panel::auth::issue_break_glass(
        walk.store.as_ref(),
        &walk.panel.base,
        chrono::Duration::minutes(10),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let prefix = |secret: &str| -> String {
        alveole_panel::auth::hash_token(secret)
            .chars()
            .take(12)
            .collect()
    };
    walk.pass_over(1); // its issue: ("system:admin-cli", "break_glass.issue")
    let used = browser
        .http
        .post(format!("{}/break-glass", walk.panel.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 303);
    let session = used.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    let glass = alveole_panel::auth::BREAK_GLASS_ACTOR;
    walk.expect(
        "POST",
        "/break-glass",
        &[
            (glass, "break_glass.use", prefix(&token)),
            (glass, "session.create", prefix(&session)),
        ],
    )
    .await;
}
