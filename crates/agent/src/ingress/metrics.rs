//! The ingress's Prometheus metrics: requests and latency per site, as the node serves them.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The site's id, or `none` for requests no site answers.
    pub site: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

#[derive(Debug)]
pub struct IngressMetrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<SiteLabels, Histogram>,
}

impl Default for IngressMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<SiteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let mut registry = Registry::with_prefix("alveole_ingress");
        // The node's listeners (the sites', the metrics', the other agents'): open, refused,
        // timed out, closed to make room.
        registry.register_collector(Box::new(alveole_listen::metrics::ListenerCollector));
        registry.register(
            "requests",
            "Requests answered by the node's ingress",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response's headers, per site",
            latency.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
        }
    }
}

impl IngressMetrics {
    /// A site's metric handles (`None`: requests no site answers). Looked up once per route
    /// table: the handles share their values with the registry, so recording a request costs
    /// no label lookup and no allocation.
    pub fn for_site(&self, site: Option<alveole_model::SiteId>) -> SiteMetrics {
        let site = site.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let counter = |class: &str| {
            self.requests
                .get_or_create(&RequestLabels {
                    site: site.clone(),
                    class: class.to_owned(),
                })
                .clone()
        };
        SiteMetrics {
            by_class: [
                counter("1xx"),
                counter("2xx"),
                counter("3xx"),
                counter("4xx"),
                counter("5xx"),
            ],
            latency: self
                .latency
                .get_or_create(&SiteLabels { site: site.clone() })
                .clone(),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = encode(&mut out, &registry);
        out
    }
}

/// One site's request counters (by status class) and latency histogram.
#[derive(Clone, Debug)]
pub struct SiteMetrics {
    by_class: [Counter; 5],
    latency: Histogram,
}

impl SiteMetrics {
    pub fn record(&self, status: u16, seconds: Option<f64>) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        if let Some(seconds) = seconds {
            self.latency.observe(seconds);
        }
    }
}
