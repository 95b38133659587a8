//! One client connection of the ingress: its requests read one after the other (pipelined
//! ones too), each answered by the ingress itself (challenges, redirects, holds that ran out,
//! refusals) or relayed to its site. The connection's guard is told when each request begins
//! and ends, and closes it when told to (see `alveole_listen::serve_own`).

use std::borrow::Cow;
use std::sync::Arc;

use alveole_listen::Session;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::admission::{Lang, Verdict, Visit};
use super::pages::{self, Page};
use super::relay::{self, Outcome, Outgoing, SiteConnection};
use super::{Ingress, routes};
use alveole_h1::head::{self, Field, Framing, HeadError, RequestHead, Role};

/// The bytes read from a client at a time (a request's head fits, most bodies too).
const READ_CHUNK: usize = 8 * 1024;

/// A client's connection, from its first request to its close.
pub(super) struct ClientConnection<S> {
    ingress: Arc<Ingress>,
    stream: S,
    session: Session,
    /// The client's address, as X-Forwarded-For carries it.
    client_ip: String,
    client: std::net::IpAddr,
    https: bool,
    input: BytesMut,
    fields: Vec<Field>,
    /// The head sent to the site, and the response's head sent back: buffers kept for the
    /// connection's next requests.
    to_site: Vec<u8>,
    out: Vec<u8>,
    site: Option<SiteConnection>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientConnection<S> {
    pub(super) fn new(
        ingress: Arc<Ingress>,
        stream: S,
        session: Session,
        client: std::net::SocketAddr,
        https: bool,
    ) -> Self {
        Self {
            ingress,
            stream,
            session,
            client_ip: client.ip().to_string(),
            client: client.ip(),
            https,
            input: BytesMut::with_capacity(READ_CHUNK),
            fields: Vec::with_capacity(32),
            to_site: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
            site: None,
        }
    }

    /// Serves requests until the client closes, a request asks to, or the guard does.
    pub(super) async fn run(mut self) {
        loop {
            let head = match self.read_head().await {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(error) => {
                    let _answering = self.session.request_began();
                    let status = error.status();
                    let page = pages::page(status, pages::reason(status), &error.to_string());
                    self.ingress.unrouted.record(status, None);
                    let _ = self.answer_with(&page, false).await;
                    break;
                }
            };
            let answering = self.session.request_began();
            let keep_alive = self.answer(head).await;
            drop(answering);
            if !keep_alive || self.session.closing() {
                break;
            }
        }
        // TLS: says the end (close_notify), so that a body ended by the close is whole.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// The next request's head: `None` when the client closed (between requests or inside a
    /// head), or ran out of time (idle, or sending its head: the guard's deadlines).
    async fn read_head(&mut self) -> Result<Option<RequestHead>, HeadError> {
        loop {
            if !self.input.is_empty()
                && let Some(head) = head::parse_request(&self.input, &mut self.fields)?
            {
                return Ok(Some(head));
            }
            self.input.reserve(READ_CHUNK);
            let read = self.stream.read_buf(&mut self.input);
            let read = match self.session.deadline() {
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        self.session.timed_out();
                        return Ok(None);
                    }
                },
                None => read.await,
            };
            // Closed, between requests or inside a head: nobody is left to answer.
            if !matches!(read, Ok(n) if n > 0) {
                return Ok(None);
            }
        }
    }

    /// Writes one of the ingress's own answers; `keep_alive` unless told otherwise.
    async fn answer_with(&mut self, page: &Page, keep_alive: bool) -> bool {
        let keep_alive = keep_alive && !self.session.closing();
        self.out.clear();
        page.write(!keep_alive, &mut self.out);
        let written =
            self.stream.write_all(&self.out).await.is_ok() && self.stream.flush().await.is_ok();
        written && keep_alive
    }

    /// One of the ingress's own answers to the request whose head is `head_len` bytes: the
    /// head is consumed first, so that the connection's next request is read next (a
    /// bodiless request's whole; one with a body closes the connection).
    async fn answer_own(&mut self, head_len: usize, page: &Page, keep_alive: bool) -> bool {
        self.input.advance(head_len.min(self.input.len()));
        self.answer_with(page, keep_alive).await
    }

    /// Answers one request; says whether the connection goes on.
    async fn answer(&mut self, head: RequestHead) -> bool {
        let started = tokio::time::Instant::now();
        // A body the ingress does not read (it answers itself) leaves the connection unusable.
        let can_continue = head.keep_alive && head.framing == Framing::Empty;
        let input = &self.input[..head.len];
        let Some(target) = RequestTarget::read(head.target.of(input)) else {
            let page = pages::page(400, "Bad request", "The request path is not valid.");
            self.ingress.unrouted.record(400, None);
            return self.answer_own(head.len, &page, false).await;
        };
        let host = match head.host.map(|h| std::str::from_utf8(h.of(input))) {
            Some(Ok(host)) => Cow::Borrowed(host),
            Some(Err(_)) => Cow::Borrowed(""),
            None => Cow::Owned(target.authority.clone().unwrap_or_default()),
        };
        let certificates = &self.ingress.certificates;
        let path = target.path();
        if let Some(answer) = certificates.challenge_answer(path) {
            self.ingress.unrouted.record(200, None);
            return self
                .answer_own(head.len, &pages::challenge(answer), can_continue)
                .await;
        }
        // A request a move's old node forwards here arrives over plain HTTP, saying which
        // scheme its client used: HTTPS stays HTTPS (not redirected, and told to the site).
        // A client that claims HTTPS over plain HTTP only skips its own redirect.
        let forwarded_https = !self.https && head.forwarded_https;
        if !self.https && !forwarded_https && certificates.redirects(&host, path) {
            let location = format!(
                "https://{}{}",
                routes::strip_port(&host),
                String::from_utf8_lossy(&target.origin)
            );
            self.ingress.unrouted.record(308, None);
            return self
                .answer_own(head.len, &pages::redirect(location), can_continue)
                .await;
        }
        let hsts = if self.https {
            certificates.hsts(&host)
        } else {
            None
        };
        let (route, in_flight) = match self.ingress.admit(&host).await {
            Ok(admitted) => admitted,
            Err(page) => {
                self.ingress.unrouted.record(page.status, None);
                return self.answer_own(head.len, &page, can_continue).await;
            }
        };
        // Overload protection: the waiting room, or a place in the container.
        let mut passes = None;
        let mut _in_container = None;
        if let Some(admission) = route.admission.as_deref() {
            let input = &self.input[..head.len];
            let cookies: Vec<&[u8]> = self
                .fields
                .iter()
                .filter(|f| f.name.of(input).eq_ignore_ascii_case(b"cookie"))
                .map(|f| f.value.of(input))
                .collect();
            let visit = Visit {
                cookies: &cookies,
                page: is_page(head.method.of(input), field(input, &self.fields, b"accept")),
                path,
                client: self.client,
                lang: Lang::from_accept_language(field(input, &self.fields, b"accept-language")),
                host: routes::strip_port(&host),
                https: self.https || forwarded_https,
            };
            let (verdict, change) = admission.decide(&visit, self.ingress.pressure());
            if let Some(change) = change {
                self.ingress.note_room_change(change);
            }
            let (visitor, set_cookie) = match verdict {
                Verdict::Admit {
                    visitor,
                    set_cookie,
                } => (visitor, set_cookie),
                Verdict::Answer(page) => {
                    drop(in_flight);
                    route.metrics.record(page.status, None);
                    return self.answer_own(head.len, &page, can_continue).await;
                }
            };
            match admission.enter_container().await {
                Ok(place) => _in_container = Some(place),
                Err(page) => {
                    drop(in_flight);
                    route.metrics.record(page.status, None);
                    return self.answer_own(head.len, &page, can_continue).await;
                }
            }
            passes = Some((admission, visitor, set_cookie));
        }
        // Only a request with a body pays for the lookup.
        let body_limit = match head.framing {
            Framing::Empty => 0,
            _ => self.ingress.body_limit(route.site),
        };
        if matches!(head.framing, Framing::Length(length) if length > body_limit) {
            route
                .metrics
                .record(413, Some(started.elapsed().as_secs_f64()));
            return self.answer_own(head.len, &pages::too_large(), false).await;
        }
        let https = self.https || forwarded_https;
        site_head(
            &self.input,
            &head,
            &self.fields,
            &target.origin,
            &self.client_ip,
            https,
            &mut self.to_site,
        );
        let method = head.method.of(&self.input);
        let retryable =
            head.framing == Framing::Empty && matches!(method, b"GET" | b"HEAD" | b"OPTIONS");
        let to_head = method == b"HEAD";
        self.input.advance(head.len);
        if head.expects_continue && self.input.is_empty() {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if self.stream.write_all(interim).await.is_err() || self.stream.flush().await.is_err() {
                return false;
            }
        }
        let request = Outgoing {
            head: &self.to_site,
            framing: head.framing,
            body_limit,
            retryable,
            to_head,
            hsts: hsts.as_ref().map(|value| value.as_bytes()),
            client_http10: head.http10,
            client_keep_alive: head.keep_alive && !self.session.closing(),
            passes: passes
                .as_ref()
                .map(|(admission, visitor, set_cookie)| relay::Passes {
                    admission,
                    visitor: *visitor,
                    set_cookie: set_cookie.as_deref(),
                    https,
                }),
        };
        let outcome = relay::exchange(
            &mut self.site,
            route.target,
            &mut self.stream,
            &mut self.input,
            &request,
            &mut self.out,
        )
        .await;
        drop(in_flight);
        let (status, latency, page) = match outcome {
            Outcome::Relayed {
                status,
                head_at,
                keep_alive,
            } => {
                let latency = head_at.duration_since(started);
                route.metrics.record(status, Some(latency.as_secs_f64()));
                return keep_alive;
            }
            Outcome::ClientGone => return false,
            Outcome::Unavailable => (502, started.elapsed(), pages::unavailable()),
            Outcome::TooLarge => (413, started.elapsed(), pages::too_large()),
            Outcome::BadBody => (
                400,
                started.elapsed(),
                pages::page(
                    400,
                    "Bad request",
                    "The request's chunked body is malformed.",
                ),
            ),
        };
        route.metrics.record(status, Some(latency.as_secs_f64()));
        // The request's body may be partly unread: the connection ends with this answer.
        let keep_alive = head.framing == Framing::Empty && head.keep_alive;
        self.answer_with(&page, keep_alive).await
    }
}

/// The value of the first field named `name`.
fn field<'a>(input: &'a [u8], fields: &[Field], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.of(input).eq_ignore_ascii_case(name))
        .map(|f| f.value.of(input))
}

/// A page a browser navigates to: GET or HEAD, asking for HTML.
fn is_page(method: &[u8], accept: Option<&[u8]>) -> bool {
    matches!(method, b"GET" | b"HEAD")
        && accept.is_some_and(|accept| {
            accept
                .windows(b"text/html".len())
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
}

/// The request's target as the site gets it: origin form (`/path?query`), what every server
/// accepts; an absolute form's authority is kept to route by when no Host came (HTTP/1.0).
struct RequestTarget<'a> {
    origin: Cow<'a, [u8]>,
    authority: Option<String>,
}

impl<'a> RequestTarget<'a> {
    fn read(target: &'a [u8]) -> Option<Self> {
        if target.starts_with(b"/") || target == b"*" {
            return Some(Self {
                origin: Cow::Borrowed(target),
                authority: None,
            });
        }
        let uri = hyper::http::Uri::try_from(target).ok()?;
        uri.scheme()?;
        let origin = uri.path_and_query().map_or("/", |p| p.as_str());
        let origin = if origin.is_empty() { "/" } else { origin };
        Some(Self {
            origin: Cow::Owned(origin.as_bytes().to_vec()),
            authority: uri.authority().map(|a| a.as_str().to_owned()),
        })
    }

    fn path(&self) -> &str {
        let origin = std::str::from_utf8(&self.origin).unwrap_or("/");
        origin.split_once('?').map_or(origin, |(path, _)| path)
    }
}

/// The head the site gets, into `out`: the client's fields but those meant for one
/// connection only, the framing the ingress sends the body with, and where the request came
/// from.
fn site_head(
    input: &[u8],
    head: &RequestHead,
    fields: &[Field],
    origin: &[u8],
    client_ip: &str,
    https: bool,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    out.clear();
    out.extend_from_slice(head.method.of(input));
    out.push(b' ');
    out.extend_from_slice(origin);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for field in fields {
        if field.role == Role::Other {
            out.extend_from_slice(field.name.of(input));
            out.extend_from_slice(b": ");
            out.extend_from_slice(field.value.of(input));
            out.extend_from_slice(b"\r\n");
        }
    }
    // Appended to what earlier proxies wrote, if any; else just the client's address.
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(earlier) = head.forwarded_for {
        out.extend_from_slice(earlier.of(input));
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip.as_bytes());
    out.extend_from_slice(if https {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    match head.framing {
        Framing::Length(length) => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}
