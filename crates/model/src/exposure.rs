//! How a site is reached besides HTTP: the extra ports it exposes on its dedicated address
//! (TCP or UDP, straight to its container), and the limit tier that bounds the connections
//! a node's packet filter lets through to it.

use std::collections::BTreeSet;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};

/// A transport protocol a port is exposed on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port of the site's dedicated address forwarded to a port of its container, the client's
/// address unchanged.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
// Refused by the API (`strict`), not by serde: agents read these in documents too.
#[schemars(deny_unknown_fields)]
pub struct ExposedPort {
    pub protocol: Transport,
    /// The port clients connect to on the dedicated address.
    pub port: u16,
    /// The port the container listens on.
    pub container_port: u16,
}

impl fmt::Display for ExposedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} → {}",
            self.protocol, self.port, self.container_port
        )
    }
}

/// How many extra ports one site may expose.
pub const MAX_EXPOSED_PORTS: usize = 32;

/// Validates a site's extra ports: real port numbers, no port twice, and never TCP 80 or 443,
/// which belong to the ingress (TLS, metrics and overload protection stay in one place).
pub fn validate_exposed_ports(ports: &[ExposedPort]) -> Result<Vec<ExposedPort>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if ports.len() > MAX_EXPOSED_PORTS {
        errors.push(FieldError::new(
            "exposed_ports",
            "exposed_ports.too_many",
            format!("at most {MAX_EXPOSED_PORTS} extra ports"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("exposed_ports[{i}]");
        if port.port == 0 || port.container_port == 0 {
            errors.push(FieldError::new(
                field,
                "exposed_ports.zero",
                "ports run from 1 to 65535",
            ));
        } else if port.protocol == Transport::Tcp && matches!(port.port, 80 | 443) {
            errors.push(FieldError::new(
                field,
                "exposed_ports.ingress",
                format!(
                    "TCP port {} of a dedicated address goes to the ingress; use the site's HTTP port",
                    port.port
                ),
            ));
        } else if !seen.insert((port.protocol, port.port)) {
            errors.push(FieldError::new(
                field,
                "exposed_ports.duplicate",
                format!("{} port {} is listed twice", port.protocol, port.port),
            ));
        }
    }
    let mut ports = ports.to_vec();
    ports.sort();
    errors.finish(|| Some(ports))
}

/// A named bound on what reaches one site through the packet filter: new connections per
/// second and connections open at once, counted per dedicated address. A few tiers keep the
/// filter's rules constant whatever the number of sites: a site is mapped to a tier.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LimitTier {
    Small,
    #[default]
    Standard,
    Large,
}

impl LimitTier {
    pub const ALL: [LimitTier; 3] = [LimitTier::Small, LimitTier::Standard, LimitTier::Large];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitTier::Small => "small",
            LimitTier::Standard => "standard",
            LimitTier::Large => "large",
        }
    }

    /// New connections per second beyond which new ones are dropped (with a burst as large).
    pub fn new_connections_per_second(self) -> u32 {
        match self {
            LimitTier::Small => 50,
            LimitTier::Standard => 200,
            LimitTier::Large => 1_000,
        }
    }

    /// Connections open at once beyond which new ones are dropped.
    pub fn max_connections(self) -> u32 {
        match self {
            LimitTier::Small => 500,
            LimitTier::Standard => 5_000,
            LimitTier::Large => 50_000,
        }
    }

    pub fn parse(text: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| {
                FieldError::new(
                    "limit_tier",
                    "limit_tier.unknown",
                    "the limit tier is small, standard or large",
                )
            })
    }
}

impl fmt::Display for LimitTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocol: Transport, port: u16, container_port: u16) -> ExposedPort {
        ExposedPort {
            protocol,
            port,
            container_port,
        }
    }

    #[test]
    fn extra_ports_are_checked_and_sorted() {
        let ok = validate_exposed_ports(&[
            port(Transport::Udp, 5353, 53),
            port(Transport::Tcp, 2222, 22),
            port(Transport::Udp, 2222, 22),
        ])
        .unwrap();
        assert_eq!(ok[0], port(Transport::Tcp, 2222, 22));
        assert_eq!(ok.len(), 3, "the same number on TCP and UDP is two ports");
        // UDP 443 (QUIC) is not the ingress's.
        assert!(validate_exposed_ports(&[port(Transport::Udp, 443, 443)]).is_ok());
    }

    #[test]
    fn bad_extra_ports_say_which_and_why() {
        let codes = |ports: &[ExposedPort]| -> Vec<String> {
            validate_exposed_ports(ports)
                .unwrap_err()
                .0
                .into_iter()
                .map(|e| format!("{}:{}", e.field, e.code))
                .collect()
        };
        assert_eq!(
            codes(&[port(Transport::Tcp, 0, 22)]),
            ["exposed_ports[0]:exposed_ports.zero"]
        );
        assert_eq!(
            codes(&[
                port(Transport::Tcp, 2222, 22),
                port(Transport::Tcp, 443, 8443)
            ]),
            ["exposed_ports[1]:exposed_ports.ingress"]
        );
        assert_eq!(
            codes(&[port(Transport::Udp, 53, 53), port(Transport::Udp, 53, 5353)]),
            ["exposed_ports[1]:exposed_ports.duplicate"]
        );
        let many: Vec<_> = (1..=40)
            .map(|p| port(Transport::Tcp, 1000 + p, p))
            .collect();
        assert_eq!(codes(&many), ["exposed_ports:exposed_ports.too_many"]);
    }

    #[test]
    fn tiers_grow_and_parse_back() {
        for pair in LimitTier::ALL.windows(2) {
            assert!(pair[0].new_connections_per_second() < pair[1].new_connections_per_second());
            assert!(pair[0].max_connections() < pair[1].max_connections());
        }
        for tier in LimitTier::ALL {
            assert_eq!(LimitTier::parse(tier.as_str()).unwrap(), tier);
        }
        assert!(LimitTier::parse("huge; drop").is_err());
    }
}
