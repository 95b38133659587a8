//! `alveole bench`: measurements that docs/BENCHMARKS.md reports. Each compares alveole with a
//! baseline measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alveole_model::{
    Capacity, EnvVarInput, Limits, MemberInput, NodeInput, Overcommit, ProviderInput, Role,
    SiteInput, Volume,
};
use alveole_panel::PanelConfig;
use alveole_store::{AuditContext, PageRequest, SiteFilter, Store};
use anyhow::Context;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// GET /api/v1/sites over many sites: first and deep page through the API, and the deep page
    /// by keyset (what the API does) against LIMIT/OFFSET (the naive baseline).
    ListSites {
        /// A database to fill (sites are added until there are this many).
        #[arg(long, default_value = "sqlite://alveole-bench.db")]
        database_url: String,
        #[arg(long, default_value_t = 10_000)]
        sites: usize,
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Requests per measurement.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Reconcile N sites onto an empty node with the real Docker engine, against a naive
    /// baseline: the same containers started one `docker run -d` at a time.
    Reconcile {
        #[arg(long, default_value_t = 100)]
        sites: usize,
        /// An image present on this engine that serves HTTP on port 8080 with this command.
        #[arg(long, default_value = "alveole-test/busybox:2")]
        image: String,
    },
    /// From `POST /api/v1/sites` to the site's first 200 through the node's ingress (panel,
    /// agent and ingress in this process, the real Docker engine), against `docker run -d`
    /// waited on until it answers 200.
    CreateSite {
        #[arg(long, default_value_t = 20)]
        sites: usize,
        #[arg(long, default_value = "alveole-test/busybox:2")]
        image: String,
    },
    /// `alveole audit verify` over a large record (chained events added to an SQLite
    /// database), against reading the same rows unchecked.
    AuditVerify {
        #[arg(long, default_value = "sqlite://alveole-audit-bench.db")]
        database_url: String,
        /// Events to add before verifying.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// The node's nftables table for N sites, applied whole against a raw `nft -f` of the
    /// same table, and one site's change (in a scratch network namespace; needs root).
    Routing {
        #[arg(long, default_value_t = 10_000)]
        sites: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Measure in this process's own namespace (set when the benchmark runs itself in
        /// its scratch namespace).
        #[arg(long, hide = true)]
        inside: bool,
    },
    /// What a new connection pays to cross a node: alveole's table for N sites against
    /// iptables-legacy with one DNAT rule per site, and against no rule (in scratch network
    /// namespaces; needs root, nft and iptables-legacy).
    Packets {
        /// Site counts to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,10000")]
        sites: Vec<usize>,
        /// Connections per measurement.
        #[arg(long, default_value_t = 2_000)]
        connections: usize,
        /// Interleaved rounds (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The part this process plays in the namespaces the benchmark made.
        #[arg(long, hide = true)]
        role: Option<PacketsRole>,
        #[arg(long, hide = true)]
        target: Option<std::net::SocketAddr>,
        #[arg(long, hide = true, default_value_t = 0)]
        first_source: u32,
    },
    /// The passes that copy a site's volume during a move against `rsync -a` on the same
    /// trees: the first pass, a pass after a few files changed, a pass when nothing did.
    VolumeSync {
        #[arg(long, default_value_t = 10_000)]
        files: usize,
        #[arg(long, default_value_t = 4_096)]
        bytes_per_file: usize,
        /// Files changed between the first pass and the second.
        #[arg(long, default_value_t = 100)]
        changed: usize,
    },
    /// A site moved between two nodes while a client requests it: the freeze window, the
    /// whole move, passes and bytes, against a cold copy of the same volume (`rsync -a`).
    SiteMove {
        #[arg(long, default_value = "alveole-test/busybox:2")]
        image: String,
        /// Sites to move: 100M (1,000 files), 10k-files (4 KB each), 1G (1,000 files, with
        /// 2 MiB/s written during the move).
        #[arg(long, value_delimiter = ',', default_value = "100M,10k-files,1G")]
        scenarios: Vec<String>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// A keep-alive HTTP backend answering `hello` (for bench/ingress.sh).
    Backend {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// alveole's ingress with one route, `--host` → `--upstream` (for bench/ingress.sh).
    IngressProxy {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        upstream: std::net::SocketAddr,
        #[arg(long, default_value = "bench.example.org")]
        host: String,
    },
}

/// The parts `bench packets` runs in its namespaces.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PacketsRole {
    Client,
    Backend,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::ListSites {
            database_url,
            sites,
            page_size,
            requests,
            concurrency,
        } => list_sites(&database_url, sites, page_size, requests, concurrency).await,
        BenchCommand::Reconcile { sites, image } => reconcile(sites, &image).await,
        BenchCommand::CreateSite { sites, image } => create_site(sites, &image).await,
        BenchCommand::AuditVerify {
            database_url,
            events,
        } => crate::bench_audit::verify(&database_url, events).await,
        BenchCommand::Routing {
            sites,
            runs,
            inside: false,
        } => crate::bench_routing::run(sites, runs),
        BenchCommand::Routing {
            sites,
            runs,
            inside: true,
        } => crate::bench_routing::measure(sites, runs),
        BenchCommand::Packets {
            sites,
            connections,
            runs,
            role,
            target,
            first_source,
        } => match (role, target) {
            (None, _) => crate::bench_packets::run(&sites, connections, runs),
            (Some(PacketsRole::Backend), _) => crate::bench_packets::backend().await,
            (Some(PacketsRole::Client), Some(target)) => {
                crate::bench_packets::client(target, connections, first_source).await
            }
            (Some(PacketsRole::Client), None) => anyhow::bail!("the client needs --target"),
        },
        BenchCommand::VolumeSync {
            files,
            bytes_per_file,
            changed,
        } => crate::bench_volume::run(files, bytes_per_file, changed),
        BenchCommand::SiteMove {
            image,
            scenarios,
            runs,
        } => crate::bench_move::run(&image, &scenarios, runs).await,
        BenchCommand::Backend { listen } => backend(listen).await,
        BenchCommand::IngressProxy {
            listen,
            upstream,
            host,
        } => ingress_proxy(listen, upstream, &host).await,
    }
}

/// Latency summary of one measurement.
#[derive(Debug)]
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
}

/// Runs `requests` calls of `call`, `concurrency` at a time; every call must succeed.
pub async fn measure<F, Fut>(
    requests: usize,
    concurrency: usize,
    call: F,
) -> anyhow::Result<Summary>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let t = Instant::now();
                    call().await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(requests);
    for worker in workers {
        all.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    let count = all.len();
    let (p50, p99) = percentiles(all);
    Ok(Summary {
        p50,
        p99,
        per_second: count as f64 / elapsed.as_secs_f64(),
    })
}

async fn seed(store: &dyn Store, wanted: usize) -> anyhow::Result<()> {
    let ctx = AuditContext::new("system:bench", "bench");
    let existing = store.counts().await?.sites as usize;
    if existing >= wanted {
        return Ok(());
    }
    let provider = store
        .create_provider(
            &ctx,
            ProviderInput {
                name: format!("bench-{}", uuid::Uuid::now_v7()),
                ..Default::default()
            }
            .validate()?,
        )
        .await?;
    let node = NodeInput {
        provider_id: provider.id,
        name: format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
        public_addresses: vec!["192.0.2.10".into()],
        capacity: Capacity {
            cpu_millis: 1_024_000,
            memory_bytes: 1 << 50,
            disk_bytes: 1 << 59,
        },
        overcommit: Overcommit {
            cpu: 16.0,
            memory: 1.0,
        },
        input_filter: false,
        input_allowed: vec![],
    };
    let node = store.create_node(&ctx, node.validate()?).await?;
    let member = MemberInput {
        display_name: "Bench".into(),
        email: format!("bench-{}@example.org", uuid::Uuid::now_v7().simple()),
        role: Role::Member,
    };
    let member = store.create_member(&ctx, member.validate()?).await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    for i in existing..wanted {
        let input = SiteInput {
            owner_id: member.id,
            primary_domain: format!("site-{i}-{}.bench.example.org", &tag[20..]),
            aliases: vec![format!("www.site-{i}-{}.bench.example.org", &tag[20..])],
            image: "registry.example.org/coop/site:1".into(),
            command: vec![],
            env: vec![EnvVarInput {
                name: "MODE".into(),
                value: Some("prod".into()),
                secret: false,
            }],
            http_port: 8080,
            volume: Volume::default(),
            limits: Limits::default(),
            security: Default::default(),
            exposed_ports: vec![],
            limit_tier: Default::default(),
            node_id: Some(node.id),
            phase: None,
        };
        store.create_site(&ctx, input.validate(None)?).await?;
    }
    Ok(())
}

async fn list_sites(
    database_url: &str,
    sites: usize,
    page_size: u32,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let store = alveole_store::connect(database_url)
        .await
        .context("opening the bench database")?;
    let seeding = Instant::now();
    seed(store.as_ref(), sites).await?;
    eprintln!("seeded {sites} sites in {:.1?}", seeding.elapsed());
    let token = alveole_panel::auth::reset_bootstrap_token(
        store.as_ref(),
        &AuditContext::new("system:bench", "bench"),
    )
    .await?;

    // The cursor of the last page: the deepest a client can go.
    let total = store.counts().await?.sites as u32;
    let deep_offset = total.saturating_sub(page_size);
    let deep_cursor = if deep_offset == 0 {
        None
    } else {
        let before = store.list_sites_by_offset(deep_offset - 1, 1).await?;
        before.first().map(|s| s.id.0)
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = alveole_panel::AppState::new(store.clone(), PanelConfig::default())?;
    let server = tokio::spawn(crate::serve::serve(state, listener));
    let http = reqwest::Client::new();

    let api = |query: String| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move || {
            let (http, url, token) = (
                http.clone(),
                format!("{base}/api/v1/sites?{query}"),
                token.clone(),
            );
            async move {
                let response = http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await?
                    .error_for_status()?;
                let body = response.bytes().await?;
                anyhow::ensure!(body.len() > 2, "empty page");
                Ok(())
            }
        }
    };
    let first = measure(requests, concurrency, api(format!("limit={page_size}"))).await?;
    let deep_query = match deep_cursor {
        Some(cursor) => format!("limit={page_size}&cursor={cursor}"),
        None => format!("limit={page_size}"),
    };
    let deep = measure(requests, concurrency, api(deep_query)).await?;

    let keyset = {
        let store = store.clone();
        measure(requests, concurrency, move || {
            let store = store.clone();
            async move {
                let page = store
                    .list_sites(
                        &SiteFilter::default(),
                        &PageRequest {
                            after: deep_cursor,
                            limit: page_size,
                        },
                    )
                    .await?;
                anyhow::ensure!(!page.items.is_empty(), "empty page");
                Ok(())
            }
        })
        .await?
    };
    let offset = {
        let store = store.clone();
        measure(requests, concurrency, move || {
            let store = store.clone();
            async move {
                let items = store.list_sites_by_offset(deep_offset, page_size).await?;
                anyhow::ensure!(!items.is_empty(), "empty page");
                Ok(())
            }
        })
        .await?
    };
    server.abort();

    let backend = format!("{:?}", store.backend()).to_lowercase();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    println!("| backend | measurement | p50 ms | p99 ms | req/s |");
    println!("|---|---|---|---|---|");
    for (name, s) in [
        ("API first page", &first),
        ("API last page (keyset cursor)", &deep),
        ("store last page, keyset", &keyset),
        ("store last page, LIMIT/OFFSET (baseline)", &offset),
    ] {
        println!(
            "| {backend} | {name} | {} | {} | {:.0} |",
            ms(s.p50),
            ms(s.p99),
            s.per_second
        );
    }
    println!(
        "\n{backend}: {total} sites, page size {page_size}, {requests} requests per row, concurrency {concurrency}; \
         keyset is {:.1}x the throughput of OFFSET on the last page.",
        keyset.per_second / offset.per_second
    );
    Ok(())
}

/// A minimal keep-alive HTTP/1.1 server: the same backend behind both proxies.
async fn backend(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"hello\n"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn ingress_proxy(
    listen: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    host: &str,
) -> anyhow::Result<()> {
    use alveole_agent::ingress::{Ingress, Routes, Upstream};
    let hostname = alveole_model::Hostname::parse(host, alveole_model::Wildcard::Refused)?;
    let mut routes = Routes::default();
    routes.insert(
        &hostname,
        Upstream {
            site: alveole_model::SiteId::generate(),
            address: upstream,
        },
    );
    let ingress = std::sync::Arc::new(Ingress::new());
    ingress.set_routes(routes);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("ingress listening on {}", listener.local_addr()?);
    ingress.serve(listener).await?;
    Ok(())
}

const HELLO: &str = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec /bin/httpd -f -p 8080 -h /tmp/www";

async fn reconcile(count: usize, image: &str) -> anyhow::Result<()> {
    use alveole_agent::docker::DockerRuntime;
    use alveole_agent::{Naming, Reconciler};
    use alveole_model::{DesiredState, Hostname, ImageRef, NodeId, SiteId, SiteSpec, Wildcard};

    let command = vec!["/bin/sh".to_owned(), "-c".to_owned(), HELLO.to_owned()];
    let specs: Vec<SiteSpec> = (0..count)
        .map(|i| -> anyhow::Result<SiteSpec> {
            Ok(SiteSpec {
                site_id: SiteId::generate(),
                hostnames: vec![Hostname::parse(
                    &format!("s{i}.bench.example.org"),
                    Wildcard::Refused,
                )?],
                image: ImageRef::parse(image)?,
                command: command.clone(),
                env: vec![],
                http_port: 8080,
                volume: Volume::default(),
                limits: Limits {
                    cpu_millis: 50,
                    memory_bytes: 16 << 20,
                    pids: 16,
                },
                security: Default::default(),
                run: true,
                dedicated_addresses: vec![],
                exposed_ports: vec![],
                limit_tier: Default::default(),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    // alveole: one pass from nothing to every site answering, then a pass with nothing to do.
    let naming = Naming {
        node_id: NodeId::generate(),
    };
    let reconciler = Reconciler::new(DockerRuntime::connect().await?, naming.clone());
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: specs.clone(),
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
    };
    let started = Instant::now();
    let report = reconciler.reconcile(&desired).await;
    let first = started.elapsed();
    let started = Instant::now();
    let again = reconciler.reconcile(&desired).await;
    let second = started.elapsed();
    remove_node(&naming);
    let report = report?;
    anyhow::ensure!(
        report.failures.is_empty() && report.addresses.len() == count,
        "not every site runs: {:?}",
        report.failures
    );
    anyhow::ensure!(again?.actions.is_empty(), "the second pass had work");

    // Baseline: the same network, volumes and containers, one `docker run -d` at a time, each
    // waited on until it accepts connections (as the reconciler does).
    let baseline = NodeId::generate();
    let base_naming = Naming { node_id: baseline };
    let label = format!("coop.alveole.node={baseline}");
    let started = Instant::now();
    docker(&[
        "network",
        "create",
        "--label",
        &label,
        &base_naming.network(),
    ])?;
    for spec in &specs {
        let volume = base_naming.volume(spec.site_id);
        docker(&["volume", "create", "--label", &label, &volume])?;
        let id = docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--network",
            &base_naming.network(),
            "-v",
            &format!("{volume}:/data"),
            "--memory",
            "16m",
            "--pids-limit",
            "16",
            "--cap-drop",
            "ALL",
            image,
            "/bin/sh",
            "-c",
            HELLO,
        ])?;
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])?;
        let address: std::net::SocketAddr = format!("{ip}:8080").parse()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{address} never answered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let naive = started.elapsed();
    remove_node(&base_naming);

    println!("| measurement | seconds | per site (ms) |");
    println!("|---|---|---|");
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / count as f64;
    println!(
        "| alveole: first pass, {count} sites from nothing to answering | {:.2} | {:.1} |",
        first.as_secs_f64(),
        per(first)
    );
    println!(
        "| alveole: second pass, nothing to do | {:.3} | {:.2} |",
        second.as_secs_f64(),
        per(second)
    );
    println!(
        "| baseline: {count} × `docker run -d` + wait | {:.2} | {:.1} |",
        naive.as_secs_f64(),
        per(naive)
    );
    println!(
        "\nalveole / baseline: {:.2}x the time for the first pass",
        first.as_secs_f64() / naive.as_secs_f64()
    );
    Ok(())
}

/// p50 and p99 of a list of durations.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(0.5), at(0.99))
}

/// Polls `url` with `Host: host` until it answers 200 (bounded).
pub(crate) async fn first_200(http: &reqwest::Client, url: &str, host: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).header("host", host).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{host} never answered 200");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn create_site(count: usize, image: &str) -> anyhow::Result<()> {
    let mut panel = crate::bench_harness::BenchPanel::start(PanelConfig::default()).await?;
    let node = panel.node("bench").await?;
    let member = panel.member().await?;
    let agent = panel.agent(node, Duration::from_secs(30), false).await?;
    let ingress_url = format!("http://{}/", agent.ingress);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut alveole = Vec::new();
    for i in 0..count {
        let host = format!("s{i}.bench.example.org");
        let body = serde_json::json!({
            "owner_id": member, "primary_domain": host, "image": image,
            "command": ["/bin/sh", "-c", HELLO], "limits": {"cpu_millis": 100, "memory_bytes": 33554432, "pids": 32}
        });
        let started = Instant::now();
        http.post(format!("{}/api/v1/sites", panel.url))
            .bearer_auth(&panel.token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        first_200(&http, &ingress_url, &host).await?;
        alveole.push(started.elapsed());
    }
    drop(agent);
    drop(panel);

    // Baseline: `docker run -d`, then poll the container directly until it answers 200.
    let label = format!("alveole-bench={}", uuid::Uuid::now_v7().simple());
    let mut baseline = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        let id = docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--memory",
            "32m",
            "--pids-limit",
            "32",
            image,
            "/bin/sh",
            "-c",
            HELLO,
        ])?;
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])?;
        first_200(&http, &format!("http://{ip}:8080/"), "baseline").await?;
        baseline.push(started.elapsed());
    }
    remove_labelled(&label);

    let ((a50, a99), (b50, b99)) = (percentiles(alveole), percentiles(baseline));
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    println!("| path | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| alveole: POST /api/v1/sites → first 200 through the ingress | {} | {} |",
        ms(a50),
        ms(a99)
    );
    println!(
        "| baseline: docker run -d → first 200 from the container | {} | {} |",
        ms(b50),
        ms(b99)
    );
    println!(
        "\n{count} sites each; alveole / baseline p99: {:.2}x",
        a99.as_secs_f64() / b99.as_secs_f64()
    );
    Ok(())
}

/// Runs the docker command line (the benchmarks' baselines use it, as a person would).
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Removes the containers and volumes carrying `label` (`key=value`).
fn remove_labelled(label: &str) {
    let filter = format!("label={label}");
    for id in docker(&["ps", "-aq", "--filter", &filter])
        .unwrap_or_default()
        .lines()
    {
        let _ = docker(&["rm", "-f", id]);
    }
    for volume in docker(&["volume", "ls", "-q", "--filter", &filter])
        .unwrap_or_default()
        .lines()
    {
        let _ = docker(&["volume", "rm", "-f", volume]);
    }
}

/// Removes everything a benchmark node left: containers, volumes, network, isolation table.
pub(crate) fn remove_node(naming: &alveole_agent::Naming) {
    remove_labelled(&format!("coop.alveole.node={}", naming.node_id));
    let _ = docker(&["network", "rm", &naming.network()]);
    alveole_agent::routing::remove_node_table(&alveole_agent::routing::NftCommand::host(), naming);
}
