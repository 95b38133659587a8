//! The bodies of the ingress: what it answers with, and a request's body bounded by its
//! site's limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// A request's body on its way to the site, refused past `remaining` bytes: `exceeded` then
/// says so (the ingress answers 413 rather than 502).
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            exceeded,
        }
    }
}

/// Why a request's body stopped: it went past its site's limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the site accepts")]
pub struct TooLarge;

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx));
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return std::task::Poll::Ready(Some(Err(error.into()))),
            None => return std::task::Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let length = data.len() as u64;
            if length > this.remaining {
                this.exceeded.store(true, Ordering::SeqCst);
                return std::task::Poll::Ready(Some(Err(TooLarge.into())));
            }
            this.remaining -= length;
        }
        std::task::Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
