//! The panel's two listeners, both under `alveole-listen`'s bounds (connection caps, header
//! and idle timeouts): the members' one (plain HTTP; the co-op's TLS proxy sits in front) and
//! the agents' one (mutual TLS). Request bodies are bounded in [`crate::app`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alveole_listen::{Guard, Limits, serve_http1};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::tls::{AgentPeer, certificate_key_hash};

/// How long requests under way may take to finish once the panel is told to stop.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests under way finish.
pub async fn serve(
    app: Router,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let guard = Guard::new("panel", limits);
    tokio::pin!(shutdown);
    loop {
        let (admitted, client) = tokio::select! {
            accepted = guard.accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let service = service(app.clone(), client, None);
        tokio::spawn(async move {
            if let Err(error) = serve_http1(admitted.ticket, admitted.stream, service).await {
                tracing::debug!(%client, %error, "panel connection ended with an error");
            }
        });
    }
    drop(listener);
    guard.finish_all(FINISH_WITHIN).await;
    Ok(())
}

/// Serves `app` to agents over TLS on `listener` until `shutdown` resolves. Each request
/// carries the client certificate's key hash ([`AgentPeer`]) when there is one.
pub async fn serve_agents(
    app: Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let guard = Guard::new("agents", limits);
    tokio::pin!(shutdown);
    loop {
        let (admitted, client) = tokio::select! {
            accepted = guard.accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // The handshake counts in the time a client has to send its request's head.
            let stream = match admitted
                .ticket
                .within_head_time(acceptor.accept(admitted.stream))
                .await
            {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::debug!(%client, %error, "TLS handshake failed");
                    return;
                }
                None => return,
            };
            let agent = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| certificate_key_hash(leaf))
                .map(AgentPeer);
            let service = service(app, client, agent);
            if let Err(error) = serve_http1(admitted.ticket, stream, service).await {
                tracing::debug!(%client, %error, "agent connection ended with an error");
            }
        });
    }
    drop(listener);
    guard.finish_all(FINISH_WITHIN).await;
    Ok(())
}

/// The application as a connection's service: each request knows its client's address (sign-in
/// attempts are counted per address) and, over TLS, the agent's key.
fn service(
    app: Router,
    client: SocketAddr,
    agent: Option<AgentPeer>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        if let Some(agent) = &agent {
            request.extensions_mut().insert(agent.clone());
        }
        request.extensions_mut().insert(ConnectInfo(client));
        tower::ServiceExt::oneshot(app.clone(), request)
    })
}
