//! Listeners hold against slow and idle clients: 2,000 idle kept-alive connections and 200
//! slowloris clients, from several loopback addresses, against the panel and against a node's
//! ingress. A normal client is answered all along, the half-sent requests are closed within
//! the header timeout, and the longest idle connections make room for new ones.
//! (`crates/alveole/tests/cli` runs the real binary under a low limit on open files; the
//! latency figures are `alveole-bench slow-clients`.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alveole_listen::Limits;
use alveole_listen::siege::{Siege, SiegePlan, normal_client};
use alveole_tests::{TestDb, TestPanel};
use tokio::net::TcpListener;

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

const PLAN: SiegePlan = SiegePlan {
    idle: 2_000,
    slowloris: 200,
    addresses: 20,
};

/// Bounds tight enough that the siege reaches them: more connections than the cap, more
/// unfinished heads per address than allowed.
fn limits() -> Limits {
    Limits {
        max_connections: 1_000,
        max_unfinished_per_client: 8,
        header_timeout: HEADER_TIMEOUT,
        idle_timeout: Duration::from_secs(60),
    }
}

/// What every siege must show: every idle connection let in (the longest idle closed to make
/// room rather than the newcomer refused), the normal client always answered, each half head
/// closed within the header timeout.
async fn holds(server: SocketAddr, path: &'static str) {
    alveole_listen::raise_open_files_limit();
    let mut siege = Siege::lay(server, path, PLAN).await;
    assert_eq!(
        siege.refused, 0,
        "every idle connection was let in and answered once"
    );
    let answers = normal_client(server, path, 20).await;
    assert!(
        answers
            .iter()
            .all(|(status, _)| (200..500).contains(status)),
        "the normal client was answered every time: {answers:?}"
    );
    let closed = siege
        .slowloris_closed_after(HEADER_TIMEOUT + Duration::from_secs(8))
        .await;
    let open: Vec<_> = closed.iter().filter(|c| c.is_none()).collect();
    assert!(open.is_empty(), "{} half heads still open", open.len());
    // The cap was reached: the longest idle connections were closed to make room.
    let mut still_idle = 0;
    for stream in &mut siege.idle {
        if alveole_listen::siege::request(stream, path).await.is_ok() {
            still_idle += 1;
        }
    }
    assert!(
        still_idle < PLAN.idle,
        "some idle connections made room ({still_idle} of {} left)",
        PLAN.idle
    );
    drop(siege);
    let after = normal_client(server, path, 3).await;
    assert!(
        after.iter().all(|(status, _)| (200..500).contains(status)),
        "{after:?}"
    );
}

#[tokio::test]
async fn the_panel_holds_against_slow_and_idle_clients() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = alveole_panel::app(panel.state().clone());
    let server = tokio::spawn(alveole_panel::serving::serve(
        app,
        listener,
        limits(),
        std::future::pending(),
    ));
    holds(address, "/healthz").await;
    // What the siege did is in the panel's metrics.
    let (status, metrics) = panel.call(reqwest::Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"alveole_listener_evicted_total{listener="panel"}"#)
            && !metrics.contains(r#"alveole_listener_evicted_total{listener="panel"} 0"#),
        "{metrics}"
    );
    server.abort();
}

#[tokio::test]
async fn the_ingress_holds_against_slow_and_idle_clients() {
    let backend = backend().await;
    let ingress = Arc::new(alveole_agent::ingress::Ingress::new().with_listen_limits(limits()));
    let mut routes = alveole_agent::ingress::Routes::default();
    routes.insert(
        &alveole_model::Hostname::parse("siege.test", alveole_model::Wildcard::Refused).unwrap(),
        alveole_agent::ingress::Upstream {
            site: alveole_model::SiteId::generate(),
            address: backend,
        },
    );
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(ingress.serve(listener));
    holds(address, "/").await;
    server.abort();
}

/// A site's container stand-in: answers every request with a short page.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}
