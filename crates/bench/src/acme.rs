//! `alveole-bench acme`: many sites on one node get certificates from Debian's pebble, then all
//! renew them: the time each wave takes, none left expiring, the memory of the panel with the
//! node's agent (this process) and of pebble. The peer is a naive baseline measured in the
//! same run: the same orders one after the other (no queues by domain, no parallelism).
//!
//! Pebble validates every challenge through the node's real ingress; the node runs the fake
//! engine (no containers: the certificates are what is measured). Certificates live 20
//! minutes, so that a renewal wave is due once the panel's clock is moved 14 minutes on.

use std::time::{Duration, Instant};

use alveole_panel::acme::{AcmeConfig, AcmeLimits};
use alveole_store::CertificateSource;
use alveole_tests::acme::{Pebble, node_with_agent};
use alveole_tests::{TestDb, TestPanel};
use serde_json::json;

/// Certificates from pebble live this long.
const LIFETIME: Duration = Duration::from_secs(20 * 60);

pub async fn run(sites: usize, domains: usize, baseline: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=10_000).contains(&sites), "--sites between 1 and 10000");
    anyhow::ensure!(
        (1..=sites).contains(&domains),
        "--domains between 1 and --sites"
    );
    anyhow::ensure!(baseline <= sites, "--baseline at most --sites");
    alveole_tests::init();
    let db = TestDb::sqlite().await;
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let Some(pebble) = Pebble::start(plain.local_addr()?.port(), LIFETIME).await else {
        anyhow::bail!("pebble is not installed (apt-get install pebble)");
    };
    let mut panel = TestPanel::start(&db).await;
    let node = node_with_agent(&panel, "bench-acme", &["127.0.0.1"], plain).await;
    let (status, member) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": "Bench", "email": "bench@exemple.org"}),
        )
        .await;
    anyhow::ensure!(status == 201, "{member}");
    let made = Instant::now();
    let mut ids = Vec::with_capacity(sites);
    for i in 0..sites {
        // `.test` is reserved (RFC 2606): each `coop-N.test` is a registered domain of its own.
        let name = format!("site-{i}.coop-{}.test", i % domains);
        let (status, site) = panel
            .post(
                "/api/v1/sites",
                json!({
                    "owner_id": member["id"], "primary_domain": name,
                    "image": "registry.example.org/coop/site:1", "node_id": node.node,
                    "limits": {"cpu_millis": 10, "memory_bytes": 16777216, "pids": 16}
                }),
            )
            .await;
        anyhow::ensure!(status == 201, "{site}");
        ids.push(site["id"].as_str().unwrap_or_default().to_owned());
    }
    println!(
        "{sites} sites under {domains} registered domains made in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let acme = |parallel: usize| AcmeConfig {
        limits: AcmeLimits {
            // The limits are tested on their own; here, throughput.
            orders_per_3_hours: 100_000,
            certificates_per_domain_week: 100_000,
            parallel,
            ..AcmeLimits::default()
        },
        ..pebble.acme_config()
    };

    // The naive baseline: the first `baseline` sites, one order after the other.
    let mut baseline_rate = None;
    if baseline > 0 {
        let config = acme(1);
        panel
            .configure(|c| {
                c.acme = Some(config);
                c.background.certificates_every = Duration::from_millis(500);
            })
            .await;
        let started = Instant::now();
        wait_for(&panel, baseline, None, Duration::from_secs(3600)).await?;
        let took = started.elapsed();
        baseline_rate = Some(baseline as f64 / took.as_secs_f64());
        println!(
            "baseline (one order at a time): {baseline} certificates in {:.1} s, {:.1}/s",
            took.as_secs_f64(),
            baseline as f64 / took.as_secs_f64()
        );
    }

    // Every site, queued by registered domain, 16 domains at once.
    let config = acme(AcmeLimits::default().parallel);
    panel
        .configure(|c| {
            c.acme = Some(config);
            c.background.certificates_every = Duration::from_millis(500);
        })
        .await;
    let already = panel.store.certificates().await?.len();
    let started = Instant::now();
    wait_for(&panel, sites, None, Duration::from_secs(3600)).await?;
    let issued = started.elapsed();
    let fresh = sites - already;
    let rate = fresh as f64 / issued.as_secs_f64();
    println!(
        "issued: {fresh} more certificates in {:.1} s, {rate:.1}/s{}",
        issued.as_secs_f64(),
        baseline_rate
            .map(|b| format!(" ({:.1}× the baseline)", rate / b))
            .unwrap_or_default()
    );

    // Renewal: two thirds of their lifetime on (with jitter, up to a fifteenth earlier).
    let before = panel.store.certificates().await?;
    let renewing = Instant::now();
    panel
        .clock
        .advance(chrono::Duration::from_std(LIFETIME * 7 / 10)?);
    let cutoff = before.iter().map(|c| c.issued_at).max();
    panel
        .service()
        .poke(alveole_panel::background::Task::Certificates);
    wait_for(&panel, sites, cutoff, Duration::from_secs(3600)).await?;
    let renewed = renewing.elapsed();
    println!(
        "renewed: {sites} certificates in {:.1} s, {:.1}/s",
        renewed.as_secs_f64(),
        sites as f64 / renewed.as_secs_f64()
    );
    let after = panel.store.certificates().await?;
    let now = panel.service().now();
    let expiring = after
        .iter()
        .filter(|c| c.not_after <= now || c.source != CertificateSource::Acme)
        .count();
    anyhow::ensure!(expiring == 0, "{expiring} certificates expired or missing");
    println!(
        "none expiring: {} certificates, the soonest expiry in {} s of the panel's clock",
        after.len(),
        after
            .iter()
            .map(|c| (c.not_after - now).num_seconds())
            .min()
            .unwrap_or_default()
    );
    println!(
        "memory: this process (panel, store, agent, ingress) peaked at {} MiB; pebble at {} MiB",
        peak_mib("self"),
        peak_mib(&pebble.pid().to_string())
    );
    node.stop().await;
    drop(ids);
    db.drop_db().await;
    Ok(())
}

/// Waits until `count` sites have an ACME certificate (issued after `after`, when given).
async fn wait_for(
    panel: &TestPanel,
    count: usize,
    after: Option<chrono::DateTime<chrono::Utc>>,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let done = panel
            .store
            .certificates()
            .await?
            .iter()
            .filter(|c| after.is_none_or(|at| c.issued_at > at))
            .count();
        if done >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{done} of {count} certificates after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A process's peak resident memory (VmHWM), in MiB.
fn peak_mib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
