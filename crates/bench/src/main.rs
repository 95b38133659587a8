//! `alveole-bench`: the measurements `docs/BENCHMARKS.md` reports, each against a baseline
//! measured in the same run. Kept out of the product binary: one module per benchmark.

mod acme;
mod audit;
mod backup;
mod docker;
mod drill;
mod evacuate;
mod harness;
mod ingress;
mod list_sites;
mod measure;
mod overload;
mod packets;
mod reconcile;
mod routing;
mod site_move;
mod slow_clients;
mod volume;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// alveole's benchmarks (docs/BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "alveole-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

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
    /// A surge of visitors on one site at several multiples of its capacity: no protection,
    /// nginx's limit_req and limit_conn, and alveole's admission; a neighbour site measured
    /// all along; then what admission costs when nobody waits. Bounded in time.
    Overload {
        /// The site's workers and the time each request takes one.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 20)]
        service_ms: u64,
        /// Pages each visitor reads, and their pause between pages.
        #[arg(long, default_value_t = 3)]
        pages: usize,
        #[arg(long, default_value_t = 1000)]
        think_ms: u64,
        /// Visitors arrive over this many seconds; a surge ends after `limit_seconds`.
        #[arg(long, default_value_t = 5)]
        arrival_seconds: u64,
        #[arg(long, default_value_t = 60)]
        limit_seconds: u64,
        /// Multiples of the site's capacity in visitors.
        #[arg(long, value_delimiter = ',', default_value = "10,20")]
        multiples: Vec<usize>,
    },
    /// A normal client's latency at a node's ingress while idle kept-alive connections and
    /// slowloris clients hold it (from several loopback addresses), against the ingress left
    /// alone and a naive server under the same siege.
    SlowClients {
        #[arg(long, default_value_t = 2_000)]
        idle: usize,
        #[arg(long, default_value_t = 200)]
        slowloris: usize,
        /// Loopback addresses the siege comes from.
        #[arg(long, default_value_t = 20)]
        addresses: u8,
        /// Requests of the normal client per measurement.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// The ingress's cap on connections (below the siege's size, so that it is reached).
        #[arg(long, default_value_t = 1_000)]
        max_connections: usize,
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
    /// An evacuation's estimate against what it took: a node emptied of sites of mixed sizes,
    /// several times, after a history of tiny moves; the peer is the first model's estimate
    /// (bytes over time of the same history).
    Evacuate {
        #[arg(long, default_value = "alveole-test/busybox:2")]
        image: String,
        /// Sites per run, of 1 to 160 MiB in turn.
        #[arg(long, default_value_t = 5)]
        sites: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// alveole's backups (rustic_core) against Debian's `restic`, same data, same vault: a
    /// first backup, a backup after 1% of the files changed, a restore, and a plain copy.
    Backup {
        #[arg(long, default_value_t = 10_000)]
        files: usize,
        /// Bytes in all.
        #[arg(long, default_value_t = 1_000_000_000)]
        bytes: u64,
        /// Rounds, each on fresh repositories: the figures are their medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// A restore drill's data path (a whole restore from a vault on loopback, then the
    /// comparison with the snapshot) against a plain copy of the same tree, for each size.
    Drill {
        /// Sizes in bytes, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10000000,100000000,1000000000"
        )]
        sizes: Vec<u64>,
        /// Rounds per size: the figures are their medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Sites' certificates at scale: many sites on one node ordered from Debian's pebble
    /// (through the node's ingress), then all renewed; against the same orders one at a time.
    Acme {
        #[arg(long, default_value_t = 1000)]
        sites: usize,
        /// Registered domains the sites' names fall under (one queue each).
        #[arg(long, default_value_t = 100)]
        domains: usize,
        /// Sites ordered one at a time first, as the baseline (0: none).
        #[arg(long, default_value_t = 100)]
        baseline: usize,
    },
    /// A keep-alive HTTP backend answering `hello` (for bench/ingress.sh).
    Backend {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// alveole's ingress with one route, `--host` → `--upstream` (for bench/ingress.sh);
    /// HTTPS too on `--tls-listen`, with `--certificate` and `--key` (PEM files).
    IngressProxy {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        upstream: std::net::SocketAddr,
        #[arg(long, default_value = "bench.example.org")]
        host: String,
        #[arg(long, requires_all = ["certificate", "key"])]
        tls_listen: Option<std::net::SocketAddr>,
        #[arg(long)]
        certificate: Option<std::path::PathBuf>,
        #[arg(long)]
        key: Option<std::path::PathBuf>,
    },
    /// New TLS connections, each a full handshake (no resumption), one request each, for
    /// `--seconds` (for bench/ingress.sh): prints handshakes per second.
    Handshakes {
        #[arg(long)]
        connect: std::net::SocketAddr,
        /// The name asked for (SNI) and sent as Host.
        #[arg(long, default_value = "bench.example.org")]
        host: String,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// The parts `bench packets` runs in its namespaces.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PacketsRole {
    Client,
    Backend,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ALVEOLE_BENCH_LOG")
                .or_else(|_| EnvFilter::try_new("warn"))
                .context("log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    // One TLS provider for every HTTPS client in the process (ring: no cmake or clang needed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        BenchCommand::ListSites {
            database_url,
            sites,
            page_size,
            requests,
            concurrency,
        } => list_sites::run(&database_url, sites, page_size, requests, concurrency).await,
        BenchCommand::Overload {
            workers,
            service_ms,
            pages,
            think_ms,
            arrival_seconds,
            limit_seconds,
            multiples,
        } => {
            let shape = overload::Shape {
                workers: workers.max(1),
                service_ms: service_ms.max(1),
                pages: pages.max(1),
                think_ms,
                arrival_seconds: arrival_seconds.max(1),
                limit_seconds: limit_seconds.clamp(1, 600),
            };
            overload::run(shape, &multiples).await
        }
        BenchCommand::SlowClients {
            idle,
            slowloris,
            addresses,
            requests,
            max_connections,
        } => {
            let plan = alveole_listen::siege::SiegePlan {
                idle,
                slowloris,
                addresses,
            };
            slow_clients::run(plan, requests, max_connections).await
        }
        BenchCommand::Reconcile { sites, image } => reconcile::reconcile(sites, &image).await,
        BenchCommand::CreateSite { sites, image } => reconcile::create_site(sites, &image).await,
        BenchCommand::AuditVerify {
            database_url,
            events,
        } => audit::verify(&database_url, events).await,
        BenchCommand::Routing {
            sites,
            runs,
            inside: false,
        } => routing::run(sites, runs),
        BenchCommand::Routing {
            sites,
            runs,
            inside: true,
        } => routing::measure(sites, runs),
        BenchCommand::Packets {
            sites,
            connections,
            runs,
            role,
            target,
            first_source,
        } => match (role, target) {
            (None, _) => packets::run(&sites, connections, runs),
            (Some(PacketsRole::Backend), _) => packets::backend().await,
            (Some(PacketsRole::Client), Some(target)) => {
                packets::client(target, connections, first_source).await
            }
            (Some(PacketsRole::Client), None) => anyhow::bail!("the client needs --target"),
        },
        BenchCommand::Backup {
            files,
            bytes,
            rounds,
        } => backup::run(files, bytes, rounds).await,
        BenchCommand::Drill { sizes, rounds } => drill::run(sizes, rounds).await,
        BenchCommand::Acme {
            sites,
            domains,
            baseline,
        } => acme::run(sites, domains, baseline).await,
        BenchCommand::VolumeSync {
            files,
            bytes_per_file,
            changed,
        } => volume::run(files, bytes_per_file, changed),
        BenchCommand::SiteMove {
            image,
            scenarios,
            runs,
        } => site_move::run(&image, &scenarios, runs).await,
        BenchCommand::Evacuate { image, sites, runs } => evacuate::run(&image, sites, runs).await,
        BenchCommand::Backend { listen } => ingress::backend(listen).await,
        BenchCommand::IngressProxy {
            listen,
            upstream,
            host,
            tls_listen,
            certificate,
            key,
        } => {
            let tls = match (tls_listen, certificate, key) {
                (Some(listen), Some(certificate), Some(key)) => Some(ingress::TlsSetup {
                    listen,
                    certificate,
                    key,
                }),
                _ => None,
            };
            ingress::proxy(listen, upstream, &host, tls).await
        }
        BenchCommand::Handshakes {
            connect,
            host,
            connections,
            seconds,
        } => {
            ingress::handshakes(
                connect,
                &host,
                connections,
                std::time::Duration::from_secs(seconds),
            )
            .await
        }
    }
}
