//! The node's HTTP ingress: a reverse proxy in the agent's own runtime (hyper), routing by Host
//! to the site's container. The route table is swapped whole, atomically: a request keeps the
//! upstream it was routed to, and a new table applies to the next request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use alveole_model::SiteId;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::runtime::Traffic;

type Body = BoxBody<Bytes, hyper::Error>;

/// Where a site answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub site: SiteId,
    pub address: SocketAddr,
}

/// Host name → upstream. Names are in normal form (lowercase A-labels); a wildcard
/// `*.example.org` is kept under `example.org` and matches one more label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    exact: HashMap<String, Upstream>,
    wildcard: HashMap<String, Upstream>,
}

impl Routes {
    pub fn insert(&mut self, hostname: &alveole_model::Hostname, upstream: Upstream) {
        if hostname.is_wildcard() {
            self.wildcard.insert(hostname.parent().to_owned(), upstream);
        } else {
            self.exact.insert(hostname.as_str().to_owned(), upstream);
        }
    }

    /// Sends every name of `site` to `address`.
    pub fn repoint(&mut self, site: SiteId, address: SocketAddr) {
        for upstream in self.exact.values_mut().chain(self.wildcard.values_mut()) {
            if upstream.site == site {
                upstream.address = address;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The upstream for a `Host` header value (port and trailing dot ignored, any case).
    pub fn lookup(&self, host: &str) -> Option<Upstream> {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        if let Some(upstream) = self.exact.get(&name) {
            return Some(*upstream);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| h.trim_start_matches('['));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// How long and how many requests a held site may keep waiting.
#[derive(Clone, Copy, Debug)]
pub struct HoldLimits {
    /// A request held longer gets 503 (with Retry-After).
    pub max_wait: Duration,
    /// Requests held at once for one site; more get 503 at once.
    pub max_waiting: usize,
    /// How long a hold waits for the requests in flight to finish.
    pub drain_within: Duration,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(30),
            max_waiting: 10_000,
            drain_within: Duration::from_secs(30),
        }
    }
}

/// Per site: whether its requests are held, how many wait, how many are in flight.
#[derive(Debug, Default)]
struct SiteTraffic {
    held: bool,
    waiting: usize,
    in_flight: usize,
}

/// The proxy. Shared as `Arc<Ingress>`; `set_routes` may be called from any task.
#[derive(Debug)]
pub struct Ingress {
    routes: RwLock<Arc<Routes>>,
    client: Client<HttpConnector, Incoming>,
    traffic: Mutex<HashMap<SiteId, SiteTraffic>>,
    /// Woken whenever a hold ends or a request finishes.
    changed: Notify,
    limits: HoldLimits,
}

impl Default for Ingress {
    fn default() -> Self {
        Self::new()
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Ingress {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            routes: RwLock::new(Arc::new(Routes::default())),
            client,
            traffic: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            limits: HoldLimits::default(),
        }
    }

    pub fn with_limits(mut self, limits: HoldLimits) -> Self {
        self.limits = limits;
        self
    }

    fn traffic(&self) -> std::sync::MutexGuard<'_, HashMap<SiteId, SiteTraffic>> {
        self.traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits while `site` is held, then counts the request in flight; an error response when
    /// no site answers, or it waited too long, or too many already wait.
    async fn admit(self: &Arc<Self>, host: &str) -> Result<(Upstream, InFlight), Response<Body>> {
        let deadline = tokio::time::Instant::now() + self.limits.max_wait;
        let mut counted_waiting: Option<SiteId> = None;
        let outcome = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(upstream) = self.routes().lookup(host) else {
                break Err(page(
                    StatusCode::NOT_FOUND,
                    "No site here",
                    &format!("No site of this cooperative answers for {host}."),
                ));
            };
            {
                let mut traffic = self.traffic();
                let state = traffic.entry(upstream.site).or_default();
                if !state.held {
                    state.in_flight += 1;
                    break Ok((
                        upstream,
                        InFlight {
                            ingress: self.clone(),
                            site: upstream.site,
                        },
                    ));
                }
                if counted_waiting.is_none() {
                    if state.waiting >= self.limits.max_waiting {
                        break Err(busy());
                    }
                    state.waiting += 1;
                    counted_waiting = Some(upstream.site);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break Err(busy());
            }
        };
        if let Some(site) = counted_waiting
            && let Some(state) = self.traffic().get_mut(&site)
        {
            state.waiting = state.waiting.saturating_sub(1);
        }
        outcome
    }

    /// Replaces the whole route table at once.
    pub fn set_routes(&self, routes: Routes) {
        let mut current = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(routes);
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Serves until the listener fails; each connection on its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, client) = listener.accept().await?;
            let ingress = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let ingress = ingress.clone();
                    async move { Ok::<_, Infallible>(ingress.handle(request, client).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "ingress connection ended with an error");
                }
            });
        }
    }

    async fn handle(
        self: &Arc<Self>,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<Body> {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .unwrap_or("")
            .to_owned();
        let (upstream, in_flight) = match self.admit(&host).await {
            Ok(admitted) => admitted,
            Err(response) => return response,
        };
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let Ok(uri) = format!("http://{}{path}", upstream.address).parse() else {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request path is not valid.",
            );
        };
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", client.ip()),
            None => client.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", value);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        match self.client.request(request).await {
            // The request stays in flight until its response body is finished.
            Ok(response) => response.map(|body| {
                body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                })
                .boxed()
            }),
            Err(error) => {
                tracing::warn!(site = %upstream.site, %error, "upstream unreachable");
                page(
                    StatusCode::BAD_GATEWAY,
                    "Site unavailable",
                    "This site is not answering right now. Please try again shortly.",
                )
            }
        }
    }
}

/// A request counted in flight for its site until dropped.
#[derive(Debug)]
struct InFlight {
    ingress: Arc<Ingress>,
    site: SiteId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(state) = self.ingress.traffic().get_mut(&self.site) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.ingress.changed.notify_waiters();
    }
}

/// Releases a site's held requests when dropped.
#[derive(Debug)]
struct Hold {
    ingress: Arc<Ingress>,
    site: SiteId,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(state) = self.ingress.traffic().get_mut(&self.site) {
            state.held = false;
        }
        self.ingress.changed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Traffic for Arc<Ingress> {
    async fn hold(&self, site: SiteId) -> Box<dyn Send + Sync> {
        self.traffic().entry(site).or_default().held = true;
        let hold = Hold {
            ingress: self.clone(),
            site,
        };
        let deadline = tokio::time::Instant::now() + self.limits.drain_within;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.traffic().get(&site).is_none_or(|s| s.in_flight == 0) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(%site, "requests still in flight after the drain period; replacing anyway");
                break;
            }
        }
        Box::new(hold)
    }

    fn repoint(&self, site: SiteId, address: SocketAddr) {
        let mut routes = (*self.routes()).clone();
        routes.repoint(site, address);
        self.set_routes(routes);
    }
}

fn busy() -> Response<Body> {
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "One moment",
        "This site is being updated and will answer again in a moment.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// alveole's own pages for what no site answers.
fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · alveole</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto\">\
         <h1>{title}</h1><p>{}</p><p><small>Served by alveole, the cooperative's hosting panel.</small></p></body></html>",
        escape(text)
    );
    let mut response = Response::new(
        Full::new(Bytes::from(html))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use alveole_model::{Hostname, Wildcard};

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
        assert_eq!(routes.lookup("A.Example.ORG.:8080"), Some(a));
        assert_eq!(routes.lookup("b.example.org"), Some(wild));
        assert_eq!(routes.lookup("c.b.example.org"), None);
        assert_eq!(routes.lookup("example.org"), None);
        assert_eq!(routes.lookup("[::1]:80"), None);
        assert_eq!(escape("<script>"), "&lt;script&gt;");
    }
}
