//! `alveole-bench evacuate`: how good an evacuation's estimate is. After a history of tiny
//! moves (the case that once made a 197 MB site "impossible: 431 h"), each run empties a node
//! of sites of mixed sizes (panel and both agents in this process, the real Docker engine):
//! the plan's prediction against what it took, for the whole evacuation.
//! The peer is the estimate the first model made: bytes over time of the same history.

use std::time::{Duration, Instant};

use alveole_model::NodeId;
use anyhow::Context;
use serde_json::{Value, json};

use crate::harness::BenchPanel;
use crate::site_move::{Api, fill, wait_for_volume};

/// Sizes of the sites each run moves, in MiB, in turn.
const SIZES_MIB: [usize; 5] = [1, 16, 48, 96, 160];
/// Tiny moves made before the first run.
const HISTORY: usize = 5;

pub async fn run(image: &str, sites: usize, runs: usize) -> anyhow::Result<()> {
    let mut panel = BenchPanel::start(alveole_panel::PanelConfig::default()).await?;
    let (source, target) = (
        panel.node("bench-src").await?,
        panel.node("bench-dst").await?,
    );
    let member = panel.member().await?.to_string();
    let pass = Duration::from_secs(1);
    let _agents = [
        panel.agent_measuring(source, pass, true, pass).await?,
        panel.agent_measuring(target, pass, true, pass).await?,
    ];
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        panel: &panel,
    };
    api.wait_for_endpoints(source).await?;
    api.wait_for_endpoints(target).await?;

    // The history: near-empty sites, each moved alone.
    let mut naive = Vec::new();
    for i in 0..HISTORY {
        let site = api
            .create_site(
                &member,
                source,
                image,
                &format!("tiny{i}.bench.example.org"),
            )
            .await?;
        wait_for_volume(source, &site).await?;
        let moved = move_and_wait(&api, &site, target).await?;
        naive.push((bytes_of(&moved), seconds_of(&moved)));
    }
    let (bytes, seconds) = naive
        .iter()
        .fold((0u64, 0f64), |(b, s), (bytes, secs)| (b + bytes, s + secs));
    let naive_rate = bytes as f64 / seconds.max(0.001);
    println!(
        "history: {HISTORY} tiny moves, {} in {seconds:.1} s (bytes over time: {}/s)",
        alveole_model::quantity::format_bytes(bytes),
        alveole_model::quantity::format_bytes(naive_rate as u64)
    );
    println!();
    println!(
        "| run | sites | bytes | predicted | took | predicted / took | bytes over time would say | basis |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for run in 0..runs {
        let mut total = 0u64;
        for i in 0..sites {
            let mib = SIZES_MIB[i % SIZES_MIB.len()];
            let host = format!("r{run}-s{i}.bench.example.org");
            let site = api.create_site(&member, source, image, &host).await?;
            let dir = wait_for_volume(source, &site).await?;
            fill(&dir, (mib * 4).max(1), mib << 20)?;
            total += (mib as u64) << 20;
        }
        wait_for_usage(&api, source, sites, total).await?;
        let plan = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/evacuation-plan?node_id={source}&parallelism=1"),
                None,
            )
            .await?;
        let predicted = plan["estimated_seconds"].as_u64().unwrap_or_default();
        let evacuation = api
            .call(
                reqwest::Method::POST,
                "/api/v1/evacuations",
                Some(json!({"node_id": source.to_string(), "parallelism": 1})),
            )
            .await?;
        let id = evacuation["id"].as_str().context("no evacuation id")?;
        let ended = wait_for_end(&api, id).await?;
        let took = (time_of(&ended["finished_at"]) - time_of(&ended["created_at"]))
            .num_milliseconds() as f64
            / 1000.0;
        let naive_seconds = total as f64 / naive_rate;
        println!(
            "| {} | {sites} | {} | {predicted} s | {took:.1} s | {:.2} | {:.0} s | {} |",
            run + 1,
            alveole_model::quantity::format_bytes(total),
            predicted as f64 / took.max(0.001),
            naive_seconds,
            plan["cost"]["basis"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

fn time_of(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// A switched move's time from its start to its switch.
fn seconds_of(movement: &Value) -> f64 {
    (time_of(&movement["switched_at"]) - time_of(&movement["started_at"])).num_milliseconds() as f64
        / 1000.0
}

fn bytes_of(movement: &Value) -> u64 {
    movement["progress"]["bytes_sent"]
        .as_u64()
        .unwrap_or_default()
}

/// Waits until `node`'s agent reported `sites` volumes holding `bytes` in all (or nearly).
async fn wait_for_usage(
    api: &Api<'_>,
    node: NodeId,
    sites: usize,
    bytes: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = api.node_status(node).await?;
        let reported: Vec<u64> = status["report"]["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["volume_bytes"].as_u64())
            .collect();
        if reported.len() >= sites && reported.iter().sum::<u64>() >= bytes * 9 / 10 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the volumes were never measured: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Moves `site` to `to` and waits for its switch; then ends its forwarding (the source drops
/// its copy). The move as the panel recorded it.
async fn move_and_wait(api: &Api<'_>, site: &str, to: NodeId) -> anyhow::Result<Value> {
    let started = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site}/move"),
            Some(json!({"to_node": to})),
        )
        .await?;
    let id = started["id"].as_str().context("no move id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let movement = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/site-moves/{id}"),
                None,
            )
            .await?;
        anyhow::ensure!(movement["phase"] != "failed", "the move failed: {movement}");
        if movement["phase"] == "forwarding" {
            api.call(
                reqwest::Method::POST,
                &format!("/api/v1/site-moves/{id}/finish"),
                Some(json!({})),
            )
            .await?;
            return Ok(movement);
        }
        anyhow::ensure!(Instant::now() < deadline, "the move took too long");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_end(api: &Api<'_>, id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let evacuation = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/evacuations/{id}"),
                None,
            )
            .await?;
        if evacuation["finished_at"].is_string() {
            anyhow::ensure!(
                evacuation["state"] == "done",
                "the evacuation ended {}: {evacuation}",
                evacuation["state"]
            );
            return Ok(evacuation);
        }
        anyhow::ensure!(Instant::now() < deadline, "the evacuation took too long");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
