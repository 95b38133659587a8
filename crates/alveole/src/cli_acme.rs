//! `alveole serve`'s ACME settings: the co-op's CA, its contact, and the limits kept under.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// The co-op's ACME CA: sites' certificates are ordered and renewed from it.
#[derive(Debug, Args)]
pub struct AcmeArgs {
    /// The CA's directory URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory);
    /// unset: no certificates are ordered (members may still bring their own).
    #[arg(long, env = "ALVEOLE_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// Addresses the CA may write to about the co-op's account (comma-separated e-mails).
    #[arg(long, env = "ALVEOLE_ACME_CONTACT", value_delimiter = ',')]
    pub acme_contact: Vec<String>,
    /// Trust only these roots (PEM) for the CA's own HTTPS: a private or test CA.
    #[arg(long, env = "ALVEOLE_ACME_CA_ROOTS")]
    pub acme_ca_roots: Option<PathBuf>,
    /// The DNS server (address:port) that checks, before each order, that the site's names
    /// lead to its node; unset: the system's.
    #[arg(long, env = "ALVEOLE_ACME_RESOLVER")]
    pub acme_resolver: Option<SocketAddr>,
    /// The certificate profile asked for, where the CA offers profiles (`shortlived`).
    #[arg(long, env = "ALVEOLE_ACME_PROFILE")]
    pub acme_profile: Option<String>,
    /// New orders per three hours the account keeps under (the CA's limit).
    #[arg(long, env = "ALVEOLE_ACME_ORDERS_PER_3_HOURS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub acme_orders_per_3_hours: u32,
    /// Certificates per registered domain and week the panel keeps under.
    #[arg(long, env = "ALVEOLE_ACME_CERTIFICATES_PER_DOMAIN_WEEK", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub acme_certificates_per_domain_week: u32,
    /// Failed validations per name and hour after which the name waits.
    #[arg(long, env = "ALVEOLE_ACME_FAILURES_PER_NAME_HOUR", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub acme_failures_per_name_hour: u32,
    /// Seconds between runs of the orders (changes to a site start one at once).
    #[arg(long, env = "ALVEOLE_ACME_EVERY_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub acme_every_seconds: u64,
}

impl AcmeArgs {
    /// The panel's ACME settings, when a directory is given.
    pub fn config(&self) -> anyhow::Result<Option<alveole_panel::acme::AcmeConfig>> {
        let Some(directory) = &self.acme_directory else {
            return Ok(None);
        };
        if !directory.starts_with("https://") {
            anyhow::bail!("--acme-directory: an https:// URL, not {directory}");
        }
        let contact = self
            .acme_contact
            .iter()
            .map(|email| {
                let email = email.trim();
                match email.split_once('@') {
                    Some((local, domain)) if !local.is_empty() && domain.contains('.') => {
                        Ok(format!("mailto:{email}"))
                    }
                    _ => anyhow::bail!("--acme-contact: {email} is not an e-mail address"),
                }
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(alveole_panel::acme::AcmeConfig {
            directory: directory.clone(),
            contact,
            ca_roots: self.acme_ca_roots.clone(),
            resolver: self.acme_resolver,
            profile: self.acme_profile.clone(),
            limits: alveole_panel::acme::AcmeLimits {
                orders_per_3_hours: self.acme_orders_per_3_hours,
                certificates_per_domain_week: self.acme_certificates_per_domain_week,
                failures_per_name_hour: self.acme_failures_per_name_hour,
                ..Default::default()
            },
        }))
    }
}
