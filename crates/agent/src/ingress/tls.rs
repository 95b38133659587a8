//! HTTPS in the ingress: each site's certificate (from its node's document) chosen by the name
//! the client asks for (SNI), exact or by one wildcard level as routes are; and which names
//! redirect plain HTTP to HTTPS (the ACME challenge path excepted, so that a renewal's
//! challenge is answered over HTTP).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use alveole_model::{AcmeChallenge, SiteSpec};
use hyper::header::HeaderValue;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::routes::Routes;

/// Where an ACME CA asks for HTTP-01 challenge answers: never redirected.
pub const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The certificates the ingress serves, the names whose plain HTTP goes to HTTPS, their
/// HSTS headers, and the answers to ACME challenges while orders run.
#[derive(Debug, Default)]
pub struct Certificates {
    by_name: RwLock<Arc<Routes<Arc<CertifiedKey>>>>,
    redirects: RwLock<Arc<Routes<()>>>,
    hsts: RwLock<Arc<Routes<HeaderValue>>>,
    challenges: RwLock<Arc<HashMap<String, String>>>,
}

impl Certificates {
    /// Replaces every certificate from the sites' specs; a certificate that does not load is
    /// left out (its site is served over plain HTTP only) and said in the returned warnings.
    pub fn set(&self, specs: &[SiteSpec]) -> Vec<String> {
        let mut by_name = Routes::default();
        let mut redirects = Routes::default();
        let mut hsts = Routes::default();
        let mut warnings = Vec::new();
        for spec in specs {
            let Some(tls) = &spec.tls else { continue };
            match certified_key(&tls.chain_pem, &tls.key_pem.0) {
                Ok(key) => {
                    let key = Arc::new(key);
                    let header = (tls.hsts_seconds > 0)
                        .then(|| {
                            HeaderValue::from_str(&format!("max-age={}", tls.hsts_seconds)).ok()
                        })
                        .flatten();
                    for name in &spec.hostnames {
                        by_name.insert(name, key.clone());
                        if tls.redirect {
                            redirects.insert(name, ());
                        }
                        if let Some(header) = &header {
                            hsts.insert(name, header.clone());
                        }
                    }
                }
                Err(error) => warnings.push(format!(
                    "the certificate of {} does not load: {error}",
                    spec.hostnames
                        .first()
                        .map_or_else(|| spec.site_id.to_string(), |h| h.to_string())
                )),
            }
        }
        *self
            .by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(by_name);
        *self
            .redirects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(redirects);
        *self
            .hsts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(hsts);
        warnings
    }

    /// Replaces the answers to ACME challenges.
    pub fn set_challenges(&self, challenges: &[AcmeChallenge]) {
        let answers = challenges
            .iter()
            .map(|c| (c.token.clone(), c.key_authorization.clone()))
            .collect();
        *self
            .challenges
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(answers);
    }

    /// The answer to the ACME challenge at `path`, when it is one the panel gave. Others go to
    /// the site (it may run its own ACME client).
    pub fn challenge_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(ACME_CHALLENGE_PATH)?;
        self.challenges
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// The `Strict-Transport-Security` header of `host`'s HTTPS answers, if its site asks.
    pub fn hsts(&self, host: &str) -> Option<HeaderValue> {
        self.hsts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lookup(host)
            .cloned()
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lookup(name)
            .cloned()
    }

    /// Whether a plain HTTP request for `host` at `path` goes to HTTPS instead.
    pub fn redirects(&self, host: &str, path: &str) -> bool {
        !path.starts_with(ACME_CHALLENGE_PATH)
            && self
                .redirects
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .lookup(host)
                .is_some()
    }

    /// The TLS configuration of the ingress's HTTPS listener: these certificates, by SNI,
    /// with ring (whatever provider the process installed), and session tickets.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Returning clients resume with a ticket (stateless, keys rotated by rustls) rather
        // than pay a full handshake again.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Arc::new(config))
    }
}

/// Chooses the certificate by the name the client asks for; none (no name, or a name no site
/// has a certificate for): the handshake fails.
#[derive(Debug)]
struct BySni(Arc<Certificates>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lookup(hello.server_name()?)
    }
}

/// A certificate chain and its key, as rustls signs with them.
fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the chain: {e}"))?;
    if chain.is_empty() {
        return Err("the chain holds no certificate".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("the key is not the certificate's: {e}"))?;
    Ok(certified)
}
