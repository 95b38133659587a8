//! `alveole bench site-move`: a site moved between two nodes (panel and both agents in this
//! process, the real Docker engine, the copy over TCP with mutual TLS) while a client requests
//! it every few milliseconds: the freeze window the client sees, the whole move's time, the
//! passes and bytes. The baseline is the cold move people do without alveole: stop the site,
//! copy its volume whole (`rsync -a` of the same tree into an empty directory), start it
//! elsewhere; the copy alone is a lower bound of that move's downtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alveole_model::NodeId;
use anyhow::Context;
use serde_json::{Value, json};

use crate::harness::BenchPanel;

/// One kind of site to move.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    files: usize,
    bytes: usize,
    /// Bytes a writer adds to the volume per second during the move.
    writes_per_second: usize,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "100M",
        files: 1_000,
        bytes: 100 << 20,
        writes_per_second: 0,
    },
    Scenario {
        name: "10k-files",
        files: 10_000,
        bytes: 40 << 20,
        writes_per_second: 0,
    },
    Scenario {
        name: "1G",
        files: 1_000,
        bytes: 1 << 30,
        writes_per_second: 2 << 20,
    },
];

/// Serves `/data/www` (its index page made once, so a start changes nothing in the volume).
const SITE: &str = "mkdir -p /data/www && { [ -f /data/www/index.html ] || echo hello > /data/www/index.html; } && exec /bin/httpd -f -p 8080 -h /data/www";

/// What one move measured.
#[derive(Debug)]
struct Measured {
    freeze_ms: u64,
    total: Duration,
    passes: u64,
    bytes_sent: u64,
    longest_gap: Duration,
    requests: usize,
    failed: usize,
    written: u64,
    cold_copy: Duration,
}

pub async fn run(image: &str, scenarios: &[String], runs: usize) -> anyhow::Result<()> {
    let chosen: Vec<Scenario> = scenarios
        .iter()
        .map(|name| {
            SCENARIOS
                .iter()
                .find(|s| s.name == name)
                .copied()
                .with_context(|| format!("no scenario {name}: 100M, 10k-files or 1G"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut panel = BenchPanel::start(alveole_panel::PanelConfig::default()).await?;
    let (a, b) = (panel.node("bench-a").await?, panel.node("bench-b").await?);
    let member = panel.member().await?;
    let pass = Duration::from_secs(1);
    let agent_a = panel.agent(a, pass, true).await?;
    let _agent_b = panel.agent(b, pass, true).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let api = Api {
        http: http.clone(),
        panel: &panel,
    };
    api.wait_for_endpoints(b).await?;
    println!(
        "| site | passes | bytes sent | freeze window (client's longest gap) | whole move | failed requests | cold copy (rsync -a) | freeze / cold copy |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for scenario in chosen {
        for run in 0..runs {
            let host = format!("r{run}-{}.bench.example.org", scenario.name.to_lowercase());
            let site = api
                .create_site(&member.to_string(), a, image, &host)
                .await?;
            let measured = move_once(&api, &scenario, &site, &host, a, b, agent_a.ingress).await?;
            let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
            println!(
                "| {} in {} files{} | {} | {} | {} ms ({}) | {} | {} of {} | {} | {:.2}× |",
                alveole_model::quantity::format_bytes(scenario.bytes as u64),
                scenario.files,
                if measured.written > 0 {
                    format!(
                        ", {} written during the move",
                        alveole_model::quantity::format_bytes(measured.written)
                    )
                } else {
                    String::new()
                },
                measured.passes,
                alveole_model::quantity::format_bytes(measured.bytes_sent),
                measured.freeze_ms,
                ms(measured.longest_gap),
                ms(measured.total),
                measured.failed,
                measured.requests,
                ms(measured.cold_copy),
                measured.freeze_ms as f64 / (measured.cold_copy.as_secs_f64() * 1000.0),
            );
        }
    }
    Ok(())
}

/// The panel's API as the benchmarks call it.
pub(crate) struct Api<'a> {
    pub http: reqwest::Client,
    pub panel: &'a BenchPanel,
}

impl Api<'_> {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.panel.url))
            .bearer_auth(&self.panel.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// What `node`'s agent last reported, as the API shows it.
    pub(crate) async fn node_status(&self, node: NodeId) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/nodes/{node}/status"),
            None,
        )
        .await
    }

    pub(crate) async fn wait_for_endpoints(&self, node: NodeId) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.node_status(node).await?;
            if status["report"]["endpoints"]["peer"].is_string() {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "node {node} never reported");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn create_site(
        &self,
        member: &str,
        node: NodeId,
        image: &str,
        host: &str,
    ) -> anyhow::Result<String> {
        let site = self
            .call(
                reqwest::Method::POST,
                "/api/v1/sites",
                Some(json!({
                    "owner_id": member, "primary_domain": host, "image": image, "node_id": node,
                    "command": ["/bin/sh", "-c", SITE],
                    "limits": {"cpu_millis": 500, "memory_bytes": 134217728, "pids": 64},
                    "volume": {"quota_bytes": 4u64 << 30, "mount_path": "/data"}
                })),
            )
            .await?;
        Ok(site["id"].as_str().context("no site id")?.to_owned())
    }
}

pub(crate) fn volume_dir(node: NodeId, site: &str) -> anyhow::Result<PathBuf> {
    let name = alveole_agent::Naming { node_id: node }.volume(site.parse()?);
    let out = std::process::Command::new("docker")
        .args(["volume", "inspect", "-f", "{{.Mountpoint}}", &name])
        .output()?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The site's volume directory once its container runs (at most a minute).
pub(crate) async fn wait_for_volume(node: NodeId, site: &str) -> anyhow::Result<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dir = volume_dir(node, site)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the site's volume never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn fill(root: &Path, files: usize, bytes: usize) -> anyhow::Result<()> {
    let each = bytes / files;
    for i in 0..files {
        let dir = root.join(format!("files/d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&dir)?;
        }
        let line = format!("file {i} of the site's data\n");
        let contents: Vec<u8> = line.bytes().cycle().take(each).collect();
        std::fs::write(dir.join(format!("f{i:06}")), contents)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn move_once(
    api: &Api<'_>,
    scenario: &Scenario,
    site: &str,
    host: &str,
    a: NodeId,
    b: NodeId,
    ingress: std::net::SocketAddr,
) -> anyhow::Result<Measured> {
    let source = wait_for_volume(a, site).await?;
    fill(&source, scenario.files, scenario.bytes)?;
    crate::measure::first_200(&api.http, &format!("http://{ingress}/"), host).await?;

    // A client every few milliseconds; a writer adding files to the volume, if any.
    let stop = Arc::new(AtomicBool::new(false));
    let client = tokio::spawn(request_loop(
        api.http.clone(),
        ingress,
        host.to_owned(),
        stop.clone(),
    ));
    let written = Arc::new(AtomicU64::new(0));
    let writer = (scenario.writes_per_second > 0).then(|| {
        let (root, stop, written, rate) = (
            source.clone(),
            stop.clone(),
            written.clone(),
            scenario.writes_per_second,
        );
        std::thread::spawn(move || write_loop(&root, rate, &stop, &written))
    });

    let started = Instant::now();
    let movement = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site}/move"),
            Some(json!({"to_node": b})),
        )
        .await?;
    let id = movement["id"].as_str().context("no move id")?.to_owned();
    let moved = loop {
        let movement = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/site-moves/{id}"),
                None,
            )
            .await?;
        anyhow::ensure!(movement["phase"] != "failed", "the move failed: {movement}");
        if movement["phase"] == "forwarding" && movement["progress"]["freeze_ms"].is_u64() {
            break movement;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the move took too long"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = Duration::from_millis(
        moved["switched_at"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .zip(
                moved["started_at"]
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()),
            )
            .map(|(end, start)| (end - start).num_milliseconds().max(0) as u64)
            .unwrap_or_else(|| started.elapsed().as_millis() as u64),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let (requests, failed, longest_gap) = client.await?;

    // The baseline: the whole tree copied cold, as a stop-copy-start move does.
    let cold = std::env::temp_dir().join(format!(
        "alveole-bench-cold-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&cold)?;
    let cold_copy = crate::volume::rsync(&source, &cold);
    let _ = std::fs::remove_dir_all(&cold);
    let progress = &moved["progress"];
    // The move is done: the source drops its copy, the site goes (its volume with it).
    api.call(
        reqwest::Method::POST,
        &format!("/api/v1/site-moves/{id}/finish"),
        Some(json!({})),
    )
    .await?;
    let shown = api
        .call(reqwest::Method::GET, &format!("/api/v1/sites/{site}"), None)
        .await?;
    api.call(
        reqwest::Method::POST,
        &format!("/api/v1/sites/{site}/purge?version={}", shown["version"]),
        None,
    )
    .await?;
    Ok(Measured {
        freeze_ms: progress["freeze_ms"].as_u64().unwrap_or_default(),
        total,
        passes: progress["passes"].as_u64().unwrap_or_default(),
        bytes_sent: progress["bytes_sent"].as_u64().unwrap_or_default(),
        longest_gap,
        requests,
        failed,
        written: written.load(Ordering::Relaxed),
        cold_copy: cold_copy?,
    })
}

/// Requests the site every 5 ms until `stop` (bounded: 15 minutes): how many, how many
/// failed, the longest time between two answers.
async fn request_loop(
    http: reqwest::Client,
    ingress: std::net::SocketAddr,
    host: String,
    stop: Arc<AtomicBool>,
) -> (usize, usize, Duration) {
    let (mut requests, mut failed, mut longest) = (0, 0, Duration::ZERO);
    let started = Instant::now();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(900) {
        let ok = http
            .get(format!("http://{ingress}/"))
            .header("host", &host)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        requests += 1;
        failed += usize::from(!ok);
        longest = longest.max(last.elapsed());
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (requests, failed, longest)
}

/// Adds `rate` bytes per second to the volume, in 64 KB files, until `stop`.
fn write_loop(root: &Path, rate: usize, stop: &AtomicBool, written: &AtomicU64) {
    const CHUNK: usize = 64 * 1024;
    let every = Duration::from_secs_f64(CHUNK as f64 / rate as f64);
    let dir = root.join("uploads");
    let _ = std::fs::create_dir_all(&dir);
    let chunk = vec![b'w'; CHUNK];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && n < 1_000_000 {
        if std::fs::write(dir.join(format!("u{n:07}")), &chunk).is_ok() {
            written.fetch_add(CHUNK as u64, Ordering::Relaxed);
        }
        n += 1;
        std::thread::sleep(every);
    }
}
