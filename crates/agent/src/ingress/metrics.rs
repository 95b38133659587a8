//! The ingress's Prometheus metrics: requests and latency per site, as the node serves them.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnedAwayLabels {
    pub site: String,
    /// `waiting_room` (shown the page), `not_a_page` (503 while visitors wait),
    /// `line_full`, `container_busy` (the container did not keep up).
    pub reason: String,
}

/// Overload protection's metrics, per site.
#[derive(Debug)]
struct AdmissionFamilies {
    waiting: Family<SiteLabels, Gauge>,
    active: Family<SiteLabels, Gauge>,
    admitted: Family<SiteLabels, Counter>,
    wait: Family<SiteLabels, Histogram>,
    turned_away: Family<TurnedAwayLabels, Counter>,
}

#[derive(Debug)]
pub struct IngressMetrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<SiteLabels, Histogram>,
    admission: AdmissionFamilies,
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
        let admission = AdmissionFamilies {
            waiting: Family::default(),
            active: Family::default(),
            admitted: Family::default(),
            wait: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 14))
            }),
            turned_away: Family::default(),
        };
        registry.register(
            "waiting_visitors",
            "Visitors in a site's waiting line",
            admission.waiting.clone(),
        );
        registry.register(
            "active_visitors",
            "Visitors admitted to a site and active",
            admission.active.clone(),
        );
        registry.register(
            "admitted_visitors",
            "Visitors admitted to a site (new, or called in from the line)",
            admission.admitted.clone(),
        );
        registry.register(
            "waiting_time_seconds",
            "Time visitors waited in line before they were admitted",
            admission.wait.clone(),
        );
        registry.register(
            "turned_away",
            "Requests answered by the ingress instead of the site, by why",
            admission.turned_away.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            admission,
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

    /// Requests answered for `site` since the start; `None` before its first.
    pub fn requests_of(&self, site: alveole_model::SiteId) -> Option<u64> {
        let site = site.to_string();
        let counts: Vec<u64> = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .filter_map(|class| {
                self.requests
                    .get(&RequestLabels {
                        site: site.clone(),
                        class: (*class).to_owned(),
                    })
                    .map(|counter| counter.get())
            })
            .collect();
        (counts.iter().sum::<u64>() > 0).then(|| counts.iter().sum())
    }

    /// A site's overload protection metric handles.
    pub fn for_admission(&self, site: alveole_model::SiteId) -> AdmissionMetrics {
        let labels = SiteLabels {
            site: site.to_string(),
        };
        let families = &self.admission;
        AdmissionMetrics {
            site: labels.site.clone(),
            waiting: families.waiting.get_or_create(&labels).clone(),
            active: families.active.get_or_create(&labels).clone(),
            admitted: families.admitted.get_or_create(&labels).clone(),
            wait: families.wait.get_or_create(&labels).clone(),
            turned_away: families.turned_away.clone(),
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

/// One site's overload protection handles.
#[derive(Clone, Debug)]
pub struct AdmissionMetrics {
    site: String,
    waiting: Gauge,
    active: Gauge,
    admitted: Counter,
    wait: Histogram,
    turned_away: Family<TurnedAwayLabels, Counter>,
}

impl AdmissionMetrics {
    pub fn set_counts(&self, waiting: usize, active: usize) {
        self.waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.active.set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    pub fn admitted(&self) {
        self.admitted.inc();
    }

    pub fn waited(&self, seconds: f64) {
        self.wait.observe(seconds);
    }

    /// Rare (the site is overloaded): the label lookup is affordable.
    pub fn turned_away(&self, reason: &str) {
        self.turned_away
            .get_or_create(&TurnedAwayLabels {
                site: self.site.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}
