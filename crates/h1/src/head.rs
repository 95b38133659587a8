//! HTTP/1 message heads as the ingress reads them: parsed by httparse without allocating, and
//! checked against what request smuggling relies on (RFC 9112 §6.3). A head that two servers
//! could read two ways is refused, never guessed at: both `Content-Length` and
//! `Transfer-Encoding`, two `Content-Length`s, a coding other than `chunked`, a
//! `Transfer-Encoding` from an HTTP/1.0 client, a length that is not plain digits.

use std::mem::MaybeUninit;

/// Header fields one head may have.
pub const MAX_HEADERS: usize = 100;
/// Bytes one head may take, request line and fields.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A byte range of the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The range `part` takes in `buf` (`part` is a slice of `buf`).
    fn within(buf: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
        Span {
            start,
            end: start + part.len(),
        }
    }

    pub fn of<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }
}

/// How a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// This many bytes (more than zero).
    Length(u64),
    /// Chunked: its last chunk says where it ends.
    Chunked,
    /// A response read until the server closes (no length, not chunked).
    UntilClose,
}

/// Fields the ingress acts on; the others go through as they came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Other,
    /// Meant for one connection only (RFC 9110 §7.6.1): never forwarded.
    HopByHop,
    /// Framing: the ingress writes its own.
    ContentLength,
    TransferEncoding,
    /// Read by the ingress, and written again its own way.
    Expect,
    ForwardedFor,
    ForwardedProto,
    StrictTransportSecurity,
    /// `Alveole-Priority`: a site's word on a visitor's class, for the ingress alone (the
    /// ingress binds it into its signed pass); a client's own is dropped.
    Priority,
}

/// One header field: where its name and value are, and what it is to the ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    pub value: Span,
    pub role: Role,
}

/// Why a head is refused; each maps to the status the client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the head is larger than the ingress reads")]
    TooLarge,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("a transfer coding other than chunked")]
    UnsupportedCoding,
    #[error("an expectation other than 100-continue")]
    UnsupportedExpectation,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
            HeadError::UnsupportedCoding => 501,
            HeadError::UnsupportedExpectation => 417,
        }
    }
}

/// A request's head: what the ingress routes by and how its body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes the head takes, the blank line included.
    pub len: usize,
    pub method: Span,
    pub target: Span,
    pub http10: bool,
    pub host: Option<Span>,
    pub framing: Framing,
    /// Whether the client keeps the connection open after this request.
    pub keep_alive: bool,
    pub expects_continue: bool,
    /// What earlier proxies wrote in `X-Forwarded-For`.
    pub forwarded_for: Option<Span>,
    /// `X-Forwarded-Proto: https` (a move's old node says its client used HTTPS).
    pub forwarded_https: bool,
}

impl RequestHead {
    pub fn is_head_method(&self, buf: &[u8]) -> bool {
        self.method.of(buf) == b"HEAD"
    }
}

/// A response's head, from a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub reason: Span,
    pub framing: Framing,
    /// Whether the site keeps its connection open after this response.
    pub keep_alive: bool,
}

/// Parses a request head at the start of `buf`: `Ok(None)` while it is incomplete. `fields`
/// receives its header fields (cleared first).
pub fn parse_request(
    buf: &[u8],
    fields: &mut Vec<Field>,
) -> Result<Option<RequestHead>, HeadError> {
    fields.clear();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed(
                "only HTTP/1.0 and HTTP/1.1 are served",
            ));
        }
        Err(_) => {
            return Err(HeadError::Malformed(
                "the request's head is not valid HTTP/1",
            ));
        }
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed("the request line is incomplete"));
    };
    if method == "CONNECT" {
        return Err(HeadError::Malformed("CONNECT is not served"));
    }
    let http10 = version == 0;
    let mut head = RequestHead {
        len,
        method: Span::within(buf, method.as_bytes()),
        target: Span::within(buf, target.as_bytes()),
        http10,
        host: None,
        framing: Framing::Empty,
        keep_alive: !http10,
        expects_continue: false,
        forwarded_for: None,
        forwarded_https: false,
    };
    let mut lengths = Lengths::default();
    let mut connection_tokens: Vec<Span> = Vec::new();
    for header in request.headers.iter() {
        let (name, value) = (header.name.as_bytes(), header.value);
        let role = request_role(name);
        let field = Field {
            name: Span::within(buf, name),
            value: Span::within(buf, value),
            role,
        };
        if name.eq_ignore_ascii_case(b"host") {
            if head.host.is_some() {
                return Err(HeadError::Malformed("the request has two Host fields"));
            }
            head.host = Some(field.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = head.keep_alive || http10;
                } else {
                    connection_tokens.push(Span::within(buf, token));
                }
            }
        }
        match role {
            Role::ContentLength => lengths.content_length(value)?,
            Role::TransferEncoding => lengths.transfer_encoding(value)?,
            Role::Expect => {
                if !trim(value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(HeadError::UnsupportedExpectation);
                }
                head.expects_continue = true;
            }
            Role::ForwardedFor => head.forwarded_for = Some(field.value),
            Role::ForwardedProto => {
                head.forwarded_https = trim(value).eq_ignore_ascii_case(b"https");
            }
            _ => {}
        }
        fields.push(field);
    }
    if !http10 && head.host.is_none() {
        return Err(HeadError::Malformed(
            "an HTTP/1.1 request must name its Host",
        ));
    }
    if http10 && lengths.chunked {
        return Err(HeadError::Malformed(
            "an HTTP/1.0 request cannot be chunked",
        ));
    }
    head.framing = lengths.framing()?;
    if head.framing == Framing::UntilClose {
        return Err(HeadError::Malformed("a request's body must have a length"));
    }
    head.expects_continue = head.expects_continue && !http10 && head.framing != Framing::Empty;
    drop_connection_named(buf, fields, &connection_tokens);
    Ok(Some(head))
}

/// Parses a site's response head at the start of `buf` (the answer to a HEAD request when
/// `to_head`): `Ok(None)` while incomplete. `fields` receives its header fields.
pub fn parse_response(
    buf: &[u8],
    to_head: bool,
    fields: &mut Vec<Field>,
) -> Result<Option<ResponseHead>, HeadError> {
    fields.clear();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => {
            return Err(HeadError::Malformed(
                "the site's answer is not valid HTTP/1",
            ));
        }
    };
    let (Some(version), Some(status)) = (response.version, response.code) else {
        return Err(HeadError::Malformed("the site's status line is incomplete"));
    };
    let mut head = ResponseHead {
        len,
        status,
        reason: Span::within(buf, response.reason.unwrap_or("").as_bytes()),
        framing: Framing::Empty,
        keep_alive: version == 1,
    };
    let mut lengths = Lengths::default();
    let mut connection_tokens: Vec<Span> = Vec::new();
    for header in response.headers.iter() {
        let (name, value) = (header.name.as_bytes(), header.value);
        let role = response_role(name);
        if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    connection_tokens.push(Span::within(buf, token));
                }
            }
        }
        match role {
            Role::ContentLength => lengths.content_length(value)?,
            // A coding other than chunked last: the body runs until the site closes.
            Role::TransferEncoding if lengths.transfer_encoding(value).is_err() => {
                lengths.until_close = true;
            }
            _ => {}
        }
        fields.push(Field {
            name: Span::within(buf, name),
            value: Span::within(buf, value),
            role,
        });
    }
    let bodiless = to_head || status < 200 || status == 204 || status == 304;
    head.framing = if bodiless {
        Framing::Empty
    } else if lengths.until_close {
        Framing::UntilClose
    } else if lengths.chunked {
        // Chunked wins over a length (RFC 9112 §6.3), and the connection is not reused.
        if lengths.length.is_some() {
            head.keep_alive = false;
        }
        Framing::Chunked
    } else {
        match lengths.length {
            Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        }
    };
    if head.framing == Framing::UntilClose {
        head.keep_alive = false;
    }
    drop_connection_named(buf, fields, &connection_tokens);
    Ok(Some(head))
}

/// The framing fields seen so far.
#[derive(Default)]
struct Lengths {
    length: Option<u64>,
    chunked: bool,
    transfer_encodings: usize,
    until_close: bool,
}

impl Lengths {
    fn content_length(&mut self, value: &[u8]) -> Result<(), HeadError> {
        if self.length.is_some() {
            return Err(HeadError::Malformed(
                "the message has two Content-Length fields",
            ));
        }
        let digits = trim(value);
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Malformed("Content-Length is not a number"));
        }
        let length = digits
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        self.length = Some(length);
        Ok(())
    }

    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), HeadError> {
        self.transfer_encodings += 1;
        if self.transfer_encodings > 1 || !trim(value).eq_ignore_ascii_case(b"chunked") {
            return Err(HeadError::UnsupportedCoding);
        }
        self.chunked = true;
        Ok(())
    }

    /// A request's framing: both a length and chunked is the classic smuggling head.
    fn framing(&self) -> Result<Framing, HeadError> {
        match (self.length, self.chunked) {
            (Some(_), true) => Err(HeadError::Malformed(
                "the request has both Content-Length and Transfer-Encoding",
            )),
            (_, true) => Ok(Framing::Chunked),
            (Some(0) | None, false) => Ok(Framing::Empty),
            (Some(length), false) => Ok(Framing::Length(length)),
        }
    }
}

fn request_role(name: &[u8]) -> Role {
    common_role(name).unwrap_or_else(|| {
        if name.eq_ignore_ascii_case(b"expect") {
            Role::Expect
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            Role::ForwardedFor
        } else if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            Role::ForwardedProto
        } else {
            Role::Other
        }
    })
}

fn response_role(name: &[u8]) -> Role {
    common_role(name).unwrap_or_else(|| {
        if name.eq_ignore_ascii_case(b"strict-transport-security") {
            Role::StrictTransportSecurity
        } else {
            Role::Other
        }
    })
}

fn common_role(name: &[u8]) -> Option<Role> {
    if name.eq_ignore_ascii_case(b"alveole-priority") {
        return Some(Role::Priority);
    }
    const HOP_BY_HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
    ];
    if name.eq_ignore_ascii_case(b"content-length") {
        Some(Role::ContentLength)
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        Some(Role::TransferEncoding)
    } else if HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop)) {
        Some(Role::HopByHop)
    } else {
        None
    }
}

/// The fields a `Connection` field names are for this connection only (RFC 9110 §7.6.1).
fn drop_connection_named(buf: &[u8], fields: &mut [Field], named: &[Span]) {
    if named.is_empty() {
        return;
    }
    for field in fields.iter_mut() {
        let name = field.name.of(buf);
        if field.role == Role::Other && named.iter().any(|n| n.of(buf).eq_ignore_ascii_case(name)) {
            field.role = Role::HopByHop;
        }
    }
}

/// The comma-separated tokens of a field's value, without surrounding blanks.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(text.as_bytes(), &mut Vec::new())
    }

    #[test]
    fn a_plain_request_is_read_with_its_host_and_no_body() {
        let text = "GET /a?b HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\nNEXT";
        let head = request(text).unwrap().unwrap();
        assert_eq!(head.len, text.len() - 4);
        assert_eq!(head.target.of(text.as_bytes()), b"/a?b");
        assert_eq!(head.host.unwrap().of(text.as_bytes()), b"example.org");
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
    }

    #[test]
    fn an_incomplete_head_waits_and_a_huge_one_is_refused() {
        assert_eq!(request("GET / HTTP/1.1\r\nHost: a"), Ok(None));
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(request(&huge), Err(HeadError::TooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(request(&many), Err(HeadError::TooLarge));
    }

    #[test]
    fn smuggling_heads_are_refused() {
        for (text, status) in [
            // CL.TE and TE.CL: both framings at once.
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                400,
            ),
            // Two lengths, even equal ones.
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            // Codings other than plain chunked, and chunked twice.
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                501,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            // Whitespace before the colon, and folded lines.
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
                400,
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400),
            // Two hosts, none, a tunnel.
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
        ] {
            let refused = request(text).err().map(HeadError::status);
            assert_eq!(refused, Some(status), "{text:?}");
        }
    }

    #[test]
    fn bodies_are_framed_by_length_or_chunks() {
        let head = request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Length(12));
        let head = request("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked \r\nExpect: 100-continue\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.expects_continue);
        let head = request(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Empty);
        assert!(!head.expects_continue, "no body: nothing to wait for");
    }

    #[test]
    fn connection_tokens_decide_keep_alive_and_name_hop_by_hop_fields() {
        let text = "GET / HTTP/1.0\r\nConnection: Keep-Alive, X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n";
        let mut fields = Vec::new();
        let head = parse_request(text.as_bytes(), &mut fields)
            .unwrap()
            .unwrap();
        assert!(head.keep_alive && head.http10);
        let forwarded: Vec<&[u8]> = fields
            .iter()
            .filter(|f| f.role == Role::Other)
            .map(|f| f.name.of(text.as_bytes()))
            .collect();
        assert_eq!(forwarded, vec![&b"X-Kept"[..]]);
        let head = request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
    }

    #[test]
    fn responses_are_framed_as_rfc_9112_says() {
        let framing = |text: &str, to_head: bool| {
            parse_response(text.as_bytes(), to_head, &mut Vec::new())
                .map(|h| h.map(|h| (h.framing, h.keep_alive)))
        };
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Ok(Some((Framing::Length(5), true)))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Ok(Some((Framing::Empty, true)))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok(Some((Framing::Empty, true)))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            Ok(Some((Framing::UntilClose, false)))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            Ok(Some((Framing::Length(1), false)))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            Ok(Some((Framing::Chunked, false)))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Ok(Some((Framing::UntilClose, false)))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false
            ),
            Ok(Some((Framing::Empty, false)))
        );
        assert!(
            framing(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false
            )
            .is_err()
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None));
    }
}
