//! The report task: after each pass, the node's report (sites, resources, warnings, the
//! outbox's events, the addresses held, the inventory hourly) goes to the panel. What the
//! panel received is settled then: the outbox's events are dropped, a filter on trial since an
//! earlier pass is confirmed. The agent's certificate is renewed here, at half its life.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alveole_model::{AgentEndpoints, Clock, NodeReport, NodeResources};
use tokio::sync::watch;

use super::passes::Pass;
use crate::control::files::StateFiles;
use crate::control::identity::Credential;
use crate::control::outbox::Outbox;
use crate::control::panel::{AgentError, Control};
use crate::moves::peer::PeerIdentity;
use crate::net::confirm::InputFilterGuard;

/// How often the node's inventory (packages, versions) is sent again.
const INVENTORY_EVERY: Duration = Duration::from_secs(3600);

pub(super) struct ReporterParts {
    pub credential: Credential,
    pub control: Arc<dyn Control>,
    pub files: Arc<dyn StateFiles>,
    pub clock: Arc<dyn Clock>,
    pub outbox: Arc<Mutex<Outbox>>,
    pub filter: Arc<Mutex<InputFilterGuard>>,
    pub engine_version: Option<String>,
}

pub(super) struct Reporter {
    parts: ReporterParts,
    /// When the panel last took the node's inventory (sent at start, then hourly).
    inventory_sent: Option<tokio::time::Instant>,
    /// Where other agents reach this one, when it takes part in moves.
    endpoints: Option<AgentEndpoints>,
    /// Its identity toward other agents, renewed with the certificate.
    peer_identity: Option<PeerIdentity>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reporter {
    pub(super) fn new(parts: ReporterParts) -> Self {
        Self {
            parts,
            inventory_sent: None,
            endpoints: None,
            peer_identity: None,
        }
    }

    pub(super) fn credential(&self) -> &Credential {
        &self.parts.credential
    }

    pub(super) fn take_part_in_moves(&mut self, endpoints: AgentEndpoints, identity: PeerIdentity) {
        self.endpoints = Some(endpoints);
        self.peer_identity = Some(identity);
    }

    /// Renews the certificate once half its life has passed. Failing is not fatal: the next
    /// report tries again, and the agent serves from its held state meanwhile.
    pub(super) async fn renew_certificate_if_due(&mut self) {
        let credential = &self.parts.credential;
        if !credential.renewal_due(self.parts.clock.now()) {
            return;
        }
        match self.renew_certificate().await {
            Ok(()) => {
                tracing::info!(not_after = %self.parts.credential.not_after, "renewed the agent certificate");
            }
            Err(error) => {
                tracing::warn!(error = %crate::describe(&error), not_after = %self.parts.credential.not_after, "could not renew the agent certificate; an expired one means enrolling again");
            }
        }
    }

    /// A fresh certificate for the same key from the panel, kept and used from now on.
    pub(super) async fn renew_certificate(&mut self) -> Result<(), AgentError> {
        let renewed = self.parts.control.renewed(&self.parts.credential).await?;
        renewed.save(self.parts.files.as_ref())?;
        if let Some(identity) = &self.peer_identity {
            identity.update(renewed.clone());
        }
        self.parts.credential = renewed;
        Ok(())
    }

    /// Sends the report of `pass`, and settles what the panel received.
    pub(super) async fn report(&mut self, pass: &Pass) {
        let report = NodeReport {
            generation: Some(pass.generation),
            sites: pass.sites.clone(),
            resources: resources(&self.parts.files.locate("")),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            warnings: pass.warnings.clone(),
            events: lock(&self.parts.outbox).pending().to_vec(),
            inventory: self
                .inventory_sent
                .is_none_or(|at| at.elapsed() >= INVENTORY_EVERY)
                .then(|| crate::control::inventory::collect(self.parts.engine_version.clone())),
            addresses: pass.addresses.clone(),
            endpoints: self.endpoints,
            restores: pass.restores.clone(),
            drills: pass.drills.clone(),
        };
        if let Err(error) = self.parts.control.report(&report).await {
            tracing::debug!(error = %crate::describe(&error), "could not send the report; the next pass will");
            return;
        }
        // Only a pass whose table is in place vouches for its filter.
        if pass.table_in_place && lock(&self.parts.filter).panel_reached(pass.number) {
            tracing::info!("the input filter is confirmed: the panel answers with it in place");
        }
        if report.inventory.is_some() {
            self.inventory_sent = Some(tokio::time::Instant::now());
        }
        if let Some(last) = report.events.last()
            && let Err(error) = lock(&self.parts.outbox).acknowledge(last.seq)
        {
            tracing::warn!(error = %crate::describe(&error), "could not update the outbox");
        }
    }

    /// Reports each pass published, the latest when several came while a report was on its
    /// way, for as long as passes are published.
    pub(super) async fn run(mut self, mut passes: watch::Receiver<Option<Arc<Pass>>>) {
        while passes.changed().await.is_ok() {
            let pass = passes.borrow_and_update().clone();
            self.renew_certificate_if_due().await;
            if let Some(pass) = pass {
                self.report(&pass).await;
            }
        }
    }
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
    let dir = if path.exists() { path } else { Path::new("/") };
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
