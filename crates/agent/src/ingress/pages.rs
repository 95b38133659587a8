//! alveole's own answers, for what no site answers: small pages, redirects and the ACME
//! challenges' tokens, written whole by the ingress.

use bytes::Bytes;

/// A whole answer of the ingress's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub status: u16,
    pub content_type: &'static str,
    /// More fields (Retry-After, Location, Set-Cookie), if any.
    pub extra: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Page {
    /// The answer, head and body, as bytes on the wire; `close` says the connection ends.
    pub fn write(&self, close: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ndate: {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            self.status,
            reason(self.status),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The answer as hyper serves it (the ingress's metrics listener).
    pub fn into_response(self) -> hyper::Response<http_body_util::Full<Bytes>> {
        let mut response = hyper::Response::new(http_body_util::Full::new(self.body));
        *response.status_mut() =
            hyper::StatusCode::from_u16(self.status).unwrap_or(hyper::StatusCode::NOT_FOUND);
        if let Ok(value) = hyper::header::HeaderValue::from_str(self.content_type) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    }
}

/// A status's reason phrase, as the `http` crate knows it (empty for an unknown one).
pub(super) fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("")
}

pub(super) fn busy() -> Page {
    let mut page = page(
        503,
        "One moment",
        "This site is being updated and will answer again in a moment.",
    );
    page.extra.push(("retry-after", "1".to_owned()));
    page
}

/// A request body past its site's limit.
pub(super) fn too_large() -> Page {
    page(
        413,
        "Too large",
        "This site does not accept a request this large.",
    )
}

/// The site could not be reached, or answered with something that is not HTTP.
pub(super) fn unavailable() -> Page {
    page(
        502,
        "Site unavailable",
        "This site is not answering right now. Please try again shortly.",
    )
}

/// A permanent redirect to `location` (308: the method and body are kept).
pub(super) fn redirect(location: String) -> Page {
    Page {
        status: 308,
        content_type: "text/plain; charset=utf-8",
        extra: vec![("location", location)],
        body: Bytes::new(),
    }
}

/// The answer to an ACME challenge.
pub(super) fn challenge(answer: String) -> Page {
    Page {
        status: 200,
        content_type: "application/octet-stream",
        extra: Vec::new(),
        body: Bytes::from(answer),
    }
}

pub(super) fn escape(text: &str) -> String {
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
pub(super) fn page(status: u16, title: &str, text: &str) -> Page {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · alveole</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto\">\
         <h1>{title}</h1><p>{}</p><p><small>Served by alveole, the cooperative's hosting panel.</small></p></body></html>",
        escape(text)
    );
    Page {
        status,
        content_type: "text/html; charset=utf-8",
        extra: Vec::new(),
        body: Bytes::from(html),
    }
}
