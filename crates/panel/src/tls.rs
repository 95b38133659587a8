//! The secure channel between the panel and its nodes' agents. The panel holds a small CA of
//! its own and serves agents over TLS with a certificate it signed. The join command carries
//! the CA's SHA-256 fingerprint. An agent fetches the CA once (`GET /api/v1/agent/ca`), checks
//! the fingerprint, and from then on trusts nothing else. The panel is authenticated by its
//! certificate, the agent by its credential: both ends are authenticated, without a public CA.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the panel's certificates")]
    Certificate(#[from] rcgen::Error),
    #[error("{path} does not hold what the panel wrote there")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS configuration is refused")]
    Rustls(#[from] rustls::Error),
}

/// What agents need to know of the panel's CA.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct AgentCa {
    pub ca_pem: String,
    /// SHA-256 of the CA certificate (DER), in hex: what the join command pins.
    pub fingerprint: String,
}

/// The panel's TLS material for the agent listener.
#[derive(Clone, Debug)]
pub struct PanelTls {
    pub ca: AgentCa,
    pub server: Arc<rustls::ServerConfig>,
}

/// SHA-256 of a certificate's DER, in hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// Loads the CA and the server certificate from `dir`, creating them the first time. The
/// server certificate names `hostnames` (DNS names or IP addresses); delete `server.pem` to
/// issue a new one for other names.
pub fn load_or_create(dir: &Path, hostnames: &[String]) -> Result<PanelTls, TlsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (server_pem, server_key) = (dir.join("server.pem"), dir.join("server.key"));
    let ca_params = || {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "alveole panel CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    };
    if !ca_pem.exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&ca_key, &key.serialize_pem())?;
        std::fs::write(&ca_pem, cert.pem()).map_err(io(&ca_pem))?;
    }
    if !server_pem.exists() {
        let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        // The issuer is named from the same parameters the CA certificate was made from.
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hostnames.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "alveole panel");
        let cert = params.signed_by(&key, &issuer)?;
        let _ = std::fs::remove_file(&server_key);
        write_private(&server_key, &key.serialize_pem())?;
        std::fs::write(&server_pem, cert.pem()).map_err(io(&server_pem))?;
    }
    let pem_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Pem { path, source }
    };
    let ca_text = std::fs::read_to_string(&ca_pem).map_err(io(&ca_pem))?;
    let ca_der = CertificateDer::from_pem_slice(ca_text.as_bytes()).map_err(pem_error(&ca_pem))?;
    let chain = vec![CertificateDer::from_pem_file(&server_pem).map_err(pem_error(&server_pem))?];
    let key = PrivateKeyDer::from_pem_file(&server_key).map_err(pem_error(&server_key))?;
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(PanelTls {
        ca: AgentCa {
            fingerprint: fingerprint(&ca_der),
            ca_pem: ca_text,
        },
        server: Arc::new(server),
    })
}

/// Serves `app` over TLS on `listener`, one task per connection, until the listener fails.
pub async fn serve(
    app: axum::Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "agent connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_material_is_made_once_with_private_keys() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir =
            std::env::temp_dir().join(format!("alveole-tls-{}", uuid::Uuid::now_v7().simple()));
        let first = load_or_create(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let again = load_or_create(&dir, &["localhost".into()]).unwrap();
        assert_eq!(first.ca.fingerprint, again.ca.fingerprint, "the CA is kept");
        assert_eq!(first.ca.fingerprint.len(), 64);
        for key in ["ca.key", "server.key"] {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dir.join(key)).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
