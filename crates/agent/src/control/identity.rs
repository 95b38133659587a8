//! The agent's identity: a private key it made and never sends anywhere, and a short-lived
//! certificate for that key from the panel's CA. The certificate authenticates the agent to
//! the panel (and, for site moves, to other agents); the agent renews it at half its life.

use std::path::Path;

use alveole_model::NodeId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::files::{StateDir, StateFiles};
use crate::control::panel::{AgentError, PanelClient};

/// What the panel answers to an enrolment or a renewal.
#[derive(Clone, Debug, Deserialize)]
pub struct IssuedCertificate {
    pub node_id: NodeId,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// What an enrolled agent keeps on disk (`credential.json`, mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    pub node_id: NodeId,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    key_pem: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("node_id", &self.node_id)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A key made for an enrolment, and the signing request that asks the panel to certify it.
#[derive(Debug)]
pub struct NewKey {
    key_pem: String,
    pub csr_pem: String,
}

impl NewKey {
    /// A new ECDSA P-256 key.
    pub fn generate() -> Result<Self, AgentError> {
        let key = rcgen::KeyPair::generate()?;
        let csr_pem = signing_request(&key)?;
        Ok(Self {
            key_pem: key.serialize_pem(),
            csr_pem,
        })
    }

    /// The credential made of this key and the certificate the panel issued for it.
    pub fn certified(self, issued: IssuedCertificate) -> Credential {
        Credential {
            node_id: issued.node_id,
            certificate_pem: issued.certificate_pem,
            not_before: issued.not_before,
            not_after: issued.not_after,
            key_pem: self.key_pem,
        }
    }
}

/// A signing request for `key`: its subject does not matter, the panel decides what the
/// certificate says.
fn signing_request(key: &rcgen::KeyPair) -> Result<String, AgentError> {
    let request = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(key)?;
    Ok(request.pem()?)
}

impl Credential {
    /// Once half the certificate's life has passed.
    pub fn renewal_due(&self, now: DateTime<Utc>) -> bool {
        now >= self.not_before + (self.not_after - self.not_before) / 2
    }

    /// A signing request for the key this credential holds (renewal keeps the key).
    pub fn signing_request(&self) -> Result<String, AgentError> {
        signing_request(&rcgen::KeyPair::from_pem(&self.key_pem)?)
    }

    /// The same key with a new certificate.
    pub fn renewed(&self, issued: IssuedCertificate) -> Credential {
        Credential {
            node_id: issued.node_id,
            certificate_pem: issued.certificate_pem,
            not_before: issued.not_before,
            not_after: issued.not_after,
            key_pem: self.key_pem.clone(),
        }
    }

    /// The certificate and key as rustls uses them (the peer endpoint serves with them).
    pub fn tls_material(
        &self,
    ) -> Result<
        (
            Vec<rustls::pki_types::CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        ),
        rustls::pki_types::pem::Error,
    > {
        use rustls::pki_types::pem::PemObject;
        let certificates =
            rustls::pki_types::CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        Ok((certificates, key))
    }

    /// Certificate and key in one PEM buffer, as a TLS client identity.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.certificate_pem, self.key_pem)
    }

    /// Keeps the credential in the state directory (`credential.json`, replaced whole, mode
    /// 0600): a crash leaves the old credential or the new one, never half of one.
    pub fn save(&self, files: &dyn StateFiles) -> Result<(), AgentError> {
        let text = serde_json::to_vec(self).map_err(|source| AgentError::Credential {
            path: files.locate(FILE),
            source,
        })?;
        files.write(FILE, &text).map_err(|source| AgentError::Io {
            path: files.locate(FILE),
            source,
        })
    }

    /// The credential kept in the state directory, if there is one.
    pub fn load(files: &dyn StateFiles) -> Result<Option<Credential>, AgentError> {
        let bytes = files.read(FILE).map_err(|source| AgentError::Io {
            path: files.locate(FILE),
            source,
        })?;
        bytes
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|source| AgentError::Credential {
                    path: files.locate(FILE),
                    source,
                })
            })
            .transpose()
    }

    /// Forgets the kept credential (it belongs to another node or CA): the agent enrols again.
    pub fn forget(files: &dyn StateFiles) -> Result<(), AgentError> {
        files.remove(FILE).map_err(|source| AgentError::Io {
            path: files.locate(FILE),
            source,
        })
    }
}

/// Where the state directory keeps the credential.
const FILE: &str = "credential.json";

/// The credential in `state_dir`, enrolling with `join_token` when there is none yet; the
/// client presents it from then on.
pub async fn credential(
    panel: &PanelClient,
    state_dir: &Path,
    join_token: Option<&str>,
) -> Result<Credential, AgentError> {
    let files = StateDir::new(state_dir);
    let credential = match Credential::load(&files)? {
        Some(credential) => credential,
        None => {
            let Some(join_token) = join_token else {
                return Err(AgentError::NotEnrolled);
            };
            let key = NewKey::generate()?;
            let issued = panel.enroll(join_token, &key.csr_pem).await?;
            let credential = key.certified(issued);
            credential.save(&files)?;
            credential
        }
    };
    panel.authenticate(&credential)?;
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Credential {
        NewKey::generate().unwrap().certified(IssuedCertificate {
            node_id: NodeId::generate(),
            certificate_pem: String::new(),
            not_before,
            not_after,
        })
    }

    #[test]
    fn renewal_is_due_at_half_life() {
        let start = Utc::now();
        let c = credential(start, start + chrono::Duration::hours(24));
        assert!(!c.renewal_due(start + chrono::Duration::hours(11)));
        assert!(c.renewal_due(start + chrono::Duration::hours(12)));
        assert!(c.renewal_due(start + chrono::Duration::hours(30)));
    }

    #[test]
    fn the_credential_is_kept_and_read_back_and_its_key_never_printed() {
        let files = crate::control::files::MemoryFiles::default();
        assert!(Credential::load(&files).unwrap().is_none());
        let c = credential(Utc::now(), Utc::now() + chrono::Duration::hours(1));
        c.save(&files).unwrap();
        let loaded = Credential::load(&files).unwrap().unwrap();
        assert_eq!(loaded.key_pem, c.key_pem);
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        assert!(c.signing_request().unwrap().contains("CERTIFICATE REQUEST"));
        files.write(FILE, b"{\"node_id\": 3}").unwrap();
        assert!(matches!(
            Credential::load(&files),
            Err(AgentError::Credential { .. })
        ));
        Credential::forget(&files).unwrap();
        assert!(Credential::load(&files).unwrap().is_none());
    }
}
