//! The co-op's ACME CA, as the panel talks to it (instant-acme, ring): the account, an order
//! in its two halves (its challenges, then, once the nodes answer them, the certificate),
//! revocation, and the CA's renewal information (RFC 9773) where it offers it.
//! What is ordered when, and the rate limits, are the service's (`service/certificates/`).

pub mod dns;
pub mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alveole_model::AcmeChallenge;
use chrono::{DateTime, Utc};
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use self::http::AcmeHttp;

/// The co-op's choices: which CA, with which contact, and how hard to press it.
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// The CA's directory URL (Let's Encrypt's, a co-op's own, pebble in tests).
    pub directory: String,
    /// `mailto:` addresses the CA may write to about the account.
    pub contact: Vec<String>,
    /// Roots to trust for the CA's own HTTPS (a test CA); unset: the system's.
    pub ca_roots: Option<PathBuf>,
    /// The DNS server the check before each order asks; unset: the system's.
    pub resolver: Option<SocketAddr>,
    /// The certificate profile asked for (`shortlived`, `tlsserver`), where the CA has one.
    pub profile: Option<String>,
    pub limits: AcmeLimits,
}

/// The CA's rate limits as the panel keeps under them (Let's Encrypt's by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcmeLimits {
    /// New orders per account per three hours.
    pub orders_per_3_hours: u32,
    /// Certificates per registered domain per week.
    pub certificates_per_domain_week: u32,
    /// Failed validations per name per hour.
    pub failures_per_name_hour: u32,
    /// Orders under way at once (one per registered domain at a time in any case).
    pub parallel: usize,
}

impl Default for AcmeLimits {
    fn default() -> Self {
        Self {
            orders_per_3_hours: 300,
            certificates_per_domain_week: 50,
            failures_per_name_hour: 5,
            parallel: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("{setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    /// The CA asked to be left alone until then (429 with Retry-After).
    #[error("the CA limits this account's requests until {until}: {detail}")]
    RateLimited {
        until: DateTime<Utc>,
        detail: String,
    },
    /// Some names failed their challenges (each with the CA's words).
    #[error("{}", .failed.iter().map(|(name, why)| format!("{name}: {why}")).collect::<Vec<_>>().join("; "))]
    Validation { failed: Vec<(String, String)> },
    #[error("{0}")]
    Ca(String),
}

/// An order whose challenges the nodes must answer before [`Ca::complete`].
pub struct PendingOrder {
    order: Order,
    pub challenges: Vec<AcmeChallenge>,
}

impl std::fmt::Debug for PendingOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOrder")
            .field("url", &self.order.url())
            .field("challenges", &self.challenges.len())
            .finish()
    }
}

/// A certificate issued: its chain and its key, in PEM.
#[derive(Debug)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// The account at the co-op's CA.
#[derive(Clone)]
pub struct Ca {
    account: Account,
    http: AcmeHttp,
    profile: Option<String>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("account", &self.account.id())
            .finish()
    }
}

/// Orders poll for up to two minutes, starting quickly (a CA validates in seconds).
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(100))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

impl Ca {
    /// The account of `credentials` (JSON, as kept), or a new one at the CA; the new
    /// credentials to keep come back with it.
    pub async fn connect(
        config: &AcmeConfig,
        credentials: Option<&str>,
    ) -> Result<(Ca, Option<String>), AcmeError> {
        let http = AcmeHttp::new(config.ca_roots.as_deref())?;
        let builder = || Account::builder_with_http(Box::new(http.clone()));
        let (account, made) = match credentials {
            Some(json) => {
                let credentials = serde_json::from_str(json).map_err(|e| {
                    AcmeError::Ca(format!("the kept ACME account does not read: {e}"))
                })?;
                let account = builder()
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| failure(&http, e))?;
                (account, None)
            }
            None => {
                let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| failure(&http, e))?;
                let json = serde_json::to_string(&credentials)
                    .map_err(|e| AcmeError::Ca(format!("the ACME account: {e}")))?;
                (account, Some(json))
            }
        };
        if let Some(profile) = &config.profile
            && !account.profiles().any(|offered| offered.name == profile)
        {
            let offered: Vec<&str> = account.profiles().map(|p| p.name).collect();
            return Err(AcmeError::Setting {
                setting: "--acme-profile",
                reason: if offered.is_empty() {
                    format!("the CA offers no profiles, so not {profile}")
                } else {
                    format!("the CA offers {}, not {profile}", offered.join(", "))
                },
            });
        }
        Ok((
            Ca {
                account,
                http,
                profile: config.profile.clone(),
            },
            made,
        ))
    }

    /// Starts an order for `names` (replacing `replaces`, a certificate in PEM: only where
    /// the CA gave renewal information for it, since a CA without ARI refuses the field):
    /// the HTTP-01 answers its pending authorizations need.
    pub async fn order(
        &self,
        names: &[String],
        replaces: Option<&str>,
    ) -> Result<PendingOrder, AcmeError> {
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut new_order = NewOrder::new(&identifiers);
        if let Some(profile) = &self.profile {
            new_order = new_order.profile(profile);
        }
        if let Some(id) = replaces.and_then(certificate_identifier) {
            new_order = new_order.replaces(id);
        }
        let mut order = self
            .account
            .new_order(&new_order)
            .await
            .map_err(|e| failure(&self.http, e))?;
        let mut challenges = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| failure(&self.http, e))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Ca(format!(
                        "the CA gave an authorization that is {other:?}"
                    )));
                }
            }
            let Some(challenge) = authorization.challenge(ChallengeType::Http01) else {
                return Err(AcmeError::Ca(
                    "the CA offers no HTTP-01 challenge for a name".into(),
                ));
            };
            challenges.push(AcmeChallenge {
                token: challenge.token.clone(),
                key_authorization: challenge.key_authorization().as_str().to_owned(),
            });
        }
        Ok(PendingOrder { order, challenges })
    }

    /// Once the nodes answer the challenges: tells the CA, waits for validation, finalises
    /// with a new key and fetches the certificate.
    pub async fn complete(&self, pending: PendingOrder) -> Result<Issued, AcmeError> {
        let mut order = pending.order;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| failure(&self.http, e))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) {
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| failure(&self.http, e))?;
            }
        }
        let status = order
            .poll_ready(&POLL)
            .await
            .map_err(|e| failure(&self.http, e))?;
        if status != OrderStatus::Ready {
            return Err(self.why_invalid(&mut order).await);
        }
        let key_pem = order.finalize().await.map_err(|e| failure(&self.http, e))?;
        let chain_pem = order
            .poll_certificate(&POLL)
            .await
            .map_err(|e| failure(&self.http, e))?;
        Ok(Issued { chain_pem, key_pem })
    }

    /// The names whose challenges failed, each with the CA's reason.
    async fn why_invalid(&self, order: &mut Order) -> AcmeError {
        let mut failed = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let Ok(mut authorization) = authorization else {
                continue;
            };
            let Ok(state) = authorization.refresh().await else {
                continue;
            };
            if state.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = state.identifier().to_string();
            let why = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref())
                .map(|problem| {
                    problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string())
                })
                .unwrap_or_else(|| format!("the authorization is {:?}", state.status));
            failed.push((name, why));
        }
        if failed.is_empty() {
            let detail = order
                .state()
                .error
                .as_ref()
                .map_or_else(|| "the order is invalid".to_owned(), ToString::to_string);
            return AcmeError::Ca(detail);
        }
        AcmeError::Validation { failed }
    }

    /// Revokes a certificate (PEM, the leaf first).
    pub async fn revoke(&self, chain_pem: &str) -> Result<(), AcmeError> {
        let leaf = leaf(chain_pem)?;
        self.account
            .revoke(&instant_acme::RevocationRequest {
                certificate: &leaf,
                reason: None,
            })
            .await
            .map_err(|e| failure(&self.http, e))
    }

    /// The window the CA suggests for renewing a certificate (PEM) and when to ask again;
    /// `None` where the CA gives no renewal information.
    pub async fn renewal_window(
        &self,
        chain_pem: &str,
    ) -> Result<Option<RenewalWindow>, AcmeError> {
        let Some(id) = certificate_identifier(chain_pem) else {
            return Ok(None);
        };
        match self.account.renewal_info(&id).await {
            Ok((info, retry)) => {
                let start = offset_to_chrono(info.suggested_window.start);
                let end = offset_to_chrono(info.suggested_window.end);
                Ok(Some(RenewalWindow {
                    start,
                    end,
                    ask_again_after: retry,
                }))
            }
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(failure(&self.http, e)),
        }
    }
}

/// A CA's suggested renewal window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// When to ask again (the CA's Retry-After).
    pub ask_again_after: Duration,
}

fn offset_to_chrono(at: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond()).unwrap_or_default()
}

fn leaf(chain_pem: &str) -> Result<CertificateDer<'static>, AcmeError> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| AcmeError::Ca("the certificate does not read".into()))
}

/// The certificate's identifier for renewal information (its AKI and serial).
fn certificate_identifier(chain_pem: &str) -> Option<CertificateIdentifier<'static>> {
    let leaf = leaf(chain_pem).ok()?;
    CertificateIdentifier::try_from(&leaf)
        .ok()
        .map(CertificateIdentifier::into_owned)
}

/// An instant-acme error in the panel's words: a 429 becomes [`AcmeError::RateLimited`] with
/// the Retry-After the client kept.
fn failure(http: &AcmeHttp, error: instant_acme::Error) -> AcmeError {
    let limited = match &error {
        instant_acme::Error::Api(problem) => {
            problem.status == Some(429)
                || problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited")
        }
        _ => false,
    };
    if limited {
        let until = http
            .take_retry_after()
            .unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(1));
        return AcmeError::RateLimited {
            until,
            detail: error.to_string(),
        };
    }
    AcmeError::Ca(error.to_string())
}
