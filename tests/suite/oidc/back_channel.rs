//! Signing out: the panel sends the browser on to the provider with the session's ID token
//! as a hint; and the provider ends the panel's sessions (back-channel logout), with a token
//! that must check out and works once.

use serde_json::{Value, json};

use super::fake_issuer::{FakeIssuer, SUBJECT, bench, bench_on, sign_in};
use alveole_tests::{TestDb, TestPanel};

/// What a page answers with this session cookie: 200, or 303 to the sign-in page.
async fn status_with(panel: &TestPanel, cookie: &str) -> u16 {
    super::browser()
        .get(format!("{}/sites", panel.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Posts a logout token as the provider does: the status and the answer.
async fn post_logout_token(panel: &TestPanel, token: &str) -> (u16, String) {
    let response = super::browser()
        .post(format!("{}/login/oidc/back-channel-logout", panel.base))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "no-store"
    );
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// The claims of a genuine logout token of the fake issuer, changed by `change`.
fn claims(fake: &FakeIssuer, change: impl FnOnce(&mut Value)) -> Value {
    let mut claims = json!({
        "iss": fake.issuer,
        "aud": "alveole",
        "iat": chrono::Utc::now().timestamp(),
        "exp": chrono::Utc::now().timestamp() + 120,
        "jti": uuid::Uuid::now_v7().to_string(),
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    change(&mut claims);
    claims
}

#[tokio::test]
async fn the_provider_ends_the_panels_sessions_by_session_or_by_account() {
    for db in TestDb::all().await {
        provider_ends_sessions(db).await;
    }
}

async fn provider_ends_sessions(db: TestDb) {
    let (fake, db, panel) = bench_on(db, "").await;
    // Two sessions of the same account, from two sessions at the provider.
    let (_, first, _) = sign_in(&panel).await;
    fake.set(|b| b.id_token["sid"] = json!("s-2"));
    let (_, second, _) = sign_in(&panel).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(status_with(&panel, &first).await, 200);
    assert_eq!(status_with(&panel, &second).await, 200);

    // Tokens that do not check out end nothing, and say why.
    let with_sid = |c: &mut Value| c["sid"] = json!("s-1");
    for (token, says) in [
        (
            fake.forged_logout_token(&claims(&fake, with_sid)),
            "signature",
        ),
        (
            fake.logout_token(&claims(&fake, |c| {
                with_sid(c);
                c["aud"] = json!("someone-else");
            })),
            "another client",
        ),
        (
            fake.logout_token(&claims(&fake, |c| {
                with_sid(c);
                c["nonce"] = json!("n");
            })),
            "nonce",
        ),
        (
            fake.logout_token(&claims(&fake, |c| {
                with_sid(c);
                c["events"] = json!({});
            })),
            "event",
        ),
        (
            fake.logout_token(&claims(&fake, |c| {
                with_sid(c);
                c["iat"] = json!(chrono::Utc::now().timestamp() - 3600);
            })),
            "too old",
        ),
        (fake.logout_token(&claims(&fake, |_| {})), "neither"),
        (
            format!(
                "{}.{}.",
                super::fake_issuer::b64(br#"{"alg":"none"}"#),
                super::fake_issuer::b64(claims(&fake, with_sid).to_string().as_bytes())
            ),
            "unsigned",
        ),
    ] {
        let (status, answer) = post_logout_token(&panel, &token).await;
        assert_eq!(status, 400, "{says}: {answer}");
        assert!(answer.contains(says), "{says}: {answer}");
    }
    assert_eq!(status_with(&panel, &first).await, 200, "nothing ended");

    // One provider session: only the panel's session opened from it ends.
    let token = fake.logout_token(&claims(&fake, with_sid));
    assert_eq!(post_logout_token(&panel, &token).await.0, 200);
    assert_eq!(status_with(&panel, &first).await, 303);
    assert_eq!(status_with(&panel, &second).await, 200);
    // The same token again: refused.
    let (status, answer) = post_logout_token(&panel, &token).await;
    assert_eq!(status, 400);
    assert!(answer.contains("used already"), "{answer}");

    // The whole account: every session of it ends.
    let token = fake.logout_token(&claims(&fake, |c| c["sub"] = json!(SUBJECT)));
    assert_eq!(post_logout_token(&panel, &token).await.0, 200);
    assert_eq!(status_with(&panel, &second).await, 303);
    let ended = panel.events("session.delete").await;
    assert_eq!(ended.len(), 2, "each ended session is recorded");
    assert!(ended.iter().all(|e| e.actor.starts_with("oidc:")));
    db.drop_db().await;
}

#[tokio::test]
async fn signing_out_sends_the_browser_to_the_provider_with_the_id_token_as_hint() {
    let (fake, db, panel) = bench("").await;
    let (_, cookie, _) = sign_in(&panel).await;
    let cookie = cookie.unwrap();
    let id_token = fake.issued().pop().unwrap();
    // The ID token is kept for the hint, sealed.
    let kept = panel.store.sealed_id_tokens().await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(!kept[0].1.contains(&id_token) && kept[0].1.starts_with("alveole:sealed:"));
    let out = alveole_tests::sign_out(&super::browser(), &panel.base, &cookie).await;
    assert_eq!(out.status(), 200);
    let page = out.text().await.unwrap();
    assert!(page.contains(r#"http-equiv="refresh""#), "{page}");
    let leave = reqwest::Url::parse(&super::leave_link(&page)).unwrap();
    assert_eq!(
        leave.as_str().split('?').next().unwrap(),
        format!("{}/logout", fake.issuer)
    );
    let query: std::collections::HashMap<_, _> = leave.query_pairs().into_owned().collect();
    assert_eq!(query["id_token_hint"], id_token);
    assert_eq!(query["client_id"], "alveole");
    assert_eq!(
        query["post_logout_redirect_uri"],
        format!("{}/login", panel.base)
    );
    assert_eq!(status_with(&panel, &cookie).await, 303, "signed out here");
    db.drop_db().await;
}
