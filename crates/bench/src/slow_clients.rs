//! `alveole-bench slow-clients`: a normal client's latency (each request on a new connection)
//! at a node's ingress while idle kept-alive connections and slowloris clients hold it, from
//! several loopback addresses; against the same ingress left alone. The guard's own cost and
//! effect are measured apart: a server answering by itself behind the guard, against the same
//! server with no bounds (as every listener was), each with and without the siege.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alveole_agent::ingress::{Ingress, Routes, Upstream};
use alveole_listen::Limits;
use alveole_listen::siege::{Siege, SiegePlan, normal_client};
use tokio::net::TcpListener;

use crate::measure::percentiles;

const HOST: &str = "siege.test";

pub async fn run(plan: SiegePlan, requests: usize, max_connections: usize) -> anyhow::Result<()> {
    alveole_listen::raise_open_files_limit();
    let backend = backend().await?;
    let limits = Limits {
        max_connections,
        header_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    println!(
        "siege: {} idle kept-alive connections and {} slowloris clients from {} addresses; \
         {requests} requests of a normal client, each on a new connection; header timeout 2 s, \
         at most {max_connections} connections",
        plan.idle, plan.slowloris, plan.addresses
    );
    println!("| server | siege | p50 | p99 | max | unanswered | half heads open after 5 s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, server, besieged) in [
        ("alveole ingress (proxying)", Server::Ingress, false),
        ("alveole ingress (proxying)", Server::Ingress, true),
        ("hyper behind alveole's guard", Server::Guarded, false),
        ("hyper behind alveole's guard", Server::Guarded, true),
        ("hyper, no bounds (as before)", Server::Naive, false),
        ("hyper, no bounds (as before)", Server::Naive, true),
    ] {
        let address = match server {
            Server::Ingress => guarded_ingress(backend, limits).await?,
            Server::Guarded => guarded_plain(limits).await?,
            Server::Naive => naive_plain().await?,
        };
        let mut siege = if besieged {
            Some(Siege::lay(address, "/", plan).await)
        } else {
            None
        };
        let answers = normal_client(address, "/", requests).await;
        let open = match &mut siege {
            Some(siege) => siege
                .slowloris_closed_after(Duration::from_secs(5))
                .await
                .iter()
                .filter(|closed| closed.is_none())
                .count()
                .to_string(),
            None => "-".into(),
        };
        let answered: Vec<Duration> = answers
            .iter()
            .filter(|(status, _)| *status != 0)
            .map(|(_, took)| *took)
            .collect();
        let unanswered = answers.len() - answered.len();
        let longest = answered.iter().max().copied().unwrap_or_default();
        let (p50, p99) = percentiles(answered);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {unanswered} | {open} |",
            if besieged { "yes" } else { "no" },
            ms(p50),
            ms(p99),
            ms(longest),
        );
    }
    Ok(())
}

/// What answers the normal client: the ingress proxying to a backend, or a server answering
/// by itself, with or without the guard (the same work, so their figures compare).
#[derive(Clone, Copy, Debug)]
enum Server {
    Ingress,
    Guarded,
    Naive,
}

fn routes(backend: SocketAddr) -> anyhow::Result<Routes> {
    let mut routes = Routes::default();
    routes.insert(
        &alveole_model::Hostname::parse(HOST, alveole_model::Wildcard::Refused)?,
        Upstream {
            site: alveole_model::SiteId::generate(),
            address: backend,
        },
    );
    Ok(routes)
}

async fn guarded_ingress(backend: SocketAddr, limits: Limits) -> anyhow::Result<SocketAddr> {
    let ingress = Arc::new(Ingress::new().with_listen_limits(limits));
    ingress.set_routes(routes(backend)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(ingress.serve(listener));
    Ok(address)
}

/// What every listener was before: accept, serve, no bound; it answers `ok` itself.
async fn naive_plain() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_ok(stream));
        }
    });
    Ok(address)
}

/// The same server behind the guard every alveole listener has.
async fn guarded_plain(limits: Limits) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let guard = alveole_listen::Guard::new("bench", limits);
    tokio::spawn(async move {
        loop {
            let (admitted, _) = guard.accept(&listener).await;
            tokio::spawn(alveole_listen::serve_http1(
                admitted.ticket,
                admitted.stream,
                hyper::service::service_fn(|_request| async { Ok::<_, Infallible>(ok()) }),
            ));
        }
    });
    Ok(address)
}

/// The sites' stand-in behind the ingress.
async fn backend() -> anyhow::Result<SocketAddr> {
    naive_plain().await
}

fn ok() -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from_static(
        b"ok",
    )))
}

async fn serve_ok(stream: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(|_request| async { Ok::<_, Infallible>(ok()) });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}
