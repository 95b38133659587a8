//! The node's nftables table against the real kernel, in network namespaces the tests create:
//! a client, a node (the table, its ingress, its own services) and a backend standing for a
//! site's container. Public addresses are documentation ranges.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use alveole_agent::engine::runtime::Naming;
use alveole_agent::net::routing::{
    IngressPorts, Nft, NftCommand, Router, RoutingPlan, Shape, listing::Listing,
};
use alveole_model::{DesiredState, ExposedPort, LimitTier, NodeId, SiteId, SiteSpec, Transport};
use alveole_tests::netns::{Netns, ask_tcp, ask_udp, dropped, link, serve_tcp, serve_udp};

const CLIENT: &str = "198.51.100.2";
const DEDICATED: &str = "192.0.2.10";
const SECOND: &str = "192.0.2.11";
const CONTAINER: &str = "10.9.0.2";
const INGRESS_PORT: u16 = 8080;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Client ⇄ node ⇄ backend, with the node's own services, its ingress and the backend's
/// servers listening.
struct Lab {
    client: Netns,
    node: Netns,
    backend: Netns,
    shape: Shape,
}

impl Lab {
    fn new() -> Option<Self> {
        if !alveole_tests::netns::available() {
            return None;
        }
        let (client, node, backend) = (Netns::new("c"), Netns::new("n"), Netns::new("b"));
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let shape = Shape::of(
            &naming,
            IngressPorts {
                http: INGRESS_PORT,
                https: None,
            },
        );
        link(&client, "c0", &node, "n0");
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "c0"]);
        client.ip(&["route", "add", "192.0.2.0/24", "via", "198.51.100.1"]);
        node.ip(&["addr", "add", "198.51.100.1/24", "dev", "n0"]);
        node.ip(&["addr", "add", &format!("{DEDICATED}/32"), "dev", "n0"]);
        node.ip(&["addr", "add", &format!("{SECOND}/32"), "dev", "n0"]);
        // The backend hangs off an interface named like the node's container bridge.
        link(&node, &shape.bridge, &backend, "b0");
        node.ip(&["addr", "add", "10.9.0.1/24", "dev", &shape.bridge]);
        node.sysctl("net.ipv4.ip_forward", "1");
        backend.ip(&["addr", "add", &format!("{CONTAINER}/24"), "dev", "b0"]);
        backend.ip(&["route", "add", "default", "via", "10.9.0.1"]);
        serve_tcp(&node, INGRESS_PORT, "ingress");
        serve_tcp(&node, 2223, "host");
        serve_tcp(&backend, 22, "backend");
        serve_udp(&backend, 53, "backend");
        serve_tcp(&client, 9000, "outside");
        Some(Self {
            client,
            node,
            backend,
            shape,
        })
    }

    fn router(&self) -> Router<NftCommand> {
        Router::new(NftCommand::in_netns(&self.node.name))
    }

    fn nft(&self, command: &str) {
        let args: Vec<&str> = command.split(' ').collect();
        self.node.exec("nft", &args);
    }

    fn listing(&self) -> Listing {
        let text = NftCommand::in_netns(&self.node.name)
            .list_table(&self.shape.table, true)
            .unwrap()
            .expect("the table is there");
        Listing::parse(&text).unwrap()
    }
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
    spec.dedicated_addresses = addresses.iter().map(|a| ip(a)).collect();
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

fn plan(shape: &Shape, sites: &[SiteSpec], running: &[(SiteId, &str)]) -> RoutingPlan {
    let desired = DesiredState {
        node_id: NodeId::generate(),
        generation: 1,
        sites: sites.to_vec(),
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let containers: BTreeMap<SiteId, IpAddr> = running
        .iter()
        .map(|(site, address)| (*site, ip(address)))
        .collect();
    RoutingPlan::new(shape.clone(), &desired, &containers)
}

fn the_site() -> SiteSpec {
    site(
        &[DEDICATED],
        &[(Transport::Tcp, 2222, 22), (Transport::Udp, 5353, 53)],
    )
}

#[test]
fn a_dedicated_address_leads_to_the_ingress_and_the_container_and_nowhere_else() {
    let Some(lab) = Lab::new() else { return };
    // Before the table: the node's own service answers on the dedicated address.
    assert_eq!(
        ask_tcp(&lab.client, DEDICATED, 2223).unwrap(),
        format!("host {CLIENT}")
    );
    let spec = the_site();
    let mut router = lab.router();
    let outcome = router
        .ensure(&plan(
            &lab.shape,
            std::slice::from_ref(&spec),
            &[(spec.site_id, CONTAINER)],
        ))
        .unwrap();
    assert!(outcome.replaced && outcome.drift.is_none(), "{outcome:?}");

    assert_eq!(
        ask_tcp(&lab.client, DEDICATED, 80).unwrap(),
        format!("ingress {CLIENT}"),
        "port 80 reaches the ingress, with the client's address"
    );
    assert_eq!(
        ask_tcp(&lab.client, DEDICATED, 2222).unwrap(),
        format!("backend {CLIENT}"),
        "an exposed port reaches the container, with the client's address"
    );
    assert_eq!(
        ask_udp(&lab.client, DEDICATED, 5353).unwrap(),
        format!("backend {CLIENT}")
    );
    let closed = ask_tcp(&lab.client, DEDICATED, 2223);
    assert!(
        dropped(closed.clone()),
        "a closed port is dropped: {closed:?}"
    );
    assert!(
        dropped(ask_tcp(&lab.client, DEDICATED, 443)),
        "443 is closed while the ingress has no TLS listener"
    );
    assert_eq!(
        ask_tcp(&lab.backend, CLIENT, 9000).unwrap(),
        format!("outside {DEDICATED}"),
        "the site's connections leave from its dedicated address"
    );
    assert!(
        dropped(ask_tcp(&lab.backend, "10.9.0.1", INGRESS_PORT)),
        "a site cannot reach the host's own services through the bridge"
    );
    let counters = lab.listing().counters;
    assert!(
        counters["prerouting"].iter().sum::<u64>() >= 3,
        "{counters:?}"
    );
    assert!(counters["input"].iter().sum::<u64>() >= 2, "{counters:?}");
}

#[test]
fn adding_or_removing_a_site_changes_only_elements() {
    let Some(lab) = Lab::new() else { return };
    let first = the_site();
    let second = site(&[SECOND], &[(Transport::Tcp, 2022, 22)]);
    let mut router = lab.router();
    router
        .ensure(&plan(
            &lab.shape,
            std::slice::from_ref(&first),
            &[(first.site_id, CONTAINER)],
        ))
        .unwrap();
    let skeleton = lab.listing().skeleton;
    assert!(
        ask_tcp(&lab.client, SECOND, 2022).is_err(),
        "not the second site's yet"
    );

    let both = plan(
        &lab.shape,
        &[first.clone(), second.clone()],
        &[(first.site_id, CONTAINER), (second.site_id, CONTAINER)],
    );
    let outcome = router.ensure(&both).unwrap();
    assert!(!outcome.replaced, "{outcome:?}");
    // Address, tier and port; not an egress: both sites share the one backend here, and a
    // container's egress slot is taken by the first site (reported as a conflict).
    assert_eq!((outcome.removed, outcome.added), (0, 3), "{outcome:?}");
    assert_eq!(both.conflicts.len(), 1, "{:?}", both.conflicts);
    assert_eq!(lab.listing().skeleton, skeleton, "no rule changed");
    assert_eq!(lab.listing().elements, both.elements);
    assert_eq!(
        ask_tcp(&lab.client, SECOND, 2022).unwrap(),
        format!("backend {CLIENT}")
    );

    // The first site stops: its address stays closed, its ports lead nowhere.
    let stopped = plan(
        &lab.shape,
        &[first.clone(), second.clone()],
        &[(second.site_id, CONTAINER)],
    );
    let outcome = router.ensure(&stopped).unwrap();
    assert!(!outcome.replaced && outcome.removed == 3, "{outcome:?}");
    assert!(dropped(ask_tcp(&lab.client, DEDICATED, 2222)));
    assert_eq!(
        ask_tcp(&lab.client, SECOND, 2022).unwrap(),
        format!("backend {CLIENT}")
    );
    assert_eq!(
        router.ensure(&stopped).unwrap(),
        Default::default(),
        "a second pass changes nothing"
    );
}

/// The opt-in input filter: the host's own services answer only the allowed networks; the
/// ingress answers everyone; the node's own connections out still get their replies; taking
/// the filter away opens the services again.
#[test]
fn the_input_filter_lets_only_allowed_networks_reach_the_hosts_own_services() {
    let Some(lab) = Lab::new() else { return };
    // A second client, on an allowed network.
    let trusted = Netns::new("t");
    link(&trusted, "t0", &lab.node, "n2");
    trusted.ip(&["addr", "add", "203.0.113.2/24", "dev", "t0"]);
    trusted.ip(&["route", "add", "198.51.100.0/24", "via", "203.0.113.1"]);
    lab.node.ip(&["addr", "add", "203.0.113.1/24", "dev", "n2"]);
    let allowed = |networks: &[&str]| alveole_model::InputFilter {
        allowed: networks
            .iter()
            .map(|n| alveole_model::Prefix::parse_or_host(n).unwrap())
            .collect(),
    };
    let mut router = lab.router();
    let site = the_site();
    let running = [(site.site_id, CONTAINER)];
    let open = plan(&lab.shape, std::slice::from_ref(&site), &running);
    router.ensure(&open).unwrap();
    assert_eq!(
        ask_tcp(&lab.client, "198.51.100.1", 2223).unwrap(),
        format!("host {CLIENT}"),
        "no filter: the host's service answers anyone"
    );

    // An address inside an allowed network, and IPv6: overlapping entries are fine.
    let filter = allowed(&["203.0.113.0/24", "203.0.113.9", "2001:db8::/32"]);
    let mut filtered = open.clone();
    filtered.shape = lab.shape.clone().with_input_filter(Some(&filter));
    let outcome = router.ensure(&filtered).unwrap();
    assert!(outcome.replaced, "the filter changes the table's shape");
    assert!(
        dropped(ask_tcp(&lab.client, "198.51.100.1", 2223)),
        "a stranger does not reach the host's service"
    );
    assert_eq!(
        ask_tcp(&trusted, "198.51.100.1", 2223).unwrap(),
        "host 203.0.113.2",
        "an allowed network does"
    );
    assert_eq!(
        ask_tcp(&lab.client, "198.51.100.1", INGRESS_PORT).unwrap(),
        format!("ingress {CLIENT}"),
        "the ingress answers everyone"
    );
    assert_eq!(
        ask_tcp(&lab.client, DEDICATED, 2222).unwrap(),
        format!("backend {CLIENT}"),
        "sites' exposed ports too"
    );
    assert_eq!(
        ask_tcp(&lab.node, CLIENT, 9000).unwrap(),
        "outside 198.51.100.1",
        "the node's own connections get their replies"
    );
    assert_eq!(
        router.ensure(&filtered).unwrap(),
        Default::default(),
        "a second pass changes nothing (no drift found in the filter's rules)"
    );

    // Taken away: open again.
    router.ensure(&open).unwrap();
    assert_eq!(
        ask_tcp(&lab.client, "198.51.100.1", 2223).unwrap(),
        format!("host {CLIENT}")
    );
}

/// Small transactions go through one running `nft -j -i`: a refused batch changes nothing and
/// says why, and the session goes on serving the next batches.
#[test]
fn the_running_nft_session_applies_small_batches_whole_or_not_at_all() {
    if !alveole_tests::netns::available() {
        return;
    }
    let ns = Netns::new("session");
    let nft = NftCommand::in_netns(&ns.name);
    nft.apply(
        r#"{"nftables":[{"add":{"table":{"family":"inet","name":"probe"}}},{"add":{"set":{"family":"inet","table":"probe","name":"s","type":"ipv4_addr"}}}]}"#,
    )
    .unwrap();
    let element = |verb: &str, address: &str| {
        format!(
            r#"{{"nftables":[{{"{verb}":{{"element":{{"family":"inet","table":"probe","name":"s","elem":["{address}"]}}}}}}]}}"#
        )
    };
    let elements = || {
        let listing = nft.list_table("probe", true).unwrap().unwrap();
        let root: serde_json::Value = serde_json::from_str(&listing).unwrap();
        root["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| item["set"]["elem"].as_array().cloned())
            .flatten()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for round in 0..50 {
        nft.apply(&element("add", "192.0.2.1")).unwrap();
        nft.apply(&element("delete", "192.0.2.1")).unwrap();
        assert!(elements().is_empty(), "round {round}");
    }
    nft.apply(&element("add", "192.0.2.1")).unwrap();
    // One good element and one for a set that does not exist, in one batch: neither lands.
    let refused = nft
        .apply(
            r#"{"nftables":[{"add":{"element":{"family":"inet","table":"probe","name":"s","elem":["192.0.2.2"]}}},{"add":{"element":{"family":"inet","table":"probe","name":"missing","elem":["192.0.2.3"]}}}]}"#,
        )
        .unwrap_err();
    assert!(refused.to_string().contains("No such file"), "{refused}");
    assert_eq!(elements(), ["192.0.2.1"]);
    nft.apply(&element("add", "192.0.2.4")).unwrap();
    assert_eq!(
        elements(),
        ["192.0.2.1", "192.0.2.4"],
        "the session still works"
    );
    // A clone shares the session; batches may come from several threads.
    let threads: Vec<_> = (5..9)
        .map(|i| {
            let (nft, batch) = (nft.clone(), element("add", &format!("192.0.2.{i}")));
            std::thread::spawn(move || nft.apply(&batch))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    assert_eq!(elements().len(), 6);

    // The session's nft killed: the next batch still lands (nft run once), then a new
    // session serves.
    let first = nft.session_pid().expect("a running session");
    alveole_tests::netns::sh("kill", &["-9", &first.to_string()]);
    nft.apply(&element("add", "192.0.2.20")).unwrap();
    nft.apply(&element("add", "192.0.2.21")).unwrap();
    assert_eq!(elements().len(), 8);
    let second = nft.session_pid().expect("a new session");
    assert_ne!(first, second);
}

#[test]
fn every_kind_of_drift_is_repaired_and_described_and_other_tables_are_left_alone() {
    let Some(lab) = Lab::new() else { return };
    // Someone else's table, which alveole must never touch.
    lab.nft("add table inet foreign");
    lab.nft("add chain inet foreign input { type filter hook input priority 10 ; }");
    lab.nft("add rule inet foreign input tcp dport 7 counter accept");
    let foreign = || {
        lab.node
            .exec("nft", &["-s", "list", "table", "inet", "foreign"])
    };
    let foreign_before = foreign();

    let spec = the_site();
    let wanted = plan(
        &lab.shape,
        std::slice::from_ref(&spec),
        &[(spec.site_id, CONTAINER)],
    );
    let mut router = lab.router();
    router.ensure(&wanted).unwrap();
    let table = lab.shape.table.clone();
    let works = |lab: &Lab| ask_tcp(&lab.client, DEDICATED, 2222).is_ok();

    let cases: [(&str, String, &str); 4] = [
        (
            "flushed table",
            format!("flush table inet {table}"),
            "- rule",
        ),
        (
            "deleted table",
            format!("delete table inet {table}"),
            "- table inet",
        ),
        (
            "deleted element",
            format!("delete element inet {table} exposed_port4 {{ {DEDICATED} . tcp . 2222 }}"),
            "- exposed tcp 192.0.2.10:2222 → 10.9.0.2:22",
        ),
        (
            "rogue rule",
            format!("insert rule inet {table} input tcp dport 2223 accept"),
            "+ rule",
        ),
    ];
    for (kind, command, expected) in cases {
        lab.nft(&command);
        let outcome = router.ensure(&wanted).unwrap();
        let drift = outcome
            .drift
            .unwrap_or_else(|| panic!("{kind}: not detected"));
        assert!(
            drift.lines.iter().any(|l| l.starts_with(expected)),
            "{kind}: {:?}",
            drift.lines
        );
        assert!(!drift.docker_rules_lost, "{kind}");
        assert!(outcome.replaced, "{kind}: repaired by a whole replacement");
        assert!(works(&lab), "{kind}: traffic flows again");
        assert!(
            dropped(ask_tcp(&lab.client, DEDICATED, 2223)),
            "{kind}: the rogue rule is gone"
        );
        assert_eq!(
            router.ensure(&wanted).unwrap().drift,
            None,
            "{kind}: repaired for good"
        );
    }
    assert_eq!(foreign(), foreign_before, "the foreign table is untouched");

    // `nft flush ruleset` takes Docker's chains too (iptables-nft keeps them in nf_tables):
    // stand-ins here, the real engine in the Docker test.
    lab.nft("add table ip nat");
    lab.nft("add chain ip nat DOCKER");
    router.ensure(&wanted).unwrap();
    lab.nft("flush ruleset");
    let drift = router.ensure(&wanted).unwrap().drift.expect("detected");
    assert!(drift.docker_rules_lost, "{drift:?}");
    assert!(
        drift.lines.iter().any(|l| l.contains("restart Docker")),
        "{drift:?}"
    );
    assert!(works(&lab));
}

#[test]
fn limit_tiers_drop_new_connections_beyond_the_tiers_rate() {
    let Some(lab) = Lab::new() else { return };
    let mut spec = the_site();
    spec.limit_tier = LimitTier::Small;
    let mut router = lab.router();
    router
        .ensure(&plan(
            &lab.shape,
            std::slice::from_ref(&spec),
            &[(spec.site_id, CONTAINER)],
        ))
        .unwrap();
    // More connections at once than the small tier's burst: some must be dropped, and the
    // tier's counters say so. Bounded: burst + 40 attempts.
    let attempts = LimitTier::Small.new_connections_per_second() + 30;
    let dropped_count = lab.client.within(move || {
        let to = SocketAddr::new(ip(DEDICATED), 2222);
        (0..attempts)
            .filter(|_| TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_err())
            .count()
    });
    assert!(dropped_count > 0, "no connection was dropped");
    let counters = lab.listing().counters;
    assert!(
        counters["tier_small"].iter().sum::<u64>() > 0,
        "{counters:?}"
    );
    assert_eq!(
        counters["tier_large"].iter().sum::<u64>(),
        0,
        "other tiers are not involved"
    );
}

mod properties {
    use super::*;
    use alveole_agent::net::routing::render;
    use proptest::prelude::*;

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::from(std::net::Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::from(std::net::Ipv6Addr::from(a))),
        ]
    }

    fn transport() -> impl Strategy<Value = Transport> {
        prop_oneof![Just(Transport::Tcp), Just(Transport::Udp)]
    }

    fn tier() -> impl Strategy<Value = LimitTier> {
        prop_oneof![
            Just(LimitTier::Small),
            Just(LimitTier::Standard),
            Just(LimitTier::Large)
        ]
    }

    /// Sites with any addresses (duplicates, IPv4 and IPv6 mixed, 0.0.0.0, multicast...),
    /// any ports (0 included: the agent does not trust the panel to have validated them),
    /// any tier, running or not.
    fn sites() -> impl Strategy<Value = Vec<(SiteSpec, Option<IpAddr>)>> {
        let site = (
            prop::collection::vec(address(), 0..3),
            prop::collection::vec((transport(), any::<u16>(), any::<u16>()), 0..4),
            tier(),
            prop::option::of(address()),
        )
            .prop_map(|(addresses, ports, tier, container)| {
                let mut spec = site(&[], &[]);
                spec.dedicated_addresses = addresses;
                spec.exposed_ports = ports
                    .into_iter()
                    .map(|(protocol, port, container_port)| ExposedPort {
                        protocol,
                        port,
                        container_port,
                    })
                    .collect();
                spec.limit_tier = tier;
                (spec, container)
            });
        prop::collection::vec(site, 0..12)
    }

    fn prefix() -> impl Strategy<Value = alveole_model::Prefix> {
        (address(), any::<u8>()).prop_map(|(address, length)| {
            let bits = if address.is_ipv4() { 33 } else { 129 };
            let text = format!("{address}/{}", length % bits);
            // Host bits set: the network of that prefix instead.
            alveole_model::Prefix::parse(&text).unwrap_or_else(|e| {
                let canonical = e.message.rsplit(' ').next().unwrap_or_default().to_owned();
                alveole_model::Prefix::parse(&canonical).unwrap()
            })
        })
    }

    /// What `nft -c` (check only) says against `batch` in `scratch`, if it refuses it.
    fn nft_refuses(scratch: &Netns, batch: String) -> Option<String> {
        let checked = scratch.within(move || {
            let mut child = std::process::Command::new("nft")
                .args(["-c", "-j", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), batch.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        });
        (!checked.status.success()).then(|| String::from_utf8_lossy(&checked.stderr).into_owned())
    }

    fn parsed(batch: &str) -> serde_json::Value {
        serde_json::from_str(batch).expect("the batch is JSON")
    }

    fn rules_of(batch: &serde_json::Value) -> Vec<String> {
        batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["add"].get("rule").is_some())
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn any_plan_renders_a_table_nft_accepts_and_inputs_never_become_rules() {
        if !alveole_tests::netns::available() {
            return;
        }
        let scratch = Netns::new("p");
        let shape = Shape::of(
            &Naming {
                node_id: NodeId::generate(),
            },
            IngressPorts {
                http: INGRESS_PORT,
                https: Some(8443),
            },
        );
        let rules_without_sites = rules_of(&parsed(&render::full(&shape, std::iter::empty())));
        let config = ProptestConfig {
            cases: 48,
            ..ProptestConfig::default()
        };
        proptest!(config, |(sites in sites())| {
            let running: Vec<(SiteId, IpAddr)> = sites
                .iter()
                .filter_map(|(spec, container)| Some((spec.site_id, (*container)?)))
                .collect();
            let specs: Vec<SiteSpec> = sites.into_iter().map(|(spec, _)| spec).collect();
            let desired = DesiredState {
                node_id: NodeId::generate(),
                generation: 1,
                sites: specs,
                purge_volumes: vec![],
                addresses: vec![],
                input_filter: None,
                moves_out: vec![],
                moves_in: vec![],
                restores: vec![],
                drills: vec![],
                acme_challenges: vec![],
                vault: None,
            };
            let plan = RoutingPlan::new(shape.clone(), &desired, &running.into_iter().collect());
            let text = render::full(&plan.shape, plan.elements.values());
            let batch = parsed(&text);
            // The rules are the same whatever the sites: inputs only ever become elements.
            prop_assert_eq!(rules_of(&batch), rules_without_sites.clone());
            let refused = nft_refuses(&scratch, text);
            prop_assert!(refused.is_none(), "nft -c refused: {:?}", refused);
        });
    }

    /// Whatever the admins list (overlapping networks, single addresses, /0, both families),
    /// the filter renders to a table nft accepts, and the allow list adds at most one rule
    /// per family.
    #[test]
    fn any_allow_list_renders_an_input_filter_nft_accepts() {
        if !alveole_tests::netns::available() {
            return;
        }
        let scratch = Netns::new("f");
        let shape = Shape::of(
            &Naming {
                node_id: NodeId::generate(),
            },
            IngressPorts {
                http: INGRESS_PORT,
                https: Some(8443),
            },
        );
        let unfiltered = rules_of(&parsed(&render::full(&shape, std::iter::empty()))).len();
        let config = ProptestConfig {
            cases: 32,
            ..ProptestConfig::default()
        };
        proptest!(config, |(allowed in prop::collection::vec(prefix(), 1..24))| {
            let filter = alveole_model::InputFilter { allowed };
            let filtered = shape.clone().with_input_filter(Some(&filter));
            let text = render::full(&filtered, std::iter::empty());
            let batch = parsed(&text);
            let added = rules_of(&batch).len() - unfiltered;
            prop_assert!((7..=10).contains(&added), "{added} rules");
            let refused = nft_refuses(&scratch, text);
            prop_assert!(refused.is_none(), "nft -c refused: {:?}", refused);
        });
    }

    proptest! {
        /// Hostile text in the fields a member sends (protocol, tier) never gets past
        /// validation; only the exact names do.
        #[test]
        fn hostile_text_in_exposed_ports_or_tiers_is_refused(text in ".{0,40}") {
            let port = serde_json::json!({"protocol": text, "port": 2222, "container_port": 22});
            let parsed = serde_json::from_value::<ExposedPort>(port);
            prop_assert_eq!(parsed.is_ok(), text == "tcp" || text == "udp");
            let tier = serde_json::from_value::<LimitTier>(serde_json::json!(text));
            prop_assert_eq!(tier.is_ok(), ["small", "standard", "large"].contains(&text.as_str()));
        }
    }
}
