//! Signing in through a real OpenID Connect provider (oidc-provider-mock from PyPI, started
//! on loopback), through its own login form and the panel's production callback; through an
//! issuer the test controls (`fake_issuer`), for what a provider may get wrong. LemonLDAP::NG,
//! in a browser, is in `browser::lemonldap`.

mod back_channel;
mod claims;
mod fake_issuer;
mod refusals;

use alveole_panel::oidc::{OidcConfig, parse_roles};
use alveole_tests::{OidcProvider, TestDb, TestPanel};
use serde_json::json;

/// A browser without a browser: follows nothing by itself.
pub(super) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(super) fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The authorization code in a callback URL.
pub(super) fn code_in(callback: &str) -> String {
    callback
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_else(|| panic!("no code in {callback}"))
        .to_owned()
}

/// Where the signed-out page sends the browser on to (the provider's end-session address).
pub(super) fn leave_link(html: &str) -> String {
    let escaped = html
        .split(r#"id="leave-provider" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no link on to the provider: {html}"));
    escaped
        .replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Goes to the provider from the panel and signs in there as `sub`: the callback URL the
/// provider sends the browser back to.
async fn sign_in_at_provider(panel: &TestPanel, sub: &str) -> String {
    let http = browser();
    let start = http
        .get(format!("{}/login/oidc", panel.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "to the provider");
    let authorize = location(&start);
    let login_page = http.get(&authorize).send().await.unwrap();
    assert_eq!(login_page.status(), 200, "the provider's own login page");
    let answered = http
        .post(&authorize)
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap();
    assert!(answered.status().is_redirection(), "{}", answered.status());
    let callback = location(&answered);
    assert!(
        callback.starts_with(&format!("{}/login/oidc/callback?", panel.base)),
        "{callback}"
    );
    callback
}

#[tokio::test]
async fn members_sign_in_through_the_identity_provider_with_the_role_its_groups_give() {
    let users = [
        json!({"sub": "ana-at-idp", "email": "ana@example.org", "email_verified": true, "groups": ["board"]}),
        json!({"sub": "ben-at-idp", "email": "ben@example.org", "email_verified": false}),
    ];
    let Some(provider) = OidcProvider::start(&users).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let issuer = provider.issuer.clone();
    let panel = TestPanel::start_with_oidc(&db, |base| OidcConfig {
        issuer,
        client_id: "alveole".into(),
        client_secret: Some("not-a-secret".into()),
        scopes: vec!["email".into(), "profile".into()],
        groups_claim: "groups".into(),
        roles: parse_roles("board=auditor,coop-admins=admin").unwrap(),
        redirect_url: format!("{base}/login/oidc/callback"),
    })
    .await;
    let (_, ana) = panel.seed().await; // ana@exemple.org: not her address
    let _ = ana;
    for (name, email) in [("Ana", "ana@example.org"), ("Ben", "ben@example.org")] {
        let (status, member) = panel
            .post(
                "/api/v1/members",
                json!({"display_name": name, "email": email}),
            )
            .await;
        assert_eq!(status, 201, "{member}");
    }
    let login_page = reqwest::get(format!("{}/login", panel.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login_page.contains("/login/oidc"), "the page offers it");

    // Ana: linked by her verified address, an auditor as her groups say.
    let callback = sign_in_at_provider(&panel, "ana-at-idp").await;
    let http = browser();
    let back = http.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 303, "{:?}", back.text().await);
    let cookie = back.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |path: &str| {
        let request = http
            .get(format!("{}{path}", panel.base))
            .header("cookie", &cookie);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(page("/").await, 200, "an auditor's dashboard");
    assert_eq!(page("/audit").await, 200);
    assert_eq!(page("/providers/new").await, 403, "auditors change nothing");
    let events = panel.store.audit_events(0, 1000).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"member.link_identity"), "{actions:?}");
    let role_change = events
        .iter()
        .rev()
        .find(|e| e.action == "member.update")
        .unwrap();
    assert_eq!(role_change.after.as_ref().unwrap()["role"], "auditor");

    // Signing out leaves the provider's session too, then comes back to the panel.
    let out = alveole_tests::sign_out(&http, &panel.base, &cookie).await;
    assert_eq!(out.status(), 200, "a page that leads on to the provider");
    let next = leave_link(&out.text().await.unwrap());
    assert!(
        next.starts_with(&format!("{}/oauth2/end_session?", provider.issuer))
            && next.contains("client_id=alveole")
            && next.contains("id_token_hint=")
            && next.contains("post_logout_redirect_uri="),
        "{next}"
    );
    assert_eq!(page("/sites").await, 303, "the panel's session ended");

    // The same answer again (a replay): refused, no session.
    let replay = http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.headers().get("set-cookie").is_none());

    // Missing or unknown state: refused before anything else.
    let code = code_in(&callback);
    for query in [format!("code={code}"), format!("code={code}&state=forged")] {
        let refused = http
            .get(format!("{}/login/oidc/callback?{query}", panel.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{query}");
    }

    // Ana again: the same member, no second link.
    let callback = sign_in_at_provider(&panel, "ana-at-idp").await;
    assert_eq!(http.get(&callback).send().await.unwrap().status(), 303);
    let links = panel.events("member.link_identity").await.len();
    assert_eq!(links, 1);

    // Ben's address is not verified at the provider: no member for him.
    let callback = sign_in_at_provider(&panel, "ben-at-idp").await;
    let refused = http.get(&callback).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("set-cookie").is_none());
    drop(provider);
    db.drop_db().await;
}
