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
    pub fn record(&self, site: Option<alveole_model::SiteId>, status: u16, seconds: Option<f64>) {
        let site = site.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let class = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&RequestLabels {
                site: site.clone(),
                class,
            })
            .inc();
        if let Some(seconds) = seconds {
            self.latency
                .get_or_create(&SiteLabels { site })
                .observe(seconds);
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
