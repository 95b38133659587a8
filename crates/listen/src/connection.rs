//! One connection under its guard: its phase (sending a head, being answered, idle), the
//! stream that notices a new request's first bytes, the service that notices its head and
//! its answer's end, and the task that enforces the timeouts.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::guard::{Guard, Ticket};

/// Where a connection is between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Opened, or some bytes of a request came, and its head is not complete yet.
    Unfinished = 0,
    /// At least one request is being answered.
    Busy = 1,
    /// Kept alive, waiting for the next request.
    Idle = 2,
}

#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) id: u64,
    pub(crate) client: IpAddr,
    phase: AtomicU8,
    /// When the phase began, in the guard's milliseconds.
    since_ms: AtomicU64,
    in_flight: AtomicUsize,
    first_head: AtomicBool,
    evicted: AtomicBool,
    close: Notify,
    /// Woken when the phase changes in a way that brings its deadline closer (an answer
    /// ended, a new head began): the connection's task then looks at its deadline again.
    changed: Notify,
}

impl ConnState {
    pub(crate) fn new(id: u64, client: IpAddr, now_ms: u64) -> Self {
        Self {
            id,
            client,
            phase: AtomicU8::new(Phase::Unfinished as u8),
            since_ms: AtomicU64::new(now_ms),
            in_flight: AtomicUsize::new(0),
            first_head: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
            changed: Notify::new(),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Unfinished,
            1 => Phase::Busy,
            _ => Phase::Idle,
        }
    }

    pub(crate) fn since_ms(&self) -> u64 {
        self.since_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn first_head_seen(&self) -> bool {
        self.first_head.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    /// Evicted to make room: the connection closes once it is done with what it is doing.
    pub(crate) fn ask_to_close(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.close.notify_one();
    }

    /// Closes once the request being answered is done (the listener is stopping).
    pub(crate) fn ask_to_finish(&self) {
        self.close.notify_one();
    }

    fn bytes_arrived(&self, now_ms: u64) {
        if self.phase() == Phase::Idle {
            self.since_ms.store(now_ms, Ordering::SeqCst);
            if self
                .phase
                .compare_exchange(
                    Phase::Idle as u8,
                    Phase::Unfinished as u8,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                self.changed.notify_one();
            }
        }
    }

    fn request_began(&self, guard: &Guard) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.phase.store(Phase::Busy as u8, Ordering::SeqCst);
        if !self.first_head.swap(true, Ordering::SeqCst) {
            guard.first_head_done(self.client);
        }
    }

    fn request_ended(&self, now_ms: u64) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.since_ms.store(now_ms, Ordering::SeqCst);
            self.phase.store(Phase::Idle as u8, Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// When the current phase runs out, if it can.
    fn deadline_ms(&self, guard: &Guard) -> Option<u64> {
        let limits = guard.limits();
        let allowed = match self.phase() {
            Phase::Busy => return None,
            Phase::Unfinished => limits.header_timeout,
            Phase::Idle => limits.idle_timeout,
        };
        let allowed = u64::try_from(allowed.as_millis()).unwrap_or(u64::MAX);
        Some(self.since_ms().saturating_add(allowed))
    }
}

pin_project_lite::pin_project! {
    /// A connection's stream, telling its guard when a request's first bytes arrive.
    #[derive(Debug)]
    pub struct Tracked<S> {
        #[pin]
        inner: S,
        state: Arc<ConnState>,
        guard: Arc<Guard>,
    }
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, state: Arc<ConnState>, guard: Arc<Guard>) -> Self {
        Self {
            inner,
            state,
            guard,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.inner.poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.bytes_arrived(this.guard.now_ms());
        }
        read
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// A request being answered; its end (the response body's end, or its drop) makes the
/// connection idle again.
#[derive(Debug)]
struct RequestInFlight {
    state: Arc<ConnState>,
    guard: Arc<Guard>,
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.state.request_ended(self.guard.now_ms());
    }
}

/// The connection's service, telling its guard when a request's head is complete.
#[derive(Debug)]
struct TrackService<S> {
    inner: S,
    state: Arc<ConnState>,
    guard: Arc<Guard>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for TrackService<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.state.request_began(&self.guard);
        TrackedFuture {
            inner: self.inner.call(request),
            request: Some(RequestInFlight {
                state: self.state.clone(),
                guard: self.guard.clone(),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    #[derive(Debug)]
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        request: Option<RequestInFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.inner.poll(cx));
        let request = this.request.take();
        Poll::Ready(outcome.map(|response| response.map(|inner| TrackedBody { inner, request })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request when it ends.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        request: Option<RequestInFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.request.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Ticket {
    /// Runs `step` (a TLS handshake) within the time a client has to send a request's head.
    /// `None` when the time runs out, or when the connection is asked to make room.
    pub async fn within_head_time<F: Future>(&self, step: F) -> Option<F::Output> {
        let deadline = self.state.deadline_ms(&self.guard).unwrap_or(u64::MAX);
        tokio::select! {
            outcome = tokio::time::timeout_at(self.guard.instant_at(deadline), step) => {
                if outcome.is_err() {
                    self.guard.record_timeout();
                }
                outcome.ok()
            }
            () = self.state.close.notified() => None,
        }
    }
}

/// Serves HTTP/1.1 on `io` (the admitted stream, or TLS over it) under the guard's bounds:
/// a head not complete in time closes the connection; an idle one past its time, or asked
/// to make room, closes once it has nothing left to answer.
pub async fn serve_http1<I, S, B>(ticket: Ticket, io: I, service: S) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (guard, state) = (ticket.guard.clone(), ticket.state.clone());
    let service = TrackService {
        inner: service,
        state: state.clone(),
        guard: guard.clone(),
    };
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Once asked to close, how long the last answer may still take to be written.
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        let deadline = match closing_since {
            // An answer under way is never cut; anything else has a head's time to end.
            Some(_) if state.phase() == Phase::Busy => None,
            Some(since) => Some(since + guard.limits().header_timeout),
            None => state.deadline_ms(&guard).map(|ms| guard.instant_at(ms)),
        };
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = connection.as_mut() => return outcome,
            () = expiry => {
                if closing_since.is_some() {
                    if state.phase() == Phase::Busy {
                        continue;
                    }
                    return Ok(());
                }
                // The phase may have changed since the deadline was computed: look again.
                let Some(due) = state.deadline_ms(&guard) else { continue };
                if due > guard.now_ms() {
                    continue;
                }
                guard.record_timeout();
                if state.phase() == Phase::Unfinished {
                    // Half a head: nothing to finish, close now.
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                closing_since = Some(tokio::time::Instant::now());
            }
            () = state.changed.notified() => {}
            () = state.close.notified(), if closing_since.is_none() => {
                if state.phase() == Phase::Unfinished {
                    // Half a head: nothing under way to finish.
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                closing_since = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// What a server of its own (not hyper's) tells its connection's guard, and is told by it.
#[derive(Clone, Debug)]
pub struct Session {
    state: Arc<ConnState>,
    guard: Arc<Guard>,
    closing: Arc<AtomicBool>,
}

impl Session {
    /// A request's head is complete: the connection is busy (never cut) until the returned
    /// value is dropped, once its answer is written.
    pub fn request_began(&self) -> Answering {
        self.state.request_began(&self.guard);
        Answering(RequestInFlight {
            state: self.state.clone(),
            guard: self.guard.clone(),
        })
    }

    /// Whether the connection is to close once the answer under way is written (it makes
    /// room, or the listener stops).
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// When the connection's current wait runs out: a head not complete by then, or an idle
    /// connection with no new request by then, is closed (`None` while busy).
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.state
            .deadline_ms(&self.guard)
            .map(|ms| self.guard.instant_at(ms))
    }

    /// Counts a connection closed for running out of time (see [`Session::deadline`]).
    pub fn timed_out(&self) {
        self.guard.record_timeout();
    }
}

/// A request being answered, as [`Session::request_began`] counts it.
#[derive(Debug)]
pub struct Answering(#[allow(dead_code)] RequestInFlight);

/// Runs a connection served by code of its own under the guard's bounds, as
/// [`serve_http1`] does hyper's. `connection` gets the [`Session`] through which it says
/// when each request begins and ends, keeps its own [`Session::deadline`]s, and learns when
/// to stop. It runs as a task of its own, so that watching it costs nothing per request: it is
/// dropped at once when asked to make room (or when the listener stops) while not answering,
/// and told to make the answer under way its last otherwise.
pub async fn serve_own<F, C>(ticket: Ticket, connection: C) -> Option<F::Output>
where
    C: FnOnce(Session) -> F,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let closing = Arc::new(AtomicBool::new(false));
    let session = Session {
        state: ticket.state.clone(),
        guard: ticket.guard.clone(),
        closing: closing.clone(),
    };
    // Returning (or being dropped) stops the connection's task with its ticket.
    let mut task = AbortOnDrop(tokio::spawn(connection(session)));
    loop {
        tokio::select! {
            outcome = &mut task.0 => return outcome.ok(),
            () = ticket.state.close.notified() => {
                if ticket.state.phase() != Phase::Busy {
                    return None;
                }
                closing.store(true, Ordering::SeqCst);
                // The answer may have ended meanwhile, before `closing` was seen.
                if ticket.state.phase() != Phase::Busy {
                    return None;
                }
            }
        }
    }
}

/// A task stopped when this is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
