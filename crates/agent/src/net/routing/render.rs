//! The table as nft JSON commands. Every value reaches nft as a typed JSON value (an address,
//! a number, a protocol name from an enum); the only names are constants or derived from the
//! node's id. No nft text is ever assembled, so no input can become a rule.
//!
//! Chain priorities, relative to Docker's own (iptables) chains on the same hooks:
//! - `prerouting` (nat, dstnat − 1 = −101) runs before Docker's DNAT (−100): a connection
//!   that alveole translates is never seen by Docker's nat rules.
//! - `postrouting` (nat, srcnat − 1 = 99) runs before Docker's MASQUERADE (100): the first
//!   source translation wins, so a site's egress leaves from its dedicated address.
//! - `guard` (filter, mangle = −150) counts new connections before any translation, on the
//!   address the client asked for.
//! - `input` (filter, −1) sits before Docker's and the host's own filters.

use serde_json::{Value, json};

use alveole_model::{LimitTier, Transport};

use super::plan::{Element, Shape};
use std::net::IpAddr;

/// The address families of the table's per-family sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(address: IpAddr) -> Self {
        if address.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    /// The payload protocol of the network header.
    fn protocol(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    fn icmp(self) -> &'static str {
        match self {
            Family::V4 => "icmp",
            Family::V6 => "ipv6-icmp",
        }
    }
}

/// The names of the table's sets and maps.
pub mod sets {
    use super::Family;

    pub fn dedicated(family: Family) -> String {
        format!("dedicated{}", family.suffix())
    }
    /// The container address an exposed port leads to.
    pub fn exposed_address(family: Family) -> String {
        format!("exposed_addr{}", family.suffix())
    }
    /// The container port an exposed port leads to. Two maps rather than one with a
    /// concatenated value: nft 1.0.6 (Debian 12) cannot read concatenated map values in JSON.
    pub fn exposed_port(family: Family) -> String {
        format!("exposed_port{}", family.suffix())
    }
    pub fn egress(family: Family) -> String {
        format!("egress{}", family.suffix())
    }
    pub fn tier(family: Family) -> String {
        format!("tier{}", family.suffix())
    }
    pub const INGRESS_PORTS: &str = "ingress_ports";

    /// Per-address state the packet path fills in (rates, connection counts): never compared.
    pub fn is_dynamic(name: &str) -> bool {
        name.starts_with("rate_") || name.starts_with("conn_")
    }

    /// Sets whose elements follow the sites (compared element by element).
    pub fn is_per_site(name: &str) -> bool {
        [
            "dedicated",
            "exposed_addr",
            "exposed_port",
            "egress",
            "tier",
        ]
        .iter()
        .any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|rest| rest == "4" || rest == "6")
        })
    }
}

fn tier_chain(tier: LimitTier) -> String {
    format!("tier_{}", tier.as_str())
}

fn rate_set(tier: LimitTier, family: Family) -> String {
    format!("rate_{}{}", tier.as_str(), family.suffix())
}

fn conn_set(tier: LimitTier, family: Family) -> String {
    format!("conn_{}{}", tier.as_str(), family.suffix())
}

fn address(family: Family, field: &str) -> Value {
    json!({"payload": {"protocol": family.protocol(), "field": field}})
}

fn tcp_dport() -> Value {
    json!({"payload": {"protocol": "tcp", "field": "dport"}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn is(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn is_not(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}

fn in_set(left: Value, set: &str) -> Value {
    is(left, json!(format!("@{set}")))
}

fn new_connection() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}})
}

fn counter() -> Value {
    json!({"counter": null})
}

/// The key of the exposed-port maps: destination address, transport, destination port.
fn exposed_key(family: Family) -> Value {
    json!({"concat": [address(family, "daddr"), meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]})
}

fn protocol_name(protocol: Transport) -> &'static str {
    protocol.as_str()
}

/// Builds commands for one table.
struct Table<'a> {
    shape: &'a Shape,
}

impl Table<'_> {
    fn object(&self, kind: &str, mut body: Value) -> Value {
        body["family"] = json!("inet");
        body["table"] = json!(self.shape.table);
        json!({"add": {kind: body}})
    }

    fn set(&self, name: &str, key: Value, extra: Value) -> Value {
        let mut body = json!({"name": name, "type": key});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.object("set", body)
    }

    fn map(&self, name: &str, key: Value, value: &str, elements: Vec<Value>) -> Value {
        let mut body = json!({"name": name, "type": key, "map": value});
        if !elements.is_empty() {
            body["elem"] = json!(elements);
        }
        self.object("map", body)
    }

    fn base_chain(&self, name: &str, kind: &str, hook: &str, priority: i32) -> Value {
        self.object(
            "chain",
            json!({"name": name, "type": kind, "hook": hook, "prio": priority, "policy": "accept"}),
        )
    }

    fn chain(&self, name: &str) -> Value {
        self.object("chain", json!({"name": name}))
    }

    fn rule(&self, chain: &str, expr: Vec<Value>) -> Value {
        self.object("rule", json!({"chain": chain, "expr": expr}))
    }

    /// The opt-in input filter, after the rules above: what they accepted stays accepted.
    /// Replies, loopback, ICMP (neighbour discovery among it) and what was translated to the
    /// ingress enter; the ingress's ports are open to all; the rest only from the allowed
    /// networks.
    fn input_filter(&self, filter: &alveole_model::InputFilter, commands: &mut Vec<Value>) {
        let accept = || json!({"accept": null});
        commands.push(self.rule("input", vec![is(meta("iifname"), json!("lo")), accept()]));
        commands.push(self.rule(
            "input",
            vec![
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}),
                accept(),
            ],
        ));
        commands.push(self.rule(
            "input",
            vec![
                json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                accept(),
            ],
        ));
        for family in Family::BOTH {
            commands.push(self.rule(
                "input",
                vec![is(meta("l4proto"), json!(family.icmp())), accept()],
            ));
        }
        let mut public = vec![json!(self.shape.ingress.http)];
        public.extend(self.shape.ingress.https.map(|https| json!(https)));
        commands.push(self.rule(
            "input",
            vec![is(tcp_dport(), json!({"set": public})), accept()],
        ));
        for family in Family::BOTH {
            let allowed: Vec<Value> = outermost(&filter.allowed)
                .into_iter()
                .filter(|p| Family::of(p.network()) == family)
                .map(|p| json!({"prefix": {"addr": p.network().to_string(), "len": p.length()}}))
                .collect();
            if !allowed.is_empty() {
                commands.push(self.rule(
                    "input",
                    vec![
                        is(address(family, "saddr"), json!({"set": allowed})),
                        accept(),
                    ],
                ));
            }
        }
        commands.push(self.rule("input", vec![counter(), json!({"drop": null})]));
    }

    /// Sets, maps, chains and rules: everything but the per-site elements.
    fn skeleton(&self) -> Vec<Value> {
        let mut commands = Vec::new();
        let bridge = json!(self.shape.bridge);
        let mut ingress = vec![json!([80, self.shape.ingress.http])];
        if let Some(https) = self.shape.ingress.https {
            ingress.push(json!([443, https]));
        }
        commands.push(self.map(
            sets::INGRESS_PORTS,
            json!("inet_service"),
            "inet_service",
            ingress,
        ));
        for family in Family::BOTH {
            let addr = family.address_type();
            let exposed_key = json!([addr, "inet_proto", "inet_service"]);
            commands.push(self.set(&sets::dedicated(family), json!(addr), json!({})));
            commands.push(self.map(
                &sets::exposed_address(family),
                exposed_key.clone(),
                addr,
                vec![],
            ));
            commands.push(self.map(
                &sets::exposed_port(family),
                exposed_key,
                "inet_service",
                vec![],
            ));
            commands.push(self.map(&sets::egress(family), json!(addr), addr, vec![]));
            commands.push(self.map(&sets::tier(family), json!(addr), "verdict", vec![]));
            for tier in LimitTier::ALL {
                commands.push(self.set(
                    &rate_set(tier, family),
                    json!(addr),
                    json!({"size": 65535, "flags": ["timeout"], "timeout": 60}),
                ));
                commands.push(self.set(
                    &conn_set(tier, family),
                    json!(addr),
                    json!({"size": 65535}),
                ));
            }
        }

        // Limits: one jump per packet through a verdict map, whatever the number of sites.
        commands.push(self.base_chain("guard", "filter", "prerouting", -150));
        for tier in LimitTier::ALL {
            let chain = tier_chain(tier);
            commands.push(self.chain(&chain));
            for family in Family::BOTH {
                let rate = tier.new_connections_per_second();
                commands.push(self.rule(
                    &chain,
                    vec![
                        new_connection(),
                        json!({"set": {"op": "add", "elem": address(family, "daddr"), "set": format!("@{}", rate_set(tier, family)),
                            "stmt": [{"limit": {"rate": rate, "burst": rate, "per": "second", "inv": true}}]}}),
                        counter(),
                        json!({"drop": null}),
                    ],
                ));
                commands.push(self.rule(
                    &chain,
                    vec![
                        new_connection(),
                        json!({"set": {"op": "add", "elem": address(family, "daddr"), "set": format!("@{}", conn_set(tier, family)),
                            "stmt": [{"ct count": {"val": tier.max_connections(), "inv": true}}]}}),
                        counter(),
                        json!({"drop": null}),
                    ],
                ));
            }
        }
        for family in Family::BOTH {
            commands.push(self.rule(
                "guard",
                vec![json!({"vmap": {"key": address(family, "daddr"), "data": format!("@{}", sets::tier(family))}})],
            ));
        }

        // Ports 80/443 of a dedicated address to the ingress, declared ports to containers.
        commands.push(self.base_chain("prerouting", "nat", "prerouting", -101));
        for family in Family::BOTH {
            commands.push(self.rule(
                "prerouting",
                vec![
                    in_set(address(family, "daddr"), &sets::dedicated(family)),
                    in_set(tcp_dport(), sets::INGRESS_PORTS),
                    counter(),
                    json!({"redirect": {"port": {"map": {"key": tcp_dport(), "data": format!("@{}", sets::INGRESS_PORTS)}}}}),
                ],
            ));
        }
        for family in Family::BOTH {
            commands.push(self.rule(
                "prerouting",
                vec![
                    in_set(address(family, "daddr"), &sets::dedicated(family)),
                    counter(),
                    json!({"dnat": {
                        "family": family.protocol(),
                        "addr": {"map": {"key": exposed_key(family), "data": format!("@{}", sets::exposed_address(family))}},
                        "port": {"map": {"key": exposed_key(family), "data": format!("@{}", sets::exposed_port(family))}},
                    }}),
                ],
            ));
        }

        // The host's own services are not the sites': nothing enters it from the bridge but
        // replies, and a dedicated address answers only on what was translated above.
        commands.push(self.base_chain("input", "filter", "input", -1));
        let from_bridge = || is(meta("iifname"), bridge.clone());
        commands.push(self.rule(
            "input",
            vec![
                from_bridge(),
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}),
                json!({"accept": null}),
            ],
        ));
        commands.push(self.rule(
            "input",
            vec![from_bridge(), counter(), json!({"drop": null})],
        ));
        for family in Family::BOTH {
            let to_dedicated = || in_set(address(family, "daddr"), &sets::dedicated(family));
            // Neighbour discovery and ping keep working on the address.
            commands.push(self.rule(
                "input",
                vec![
                    to_dedicated(),
                    is(meta("l4proto"), json!(family.icmp())),
                    json!({"accept": null}),
                ],
            ));
            commands.push(self.rule(
                "input",
                vec![
                    to_dedicated(),
                    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                    json!({"accept": null}),
                ],
            ));
            commands.push(self.rule(
                "input",
                vec![to_dedicated(), counter(), json!({"drop": null})],
            ));
        }

        if let Some(filter) = &self.shape.input_filter {
            self.input_filter(filter, &mut commands);
        }

        // A site's connections leave from its dedicated address.
        commands.push(self.base_chain("postrouting", "nat", "postrouting", 99));
        for family in Family::BOTH {
            commands.push(self.rule(
                "postrouting",
                vec![
                    is_not(meta("oifname"), bridge.clone()),
                    json!({"snat": {"family": family.protocol(), "addr": {"map": {"key": address(family, "saddr"), "data": format!("@{}", sets::egress(family))}}}}),
                ],
            ));
        }
        commands
    }
}

/// The prefixes no other one of the list holds: an interval set refuses overlaps.
fn outermost(prefixes: &[alveole_model::Prefix]) -> Vec<alveole_model::Prefix> {
    prefixes
        .iter()
        .filter(|p| {
            !prefixes
                .iter()
                .any(|q| q != *p && q.contains(p.network()) && q.length() < p.length())
        })
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The key of an element in its set or map, and the set's name.
fn key_of(element: &Element) -> Vec<(String, Value)> {
    match *element {
        Element::Dedicated(a) => vec![(sets::dedicated(Family::of(a)), json!(a.to_string()))],
        Element::Exposed {
            address,
            protocol,
            port,
            ..
        } => {
            let family = Family::of(address);
            let key = json!({"concat": [address.to_string(), protocol_name(protocol), port]});
            vec![
                (sets::exposed_address(family), key.clone()),
                (sets::exposed_port(family), key),
            ]
        }
        Element::Egress { container, .. } => {
            vec![(
                sets::egress(Family::of(container)),
                json!(container.to_string()),
            )]
        }
        Element::Tier { address, .. } => {
            vec![(sets::tier(Family::of(address)), json!(address.to_string()))]
        }
    }
}

/// An element as it is added: its key with, for maps, its value.
fn entries_of(element: &Element) -> Vec<(String, Value)> {
    let keys = key_of(element);
    match *element {
        Element::Dedicated(_) => keys,
        Element::Exposed {
            container,
            container_port,
            ..
        } => vec![
            (keys[0].0.clone(), json!([keys[0].1, container.to_string()])),
            (keys[1].0.clone(), json!([keys[1].1, container_port])),
        ],
        Element::Egress { address, .. } => {
            vec![(keys[0].0.clone(), json!([keys[0].1, address.to_string()]))]
        }
        Element::Tier { tier, .. } => vec![(
            keys[0].0.clone(),
            json!([keys[0].1, {"jump": {"target": tier_chain(tier)}}]),
        )],
    }
}

/// `verb` (add or delete) element commands, one per set, in a stable order.
fn element_commands(
    shape: &Shape,
    verb: &str,
    entries: impl Iterator<Item = (String, Value)>,
) -> Vec<Value> {
    let mut by_set: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (set, entry) in entries {
        by_set.entry(set).or_default().push(entry);
    }
    by_set
        .into_iter()
        .map(|(set, elem)| {
            json!({verb: {"element": {"family": "inet", "table": shape.table, "name": set, "elem": elem}}})
        })
        .collect()
}

/// The whole table, replacing whatever holds its name, in one transaction: `add` (so the
/// delete cannot fail), `delete`, then everything again. Returned as the batch's text: the
/// elements are written straight into it, since building a `Value` per element cost more
/// than nft's own parsing at 40,000 elements.
pub fn full<'a>(shape: &Shape, elements: impl Iterator<Item = &'a Element>) -> String {
    let table = Table { shape };
    let name = json!({"family": "inet", "name": shape.table});
    let mut head = vec![
        json!({"add": {"table": name}}),
        json!({"delete": {"table": name}}),
        json!({"add": {"table": name}}),
    ];
    head.extend(table.skeleton());
    let mut by_set: std::collections::BTreeMap<&'static str, Vec<Entry>> = Default::default();
    for element in elements {
        for (set, entry) in entries(element) {
            by_set.entry(set).or_default().push(entry);
        }
    }
    let mut batch = Vec::with_capacity(64 * by_set.values().map(Vec::len).sum::<usize>() + 4096);
    batch.extend_from_slice(b"{\"nftables\":[");
    for (i, command) in head.iter().enumerate() {
        if i > 0 {
            batch.push(b',');
        }
        write_json(&mut batch, command);
    }
    for (set, entries) in &by_set {
        batch.extend_from_slice(b",{\"add\":{\"element\":{\"family\":\"inet\",\"table\":");
        write_json(&mut batch, &shape.table);
        batch.extend_from_slice(b",\"name\":");
        write_json(&mut batch, set);
        batch.extend_from_slice(b",\"elem\":");
        write_json(&mut batch, entries);
        batch.extend_from_slice(b"}}}");
    }
    batch.extend_from_slice(b"]}");
    // Only JSON was written, which is UTF-8.
    String::from_utf8(batch).unwrap_or_default()
}

/// Appends `value` as JSON (it cannot fail on these types: no map with non-string keys).
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    if let Err(error) = serde_json::to_writer(&mut *out, value) {
        tracing::error!(%error, "could not write part of the table's batch");
    }
}

/// One entry of a set or map, as the batch writes it.
enum Entry {
    /// A set's key: `"192.0.2.1"`.
    Address(IpAddr),
    /// `[key, value]`.
    Mapped(Key, Mapped),
}

enum Key {
    Address(IpAddr),
    /// `{"concat": ["192.0.2.1", "tcp", 2222]}`.
    Exposed(IpAddr, Transport, u16),
}

enum Mapped {
    Address(IpAddr),
    Port(u16),
    /// `{"jump": {"target": "tier_small"}}`.
    Jump(LimitTier),
}

/// An address written through its `Display`, without a `String` in between.
struct Shown(IpAddr);

impl serde::Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match *self {
            Key::Address(address) => Shown(address).serialize(s),
            Key::Exposed(address, protocol, port) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("concat", &(Shown(address), protocol_name(protocol), port))?;
                map.end()
            }
        }
    }
}

impl serde::Serialize for Mapped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Mapped::Address(address) => Shown(address).serialize(s),
            Mapped::Port(port) => s.serialize_u16(port),
            Mapped::Jump(tier) => json!({"jump": {"target": tier_chain(tier)}}).serialize(s),
        }
    }
}

impl serde::Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Address(address) => Shown(*address).serialize(s),
            Entry::Mapped(key, value) => (key, value).serialize(s),
        }
    }
}

/// The entries one element adds, with the set or map each goes in (the same as
/// [`entries_of`], typed).
fn entries(element: &Element) -> Vec<(&'static str, Entry)> {
    let set = |base: &'static str, family: Family| -> &'static str {
        match (base, family) {
            ("dedicated", Family::V4) => "dedicated4",
            ("dedicated", Family::V6) => "dedicated6",
            ("exposed_addr", Family::V4) => "exposed_addr4",
            ("exposed_addr", Family::V6) => "exposed_addr6",
            ("exposed_port", Family::V4) => "exposed_port4",
            ("exposed_port", Family::V6) => "exposed_port6",
            ("egress", Family::V4) => "egress4",
            ("egress", Family::V6) => "egress6",
            (_, Family::V4) => "tier4",
            (_, Family::V6) => "tier6",
        }
    };
    match *element {
        Element::Dedicated(a) => vec![(set("dedicated", Family::of(a)), Entry::Address(a))],
        Element::Exposed {
            address,
            protocol,
            port,
            container,
            container_port,
        } => {
            let family = Family::of(address);
            vec![
                (
                    set("exposed_addr", family),
                    Entry::Mapped(
                        Key::Exposed(address, protocol, port),
                        Mapped::Address(container),
                    ),
                ),
                (
                    set("exposed_port", family),
                    Entry::Mapped(
                        Key::Exposed(address, protocol, port),
                        Mapped::Port(container_port),
                    ),
                ),
            ]
        }
        Element::Egress { container, address } => vec![(
            set("egress", Family::of(container)),
            Entry::Mapped(Key::Address(container), Mapped::Address(address)),
        )],
        Element::Tier { address, tier } => vec![(
            set("tier", Family::of(address)),
            Entry::Mapped(Key::Address(address), Mapped::Jump(tier)),
        )],
    }
}

/// Removes `removed` and adds `added`, in one transaction (a changed element is both).
pub fn changes(shape: &Shape, removed: &[Element], added: &[Element]) -> Value {
    let mut commands = element_commands(shape, "delete", removed.iter().flat_map(key_of));
    commands.extend(element_commands(
        shape,
        "add",
        added.iter().flat_map(entries_of),
    ));
    json!({"nftables": commands})
}

/// Deletes a table of alveole's (a retired node, a former version's table, tests).
pub fn delete(table: &str) -> Value {
    let name = json!({"family": "inet", "name": table});
    json!({"nftables": [{"add": {"table": name}}, {"delete": {"table": name}}]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runtime::Naming;
    use alveole_model::NodeId;

    /// The streamed batch holds exactly the element commands the `Value` path would build
    /// (the one `changes` still uses), for every kind of element in both families.
    #[test]
    fn the_streamed_batch_says_what_the_value_path_says() {
        let shape = Shape::of(
            &Naming {
                node_id: NodeId::generate(),
            },
            super::super::plan::IngressPorts {
                http: 8080,
                https: Some(8443),
            },
        );
        let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
        let mut elements = Vec::new();
        for (public, container) in [("192.0.2.7", "10.1.0.2"), ("2001:db8::7", "fd00::2")] {
            elements.push(Element::Dedicated(ip(public)));
            elements.push(Element::Exposed {
                address: ip(public),
                protocol: Transport::Udp,
                port: 5353,
                container: ip(container),
                container_port: 53,
            });
            elements.push(Element::Egress {
                container: ip(container),
                address: ip(public),
            });
            elements.push(Element::Tier {
                address: ip(public),
                tier: LimitTier::Large,
            });
        }
        let batch: Value = serde_json::from_str(&full(&shape, elements.iter())).unwrap();
        let commands = batch["nftables"].as_array().unwrap();
        let streamed: Vec<&Value> = commands
            .iter()
            .filter(|c| c["add"].get("element").is_some())
            .collect();
        let expected = element_commands(&shape, "add", elements.iter().flat_map(entries_of));
        assert_eq!(streamed.len(), 10, "each set and map of both families");
        assert_eq!(streamed, expected.iter().collect::<Vec<_>>());
        // The skeleton comes first, whole.
        let table = Table { shape: &shape };
        assert_eq!(commands.len(), 3 + table.skeleton().len() + expected.len());
    }
}
