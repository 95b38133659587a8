//! Orders at the co-op's ACME CA: which sites are due (no certificate, names changed, renewal
//! time reached), the check of their names in DNS, the limits (`limits.rs`), then each order:
//! its challenges' answers to the site's nodes through their documents, the CA told once the
//! nodes hold them, the certificate kept (its key sealed) and its renewal planned (the CA's
//! window where it gives one, else two thirds of its lifetime with jitter).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use alveole_model::https::{in_window, renew_at, retry_after_failures};
use alveole_model::{Node, NodeId, Site, SiteId};
use alveole_store::{
    AcmeEventKind, AuditContext, CertificateSource, NodeFilter, StoredCertificate,
};
use chrono::{DateTime, Utc};

use super::limits::{self, Due};
use super::site_names;
use crate::acme::dns::{NameCheck, Resolved};
use crate::acme::{AcmeConfig, AcmeError, Ca};
use crate::error::{ApiError, ApiResult};
use crate::service::Service;

/// How long an order waits for the site's nodes to hold its challenges' answers.
const NODES_TAKE_WITHIN: Duration = Duration::from_secs(60);
/// A name that points elsewhere is looked at again after this long.
const NAME_RECHECK: chrono::Duration = chrono::Duration::minutes(5);

fn audit(request: &str) -> AuditContext {
    AuditContext::new("system:acme", request)
}

/// What one run of the certificates task did.
#[derive(Debug, Default)]
pub struct CertificateRun {
    pub issued: usize,
    pub failed: usize,
    pub held: usize,
    pub pointing_elsewhere: usize,
}

impl CertificateRun {
    pub fn is_empty(&self) -> bool {
        self.issued + self.failed + self.held + self.pointing_elsewhere == 0
    }
}

impl std::fmt::Display for CertificateRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "issued {} certificates; {} orders failed; {} held by the CA's limits; {} sites' \
             names point elsewhere",
            self.issued, self.failed, self.held, self.pointing_elsewhere
        )
    }
}

/// Where a site's names must lead: its node's public addresses and its dedicated ones.
type Expected = BTreeMap<SiteId, BTreeSet<IpAddr>>;

/// One outcome of an order.
enum Outcome {
    Issued,
    Failed,
    Elsewhere,
    /// The CA asked the account to wait: the run stops.
    RateLimited,
}

impl Service {
    /// The account at the co-op's CA: reached once per process, made (and kept, sealed) the
    /// first time.
    pub(crate) async fn ca(&self) -> ApiResult<Ca> {
        let config = self.config().acme.as_ref().ok_or(ApiError::Unavailable(
            "this panel has no ACME CA: start it with --acme-directory",
        ))?;
        let mut held = self.0.ca.lock().await;
        if let Some(ca) = held.as_ref() {
            return Ok(ca.clone());
        }
        let keyring = &self.config().secrets;
        let kept = self.store().acme_account(&config.directory).await?;
        let credentials = kept
            .map(|account| keyring.open(&account.sealed))
            .transpose()
            .map_err(|error| {
                tracing::error!(%error, "the ACME account does not open");
                ApiError::Unavailable("the panel cannot open its ACME account: see the log")
            })?;
        let (ca, made) = Ca::connect(config, credentials.as_deref())
            .await
            .map_err(|error| ApiError::Upstream(format!("the ACME CA: {error}")))?;
        if let Some(credentials) = made {
            let sealed = keyring
                .seal(&credentials)
                .map_err(crate::service::secrets::unavailable)?;
            self.store()
                .put_acme_account(&audit("acme-account"), &config.directory, &sealed)
                .await?;
        }
        *held = Some(ca.clone());
        Ok(ca)
    }

    /// Keeps the generation a node reports holding, and wakes orders waiting on it.
    pub(crate) fn note_reported_generation(&self, node: NodeId, generation: Option<u64>) {
        let Some(generation) = generation else { return };
        self.0
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node, generation);
        self.0.report_seen.notify_waiters();
    }

    fn reported_generation(&self, node: NodeId) -> u64 {
        self.0
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&node)
            .copied()
            .unwrap_or(0)
    }

    /// Whether every node reported holding at least its generation, within `within`.
    async fn nodes_hold(&self, wanted: &[(NodeId, u64)], within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.0.report_seen.notified();
            tokio::pin!(seen);
            seen.as_mut().enable();
            if wanted
                .iter()
                .all(|(node, generation)| self.reported_generation(*node) >= *generation)
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout_at(deadline, seen).await;
        }
    }

    /// Orders what is due, under the CA's limits, one queue per registered domain (several
    /// domains at once), and asks the CA again for renewal windows that are due.
    pub async fn run_certificates(&self) -> ApiResult<CertificateRun> {
        let mut run = CertificateRun::default();
        let Some(config) = self.config().acme.clone() else {
            return Ok(run);
        };
        let now = self.now();
        if let Some(account) = self.store().acme_account(&config.directory).await?
            && account.backoff_until.is_some_and(|until| until > now)
        {
            return Ok(run);
        }
        let ca = self.ca().await?;
        self.refresh_renewal_windows(&ca).await?;
        let sites = self.all_sites().await?;
        let (due, expected) = self.due(&sites).await?;
        if due.is_empty() {
            return Ok(run);
        }
        let events = self
            .store()
            .acme_events_since(now - chrono::Duration::days(8))
            .await?;
        let admitted = limits::admit(due, &events, &config.limits, now);
        for held in &admitted.held {
            self.store()
                .note_acme_problem(held.site, Some(&held.reason), Some(held.until))
                .await?;
        }
        run.held = admitted.held.len();
        let check = Arc::new(NameCheck::new(config.resolver).map_err(|error| {
            tracing::error!(%error, "no DNS resolver for the names' check");
            ApiError::Unavailable("the panel has no DNS resolver: see the log")
        })?);
        let expected = Arc::new(expected);
        let permits = Arc::new(tokio::sync::Semaphore::new(config.limits.parallel.max(1)));
        let mut queues = tokio::task::JoinSet::new();
        for queue in admitted.queues {
            let (service, ca, check, expected, permits, config) = (
                self.clone(),
                ca.clone(),
                check.clone(),
                expected.clone(),
                permits.clone(),
                config.clone(),
            );
            queues.spawn(async move {
                let mut outcomes = Vec::new();
                // One order at a time per registered domain.
                for due in queue {
                    let Ok(_permit) = permits.acquire().await else {
                        break;
                    };
                    let outcome = service
                        .order_one(&ca, &config, &check, &expected, due)
                        .await;
                    let stop = matches!(outcome, Ok(Outcome::RateLimited));
                    outcomes.push(outcome);
                    if stop {
                        permits.close();
                        break;
                    }
                }
                outcomes
            });
        }
        while let Some(outcomes) = queues.join_next().await {
            for outcome in outcomes.unwrap_or_default() {
                match outcome {
                    Ok(Outcome::Issued) => run.issued += 1,
                    Ok(Outcome::Failed | Outcome::RateLimited) => run.failed += 1,
                    Ok(Outcome::Elsewhere) => run.pointing_elsewhere += 1,
                    Err(error) => {
                        tracing::warn!(%error, "an order could not be recorded");
                        run.failed += 1;
                    }
                }
            }
        }
        if run.issued > 0 {
            self.tell_nodes();
        }
        Ok(run)
    }

    /// The sites whose certificate is due, and where each one's names must lead.
    async fn due(&self, sites: &[Site]) -> ApiResult<(Vec<Due>, Expected)> {
        let now = self.now();
        let certificates: BTreeMap<SiteId, StoredCertificate> = self
            .store()
            .certificates()
            .await?
            .into_iter()
            .map(|c| (c.site_id, c))
            .collect();
        let waiting: BTreeMap<SiteId, DateTime<Utc>> = self
            .store()
            .acme_statuses()
            .await?
            .into_iter()
            .filter_map(|s| Some((s.site_id, s.retry_at?)))
            .collect();
        let store = self.store();
        let nodes: BTreeMap<NodeId, Node> = crate::api::every(|page| {
            Box::pin(async move { store.nodes().list(&NodeFilter::default(), &page).await })
        })
        .await?
        .into_iter()
        .map(|node| (node.id, node))
        .collect();
        let mut dedicated: BTreeMap<SiteId, Vec<IpAddr>> = BTreeMap::new();
        for allocation in self.store().ip_allocations().await? {
            if let Some(site) = allocation.site_id {
                dedicated.entry(site).or_default().push(allocation.address);
            }
        }
        let mut due = Vec::new();
        let mut expected = Expected::new();
        for site in sites {
            let Some(node) = site.node_id.and_then(|id| nodes.get(&id)) else {
                continue;
            };
            if !site.https.acme || waiting.get(&site.id).is_some_and(|at| *at > now) {
                continue;
            }
            // HTTP-01 cannot prove a wildcard: those wait for DNS-01.
            let names: Vec<String> = site_names(site)
                .into_iter()
                .filter(|n| !n.starts_with("*."))
                .collect();
            if names.is_empty() {
                continue;
            }
            let current = certificates.get(&site.id);
            if current.is_some_and(|c| c.source == CertificateSource::Uploaded) {
                continue;
            }
            let same_names = |c: &StoredCertificate| {
                c.names.iter().collect::<BTreeSet<_>>() == names.iter().collect::<BTreeSet<_>>()
            };
            let renewal = match current {
                None => None,
                // A name no longer on the site is never renewed: a new order for the names
                // it has now.
                Some(c) if !same_names(c) => None,
                Some(c) if c.renew_at.is_none_or(|at| at <= now) => Some(c),
                Some(_) => continue,
            };
            expected.insert(
                site.id,
                node.public_addresses
                    .iter()
                    .chain(dedicated.get(&site.id).into_iter().flatten())
                    .copied()
                    .collect(),
            );
            due.push(Due {
                site: site.id,
                domain: self.config().public_suffixes.registered_domain(&names[0]),
                names,
                replaces: renewal.map(|c| c.chain_pem.clone()),
                replaces_known_to_ca: renewal.is_some_and(|c| c.ari_next.is_some()),
                urgency: renewal.map_or(now, |c| c.not_after),
            });
        }
        Ok((due, expected))
    }

    /// One site's order, from the check of its names to its certificate kept.
    async fn order_one(
        &self,
        ca: &Ca,
        config: &AcmeConfig,
        check: &NameCheck,
        expected: &Expected,
        due: Due,
    ) -> ApiResult<Outcome> {
        let site = due.site;
        let empty = BTreeSet::new();
        let wanted = expected.get(&site).unwrap_or(&empty);
        if let Some(problem) = names_elsewhere(check, &due.names, wanted).await {
            self.store()
                .note_acme_problem(site, Some(&problem), Some(self.now() + NAME_RECHECK))
                .await?;
            return Ok(Outcome::Elsewhere);
        }
        let ctx = audit(&format!("acme-{site}"));
        self.store()
            .record_acme_events(
                AcmeEventKind::Order,
                std::slice::from_ref(&config.directory),
            )
            .await?;
        let replaces = due.replaces.as_deref().filter(|_| due.replaces_known_to_ca);
        let pending = match ca.order(&due.names, replaces).await {
            Ok(pending) => pending,
            Err(error) => return self.order_failed(&ctx, config, site, error).await,
        };
        let bumped = self
            .store()
            .start_order(&ctx, site, &due.names, &pending.challenges)
            .await?;
        self.tell_nodes();
        if !pending.challenges.is_empty() && !self.nodes_hold(&bumped, NODES_TAKE_WITHIN).await {
            let error = AcmeError::Ca(
                "the site's node did not take the challenge's answer within a minute (is its \
                 agent running?)"
                    .into(),
            );
            return self.order_failed(&ctx, config, site, error).await;
        }
        let issued = match ca.complete(pending).await {
            Ok(issued) => issued,
            Err(error) => return self.order_failed(&ctx, config, site, error).await,
        };
        let info = crate::certificates::describe(&issued.chain_pem)
            .ok_or_else(|| ApiError::Upstream("the CA's certificate does not read".into()))?;
        let seed = site.0.as_u128() as u64;
        let mut renewal = renew_at(info.not_before, info.not_after, seed);
        let mut ari_next = None;
        if let Ok(Some(window)) = ca.renewal_window(&issued.chain_pem).await {
            renewal = in_window(window.start, window.end, seed);
            ari_next = Some(
                self.now() + chrono::Duration::from_std(window.ask_again_after).unwrap_or_default(),
            );
        }
        let key_sealed = self
            .config()
            .secrets
            .seal(&issued.key_pem)
            .map_err(crate::service::secrets::unavailable)?;
        let certificate = StoredCertificate {
            site_id: site,
            source: CertificateSource::Acme,
            chain_pem: issued.chain_pem,
            key_sealed,
            names: info.names,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            issued_at: self.now(),
            renew_at: Some(renewal),
            ari_next,
        };
        let action = if due.replaces.is_some() {
            "certificate.renew"
        } else {
            "certificate.issue"
        };
        self.store()
            .put_certificate(&ctx, &certificate, action)
            .await?;
        self.store()
            .record_acme_events(AcmeEventKind::Issued, &[due.domain])
            .await?;
        self.tell_nodes();
        Ok(Outcome::Issued)
    }

    /// Records a failed order on its site (audited), and when it is tried again: after the
    /// CA's Retry-After (the whole account waits), else backing off with each failure. Names
    /// that failed their validation count against the CA's hourly limit.
    async fn order_failed(
        &self,
        ctx: &AuditContext,
        config: &AcmeConfig,
        site: SiteId,
        error: AcmeError,
    ) -> ApiResult<Outcome> {
        let now = self.now();
        let failures = self
            .store()
            .acme_statuses()
            .await?
            .into_iter()
            .find(|s| s.site_id == site)
            .map_or(0, |s| s.failures);
        let (retry_at, outcome) = match &error {
            AcmeError::RateLimited { until, .. } => {
                self.store()
                    .set_acme_backoff(&config.directory, *until)
                    .await?;
                (*until, Outcome::RateLimited)
            }
            AcmeError::Validation { failed } => {
                let names: Vec<String> = failed.iter().map(|(name, _)| name.clone()).collect();
                self.store()
                    .record_acme_events(AcmeEventKind::Failed, &names)
                    .await?;
                (retry_after_failures(now, failures + 1), Outcome::Failed)
            }
            _ => (retry_after_failures(now, failures + 1), Outcome::Failed),
        };
        tracing::warn!(%site, %error, %retry_at, "an ACME order failed");
        self.store()
            .fail_order(ctx, site, &error.to_string(), retry_at)
            .await?;
        self.tell_nodes();
        Ok(outcome)
    }

    /// Asks the CA again for the renewal windows that are due to be asked (RFC 9773: at its
    /// Retry-After); a window that moved earlier (a revocation coming) moves the renewal.
    async fn refresh_renewal_windows(&self, ca: &Ca) -> ApiResult<()> {
        let now = self.now();
        for certificate in self.store().certificates().await? {
            if certificate.source != CertificateSource::Acme
                || certificate.ari_next.is_none_or(|at| at > now)
            {
                continue;
            }
            let seed = certificate.site_id.0.as_u128() as u64;
            match ca.renewal_window(&certificate.chain_pem).await {
                Ok(Some(window)) => {
                    let renewal = in_window(window.start, window.end, seed);
                    let next = now
                        + chrono::Duration::from_std(window.ask_again_after).unwrap_or_default();
                    self.store()
                        .set_renewal(certificate.site_id, renewal, Some(next))
                        .await?;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(site = %certificate.site_id, %error, "the CA's renewal information");
                }
            }
        }
        Ok(())
    }
}

/// Why the names do not all lead to the site, if they do not.
async fn names_elsewhere(
    check: &NameCheck,
    names: &[String],
    expected: &BTreeSet<IpAddr>,
) -> Option<String> {
    let listed = || {
        expected
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problems = Vec::new();
    for name in names {
        match check.check(name, expected).await {
            Ok(Resolved::Here) => {}
            Ok(Resolved::Elsewhere(found)) => problems.push(format!(
                "{name} points to {}, not to this site's node ({})",
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                listed()
            )),
            Ok(Resolved::Nowhere) => problems.push(format!("{name} has no address in DNS")),
            Err(error) => problems.push(format!("{name} could not be looked up: {error}")),
        }
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}: no certificate is ordered until the names lead here",
            problems.join("; ")
        )
    })
}
