//! The ingress's HTTP/1 against what clients and sites send on the wire: chunked bodies,
//! `Expect: 100-continue`, pipelining, request smuggling heads, head size limits, and every
//! way a site may frame its answer. Raw bytes from the client's side; on the site's side
//! either hyper (an independent reading of what the ingress sent) or raw bytes.

use std::sync::Mutex as StdMutex;

use super::*;
use alveole_model::{Hostname, Wildcard};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "wire.example.org";

/// What a site saw of one request.
#[derive(Clone, Debug, Default)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A site served by hyper that keeps what it was sent and answers `got <body length>`.
async fn recording_site() -> (SocketAddr, Arc<StdMutex<Vec<Seen>>>) {
    let seen: Arc<StdMutex<Vec<Seen>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes().to_vec());
                        let body = body.unwrap_or_else(|_| b"<cut>".to_vec());
                        let answer = format!("got {}", body.len());
                        kept.lock().unwrap().push(Seen {
                            method: parts.method.to_string(),
                            target: parts.uri.to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(n, v)| {
                                    (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect(),
                            body,
                        });
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, seen)
}

/// A site that answers each request head it reads with `answer`, byte for byte, and closes
/// after it when `close`.
async fn raw_site(answer: &'static [u8], close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    received.extend_from_slice(&buf[..n]);
                    while let Some(end) = find(&received, b"\r\n\r\n") {
                        received.drain(..end + 4);
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if close {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn ingress_for(site: SocketAddr) -> (Arc<Ingress>, SocketAddr, SiteId) {
    let id = SiteId::generate();
    let mut routes = Routes::default();
    routes.insert(
        &Hostname::parse(HOST, Wildcard::Refused).unwrap(),
        Upstream {
            site: id,
            address: site,
        },
    );
    let ingress = Arc::new(Ingress::new());
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve(listener));
    (ingress, address, id)
}

/// Sends `bytes` as one write and reads until the ingress closes (bounded in time).
async fn over_the_wire(ingress: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(ingress).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn a_chunked_body_reaches_the_site_whole_extensions_and_trailers_dropped() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
    );
    let answer = over_the_wire(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![200], "{answer}");
    assert!(answer.ends_with("got 12"), "{answer}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"hello, world");
    assert_eq!(seen[0].target, "/upload");
}

#[tokio::test]
async fn smuggling_heads_are_refused_and_never_reach_the_site() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    for (framing, status) in [
        ("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", 400),
        ("Content-Length: 6\r\nContent-Length: 7\r\n", 400),
        ("Transfer-Encoding: chunked, identity\r\n", 501),
        ("Transfer-Encoding : chunked\r\n", 400),
    ] {
        // What follows the head is a second request, if the ingress read the body as the
        // site might have.
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\n{framing}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        let answer = over_the_wire(address, request.as_bytes()).await;
        assert_eq!(statuses(&answer), vec![status], "{framing:?}: {answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(
            answer.contains("\r\ndate: "),
            "an answer of the ingress's own is dated"
        );
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the site");
}

#[tokio::test]
async fn a_head_too_large_gets_431_and_bad_chunks_get_400() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(alveole_h1::head::MAX_HEAD_BYTES)
    );
    assert_eq!(
        statuses(&over_the_wire(address, huge.as_bytes()).await),
        vec![431]
    );
    let bad = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"
    );
    assert_eq!(
        statuses(&over_the_wire(address, bad.as_bytes()).await),
        vec![400]
    );
    assert!(
        seen.lock().unwrap().iter().all(|s| s.body != b"hello"),
        "no bad body went on whole"
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PUT /file HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut interim))
        .await
        .expect("the interim answer came without the body")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(statuses(&answer), vec![200], "{answer}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(
        seen[0].header("expect"),
        None,
        "the ingress met the expectation itself"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    let requests = format!(
        "GET /one HTTP/1.1\r\nHost: {HOST}\r\n\r\n\
         POST /two HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n\r\nabc\
         GET /three HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    let answer = over_the_wire(address, requests.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![200, 200, 200], "{answer}");
    let order: Vec<usize> = ["got 0", "got 3", "got 0"]
        .iter()
        .scan(0, |from, body| {
            let at = answer[*from..].find(body).map(|i| i + *from)?;
            *from = at + body.len();
            Some(at)
        })
        .collect();
    assert_eq!(order.len(), 3, "answers in order: {answer}");
    let seen = seen.lock().unwrap();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/one", "/two", "/three"]);
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["GET", "POST", "GET"]);
    assert_eq!(seen[1].body, b"abc");
}

#[tokio::test]
async fn the_ingress_answers_each_request_of_a_kept_connection_once() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    // Its own answers (no such site), then a site's, on one connection: each once, in order.
    let requests = format!(
        "GET /a HTTP/1.1\r\nHost: nowhere.example.org\r\n\r\n\
         GET /b HTTP/1.1\r\nHost: nowhere.example.org\r\n\r\n\
         GET /c HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    let answer = over_the_wire(address, requests.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![404, 404, 200], "{answer}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/c");
}

#[tokio::test]
async fn hop_by_hop_fields_stay_and_the_client_is_named() {
    let (site, seen) = recording_site().await;
    let (_ingress, address, _) = ingress_for(site).await;
    let request = format!(
        "GET http://{HOST}/abs?q=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close, X-Private\r\n\
         X-Private: secret\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nTE: trailers\r\n\
         X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\nX-Kept: yes\r\n\r\n"
    );
    let answer = over_the_wire(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![200], "{answer}");
    let seen = seen.lock().unwrap();
    let seen = &seen[0];
    assert_eq!(seen.target, "/abs?q=1", "absolute form becomes origin form");
    for gone in ["x-private", "keep-alive", "upgrade", "te"] {
        assert_eq!(seen.header(gone), None, "{gone}");
    }
    assert_eq!(seen.header("x-kept"), Some("yes"));
    assert_eq!(seen.header("host"), Some(HOST));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("198.51.100.7, 127.0.0.1")
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("https"),
        "a forwarder's word is kept"
    );
}

#[tokio::test]
async fn every_framing_of_a_sites_answer_reaches_the_client_as_a_whole_body() {
    let cases: [(&[u8], bool, &str); 4] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, "hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x\r\nlo\r\n0\r\nT: 1\r\n\r\n",
            false,
            "hello",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nhello", true, "hello"),
        (b"HTTP/1.0 200 OK\r\n\r\nhello", true, "hello"),
    ];
    for (answer, close, body) in cases {
        let site = raw_site(answer, close).await;
        let (_ingress, address, _) = ingress_for(site).await;
        // Twice on one connection: the first answer's end is where the ingress says.
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let get = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        for _ in 0..2 {
            stream.write_all(get.as_bytes()).await.unwrap();
            let response = read_response(&mut stream).await;
            assert_eq!(response.0, 200);
            assert_eq!(
                response.1,
                body.as_bytes(),
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
        // An HTTP/1.0 client gets a body ended by the close when its length is not known.
        let old = over_the_wire(
            address,
            format!("GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(old.ends_with("\r\n\r\nhello"), "{old}");
        assert!(!old.contains("transfer-encoding"), "{old}");
    }
}

/// Reads one response with hyper's own client reading: (status, body).
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        let mut fields = Vec::new();
        let Ok(Some(head)) = alveole_h1::head::parse_response(&raw, false, &mut fields) else {
            continue;
        };
        let rest = &raw[head.len..];
        match head.framing {
            alveole_h1::head::Framing::Length(n) if rest.len() as u64 >= n => {
                return (head.status, rest.to_vec());
            }
            alveole_h1::head::Framing::Chunked => {
                let mut decoder = alveole_h1::chunked::Decoder::default();
                let (mut at, mut body) = (0, Vec::new());
                while at < rest.len() && !decoder.is_done() {
                    let step = decoder.decode(&rest[at..]).unwrap();
                    if let Some(data) = step.data {
                        body.extend_from_slice(&rest[at..][data]);
                    }
                    at += step.consumed;
                }
                if decoder.is_done() {
                    return (head.status, body);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_site_that_answers_before_reading_the_body_is_relayed() {
    let site = raw_site(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
        true,
    )
    .await;
    let (ingress, address, id) = ingress_for(site).await;
    ingress.set_body_limits(HashMap::from([(id, 64 * 1024 * 1024)]));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 33554432\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // Some of the body, then the client waits for an answer rather than sending the rest.
    stream.write_all(&[b'x'; 65536]).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(statuses(&answer), vec![403], "{answer}");
    assert!(answer.ends_with("no"), "{answer}");
}

#[tokio::test]
async fn a_head_request_keeps_its_length_and_gets_no_body() {
    let site = raw_site(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).await;
    let (_ingress, address, _) = ingress_for(site).await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    for _ in 0..2 {
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        while find(&raw, b"\r\n\r\n").is_none() {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            raw.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("content-length: 5"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "no body after the head: {text}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_while_its_site_thinks_is_no_longer_in_flight() {
    // A site that reads the request and never answers (a long poll).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = listener.local_addr().unwrap();
    let (arrived, mut reached) = tokio::sync::mpsc::channel::<tokio::net::TcpStream>(1);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = arrived.send(stream).await;
        }
    });
    let ingress = Arc::new(Ingress::new().with_limits(HoldLimits {
        drain_within: Duration::from_secs(120),
        ..HoldLimits::default()
    }));
    let id = SiteId::generate();
    let mut routes = Routes::default();
    routes.insert(
        &Hostname::parse(HOST, Wildcard::Refused).unwrap(),
        Upstream {
            site: id,
            address: site,
        },
    );
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve(listener));
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let get = format!("GET /poll HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    client.write_all(get.as_bytes()).await.unwrap();
    let _held_by_site = reached.recv().await.unwrap();
    drop(client);
    // The hold waits for requests in flight: none is left once the client has gone.
    let hold = tokio::time::timeout(Duration::from_secs(60), Traffic::hold(&ingress, id)).await;
    assert!(
        hold.is_ok(),
        "the hold did not wait for the abandoned request"
    );
}

#[tokio::test]
async fn a_streamed_answer_reaches_an_https_client_part_by_part() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A site that sends its first part, and the rest only once the client has read it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = listener.local_addr().unwrap();
    let (read_first, first_read) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
        let _ = stream.write_all(head).await;
        if first_read.await.is_ok() {
            let _ = stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
        }
    });
    let (ca, chain, key) = super::tests::certificate_for(&[HOST]);
    let spec = super::tests::spec_with_tls(
        HOST,
        Some(alveole_model::SiteTls {
            chain_pem: chain,
            key_pem: alveole_model::backup::WireSecret(key),
            redirect: false,
            hsts_seconds: 0,
        }),
    );
    let ingress = Arc::new(Ingress::new());
    let mut routes = Routes::default();
    routes.insert(
        &spec.hostnames[0],
        Upstream {
            site: spec.site_id,
            address: site,
        },
    );
    ingress.set_routes(routes);
    assert!(ingress.set_certificates(&[spec]).is_empty());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve_tls(listener));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .resolve(HOST, https)
        .build()
        .unwrap();
    let mut answer = client
        .get(format!("https://{HOST}:{}/events", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), answer.chunk())
        .await
        .expect("the first part arrived before the site sent the rest")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    read_first.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(part) = answer.chunk().await.unwrap() {
        rest.extend_from_slice(&part);
    }
    assert_eq!(rest, b"last");
}
