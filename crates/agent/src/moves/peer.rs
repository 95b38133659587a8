//! How agents talk to each other for moves: HTTP over mutual TLS, both sides holding a
//! certificate from the panel's CA that names their node. The chain is checked offline, so a
//! move goes on while the panel is away; which peer may send what is decided by the node's
//! desired state (the target accepts a move's data only from that move's source node).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alveole_listen::{Guard, Limits, serve_http1};
use alveole_model::{NodeId, SiteMoveId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::control::identity::Credential;
use crate::moves::volume_sync::{Manifest, PassReport};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the agent's certificate or the panel's CA does not read")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("the agent's TLS configuration is refused")]
    Tls(#[from] rustls::Error),
    #[error("the CA cannot check peers' certificates")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the agent's TLS client cannot be made")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach the peer agent at {at}: {source}")]
    Unreachable {
        at: SocketAddr,
        source: reqwest::Error,
    },
    #[error("the peer agent refused ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error(transparent)]
    Wire(#[from] super::wire::WireError),
}

/// This agent's credential (updated when renewed) and the CA it trusts peers through.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    credential: Arc<RwLock<Credential>>,
    ca_pem: String,
}

/// The DNS name a node's certificate carries (never resolved, only checked).
pub fn node_name(node: NodeId) -> String {
    format!("{node}.node.alveole.invalid")
}

impl PeerIdentity {
    pub fn new(credential: Credential, ca_pem: String) -> Self {
        Self {
            credential: Arc::new(RwLock::new(credential)),
            ca_pem,
        }
    }

    /// Uses a renewed certificate from the next connection on.
    pub fn update(&self, credential: Credential) {
        *self
            .credential
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = credential;
    }

    /// An HTTP client that reaches `node`'s agent at `at` over mutual TLS (a vault: restic's
    /// REST protocol), and the base address to call it by its certificate's name.
    pub fn http_client(
        &self,
        node: NodeId,
        at: std::net::SocketAddr,
    ) -> Result<(reqwest::Client, String), reqwest::Error> {
        let name = node_name(node);
        let client = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(
                self.ca_pem.as_bytes(),
            )?)
            .identity(reqwest::Identity::from_pem(
                self.credential().identity_pem().as_bytes(),
            )?)
            .resolve(&name, at)
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok((client, format!("https://{name}:{}", at.port())))
    }

    fn credential(&self) -> Credential {
        self.credential
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn roots(&self) -> Result<rustls::RootCertStore, PeerError> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes())
        {
            roots.add(certificate?)?;
        }
        Ok(roots)
    }

    /// The server side: this node's certificate, and only clients with one from the CA.
    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PeerError> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder(Arc::new(self.roots()?)).build()?;
        let (certificates, key) = self.credential().tls_material()?;
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates, key)?;
        Ok(Arc::new(config))
    }

    /// A client for `node`'s agent at `at`: it must present `node`'s certificate.
    pub fn client(&self, node: NodeId, at: SocketAddr) -> Result<PeerClient, PeerError> {
        let name = node_name(node);
        let tls = PeerError::Client;
        let identity = reqwest::Identity::from_pem(self.credential().identity_pem().as_bytes())
            .map_err(tls)?;
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).map_err(tls)?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(identity)
            .resolve(&name, at)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(tls)?;
        Ok(PeerClient {
            http,
            base: format!("https://{name}:{}", at.port()),
            at,
        })
    }
}

/// Calls one peer agent's move routes.
#[derive(Clone, Debug)]
pub struct PeerClient {
    http: reqwest::Client,
    base: String,
    at: SocketAddr,
}

/// How long a call that is not a stream may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl PeerClient {
    fn url(&self, movement: SiteMoveId, what: &str) -> String {
        format!("{}/moves/{movement}/{what}", self.base)
    }

    async fn checked(&self, sent: reqwest::RequestBuilder) -> Result<reqwest::Response, PeerError> {
        let at = self.at;
        let response = sent
            .send()
            .await
            .map_err(|source| PeerError::Unreachable { at, source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let detail = response.text().await.unwrap_or_default();
        Err(PeerError::Refused { status, detail })
    }

    async fn bytes(&self, sent: reqwest::RequestBuilder) -> Result<Bytes, PeerError> {
        let at = self.at;
        self.checked(sent)
            .await?
            .bytes()
            .await
            .map_err(|source| PeerError::Unreachable { at, source })
    }

    /// What the target holds of the site's volume (its leftovers of an interrupted copy go).
    pub async fn manifest(&self, movement: SiteMoveId) -> Result<Manifest, PeerError> {
        let body = self
            .bytes(
                self.http
                    .get(self.url(movement, "manifest"))
                    .timeout(CALL_TIMEOUT),
            )
            .await?;
        Ok(super::wire::decode_manifest(&body)?)
    }

    /// Sends one pass, streamed; what the target applied.
    pub async fn pass(
        &self,
        movement: SiteMoveId,
        body: reqwest::Body,
    ) -> Result<PassReport, PeerError> {
        let answer = self
            .bytes(self.http.post(self.url(movement, "pass")).body(body))
            .await?;
        let applied: AppliedPass =
            serde_json::from_slice(&answer).map_err(|e| PeerError::Refused {
                status: 200,
                detail: format!("an unreadable answer: {e}"),
            })?;
        Ok(PassReport {
            files: applied.files,
            bytes: applied.bytes,
            removed: applied.removed,
            unstable: applied.unstable,
            special: 0,
        })
    }

    pub async fn has_image(&self, movement: SiteMoveId) -> Result<bool, PeerError> {
        match self
            .checked(
                self.http
                    .get(self.url(movement, "image"))
                    .timeout(CALL_TIMEOUT),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(PeerError::Refused { status: 404, .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Ships the site's image (`docker save` on this side, `docker load` on the other).
    pub async fn send_image(
        &self,
        movement: SiteMoveId,
        body: reqwest::Body,
    ) -> Result<(), PeerError> {
        self.checked(self.http.put(self.url(movement, "image")).body(body))
            .await
            .map(|_| ())
    }

    /// The target starts the site and checks it answers HTTP.
    pub async fn start(&self, movement: SiteMoveId, within: Duration) -> Result<(), PeerError> {
        self.checked(self.http.post(self.url(movement, "start")).timeout(within))
            .await
            .map(|_| ())
    }

    /// The target drops the container it started (a freeze that rolled back).
    pub async fn abort(&self, movement: SiteMoveId) -> Result<(), PeerError> {
        self.checked(
            self.http
                .post(self.url(movement, "abort"))
                .timeout(Duration::from_secs(10)),
        )
        .await
        .map(|_| ())
    }
}

/// What the target answers to a pass.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AppliedPass {
    pub files: usize,
    pub bytes: u64,
    pub removed: usize,
    pub unstable: usize,
}

/// A peer's request, once its certificate named its node.
pub type PeerResponse = Response<Full<Bytes>>;

/// What the target side answers; implemented by [`super::target::Target`].
#[async_trait::async_trait]
pub trait PeerHandler: Send + Sync {
    async fn handle(&self, peer: NodeId, request: Request<Incoming>) -> PeerResponse;
}

/// An answer to the panel, streamed (a database's dump).
pub type PanelResponse = Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>;

/// What the panel's own requests get (`crate::requests`).
#[async_trait::async_trait]
pub trait PanelHandler: Send + Sync {
    async fn handle(&self, request: Request<Incoming>) -> PanelResponse;
}

/// The DNS name the panel's own client certificate carries.
pub const PANEL_NAME: &str = "panel.alveole.invalid";

/// Who a client certificate names: a node, or the panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Node(NodeId),
    Panel,
}

pub fn answer(status: StatusCode, body: impl Into<Bytes>) -> PeerResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// Who a client certificate names: a node (`<node-id>.node.alveole.invalid`) or the panel
/// (`panel.alveole.invalid`).
fn caller_of(certificate: &[u8]) -> Option<Caller> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) if *dns == PANEL_NAME => {
                Some(Caller::Panel)
            }
            x509_parser::extensions::GeneralName::DNSName(dns) => dns
                .strip_suffix(".node.alveole.invalid")
                .and_then(|id| id.parse().ok())
                .map(Caller::Node),
            _ => None,
        })
}

/// Serves other agents on `listener` until it fails: mutual TLS, then `handler` (or `panel`
/// for the panel's own requests, when given). Its connections are its own tasks: stopping it
/// stops them too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    identity: PeerIdentity,
    handler: Arc<dyn PeerHandler>,
    panel: Option<Arc<dyn PanelHandler>>,
) -> std::io::Result<()> {
    // Other agents only, a few at a time; a copy stream is a request being answered, which
    // the guard never cuts.
    let guard = Guard::new(
        "peers",
        Limits {
            max_connections: 256,
            ..Limits::default()
        },
    );
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (admitted, from) = guard.accept(&listener).await;
        while connections.try_join_next().is_some() {}
        let config = match identity.server_config() {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(%error, "cannot serve peers");
                continue;
            }
        };
        let (handler, panel) = (handler.clone(), panel.clone());
        connections.spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let stream = match admitted
                .ticket
                .within_head_time(acceptor.accept(admitted.stream))
                .await
            {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::warn!(%from, %error, "a peer's TLS handshake failed");
                    return;
                }
                None => return,
            };
            let caller = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|certificate| caller_of(certificate));
            let (caller, panel) = match (caller, panel) {
                (Some(Caller::Panel), Some(panel)) => (Caller::Panel, Some(panel)),
                (Some(Caller::Node(node)), _) => (Caller::Node(node), None),
                _ => {
                    tracing::warn!(%from, "a peer's certificate names no node (nor the panel)");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let (handler, panel) = (handler.clone(), panel.clone());
                async move {
                    let response = match (caller, panel) {
                        (Caller::Node(peer), _) => handler
                            .handle(peer, request)
                            .await
                            .map(|body| body.map_err(|never| match never {}).boxed()),
                        (Caller::Panel, Some(panel)) => panel.handle(request).await,
                        (Caller::Panel, None) => crate::moves::peer::answer(
                            StatusCode::FORBIDDEN,
                            "this agent takes no request from the panel",
                        )
                        .map(|body| body.map_err(|never| match never {}).boxed()),
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(error) = serve_http1(admitted.ticket, stream, service).await {
                tracing::debug!(%error, "a peer connection ended with an error");
            }
        });
    }
}

/// The body of a peer's request as a stream of chunks.
pub fn body_stream(
    request: Request<Incoming>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    use futures::StreamExt;
    http_body_util::BodyStream::new(request.into_body()).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(error) => Some(Err(std::io::Error::other(error))),
        }
    })
}

/// Collects a small body (at most `limit` bytes).
pub async fn small_body(request: Request<Incoming>, limit: usize) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(request.into_body(), limit);
    limited.collect().await.ok().map(|c| c.to_bytes())
}
