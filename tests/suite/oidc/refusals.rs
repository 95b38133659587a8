//! ID tokens that must open no session, each refused with its cause named; a code used once;
//! a missing or forged state.

use super::fake_issuer::{Forgery, bench, callback_url, land, sign_in};

/// The issuer spoils its token with `forgery`: 401, no session, a page whose text contains
/// `says`; a genuine token, for contrast, opens one.
async fn refused(forgery: Forgery, says: &str) {
    let (fake, db, panel) = bench("").await;
    fake.set(|b| b.forgery = forgery);
    let (status, cookie, page) = sign_in(&panel).await;
    assert_eq!((status, cookie), (401, None), "{forgery:?}: {page}");
    assert!(
        page.contains(says),
        "{forgery:?} should say {says:?}: {page}"
    );
    fake.set(|b| b.forgery = Forgery::None);
    let (status, cookie, _) = sign_in(&panel).await;
    assert_eq!((status, cookie.is_some()), (303, true), "genuine");
    db.drop_db().await;
}

#[tokio::test]
async fn an_id_token_signed_with_another_key_opens_no_session() {
    refused(Forgery::BadSignature, "signature").await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_opens_no_session() {
    refused(Forgery::WrongIssuer, "impostor.example.org").await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_opens_no_session() {
    refused(Forgery::WrongAudience, "for another client").await;
}

#[tokio::test]
async fn an_expired_id_token_opens_no_session() {
    refused(Forgery::Expired, "clocks").await;
}

#[tokio::test]
async fn an_id_token_from_a_clock_ahead_opens_no_session() {
    refused(Forgery::FromTheFuture, "in the future").await;
}

#[tokio::test]
async fn an_id_token_with_a_replayed_nonce_opens_no_session() {
    refused(Forgery::OtherNonce, "nonce").await;
}

#[tokio::test]
async fn an_unsigned_id_token_opens_no_session_and_says_so() {
    refused(Forgery::Unsigned, "unsigned").await;
}

#[tokio::test]
async fn an_id_token_signed_with_an_unknown_algorithm_says_which() {
    refused(Forgery::UnknownAlgorithm, "ES256K").await;
}

/// Clocks a little apart (within the leeway) do not refuse anyone.
#[tokio::test]
async fn a_token_expired_within_the_leeway_opens_a_session() {
    let (fake, db, panel) = bench("").await;
    fake.set(|b| b.forgery = Forgery::ExpiredWithinLeeway);
    let (status, cookie, page) = sign_in(&panel).await;
    assert_eq!((status, cookie.is_some()), (303, true), "{page}");
    db.drop_db().await;
}

#[tokio::test]
async fn an_authorization_code_works_once() {
    let (_fake, db, panel) = bench("").await;
    let genuine = callback_url(&panel).await;
    let used_code = super::code_in(&genuine);
    assert_eq!(land(&genuine).await.0, 303);
    // A fresh sign-in whose answer carries the used code: the second exchange fails.
    let fresh = callback_url(&panel).await;
    let state = fresh.split("state=").nth(1).unwrap().to_owned();
    let reused = format!(
        "{}/login/oidc/callback?code={used_code}&state={state}",
        panel.base
    );
    let (status, cookie, page) = land(&reused).await;
    assert_eq!((status, cookie), (401, None));
    assert!(page.contains("invalid_grant"), "{page}");
    let sessions = panel.events("session.create").await.len();
    assert_eq!(sessions, 1, "only the genuine sign-in opened a session");
    db.drop_db().await;
}

#[tokio::test]
async fn a_missing_or_wrong_state_opens_no_session() {
    let (_fake, db, panel) = bench("").await;
    let genuine = callback_url(&panel).await;
    let code = super::code_in(&genuine);
    for query in [format!("code={code}"), format!("code={code}&state=forged")] {
        let url = format!("{}/login/oidc/callback?{query}", panel.base);
        let (status, cookie, _) = land(&url).await;
        assert_eq!((status, cookie), (400, None), "{query}");
    }
    db.drop_db().await;
}

/// A provider whose discovery names another issuer (here the same with a trailing slash,
/// LemonLDAP::NG's form) stops the panel at start with the setting to use; one that cannot
/// be reached lets it start.
#[tokio::test]
async fn a_wrong_issuer_is_refused_at_start_with_what_to_set() {
    let (fake, db, panel) = bench("").await;
    let slashed = format!("{}/", fake.issuer);
    fake.set(|b| b.discovery_issuer = Some(slashed.clone()));
    let oidc = std::sync::Arc::new(
        alveole_panel::oidc::Oidc::new(panel.oidc_config().unwrap().clone()).unwrap(),
    );
    let why = oidc.check_at_start().await.unwrap_err();
    assert!(why.contains(&format!("--oidc-issuer {slashed:?}")), "{why}");
    // Sign-ins say the same until it is set.
    let start = super::browser()
        .get(format!("{}/login/oidc", panel.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 502);
    let page = start.text().await.unwrap();
    assert!(page.contains("--oidc-issuer"), "{page}");

    let mut unreachable = panel.oidc_config().unwrap().clone();
    unreachable.issuer = "http://127.0.0.1:9".into();
    let oidc = std::sync::Arc::new(alveole_panel::oidc::Oidc::new(unreachable).unwrap());
    assert_eq!(oidc.check_at_start().await, Ok(()));
    db.drop_db().await;
}
