//! The ingress in process: routes, holds, pages.

use super::pages::escape;
use super::*;
use alveole_model::{Hostname, Wildcard};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::Response;
use hyper::header;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[test]
fn hosts_match_exactly_then_by_one_wildcard_level() {
    let upstream = |port| Upstream {
        site: SiteId::generate(),
        address: SocketAddr::from(([10, 0, 0, 2], port)),
    };
    let (a, wild) = (upstream(1), upstream(2));
    let mut routes = Routes::default();
    routes.insert(
        &Hostname::parse("a.example.org", Wildcard::Refused).unwrap(),
        a,
    );
    routes.insert(
        &Hostname::parse("*.example.org", Wildcard::Allowed).unwrap(),
        wild,
    );
    assert_eq!(routes.lookup("A.Example.ORG.:8080"), Some(&a));
    assert_eq!(routes.lookup("b.example.org"), Some(&wild));
    assert_eq!(routes.lookup("c.b.example.org"), None);
    assert_eq!(routes.lookup("example.org"), None);
    assert_eq!(routes.lookup("[::1]:80"), None);
    assert_eq!(escape("<script>"), "&lt;script&gt;");
}

/// A server on loopback answering each request with what `answer` makes of it.
async fn serve_on_loopback<F, A>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> A + Clone + Send + Sync + 'static,
    A: std::future::Future<Output = String> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let answer = answer(request);
                    async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer.await))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// A server on loopback answering every request with `body` and the Host it was sent.
async fn backend(body: &'static str) -> SocketAddr {
    serve_on_loopback(move |request| {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (host, forwarded) = (
            header(header::HOST),
            header(header::HeaderName::from_static("x-forwarded-for")),
        );
        async move { format!("{body} for {host} from {forwarded}") }
    })
    .await
}

async fn ingress_serving(routes: Routes) -> (Arc<Ingress>, SocketAddr) {
    let ingress = Arc::new(Ingress::new());
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve(listener));
    (ingress, address)
}

async fn get(ingress: SocketAddr, host: &str) -> (u16, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = Request::builder()
        .uri(format!("http://{ingress}/"))
        .header(header::HOST, host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_forwarded_site_is_served_by_the_other_nodes_ingress() {
    let site = SiteId::generate();
    let name = Hostname::parse("moved.example.org", Wildcard::Refused).unwrap();
    // Node B runs the site now; node A still receives its traffic.
    let on_b = backend("served on B").await;
    let mut routes_b = Routes::default();
    routes_b.insert(
        &name,
        Upstream {
            site,
            address: on_b,
        },
    );
    let (_b, b_address) = ingress_serving(routes_b).await;
    let mut routes_a = Routes::default();
    let gone = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap(); // nothing listens
    routes_a.insert(
        &name,
        Upstream {
            site,
            address: gone,
        },
    );
    let (a, a_address) = ingress_serving(routes_a.clone()).await;
    assert_eq!(
        get(a_address, "moved.example.org").await.0,
        502,
        "A's own container is gone"
    );

    a.forward(site, b_address);
    a.set_routes(routes_a); // a later route table keeps the forward
    assert_eq!(
        get(a_address, "moved.example.org").await,
        (
            200,
            "served on B for moved.example.org from 127.0.0.1, 127.0.0.1".to_owned()
        )
    );

    a.stop_forwarding(site);
    assert_eq!(get(a_address, "moved.example.org").await.0, 502);
}

#[tokio::test]
async fn a_hold_waits_for_requests_in_flight_and_blocks_new_ones() {
    let ingress = Arc::new(Ingress::new());
    let site = SiteId::generate();
    let traffic = ingress.traffic_of(site);
    let first = InFlight::enter(&traffic).expect("not held");
    let holding = tokio::spawn({
        let ingress = ingress.clone();
        async move { ingress.hold(site).await }
    });
    // The hold has begun once `held` is set; new requests are refused entry from then on.
    while !traffic.held.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    assert!(
        InFlight::enter(&traffic).is_none(),
        "held: no new request enters"
    );
    assert!(
        !holding.is_finished(),
        "still draining the request in flight"
    );
    drop(first);
    let hold = holding.await.unwrap();
    assert_eq!(traffic.in_flight.load(Ordering::SeqCst), 0);
    drop(hold);
    assert!(InFlight::enter(&traffic).is_some(), "released");
}

/// A site that reads each request's whole body, then answers with its length.
async fn upload_backend() -> SocketAddr {
    serve_on_loopback(|request| async move {
        match request.into_body().collect().await {
            Ok(body) => body.to_bytes().len().to_string(),
            Err(_) => "cut".to_owned(),
        }
    })
    .await
}

/// Sends `head` then `body` as they are (a client's own framing); the answer's status.
async fn raw_status(ingress: SocketAddr, head: String, body: Vec<u8>) -> u16 {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(ingress).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        // The ingress may answer (and close) before all of the body is sent.
        let _ = stream.write_all(&body);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_request_body_past_its_sites_limit_is_refused_with_413() {
    let site = SiteId::generate();
    let mut routes = Routes::default();
    routes.insert(
        &Hostname::parse("upload.example.org", Wildcard::Refused).unwrap(),
        Upstream {
            site,
            address: upload_backend().await,
        },
    );
    let (ingress, address) = ingress_serving(routes).await;
    ingress.set_body_limits(HashMap::from([(site, 1500)]));
    let post = |framing: &str| {
        format!("POST / HTTP/1.1\r\nHost: upload.example.org\r\nConnection: close\r\n{framing}\r\n")
    };
    let declared = raw_status(address, post("Content-Length: 2048\r\n"), vec![b'x'; 2048]);
    assert_eq!(declared.await, 413, "a declared length past the limit");
    let chunk = |n: usize| {
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend(vec![b'x'; n]);
        chunk.extend_from_slice(b"\r\n");
        chunk
    };
    let mut chunked = [chunk(1024), chunk(1024)].concat();
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = raw_status(address, post("Transfer-Encoding: chunked\r\n"), chunked);
    assert_eq!(
        streamed.await,
        413,
        "a streamed body that goes past the limit"
    );
    let within = raw_status(address, post("Content-Length: 512\r\n"), vec![b'x'; 512]);
    assert_eq!(within.await, 200, "a body within the limit");
    // Another site keeps the default limit.
    ingress.set_body_limits(HashMap::new());
    let default = raw_status(address, post("Content-Length: 2048\r\n"), vec![b'x'; 2048]);
    assert_eq!(default.await, 200);
}

/// A CA and a certificate it signed for `names`: (the CA's PEM, the chain's PEM, the key's).
pub(super) fn certificate_for(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

pub(super) fn spec_with_tls(
    name: &str,
    tls: Option<alveole_model::SiteTls>,
) -> alveole_model::SiteSpec {
    alveole_model::SiteSpec {
        site_id: SiteId::generate(),
        hostnames: vec![Hostname::parse(name, Wildcard::Refused).unwrap()],
        image: alveole_model::ImageRef::parse("alveole-test/busybox:1").unwrap(),
        command: vec![],
        env: vec![],
        http_port: 8080,
        volume: Default::default(),
        limits: Default::default(),
        security: Default::default(),
        run: true,
        dedicated_addresses: vec![],
        exposed_ports: vec![],
        limit_tier: Default::default(),
        backup: None,
        tls,
        admission: None,
        databases: vec![],
        databases_stay_up: false,
    }
}

/// HTTPS by SNI: each site with its own certificate; plain HTTP redirected to HTTPS (the ACME
/// challenge path excepted); a name without a certificate gets no handshake; a certificate
/// whose key is not its own is left out, and said.
#[tokio::test]
async fn sites_are_served_over_https_by_the_name_asked_for() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca, chain, key) = certificate_for(&["secure.example.org"]);
    let (_, other_chain, _) = certificate_for(&["broken.example.org"]);
    let tls = |chain: &str, key: &str| alveole_model::SiteTls {
        chain_pem: chain.to_owned(),
        key_pem: alveole_model::backup::WireSecret(key.to_owned()),
        redirect: true,
        hsts_seconds: 300,
    };
    let secure = spec_with_tls("secure.example.org", Some(tls(&chain, &key)));
    let broken = spec_with_tls("broken.example.org", Some(tls(&other_chain, &key)));
    let plain = spec_with_tls("plain.example.org", None);
    let address = backend("hello").await;
    let mut routes = Routes::default();
    for spec in [&secure, &broken, &plain] {
        let upstream = Upstream {
            site: spec.site_id,
            address,
        };
        routes.insert(&spec.hostnames[0], upstream);
    }
    let (ingress, http) = ingress_serving(routes).await;
    let unloaded = ingress.set_certificates(&[secure.clone(), broken, plain]);
    assert_eq!(unloaded.len(), 1, "{unloaded:?}");
    assert!(unloaded[0].contains("broken.example.org"), "{unloaded:?}");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve_tls(listener));

    let client = |name: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .resolve(name, https)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let answer = client("secure.example.org")
        .get(format!(
            "https://secure.example.org:{}/page?x=1",
            https.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()[header::STRICT_TRANSPORT_SECURITY],
        "max-age=300",
        "the site asks for HSTS"
    );
    assert_eq!(
        answer.text().await.unwrap(),
        format!(
            "hello for secure.example.org:{} from 127.0.0.1",
            https.port()
        )
    );
    // No certificate for these names: no handshake.
    for name in ["plain.example.org", "broken.example.org"] {
        let refused = client(name)
            .get(format!("https://{name}:{}/", https.port()))
            .send()
            .await;
        assert!(refused.is_err(), "{name}: {refused:?}");
    }

    // Plain HTTP: redirected, the path and query kept; the ACME challenge and sites without a
    // certificate served as they are.
    let plain_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirected = plain_client
        .get(format!("http://{http}/page?x=1"))
        .header(header::HOST, "secure.example.org:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()[header::LOCATION],
        "https://secure.example.org/page?x=1",
        "to HTTPS's own port"
    );
    // Forwarded by a move's old node, which took it over HTTPS: served, not redirected.
    let forwarded = plain_client
        .get(format!("http://{http}/page"))
        .header(header::HOST, "secure.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
    assert_eq!(
        get_path(
            http,
            "secure.example.org",
            "/.well-known/acme-challenge/token"
        )
        .await,
        200
    );
    assert_eq!(get(http, "plain.example.org").await.0, 200);

    // The panel's challenges are answered for any name, before any site; other tokens go to
    // the site (it may run its own ACME client).
    ingress.set_challenges(&[alveole_model::AcmeChallenge {
        token: "tok-1".into(),
        key_authorization: "tok-1.thumbprint".into(),
    }]);
    for host in ["secure.example.org", "nobody.example.org"] {
        let answer = plain_client
            .get(format!("http://{http}/.well-known/acme-challenge/tok-1"))
            .header(header::HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(
            !answer
                .headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        );
        assert_eq!(answer.text().await.unwrap(), "tok-1.thumbprint");
    }
    let theirs = plain_client
        .get(format!("http://{http}/.well-known/acme-challenge/other"))
        .header(header::HOST, "secure.example.org")
        .send()
        .await
        .unwrap();
    assert!(theirs.text().await.unwrap().starts_with("hello for"));
}

async fn get_path(ingress: SocketAddr, host: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{ingress}{path}"))
        .header(header::HOST, host)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
