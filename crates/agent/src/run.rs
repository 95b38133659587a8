//! The agent's main loop. Pulls the node's desired state from the panel, offers it to the
//! ledger, and reconciles on every pass from the document it holds, so it keeps serving and
//! repairing drift when the panel is away, across its own restarts too.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alveole_model::{DesiredState, NodeId, NodeReport, NodeResources, SiteReport, SiteState};
use serde::{Deserialize, Serialize};

use crate::ingress::{Ingress, Routes, Upstream};
use crate::ledger::{Ledger, Verdict};
use crate::reconcile::{Reconciler, Report};
use crate::runtime::Action;
use crate::runtime::{Naming, Runtime};

/// What an enrolled agent keeps on disk (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    pub node_id: NodeId,
    pub credential: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ node_id: {}, credential: [redacted] }}",
            self.node_id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot reach the panel at {url}")]
    Panel { url: String, source: reqwest::Error },
    #[error("the panel refused: {status} {detail}")]
    Refused { status: u16, detail: String },
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a credential file")]
    Credential {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Talks to the panel's agent routes.
#[derive(Clone, Debug)]
pub struct PanelClient {
    http: reqwest::Client,
    base: String,
}

impl PanelClient {
    /// A client that trusts only the panel's own CA when one is known: the one saved in
    /// `state_dir`, else the one the panel serves, if its SHA-256 is `pin` (from the join
    /// command; saved for every later start). With neither: the system's roots, as `new`.
    pub async fn trusting(
        base: &str,
        state_dir: &Path,
        pin: Option<&str>,
    ) -> Result<Self, AgentError> {
        let saved = state_dir.join("panel-ca.pem");
        let ca_pem = match std::fs::read_to_string(&saved) {
            Ok(pem) => Some(pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match pin {
                Some(pin) => {
                    let pem = fetch_pinned_ca(base, pin).await?;
                    let io = |source| AgentError::Io {
                        path: saved.clone(),
                        source,
                    };
                    std::fs::create_dir_all(state_dir).map_err(io)?;
                    std::fs::write(&saved, &pem).map_err(io)?;
                    Some(pem)
                }
                None => None,
            },
            Err(source) => {
                return Err(AgentError::Io {
                    path: saved,
                    source,
                });
            }
        };
        let unreachable = |source| AgentError::Panel {
            url: base.to_owned(),
            source,
        };
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            builder = builder.tls_certs_only([
                reqwest::Certificate::from_pem(pem.as_bytes()).map_err(unreachable)?
            ]);
        }
        Ok(Self {
            http: builder.build().map_err(unreachable)?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn new(base: &str) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| AgentError::Panel {
                url: base.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> AgentError {
        AgentError::Panel {
            url: self.base.clone(),
            source,
        }
    }

    /// The JSON body of a successful answer.
    async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, AgentError> {
        self.checked(response)
            .await?
            .json()
            .await
            .map_err(|e| self.unreachable(e))
    }

    async fn checked(&self, response: reqwest::Response) -> Result<reqwest::Response, AgentError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let detail = response.text().await.unwrap_or_default();
        Err(AgentError::Refused { status, detail })
    }

    /// Trades a join token for the node's credential.
    pub async fn enroll(&self, join_token: &str) -> Result<Credential, AgentError> {
        let response = self
            .http
            .post(format!("{}/api/v1/agent/enroll", self.base))
            .json(&serde_json::json!({"join_token": join_token}))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(response).await
    }

    /// Sends the node's report after a pass.
    pub async fn report(
        &self,
        credential: &Credential,
        report: &NodeReport,
    ) -> Result<(), AgentError> {
        let response = self
            .http
            .post(format!("{}/api/v1/agent/status", self.base))
            .bearer_auth(&credential.credential)
            .json(report)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.checked(response).await.map(|_| ())
    }

    pub async fn desired_state(&self, credential: &Credential) -> Result<DesiredState, AgentError> {
        self.desired_state_after(credential, None, Duration::ZERO)
            .await
    }

    /// Waits (up to `wait`) for a desired state newer than generation `after`.
    pub async fn desired_state_after(
        &self,
        credential: &Credential,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<DesiredState, AgentError> {
        let mut url = format!(
            "{}/api/v1/agent/desired-state?wait={}",
            self.base,
            wait.as_secs()
        );
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(&credential.credential)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(response).await
    }
}

/// Fetches the panel's CA and accepts it only if its SHA-256 is `pin`. The connection that
/// brings it is not trusted (that is the point): the pin, from the join command an admin
/// copied, is what makes the CA trustworthy.
async fn fetch_pinned_ca(base: &str, pin: &str) -> Result<String, AgentError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let url = format!("{}/api/v1/agent/ca", base.trim_end_matches('/'));
    let unreachable = |source| AgentError::Panel {
        url: url.clone(),
        source,
    };
    let unchecked = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(unreachable)?;
    let answer: serde_json::Value = unchecked
        .get(&url)
        .send()
        .await
        .map_err(unreachable)?
        .json()
        .await
        .map_err(unreachable)?;
    let pem = answer["ca_pem"].as_str().unwrap_or_default().to_owned();
    let refused = |detail: String| AgentError::Refused { status: 0, detail };
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| refused("the panel sent no CA certificate".into()))?;
    let fingerprint: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if fingerprint != pin.trim().to_ascii_lowercase() {
        return Err(refused(format!(
            "the panel's CA has fingerprint {fingerprint}, not the {pin} of the join command: not trusting it"
        )));
    }
    Ok(pem)
}

/// The credential in `state_dir`, enrolling with `join_token` when there is none yet.
pub async fn credential(
    panel: &PanelClient,
    state_dir: &Path,
    join_token: Option<&str>,
) -> Result<Credential, AgentError> {
    let path = state_dir.join("credential.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return serde_json::from_str(&text)
                .map_err(|source| AgentError::Credential { path, source });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(AgentError::Io { path, source }),
    }
    let Some(join_token) = join_token else {
        return Err(AgentError::Refused {
            status: 0,
            detail: "not enrolled yet: pass --join-token".into(),
        });
    };
    let credential = panel.enroll(join_token).await?;
    let io = |source| AgentError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let text = serde_json::to_vec(&credential).map_err(|source| AgentError::Credential {
        path: path.clone(),
        source,
    })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(credential)
}

/// How often the agent asks the panel and reconciles.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub pass: Duration,
}

/// One agent: ledger, reconciler, ingress.
pub struct Agent<R> {
    credential: Credential,
    panel: PanelClient,
    ledger: Ledger,
    reconciler: Reconciler<R>,
    ingress: Arc<Ingress>,
    held: Option<DesiredState>,
    /// The latest measurement of each site's volume, and when it was taken.
    usage: std::collections::BTreeMap<alveole_model::SiteId, u64>,
    usage_measured: Option<tokio::time::Instant>,
    usage_every: Duration,
    /// Whether the node's isolation from the host can be put in place (nft is there).
    isolated: bool,
}

impl<R> std::fmt::Debug for Agent<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.credential.node_id)
            .field("generation", &self.held.as_ref().map(|h| h.generation))
            .finish()
    }
}

impl<R: Runtime> Agent<R> {
    /// Loads the held document. An unreadable one is reported and treated as "nothing known
    /// yet": the agent then changes nothing until the panel sends a document.
    pub fn new(
        credential: Credential,
        panel: PanelClient,
        state_dir: &Path,
        runtime: R,
        ingress: Arc<Ingress>,
    ) -> Self {
        let ledger = Ledger::new(credential.node_id, state_dir);
        let held = match ledger.load() {
            Ok(held) => held,
            Err(error) => {
                tracing::error!(%error, "the held desired state is unreadable; keeping what runs until the panel answers");
                None
            }
        };
        // Replacements hold and repoint the site's requests in this agent's ingress.
        let traffic: Arc<dyn crate::runtime::Traffic> = Arc::new(ingress.clone());
        let naming = Naming {
            node_id: credential.node_id,
        };
        let mut reconciler = Reconciler::new(runtime, naming).with_traffic(traffic);
        let isolation = crate::isolation::NftIsolation::detect();
        let isolated = isolation.is_some();
        match isolation {
            Some(nft) => reconciler = reconciler.with_isolation(Arc::new(nft)),
            None => tracing::error!(
                "nft is not installed: this node's sites can reach the host's own services (install nftables)"
            ),
        }
        Self {
            credential,
            panel,
            ledger,
            reconciler,
            ingress,
            held,
            usage: Default::default(),
            usage_measured: None,
            usage_every: Duration::from_secs(60),
            isolated,
        }
    }

    /// Measures the volumes when the last measurement is older than the interval.
    async fn refresh_usage(&mut self) {
        if self
            .usage_measured
            .is_some_and(|at| at.elapsed() < self.usage_every)
        {
            return;
        }
        match self
            .reconciler
            .runtime()
            .volume_usage(self.reconciler.naming())
            .await
        {
            Ok(usage) => {
                self.usage = usage;
                self.usage_measured = Some(tokio::time::Instant::now());
            }
            Err(error) => tracing::warn!(%error, "could not measure the volumes"),
        }
    }

    /// How often volumes are measured (walking them costs I/O).
    pub fn with_usage_interval(mut self, every: Duration) -> Self {
        self.usage_every = every;
        self
    }

    pub fn held_generation(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.generation)
    }

    /// One pass: ask the panel (if it answers), then reconcile from the held document.
    pub async fn pass(&mut self) -> Option<Report> {
        match self.panel.desired_state(&self.credential).await {
            Ok(offered) => match self.ledger.offer(self.held.as_ref(), &offered) {
                Ok(Verdict::Accepted) => {
                    tracing::info!(
                        generation = offered.generation,
                        "accepted a new desired state"
                    );
                    self.held = Some(offered);
                }
                Ok(Verdict::Unchanged) => {}
                Ok(Verdict::Rejected(reason)) => tracing::warn!(%reason, "refused a desired state"),
                Err(error) => tracing::error!(%error, "could not persist the desired state"),
            },
            Err(error) => {
                tracing::warn!(%error, generation = ?self.held_generation(), "panel unreachable; serving from the held desired state")
            }
        }
        let outcome = self.reconciler.reconcile(self.held.as_ref()?).await;
        if outcome.is_ok() {
            self.refresh_usage().await;
        }
        let held = self.held.as_ref()?;
        let sites = match &outcome {
            Ok(report) => {
                self.ingress.set_routes(routes_of(held, report));
                site_reports(held, report, &self.usage)
            }
            Err(error) => {
                tracing::warn!(%error, "the container engine is unreachable; routes unchanged");
                let reason = format!("the node's container engine is unreachable: {error}");
                held.sites
                    .iter()
                    .map(|s| SiteReport {
                        site_id: s.site_id,
                        state: SiteState::Failing,
                        reason: Some(reason.clone()),
                        volume_bytes: self.usage.get(&s.site_id).copied(),
                    })
                    .collect()
            }
        };
        let mut warnings = Vec::new();
        if !self.isolated {
            warnings
                .push("nft is not installed: sites can reach this host's own services".to_owned());
        }
        if let Some(error) = outcome
            .as_ref()
            .ok()
            .and_then(|r| r.isolation_error.clone())
        {
            warnings.push(format!("sites are not isolated from this host: {error}"));
        }
        let report = NodeReport {
            generation: Some(held.generation),
            sites,
            resources: resources(self.ledger.path()),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            warnings,
        };
        if let Err(error) = self.panel.report(&self.credential, &report).await {
            tracing::debug!(%error, "could not send the report; the next pass will");
        }
        outcome.ok()
    }

    /// Runs passes until `shutdown` resolves: on a timer, and as soon as the engine reports a
    /// change to this node's containers (drift is repaired without waiting for the timer).
    pub async fn run(mut self, timing: Timing, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let poke = Arc::new(tokio::sync::Notify::new());
        let watcher = self
            .reconciler
            .runtime()
            .watch(self.reconciler.naming(), poke.clone());
        let listener = tokio::spawn(listen_for_changes(
            self.panel.clone(),
            self.credential.clone(),
            self.held_generation(),
            poke.clone(),
            timing.pass,
        ));
        let mut ticker = tokio::time::interval(timing.pass);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
                () = poke.notified() => {}
            }
            self.pass().await;
        }
        listener.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
    }
}

/// How long one long poll of the panel may wait (under the client's 30 s timeout).
const LONG_POLL: Duration = Duration::from_secs(25);

/// Long-polls the panel for a desired state newer than the last one seen, and pokes the agent
/// loop when there is one: a change reaches the node in about the time of a request, not of a
/// timer. When the panel is unreachable, retries every `pause`.
async fn listen_for_changes(
    panel: PanelClient,
    credential: Credential,
    mut seen: Option<u64>,
    poke: Arc<tokio::sync::Notify>,
    pause: Duration,
) {
    loop {
        match panel
            .desired_state_after(&credential, seen, LONG_POLL)
            .await
        {
            Ok(offered) if seen.is_none_or(|seen| offered.generation > seen) => {
                seen = Some(offered.generation);
                poke.notify_one();
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(pause).await,
        }
    }
}

/// The ingress routes for what runs: every host name of every running site with an address.
pub fn routes_of(desired: &DesiredState, report: &Report) -> Routes {
    let mut routes = Routes::default();
    for spec in &desired.sites {
        let Some(address) = report.addresses.get(&spec.site_id) else {
            continue;
        };
        let upstream = Upstream {
            site: spec.site_id,
            address: std::net::SocketAddr::new(*address, spec.http_port),
        };
        for hostname in &spec.hostnames {
            routes.insert(hostname, upstream);
        }
    }
    routes
}

/// How each site of the held document is, after a pass.
pub fn site_reports(
    desired: &DesiredState,
    report: &Report,
    usage: &std::collections::BTreeMap<alveole_model::SiteId, u64>,
) -> Vec<SiteReport> {
    desired
        .sites
        .iter()
        .map(|spec| {
            let failure = report.failures.iter().find(|(action, _)| match action {
                Action::Create { site }
                | Action::Replace { site, .. }
                | Action::CreateVolume { site } => *site == spec.site_id,
                _ => false,
            });
            let (state, reason) = match (
                failure,
                spec.run,
                report.addresses.contains_key(&spec.site_id),
            ) {
                (Some((_, why)), _, _) => (SiteState::Failing, Some(why.clone())),
                (None, false, _) => (SiteState::Stopped, None),
                (None, true, true) => (SiteState::Running, None),
                (None, true, false) => (
                    SiteState::Failing,
                    Some("the container is not running".to_owned()),
                ),
            };
            SiteReport {
                site_id: spec.site_id,
                state,
                reason,
                volume_bytes: usage.get(&spec.site_id).copied(),
            }
        })
        .collect()
}

/// This machine's CPUs, load, memory (from /proc) and the disk holding `path` (from `df`).
fn resources(path: &Path) -> NodeResources {
    let read = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let kib = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n * 1024)
    };
    let load_1m = read("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(dir)
        .output()
        .ok();
    let disk: Vec<u64> = df
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    NodeResources {
        cpus: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        load_1m,
        memory_total_bytes: kib("MemTotal:"),
        memory_available_bytes: kib("MemAvailable:"),
        disk_total_bytes: disk.first().copied().unwrap_or(0),
        disk_available_bytes: disk.get(1).copied().unwrap_or(0),
    }
}
