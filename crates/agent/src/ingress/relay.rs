//! The site's side of a proxied request: its connection (one per client connection, reused
//! while the site keeps it open), the request sent with its body, and the response read back
//! and relayed to the client, re-framed by the ingress. No task, channel or body object sits
//! between the two sockets: the client's connection task reads and writes both.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pages::reason;
use alveole_h1::chunked::{self, Decoder};
use alveole_h1::head::{self, Field, Framing, ResponseHead, Role};

/// How long the ingress waits for a site's container to accept a connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A body this small is copied behind its head rather than written beside it.
const SMALL_BODY: usize = 16 * 1024;

/// The connection to a site, kept for the client connection's next request.
#[derive(Debug)]
pub(super) struct SiteConnection {
    target: SocketAddr,
    stream: TcpStream,
    input: BytesMut,
    fields: Vec<Field>,
}

impl SiteConnection {
    async fn open(target: SocketAddr) -> std::io::Result<SiteConnection> {
        let stream = tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(target))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(SiteConnection {
            target,
            stream,
            input: BytesMut::with_capacity(READ_CHUNK),
            fields: Vec::with_capacity(32),
        })
    }

    /// Reads more of the site's answer (0: the site closed).
    async fn read_more(&mut self) -> Result<usize, Broken> {
        self.input.reserve(READ_CHUNK * 4);
        self.stream
            .read_buf(&mut self.input)
            .await
            .map_err(|_| Broken::Site)
    }

    /// Whether a kept connection can carry the next request to `target`: same place, not
    /// closed by the site meanwhile. Looks at the readiness the runtime already has, so the
    /// common case costs no system call.
    fn still_open(&mut self, target: SocketAddr) -> bool {
        if self.target != target || !self.input.is_empty() {
            return false;
        }
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut context) {
            std::task::Poll::Pending => true,
            // Readable while idle: closed, or bytes nobody asked for. Either way, not reused.
            std::task::Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            std::task::Poll::Ready(Err(_)) => false,
        }
    }
}

/// A request on its way: its head as the site gets it, and how its body is read from the
/// client.
pub(super) struct Outgoing<'a> {
    pub head: &'a [u8],
    pub framing: Framing,
    /// The largest body the site accepts (decoded bytes).
    pub body_limit: u64,
    /// Whether it may be sent again on a fresh connection when a kept one turns out closed.
    pub retryable: bool,
    pub to_head: bool,
    /// The response's `Strict-Transport-Security` value, when the ingress sets it.
    pub hsts: Option<&'a [u8]>,
    pub client_http10: bool,
    /// Whether the client's connection may stay open after this exchange.
    pub client_keep_alive: bool,
    /// The site's overload protection: the pass to set, and the class the site may give.
    pub passes: Option<Passes<'a>>,
}

/// What the answer carries of the visitor's pass.
pub(super) struct Passes<'a> {
    pub admission: &'a super::admission::Admission,
    /// Who the visitor is, when admission counted them.
    pub visitor: Option<u64>,
    /// A new or renewed pass.
    pub set_cookie: Option<&'a str>,
    pub https: bool,
}

impl Passes<'_> {
    /// The Set-Cookie value to send: a pass with the class the site gave (`Alveole-Priority`)
    /// if it gave one of its classes, else the new or renewed pass, if any.
    fn cookie(&self, priority: Option<&[u8]>) -> Option<std::borrow::Cow<'_, str>> {
        priority
            .and_then(|class| {
                let visitor = self
                    .visitor
                    .unwrap_or_else(super::admission::random_visitor);
                self.admission
                    .priority_cookie(visitor, class, self.https)
                    .map(std::borrow::Cow::Owned)
            })
            .or_else(|| self.set_cookie.map(std::borrow::Cow::Borrowed))
    }
}

/// How an exchange ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The response went to the client: its status, when its head came, and whether the
    /// client's connection stays open.
    Relayed {
        status: u16,
        head_at: tokio::time::Instant,
        keep_alive: bool,
    },
    /// Nothing reached the client: the site could not be reached or did not speak HTTP.
    Unavailable,
    /// The request's body went past the site's limit (nothing reached the client).
    TooLarge,
    /// The request's body was malformed (nothing reached the client).
    BadBody,
    /// The client went away, or its connection broke.
    ClientGone,
}

/// Sends `request` (its head in `request.head`, its body read from `client` after what
/// `input` already holds) to `target`, and relays the response to `client`. `site` is the
/// connection kept from the previous request; it is kept again when the site allows.
pub(super) async fn exchange<C>(
    site: &mut Option<SiteConnection>,
    target: SocketAddr,
    client: &mut C,
    input: &mut BytesMut,
    request: &Outgoing<'_>,
    out: &mut Vec<u8>,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut reused = site.as_mut().is_some_and(|s| s.still_open(target));
    loop {
        if !reused {
            *site = None;
            match SiteConnection::open(target).await {
                Ok(opened) => *site = Some(opened),
                Err(error) => {
                    tracing::warn!(%target, %error, "upstream unreachable");
                    return Outcome::Unavailable;
                }
            }
        }
        let Some(connection) = site.as_mut() else {
            return Outcome::Unavailable;
        };
        let sent = send(connection, client, input, request).await;
        let response = match sent {
            // A site that stopped reading may still have answered (a 413 of its own).
            Sent::Whole | Sent::SiteAnswered | Sent::SiteGone => {
                read_head(connection, request.to_head, client, input).await
            }
            Sent::TooLarge => {
                *site = None;
                return Outcome::TooLarge;
            }
            Sent::BadBody => {
                *site = None;
                return Outcome::BadBody;
            }
            Sent::ClientGone => {
                *site = None;
                return Outcome::ClientGone;
            }
        };
        let head = match response {
            Ok(head) => head,
            // A kept connection the site had closed just then: once more, on a fresh one.
            Err(Silence::Nothing) if reused && request.retryable => {
                reused = false;
                continue;
            }
            // Its request is dropped with it: the site's connection too, and the request is
            // no longer in flight (a hold need not wait for a long poll nobody reads).
            Err(Silence::ClientGone) => {
                *site = None;
                return Outcome::ClientGone;
            }
            Err(_) => {
                *site = None;
                return Outcome::Unavailable;
            }
        };
        let body_unsent = matches!(sent, Sent::SiteAnswered | Sent::SiteGone);
        let head_at = tokio::time::Instant::now();
        return match relay(connection, head, client, request, out).await {
            Ok((keep_site, keep_client)) => {
                if !keep_site || body_unsent {
                    *site = None;
                }
                Outcome::Relayed {
                    status: head.status,
                    head_at,
                    keep_alive: keep_client && !body_unsent,
                }
            }
            Err(Broken::Client) => {
                *site = None;
                Outcome::ClientGone
            }
            // Part of the response reached the client: all it can be told is the end.
            Err(Broken::Site) => {
                *site = None;
                Outcome::Relayed {
                    status: head.status,
                    head_at,
                    keep_alive: false,
                }
            }
        };
    }
}

/// What became of a request's sending.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Whole,
    /// The site answered before the whole body was sent: the rest is not sent.
    SiteAnswered,
    SiteGone,
    ClientGone,
    TooLarge,
    BadBody,
}

async fn send<C>(
    site: &mut SiteConnection,
    client: &mut C,
    input: &mut BytesMut,
    request: &Outgoing<'_>,
) -> Sent
where
    C: AsyncRead + Unpin,
{
    match request.framing {
        Framing::Empty | Framing::UntilClose => {
            if site.stream.write_all(request.head).await.is_err() {
                return Sent::SiteGone;
            }
            Sent::Whole
        }
        Framing::Length(length) => send_length(site, client, input, request.head, length).await,
        Framing::Chunked => send_chunked(site, client, input, request).await,
    }
}

async fn send_length<C>(
    site: &mut SiteConnection,
    client: &mut C,
    input: &mut BytesMut,
    head: &[u8],
    length: u64,
) -> Sent
where
    C: AsyncRead + Unpin,
{
    let first = up_to(length, input.len());
    if write_both(&mut site.stream, head, &input[..first])
        .await
        .is_err()
    {
        return Sent::SiteGone;
    }
    input.advance(first);
    let mut remaining = length - first as u64;
    while remaining > 0 {
        match more_from_client(site, client, input).await {
            More::Bytes => {}
            More::SiteAnswered => return Sent::SiteAnswered,
            More::ClientGone => return Sent::ClientGone,
        }
        let take = up_to(remaining, input.len());
        if site.stream.write_all(&input[..take]).await.is_err() {
            return Sent::SiteGone;
        }
        input.advance(take);
        remaining -= take as u64;
    }
    Sent::Whole
}

/// Decodes the client's chunks and sends them again as chunks of the ingress's own: the site
/// never sees a framing the ingress did not check.
async fn send_chunked<C>(
    site: &mut SiteConnection,
    client: &mut C,
    input: &mut BytesMut,
    request: &Outgoing<'_>,
) -> Sent
where
    C: AsyncRead + Unpin,
{
    let mut decoder = Decoder::default();
    let mut encoded = Vec::with_capacity(READ_CHUNK + 32);
    encoded.extend_from_slice(request.head);
    let mut total: u64 = 0;
    loop {
        while !input.is_empty() && !decoder.is_done() {
            let step = match decoder.decode(input) {
                Ok(step) => step,
                Err(_) => return Sent::BadBody,
            };
            if let Some(data) = step.data.filter(|d| !d.is_empty()) {
                total += data.len() as u64;
                if total > request.body_limit {
                    return Sent::TooLarge;
                }
                encode_part(&input[data], true, &mut encoded);
            }
            input.advance(step.consumed);
        }
        if decoder.is_done() {
            encoded.extend_from_slice(chunked::LAST_CHUNK);
        }
        if !encoded.is_empty() && site.stream.write_all(&encoded).await.is_err() {
            return Sent::SiteGone;
        }
        encoded.clear();
        if decoder.is_done() {
            return Sent::Whole;
        }
        match more_from_client(site, client, input).await {
            More::Bytes => {}
            More::SiteAnswered => return Sent::SiteAnswered,
            More::ClientGone => return Sent::ClientGone,
        }
    }
}

enum More {
    Bytes,
    SiteAnswered,
    ClientGone,
}

/// More of the request's body from the client, unless the site answers first (it may refuse
/// a body without reading it: its answer is then relayed and the rest of the body is not).
async fn more_from_client<C>(
    site: &mut SiteConnection,
    client: &mut C,
    input: &mut BytesMut,
) -> More
where
    C: AsyncRead + Unpin,
{
    input.reserve(READ_CHUNK);
    loop {
        tokio::select! {
            read = client.read_buf(input) => {
                return match read {
                    Ok(0) | Err(_) => More::ClientGone,
                    Ok(_) => More::Bytes,
                };
            }
            ready = site.stream.readable() => {
                if ready.is_err() {
                    return More::SiteAnswered;
                }
                site.input.reserve(READ_CHUNK);
                match site.stream.try_read_buf(&mut site.input) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    _ => return More::SiteAnswered,
                }
            }
        }
    }
}

/// Why no response head came.
#[derive(Debug, PartialEq, Eq)]
enum Silence {
    /// The site closed without a byte.
    Nothing,
    /// Something that is not a response head, or a connection that broke in one.
    Garbled,
    /// The client closed its connection meanwhile.
    ClientGone,
}

/// Bytes a client may send ahead (pipelined requests) while its request is answered; beyond,
/// they wait in the socket.
const MAX_READ_AHEAD: usize = 64 * 1024;

/// The response's head (interim 1xx answers skipped: the ingress answered `Expect` itself),
/// while watching the client's side for its close.
async fn read_head<C>(
    site: &mut SiteConnection,
    to_head: bool,
    client: &mut C,
    input: &mut BytesMut,
) -> Result<ResponseHead, Silence>
where
    C: AsyncRead + Unpin,
{
    let mut received = !site.input.is_empty();
    let mut watching = true;
    loop {
        if !site.input.is_empty() {
            match head::parse_response(&site.input, to_head, &mut site.fields) {
                Ok(Some(head)) if head.status < 200 => {
                    if head.status == 101 {
                        return Err(Silence::Garbled);
                    }
                    site.input.advance(head.len);
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(_) => return Err(Silence::Garbled),
            }
        }
        site.input.reserve(READ_CHUNK);
        watching = watching && input.len() < MAX_READ_AHEAD;
        if watching {
            input.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            read = site.stream.read_buf(&mut site.input) => read,
            ahead = client.read_buf(input), if watching => {
                match ahead {
                    Ok(0) | Err(_) => return Err(Silence::ClientGone),
                    Ok(_) => continue,
                }
            }
        };
        match read {
            Ok(0) | Err(_) if !received => return Err(Silence::Nothing),
            Ok(0) | Err(_) => return Err(Silence::Garbled),
            Ok(_) => received = true,
        }
    }
}

/// Where a relay broke.
enum Broken {
    Client,
    Site,
}

/// Writes the response's head (as the ingress frames it) and relays its body; says whether
/// the site's connection and the client's may be kept.
async fn relay<C>(
    site: &mut SiteConnection,
    head: ResponseHead,
    client: &mut C,
    request: &Outgoing<'_>,
    out: &mut Vec<u8>,
) -> Result<(bool, bool), Broken>
where
    C: AsyncWrite + Unpin,
{
    let bodiless = request.to_head || head.status == 204 || head.status == 304;
    // A body whose end only a close tells: chunked to an HTTP/1.1 client, else the close.
    let unknown_length = matches!(head.framing, Framing::Chunked | Framing::UntilClose);
    let chunk_out = unknown_length && !request.client_http10;
    let keep_client = request.client_keep_alive && !(unknown_length && request.client_http10);
    write_response_head(
        &site.input,
        &site.fields,
        head,
        bodiless,
        chunk_out,
        keep_client,
        request,
        out,
    );
    site.input.advance(head.len);
    let keep_site = match head.framing {
        Framing::Empty => {
            client.write_all(out).await.map_err(|_| Broken::Client)?;
            head.keep_alive && site.input.is_empty()
        }
        Framing::Length(length) => relay_length(site, client, out, length).await?,
        Framing::Chunked => relay_chunked(site, client, out, chunk_out).await?,
        Framing::UntilClose => relay_until_close(site, client, out, chunk_out).await?,
    };
    client.flush().await.map_err(|_| Broken::Client)?;
    Ok((keep_site && head.keep_alive, keep_client))
}

#[allow(clippy::too_many_arguments)]
fn write_response_head(
    input: &[u8],
    fields: &[Field],
    head: ResponseHead,
    bodiless: bool,
    chunk_out: bool,
    keep_client: bool,
    request: &Outgoing<'_>,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    out.clear();
    let reason_text = head.reason.of(input);
    let _ = write!(out, "HTTP/1.1 {} ", head.status);
    if reason_text.is_empty() {
        out.extend_from_slice(reason(head.status).as_bytes());
    } else {
        out.extend_from_slice(reason_text);
    }
    out.extend_from_slice(b"\r\n");
    let mut priority = None;
    for field in fields {
        let copied = match field.role {
            Role::Other => true,
            Role::Priority => {
                priority = Some(field.value.of(input));
                false
            }
            // A HEAD's or a 304's length describes the body not sent: it stays.
            Role::ContentLength => bodiless,
            Role::StrictTransportSecurity => request.hsts.is_none(),
            _ => false,
        };
        if copied {
            out.extend_from_slice(field.name.of(input));
            out.extend_from_slice(b": ");
            out.extend_from_slice(field.value.of(input));
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(hsts) = request.hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(hsts);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(cookie) = request.passes.as_ref().and_then(|p| p.cookie(priority)) {
        out.extend_from_slice(b"set-cookie: ");
        out.extend_from_slice(cookie.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match head.framing {
        Framing::Length(length) => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        Framing::Empty if !bodiless && head.status >= 200 => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Framing::Chunked | Framing::UntilClose if chunk_out => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        _ => {}
    }
    if !keep_client {
        out.extend_from_slice(b"connection: close\r\n");
    } else if request.client_http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

async fn relay_length<C>(
    site: &mut SiteConnection,
    client: &mut C,
    out: &mut Vec<u8>,
    length: u64,
) -> Result<bool, Broken>
where
    C: AsyncWrite + Unpin,
{
    let first = up_to(length, site.input.len());
    if first <= SMALL_BODY {
        // Head and body in one write: over TLS, one record for the client to open.
        out.extend_from_slice(&site.input[..first]);
        client.write_all(out).await
    } else {
        write_both(client, out, &site.input[..first]).await
    }
    .map_err(|_| Broken::Client)?;
    site.input.advance(first);
    let mut remaining = length - first as u64;
    if remaining > 0 {
        client.flush().await.map_err(|_| Broken::Client)?;
    }
    while remaining > 0 {
        if site.read_more().await? == 0 {
            return Err(Broken::Site);
        }
        let take = up_to(remaining, site.input.len());
        pass_on(client, &site.input[..take]).await?;
        site.input.advance(take);
        remaining -= take as u64;
    }
    // Bytes past the body: the site is not speaking HTTP any more.
    Ok(site.input.is_empty())
}

async fn relay_chunked<C>(
    site: &mut SiteConnection,
    client: &mut C,
    out: &mut Vec<u8>,
    chunk_out: bool,
) -> Result<bool, Broken>
where
    C: AsyncWrite + Unpin,
{
    let mut decoder = Decoder::default();
    loop {
        while !site.input.is_empty() && !decoder.is_done() {
            let step = decoder.decode(&site.input).map_err(|_| Broken::Site)?;
            if let Some(data) = step.data.filter(|d| !d.is_empty()) {
                encode_part(&site.input[data], chunk_out, out);
            }
            site.input.advance(step.consumed);
        }
        if decoder.is_done() && chunk_out {
            out.extend_from_slice(chunked::LAST_CHUNK);
        }
        if !out.is_empty() {
            pass_on(client, out).await?;
            out.clear();
        }
        if decoder.is_done() {
            return Ok(site.input.is_empty());
        }
        if site.read_more().await? == 0 {
            return Err(Broken::Site);
        }
    }
}

async fn relay_until_close<C>(
    site: &mut SiteConnection,
    client: &mut C,
    out: &mut Vec<u8>,
    chunk_out: bool,
) -> Result<bool, Broken>
where
    C: AsyncWrite + Unpin,
{
    loop {
        if !site.input.is_empty() {
            encode_part(&site.input, chunk_out, out);
            site.input.clear();
        }
        if !out.is_empty() {
            pass_on(client, out).await?;
            out.clear();
        }
        if site.read_more().await? == 0 {
            break;
        }
    }
    if chunk_out {
        pass_on(client, chunked::LAST_CHUNK).await?;
    }
    Ok(false)
}

/// Bytes of a body still to come, bounded by those at hand.
fn up_to(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining)
        .unwrap_or(usize::MAX)
        .min(available)
}

/// Appends a part of a body to `out`: as a chunk, or as it is (a body ended by the close).
fn encode_part(data: &[u8], as_chunk: bool, out: &mut Vec<u8>) {
    if as_chunk {
        chunked::size_line(data.len(), out);
    }
    out.extend_from_slice(data);
    if as_chunk {
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes part of a body to the client, at once: over TLS, bytes written are only sure to
/// leave once flushed, and a site may take its time before the next part.
async fn pass_on<C>(client: &mut C, bytes: &[u8]) -> Result<(), Broken>
where
    C: AsyncWrite + Unpin,
{
    client.write_all(bytes).await.map_err(|_| Broken::Client)?;
    client.flush().await.map_err(|_| Broken::Client)
}

/// Writes `first` then `second` as one vectored write where the stream allows.
async fn write_both<W>(stream: &mut W, first: &[u8], second: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let (mut a, mut b) = (first, second);
    while !a.is_empty() || !b.is_empty() {
        let written = stream
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = written.min(a.len());
        a = &a[from_a..];
        b = &b[written - from_a..];
    }
    Ok(())
}
