//! Prometheus metrics of the panel: requests by route and status, their latency, and the
//! number of sites per phase (read from the store at scrape time).

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
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
    pub hostname: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupLabels {
    pub site: String,
    pub hostname: String,
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub sites: Family<PhaseLabels, Gauge>,
    /// Measured by the agents: alert on `volume_bytes > volume_quota_bytes`.
    pub volume_bytes: Family<SiteLabels, Gauge>,
    pub volume_quota_bytes: Family<SiteLabels, Gauge>,
    /// Exit readiness: alert on `provider_exit_ready == 0`.
    pub provider_exit_seconds: Family<ProviderLabels, Gauge>,
    pub provider_exit_ready: Family<ProviderLabels, Gauge>,
    pub exit_notice_seconds: Gauge,
    /// A site's data-loss window at each target: alert on it exceeding the site's period.
    pub backup_age_seconds: Family<BackupLabels, Gauge>,
    pub backup_bytes: Family<BackupLabels, Gauge>,
    /// What drills and checks prove: alert on `site_backup_alerts > 0`.
    pub data_loss_window_seconds: Family<SiteLabels, Gauge>,
    pub restore_seconds: Family<SiteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub backup_alerts: Family<SiteLabels, Gauge>,
    /// When a site's certificate expires: alert on
    /// `site_certificate_expiry_timestamp_seconds - time() < 7 * 86400`, or on
    /// `site_certificate_alerts > 0` (five sixths of its lifetime passed unrenewed).
    pub certificate_expiry: Family<SiteLabels, Gauge>,
    pub certificate_alerts: Family<SiteLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let sites = Family::<PhaseLabels, Gauge>::default();
        let volume_bytes = Family::<SiteLabels, Gauge>::default();
        let volume_quota_bytes = Family::<SiteLabels, Gauge>::default();
        let provider_exit_seconds = Family::<ProviderLabels, Gauge>::default();
        let provider_exit_ready = Family::<ProviderLabels, Gauge>::default();
        let exit_notice_seconds = Gauge::default();
        let backup_age_seconds = Family::<BackupLabels, Gauge>::default();
        let backup_bytes = Family::<BackupLabels, Gauge>::default();
        let data_loss_window_seconds = Family::<SiteLabels, Gauge>::default();
        let restore_seconds =
            Family::<SiteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let backup_alerts = Family::<SiteLabels, Gauge>::default();
        let certificate_expiry = Family::<SiteLabels, Gauge>::default();
        let certificate_alerts = Family::<SiteLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("alveole");
        // The panel's listeners (members', agents'): open, refused, timed out, made room.
        registry.register_collector(Box::new(alveole_listen::metrics::ListenerCollector));
        registry.register(
            "http_requests",
            "HTTP requests answered by the panel",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route",
            latency.clone(),
        );
        registry.register("sites", "Sites by phase", sites.clone());
        registry.register(
            "site_volume_bytes",
            "Bytes a site's volume uses, as its node last measured",
            volume_bytes.clone(),
        );
        registry.register(
            "site_volume_quota_bytes",
            "A site's volume quota",
            volume_quota_bytes.clone(),
        );
        registry.register(
            "provider_exit_seconds",
            "How long moving every site off a provider would take, planned now",
            provider_exit_seconds.clone(),
        );
        registry.register(
            "provider_exit_ready",
            "1 when every site of a provider has a place elsewhere and moves within the notice",
            provider_exit_ready.clone(),
        );
        registry.register(
            "exit_notice_seconds",
            "The notice a provider is assumed to give",
            exit_notice_seconds.clone(),
        );
        registry.register(
            "site_backup_age_seconds",
            "Age of a site's newest snapshot at a backup target (its data-loss window there)",
            backup_age_seconds.clone(),
        );
        registry.register(
            "site_backup_bytes",
            "Size of a site's files in its newest snapshot at a backup target",
            backup_bytes.clone(),
        );
        registry.register(
            "site_data_loss_window_seconds",
            "Age of a site's newest snapshot that passed a restore drill or a vault's check",
            data_loss_window_seconds.clone(),
        );
        registry.register(
            "site_restore_seconds",
            "How long a site's last drill that passed took, from the start of the restore to \
             the first good answer",
            restore_seconds.clone(),
        );
        registry.register(
            "site_backup_alerts",
            "Backup alerts raised on a site (window too long, drill failed, copy damaged)",
            backup_alerts.clone(),
        );
        registry.register(
            "site_certificate_expiry_timestamp_seconds",
            "When a site's certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        registry.register(
            "site_certificate_alerts",
            "1 when five sixths of a site's certificate's lifetime passed without a renewal",
            certificate_alerts.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            sites,
            volume_bytes,
            volume_quota_bytes,
            provider_exit_seconds,
            provider_exit_ready,
            exit_notice_seconds,
            backup_age_seconds,
            backup_bytes,
            data_loss_window_seconds,
            restore_seconds,
            backup_alerts,
            certificate_expiry,
            certificate_alerts,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
