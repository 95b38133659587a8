//! The co-op's addresses: pools of IPv4 and IPv6 prefixes rented at a provider or owned, and
//! the addresses allocated from them to nodes (and, optionally, dedicated to one site).

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// An IP prefix in its canonical form (`192.0.2.0/24`, `2001:db8::/48`): host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    network: IpAddr,
    length: u8,
}

/// An address as a number (IPv4 in the low 32 bits).
fn number_of(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// What makes `address` unfit for a pool, if anything. The ranges are wider than a /16 or a
/// /32 or aligned to them, so checking a pool's first and last addresses is enough.
fn special_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(a) if a.is_unspecified() || a.octets()[0] == 0 => Some("unspecified"),
        IpAddr::V4(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V4(a) if a.is_link_local() => Some("link-local"),
        IpAddr::V4(a) if a.is_multicast() || a.is_broadcast() => Some("multicast"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        _ => None,
    }
}

/// The most addresses a pool hands out one by one (a /64 of IPv6 has 2^64).
const MAX_LISTED: u128 = 1 << 16;

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let invalid = |message: &str| FieldError::new("prefix", "prefix.invalid", message);
        let (address, length) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("write an address and a length: 192.0.2.0/24"))?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| invalid("not an IPv4 or IPv6 address"))?;
        let length: u8 = length
            .parse()
            .map_err(|_| invalid("the length is a number"))?;
        let bits = Self::bits_of(network);
        if length > bits {
            return Err(invalid(&format!("at most /{bits} for this family")));
        }
        let prefix = Self { network, length };
        if number_of(network) != number_of(network) & prefix.mask() {
            return Err(FieldError::new(
                "prefix",
                "prefix.host_bits",
                format!(
                    "the network address of this prefix is {}/{length}",
                    prefix.address_of(number_of(network) & prefix.mask())
                ),
            ));
        }
        Ok(prefix)
    }

    /// A prefix a pool may hold: public-looking (not loopback, link-local, multicast or
    /// unspecified) and no wider than /16 (IPv4) or /32 (IPv6), which is more than any
    /// provider rents.
    pub fn parse_pool(text: &str) -> Result<Self, FieldError> {
        let prefix = Self::parse(text)?;
        let refused = |message: String| FieldError::new("prefix", "prefix.not_poolable", message);
        let widest = match prefix.network {
            IpAddr::V4(_) => 16,
            IpAddr::V6(_) => 32,
        };
        if prefix.length < widest {
            return Err(refused(format!(
                "a pool is at most a /{widest} of this family"
            )));
        }
        let last = prefix.address_of(
            number_of(prefix.network) | !prefix.mask() & Self::all_bits(prefix.network),
        );
        for address in [prefix.network, last] {
            if let Some(kind) = special_kind(address) {
                return Err(refused(format!("{prefix} holds {kind} addresses")));
            }
        }
        Ok(prefix)
    }

    fn all_bits(address: IpAddr) -> u128 {
        match address {
            IpAddr::V4(_) => u128::from(u32::MAX),
            IpAddr::V6(_) => u128::MAX,
        }
    }

    fn bits_of(address: IpAddr) -> u8 {
        match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    fn address_of(&self, bits: u128) -> IpAddr {
        match self.network {
            IpAddr::V4(_) => IpAddr::from(u32::try_from(bits).unwrap_or(u32::MAX).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(bits.to_be_bytes()),
        }
    }

    fn mask(&self) -> u128 {
        let bits = Self::bits_of(self.network);
        let all = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        let host = u32::from(bits - self.length);
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    /// The prefix of one address (/32, /128).
    pub fn host(address: IpAddr) -> Self {
        Self {
            network: address,
            length: Self::bits_of(address),
        }
    }

    /// A prefix, or one address standing for its own /32 or /128.
    pub fn parse_or_host(text: &str) -> Result<Self, FieldError> {
        match text.trim().parse::<IpAddr>() {
            Ok(address) => Ok(Self::host(address)),
            Err(_) => Self::parse(text),
        }
    }

    /// The prefix's first address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The number of leading bits that name the network.
    pub fn length(&self) -> u8 {
        self.length
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        Self::bits_of(address) == Self::bits_of(self.network)
            && number_of(address) & self.mask() == number_of(self.network)
    }

    /// Whether a node or site may use `address`: in the prefix, and in IPv4 prefixes of /30
    /// and larger neither the network nor the broadcast address.
    pub fn is_usable(&self, address: IpAddr) -> bool {
        if !self.contains(address) {
            return false;
        }
        match self.network {
            IpAddr::V4(_) if self.length <= 30 => {
                let n = number_of(address);
                let first = number_of(self.network);
                n != first && n != first + self.size() - 1
            }
            _ => true,
        }
    }

    /// Whether the two share an address (one holds the other's network address).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u128 {
        let host = u32::from(Self::bits_of(self.network) - self.length);
        if host >= 128 {
            u128::MAX
        } else {
            1u128 << host
        }
    }

    /// The addresses a node or site may use, in order: in IPv4 prefixes of /30 and larger, the
    /// network and broadcast addresses are not. At most 65,536 are listed.
    pub fn usable(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let first = number_of(self.network);
        let size = self.size();
        let (skip_first, skip_last) = match self.network {
            IpAddr::V4(_) if self.length <= 30 => (1, 1),
            _ => (0, 0),
        };
        let count = size.saturating_sub(skip_first + skip_last).min(MAX_LISTED);
        (0..count).map(move |i| self.address_of(first + skip_first + i))
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.length)
    }
}

impl std::str::FromStr for Prefix {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl JsonSchema for Prefix {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Prefix".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IPv4 or IPv6 prefix, host bits zero: 192.0.2.0/24, 2001:db8::/48",
            "examples": ["192.0.2.0/24"]
        })
    }
}

/// A pool of addresses at a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IpPool {
    pub id: uuid::Uuid,
    pub provider_id: crate::ProviderId,
    pub prefix: Prefix,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An address given to a node, and maybe dedicated to one of its sites.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IpAllocation {
    pub address: IpAddr,
    pub pool_id: uuid::Uuid,
    pub node_id: crate::NodeId,
    pub site_id: Option<crate::SiteId>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An address on its way from one node to another (failover). While it moves, neither node
/// holds it: the old node lets it go first, and the new one takes it only once the old one's
/// report shows it gone, so the two never answer for it at the same moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddressMove {
    pub address: IpAddr,
    pub from_node: crate::NodeId,
    pub to_node: crate::NodeId,
    /// The old node's desired-state generation without the address: its report for this
    /// generation or a later one tells whether it let the address go.
    pub release_generation: u64,
    /// Taken over without waiting for the old node (gone, unreachable): the provider's
    /// routing alone keeps traffic from it.
    pub forced: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Why the last attempt to finish the move failed (the provider refused, ...), if it did.
    pub last_error: Option<String>,
}

impl AddressMove {
    /// Whether the old node has let the address go, by its report: it applied the desired
    /// state without the address and its uplink no longer shows it. A forced move does not
    /// wait for the old node.
    pub fn released_by(&self, report: &crate::NodeReport) -> bool {
        if self.forced {
            return true;
        }
        let applied = report
            .generation
            .is_some_and(|generation| generation >= self.release_generation);
        let still_held = report
            .addresses
            .as_ref()
            .is_some_and(|held| held.contains(&self.address));
        applied && !still_held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_hold_public_prefixes_of_a_provider_size() {
        for good in [
            "192.0.2.0/24",
            "198.51.0.0/16",
            "203.0.113.7/32",
            "2001:db8::/32",
            "2001:db8:1::/48",
        ] {
            assert!(Prefix::parse_pool(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("::/0", "at most a /32"),
            ("10.0.0.0/8", "at most a /16"),
            ("127.0.0.0/8", "at most a /16"),
            ("127.0.0.0/16", "loopback"),
            ("0.0.0.0/24", "unspecified"),
            ("169.254.0.0/16", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("255.255.255.255/32", "multicast"),
            ("::1/128", "loopback"),
            ("::/128", "unspecified"),
            ("fe80::/64", "link-local"),
            ("ff02::/64", "multicast"),
        ] {
            let error = Prefix::parse_pool(bad).expect_err(bad);
            assert!(error.message.contains(why), "{bad}: {}", error.message);
            assert_eq!(error.field, "prefix");
        }
    }

    #[test]
    fn prefixes_are_canonical_and_know_their_addresses() {
        let p = Prefix::parse("192.0.2.0/24").unwrap();
        assert_eq!(p.to_string(), "192.0.2.0/24");
        assert_eq!(p.size(), 256);
        assert!(p.contains("192.0.2.77".parse().unwrap()));
        assert!(!p.contains("198.51.100.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let usable: Vec<IpAddr> = p.usable().collect();
        assert_eq!(usable.len(), 254, "no network or broadcast address");
        assert_eq!(usable[0].to_string(), "192.0.2.1");
        assert_eq!(usable[253].to_string(), "192.0.2.254");
        assert!(p.overlaps(&Prefix::parse("192.0.2.128/25").unwrap()));
        assert!(Prefix::parse("192.0.0.0/16").unwrap().overlaps(&p));
        assert!(!p.overlaps(&Prefix::parse("192.0.3.0/24").unwrap()));
        assert!(p.is_usable("192.0.2.1".parse().unwrap()));
        assert!(!p.is_usable("192.0.2.0".parse().unwrap()));
        assert!(!p.is_usable("192.0.2.255".parse().unwrap()));
        assert!(!p.is_usable("192.0.3.1".parse().unwrap()));
        let single = Prefix::parse("203.0.113.7/32").unwrap();
        assert_eq!(single.usable().count(), 1);
        let v6 = Prefix::parse("2001:db8::/64").unwrap();
        assert_eq!(v6.usable().next().unwrap().to_string(), "2001:db8::");
        assert_eq!(v6.usable().count(), 65_536, "listed at most");
        assert!(v6.contains("2001:db8::ffff".parse().unwrap()));
        assert!(
            v6.is_usable("2001:db8::ffff:ffff:ffff:ffff".parse().unwrap()),
            "beyond the listed ones, still usable"
        );
        let error = Prefix::parse("192.0.2.5/24").unwrap_err();
        assert_eq!(error.code, "prefix.host_bits");
        assert!(error.message.contains("192.0.2.0/24"), "{}", error.message);
        for bad in [
            "192.0.2.0",
            "192.0.2.0/33",
            "2001:db8::/129",
            "example/24",
            "1.2.3.4/x",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::from_str::<Prefix>("\"2001:db8:1::/48\"")
                .unwrap()
                .to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn a_move_waits_for_the_old_node_to_apply_and_let_go() {
        let moving = AddressMove {
            address: "203.0.113.10".parse().unwrap(),
            from_node: crate::NodeId(uuid::Uuid::nil()),
            to_node: crate::NodeId(uuid::Uuid::max()),
            release_generation: 7,
            forced: false,
            started_at: chrono::Utc::now(),
            last_error: None,
        };
        let report = |generation: Option<u64>, held: Option<Vec<&str>>| crate::NodeReport {
            generation,
            sites: vec![],
            resources: crate::NodeResources::default(),
            agent_version: "test".into(),
            warnings: vec![],
            events: vec![],
            inventory: None,
            addresses: held.map(|h| h.iter().map(|a| a.parse().unwrap()).collect()),
            endpoints: None,
            restores: vec![],
            drills: vec![],
        };
        assert!(!moving.released_by(&report(None, None)), "nothing applied");
        assert!(
            !moving.released_by(&report(Some(6), Some(vec![]))),
            "an older generation"
        );
        assert!(
            !moving.released_by(&report(Some(7), Some(vec!["203.0.113.10"]))),
            "applied, but the uplink still shows it"
        );
        assert!(moving.released_by(&report(Some(7), Some(vec!["203.0.113.11"]))));
        assert!(
            moving.released_by(&report(Some(8), None)),
            "an agent that does not manage addresses: the generation says it"
        );
        let forced = AddressMove {
            forced: true,
            ..moving
        };
        assert!(forced.released_by(&report(None, None)));
    }
}
