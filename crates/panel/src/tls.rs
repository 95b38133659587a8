//! The secure channel between the panel and its nodes' agents. The panel holds a small CA of
//! its own. It serves agents over TLS with a certificate that CA signed, and the join command
//! carries the CA's SHA-256 fingerprint: an agent fetches the CA once (`GET
//! /api/v1/agent/ca`), checks the fingerprint, and from then on trusts nothing else.
//!
//! Agents authenticate with client certificates from the same CA: at enrolment the agent sends
//! a certificate signing request for a key it made and keeps (it never leaves the node); the
//! panel answers with a short-lived certificate naming the node, which the agent renews at half
//! its life. The panel keeps the SHA-256 of each node's public key, so revoking is deleting
//! that row, effective at once, without revocation lists. The same certificates let agents
//! authenticate each other without the panel (site moves).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alveole_model::NodeId;
use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// How long an agent's certificate is valid unless configured otherwise.
pub const DEFAULT_AGENT_CERTIFICATE_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);
/// Names the panel's certificate always carries, so an agent on the panel's own machine (the
/// all-in-one mode) reaches it over loopback.
const LOOPBACK_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

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
    #[error("the client certificate verifier cannot be built")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A certificate signing request that is not one.
#[derive(Debug, thiserror::Error)]
#[error("csr_pem must be a PEM-encoded PKCS#10 certificate signing request, signed by its own key")]
pub struct InvalidSigningRequest;

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
    pub issuer: Arc<AgentIssuer>,
}

/// An agent's request for a certificate: its public key, whose signature over the request
/// proves the agent holds the private key. Everything else in it is ignored: the panel alone
/// decides what the certificate says.
#[derive(Debug)]
pub struct SigningRequest {
    request: CertificateSigningRequestParams,
    key_hash: String,
}

impl SigningRequest {
    pub fn parse(pem: &str) -> Result<Self, InvalidSigningRequest> {
        let request =
            CertificateSigningRequestParams::from_pem(pem).map_err(|_| InvalidSigningRequest)?;
        let key_hash = hex(&Sha256::digest(
            request.public_key.subject_public_key_info(),
        ));
        Ok(Self { request, key_hash })
    }

    /// SHA-256 of the requester's public key (SubjectPublicKeyInfo, DER), in hex.
    pub fn key_hash(&self) -> &str {
        &self.key_hash
    }
}

/// A certificate issued to a node's agent.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AgentCertificate {
    pub node_id: NodeId,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// Signs agents' certificates with the panel's CA key.
pub struct AgentIssuer {
    issuer: Issuer<'static, KeyPair>,
    lifetime: chrono::Duration,
}

impl std::fmt::Debug for AgentIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIssuer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl AgentIssuer {
    pub fn lifetime(&self) -> chrono::Duration {
        self.lifetime
    }

    /// A certificate for `node`'s agent, valid from a few minutes before `now` (clocks
    /// differ) for the configured lifetime.
    pub fn issue(
        &self,
        node: NodeId,
        request: &SigningRequest,
        now: DateTime<Utc>,
    ) -> Result<AgentCertificate, TlsError> {
        self.issue_between(
            node,
            request,
            now - chrono::Duration::minutes(5),
            now + self.lifetime,
        )
    }

    /// A certificate for `node`'s agent valid between the two instants (tests make expired
    /// ones with it).
    pub fn issue_between(
        &self,
        node: NodeId,
        request: &SigningRequest,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<AgentCertificate, TlsError> {
        let mut params = CertificateParams::new(vec![node_name(node)])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("alveole node {node}"));
        params.not_before = offset_date_time(not_before);
        params.not_after = offset_date_time(not_after);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        // Unique per certificate (RFC 5280), even for two issued within one second.
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f; // a positive integer
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let signed = CertificateSigningRequestParams {
            params,
            public_key: request.request.public_key.clone(),
        }
        .signed_by(&self.issuer)?;
        Ok(AgentCertificate {
            node_id: node,
            certificate_pem: signed.pem(),
            not_before,
            not_after,
        })
    }
}

/// The DNS name of the panel's own client certificate, which agents accept the panel's
/// requests from.
pub const PANEL_NAME: &str = "panel.alveole.invalid";

impl AgentIssuer {
    /// A client certificate for the panel itself, with a new key, valid an hour: the panel
    /// calls an agent with it (a database's dump, say). Its key never leaves the process.
    /// The certificate, then the key, in one PEM text.
    pub fn panel_identity(&self, now: DateTime<Utc>) -> Result<String, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![PANEL_NAME.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "alveole panel");
        params.not_before = offset_date_time(now - chrono::Duration::minutes(5));
        params.not_after = offset_date_time(now + chrono::Duration::hours(1));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(format!("{}{}", certificate.pem(), key.serialize_pem()))
    }
}

fn offset_date_time(at: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The DNS name in a node's agent certificate (`.invalid` never resolves: it is a name to
/// check, not to look up). Agents connecting to each other expect it.
pub fn node_name(node: NodeId) -> String {
    format!("{node}.node.alveole.invalid")
}

/// SHA-256 of a certificate's public key (SubjectPublicKeyInfo, DER), in hex.
pub fn certificate_key_hash(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex(&Sha256::digest(certificate.public_key().raw)))
}

/// Whether the certificate (PEM) was signed by the CA (PEM).
pub fn issued_by(certificate_pem: &str, ca_pem: &str) -> bool {
    let (Ok(certificate), Ok(ca)) = (
        CertificateDer::from_pem_slice(certificate_pem.as_bytes()),
        CertificateDer::from_pem_slice(ca_pem.as_bytes()),
    ) else {
        return false;
    };
    match (
        x509_parser::parse_x509_certificate(&certificate),
        x509_parser::parse_x509_certificate(&ca),
    ) {
        (Ok((_, certificate)), Ok((_, ca))) => {
            certificate.verify_signature(Some(ca.public_key())).is_ok()
        }
        _ => false,
    }
}

/// The agent certificate's key hash on one TLS connection to the agent listener, if the
/// client presented one: put in every request's extensions.
#[derive(Clone, Debug)]
pub struct AgentPeer(pub String);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a certificate's DER, in hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
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

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "alveole panel CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Loads the CA and the server certificate from `dir`, creating them the first time. The
/// server certificate names `hostnames` (DNS names or IP addresses) and loopback; it is issued
/// again when the names change. Agents' certificates last `agent_lifetime`.
pub fn load_or_create(
    dir: &Path,
    hostnames: &[String],
    agent_lifetime: std::time::Duration,
) -> Result<PanelTls, TlsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (server_pem, server_key) = (dir.join("server.pem"), dir.join("server.key"));
    let names_file = dir.join("server.names");
    if !ca_pem.exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&ca_key, &key.serialize_pem())?;
        std::fs::write(&ca_pem, cert.pem()).map_err(io(&ca_pem))?;
    }
    let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
    // The issuer is named from the same parameters the CA certificate was made from.
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);

    let mut names: Vec<String> = hostnames.to_vec();
    names.extend(LOOPBACK_NAMES.map(String::from));
    names.sort();
    names.dedup();
    let wanted = names.join("\n");
    let issued_for = std::fs::read_to_string(&names_file).unwrap_or_default();
    if !server_pem.exists() || issued_for != wanted {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "alveole panel");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        let _ = std::fs::remove_file(&server_key);
        write_private(&server_key, &key.serialize_pem())?;
        std::fs::write(&server_pem, cert.pem()).map_err(io(&server_pem))?;
        std::fs::write(&names_file, &wanted).map_err(io(&names_file))?;
    }

    let pem_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Pem { path, source }
    };
    let ca_text = std::fs::read_to_string(&ca_pem).map_err(io(&ca_pem))?;
    let ca_der = CertificateDer::from_pem_slice(ca_text.as_bytes()).map_err(pem_error(&ca_pem))?;
    let chain = vec![CertificateDer::from_pem_file(&server_pem).map_err(pem_error(&server_pem))?];
    let key = PrivateKeyDer::from_pem_file(&server_key).map_err(pem_error(&server_key))?;
    // A client certificate is optional at the TLS layer (enrolment and the CA are fetched
    // without one); when one is presented it must chain to this CA and be within its dates.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(PanelTls {
        ca: AgentCa {
            fingerprint: fingerprint(&ca_der),
            ca_pem: ca_text,
        },
        server: Arc::new(server),
        issuer: Arc::new(AgentIssuer {
            issuer,
            lifetime: chrono::Duration::from_std(agent_lifetime)
                .unwrap_or(chrono::Duration::hours(24)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("alveole-tls-")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn the_material_is_made_once_with_private_keys() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scratch = temp_dir();
        let dir = scratch.path();
        let lifetime = DEFAULT_AGENT_CERTIFICATE_LIFETIME;
        let first = load_or_create(dir, &["panel.example.org".into()], lifetime).unwrap();
        let server = std::fs::read(dir.join("server.pem")).unwrap();
        let again = load_or_create(dir, &["panel.example.org".into()], lifetime).unwrap();
        assert_eq!(first.ca.fingerprint, again.ca.fingerprint, "the CA is kept");
        assert_eq!(first.ca.fingerprint.len(), 64);
        assert_eq!(server, std::fs::read(dir.join("server.pem")).unwrap());
        load_or_create(dir, &["other.example.org".into()], lifetime).unwrap();
        assert_ne!(
            server,
            std::fs::read(dir.join("server.pem")).unwrap(),
            "new names, new server certificate"
        );
        for key in ["ca.key", "server.key"] {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dir.join(key)).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn an_agent_certificate_names_the_node_and_carries_the_requested_key_only() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scratch = temp_dir();
        let dir = scratch.path();
        let tls = load_or_create(dir, &[], DEFAULT_AGENT_CERTIFICATE_LIFETIME).unwrap();
        let key = KeyPair::generate().unwrap();
        // The requester asks to be a CA for another name: both are ignored.
        let mut asked = CertificateParams::new(vec!["panel.example.org".to_owned()]).unwrap();
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let request = SigningRequest::parse(&csr).unwrap();
        let node = NodeId::generate();
        let issued = tls.issuer.issue(node, &request, Utc::now()).unwrap();
        let der = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes()).unwrap();
        assert_eq!(
            certificate_key_hash(&der).as_deref(),
            Some(request.key_hash()),
            "the hash of the certificate's key is the hash of the request's key"
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!parsed.is_ca());
        let names = parsed.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(names.general_names.len(), 1);
        assert_eq!(
            names.general_names[0],
            x509_parser::extensions::GeneralName::DNSName(&node_name(node))
        );
        assert!(issued_by(&issued.certificate_pem, &tls.ca.ca_pem));
        let other =
            load_or_create(temp_dir().path(), &[], DEFAULT_AGENT_CERTIFICATE_LIFETIME).unwrap();
        assert!(!issued_by(&issued.certificate_pem, &other.ca.ca_pem));
        let lasts = issued.not_after - issued.not_before;
        assert!(lasts <= chrono::Duration::hours(24) + chrono::Duration::minutes(5));
        assert!(
            SigningRequest::parse(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            )
            .is_err()
        );
        assert!(SigningRequest::parse("not a request").is_err());
    }
}
