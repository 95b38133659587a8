//! Node agents: join tokens (issued here only), enrolment and renewal of their certificates,
//! each node's desired state, and what their reports change.

use alveole_model::{DesiredState, NodeId, NodeReport, Site, SiteId, SiteSpec};
use alveole_store::{AuditContext, Change, NodeDesired, StoreError};
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::Service;
use crate::auth;
use crate::background::Task;
use crate::error::{ApiError, ApiResult};
use crate::tls::{AgentCertificate, AgentIssuer, SigningRequest};

/// How long a join token can be used.
const JOIN_TOKEN_LIFETIME: Duration = Duration::hours(24);

/// The longest an agent may wait for a newer desired state.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// The port agents listen on for other agents by default (the agent's `--peer-listen`).
pub const PEER_PORT: u16 = 8444;

/// A one-time token to enrol a node's agent, and the command to run on the node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JoinToken {
    pub join_token: String,
    pub expires_at: DateTime<Utc>,
    pub command: String,
}

/// A node as its agent last described it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeStatusView {
    /// False once the last report is older than the panel's `node-unreachable-after` delay.
    pub reachable: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub report: Option<NodeReport>,
    /// What needs someone's attention (a volume over its quota, ...).
    pub alerts: Vec<Alert>,
}

/// Something about a site that needs attention.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Alert {
    pub site_id: alveole_model::SiteId,
    /// `volume_over_quota`.
    pub kind: String,
    pub message: String,
}

/// Sites of the report whose measured volume, or one of whose databases, exceeds its quota.
pub fn volume_alerts(report: &NodeReport, sites: &[Site]) -> Vec<Alert> {
    use alveole_model::quantity::format_bytes;
    let mut alerts = Vec::new();
    for observed in &report.sites {
        let Some(site) = sites.iter().find(|s| s.id == observed.site_id) else {
            continue;
        };
        if let Some(used) = observed.volume_bytes
            && used > site.volume.quota_bytes
        {
            alerts.push(Alert {
                site_id: site.id,
                kind: "volume_over_quota".into(),
                message: format!(
                    "{} uses {} of its {} volume",
                    site.primary_domain,
                    format_bytes(used),
                    format_bytes(site.volume.quota_bytes)
                ),
            });
        }
        for db in &site.databases {
            let Some(&used) = observed.database_bytes.get(&db.name) else {
                continue;
            };
            if used > db.quota_bytes {
                alerts.push(Alert {
                    site_id: site.id,
                    kind: "database_over_quota".into(),
                    message: format!(
                        "{}'s database {} uses {} of its {} quota",
                        site.primary_domain,
                        db.name,
                        format_bytes(used),
                        format_bytes(db.quota_bytes)
                    ),
                });
            }
        }
    }
    alerts
}

/// Whether a node last seen at `last_seen` still counts as reachable at `now`.
pub fn reachable(
    last_seen: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    after: std::time::Duration,
) -> bool {
    let after = Duration::from_std(after).unwrap_or(Duration::MAX);
    last_seen.is_some_and(|seen| now.signed_duration_since(seen) <= after)
}

/// The whole document a node's agent applies: its sites, addresses, filter, moves and the
/// volumes it may remove, from one read of the store.
pub fn assemble(
    node: NodeId,
    desired: &NodeDesired,
    offers: &[alveole_model::DatabaseOffer],
) -> DesiredState {
    let moves = super::site_moves::moves_for(node, desired);
    let mut purge_volumes = desired.purges.clone();
    purge_volumes.extend(moves.drop_volumes);
    purge_volumes.sort();
    purge_volumes.dedup();
    let served: std::collections::BTreeMap<_, _> = desired
        .sites
        .iter()
        .chain(desired.moving_sites.values())
        .map(|site| (site.id, site))
        .collect();
    let mut sites = super::backups::with_backups(desired.specs(), &desired.sites, &desired.backups);
    super::certificates::with_certificates(&mut sites, &served, &desired.certificates);
    with_admission(&mut sites, &served, &desired.admission_keys);
    super::databases::with_databases(&mut sites, &served, offers);
    let mut moves_in = moves.incoming;
    for incoming in &mut moves_in {
        let site = std::slice::from_mut(&mut incoming.site);
        super::certificates::with_certificates(site, &served, &desired.certificates);
        with_admission(site, &served, &desired.admission_keys);
        super::databases::with_databases(site, &served, offers);
    }
    DesiredState {
        node_id: node,
        generation: desired.generation,
        sites,
        purge_volumes,
        addresses: desired.addresses.clone(),
        input_filter: desired.input_filter.clone(),
        moves_out: moves.outgoing,
        moves_in,
        vault: super::backups::vault_spec(&desired.backups),
        restores: super::backups::restore_orders(&desired.backups),
        drills: super::drills::drill_orders(&desired.backups, offers),
        acme_challenges: desired.challenges.clone(),
    }
}

/// Each site's admission limits, with its opened key: the same key on every node the site
/// runs on, so that its visitors keep their places and admissions through a move. A site
/// without its key yet (made just after its write) is served unprotected until it has one.
fn with_admission(
    specs: &mut [SiteSpec],
    served: &std::collections::BTreeMap<SiteId, &Site>,
    keys: &std::collections::BTreeMap<SiteId, String>,
) {
    for spec in specs {
        let (Some(site), Some(key)) = (served.get(&spec.site_id), keys.get(&spec.site_id)) else {
            continue;
        };
        spec.admission = site.admission.for_node(
            site.limits.cpu_millis,
            alveole_model::backup::WireSecret(key.clone()),
        );
    }
}

impl Service {
    /// A one-time join token for `node`'s agent, and the command that enrols it: the agents'
    /// address (or `https://<host>`, the address the admin reached the panel at) and the CA's
    /// fingerprint to pin.
    pub async fn issue_join_token(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        host: Option<&str>,
    ) -> ApiResult<JoinToken> {
        let joining = self.store().nodes().get(node).await?;
        let token = auth::new_token("alj_");
        let expires_at = self.now() + JOIN_TOKEN_LIFETIME;
        self.store()
            .create_join_token(ctx, node, &auth::hash_token(&token), expires_at)
            .await?;
        let config = self.config();
        let url = config
            .agent_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", host.unwrap_or("PANEL")));
        let pin = config
            .agent_tls
            .as_ref()
            .map(|tls| format!(" --panel-ca-sha256 {}", tls.ca.fingerprint))
            .unwrap_or_default();
        // Everything the node needs to take part in moves: the agent listens for other
        // agents by default; they are told where to reach it and its ingress.
        let reached = joining
            .public_addresses
            .first()
            .map(|ip| {
                format!(
                    " --peer-advertise {} --ingress-advertise {}",
                    std::net::SocketAddr::new(*ip, PEER_PORT),
                    std::net::SocketAddr::new(*ip, 80)
                )
            })
            .unwrap_or_else(|| {
                " --peer-advertise ADDRESS:8444 --ingress-advertise ADDRESS:80".to_owned()
            });
        let command = format!(
            "alveole agent --panel-url {url}{pin} --join-token {token} --state-dir \
             /var/lib/alveole --peer-listen 0.0.0.0:{PEER_PORT}{reached}"
        );
        Ok(JoinToken {
            join_token: token,
            expires_at,
            command,
        })
    }

    /// The issuer of agents' certificates: without an agent listener, the panel enrols nobody.
    fn agent_issuer(&self) -> ApiResult<&AgentIssuer> {
        self.config()
            .agent_tls
            .as_ref()
            .map(|tls| tls.issuer.as_ref())
            .ok_or(ApiError::Unavailable(
                "this panel serves no agents: start it with --agent-listen",
            ))
    }

    fn issue(&self, node: NodeId, request: &SigningRequest) -> ApiResult<AgentCertificate> {
        self.agent_issuer()?
            .issue(node, request, self.now())
            .map_err(|error| {
                tracing::error!(%error, %node, "could not sign an agent certificate");
                ApiError::Unavailable("the panel could not sign the certificate")
            })
    }

    /// Trades a join token and a signing request for the node's first certificate.
    pub async fn enroll(
        &self,
        request_id: &str,
        join_token: &str,
        csr_pem: &str,
    ) -> ApiResult<AgentCertificate> {
        self.agent_issuer()?;
        let signing = signing_request(csr_pem)?;
        let ctx = AuditContext::new("agent:enrolment", request_id);
        let node = self
            .store()
            .enroll_agent(
                &ctx,
                &auth::hash_token(join_token.trim()),
                signing.key_hash(),
                self.now(),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => ApiError::Unauthorized,
                other => other.into(),
            })?;
        self.issue(node, &signing)
    }

    /// A fresh certificate for the calling agent's key (the one on record). A new key means a
    /// new enrolment, so that a stolen certificate cannot become a lasting credential for
    /// another key.
    pub async fn renew(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        csr_pem: &str,
    ) -> ApiResult<AgentCertificate> {
        self.agent_issuer()?;
        self.refuse_fenced(node).await?;
        let signing = signing_request(csr_pem)?;
        if self.store().node_for_agent_key(signing.key_hash()).await? != Some(node) {
            return Err(ApiError::field(
                "csr_pem",
                "other_key",
                "the request is for another key than this node's: enrol again to change keys",
            ));
        }
        let certificate = self.issue(node, &signing)?;
        let change = Change {
            action: "node.certificate_renew",
            target_kind: "node",
            target_id: node.to_string(),
            before: None,
            after: Some(serde_json::json!({"not_after": certificate.not_after})),
        };
        self.store().record_action(ctx, change).await?;
        Ok(certificate)
    }

    /// The node's desired state, secrets included (only its own agent gets it). With `after`,
    /// answers as soon as the generation is newer, or after `wait` (long poll). Changes made
    /// through this process wake the wait at once; others (another panel process, the command
    /// line on the database) are seen within a second.
    pub async fn desired_state(
        &self,
        node: NodeId,
        after: Option<u64>,
        wait: std::time::Duration,
    ) -> ApiResult<DesiredState> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut desired = self.store().desired_state(node).await?;
            let newer = after.is_none_or(|after| desired.generation > after);
            if newer || tokio::time::Instant::now() >= deadline {
                // Only here do secrets leave sealed: to the node's own agent.
                for site in desired
                    .sites
                    .iter_mut()
                    .chain(desired.moving_sites.values_mut())
                {
                    self.open_env(site)?;
                }
                for (_, site) in desired.backups.drills.iter_mut() {
                    self.open_env(site)?;
                }
                self.open_site_keys(&mut desired.backups.keys)?;
                self.open_site_keys(&mut desired.admission_keys)?;
                self.open_certificate_keys(&mut desired.certificates)?;
                return Ok(assemble(node, &desired, &self.config().databases));
            }
            let recheck =
                (tokio::time::Instant::now() + std::time::Duration::from_secs(1)).min(deadline);
            let _ = tokio::time::timeout_at(recheck, changed).await;
        }
    }

    /// A node's report after a pass: site phases move as it says (audited), the rest is kept
    /// as the node's last status. An address it was told to let go may now go to its new
    /// node; a forwarding period may have ended.
    pub async fn report(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        report: &NodeReport,
    ) -> ApiResult<()> {
        self.refuse_fenced(node).await?;
        let drills_ending = self.drills_ending(report).await;
        self.record_traffic(node, report).await;
        self.store()
            .record_node_report(ctx, node, report, self.now())
            .await?;
        self.note_reported_generation(node, report.generation);
        self.advance_address_moves(node, report).await;
        self.record_backup_sizes(report).await;
        self.record_restore_times(&drills_ending).await;
        self.poke(Task::Forwardings);
        Ok(())
    }

    /// A fenced node's agent is told only that it runs nothing: its reports and renewals
    /// are refused.
    pub(crate) async fn refuse_fenced(&self, node: NodeId) -> ApiResult<()> {
        if self
            .store()
            .fenced_nodes()
            .await?
            .iter()
            .any(|(fenced, _)| *fenced == node)
        {
            return Err(ApiError::Forbidden(
                "this node is fenced: it was declared lost and its sites were recovered \
                 elsewhere, so it runs nothing; delete it and add it again to use the machine",
            ));
        }
        Ok(())
    }

    /// What the node's agent last reported, and whether the node is reachable.
    pub async fn node_status(&self, node: NodeId) -> ApiResult<NodeStatusView> {
        self.store().nodes().get(node).await?;
        let status = self.store().node_status(node).await?;
        let last_seen = status.as_ref().map(|s| s.reported_at);
        let alerts = match &status {
            Some(status) => volume_alerts(
                &status.report,
                &self.store().desired_state(node).await?.sites,
            ),
            None => vec![],
        };
        Ok(NodeStatusView {
            reachable: reachable(last_seen, self.now(), self.config().node_unreachable_after),
            last_seen,
            report: status.map(|s| s.report),
            alerts,
        })
    }
}

fn signing_request(pem: &str) -> ApiResult<SigningRequest> {
    SigningRequest::parse(pem)
        .map_err(|e| ApiError::field("csr_pem", "certificate_request", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_unreachable_once_silent_longer_than_the_delay() {
        let now = Utc::now();
        let minute = std::time::Duration::from_secs(60);
        assert!(reachable(Some(now - Duration::seconds(59)), now, minute));
        assert!(!reachable(Some(now - Duration::seconds(61)), now, minute));
        assert!(!reachable(None, now, minute), "never seen");
    }
}
