//! What pebble 2.4 lacks, against a small ACME stand-in run by the test: renewal information
//! (RFC 9773) decides when a certificate is renewed, and the renewal names the certificate it
//! replaces; a 429 with Retry-After makes the whole account wait that long, and no order is
//! lost. The stand-in speaks ACME's wire format (JWS bodies, nonces, Location headers) but
//! checks no signature and validates every name at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alveole_panel::acme::{AcmeConfig, AcmeLimits};
use alveole_tests::{TestDb, TestPanel};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;

/// A renewal window: its start and end.
type Window = (DateTime<Utc>, DateTime<Utc>);

/// What the stand-in was asked, and what it will answer.
#[derive(Default)]
struct Ca {
    base: String,
    /// The next new orders refused with 429 (Retry-After: `retry_after` seconds).
    refuse_orders: u32,
    retry_after: u64,
    /// Every new order: when it came, whether it was refused, what it replaced.
    orders: Vec<(DateTime<Utc>, bool, Option<String>)>,
    /// The profile each new order asked for.
    profiles: Vec<Option<String>>,
    names: Vec<Vec<String>>,
    /// What each accepted order replaces (echoed in its state, as ACME servers do).
    replaced: Vec<Option<String>>,
    certificates: Vec<String>,
    /// The renewal window it suggests for certificates of orders from `moved_from` on.
    window: Window,
    /// The window of earlier certificates (moved to now: a revocation coming), from the
    /// order it applies before.
    moved: Option<(usize, Window)>,
    renewal_info_asked: u32,
    issuer: Option<rcgen::Issuer<'static, rcgen::KeyPair>>,
    issuer_pem: String,
}

type Shared = Arc<Mutex<Ca>>;

fn payload(body: &Bytes) -> Value {
    let jws: Value = serde_json::from_slice(body).unwrap_or_default();
    let encoded = jws["payload"].as_str().unwrap_or_default();
    if encoded.is_empty() {
        return Value::Null;
    }
    URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn reply(status: StatusCode, location: Option<String>, body: Value) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "replay-nonce",
        HeaderValue::from_str(&uuid::Uuid::now_v7().simple().to_string()).unwrap(),
    );
    if let Some(location) = location {
        headers.insert("location", HeaderValue::from_str(&location).unwrap());
    }
    (status, headers, axum::Json(body)).into_response()
}

async fn directory(State(ca): State<Shared>) -> Response {
    let base = ca.lock().unwrap().base.clone();
    reply(
        StatusCode::OK,
        None,
        json!({
            "newNonce": format!("{base}/nonce"), "newAccount": format!("{base}/account"),
            "newOrder": format!("{base}/order"), "revokeCert": format!("{base}/revoke"),
            "renewalInfo": format!("{base}/renewal-info"),
            "meta": {"profiles": {"classic": "90 days", "shortlived": "6 days"}},
        }),
    )
}

async fn nonce() -> Response {
    reply(StatusCode::OK, None, Value::Null)
}

async fn account(State(ca): State<Shared>) -> Response {
    let base = ca.lock().unwrap().base.clone();
    reply(
        StatusCode::CREATED,
        Some(format!("{base}/account/1")),
        json!({"status": "valid"}),
    )
}

fn order_body(ca: &Ca, id: usize, status: &str) -> Value {
    let base = &ca.base;
    let names = ca.names.get(id).cloned().unwrap_or_default();
    json!({
        "replaces": ca.replaced.get(id).cloned().flatten(),
        "status": status,
        "identifiers": names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
        "authorizations": [format!("{base}/authz/{id}")],
        "finalize": format!("{base}/finalize/{id}"),
        "certificate": (status == "valid").then(|| format!("{base}/cert/{id}")),
    })
}

async fn new_order(State(ca): State<Shared>, body: Bytes) -> Response {
    let request = payload(&body);
    let mut ca = ca.lock().unwrap();
    let replaces = request["replaces"].as_str().map(str::to_owned);
    ca.profiles
        .push(request["profile"].as_str().map(str::to_owned));
    if ca.refuse_orders > 0 {
        ca.refuse_orders -= 1;
        ca.orders.push((Utc::now(), true, replaces));
        let mut response = reply(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            json!({"type": "urn:ietf:params:acme:error:rateLimited",
                   "detail": "too many new orders", "status": 429}),
        );
        response.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&ca.retry_after.to_string()).unwrap(),
        );
        return response;
    }
    ca.orders.push((Utc::now(), false, replaces.clone()));
    ca.replaced.push(replaces);
    let names: Vec<String> = request["identifiers"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ca.names.push(names.clone());
    let id = ca.names.len() - 1;
    reply(
        StatusCode::CREATED,
        Some(format!("{}/order/{id}", ca.base)),
        order_body(&ca, id, "ready"),
    )
}

async fn authorization(State(ca): State<Shared>, Path(id): Path<usize>) -> Response {
    let ca = ca.lock().unwrap();
    let name = ca
        .names
        .get(id)
        .and_then(|n| n.first())
        .cloned()
        .unwrap_or_default();
    reply(
        StatusCode::OK,
        None,
        json!({"status": "valid", "identifier": {"type": "dns", "value": name}, "challenges": []}),
    )
}

async fn order(State(ca): State<Shared>, Path(id): Path<usize>) -> Response {
    let ca = ca.lock().unwrap();
    let status = if ca.certificates.len() > id && !ca.certificates[id].is_empty() {
        "valid"
    } else {
        "ready"
    };
    reply(StatusCode::OK, None, order_body(&ca, id, status))
}

async fn finalize(State(ca): State<Shared>, Path(id): Path<usize>, body: Bytes) -> Response {
    let request = payload(&body);
    let der = URL_SAFE_NO_PAD
        .decode(request["csr"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let mut csr = rcgen::CertificateSigningRequestParams::from_der(&der.into()).expect("a CSR");
    let now = time::OffsetDateTime::now_utc();
    csr.params.not_before = now - time::Duration::minutes(1);
    csr.params.not_after = now + time::Duration::days(90);
    csr.params.use_authority_key_identifier_extension = true;
    // The serial says which order it is, so that its renewal information can be told apart.
    csr.params.serial_number = Some(rcgen::SerialNumber::from(vec![
        1,
        u8::try_from(id).unwrap(),
    ]));
    let mut ca = ca.lock().unwrap();
    let issuer = ca.issuer.as_ref().expect("an issuer");
    let leaf = csr.signed_by(issuer).expect("signed");
    let chain = format!("{}{}", leaf.pem(), ca.issuer_pem);
    while ca.certificates.len() <= id {
        ca.certificates.push(String::new());
    }
    ca.certificates[id] = chain;
    reply(StatusCode::OK, None, order_body(&ca, id, "valid"))
}

async fn certificate(State(ca): State<Shared>, Path(id): Path<usize>) -> Response {
    let chain = ca
        .lock()
        .unwrap()
        .certificates
        .get(id)
        .cloned()
        .unwrap_or_default();
    let mut response = reply(StatusCode::OK, None, Value::Null);
    *response.body_mut() = axum::body::Body::from(chain);
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    response
}

async fn renewal_info(State(ca): State<Shared>, Path(id): Path<String>) -> Response {
    let mut ca = ca.lock().unwrap();
    ca.renewal_info_asked += 1;
    let order = id
        .split_once('.')
        .and_then(|(_, serial)| URL_SAFE_NO_PAD.decode(serial).ok())
        .and_then(|bytes| bytes.last().copied())
        .map_or(usize::MAX, usize::from);
    let (start, end) = match ca.moved {
        Some((before, window)) if order < before => window,
        _ => ca.window,
    };
    let mut response = reply(
        StatusCode::OK,
        None,
        json!({"suggestedWindow": {"start": start.to_rfc3339(), "end": end.to_rfc3339()}}),
    );
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    response
}

async fn start_stand_in() -> (Shared, tokio::task::JoinHandle<()>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    let issuer_pem = params.self_signed(&key).unwrap().pem();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ca: Shared = Arc::new(Mutex::new(Ca {
        base: format!("http://{}", listener.local_addr().unwrap()),
        retry_after: 2,
        window: (
            Utc::now() + chrono::Duration::days(30),
            Utc::now() + chrono::Duration::days(31),
        ),
        issuer: Some(rcgen::Issuer::new(params, key)),
        issuer_pem,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/dir", get(directory))
        .route("/nonce", get(nonce).head(nonce))
        .route("/account", post(account))
        .route("/order", post(new_order))
        .route("/order/{id}", post(order))
        .route("/authz/{id}", post(authorization))
        .route("/finalize/{id}", post(finalize))
        .route("/cert/{id}", post(certificate))
        .route("/renewal-info/{id}", get(renewal_info))
        .with_state(ca.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (ca, server)
}

#[tokio::test]
async fn renewal_information_and_429s_are_followed_and_no_renewal_is_lost() {
    let db = TestDb::sqlite().await;
    let logs = alveole_tests::temp_dir("alveole-stand-in-");
    let Some(dns) = alveole_tests::acme::Dns::start(logs.path()).await else {
        return;
    };
    let (ca, server) = start_stand_in().await;
    let mut panel = TestPanel::start(&db).await;
    let directory = format!("{}/dir", ca.lock().unwrap().base);
    panel
        .configure(|c| {
            c.acme = Some(AcmeConfig {
                directory,
                contact: vec![],
                ca_roots: None,
                resolver: Some(dns.address),
                profile: Some("shortlived".into()),
                limits: AcmeLimits::default(),
            });
            c.background.certificates_every = Duration::from_millis(300);
        })
        .await;
    let node = node_with_agent(&panel, "ari-node", &["127.0.0.1"], http_listener().await).await;
    let member = member(&panel).await;
    ca.lock().unwrap().refuse_orders = 2;
    let site = site(&panel, &member, &node.node, &["ari.example.org"]).await;

    // Two 429s, each waited out in full, then the certificate.
    let issued = certificate_when(&panel, &site, "a certificate after two 429s", |v| {
        v["certificate"].is_object()
    })
    .await;
    {
        let ca = ca.lock().unwrap();
        assert_eq!(ca.orders.len(), 3, "{:?}", ca.orders);
        for pair in ca.orders.windows(2) {
            let waited = pair[1].0 - pair[0].0;
            assert!(
                !pair[0].1 || waited >= chrono::Duration::milliseconds(1900),
                "an order {waited} after a 429 asking for 2 s"
            );
        }
        assert!(
            ca.renewal_info_asked >= 1,
            "the window asked for at issuance"
        );
    }
    // Renewed within the CA's window, not at two thirds of 90 days.
    let renew_at: DateTime<Utc> = issued["renew_at"].as_str().unwrap().parse().unwrap();
    let (start, end) = ca.lock().unwrap().window;
    assert!(
        renew_at >= start && renew_at <= end,
        "{renew_at} in {start}..{end}"
    );
    assert_eq!(issued["last_error"], Value::Null);

    // The CA moves the window to now (a revocation coming), and limits once more: the
    // renewal waits out the 429, then replaces the certificate it names.
    {
        let mut ca = ca.lock().unwrap();
        ca.moved = Some((
            ca.names.len(),
            (
                Utc::now() - chrono::Duration::minutes(2),
                Utc::now() - chrono::Duration::minutes(1),
            ),
        ));
        ca.refuse_orders = 1;
    }
    let renewed = certificate_when(&panel, &site, "a renewal in the new window", |v| {
        v["certificate"]["issued_at"] != issued["certificate"]["issued_at"]
    })
    .await;
    assert!(renewed["certificate"].is_object());
    {
        let ca_state = ca.lock().unwrap();
        let accepted: Vec<_> = ca_state.orders.iter().filter(|o| !o.1).collect();
        assert_eq!(accepted.len(), 2, "{:?}", ca_state.orders);
        assert!(
            accepted[1].2.as_deref().is_some_and(|id| id.contains('.')),
            "the renewal names the certificate it replaces: {:?}",
            accepted[1].2
        );
        let refused_then = ca_state.orders.iter().rposition(|o| o.1).unwrap();
        let waited = ca_state.orders[refused_then + 1].0 - ca_state.orders[refused_then].0;
        assert!(waited >= chrono::Duration::milliseconds(1900), "{waited}");
    }
    assert_eq!(panel.events("certificate.renew").await.len(), 1);
    node.stop().await;
    server.abort();
    db.drop_db().await;
}
