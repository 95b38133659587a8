//! `alveole bench routing`: the node's nftables table for N sites, applied whole (rendering
//! included) against a raw `nft -f` of the same table as nft itself prints it, and one site's
//! change against the whole. Runs itself again inside a scratch network namespace it creates
//! and deletes, so both sides call `nft` directly as the agent does.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use alveole_agent::engine::runtime::Naming;
use alveole_agent::net::routing::{
    IngressPorts, Nft, NftCommand, Router, RoutingPlan, Shape, render,
};
use alveole_model::{DesiredState, ExposedPort, LimitTier, NodeId, SiteId, SiteSpec, Transport};
use anyhow::Context;

use crate::measure::percentiles;

/// A scratch namespace, deleted on drop.
pub(crate) struct Scratch(pub(crate) String);

impl Scratch {
    /// A new namespace named `<prefix>-<random>`.
    pub(crate) fn create(prefix: &str) -> anyhow::Result<Self> {
        let scratch = Self(format!(
            "{prefix}-{}",
            &uuid::Uuid::now_v7().simple().to_string()[26..]
        ));
        let created = Command::new("ip")
            .args(["netns", "add", &scratch.0])
            .output()
            .context("ip netns add")?;
        anyhow::ensure!(
            created.status.success(),
            "cannot create a network namespace (root is needed)"
        );
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// What every benchmark site shares (only routing matters here).
pub fn template() -> anyhow::Result<SiteSpec> {
    use alveole_model::{Hostname, ImageRef, Limits, Volume, Wildcard};
    Ok(SiteSpec {
        site_id: SiteId::generate(),
        hostnames: vec![Hostname::parse(
            "routing.bench.example.org",
            Wildcard::Refused,
        )?],
        image: ImageRef::parse("alveole-test/busybox:2")?,
        command: vec![],
        env: vec![],
        http_port: 8080,
        volume: Volume::default(),
        limits: Limits::default(),
        security: Default::default(),
        run: true,
        dedicated_addresses: vec![],
        exposed_ports: vec![],
        limit_tier: LimitTier::Standard,
        backup: None,
        tls: None,
        admission: None,
        databases: vec![],
        databases_stay_up: false,
    })
}

/// Site `i`: an address of the benchmarking range (198.18.0.0/15), one exposed port, a tier.
pub(crate) fn site(i: usize, template: &SiteSpec) -> (SiteSpec, IpAddr) {
    let n = u32::try_from(i).unwrap_or(0);
    let mut spec = template.clone();
    spec.site_id = SiteId::generate();
    spec.dedicated_addresses = vec![IpAddr::V4(Ipv4Addr::from(0xC612_0000 + n + 1))];
    spec.exposed_ports = vec![ExposedPort {
        protocol: Transport::Tcp,
        port: 2222,
        container_port: 22,
    }];
    spec.limit_tier = LimitTier::ALL[i % 3];
    (spec, IpAddr::V4(Ipv4Addr::from(0x0A64_0000 + n + 2)))
}

pub(crate) fn plan(shape: &Shape, sites: &[(SiteSpec, IpAddr)]) -> RoutingPlan {
    let desired = DesiredState {
        node_id: NodeId::generate(),
        generation: 1,
        sites: sites.iter().map(|(s, _)| s.clone()).collect(),
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
    let containers: BTreeMap<SiteId, IpAddr> = sites.iter().map(|(s, c)| (s.site_id, *c)).collect();
    RoutingPlan::new(shape.clone(), &desired, &containers)
}

fn raw_nft(args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::io::Write::write_all(&mut stdin, input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Creates the scratch namespace and runs the measurement there.
pub fn run(count: usize, runs: usize) -> anyhow::Result<()> {
    let scratch = Scratch::create("alvb")?;
    let status = Command::new("ip")
        .args(["netns", "exec", &scratch.0])
        .arg(std::env::current_exe()?)
        .args(["routing", "--inside"])
        .args(["--sites", &count.to_string(), "--runs", &runs.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "the measurement failed");
    Ok(())
}

/// The measurement, in the namespace this process runs in.
pub fn measure(count: usize, runs: usize) -> anyhow::Result<()> {
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
    let sites: Vec<_> = (0..count).map(|i| site(i, &template)).collect();
    let full_plan = plan(&shape, &sites);
    let nft = NftCommand::host();

    // Whole apply, rendering included, as the agent does it at start and after drift.
    let mut whole = Vec::new();
    let mut rendering = Vec::new();
    let mut whole_with_readback = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let batch = render::full(&shape, full_plan.elements.values());
        rendering.push(started.elapsed());
        nft.apply(&batch)?;
        whole.push(started.elapsed());
        let mut router = Router::new(NftCommand::host());
        let started = Instant::now();
        router.ensure(&full_plan)?;
        whole_with_readback.push(started.elapsed());
    }
    // The raw peer: nft's own text of the same table, loaded by `nft -f`.
    let text = Command::new("nft")
        .args(["list", "table", "inet", &shape.table])
        .output()?;
    let text = String::from_utf8(text.stdout)?;
    let mut raw = Vec::new();
    for _ in 0..runs {
        raw_nft(&["delete", "table", "inet", &shape.table], None)?;
        let started = Instant::now();
        raw_nft(&["-f", "-"], Some(&text))?;
        raw.push(started.elapsed());
    }

    // One site added, then removed, on top of the whole table.
    let mut router = Router::new(NftCommand::host());
    router.ensure(&full_plan)?;
    let mut with_one_more = sites.clone();
    with_one_more.push(site(count, &template));
    let bigger = plan(&shape, &with_one_more);
    let mut one_site = Vec::new();
    let mut one_site_apply = Vec::new();
    for i in 0..runs.max(10) {
        let target = if i % 2 == 0 { &bigger } else { &full_plan };
        let started = Instant::now();
        let outcome = router.ensure(target)?;
        one_site.push(started.elapsed());
        anyhow::ensure!(!outcome.replaced, "a one-site change replaced the table");
        // The same change without the drift check that precedes it in a pass.
        let (removed, added) = alveole_agent::net::routing::plan::element_changes(
            &target.elements,
            if i % 2 == 0 {
                &full_plan.elements
            } else {
                &bigger.elements
            },
        );
        let batch = render::changes(&shape, &removed, &added).to_string();
        let started = Instant::now();
        nft.apply(&batch)?;
        one_site_apply.push(started.elapsed());
        // Back to `target` for the router's next pass.
        let batch = render::changes(&shape, &added, &removed).to_string();
        nft.apply(&batch)?;
    }

    let median = |samples: Vec<Duration>| percentiles(samples).0;
    let (whole, readback, raw) = (median(whole), median(whole_with_readback), median(raw));
    println!(
        "routing table for {count} sites ({} elements), median of {runs} runs:",
        full_plan.elements.len()
    );
    println!("  whole apply, rendering included (nft -j -f):   {whole:?}");
    println!(
        "    of which rendering the JSON batch:           {:?}",
        median(rendering)
    );
    println!("  the same, plus reading it back (agent start):  {readback:?}");
    println!("  raw nft -f of nft's own text of the table:     {raw:?}");
    println!(
        "  ratio whole/raw: {:.2}x; with read-back: {:.2}x",
        whole.as_secs_f64() / raw.as_secs_f64(),
        readback.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "  one site added or removed: {:?} per pass (drift check included), {:?} for the change alone",
        median(one_site),
        median(one_site_apply)
    );
    Ok(())
}
