//! The table as the kernel holds it, read back from `nft -j list table`. Its per-site elements
//! are decoded into typed [`Element`]s (the nftables crate cannot read verdict maps or
//! concatenated keys back, so these few serde-free decoders do it); everything else (sets,
//! chains, rules) becomes a *skeleton*: nft's own JSON with handles and counter values
//! removed, compared as a whole with the skeleton read right after the last full apply.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use alveole_model::{LimitTier, Transport};

use super::plan::{Element, Slot};
use super::render::sets;

/// The parts of one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Sets, maps and chains (without per-site elements), then rules, in nft's order.
    pub skeleton: Vec<String>,
    /// The elements of the per-site sets, decoded where complete.
    pub elements: BTreeMap<Slot, Element>,
    /// Counter values of each chain's rules, in order (0 for a rule without a counter).
    pub counters: BTreeMap<String, Vec<u64>>,
    /// The ingress ports map: public port → the ingress's port.
    pub ingress: BTreeMap<u16, u16>,
}

#[derive(Debug, thiserror::Error)]
#[error("nft's listing is not what alveole expects: {0}")]
pub struct ListingError(String);

impl Listing {
    pub fn parse(json: &str) -> Result<Self, ListingError> {
        let root: Value = serde_json::from_str(json).map_err(|e| ListingError(e.to_string()))?;
        let items = root["nftables"]
            .as_array()
            .ok_or_else(|| ListingError("no `nftables` array".into()))?;
        let mut listing = Listing::default();
        let mut per_site: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for item in items {
            let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let mut body = body.clone();
            if let Some(object) = body.as_object_mut() {
                object.remove("handle");
            }
            match kind.as_str() {
                "metainfo" | "table" => {}
                "set" | "map" => {
                    let name = body["name"].as_str().unwrap_or_default().to_owned();
                    if name == sets::INGRESS_PORTS {
                        listing.ingress = take_elements(&mut body)
                            .iter()
                            .filter_map(|e| {
                                let (from, to) = pair(e)?;
                                Some((port(from)?, port(to)?))
                            })
                            .collect();
                    } else if sets::is_per_site(&name) {
                        per_site.insert(name, take_elements(&mut body));
                    } else if sets::is_dynamic(&name) {
                        take_elements(&mut body);
                    }
                    listing.skeleton.push(format!("{kind} {body}"));
                }
                "rule" => {
                    let chain = body["chain"].as_str().unwrap_or_default().to_owned();
                    let mut counted = 0;
                    if let Some(expr) = body["expr"].as_array_mut() {
                        for statement in expr {
                            if let Some(counter) = statement.get_mut("counter")
                                && counter.is_object()
                            {
                                counted += counter["packets"].as_u64().unwrap_or(0);
                                *counter = Value::Null;
                            }
                        }
                    }
                    listing.counters.entry(chain).or_default().push(counted);
                    listing.skeleton.push(format!("rule {body}"));
                }
                _ => listing.skeleton.push(format!("{kind} {body}")),
            }
        }
        listing.elements = decode_elements(&per_site);
        Ok(listing)
    }
}

/// Removes a set's elements from its listing (they are compared apart, or not at all).
fn take_elements(body: &mut Value) -> Vec<Value> {
    match body.as_object_mut().and_then(|o| o.remove("elem")) {
        Some(Value::Array(elements)) => elements,
        _ => Vec::new(),
    }
}

fn address(value: &Value) -> Option<IpAddr> {
    value.as_str()?.parse().ok()
}

fn port(value: &Value) -> Option<u16> {
    u16::try_from(value.as_u64()?).ok()
}

fn transport(value: &Value) -> Option<Transport> {
    match value {
        Value::String(name) if name == "tcp" => Some(Transport::Tcp),
        Value::String(name) if name == "udp" => Some(Transport::Udp),
        Value::Number(n) if n.as_u64() == Some(6) => Some(Transport::Tcp),
        Value::Number(n) if n.as_u64() == Some(17) => Some(Transport::Udp),
        _ => None,
    }
}

/// A map entry `[key, value]` (nft may also wrap an element as `{"elem": {"val": ...}}`).
fn pair(entry: &Value) -> Option<(&Value, &Value)> {
    let pair = entry.as_array()?;
    let key = pair.first()?;
    let key = key.get("elem").and_then(|e| e.get("val")).unwrap_or(key);
    Some((key, pair.get(1)?))
}

fn exposed_key(key: &Value) -> Option<(IpAddr, Transport, u16)> {
    let parts = key.get("concat")?.as_array()?;
    match parts.as_slice() {
        [a, p, n] => Some((address(a)?, transport(p)?, port(n)?)),
        _ => None,
    }
}

fn tier_of(verdict: &Value) -> Option<LimitTier> {
    let target = verdict.get("jump")?.get("target")?.as_str()?;
    LimitTier::parse(target.strip_prefix("tier_")?).ok()
}

/// Typed elements from the per-site sets. An entry alveole cannot decode, or half of an
/// exposed port, yields nothing: the element it should have been is then missing, which is
/// drift and gets repaired.
fn decode_elements(per_site: &BTreeMap<String, Vec<Value>>) -> BTreeMap<Slot, Element> {
    let mut elements = Vec::new();
    let mut exposed_addresses = BTreeMap::new();
    let mut exposed_ports = BTreeMap::new();
    for (set, entries) in per_site {
        for entry in entries {
            let decoded = if set.starts_with("dedicated") {
                address(entry).map(Element::Dedicated)
            } else if set.starts_with("egress") {
                pair(entry).and_then(|(k, v)| {
                    Some(Element::Egress {
                        container: address(k)?,
                        address: address(v)?,
                    })
                })
            } else if set.starts_with("tier") {
                pair(entry).and_then(|(k, v)| {
                    Some(Element::Tier {
                        address: address(k)?,
                        tier: tier_of(v)?,
                    })
                })
            } else if set.starts_with("exposed_addr") {
                if let Some((key, container)) =
                    pair(entry).and_then(|(k, v)| Some((exposed_key(k)?, address(v)?)))
                {
                    exposed_addresses.insert(key, container);
                }
                None
            } else if set.starts_with("exposed_port") {
                if let Some((key, container_port)) =
                    pair(entry).and_then(|(k, v)| Some((exposed_key(k)?, port(v)?)))
                {
                    exposed_ports.insert(key, container_port);
                }
                None
            } else {
                None
            };
            elements.extend(decoded);
        }
    }
    for (key, container) in exposed_addresses {
        if let Some(&container_port) = exposed_ports.get(&key) {
            let (address, protocol, port) = key;
            elements.push(Element::Exposed {
                address,
                protocol,
                port,
                container,
                container_port,
            });
        }
    }
    elements.into_iter().map(|e| (e.slot(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_decode_from_nfts_own_listing() {
        // Trimmed from `nft -j list table` of nftables 1.0.6.
        let listing = Listing::parse(
            r#"{"nftables": [
              {"metainfo": {"version": "1.0.6"}},
              {"table": {"family": "inet", "name": "t", "handle": 1}},
              {"set": {"family": "inet", "name": "dedicated4", "table": "t", "type": "ipv4_addr", "handle": 2, "elem": ["192.0.2.10"]}},
              {"map": {"family": "inet", "name": "exposed_addr4", "table": "t", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 3, "map": "ipv4_addr",
                "elem": [[{"concat": ["192.0.2.10", "tcp", 2222]}, "10.9.0.2"], [{"concat": ["192.0.2.10", "udp", 53]}, "10.9.0.2"]]}},
              {"map": {"family": "inet", "name": "exposed_port4", "table": "t", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 4, "map": "inet_service",
                "elem": [[{"concat": ["192.0.2.10", "tcp", 2222]}, 22]]}},
              {"map": {"family": "inet", "name": "tier4", "table": "t", "type": "ipv4_addr", "handle": 5, "map": "verdict",
                "elem": [["192.0.2.10", {"jump": {"target": "tier_large"}}]]}},
              {"set": {"family": "inet", "name": "rate_small4", "table": "t", "type": "ipv4_addr", "handle": 6, "elem": [{"elem": {"val": "192.0.2.10", "timeout": 60}}]}},
              {"rule": {"family": "inet", "table": "t", "chain": "input", "handle": 7, "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": null}]}}
            ]}"#,
        )
        .unwrap();
        let ip = |t: &str| -> IpAddr { t.parse().unwrap() };
        let elements: Vec<_> = listing.elements.values().copied().collect();
        assert_eq!(
            elements,
            [
                Element::Dedicated(ip("192.0.2.10")),
                Element::Exposed {
                    address: ip("192.0.2.10"),
                    protocol: Transport::Tcp,
                    port: 2222,
                    container: ip("10.9.0.2"),
                    container_port: 22
                },
                Element::Tier {
                    address: ip("192.0.2.10"),
                    tier: LimitTier::Large
                },
            ],
            "the UDP port has no container port: it is missing, not half there"
        );
        assert_eq!(listing.counters["input"], [3]);
        assert!(
            listing.skeleton.iter().all(|line| !line.contains("handle")
                && !line.contains("180")
                && !line.contains("192.0.2.10")),
            "no handles, counter values or elements in the skeleton: {:?}",
            listing.skeleton
        );
    }

    #[test]
    fn a_listing_that_is_not_nfts_is_an_error() {
        assert!(Listing::parse("not json").is_err());
        assert!(Listing::parse(r#"{"other": []}"#).is_err());
    }
}
