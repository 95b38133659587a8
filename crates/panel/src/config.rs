//! The panel's settings that do not come from the database.

use std::sync::Arc;
use std::time::Duration;

use alveole_model::{Clock, SystemClock};
use alveole_store::MoveTiming;

use crate::secrets::Keyring;
use crate::suffixes::PublicSuffixes;
use crate::{background, failover, notary, oidc, tls};

/// Settings of the panel that do not come from the database.
#[derive(Clone, Debug)]
pub struct PanelConfig {
    /// Mark cookies `Secure` (the panel is served over HTTPS).
    pub secure_cookies: bool,
    /// A node silent for longer is shown unreachable.
    pub node_unreachable_after: Duration,
    /// How agents reach the panel (`https://panel.example.org:8443`), for join commands.
    pub agent_url: Option<String>,
    /// The CA agents pin and the issuer of their certificates, when the panel serves agents
    /// (over TLS, on a listener of its own).
    pub agent_tls: Option<tls::PanelTls>,
    /// Signs audit checkpoints; without it the panel records the chain but signs nothing.
    pub notary: Option<notary::Notary>,
    /// A session unused for this long ends (it ends 12 hours after sign-in in any case).
    pub session_idle: Duration,
    /// What "now" is wherever time decides something (tests move it). The store writes its
    /// times from the same clock.
    pub clock: Arc<dyn Clock>,
    /// The co-op's identity provider, when members sign in through one.
    pub oidc: Option<Arc<oidc::Oidc>>,
    /// Tells providers where to deliver a failover address.
    pub provider_routing: Arc<dyn failover::ProviderRouting>,
    /// How long a move may freeze a site, and how long its old node forwards afterwards.
    pub moves: MoveTiming,
    /// Whether and how this process runs its background tasks.
    pub background: background::BackgroundConfig,
    /// The notice a provider is assumed to give before it stops: exit readiness measures
    /// leaving each provider against it.
    pub exit_notice: Duration,
    /// The largest request body the panel reads (413 beyond).
    pub max_body_bytes: usize,
    /// No wildcard name directly under a public suffix.
    pub public_suffixes: Arc<PublicSuffixes>,
    /// Seals every secret the panel stores (`--secrets-key-file`).
    pub secrets: Arc<Keyring>,
    /// The co-op's ACME CA, when sites get their certificates from one.
    pub acme: Option<crate::acme::AcmeConfig>,
    /// The database engines and versions members may choose, and the image of each.
    pub databases: Vec<alveole_model::DatabaseOffer>,
}

/// Debian's list, read once per process.
pub fn system_public_suffixes() -> Arc<PublicSuffixes> {
    static LIST: std::sync::OnceLock<Arc<PublicSuffixes>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        Arc::new(PublicSuffixes::load(std::path::Path::new(
            crate::suffixes::DEBIAN_LIST,
        )))
    })
    .clone()
}

/// An API body or a form is small: 1 MiB is plenty.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// A provider's notice assumed by default: 60 hours (what one co-op was given).
pub const DEFAULT_EXIT_NOTICE: Duration = Duration::from_secs(60 * 3600);

/// A move's source forwards for 10 minutes (twice a 5-minute DNS TTL), and gives up a freeze
/// after 10 seconds.
pub const DEFAULT_MOVE_TIMING: MoveTiming = MoveTiming {
    forward_seconds: 600,
    freeze_deadline_ms: 10_000,
};

impl Default for PanelConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            node_unreachable_after: Duration::from_secs(60),
            agent_url: None,
            agent_tls: None,
            notary: None,
            session_idle: Duration::from_secs(2 * 3600),
            clock: Arc::new(SystemClock),
            oidc: None,
            provider_routing: Arc::new(failover::SharedSegment),
            moves: DEFAULT_MOVE_TIMING,
            background: background::BackgroundConfig::default(),
            exit_notice: DEFAULT_EXIT_NOTICE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            public_suffixes: system_public_suffixes(),
            secrets: Arc::new(Keyring::ephemeral()),
            acme: None,
            databases: alveole_model::DatabaseOffer::official(),
        }
    }
}
