//! The guard against real sockets on loopback: each bound, and what it must not cut.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::{Guard, Limits, serve_http1};

const BOUND: Duration = Duration::from_secs(20);

/// Serves under `limits`; a request for `/slow` takes `slow` to answer.
async fn server(limits: Limits, slow: Duration) -> (SocketAddr, Arc<Guard>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let guard = Guard::new("test", limits);
    let accepting = guard.clone();
    tokio::spawn(async move {
        loop {
            let (admitted, _) = accepting.accept(&listener).await;
            let service = hyper::service::service_fn(move |request: Request<_>| async move {
                if request.uri().path() == "/slow" {
                    tokio::time::sleep(slow).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(serve_http1(admitted.ticket, admitted.stream, service));
        }
    });
    (address, guard)
}

async fn connect_from(client: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(client), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes; fails the test if it does not within the bound.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    seen
}

/// Sends one request and reads one whole response (`Content-Length: 2`).
async fn request(stream: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(BOUND, async {
        while !seen.ends_with(b"ok") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer");
    String::from_utf8_lossy(&seen).into_owned()
}

fn limits(header: u64, idle: u64) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(idle),
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_half_sent_head_is_closed_in_time_and_answers_are_not_cut() {
    let (server, guard) = server(limits(300, 400), Duration::from_millis(1200)).await;
    let mut slowloris = connect_from([127, 0, 0, 2], server).await;
    slowloris
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // An answer that takes longer than both timeouts, on another connection.
    let mut patient = connect_from([127, 0, 0, 3], server).await;
    let answer = request(&mut patient, "/slow").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = closed_by_server(&mut slowloris).await;
    assert!(seen.is_empty(), "nothing was answered to half a head");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(guard.stats().timed_out >= 1);
    // The patient connection is now idle: it is closed after the idle time.
    closed_by_server(&mut patient).await;
    assert_eq!(guard.stats().open, 0, "{:?}", guard.stats());
}

#[tokio::test]
async fn one_address_is_capped_only_for_unfinished_heads() {
    let limits = Limits {
        max_unfinished_per_client: 3,
        ..limits(5_000, 5_000)
    };
    let (server, guard) = server(limits, Duration::ZERO).await;
    // Many finished connections from one address (a school behind NAT) are fine.
    let mut finished = Vec::new();
    for _ in 0..10 {
        let mut stream = connect_from([127, 0, 0, 4], server).await;
        request(&mut stream, "/").await;
        finished.push(stream);
    }
    let mut unfinished = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from([127, 0, 0, 4], server).await;
        stream.write_all(b"GET / HT").await.unwrap();
        unfinished.push(stream);
    }
    // The unfinished ones are counted once the guard has admitted them.
    wait_for(&guard, |s| s.unfinished == 3).await;
    let mut refused = connect_from([127, 0, 0, 4], server).await;
    assert!(closed_by_server(&mut refused).await.is_empty());
    assert_eq!(guard.stats().refused, 1);
    // Another address is not affected, nor is a finished connection of the capped one.
    let mut other = connect_from([127, 0, 0, 5], server).await;
    assert!(request(&mut other, "/").await.starts_with("HTTP/1.1 200"));
    assert!(
        request(&mut finished[0], "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_makes_room() {
    let limits = Limits {
        max_connections: 4,
        ..limits(5_000, 60_000)
    };
    let (server, guard) = server(limits, Duration::ZERO).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from([127, 0, 0, 6], server).await;
        request(&mut stream, "/").await;
        idle.push(stream);
    }
    wait_for(&guard, |s| s.idle == 4).await;
    let mut newcomer = connect_from([127, 0, 0, 7], server).await;
    assert!(
        request(&mut newcomer, "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // The first (oldest idle) was closed to make room.
    closed_by_server(&mut idle[0]).await;
    assert!(guard.stats().evicted >= 1);
    assert!(request(&mut idle[3], "/").await.starts_with("HTTP/1.1 200"));
}

async fn wait_for(guard: &Guard, done: impl Fn(&crate::Stats) -> bool) {
    tokio::time::timeout(BOUND, async {
        while !done(&guard.stats()) {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never reached: {:?}", guard.stats()));
}
