//! Address failover between two nodes on one segment (network namespaces this test creates),
//! under continuous traffic from a client on that segment: the panel moves the address, the
//! old node's agent lets it go, the new node's agent takes and announces it. The two never
//! answer at the same moment, and traffic follows at once although the client's neighbour
//! cache would otherwise keep sending to the old node for minutes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alveole_agent::agent::{Agent, Timing, credential};
use alveole_agent::engine::fake::FakeRuntime;
use alveole_agent::ingress::Ingress;
use alveole_agent::net::routing::{IngressPorts, NftCommand, NftRouting};
use alveole_agent::net::uplink::IpInterface;
use alveole_tests::netns::{Netns, link};
use alveole_tests::{TestDb, TestPanel, skip_or_fail};
use serde_json::json;

const PORT: u16 = 7;

/// Whether the programs the agent runs on its uplink are here (Debian: iputils-arping,
/// conntrack); says loudly when not, and fails under CI.
fn uplink_tools() -> bool {
    for (program, package) in [("arping", "iputils-arping"), ("conntrack", "conntrack")] {
        let found = std::process::Command::new(program)
            .arg("--help")
            .output()
            .is_ok();
        if !found {
            skip_or_fail(program, &format!("install {package}"));
            return false;
        }
    }
    true
}

/// Answers each connection on `PORT` (IPv4 and IPv6) with `name` and the number the client
/// sent: the answer comes from the address the client asked, as a site's would.
fn serve_echo(ns: &Netns, name: &'static str) {
    let listener = ns.within(|| TcpListener::bind(("::", PORT)).unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buffer = [0u8; 32];
            if let Ok(n) = stream.read(&mut buffer) {
                let _ = write!(stream, "{name} {}", String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
}

/// One probe: connect, send `seq`, read who answered; `None` when nobody did in time.
fn ask_once(to: IpAddr, seq: u64, patience: Duration) -> Option<(u64, String)> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::new(to, PORT), patience).ok()?;
    stream.set_read_timeout(Some(patience)).ok()?;
    write!(stream, "{seq}").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (who, number) = answer.split_once(' ')?;
    Some((number.parse().ok()?, who.to_owned()))
}

/// Which node answered each probe, by the probe's number.
#[derive(Debug, Default)]
struct Answers(Vec<(u64, String)>, u64);

impl Answers {
    fn by(&self, name: &str) -> Vec<u64> {
        self.0
            .iter()
            .filter(|(_, who)| who == name)
            .map(|(seq, _)| *seq)
            .collect()
    }
}

/// Opens a connection to `to` from the client every few milliseconds until `stop`, each
/// sending its number, and keeps who answered each in `answers`.
fn probe(
    client: &Netns,
    to: IpAddr,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Answers>>,
) -> std::thread::JoinHandle<()> {
    let path = format!("/run/netns/{}", client.name);
    std::thread::spawn(move || {
        let handle = std::fs::File::open(&path).expect("the client's namespace");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&handle),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("entering the client's namespace");
        // Bounded however the test goes: at most a minute, at most 20,000 probes.
        let started = Instant::now();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed)
            && seq < 20_000
            && started.elapsed() < Duration::from_secs(60)
        {
            seq += 1;
            match ask_once(to, seq, Duration::from_millis(20)) {
                Some(answer) => answers.lock().unwrap().0.push(answer),
                None => answers.lock().unwrap().1 += 1,
            }
        }
    })
}

/// Waits (bounded) until `done` holds, checking every 20 ms.
async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Who answers a probe to `to` from the client, if anyone does within a second.
fn ask(client: &Netns, to: IpAddr) -> Option<String> {
    client.within(move || ask_once(to, 0, Duration::from_secs(1)).map(|(_, who)| who))
}

/// The MAC address the client's neighbour cache holds for `address`.
fn neighbour(client: &Netns, address: IpAddr) -> Option<String> {
    let listing = client.ip(&["neigh", "show", &address.to_string(), "dev", "br0"]);
    let mut words = listing.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

fn mac_of(ns: &Netns) -> String {
    let listing = ns.ip(&["-j", "link", "show", "dev", "eth0"]);
    let links: serde_json::Value = serde_json::from_str(&listing).unwrap();
    links[0]["address"].as_str().unwrap().to_owned()
}

/// Tracked connections of `ns` whose original destination is `address`.
fn tracked(ns: &Netns, address: IpAddr) -> usize {
    let family = if address.is_ipv4() { "ipv4" } else { "ipv6" };
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "conntrack", "-L", "-f", family])
        .args(["--orig-dst", &address.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().count()
}

/// The segment: the client's bridge, and two nodes plugged into it with their own addresses.
struct Segment {
    client: Netns,
    a: Netns,
    b: Netns,
}

impl Segment {
    fn new() -> Self {
        let client = Netns::new("fo-client");
        client.ip(&["link", "add", "br0", "type", "bridge"]);
        client.ip(&["link", "set", "br0", "up"]);
        client.ip(&["address", "add", "203.0.113.1/24", "dev", "br0"]);
        client.ip(&["address", "add", "2001:db8::1/64", "dev", "br0", "nodad"]);
        // Without an announcement the client would keep sending to the old node for minutes:
        // its cache entries stay good for ten minutes and are probed only 2 minutes later.
        for family in ["ipv4", "ipv6"] {
            client.sysctl(
                &format!("net.{family}.neigh.br0.base_reachable_time_ms"),
                "600000",
            );
            client.sysctl(
                &format!("net.{family}.neigh.br0.delay_first_probe_time"),
                "120",
            );
        }
        let (a, b) = (Netns::new("fo-a"), Netns::new("fo-b"));
        for (node, port, v4, v6) in [
            (&a, "va", "203.0.113.2/24", "2001:db8::2/64"),
            (&b, "vb", "203.0.113.3/24", "2001:db8::3/64"),
        ] {
            link(&client, port, node, "eth0");
            client.ip(&["link", "set", port, "master", "br0"]);
            node.ip(&["address", "add", v4, "dev", "eth0"]);
            node.ip(&["address", "add", v6, "dev", "eth0", "nodad"]);
            // Hosts, not routers: a packet for an address the node let go is dropped, not
            // sent on to whoever holds it now (new namespaces inherit the host's IPv4
            // forwarding, which Docker turns on).
            node.sysctl("net.ipv4.ip_forward", "0");
            node.sysctl("net.ipv6.conf.all.forwarding", "0");
        }
        Self { client, a, b }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_fails_over_under_traffic_and_the_two_nodes_never_answer_together() {
    alveole_tests::init();
    if !alveole_tests::netns::available() || !uplink_tools() {
        return;
    }
    let segment = Segment::new();
    serve_echo(&segment.a, "node-a");
    serve_echo(&segment.b, "node-b");

    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node_a, node_b) = two_nodes(&panel).await;
    let (v4, v6): (IpAddr, IpAddr) = (
        "203.0.113.10".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
    );
    allocate_to(
        &panel,
        &node_a,
        &[("203.0.113.0/24", v4), ("2001:db8::/64", v6)],
    )
    .await;
    let agents = RunningAgents::start(&panel, [(&node_a, &segment.a), (&node_b, &segment.b)]).await;

    let (client, a) = (&segment.client, &segment.a);
    wait_until(
        "node A answers both addresses",
        Duration::from_secs(30),
        || {
            ask(client, v4).as_deref() == Some("node-a")
                && ask(client, v6).as_deref() == Some("node-a")
        },
    )
    .await;
    assert_eq!(neighbour(client, v4), Some(mac_of(a)));
    for address in [v4, v6] {
        fails_over_under_traffic(&panel, &segment, address, &node_b).await;
    }
    the_provider_was_told_and_b_holds_both(&panel, &node_b, [v4, v6]).await;
    agents.stop().await;
    db.drop_db().await;
}

/// The seeded node A and a node B at the same provider: their ids.
async fn two_nodes(panel: &TestPanel) -> (String, String) {
    let (node_a, _) = panel.seed().await;
    let (_, view) = panel.get(&format!("/api/v1/nodes/{node_a}")).await;
    let (status, node_b) = panel
        .post(
            "/api/v1/nodes",
            json!({
                "provider_id": view["provider_id"], "name": "node-b", "public_addresses": ["203.0.113.3"],
                "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 500u64 << 30}
            }),
        )
        .await;
    assert_eq!(status, 201, "{node_b}");
    (node_a, node_b["id"].as_str().unwrap().to_owned())
}

/// Each address allocated to `node` from a pool of its prefix, at the node's provider.
async fn allocate_to(panel: &TestPanel, node: &str, addresses: &[(&str, IpAddr)]) {
    let (_, view) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    for (prefix, address) in addresses {
        let (status, pool) = panel
            .post(
                "/api/v1/ip-pools",
                json!({"provider_id": view["provider_id"], "prefix": prefix}),
            )
            .await;
        assert_eq!(status, 201, "{pool}");
        let (status, allocated) = panel
            .post(
                &format!(
                    "/api/v1/ip-pools/{}/allocations",
                    pool["id"].as_str().unwrap()
                ),
                json!({"node_id": node, "address": address}),
            )
            .await;
        assert_eq!(status, 201, "{allocated}");
    }
}

/// Agents, each keeping its table and its uplink in its node's namespace.
struct RunningAgents {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    runs: Vec<tokio::task::JoinHandle<()>>,
    _state_dirs: Vec<tempfile::TempDir>,
}

impl RunningAgents {
    async fn start<'a>(
        panel: &TestPanel,
        nodes: impl IntoIterator<Item = (&'a String, &'a Netns)>,
    ) -> RunningAgents {
        let mut agents = RunningAgents {
            stops: Vec::new(),
            runs: Vec::new(),
            _state_dirs: Vec::new(),
        };
        for (node, ns) in nodes {
            let (status, join) = panel
                .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
                .await;
            assert_eq!(status, 201, "{join}");
            let state_dir = alveole_tests::temp_dir("alveole-failover-");
            let client = panel.agent_client();
            let credential = credential(&client, state_dir.path(), join["join_token"].as_str())
                .await
                .unwrap();
            let routing = NftRouting::new(
                NftCommand::in_netns(&ns.name),
                IngressPorts {
                    http: 8080,
                    https: None,
                },
            );
            let agent = Agent::new(
                credential,
                client,
                state_dir.path(),
                FakeRuntime::default(),
                Arc::new(Ingress::new()),
            )
            .with_routing(Arc::new(routing))
            .with_uplink(Box::new(IpInterface::new("eth0", Some(&ns.name)).unwrap()));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let timing = Timing {
                pass: Duration::from_millis(300),
            };
            agents.runs.push(tokio::spawn(agent.run(timing, async move {
                let _ = stopped.await;
            })));
            agents.stops.push(stop);
            agents._state_dirs.push(state_dir);
        }
        agents
    }

    async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for run in self.runs {
            let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
        }
    }
}

/// Under continuous probes, `address` moves from A to B: traffic follows at once although the
/// client's cache would have kept A's MAC, the two never answer together, and the old node
/// forgets the address's connections.
async fn fails_over_under_traffic(
    panel: &TestPanel,
    segment: &Segment,
    address: IpAddr,
    node_b: &str,
) {
    let (client, a, b) = (&segment.client, &segment.a, &segment.b);
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Answers::default()));
    let prober = probe(client, address, stop.clone(), answers.clone());
    let answered_by = |name: &str| answers.lock().unwrap().by(name).len();
    wait_until("probes answered by A", Duration::from_secs(10), || {
        answered_by("node-a") >= 20
    })
    .await;
    assert!(
        tracked(a, address) > 0,
        "{address}: A tracks the connections"
    );
    let (status, moving) = panel
        .post(
            &format!("/api/v1/ip-allocations/{address}/move"),
            json!({"to_node": node_b}),
        )
        .await;
    assert_eq!(status, 202, "{moving}");
    wait_until("B answers", Duration::from_secs(30), || {
        answered_by("node-b") >= 50
    })
    .await;
    assert_eq!(neighbour(client, address), Some(mac_of(b)), "{address}");
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let (by_a, by_b) = (answers.by("node-a"), answers.by("node-b"));
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "{address}: {answers:?}"
    );
    let last_a = *by_a.iter().max().unwrap();
    let first_b = *by_b.iter().min().unwrap();
    // Never both: every answer of A comes before every answer of B, and no probe got two.
    assert!(
        last_a < first_b,
        "{address}: A answered probe {last_a} after B answered {first_b}"
    );
    let mut numbers: Vec<u64> = answers.0.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    let count = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), count, "{address}: a probe answered twice");
    eprintln!(
        "{address}: {} probes answered by A, then {} unanswered, then {} by B ({} unanswered in all)",
        by_a.len(),
        first_b - last_a - 1,
        by_b.len(),
        answers.1
    );
    // The old node forgot the address's connections; the uplinks say who holds it.
    assert_eq!(tracked(a, address), 0, "{address}: A's connections cleared");
    assert!(
        !a.ip(&["address", "show", "dev", "eth0"])
            .contains(&format!("{address}/"))
    );
    assert!(
        b.ip(&["address", "show", "dev", "eth0"])
            .contains(&format!("{address}/"))
    );
}

/// The provider was told, once per address, to route it to B; each move audited; B's report
/// says it holds them.
async fn the_provider_was_told_and_b_holds_both(
    panel: &TestPanel,
    node_b: &str,
    addresses: [IpAddr; 2],
) {
    let calls = panel.provider.calls();
    assert_eq!(
        calls.iter().map(|c| c.address).collect::<Vec<_>>(),
        addresses
    );
    assert!(calls.iter().all(|c| c.node.to_string() == node_b));
    let (_, audit) = panel
        .get("/api/v1/audit/events?action=ip.move.complete")
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses = panel.store.node_statuses().await.unwrap();
        let held = statuses
            .iter()
            .find(|s| s.node_id.to_string() == node_b)
            .and_then(|s| s.report.addresses.clone())
            .unwrap_or_default();
        if addresses.iter().all(|address| held.contains(address)) {
            break;
        }
        assert!(Instant::now() < deadline, "B's report: {held:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
