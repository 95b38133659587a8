//! Signing in through a real OpenID Connect provider (oidc-provider-mock from PyPI, started
//! on loopback), through its own login form and the panel's production callback.

use alveole_panel::oidc::{OidcConfig, parse_roles};
use alveole_tests::{OidcProvider, TestDb, TestPanel};
use serde_json::json;

/// A browser without a browser: follows nothing by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
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
    let html = http
        .get(format!("{}/sites", panel.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = alveole_tests::csrf_of(&html);
    let out = http
        .post(format!("{}/logout", panel.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let next = location(&out);
    assert!(
        next.starts_with(&format!("{}/oauth2/end_session?", provider.issuer))
            && next.contains("client_id=alveole")
            && next.contains("post_logout_redirect_uri="),
        "{next}"
    );
    assert_eq!(page("/sites").await, 303, "the panel's session ended");

    // The same answer again (a replay): refused, no session.
    let replay = http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.headers().get("set-cookie").is_none());

    // Missing or unknown state: refused before anything else.
    let code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
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
    let links = panel
        .store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "member.link_identity")
        .count();
    assert_eq!(links, 1);

    // Ben's address is not verified at the provider: no member for him.
    let callback = sign_in_at_provider(&panel, "ben-at-idp").await;
    let refused = http.get(&callback).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("set-cookie").is_none());
    drop(provider);
    db.drop_db().await;
}

/// How the fake issuer spoils its next ID token.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Forgery {
    None,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    OtherNonce,
}

/// An OpenID Connect issuer whose keys the test holds, so that it can forge ID tokens: the
/// panel meets it through its real discovery, authorization and token endpoints.
struct FakeIssuer {
    issuer: String,
    forgery: std::sync::Arc<std::sync::Mutex<Forgery>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct IssuerState {
    issuer: String,
    key: ring::signature::EcdsaKeyPair,
    other_key: ring::signature::EcdsaKeyPair,
    forgery: std::sync::Arc<std::sync::Mutex<Forgery>>,
    /// Code → (nonce, used).
    codes: std::sync::Mutex<std::collections::HashMap<String, (String, bool)>>,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn new_key() -> ring::signature::EcdsaKeyPair {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, document.as_ref(), &rng).unwrap()
}

impl IssuerState {
    fn id_token(&self, nonce: &str) -> String {
        let forgery = *self.forgery.lock().unwrap();
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": if forgery == Forgery::WrongIssuer { "https://impostor.example.org".to_owned() } else { self.issuer.clone() },
            "sub": "forge-user",
            "aud": if forgery == Forgery::WrongAudience { "someone-else" } else { "alveole" },
            "iat": now - 10,
            "exp": if forgery == Forgery::Expired { now - 5 } else { now + 300 },
            "nonce": if forgery == Forgery::OtherNonce { "an-old-nonce" } else { nonce },
            "email": "forge@example.org",
            "email_verified": true,
        });
        let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let key = if forgery == Forgery::BadSignature {
            &self.other_key
        } else {
            &self.key
        };
        let rng = ring::rand::SystemRandom::new();
        let signature = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

impl FakeIssuer {
    async fn start() -> FakeIssuer {
        use axum::extract::{Form, Query, State};
        use axum::response::{IntoResponse, Redirect};
        use ring::signature::KeyPair;
        use std::collections::HashMap;
        use std::sync::Arc;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let forgery = Arc::new(std::sync::Mutex::new(Forgery::None));
        let state = Arc::new(IssuerState {
            issuer: issuer.clone(),
            key: new_key(),
            other_key: new_key(),
            forgery: forgery.clone(),
            codes: Default::default(),
        });
        let discovery = |State(s): State<Arc<IssuerState>>| async move {
            axum::Json(json!({
                "issuer": s.issuer,
                "authorization_endpoint": format!("{}/authorize", s.issuer),
                "token_endpoint": format!("{}/token", s.issuer),
                "jwks_uri": format!("{}/jwks", s.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }))
        };
        let jwks = |State(s): State<Arc<IssuerState>>| async move {
            let point = s.key.public_key().as_ref().to_vec(); // 0x04 || x || y
            axum::Json(json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }]}))
        };
        let authorize = |State(s): State<Arc<IssuerState>>,
                         Query(q): Query<HashMap<String, String>>| async move {
            let code = uuid::Uuid::now_v7().simple().to_string();
            s.codes
                .lock()
                .unwrap()
                .insert(code.clone(), (q["nonce"].clone(), false));
            Redirect::to(&format!(
                "{}?code={code}&state={}",
                q["redirect_uri"], q["state"]
            ))
        };
        let token = |State(s): State<Arc<IssuerState>>,
                     Form(form): Form<HashMap<String, String>>| async move {
            let mut codes = s.codes.lock().unwrap();
            let Some((nonce, used)) = codes.get_mut(&form["code"]) else {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            };
            if *used {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
            *used = true;
            let id_token = s.id_token(nonce);
            axum::Json(json!({
                "access_token": "an-access-token", "token_type": "Bearer",
                "expires_in": 300, "id_token": id_token,
            }))
            .into_response()
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/jwks", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIssuer {
            issuer,
            forgery,
            server,
        }
    }
}

/// A panel using the fake issuer, with the member its tokens name; and a browser's way
/// through the production path (start, the issuer's authorize, the callback URL).
async fn forgery_bench() -> (FakeIssuer, TestDb, TestPanel) {
    alveole_tests::init();
    let fake = FakeIssuer::start().await;
    let db = TestDb::sqlite().await;
    let issuer = fake.issuer.clone();
    let panel = TestPanel::start_with_oidc(&db, |base| OidcConfig {
        issuer,
        client_id: "alveole".into(),
        client_secret: Some("not-a-secret".into()),
        scopes: vec!["email".into()],
        groups_claim: "groups".into(),
        roles: vec![],
        redirect_url: format!("{base}/login/oidc/callback"),
    })
    .await;
    let (status, _) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": "Forge", "email": "forge@example.org"}),
        )
        .await;
    assert_eq!(status, 201);
    (fake, db, panel)
}

/// The callback URL the issuer sends the browser back to, for a new sign-in.
async fn callback_url(panel: &TestPanel) -> String {
    let http = browser();
    let start = http
        .get(format!("{}/login/oidc", panel.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let at_issuer = http.get(location(&start)).send().await.unwrap();
    location(&at_issuer)
}

/// What the callback answers: its status, and whether it opened a session.
async fn land(url: &str) -> (u16, bool) {
    let response = browser().get(url).send().await.unwrap();
    (
        response.status().as_u16(),
        response.headers().get("set-cookie").is_some(),
    )
}

/// The issuer spoils its token with `forgery`: 401, no session; a genuine token, for
/// contrast, opens one.
async fn refused(forgery: Forgery) {
    let (fake, db, panel) = forgery_bench().await;
    *fake.forgery.lock().unwrap() = forgery;
    assert_eq!(
        land(&callback_url(&panel).await).await,
        (401, false),
        "{forgery:?}"
    );
    *fake.forgery.lock().unwrap() = Forgery::None;
    assert_eq!(
        land(&callback_url(&panel).await).await,
        (303, true),
        "genuine"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn an_id_token_signed_with_another_key_opens_no_session() {
    refused(Forgery::BadSignature).await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_opens_no_session() {
    refused(Forgery::WrongIssuer).await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_opens_no_session() {
    refused(Forgery::WrongAudience).await;
}

#[tokio::test]
async fn an_expired_id_token_opens_no_session() {
    refused(Forgery::Expired).await;
}

#[tokio::test]
async fn an_id_token_with_a_replayed_nonce_opens_no_session() {
    refused(Forgery::OtherNonce).await;
}

#[tokio::test]
async fn an_authorization_code_works_once() {
    let (_fake, db, panel) = forgery_bench().await;
    let genuine = callback_url(&panel).await;
    let used_code = genuine
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(land(&genuine).await, (303, true));
    // A fresh sign-in whose answer carries the used code: the second exchange fails.
    let fresh = callback_url(&panel).await;
    let state = fresh.split("state=").nth(1).unwrap().to_owned();
    let reused = format!(
        "{}/login/oidc/callback?code={used_code}&state={state}",
        panel.base
    );
    assert_eq!(land(&reused).await, (401, false));
    let sessions = panel
        .store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "session.create")
        .count();
    assert_eq!(sessions, 1, "only the genuine sign-in opened a session");
    db.drop_db().await;
}

#[tokio::test]
async fn a_missing_or_wrong_state_opens_no_session() {
    let (_fake, db, panel) = forgery_bench().await;
    let genuine = callback_url(&panel).await;
    let code = genuine
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    for query in [format!("code={code}"), format!("code={code}&state=forged")] {
        let url = format!("{}/login/oidc/callback?{query}", panel.base);
        assert_eq!(land(&url).await, (400, false), "{query}");
    }
    db.drop_db().await;
}
