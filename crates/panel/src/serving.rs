//! The panel's two listeners, both under `alveole-listen`'s bounds (connection caps, header
//! and idle timeouts): the members' one (plain HTTP behind the co-op's TLS proxy, or HTTPS
//! with a certificate given to the panel) and the agents' one (mutual TLS). Request bodies are
//! bounded in [`crate::app`].

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
    serve_tls("agents", app, listener, tls, limits, shutdown).await
}

/// Serves `app` to members over HTTPS on `listener` (with [`members_tls`]) until `shutdown`
/// resolves.
pub async fn serve_https(
    app: Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_tls("panel-https", app, listener, tls, limits, shutdown).await
}

/// The members' HTTPS with the co-op's certificate for the panel (its chain and key in PEM),
/// with ring; the chain, the key and their match are checked here, at start.
pub fn members_tls(chain_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and its key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn serve_tls(
    name: &'static str,
    app: Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let guard = Guard::new(name, limits);
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
                tracing::debug!(%client, %error, "TLS connection ended with an error");
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
