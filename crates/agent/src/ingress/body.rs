//! The body the ingress answers with.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;

use super::InFlight;

/// What the ingress answers with: a site's response, its request counted in flight until the
/// body ends, or one of alveole's own pages. A concrete type, not a box: no allocation.
#[derive(Debug)]
pub enum Body {
    Upstream {
        inner: Incoming,
        in_flight: InFlight,
    },
    Page(Full<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Upstream { inner, .. } => std::pin::Pin::new(inner).poll_frame(cx),
            Body::Page(page) => std::pin::Pin::new(page)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream { inner, .. } => inner.is_end_stream(),
            Body::Page(page) => page.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Upstream { inner, .. } => inner.size_hint(),
            Body::Page(page) => page.size_hint(),
        }
    }
}
