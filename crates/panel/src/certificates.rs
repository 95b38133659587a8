//! A certificate a member brings for a site, checked before it is kept (the start of the
//! HTTPS issue: the route that takes it comes next). Each refusal names its field: a chain that
//! does not read or whose certificates do not sign each other in order, a key that is not the
//! certificate's, a certificate outside its validity, names that are not the site's.

use alveole_model::{FieldError, ValidationErrors};
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use schemars::JsonSchema;
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// What a kept certificate shows (never its key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// The DNS names it is for.
    pub names: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Its serial number in lowercase hexadecimal (how CAs name it for revocation).
    pub serial: String,
}

/// Checks a certificate chain (the site's certificate first, then each issuer) and its key
/// for a site answering `site_names` (the first its primary name), at `now`.
pub fn check(
    chain_pem: &str,
    key_pem: &str,
    site_names: &[String],
    now: DateTime<Utc>,
) -> Result<CertificateInfo, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    // Unreadable PEM reads as no certificate, refused below.
    let ders: Vec<CertificateDer<'static>> = Result::<Vec<_>, _>::unwrap_or_default(
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect(),
    );
    let parsed: Option<Vec<X509Certificate<'_>>> = ders
        .iter()
        .map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c)
        })
        .collect();
    let chain = match parsed {
        Some(chain) if !chain.is_empty() => chain,
        _ => {
            errors.push(FieldError::new(
                "chain_pem",
                "certificate.unreadable",
                "PEM certificates (-----BEGIN CERTIFICATE-----), the site's first",
            ));
            return Err(errors);
        }
    };
    for (i, pair) in chain.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            errors.push(FieldError::new(
                "chain_pem",
                "certificate.bad_chain",
                format!(
                    "certificate {} is not signed by certificate {}: put the site's certificate \
                     first, then each issuer in turn",
                    i + 1,
                    i + 2
                ),
            ));
        }
    }
    let leaf = &chain[0];
    let validity = leaf.validity();
    let not_before = DateTime::from_timestamp(validity.not_before.timestamp(), 0).unwrap_or(now);
    let not_after = DateTime::from_timestamp(validity.not_after.timestamp(), 0).unwrap_or(now);
    if now > not_after {
        errors.push(FieldError::new(
            "chain_pem",
            "certificate.expired",
            format!("it expired on {}", not_after.format("%Y-%m-%d %H:%M UTC")),
        ));
    } else if now < not_before {
        errors.push(FieldError::new(
            "chain_pem",
            "certificate.not_yet_valid",
            format!(
                "it is valid from {}",
                not_before.format("%Y-%m-%d %H:%M UTC")
            ),
        ));
    }
    let names = dns_names(leaf);
    let foreign: Vec<&String> = names
        .iter()
        .filter(|name| !site_names.iter().any(|site| covers(name, site)))
        .collect();
    if !foreign.is_empty() {
        errors.push(FieldError::new(
            "chain_pem",
            "certificate.foreign_names",
            format!(
                "it names what the site does not answer for: {}",
                foreign
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(primary) = site_names.first()
        && !names.iter().any(|name| covers(name, primary))
    {
        errors.push(FieldError::new(
            "chain_pem",
            "certificate.missing_name",
            format!("it is not for {primary}, the site's name"),
        ));
    }
    if let Err(error) = key_matches(&ders, key_pem) {
        errors.push(error);
    }
    if !errors.0.is_empty() {
        return Err(errors);
    }
    Ok(CertificateInfo {
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        names,
        not_before,
        not_after,
        serial: leaf.serial.to_str_radix(16),
    })
}

/// What a certificate a CA issued says of itself (its chain's first certificate), unchecked.
pub fn describe(chain_pem: &str) -> Option<CertificateInfo> {
    let der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = leaf.validity();
    Some(CertificateInfo {
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        names: dns_names(&leaf),
        not_before: DateTime::from_timestamp(validity.not_before.timestamp(), 0)?,
        not_after: DateTime::from_timestamp(validity.not_after.timestamp(), 0)?,
        serial: leaf.serial.to_str_radix(16),
    })
}

/// The DNS names of a certificate (its alternative names; its common name when it has none).
fn dns_names(certificate: &X509Certificate<'_>) -> Vec<String> {
    let alternative: Vec<String> = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !alternative.is_empty() {
        return alternative;
    }
    certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_ascii_lowercase))
        .collect()
}

/// Whether certificate name `name` (possibly `*.example.org`) covers `site` (a site's name,
/// possibly a wildcard itself).
pub(crate) fn covers(name: &str, site: &str) -> bool {
    let site = site.to_ascii_lowercase();
    if name == site {
        return true;
    }
    match (name.strip_prefix("*."), site.split_once('.')) {
        (Some(parent), Some((label, rest))) => rest == parent && label != "*",
        _ => false,
    }
}

/// Whether `key_pem` is the key of the chain's first certificate.
fn key_matches(chain: &[CertificateDer<'static>], key_pem: &str) -> Result<(), FieldError> {
    let unreadable = || {
        FieldError::new(
            "key_pem",
            "key.unreadable",
            "a PEM private key (PKCS#8, SEC1 or PKCS#1): RSA, ECDSA P-256/P-384 or Ed25519",
        )
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| unreadable())?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| unreadable())?;
    rustls::sign::CertifiedKey::new(chain.to_vec(), signer)
        .keys_match()
        .map_err(|_| {
            FieldError::new(
                "key_pem",
                "certificate.key_mismatch",
                "this key is not the certificate's",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA's certificate, and one it signed for `names` valid around `now` (or expired):
    /// (the chain's PEM, leaf then CA, and the leaf's key).
    fn chain(names: &[&str], expired: bool) -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let leaf = params.signed_by(&key, &issuer).unwrap();
        (leaf.pem(), ca_cert.pem(), key.serialize_pem())
    }

    fn codes(result: Result<CertificateInfo, ValidationErrors>) -> Vec<(String, String)> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn a_good_chain_and_its_key_are_taken_and_every_fault_is_named() {
        let now = Utc::now();
        let site = vec!["exemple.org".to_owned(), "www.exemple.org".to_owned()];
        let (leaf, ca, key) = chain(&["exemple.org", "www.exemple.org"], false);
        let info = check(&format!("{leaf}{ca}"), &key, &site, now).unwrap();
        assert_eq!(info.names, ["exemple.org", "www.exemple.org"]);
        assert!(info.not_after > now);

        // The chain upside down, a key that is another's, nothing readable.
        let (_, _, other_key) = chain(&["exemple.org"], false);
        assert_eq!(
            codes(check(&format!("{ca}{leaf}"), &key, &site, now)),
            [
                ("chain_pem".into(), "certificate.bad_chain".into()),
                ("chain_pem".into(), "certificate.foreign_names".into()),
                ("chain_pem".into(), "certificate.missing_name".into()),
                ("key_pem".into(), "certificate.key_mismatch".into()),
            ]
        );
        assert_eq!(
            codes(check(&leaf, &other_key, &site, now)),
            [("key_pem".into(), "certificate.key_mismatch".into())]
        );
        assert_eq!(
            codes(check("not a certificate", &key, &site, now)),
            [("chain_pem".into(), "certificate.unreadable".into())]
        );
        assert_eq!(
            codes(check(&leaf, "not a key", &site, now)),
            [("key_pem".into(), "key.unreadable".into())]
        );

        // Expired; for names the site does not answer for.
        let (old, _, old_key) = chain(&["exemple.org"], true);
        assert_eq!(
            codes(check(&old, &old_key, &site, now)),
            [("chain_pem".into(), "certificate.expired".into())]
        );
        let (elsewhere, _, elsewhere_key) = chain(&["exemple.org", "ailleurs.org"], false);
        let refused = check(&elsewhere, &elsewhere_key, &site, now).unwrap_err();
        assert!(refused.0[0].message.contains("ailleurs.org"), "{refused:?}");
    }

    #[test]
    fn a_wildcard_certificate_covers_one_level_of_the_sites_names() {
        assert!(covers("*.exemple.org", "www.exemple.org"));
        assert!(!covers("*.exemple.org", "exemple.org"));
        assert!(!covers("*.exemple.org", "a.b.exemple.org"));
        assert!(covers("exemple.org", "Exemple.ORG"));
    }
}
