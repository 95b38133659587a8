//! Hostile and careless clients against a listener (feature `siege`, for the tests and the
//! benchmark): many idle kept-alive connections and slowloris clients that never finish a
//! request's head, from several loopback addresses (127.0.1.2, 127.0.1.3…), while a normal
//! client asks for a page. Bounded in connections and time; every socket closes when the
//! siege is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How many of each, from how many addresses.
#[derive(Clone, Copy, Debug)]
pub struct SiegePlan {
    pub idle: usize,
    pub slowloris: usize,
    pub addresses: u8,
}

/// The `i`th connection's address among `addresses`.
fn address_number(i: usize, addresses: u8) -> u8 {
    u8::try_from(i % usize::from(addresses.max(1))).unwrap_or(0)
}

/// Connects from `127.0.{group}.{n + 2}`, so that each address is a client of its own.
pub async fn connect_from(group: u8, n: u8, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, group, 2 + n)),
        0,
    ))?;
    socket.connect(server).await
}

/// One request on `stream`, read to the end of its head and of a `Content-Length` body.
pub async fn request(stream: &mut TcpStream, path: &str) -> std::io::Result<u16> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: siege.test\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if seen.len() >= end + 4 + length {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok(status);
        }
    }
}

/// The connections of a siege, held open until dropped.
#[derive(Debug)]
pub struct Siege {
    pub idle: Vec<TcpStream>,
    /// Slowloris connections and when each sent its half head.
    pub slow: Vec<(TcpStream, Instant)>,
    /// Connections the server closed or refused while the siege was being laid.
    pub refused: usize,
}

impl Siege {
    /// Opens `plan.idle` kept-alive connections (each answered once, then left idle) and then
    /// `plan.slowloris` connections that send half a head and nothing more.
    pub async fn lay(server: SocketAddr, path: &'static str, plan: SiegePlan) -> Siege {
        let mut siege = Siege {
            idle: Vec::new(),
            slow: Vec::new(),
            refused: 0,
        };
        let addresses = plan.addresses;
        for chunk in (0..plan.idle).collect::<Vec<_>>().chunks(50) {
            let mut opening = tokio::task::JoinSet::new();
            for i in chunk {
                let n = address_number(*i, addresses);
                opening.spawn(async move {
                    let mut stream = connect_from(1, n, server).await.ok()?;
                    (request(&mut stream, path).await.ok()? < 500).then_some(stream)
                });
            }
            while let Some(opened) = opening.join_next().await {
                match opened.ok().flatten() {
                    Some(stream) => siege.idle.push(stream),
                    None => siege.refused += 1,
                }
            }
        }
        for i in 0..plan.slowloris {
            let Ok(mut stream) = connect_from(2, address_number(i, addresses), server).await else {
                siege.refused += 1;
                continue;
            };
            if stream
                .write_all(b"GET / HTTP/1.1\r\nHost: siege.test\r\n")
                .await
                .is_err()
            {
                siege.refused += 1;
                continue;
            }
            siege.slow.push((stream, Instant::now()));
        }
        siege
    }

    /// How long after its half head each slowloris connection was closed by the server
    /// (`None`: still open at `within`).
    pub async fn slowloris_closed_after(&mut self, within: Duration) -> Vec<Option<Duration>> {
        let deadline = Instant::now() + within;
        let mut waiting = tokio::task::JoinSet::new();
        for (mut stream, sent) in std::mem::take(&mut self.slow) {
            waiting.spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => return Some(sent.elapsed()),
                        Ok(Ok(_)) => continue,
                        Err(_) => return None,
                    }
                }
            });
        }
        let mut closed = Vec::new();
        while let Some(outcome) = waiting.join_next().await {
            closed.push(outcome.ok().flatten());
        }
        closed
    }
}

/// A normal client asking `path` on a new connection each time, `count` times while a siege
/// holds: each status (0 when it got no answer within 10 seconds) and how long it took.
pub async fn normal_client(server: SocketAddr, path: &str, count: usize) -> Vec<(u16, Duration)> {
    let mut answers = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            let mut stream = TcpStream::connect(server).await?;
            request(&mut stream, path).await
        })
        .await;
        let status = match answered {
            Ok(Ok(status)) => status,
            _ => 0,
        };
        answers.push((status, started.elapsed()));
    }
    answers
}
