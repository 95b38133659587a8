//! The node's HTTP ingress: a reverse proxy in the agent's own runtime, on an HTTP/1 framing of
//! its own (`alveole-h1`; decision 0036), routing by Host to the site's container. The route table is swapped whole, atomically: a request keeps the
//! upstream it was routed to, and a new table applies to the next request.
//!
//! A site's requests can be *held* (while its container is replaced): new requests wait, bounded
//! in time and number, and the hold begins once the requests in flight have finished. The
//! common path (no hold) costs two atomic operations per request.

mod admission;
#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod conformance_tests;
mod forward;
pub mod metrics;
mod pages;
mod relay;
mod routes;
#[cfg(test)]
mod tests;
pub mod tls;

pub use admission::RoomChange;
pub use admission::pressure;
pub use routes::{Routes, Upstream};

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use alveole_listen::{Guard, Limits, serve_http1, serve_own};
use alveole_model::SiteId;
use bytes::Bytes;
use hyper::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::engine::runtime::Traffic;
use crate::ingress::metrics::{IngressMetrics, SiteMetrics};
use crate::ingress::pages::{Page, busy, page};

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

/// Per site, shared by every route of the site and kept across route tables: whether its
/// requests are held, how many wait, how many are in flight.
#[derive(Debug, Default)]
struct SiteTraffic {
    held: AtomicBool,
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    /// Woken when the last request in flight finishes while the site is held.
    drained: Notify,
}

/// A route as the proxy uses it: where to send (the container, or another node's ingress when
/// forwarded) and the site's counters.
#[derive(Clone, Debug)]
struct Route {
    site: SiteId,
    target: SocketAddr,
    metrics: Arc<SiteMetrics>,
    traffic: Arc<SiteTraffic>,
    /// Its overload protection; none when off, and when forwarded (the node the site moved
    /// to admits its visitors).
    admission: Option<Arc<admission::Admission>>,
}

/// The proxy. Shared as `Arc<Ingress>`; `set_routes` may be called from any task.
#[derive(Debug)]
pub struct Ingress {
    /// What callers set (kept to repoint one site).
    routes: RwLock<Arc<Routes>>,
    compiled: RwLock<Arc<Routes<Route>>>,
    sites: Mutex<HashMap<SiteId, Arc<SiteTraffic>>>,
    /// Sites whose requests go to another node's ingress.
    forwards: RwLock<HashMap<SiteId, SocketAddr>>,
    /// The largest request body of each site (others: the default).
    body_limits: RwLock<Arc<HashMap<SiteId, u64>>>,
    /// Woken when a hold ends, and when a request finishes while a hold drains.
    changed: Notify,
    limits: HoldLimits,
    listen: Limits,
    metrics: IngressMetrics,
    /// For requests no site answers.
    unrouted: Arc<SiteMetrics>,
    /// The sites' certificates (HTTPS) and which names redirect plain HTTP there.
    certificates: Arc<tls::Certificates>,
    /// Each protected site's admission, kept while its settings stay the same.
    admissions: RwLock<HashMap<SiteId, Arc<admission::Admission>>>,
    /// Waiting rooms opened or closed since the agent last asked.
    room_changes: Mutex<Vec<RoomChange>>,
    /// The factor node pressure lowers admissions by (an f64's bits; 1.0: none).
    pressure: AtomicU64,
    /// The co-op's stylesheet for the waiting room.
    waiting_room_style: Arc<str>,
}

impl Default for Ingress {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingress {
    pub fn new() -> Self {
        let metrics = IngressMetrics::default();
        let unrouted = Arc::new(metrics.for_site(None));
        Self {
            routes: RwLock::new(Arc::new(Routes::default())),
            compiled: RwLock::new(Arc::new(Routes::default())),
            sites: Mutex::new(HashMap::new()),
            forwards: RwLock::new(HashMap::new()),
            body_limits: RwLock::default(),
            changed: Notify::new(),
            limits: HoldLimits::default(),
            listen: Limits::default(),
            metrics,
            unrouted,
            certificates: Arc::default(),
            admissions: RwLock::default(),
            room_changes: Mutex::default(),
            pressure: AtomicU64::new(1.0f64.to_bits()),
            waiting_room_style: Arc::from(""),
        }
    }

    /// The co-op's stylesheet, applied after the waiting room's own (a `</style>` in it
    /// cannot close the element).
    pub fn with_waiting_room_style(mut self, css: &str) -> Self {
        self.waiting_room_style = Arc::from(css.replace("</", "<\\/"));
        self
    }

    /// Protects the sites of `specs` that have admission settings (the node's and those
    /// moving in), replacing the previous set; a site whose settings did not change keeps
    /// its room. The routes are compiled again only when the set changed (each pass calls
    /// this).
    pub fn set_admissions(&self, specs: &[alveole_model::SiteSpec]) {
        let changed = {
            let mut admissions = self
                .admissions
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut kept = HashMap::new();
            let mut changed = false;
            for spec in specs {
                let Some(wanted) = &spec.admission else {
                    continue;
                };
                let admission = match admissions.remove(&spec.site_id) {
                    Some(existing) if existing.spec() == wanted => existing,
                    _ => {
                        changed = true;
                        Arc::new(admission::Admission::new(
                            spec.site_id,
                            wanted.clone(),
                            self.metrics.for_admission(spec.site_id),
                            self.waiting_room_style.clone(),
                        ))
                    }
                };
                kept.insert(spec.site_id, admission);
            }
            // What is left was protected and is no longer.
            changed |= !admissions.is_empty();
            *admissions = kept;
            changed
        };
        if changed {
            self.set_routes((*self.routes()).clone());
        }
    }

    /// Lowers every site's admissions by `factor` (node pressure), or restores them (1.0).
    pub fn set_pressure(&self, factor: f64) {
        self.pressure
            .store(factor.clamp(0.05, 1.0).to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn pressure(&self) -> f64 {
        f64::from_bits(self.pressure.load(Ordering::Relaxed))
    }

    pub(crate) fn note_room_change(&self, change: RoomChange) {
        tracing::info!(site = %change.site, opened = change.opened, waiting = change.waiting, "waiting room");
        let mut changes = self
            .room_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: a room flapping faster than the agent reports keeps its last changes.
        if changes.len() >= 1000 {
            changes.remove(0);
        }
        changes.push(change);
    }

    /// A site's traffic for the agent's report: requests answered since the start, and its
    /// waiting room now; `None` for a site that has had no request.
    pub fn traffic(&self, site: SiteId) -> Option<alveole_model::SiteTraffic> {
        let requests = self.metrics.requests_of(site)?;
        let (waiting, active) = self
            .admissions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&site)
            .map_or((0, 0), |admission| admission.counts());
        Some(alveole_model::SiteTraffic {
            requests,
            waiting: waiting as u64,
            active: active as u64,
        })
    }

    /// The waiting rooms opened or closed since the last call.
    pub fn take_room_changes(&self) -> Vec<RoomChange> {
        std::mem::take(
            &mut *self
                .room_changes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Serves HTTPS with the certificates of `specs` (by the name each client asks for), and
    /// redirects their plain HTTP there: what did not load, in words.
    pub fn set_certificates(&self, specs: &[alveole_model::SiteSpec]) -> Vec<String> {
        self.certificates.set(specs)
    }

    /// Answers these ACME HTTP-01 challenges (over plain HTTP and HTTPS, for any name),
    /// replacing the previous ones.
    pub fn set_challenges(&self, challenges: &[alveole_model::AcmeChallenge]) {
        self.certificates.set_challenges(challenges);
    }

    pub fn with_limits(mut self, limits: HoldLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The bounds of the sites' listener (the defaults suit a public one).
    pub fn with_listen_limits(mut self, limits: Limits) -> Self {
        self.listen = limits;
        self
    }

    fn traffic_of(&self, site: SiteId) -> Arc<SiteTraffic> {
        let mut sites = self
            .sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sites.entry(site).or_default().clone()
    }

    /// Replaces the whole route table at once.
    pub fn set_routes(&self, routes: Routes) {
        let forwards = self
            .forwards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let admissions = self
            .admissions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let compiled = routes.map(|upstream| {
            // A forwarded site goes to the other node's ingress, Host header unchanged.
            let forwarded = forwards.get(&upstream.site).copied();
            Route {
                site: upstream.site,
                target: forwarded.unwrap_or(upstream.address),
                metrics: Arc::new(self.metrics.for_site(Some(upstream.site))),
                traffic: self.traffic_of(upstream.site),
                admission: match forwarded {
                    Some(_) => None,
                    None => admissions.get(&upstream.site).cloned(),
                },
            }
        });
        *self
            .compiled
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(compiled);
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
    }

    /// The largest request body each site accepts, replacing the previous set (sites not in
    /// it get the default).
    pub fn set_body_limits(&self, limits: HashMap<SiteId, u64>) {
        *self
            .body_limits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(limits);
    }

    /// The site's limit; a site forwarded to its new node is bounded there, by the limit
    /// that node knows.
    fn body_limit(&self, site: SiteId) -> u64 {
        let known = self
            .body_limits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&site)
            .copied();
        known.unwrap_or_else(|| {
            let forwarded = self
                .forwards
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(&site);
            if forwarded {
                u64::MAX
            } else {
                alveole_model::DEFAULT_REQUEST_BODY_BYTES
            }
        })
    }

    /// Sends the site's requests to another node's ingress at `to` (the *forward* hook that moves
    /// use while a site's address still points here), until `stop_forwarding`. Survives route
    /// table swaps.
    pub fn forward(&self, site: SiteId, to: SocketAddr) {
        self.forwards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(site, to);
        self.set_routes((*self.routes()).clone());
    }

    pub fn stop_forwarding(&self, site: SiteId) {
        self.forwards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&site);
        self.set_routes((*self.routes()).clone());
    }

    /// Requests and latency per site, in Prometheus's text format.
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn route(&self, host: &str) -> Option<Route> {
        self.compiled
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lookup(host)
            .cloned()
    }

    /// Serves on `listener`, each connection on its own task, under the listener's bounds
    /// (connection caps, header and idle timeouts: [`Ingress::with_listen_limits`]).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        self.serve_on(listener, None).await
    }

    /// Serves HTTPS on `listener`: each site with a certificate (see
    /// [`Ingress::set_certificates`]), by SNI; the handshake counts in the time a client has
    /// to send its request's head.
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        let config = self
            .certificates
            .server_config()
            .map_err(|e| std::io::Error::other(format!("the ingress's TLS: {e}")))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        self.serve_on(listener, Some(acceptor)).await
    }

    async fn serve_on(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<()> {
        let guard = Guard::new(
            if tls.is_some() {
                "ingress-https"
            } else {
                "ingress"
            },
            self.listen,
        );
        loop {
            let (admitted, client) = guard.accept(&listener).await;
            let ingress = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let https = tls.is_some();
                match tls {
                    None => {
                        serve_own(admitted.ticket, |session| {
                            forward::ClientConnection::new(
                                ingress,
                                admitted.stream,
                                session,
                                client,
                                https,
                            )
                            .run()
                        })
                        .await;
                    }
                    Some(acceptor) => {
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
                        serve_own(admitted.ticket, |session| {
                            forward::ClientConnection::new(ingress, stream, session, client, https)
                                .run()
                        })
                        .await;
                    }
                }
            });
        }
    }

    /// The route for `host` once its site is not held, counted in flight; else the answer to
    /// send (no such site, or held too long, or too many waiting).
    async fn admit(&self, host: &str) -> Result<(Route, InFlight), Page> {
        let not_found = || {
            page(
                404,
                "No site here",
                &format!("No site of this cooperative answers for {host}."),
            )
        };
        let route = self.route(host).ok_or_else(not_found)?;
        if let Some(in_flight) = InFlight::enter(&route.traffic) {
            return Ok((route, in_flight));
        }
        // Held: wait (bounded) for the hold to end, then route again (the site may have moved).
        let traffic = route.traffic.clone();
        if traffic.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.max_waiting {
            traffic.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let deadline = tokio::time::Instant::now() + self.limits.max_wait;
        let outcome = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(route) = self.route(host) else {
                break Err(not_found());
            };
            if let Some(in_flight) = InFlight::enter(&route.traffic) {
                break Ok((route, in_flight));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break Err(busy());
            }
        };
        traffic.waiting.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

/// Serves the ingress's metrics (`GET /metrics`) on a listener of their own, apart from the
/// sites' traffic.
pub async fn serve_metrics(ingress: Arc<Ingress>, listener: TcpListener) -> std::io::Result<()> {
    // Scraped by one or two collectors: a small cap is plenty.
    let guard = Guard::new(
        "ingress metrics",
        Limits {
            max_connections: 64,
            ..Limits::default()
        },
    );
    loop {
        let (admitted, _) = guard.accept(&listener).await;
        let ingress = ingress.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let ingress = ingress.clone();
                async move {
                    let page = if request.uri().path() == "/metrics" {
                        Page {
                            status: 200,
                            content_type: "text/plain; version=0.0.4; charset=utf-8",
                            extra: Vec::new(),
                            body: Bytes::from(ingress.metrics()),
                        }
                    } else {
                        page(404, "Not found", "Metrics are at /metrics.")
                    };
                    let response = page.into_response();
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = serve_http1(admitted.ticket, admitted.stream, service).await;
        });
    }
}

/// A request counted in flight for its site until dropped.
#[derive(Debug)]
pub struct InFlight {
    traffic: Arc<SiteTraffic>,
}

impl InFlight {
    /// Counts a request in flight, unless the site is held. Count first, then check the hold:
    /// a hold sets `held` first, then waits for the count to reach zero, so one of the two
    /// always sees the other.
    fn enter(traffic: &Arc<SiteTraffic>) -> Option<InFlight> {
        if traffic.held.load(Ordering::SeqCst) {
            return None;
        }
        traffic.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight {
            traffic: traffic.clone(),
        };
        if traffic.held.load(Ordering::SeqCst) {
            return None; // dropping `in_flight` uncounts it and wakes the hold
        }
        Some(in_flight)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let left = self.traffic.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 && self.traffic.held.load(Ordering::SeqCst) {
            self.traffic.drained.notify_waiters();
        }
    }
}

/// Releases a site's held requests when dropped.
#[derive(Debug)]
struct Hold {
    ingress: Arc<Ingress>,
    traffic: Arc<SiteTraffic>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.traffic.held.store(false, Ordering::SeqCst);
        self.ingress.changed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Traffic for Arc<Ingress> {
    async fn hold(&self, site: SiteId) -> Box<dyn Send + Sync> {
        let traffic = self.traffic_of(site);
        traffic.held.store(true, Ordering::SeqCst);
        let hold = Hold {
            ingress: self.clone(),
            traffic: traffic.clone(),
        };
        let deadline = tokio::time::Instant::now() + self.limits.drain_within;
        loop {
            let drained = traffic.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if traffic.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
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
