//! Before an order: does each name resolve to where the site is served (its node's public
//! addresses or its dedicated ones)? A name that points elsewhere would fail its challenge
//! and spend one of the CA's failed validations, so it is reported on the site instead.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveErrorKind, Resolver, TokioResolver};

/// Asks a DNS server (the system's, or the one given) for names' addresses, uncached: a
/// name just pointed at its node is seen at once.
#[derive(Clone)]
pub struct NameCheck {
    resolver: TokioResolver,
}

impl std::fmt::Debug for NameCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCheck")
    }
}

/// Where a name leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Every address is one of the expected ones.
    Here,
    /// Some address is elsewhere (listed).
    Elsewhere(Vec<IpAddr>),
    /// It has no address.
    Nowhere,
}

impl NameCheck {
    /// The server at `server`, or the system's resolvers.
    pub fn new(server: Option<SocketAddr>) -> Result<Self, String> {
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        let builder = match server {
            Some(server) => Resolver::builder_with_config(
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
                ),
                TokioConnectionProvider::default(),
            ),
            None => Resolver::builder_tokio().map_err(|e| e.to_string())?,
        };
        Ok(Self {
            resolver: builder.with_options(options).build(),
        })
    }

    /// Where `name` leads, against `expected` (any address will do when it is empty: the
    /// node declares none). An error is the resolver's own (a timeout, a refusal).
    pub async fn check(&self, name: &str, expected: &BTreeSet<IpAddr>) -> Result<Resolved, String> {
        let found: Vec<IpAddr> = match self.resolver.lookup_ip(format!("{name}.")).await {
            Ok(lookup) => lookup.iter().collect(),
            Err(error) => match error.kind() {
                ResolveErrorKind::Proto(proto)
                    if matches!(proto.kind(), ProtoErrorKind::NoRecordsFound { .. }) =>
                {
                    vec![]
                }
                _ => return Err(error.to_string()),
            },
        };
        if found.is_empty() {
            return Ok(Resolved::Nowhere);
        }
        let elsewhere: Vec<IpAddr> = found
            .into_iter()
            .filter(|ip| !expected.is_empty() && !expected.contains(ip))
            .collect();
        Ok(if elsewhere.is_empty() {
            Resolved::Here
        } else {
            Resolved::Elsewhere(elsewhere)
        })
    }
}
