//! `alveole bench packets`: what a new connection pays to cross a node, with alveole's table
//! for N sites against Debian's iptables (legacy backend) with one DNAT rule per site, and
//! against a node with no rule at all (the constant part: veths, routing, TCP).
//!
//! Three network namespaces it creates and deletes: a client, the node (forwarding), a
//! backend that owns every container address (a local route). The client opens connections
//! one at a time to the exposed port of the *last* site (the worst case for a rule list), each
//! from its own source address, and times `connect`: the SYN's path through the node, where
//! the NAT rules are walked, and the SYN-ACK's way back. Connections are paced under the
//! site's limit tier (large: 1,000 new connections per second), which alveole's table
//! enforces and the iptables baseline does not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alveole_agent::engine::runtime::Naming;
use alveole_agent::net::routing::{IngressPorts, NftCommand, Router, Shape};
use alveole_model::NodeId;
use anyhow::Context;

use crate::measure::percentiles;
use crate::routing::{Scratch, plan, site, template};

/// The port every benchmark site exposes, and its container's.
const EXPOSED_PORT: u16 = 2222;
const CONTAINER_PORT: u16 = 22;
/// Between two connection starts: under the large tier's 1,000 per second.
const PACE: Duration = Duration::from_micros(1_500);
/// Source addresses in 10.200.0.0/16 (254 per /24); the last one is kept for the readiness
/// probe.
const SOURCES: u32 = 64_000;

/// `ip netns exec NS program args`, failing with its output.
fn exec(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{program} {args:?} in {ns}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ip(ns: &str, args: &str) -> anyhow::Result<()> {
    let args: Vec<&str> = args.split_whitespace().collect();
    exec(ns, "ip", &args).map(|_| ())
}

/// The client, the node and the backend, linked and routed.
struct Lab {
    client: Scratch,
    node: Scratch,
    backend: Scratch,
}

impl Lab {
    fn new() -> anyhow::Result<Self> {
        let lab = Self {
            client: Scratch::create("alvp-client")?,
            node: Scratch::create("alvp-node")?,
            backend: Scratch::create("alvp-backend")?,
        };
        let (c, n, b) = (&lab.client.0, &lab.node.0, &lab.backend.0);
        for ns in [c, n, b] {
            ip(ns, "link set lo up")?;
        }
        ip(c, &format!("link add c0 type veth peer name n0 netns {n}"))?;
        ip(n, &format!("link add n1 type veth peer name b0 netns {b}"))?;
        for (ns, link, address) in [
            (c, "c0", "10.0.1.2/24"),
            (n, "n0", "10.0.1.1/24"),
            (n, "n1", "10.0.2.1/24"),
            (b, "b0", "10.0.2.2/24"),
        ] {
            ip(ns, &format!("address add {address} dev {link}"))?;
            ip(ns, &format!("link set {link} up"))?;
        }
        // Sites' addresses and containers are behind the node; each connection comes from an
        // address of its own (10.200.0.0/16, all local to the client), and every container
        // address is local to the backend.
        ip(c, "route add 198.18.0.0/15 via 10.0.1.1")?;
        ip(c, "route add 10.100.0.0/16 via 10.0.1.1")?;
        ip(c, "route add local 10.200.0.0/16 dev lo")?;
        ip(n, "route add 10.200.0.0/16 via 10.0.1.2")?;
        ip(n, "route add 10.100.0.0/16 via 10.0.2.2")?;
        ip(b, "route add local 10.100.0.0/16 dev lo")?;
        ip(b, "route add default via 10.0.2.1")?;
        exec(n, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])?;
        Ok(lab)
    }
}

/// Kills the backend when the benchmark ends, however it ends.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One way of crossing the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// No rule: straight to the container's address.
    Plain,
    /// alveole's table: the site's address, DNAT'd through its maps.
    Alveole,
    /// iptables-legacy, one DNAT rule per site in nat PREROUTING.
    Iptables,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Plain => "no rule (constant part)",
            Path::Alveole => "alveole's nftables table",
            Path::Iptables => "iptables-legacy, one rule per site",
        }
    }
}

/// The iptables-restore text of one DNAT rule per site.
fn iptables_rules(sites: &[(alveole_model::SiteSpec, IpAddr)]) -> String {
    let mut text = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n");
    for (spec, container) in sites {
        for address in &spec.dedicated_addresses {
            text.push_str(&format!(
                "-A PREROUTING -d {address}/32 -p tcp -m tcp --dport {EXPOSED_PORT} \
                 -j DNAT --to-destination {container}:{CONTAINER_PORT}\n"
            ));
        }
    }
    text.push_str("COMMIT\n");
    text
}

fn iptables_restore(ns: &str, rules: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-legacy-restore"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("iptables-legacy-restore (Debian: iptables)")?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, rules.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "iptables-legacy-restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Times `connections` connections from the client to `target`, starting source addresses
/// at `first_source`: the median and p99 of `connect`, and how many failed.
fn measure_client(
    lab: &Lab,
    target: SocketAddr,
    connections: usize,
    first_source: u32,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let output = exec(
        &lab.client.0,
        &std::env::current_exe()?.to_string_lossy(),
        &[
            "packets",
            "--role",
            "client",
            "--target",
            &target.to_string(),
            "--connections",
            &connections.to_string(),
            "--first-source",
            &first_source.to_string(),
        ],
    )?;
    let numbers: Vec<u64> = output
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [median, p99, failed] = numbers[..] else {
        anyhow::bail!("the client printed {output:?}");
    };
    Ok((
        Duration::from_nanos(median),
        Duration::from_nanos(p99),
        usize::try_from(failed)?,
    ))
}

/// The client side: connections one at a time, each from its own source address, paced.
/// Prints `median_ns p99_ns failed`.
pub async fn client(
    target: SocketAddr,
    connections: usize,
    first_source: u32,
) -> anyhow::Result<()> {
    let mut samples = Vec::with_capacity(connections);
    let mut failed = 0;
    for i in 0..connections {
        let started = Instant::now();
        let offset = first_source + u32::try_from(i)?;
        // 10.200.0.0/16, skipping .0 and .255 of each /24.
        let source = Ipv4Addr::from(0x0AC8_0000 + (offset / 254) * 256 + offset % 254 + 1);
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        match tokio::time::timeout(Duration::from_secs(1), socket.connect(target)).await {
            Ok(Ok(stream)) => {
                samples.push(started.elapsed());
                drop(stream);
            }
            _ => failed += 1,
        }
        let next = started + PACE;
        tokio::time::sleep_until(next.into()).await;
    }
    let (median, p99) = percentiles(samples);
    println!("{} {} {failed}", median.as_nanos(), p99.as_nanos());
    Ok(())
}

/// The backend side: accepts every connection to the container port and lets it go.
pub async fn backend() -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], CONTAINER_PORT))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        drop(stream);
    }
}

/// The whole benchmark: for each size, each path, `runs` interleaved rounds.
pub fn run(sizes: &[usize], connections: usize, runs: usize) -> anyhow::Result<()> {
    let lab = Lab::new()?;
    let _backend = Backend(
        Command::new("ip")
            .args(["netns", "exec", &lab.backend.0])
            .arg(std::env::current_exe()?)
            .args(["packets", "--role", "backend"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the backend")?,
    );
    let template = template()?;
    let shape = Shape::of(
        &Naming {
            node_id: NodeId::generate(),
        },
        IngressPorts {
            http: 8080,
            https: None,
        },
    );
    let needed = connections * 3 * runs * sizes.len();
    anyhow::ensure!(
        needed < SOURCES as usize,
        "{needed} connections would reuse source addresses: at most {SOURCES} in all"
    );
    let mut next_source = 0u32;
    let mut take_sources = || {
        let first = next_source;
        next_source += u32::try_from(connections).unwrap_or(u32::MAX);
        first
    };
    // The backend may take a moment to listen: the first plain round waits for it.
    let mut ready = false;
    println!(
        "new connections across a node, {connections} per measurement, median of {runs} rounds:"
    );
    for &count in sizes {
        anyhow::ensure!((3..=60_000).contains(&count), "between 3 and 60,000 sites");
        let sites: Vec<_> = (0..count).map(|i| site(i, &template)).collect();
        // The last site of the large tier.
        let last = (0..count).rev().find(|i| i % 3 == 2).unwrap_or(0);
        let (spec, container) = &sites[last];
        let address = spec.dedicated_addresses[0];
        let exposed = SocketAddr::new(address, EXPOSED_PORT);
        let direct = SocketAddr::new(*container, CONTAINER_PORT);
        let full_plan = plan(&shape, &sites);
        let rules = iptables_rules(&sites);
        let mut medians: Vec<(Path, Vec<Duration>, Vec<Duration>, usize)> = Vec::new();
        for path in [Path::Plain, Path::Alveole, Path::Iptables] {
            medians.push((path, vec![], vec![], 0));
        }
        for _ in 0..runs {
            for entry in &mut medians {
                let target = match entry.0 {
                    Path::Plain => direct,
                    Path::Alveole => {
                        Router::new(NftCommand::in_netns(&lab.node.0)).ensure(&full_plan)?;
                        exposed
                    }
                    Path::Iptables => {
                        iptables_restore(&lab.node.0, &rules)?;
                        exposed
                    }
                };
                if !ready {
                    wait_for_backend(&lab, target)?;
                    ready = true;
                }
                let (median, p99, failed) =
                    measure_client(&lab, target, connections, take_sources())?;
                entry.1.push(median);
                entry.2.push(p99);
                entry.3 += failed;
                match entry.0 {
                    Path::Plain => {}
                    Path::Alveole => exec(
                        &lab.node.0,
                        "nft",
                        &["delete", "table", "inet", &shape.table],
                    )
                    .map(|_| ())?,
                    Path::Iptables => iptables_restore(&lab.node.0, "*nat\nCOMMIT\n")?,
                }
            }
        }
        println!("  {count} sites (target: the last site of the large tier, {exposed}):");
        let plain = percentiles(medians[0].1.clone()).0;
        let mut by_path = std::collections::BTreeMap::new();
        for (path, median_samples, p99_samples, failed) in &medians {
            let median = percentiles(median_samples.clone()).0;
            let p99 = percentiles(p99_samples.clone()).0;
            by_path.insert(path.name(), median);
            println!(
                "    {:<38} median {:>8.1} µs  p99 {:>8.1} µs  above no rule {:>8.1} µs  failed {failed}",
                path.name(),
                median.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                median.saturating_sub(plain).as_secs_f64() * 1e6,
            );
        }
        let alveole = by_path[Path::Alveole.name()];
        let iptables = by_path[Path::Iptables.name()];
        println!(
            "    ratio alveole / iptables: {:.2}x (time above no rule: {:.2}x)",
            alveole.as_secs_f64() / iptables.as_secs_f64(),
            alveole.saturating_sub(plain).as_secs_f64()
                / iptables.saturating_sub(plain).as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

/// Waits (bounded) until the backend answers through `target`.
fn wait_for_backend(lab: &Lab, target: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((_, _, 0)) = measure_client(lab, target, 1, SOURCES) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the backend never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}
