//! An OpenID Connect issuer whose keys the test holds, so that it can forge tokens, put claims
//! in the ID token or in userinfo only, name another issuer in its discovery document, and
//! sign back-channel logout tokens. The panel meets it through its real discovery,
//! authorization, token, userinfo and end-session endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alveole_panel::oidc::OidcConfig;
use alveole_tests::{TestDb, TestPanel};
use serde_json::{Value, json};

/// How the issuer spoils its next ID token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Forgery {
    None,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    /// Expired by less than the panel's leeway: accepted.
    ExpiredWithinLeeway,
    /// Issued ten minutes ahead of the panel's clock.
    FromTheFuture,
    OtherNonce,
    /// `alg: none`, no signature.
    Unsigned,
    /// Signed, but its header names an algorithm the panel does not know.
    UnknownAlgorithm,
}

/// What the issuer says.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub forgery: Forgery,
    /// The ID token's claims besides iss, sub, aud, iat, exp and nonce.
    pub id_token: Value,
    /// The userinfo endpoint's answer (its `sub` included); `None`: no such endpoint.
    pub userinfo: Option<Value>,
    /// The issuer its discovery document names, when not its own address.
    pub discovery_issuer: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            forgery: Forgery::None,
            id_token: json!({"email": "forge@example.org", "email_verified": true, "sid": "s-1"}),
            userinfo: None,
            discovery_issuer: None,
        }
    }
}

pub const SUBJECT: &str = "forge-user";

pub struct FakeIssuer {
    pub issuer: String,
    pub behaviour: Arc<Mutex<Behaviour>>,
    state: Arc<IssuerState>,
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
    behaviour: Arc<Mutex<Behaviour>>,
    /// Code → (nonce, used).
    codes: Mutex<HashMap<String, (String, bool)>>,
    /// The ID tokens issued, newest last.
    issued: Mutex<Vec<String>>,
}

pub fn b64(bytes: &[u8]) -> String {
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
    /// A compact JWS of `claims` under `header`, signed with `key`.
    fn sign(&self, header: &Value, claims: &Value, key: &ring::signature::EcdsaKeyPair) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }

    fn id_token(&self, nonce: &str) -> String {
        let behaviour = self.behaviour.lock().unwrap().clone();
        let forgery = behaviour.forgery;
        let now = chrono::Utc::now().timestamp();
        let (iat, exp) = match forgery {
            Forgery::Expired => (now - 600, now - 300),
            Forgery::ExpiredWithinLeeway => (now - 300, now - 30),
            Forgery::FromTheFuture => (now + 600, now + 900),
            _ => (now - 10, now + 300),
        };
        let mut claims = json!({
            "iss": if forgery == Forgery::WrongIssuer { "https://impostor.example.org".to_owned() } else { self.issuer.clone() },
            "sub": SUBJECT,
            "aud": if forgery == Forgery::WrongAudience { "someone-else" } else { "alveole" },
            "iat": iat,
            "exp": exp,
            "nonce": if forgery == Forgery::OtherNonce { "an-old-nonce" } else { nonce },
        });
        if let Value::Object(extra) = behaviour.id_token {
            claims.as_object_mut().unwrap().extend(extra);
        }
        let token = match forgery {
            Forgery::Unsigned => format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            ),
            Forgery::UnknownAlgorithm => self.sign(
                &json!({"alg": "ES256K", "kid": "k1", "typ": "JWT"}),
                &claims,
                &self.key,
            ),
            Forgery::BadSignature => self.sign(
                &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
                &claims,
                &self.other_key,
            ),
            _ => self.sign(
                &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
                &claims,
                &self.key,
            ),
        };
        self.issued.lock().unwrap().push(token.clone());
        token
    }
}

impl FakeIssuer {
    pub async fn start() -> FakeIssuer {
        use axum::extract::{Form, Query, State};
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Redirect};
        use ring::signature::KeyPair;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let state = Arc::new(IssuerState {
            issuer: issuer.clone(),
            key: new_key(),
            other_key: new_key(),
            behaviour: behaviour.clone(),
            codes: Default::default(),
            issued: Default::default(),
        });
        let discovery = |State(s): State<Arc<IssuerState>>| async move {
            let behaviour = s.behaviour.lock().unwrap().clone();
            let mut document = json!({
                "issuer": behaviour.discovery_issuer.unwrap_or_else(|| s.issuer.clone()),
                "authorization_endpoint": format!("{}/authorize", s.issuer),
                "token_endpoint": format!("{}/token", s.issuer),
                "jwks_uri": format!("{}/jwks", s.issuer),
                "end_session_endpoint": format!("{}/logout", s.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "backchannel_logout_supported": true,
                "backchannel_logout_session_supported": true,
            });
            if behaviour.userinfo.is_some() {
                document["userinfo_endpoint"] = json!(format!("{}/userinfo", s.issuer));
            }
            axum::Json(document)
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
            let nonce = {
                let mut codes = s.codes.lock().unwrap();
                match codes.get_mut(&form["code"]) {
                    Some((nonce, used)) if !*used => {
                        *used = true;
                        nonce.clone()
                    }
                    _ => {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "invalid_grant"})),
                        )
                            .into_response();
                    }
                }
            };
            let id_token = s.id_token(&nonce);
            axum::Json(json!({
                "access_token": "an-access-token", "token_type": "Bearer",
                "expires_in": 300, "id_token": id_token,
            }))
            .into_response()
        };
        let userinfo = |State(s): State<Arc<IssuerState>>, headers: axum::http::HeaderMap| async move {
            let bearer = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if bearer != "Bearer an-access-token" {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            let answer = s.behaviour.lock().unwrap().userinfo.clone();
            match answer {
                Some(answer) => axum::Json(answer).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/jwks", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .route("/userinfo", axum::routing::get(userinfo))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIssuer {
            issuer,
            behaviour,
            state,
            server,
        }
    }

    /// Changes what the issuer says from now on.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }

    /// The ID tokens issued so far, newest last.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// A back-channel logout token with these claims, signed with the issuer's key.
    pub fn logout_token(&self, claims: &Value) -> String {
        self.state.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"}),
            claims,
            &self.state.key,
        )
    }

    /// The same, signed with a key the issuer does not publish.
    pub fn forged_logout_token(&self, claims: &Value) -> String {
        self.state.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"}),
            claims,
            &self.state.other_key,
        )
    }
}

/// A panel on SQLite using a fake issuer, with the member its tokens name
/// (forge@example.org), and roles from groups when `roles` is not empty.
pub async fn bench(roles: &str) -> (FakeIssuer, TestDb, TestPanel) {
    bench_on(TestDb::sqlite().await, roles).await
}

/// The same on `db`.
pub async fn bench_on(db: TestDb, roles: &str) -> (FakeIssuer, TestDb, TestPanel) {
    alveole_tests::init();
    let fake = FakeIssuer::start().await;
    let issuer = fake.issuer.clone();
    let roles = alveole_panel::oidc::parse_roles(roles).unwrap();
    let panel = TestPanel::start_with_oidc(&db, |base| OidcConfig {
        issuer,
        client_id: "alveole".into(),
        client_secret: Some("not-a-secret".into()),
        scopes: vec!["email".into()],
        groups_claim: "groups".into(),
        roles,
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
pub async fn callback_url(panel: &TestPanel) -> String {
    let http = super::browser();
    let start = http
        .get(format!("{}/login/oidc", panel.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "{:?}", start.text().await);
    let at_issuer = http.get(super::location(&start)).send().await.unwrap();
    super::location(&at_issuer)
}

/// What the callback answers: its status, the session cookie it set (if any), and the page.
pub async fn land(url: &str) -> (u16, Option<String>, String) {
    let response = super::browser().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
    (status, cookie, response.text().await.unwrap())
}

/// A whole sign-in through the fake issuer: the callback's answer.
pub async fn sign_in(panel: &TestPanel) -> (u16, Option<String>, String) {
    land(&callback_url(panel).await).await
}
