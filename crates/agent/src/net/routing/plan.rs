//! What a node's table must hold, derived from its desired state and the addresses its
//! containers have: pure, so every rule of derivation is unit-tested.
//!
//! The table has two parts. Its *shape* (sets, chains, rules) depends only on the node: its
//! bridge, its ingress ports, the limit tiers. Its *elements* (one entry per site address,
//! exposed port, egress) depend on the sites: adding or removing a site changes elements only,
//! so the rules a packet walks do not grow with the number of sites.

use std::collections::BTreeMap;
use std::net::IpAddr;

use alveole_model::{DesiredState, LimitTier, SiteId, Transport};

use crate::engine::runtime::Naming;

/// The node-wide part of the table: when it changes, the table is rendered whole again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `alveole_<node>`, in the `inet` family: alveole never touches another table.
    pub table: String,
    /// The node's container bridge (sites must not reach the host's own services through it).
    pub bridge: String,
    /// Where TCP 80 and 443 of a dedicated address go: ports of the node's ingress.
    pub ingress: IngressPorts,
    /// The host's own services answer only these networks, when the node opted in.
    pub input_filter: Option<alveole_model::InputFilter>,
}

/// The node's ingress listeners that ports 80 and 443 of dedicated addresses lead to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngressPorts {
    pub http: u16,
    /// `None` while the ingress has no TLS listener: 443 is then closed like any other port.
    pub https: Option<u16>,
}

impl Shape {
    pub fn of(naming: &Naming, ingress: IngressPorts) -> Self {
        Self {
            table: format!("alveole_{}", naming.bridge().trim_start_matches("alv-")),
            bridge: naming.bridge(),
            ingress,
            input_filter: None,
        }
    }

    /// The same shape with the node's input filter (or none).
    pub fn with_input_filter(mut self, filter: Option<&alveole_model::InputFilter>) -> Self {
        self.input_filter = filter.cloned();
        self
    }
}

/// One entry of one of the table's sets or maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An address dedicated to a site and held by this node.
    Dedicated(IpAddr),
    /// A port of a dedicated address forwarded to a site's container.
    Exposed {
        address: IpAddr,
        protocol: Transport,
        port: u16,
        container: IpAddr,
        container_port: u16,
    },
    /// A container whose outgoing connections leave from its site's dedicated address.
    Egress { container: IpAddr, address: IpAddr },
    /// The limit tier that bounds connections to a dedicated address.
    Tier { address: IpAddr, tier: LimitTier },
}

/// What an element is keyed by in its set or map: one slot holds at most one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Dedicated(IpAddr),
    Exposed(IpAddr, Transport, u16),
    Egress(IpAddr),
    Tier(IpAddr),
}

impl Element {
    pub fn slot(&self) -> Slot {
        match *self {
            Element::Dedicated(address) => Slot::Dedicated(address),
            Element::Exposed {
                address,
                protocol,
                port,
                ..
            } => Slot::Exposed(address, protocol, port),
            Element::Egress { container, .. } => Slot::Egress(container),
            Element::Tier { address, .. } => Slot::Tier(address),
        }
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Element::Dedicated(address) => write!(f, "dedicated address {address}"),
            Element::Exposed {
                address,
                protocol,
                port,
                container,
                container_port,
            } => write!(
                f,
                "exposed {protocol} {} → {}",
                std::net::SocketAddr::new(*address, *port),
                std::net::SocketAddr::new(*container, *container_port)
            ),
            Element::Egress { container, address } => {
                write!(f, "egress of {container} from {address}")
            }
            Element::Tier { address, tier } => write!(f, "limit tier {tier} for {address}"),
        }
    }
}

/// The whole table a node should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingPlan {
    pub shape: Shape,
    pub elements: BTreeMap<Slot, Element>,
    /// Entries the document asked for that collide with an earlier one (the panel's database
    /// prevents this; a document from elsewhere might not). The first one wins.
    pub conflicts: Vec<String>,
}

impl RoutingPlan {
    /// The plan for `desired`, where `containers` holds the address of each running site's
    /// container on the node's network. A site whose container is not running keeps its
    /// addresses (their ports are closed) but forwards nothing.
    pub fn new(
        shape: Shape,
        desired: &DesiredState,
        containers: &BTreeMap<SiteId, IpAddr>,
    ) -> Self {
        let mut plan = Self {
            shape,
            elements: BTreeMap::new(),
            conflicts: Vec::new(),
        };
        for site in &desired.sites {
            for &address in &site.dedicated_addresses {
                plan.insert(site.site_id, Element::Dedicated(address));
                plan.insert(
                    site.site_id,
                    Element::Tier {
                        address,
                        tier: site.limit_tier,
                    },
                );
            }
            let Some(&container) = containers.get(&site.site_id) else {
                continue;
            };
            // No NAT between families: a container reached over IPv4 gets its IPv4 addresses.
            let same_family: Vec<IpAddr> = site
                .dedicated_addresses
                .iter()
                .copied()
                .filter(|a| a.is_ipv4() == container.is_ipv4())
                .collect();
            if let Some(&address) = same_family.first() {
                plan.insert(site.site_id, Element::Egress { container, address });
            }
            for &address in &same_family {
                for exposed in &site.exposed_ports {
                    plan.insert(
                        site.site_id,
                        Element::Exposed {
                            address,
                            protocol: exposed.protocol,
                            port: exposed.port,
                            container,
                            container_port: exposed.container_port,
                        },
                    );
                }
            }
        }
        plan
    }

    fn insert(&mut self, site: SiteId, element: Element) {
        match self.elements.get(&element.slot()) {
            None => {
                self.elements.insert(element.slot(), element);
            }
            Some(existing) if *existing == element => {}
            Some(existing) => self.conflicts.push(format!(
                "site {site}: {element} collides with {existing}; kept the latter"
            )),
        }
    }
}

/// Elements to remove and to add to go from `from` to `to`: a changed element is both.
pub fn element_changes(
    from: &BTreeMap<Slot, Element>,
    to: &BTreeMap<Slot, Element>,
) -> (Vec<Element>, Vec<Element>) {
    let removed = from
        .iter()
        .filter(|(slot, element)| to.get(slot) != Some(element))
        .map(|(_, element)| *element)
        .collect();
    let added = to
        .iter()
        .filter(|(slot, element)| from.get(slot) != Some(element))
        .map(|(_, element)| *element)
        .collect();
    (removed, added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alveole_model::{ExposedPort, NodeId, SiteSpec};

    fn shape() -> Shape {
        Shape::of(
            &Naming {
                node_id: NodeId::generate(),
            },
            IngressPorts {
                http: 8080,
                https: None,
            },
        )
    }

    fn site(addresses: &[&str], ports: &[(Transport, u16, u16)]) -> SiteSpec {
        let mut spec: SiteSpec = serde_json::from_value(serde_json::json!({
            "site_id": SiteId::generate(),
            "hostnames": ["a.example.org"],
            "image": "alveole-test/busybox:1",
            "command": [],
            "env": [],
            "http_port": 8080,
            "volume": {"quota_bytes": 1024, "mount_path": "/data"},
            "limits": {"cpu_millis": 100, "memory_bytes": 67108864, "pids": 64},
            "run": true,
        }))
        .unwrap();
        spec.dedicated_addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        spec.exposed_ports = ports
            .iter()
            .map(|&(protocol, port, container_port)| ExposedPort {
                protocol,
                port,
                container_port,
            })
            .collect();
        spec
    }

    fn desired(sites: Vec<SiteSpec>) -> DesiredState {
        DesiredState {
            node_id: NodeId::generate(),
            generation: 1,
            sites,
            purge_volumes: vec![],
            addresses: vec![],
            input_filter: None,
            moves_out: vec![],
            moves_in: vec![],
            restores: vec![],
            drills: vec![],
            acme_challenges: vec![],
            vault: None,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_running_site_gets_its_address_ports_egress_and_tier() {
        let spec = site(
            &["192.0.2.10", "2001:db8::10"],
            &[(Transport::Tcp, 2222, 22), (Transport::Udp, 5353, 53)],
        );
        let containers = BTreeMap::from([(spec.site_id, ip("10.9.0.2"))]);
        let plan = RoutingPlan::new(shape(), &desired(vec![spec]), &containers);
        let elements: Vec<_> = plan.elements.values().copied().collect();
        assert!(elements.contains(&Element::Dedicated(ip("192.0.2.10"))));
        assert!(elements.contains(&Element::Dedicated(ip("2001:db8::10"))));
        assert!(elements.contains(&Element::Exposed {
            address: ip("192.0.2.10"),
            protocol: Transport::Udp,
            port: 5353,
            container: ip("10.9.0.2"),
            container_port: 53,
        }));
        assert!(elements.contains(&Element::Egress {
            container: ip("10.9.0.2"),
            address: ip("192.0.2.10"),
        }));
        assert_eq!(
            elements
                .iter()
                .filter(|e| matches!(e, Element::Exposed { .. }))
                .count(),
            2,
            "the IPv6 address forwards nothing to an IPv4-only container"
        );
        assert_eq!(
            elements
                .iter()
                .filter(|e| matches!(e, Element::Tier { .. }))
                .count(),
            2
        );
        assert!(plan.conflicts.is_empty());
    }

    #[test]
    fn a_stopped_site_keeps_its_address_closed() {
        let spec = site(&["192.0.2.10"], &[(Transport::Tcp, 2222, 22)]);
        let plan = RoutingPlan::new(shape(), &desired(vec![spec]), &BTreeMap::new());
        assert_eq!(
            plan.elements.values().copied().collect::<Vec<_>>(),
            [
                Element::Dedicated(ip("192.0.2.10")),
                Element::Tier {
                    address: ip("192.0.2.10"),
                    tier: LimitTier::Standard
                }
            ]
        );
    }

    #[test]
    fn a_colliding_address_is_reported_and_the_first_wins() {
        let first = site(&["192.0.2.10"], &[(Transport::Tcp, 2222, 22)]);
        let mut second = site(&["192.0.2.10"], &[(Transport::Tcp, 2222, 23)]);
        second.limit_tier = LimitTier::Large;
        let containers = BTreeMap::from([
            (first.site_id, ip("10.9.0.2")),
            (second.site_id, ip("10.9.0.3")),
        ]);
        let plan = RoutingPlan::new(shape(), &desired(vec![first, second]), &containers);
        assert_eq!(
            plan.elements[&Slot::Tier(ip("192.0.2.10"))],
            Element::Tier {
                address: ip("192.0.2.10"),
                tier: LimitTier::Standard
            }
        );
        assert_eq!(plan.conflicts.len(), 2, "{:?}", plan.conflicts);
    }

    #[test]
    fn changes_touch_only_what_differs() {
        let a = site(&["192.0.2.10"], &[(Transport::Tcp, 2222, 22)]);
        let b = site(&["192.0.2.11"], &[]);
        let containers = BTreeMap::from([(a.site_id, ip("10.9.0.2"))]);
        let before = RoutingPlan::new(shape(), &desired(vec![a.clone()]), &containers);
        let mut moved = a.clone();
        moved.exposed_ports[0].container_port = 2022;
        let after = RoutingPlan::new(shape(), &desired(vec![moved, b]), &containers);
        let (removed, added) = element_changes(&before.elements, &after.elements);
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(matches!(
            removed[0],
            Element::Exposed {
                container_port: 22,
                ..
            }
        ));
        assert_eq!(added.len(), 3, "{added:?}");
        let (none_removed, none_added) = element_changes(&after.elements, &after.elements);
        assert!(none_removed.is_empty() && none_added.is_empty());
    }
}
