//! The agent's side of the agent routes: enrolment, certificate renewal, the desired state and
//! reports. The client trusts only the panel's own CA (pinned at enrolment) and, once
//! enrolled, presents the node's certificate on every call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alveole_model::{DesiredState, MoveOutcome, MoveProgress, NodeReport, SiteMove, SiteMoveId};

use crate::control::identity::{Credential, IssuedCertificate};

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
    #[error(
        "{path} is not a credential of this alveole version (damaged, or from a version that used bearer credentials): move it away and enrol again with a new join token"
    )]
    Credential {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot make or use the agent's key")]
    Key(#[from] rcgen::Error),
    #[error("the agent's certificate and key are not a usable TLS identity")]
    Identity(#[source] reqwest::Error),
    #[error("not enrolled yet: pass --join-token")]
    NotEnrolled,
    #[error("moves need the panel's CA: enrol with --panel-ca-sha256")]
    NoPinnedCa,
    #[error("a rollback must reach the panel before a newer desired state")]
    RollbackUnheard,
    #[error("the panel sent no CA certificate")]
    NoCa,
    #[error(
        "the panel's CA has fingerprint {found}, not the {pinned} of the join command: not trusting it"
    )]
    OtherCa { found: String, pinned: String },
}

/// The panel as the agent's tasks call it: a narrow trait, so that the agent is tested with
/// a fake panel (`control::fake`).
#[async_trait::async_trait]
pub trait Control: Send + Sync + std::fmt::Debug {
    /// Waits (up to `wait`) for a desired state newer than generation `after`; the held one
    /// when none came.
    async fn desired_state_after(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<DesiredState, AgentError>;
    /// Sends the node's report after a pass.
    async fn report(&self, report: &NodeReport) -> Result<(), AgentError>;
    /// Tells the panel how a move this node drives is going (telemetry).
    async fn move_progress(
        &self,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> Result<(), AgentError>;
    /// Asks for a move's switch (`switch`) or reports its rollback (`fail`).
    async fn move_outcome(
        &self,
        id: SiteMoveId,
        verb: &str,
        outcome: &MoveOutcome,
    ) -> Result<SiteMove, AgentError>;
    /// A fresh certificate for the credential's key, presented from the next call on.
    async fn renewed(&self, credential: &Credential) -> Result<Credential, AgentError>;
}

/// How long one call to the panel may take (long polls included).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Talks to the panel's agent routes. Clones share one connection pool and identity, so a
/// renewed certificate is used by every clone from the next call.
#[derive(Clone, Debug)]
pub struct PanelClient {
    http: Arc<RwLock<reqwest::Client>>,
    base: String,
    /// The panel's CA, when pinned; `None` trusts the system's roots (a panel behind a TLS
    /// proxy with a public certificate).
    ca_pem: Option<String>,
}

impl PanelClient {
    /// A client that trusts only the panel's own CA when one is known: the one saved in
    /// `state_dir`, else the one the panel serves, if its SHA-256 is `pin` (from the join
    /// command; saved for every later start). With neither: the system's roots.
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
        Self::build_with(base, ca_pem)
    }

    /// A client that trusts only `ca_pem` (a caller that knows the panel's CA first-hand,
    /// such as the panel's own local agent).
    pub fn with_ca(base: &str, ca_pem: &str) -> Result<Self, AgentError> {
        Self::build_with(base, Some(ca_pem.to_owned()))
    }

    fn build_with(base: &str, ca_pem: Option<String>) -> Result<Self, AgentError> {
        let base = base.trim_end_matches('/').to_owned();
        let http = build(&base, ca_pem.as_deref(), None)?;
        Ok(Self {
            http: Arc::new(RwLock::new(http)),
            base,
            ca_pem,
        })
    }

    /// Presents `credential`'s certificate on every later call, from every clone.
    pub fn authenticate(&self, credential: &Credential) -> Result<(), AgentError> {
        let identity = reqwest::Identity::from_pem(credential.identity_pem().as_bytes())
            .map_err(AgentError::Identity)?;
        let http = build(&self.base, self.ca_pem.as_deref(), Some(identity))?;
        *self.http.write().unwrap_or_else(|e| e.into_inner()) = http;
        Ok(())
    }

    /// The panel's CA, when pinned: agents trust each other's certificates through it.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    fn http(&self) -> reqwest::Client {
        self.http.read().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// Trades a join token and a signing request for the node's first certificate.
    pub async fn enroll(
        &self,
        join_token: &str,
        csr_pem: &str,
    ) -> Result<IssuedCertificate, AgentError> {
        let response = self
            .http()
            .post(format!("{}/api/v1/agent/enroll", self.base))
            .json(&serde_json::json!({"join_token": join_token, "csr_pem": csr_pem}))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(response).await
    }

    /// The node's desired state now.
    pub async fn desired_state(&self) -> Result<DesiredState, AgentError> {
        self.desired_state_after(None, Duration::ZERO).await
    }

    /// A fresh certificate for the key of the certificate presented.
    pub async fn renew(&self, csr_pem: &str) -> Result<IssuedCertificate, AgentError> {
        let response = self
            .http()
            .post(format!("{}/api/v1/agent/certificate", self.base))
            .json(&serde_json::json!({"csr_pem": csr_pem}))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(response).await
    }
}

#[async_trait::async_trait]
impl Control for PanelClient {
    /// Sends the node's report after a pass.
    async fn report(&self, report: &NodeReport) -> Result<(), AgentError> {
        let response = self
            .http()
            .post(format!("{}/api/v1/agent/status", self.base))
            .json(report)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.checked(response).await.map(|_| ())
    }

    /// Tells the panel how a move this node drives is going (telemetry).
    async fn move_progress(
        &self,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> Result<(), AgentError> {
        let response = self
            .http()
            .post(format!(
                "{}/api/v1/agent/site-moves/{id}/progress",
                self.base
            ))
            .json(progress)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.checked(response).await.map(|_| ())
    }

    /// Asks for a move's switch (`switch`) or reports its rollback (`fail`).
    async fn move_outcome(
        &self,
        id: SiteMoveId,
        verb: &str,
        outcome: &MoveOutcome,
    ) -> Result<SiteMove, AgentError> {
        let response = self
            .http()
            .post(format!("{}/api/v1/agent/site-moves/{id}/{verb}", self.base))
            .json(outcome)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(response).await
    }

    /// Waits (up to `wait`) for a desired state newer than generation `after`.
    async fn desired_state_after(
        &self,
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
            .http()
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(response).await
    }

    async fn renewed(&self, credential: &Credential) -> Result<Credential, AgentError> {
        let issued = self.renew(&credential.signing_request()?).await?;
        let renewed = credential.renewed(issued);
        self.authenticate(&renewed)?;
        Ok(renewed)
    }
}

fn build(
    base: &str,
    ca_pem: Option<&str>,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, AgentError> {
    let unreachable = |source| AgentError::Panel {
        url: base.to_owned(),
        source,
    };
    let mut builder = reqwest::Client::builder().timeout(CALL_TIMEOUT);
    if let Some(pem) = ca_pem {
        builder = builder
            .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).map_err(unreachable)?]);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().map_err(unreachable)
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
        .timeout(CALL_TIMEOUT)
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
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| AgentError::NoCa)?;
    let fingerprint: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if fingerprint != pin.trim().to_ascii_lowercase() {
        return Err(AgentError::OtherCa {
            found: fingerprint,
            pinned: pin.to_owned(),
        });
    }
    Ok(pem)
}
