//! `alveole-bench overload`: a surge of visitors on one site, at 10× and 20× its capacity,
//! three ways in one run: no protection (the ingress alone), nginx's `limit_req` and
//! `limit_conn` in front of the same site, and alveole's admission. Visitors keep their
//! cookies, pause between pages (half to one and a half `think_ms`), and reload (after the
//! page's refresh, or two seconds) when turned away. A second site on the same node is measured all along. Then the cost of
//! admission when nobody waits. Bounded in time and requests; everything on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alveole_agent::ingress::{Ingress, Routes, Upstream};
use alveole_model::{Hostname, SiteId, SiteSpec, Wildcard};
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::measure::percentiles;

const SCHOOL: &str = "ecole.example.org";
const NEIGHBOUR: &str = "voisin.example.org";

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// The site's workers, and how long each request takes one (a PHP-FPM pool's shape).
    pub workers: usize,
    pub service_ms: u64,
    /// Pages each visitor reads, and the pause between them.
    pub pages: usize,
    pub think_ms: u64,
    /// Visitors arrive over this long; a scenario ends at `limit` at the latest.
    pub arrival_seconds: u64,
    pub limit_seconds: u64,
}

impl Shape {
    /// Requests per second the site serves.
    fn capacity(&self) -> f64 {
        self.workers as f64 * 1000.0 / self.service_ms as f64
    }

    /// Visitors the site serves at once at full speed: requests per second over each
    /// visitor's pace.
    fn visitors(&self) -> usize {
        (self.capacity() * (self.think_ms as f64 + self.service_ms as f64) / 1000.0) as usize
    }
}

/// A site on loopback with `workers` workers, each request holding one for `service_ms`.
async fn site(workers: usize, service_ms: u64) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let pool = Arc::new(Semaphore::new(workers));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pool = pool.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let pool = pool.clone();
                    async move {
                        let _worker = pool.acquire().await;
                        tokio::time::sleep(Duration::from_millis(service_ms)).await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes_of("<!doctype html><p>page</p>")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

fn bytes_of(text: &'static str) -> hyper::body::Bytes {
    hyper::body::Bytes::from_static(text.as_bytes())
}

fn spec(
    site: SiteId,
    name: &str,
    admission: Option<serde_json::Value>,
) -> anyhow::Result<SiteSpec> {
    Ok(serde_json::from_value(serde_json::json!({
        "site_id": site, "hostnames": [name], "image": "bench/none:1", "command": [],
        "env": [], "http_port": 8080, "volume": {"quota_bytes": 1024, "mount_path": "/data"},
        "limits": {"cpu_millis": 1000, "memory_bytes": 268435456, "pids": 64}, "run": true,
        "admission": admission,
    }))?)
}

/// The node's ingress in this process, for the school (protected when `admission` is given)
/// and its neighbour.
async fn ingress(
    school: SocketAddr,
    neighbour: SocketAddr,
    admission: Option<serde_json::Value>,
) -> anyhow::Result<SocketAddr> {
    let (school_id, neighbour_id) = (SiteId::generate(), SiteId::generate());
    let mut routes = Routes::default();
    for (name, site, address) in [
        (SCHOOL, school_id, school),
        (NEIGHBOUR, neighbour_id, neighbour),
    ] {
        routes.insert(
            &Hostname::parse(name, Wildcard::Refused)?,
            Upstream { site, address },
        );
    }
    let ingress = Arc::new(Ingress::new());
    ingress.set_admissions(&[
        spec(school_id, SCHOOL, admission)?,
        spec(neighbour_id, NEIGHBOUR, None)?,
    ]);
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(ingress.serve(listener));
    Ok(address)
}

/// nginx in front of the same sites, the school behind `limit_req` (its capacity, a burst of
/// a second's worth) and `limit_conn` (twice its workers); killed when dropped.
struct Nginx {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    address: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nginx(school: SocketAddr, neighbour: SocketAddr, shape: &Shape) -> anyhow::Result<Nginx> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let rate = shape.capacity() as u64;
    let config = format!(
        "worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  limit_req_zone $host zone=site:1m rate={rate}r/s;
  limit_conn_zone $host zone=conns:1m;
  upstream school {{ server {school}; keepalive 64; }}
  upstream neighbour {{ server {neighbour}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port}; server_name {SCHOOL};
    limit_req zone=site burst={rate} nodelay; limit_conn conns {conns}; limit_req_status 503;
    limit_conn_status 503;
    location / {{ proxy_pass http://school; proxy_http_version 1.1;
      proxy_set_header Connection \"\"; }} }}
  server {{ listen 127.0.0.1:{port}; server_name {NEIGHBOUR};
    location / {{ proxy_pass http://neighbour; proxy_http_version 1.1;
      proxy_set_header Connection \"\"; }} }}
}}
",
        dir = dir.path().display(),
        conns = shape.workers * 2,
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, config)?;
    let child = std::process::Command::new("nginx")
        .args(["-p", &dir.path().display().to_string(), "-c"])
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting nginx (apt-get install nginx-light)")?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(Nginx {
                child,
                _dir: dir,
                address,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nginx did not start")
}

/// What one visitor saw.
#[derive(Debug, Default)]
struct Visit {
    pages: usize,
    admitted_at: Option<Instant>,
    /// When they first waited, and the wait the waiting room announced.
    first_wait: Option<(Instant, f64)>,
    latencies: Vec<Duration>,
    /// 5xx or no answer after a first page was served.
    errors_once_admitted: usize,
    turned_away: usize,
}

/// A pause between half and one and a half `think_ms`, different for each visitor and page
/// (people do not read in step).
fn pause(shape: &Shape, seed: u64) -> Duration {
    // splitmix64: a fixed, well-spread sequence, the same in every run.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let fraction = (z ^ (z >> 31)) as f64 / u64::MAX as f64;
    Duration::from_millis((shape.think_ms as f64 * (0.5 + fraction)) as u64)
}

async fn visitor(
    http: reqwest::Client,
    url: String,
    shape: Shape,
    deadline: Instant,
    number: u64,
) -> Visit {
    let mut seen = Visit::default();
    let mut pass: Option<String> = None;
    while seen.pages < shape.pages && Instant::now() < deadline {
        let mut request = http
            .get(&url)
            .header("host", SCHOOL)
            .header("accept", "text/html");
        if let Some(pass) = &pass {
            request = request.header("cookie", pass);
        }
        let asked = Instant::now();
        let answer = request.send().await;
        let (status, refresh, body) = match answer {
            Ok(answer) => {
                if let Some(cookie) = answer
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                {
                    pass = cookie.split(';').next().map(str::to_owned);
                }
                let refresh = answer
                    .headers()
                    .get("refresh")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let status = answer.status().as_u16();
                (status, refresh, answer.text().await.unwrap_or_default())
            }
            Err(_) => (0, None, String::new()),
        };
        if status == 200 {
            seen.admitted_at.get_or_insert(Instant::now());
            seen.latencies.push(asked.elapsed());
            seen.pages += 1;
            tokio::time::sleep(pause(&shape, number * 1000 + seen.pages as u64)).await;
            continue;
        }
        if let Some(estimate) = announced_wait(&body) {
            seen.first_wait.get_or_insert((asked, estimate));
        }
        if seen.admitted_at.is_some() {
            seen.errors_once_admitted += 1;
        } else {
            seen.turned_away += 1;
        }
        // As a person would: the page reloads itself, or they reload after a moment.
        tokio::time::sleep(Duration::from_secs(refresh.unwrap_or(2))).await;
    }
    seen
}

/// The waiting room's announced wait, in seconds (`data-seconds`).
fn announced_wait(body: &str) -> Option<f64> {
    let at = body.find("data-seconds=\"")? + "data-seconds=\"".len();
    body[at..].split('"').next()?.parse().ok()
}

/// The neighbour's latencies until `stop`, one request every 20 ms.
async fn neighbour_load(http: reqwest::Client, url: String, stop: Instant) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while Instant::now() < stop {
        let asked = Instant::now();
        let ok = http
            .get(&url)
            .header("host", NEIGHBOUR)
            .send()
            .await
            .is_ok_and(|a| a.status().is_success());
        if ok {
            latencies.push(asked.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(10))
        .build()?)
}

struct Outcome {
    visitors: usize,
    served: usize,
    p95: Duration,
    errors_once_admitted: usize,
    turned_away: usize,
    /// Announced waits against the real ones: the median error and the share within ±20%.
    estimate: Option<(f64, f64)>,
    neighbour_p99: Duration,
}

async fn surge(proxy: SocketAddr, shape: Shape, visitors: usize) -> anyhow::Result<Outcome> {
    let http = client()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(shape.limit_seconds);
    let neighbour = tokio::spawn(neighbour_load(
        http.clone(),
        format!("http://{proxy}/"),
        deadline.min(started + Duration::from_secs(shape.arrival_seconds * 2)),
    ));
    let mut running = Vec::with_capacity(visitors);
    for i in 0..visitors {
        let arrives = started
            + Duration::from_millis(shape.arrival_seconds * 1000 * i as u64 / visitors as u64);
        let (http, url) = (http.clone(), format!("http://{proxy}/"));
        running.push(tokio::spawn(async move {
            tokio::time::sleep_until(arrives.into()).await;
            visitor(http, url, shape, deadline, i as u64).await
        }));
    }
    let mut seen = Vec::with_capacity(visitors);
    for visit in running {
        seen.push(visit.await?);
    }
    let mut latencies = Vec::new();
    let mut estimates = Vec::new();
    for visit in &seen {
        latencies.extend(&visit.latencies);
        if let (Some((waited_from, announced)), Some(admitted)) =
            (visit.first_wait, visit.admitted_at)
        {
            let actual = admitted.duration_since(waited_from).as_secs_f64();
            if actual > 0.0 {
                estimates.push((announced - actual) / actual);
            }
        }
    }
    latencies.sort();
    let p95 = latencies
        .get(latencies.len() * 95 / 100)
        .copied()
        .unwrap_or_default();
    let estimate = (!estimates.is_empty()).then(|| {
        let mut absolute: Vec<f64> = estimates.iter().map(|e| e.abs()).collect();
        absolute.sort_by(f64::total_cmp);
        let within = absolute.iter().filter(|e| **e <= 0.2).count() as f64 / absolute.len() as f64;
        (absolute[absolute.len() / 2], within)
    });
    Ok(Outcome {
        visitors,
        served: seen.iter().filter(|v| v.pages == shape.pages).count(),
        p95,
        errors_once_admitted: seen.iter().map(|v| v.errors_once_admitted).sum(),
        turned_away: seen.iter().map(|v| v.turned_away).sum(),
        estimate,
        neighbour_p99: percentiles(neighbour.await?).1,
    })
}

/// One visitor alone, and the neighbour alone: the unloaded baselines.
async fn unloaded(proxy: SocketAddr, shape: Shape) -> anyhow::Result<(Duration, Duration)> {
    let http = client()?;
    let mut alone = Vec::new();
    for _ in 0..100 {
        let asked = Instant::now();
        http.get(format!("http://{proxy}/"))
            .header("host", SCHOOL)
            .header("accept", "text/html")
            .send()
            .await?
            .error_for_status()?;
        alone.push(asked.elapsed());
    }
    alone.sort();
    let p95 = alone[alone.len() * 95 / 100];
    let stop = Instant::now() + Duration::from_secs(shape.arrival_seconds);
    let neighbour = percentiles(neighbour_load(http, format!("http://{proxy}/"), stop).await).1;
    Ok((p95, neighbour))
}

/// Admission's settings for the school: as many visitors at once as keep it at half its
/// capacity when all of them are reading pages (a site near 100% is already slow), new ones
/// at the pace sessions end. A co-op chooses these for its site; the defaults (from the CPU
/// limit) are far above what this small site can take.
fn admission(shape: &Shape) -> serde_json::Value {
    let session_ms = shape.pages as u64 * (shape.think_ms + shape.service_ms);
    let busy = (shape.visitors() as u64 / 2).max(1);
    let active_seconds = (shape.think_ms * 2 / 1000).max(2);
    let refresh_seconds = 2;
    // A place is held for a visit, then `active_seconds`, and is taken up about half a
    // refresh after it is offered: the pace at which places free up.
    let held_ms = session_ms + active_seconds * 1000 + refresh_seconds * 500;
    serde_json::json!({
        "active_visitors": busy,
        "concurrent_requests": shape.workers * 2,
        "new_visitors_per_minute": (busy * 60_000 / held_ms.max(1)).max(1),
        "active_seconds": active_seconds,
        "refresh_seconds": refresh_seconds,
        "key": "ab".repeat(32),
    })
}

pub async fn run(shape: Shape, multiples: &[usize]) -> anyhow::Result<()> {
    println!(
        "site: {} workers × {} ms = {:.0} requests/s; a visitor reads {} pages, {} ms apart: \
         {} visitors at once at full speed",
        shape.workers,
        shape.service_ms,
        shape.capacity(),
        shape.pages,
        shape.think_ms,
        shape.visitors()
    );
    let (school, neighbour) = (
        site(shape.workers, shape.service_ms).await?,
        site(8, 2).await?,
    );
    let plain = ingress(school, neighbour, None).await?;
    let (baseline, neighbour_baseline) = unloaded(plain, shape).await?;
    println!(
        "unloaded: a page's p95 {:.1} ms; the neighbour's p99 {:.1} ms",
        ms(baseline),
        ms(neighbour_baseline)
    );
    println!(
        "| load | proxy | visitors served whole | admitted p95 (× unloaded) | 5xx once admitted | turned away | estimate: median error, within ±20% | neighbour p99 (× alone) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &multiple in multiples {
        let visitors = shape.visitors() * multiple;
        for proxy in ["none", "nginx", "alveole"] {
            // Fresh sites each time: nothing queued carries over.
            let school = site(shape.workers, shape.service_ms).await?;
            let neighbour = site(8, 2).await?;
            let mut _nginx = None;
            let address = match proxy {
                "none" => ingress(school, neighbour, None).await?,
                "nginx" => {
                    let started = nginx(school, neighbour, &shape).await?;
                    let address = started.address;
                    _nginx = Some(started);
                    address
                }
                _ => ingress(school, neighbour, Some(admission(&shape))).await?,
            };
            let outcome = surge(address, shape, visitors).await?;
            println!(
                "| {multiple}× ({}) | {proxy} | {}/{} | {:.0} ms ({:.2}×) | {} | {} | {} | {:.1} ms ({:.2}×) |",
                outcome.visitors,
                outcome.served,
                outcome.visitors,
                ms(outcome.p95),
                ms(outcome.p95) / ms(baseline),
                outcome.errors_once_admitted,
                outcome.turned_away,
                outcome
                    .estimate
                    .map(|(median, within)| format!(
                        "{:.0}%, {:.0}%",
                        median * 100.0,
                        within * 100.0
                    ))
                    .unwrap_or_else(|| "—".into()),
                ms(outcome.neighbour_p99),
                ms(outcome.neighbour_p99) / ms(neighbour_baseline),
            );
        }
    }
    overhead().await
}

/// What admission adds when nobody waits: the same fast site through an ingress with
/// admission and one without, 5 interleaved samples of 3,000 requests one after the other.
async fn overhead() -> anyhow::Result<()> {
    let fast = site(64, 0).await?;
    let neighbour = site(1, 0).await?;
    let shape_free = serde_json::json!({
        "active_visitors": 1_000_000, "concurrent_requests": 100_000,
        "new_visitors_per_minute": 1_000_000, "active_seconds": 300, "refresh_seconds": 20,
        "key": "cd".repeat(32),
    });
    let without = ingress(fast, neighbour, None).await?;
    let with = ingress(fast, neighbour, Some(shape_free)).await?;
    let http = client()?;
    let mut samples = (Vec::new(), Vec::new());
    for _ in 0..5 {
        for (proxy, into) in [(without, &mut samples.0), (with, &mut samples.1)] {
            let mut latencies = Vec::with_capacity(3000);
            // A visitor with a pass, as most requests under protection are.
            let mut pass: Option<String> = None;
            for _ in 0..3000 {
                let mut request = http
                    .get(format!("http://{proxy}/"))
                    .header("host", SCHOOL)
                    .header("accept", "text/html");
                if let Some(pass) = &pass {
                    request = request.header("cookie", pass);
                }
                let asked = Instant::now();
                let answer = request.send().await?.error_for_status()?;
                if let Some(cookie) = answer
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                {
                    pass = cookie.split(';').next().map(str::to_owned);
                }
                answer.bytes().await?;
                latencies.push(asked.elapsed());
            }
            into.push(percentiles(latencies));
        }
    }
    let median = |samples: &mut Vec<(Duration, Duration)>,
                  pick: fn(&(Duration, Duration)) -> Duration| {
        let mut values: Vec<Duration> = samples.iter().map(pick).collect();
        values.sort();
        values[values.len() / 2]
    };
    let (p50_without, p99_without) = (
        median(&mut samples.0, |s| s.0),
        median(&mut samples.0, |s| s.1),
    );
    let (p50_with, p99_with) = (
        median(&mut samples.1, |s| s.0),
        median(&mut samples.1, |s| s.1),
    );
    println!(
        "nobody waiting, 5 × 3,000 requests each (medians): p50 {:.0} µs → {:.0} µs, p99 {:.0} µs → {:.0} µs: admission adds {:+.0} µs at p99",
        us(p50_without),
        us(p50_with),
        us(p99_without),
        us(p99_with),
        us(p99_with) - us(p99_without),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
