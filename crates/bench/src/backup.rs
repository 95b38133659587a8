//! `alveole-bench backup`: alveole's backup engine (rustic_core in-process, restic's REST
//! protocol) against Debian's `restic`, on the same data and to the same vault, in one run: a
//! first backup, a backup after 1% of the files changed, and a restore, with a plain copy
//! (`cp -a`) of the same tree as the restore's baseline.
//!
//! The vault is served on loopback over plain HTTP, the benchmark standing in for the mutual
//! TLS that names the node: both tools pay the same transport, and TLS, equal for both, is
//! left out of what is compared.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alveole_agent::backup::{RestBackend, back_up, restore_newest};
use alveole_agent::moves::peer::PeerHandler;
use alveole_agent::vault::{Grants, Vault};
use alveole_model::NodeId;
use anyhow::Context;

pub(crate) const PASSWORD: &str = "bench";

/// Removes the benchmark's trees, however it ends.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `vault` over plain HTTP on loopback, every request as `node`'s.
pub(crate) async fn serve(vault: Arc<Vault>, node: NodeId) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let vault = vault.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let vault = vault.clone();
                    async move { Ok::<_, std::convert::Infallible>(vault.handle(node, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(at)
}

/// `files` files of `total` bytes in all, incompressible, in directories of 100.
pub(crate) fn write_tree(root: &Path, files: usize, total: u64) -> anyhow::Result<()> {
    let size = usize::try_from(total / files.max(1) as u64)?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..files {
        let dir = root.join(format!("d{}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join(format!("f{i}")), noise(&mut seed, size))?;
    }
    Ok(())
}

fn noise(seed: &mut u64, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        bytes.extend_from_slice(&seed.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// Writes what is pending to disk and, when allowed (root), empties the page cache: every
/// timed step starts from the same state, reading from the disk. Whether the cache was
/// emptied.
pub(crate) fn settle() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Waits until what a step wrote is on the disk (its time counts in the step's).
pub(crate) fn synced() {
    let _ = Command::new("sync").status();
}

fn restic(url: &str, cache: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    settle();
    let started = Instant::now();
    let output = Command::new("restic")
        .args(["--repo", url, "--quiet", "--cache-dir"])
        .arg(cache)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .context("restic (Debian: restic)")?;
    anyhow::ensure!(
        output.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    synced();
    Ok(started.elapsed())
}

async fn ours<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, alveole_agent::backup::BackupError> + Send + 'static,
) -> anyhow::Result<Duration> {
    settle();
    let started = Instant::now();
    tokio::task::spawn_blocking(work).await??;
    synced();
    Ok(started.elapsed())
}

/// The files of `tree` and their content, for comparing a restore with the source.
pub(crate) fn same_tree(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let output = Command::new("diff")
        .arg("-rq")
        .arg(a)
        .arg(b)
        .output()
        .context("diff")?;
    Ok(output.status.success())
}

/// One round's durations.
struct Round {
    ours_first: Duration,
    restic_first: Duration,
    ours_delta: Duration,
    restic_delta: Duration,
    ours_restore: Duration,
    restic_restore: Duration,
    copy: Duration,
}

pub async fn run(files: usize, total: u64, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(files > 0 && total > 0, "--files and --bytes above zero");
    anyhow::ensure!((1..=20).contains(&rounds), "--rounds between 1 and 20");
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "alveole-bench-backup-{}",
        uuid::Uuid::now_v7().simple()
    )));
    let root = &scratch.0;
    let source = root.join("site");
    write_tree(&source, files, total)?;
    let node = NodeId(uuid::Uuid::now_v7());
    let vault = Arc::new(Vault::new(root.join("vault")));
    let at = serve(vault.clone(), node).await?;
    let mut results = Vec::new();
    let mut cold = false;
    for round in 0..rounds {
        // Fresh repositories each round, on the same tree.
        let (ours_repo, restic_repo) = (format!("alveole-{round}"), format!("restic-{round}"));
        vault.set_grants(Grants::from([
            (ours_repo.clone(), [node].into()),
            (restic_repo.clone(), [node].into()),
        ]));
        let (measured, emptied) = one_round(
            root,
            &source,
            files,
            total,
            at,
            &ours_repo,
            &restic_repo,
            round,
        )
        .await?;
        cold = emptied;
        results.push(measured);
        let _ = std::fs::remove_dir_all(root.join("vault").join(&ours_repo));
        let _ = std::fs::remove_dir_all(root.join("vault").join(&restic_repo));
    }
    report(&results, files, total, cold);
    Ok(())
}

/// A first backup, a backup after 1% of the files changed, a restore (each by alveole and
/// by restic) and a plain copy: their durations, and whether the cache could be emptied.
#[allow(clippy::too_many_arguments)] // one round's places and names
async fn one_round(
    root: &Path,
    source: &Path,
    files: usize,
    total: u64,
    at: std::net::SocketAddr,
    ours_repo: &str,
    restic_repo: &str,
    round: usize,
) -> anyhow::Result<(Round, bool)> {
    let backend = RestBackend::new(
        reqwest::Client::builder().build()?,
        format!("http://{at}/vault/{ours_repo}/"),
        tokio::runtime::Handle::current(),
    );
    let restic_url = format!("rest:http://{at}/vault/{restic_repo}/");
    let cache = root.join(format!("restic-cache-{round}"));
    restic(&restic_url, &cache, &["init"])?;

    // A first backup (alveole's makes its repository on the way: a few milliseconds).
    let (b, s) = (backend.clone(), source.to_owned());
    let ours_first = ours(move || back_up(b, PASSWORD, &s)).await?;
    let restic_first = restic(&restic_url, &cache, &["backup", &source.to_string_lossy()])?;

    // 1% of the files rewritten.
    let changed = (files / 100).max(1);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ round as u64;
    let size = usize::try_from(total / files as u64)?;
    for i in (0..files).step_by(files / changed).take(changed) {
        let path = source.join(format!("d{}/f{i}", i / 100));
        std::fs::write(path, noise(&mut seed, size))?;
    }
    let (b, s) = (backend.clone(), source.to_owned());
    let ours_delta = ours(move || back_up(b, PASSWORD, &s)).await?;
    let restic_delta = restic(&restic_url, &cache, &["backup", &source.to_string_lossy()])?;

    // A restore, and a plain copy of the same tree on the same disk.
    let (ours_target, restic_target, copy_target) = (
        root.join("restored-alveole"),
        root.join("restored-restic"),
        root.join("copy"),
    );
    let (b, t) = (backend, ours_target.clone());
    let ours_restore = ours(move || restore_newest(b, PASSWORD, &t)).await?;
    let restic_restore = restic(
        &restic_url,
        &cache,
        &[
            "restore",
            "latest",
            "--target",
            &restic_target.to_string_lossy(),
        ],
    )?;
    let cold = settle();
    let started = Instant::now();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(source)
        .arg(&copy_target)
        .status()?;
    anyhow::ensure!(copied.success(), "cp -a failed");
    synced();
    let copy = started.elapsed();
    let inside = |target: &Path| target.join(source.strip_prefix("/").unwrap_or(source));
    anyhow::ensure!(
        same_tree(source, &inside(&ours_target))?,
        "alveole's restore differs from the source"
    );
    anyhow::ensure!(
        same_tree(source, &inside(&restic_target))?,
        "restic's restore differs from the source"
    );
    for done in [&ours_target, &restic_target, &copy_target, &cache] {
        let _ = std::fs::remove_dir_all(done);
    }
    Ok((
        Round {
            ours_first,
            restic_first,
            ours_delta,
            restic_delta,
            ours_restore,
            restic_restore,
            copy,
        },
        cold,
    ))
}

/// The median of each figure over the rounds, with its least and greatest.
fn report(rounds: &[Round], files: usize, total: u64, cold: bool) {
    let s = |d: Duration| d.as_secs_f64();
    let spread = |pick: &dyn Fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let show = |(median, least, most): (f64, f64, f64), unit: &str| {
        let digits = if unit == "%" { 0 } else { 2 };
        format!("{median:.digits$}{unit} ({least:.digits$}–{most:.digits$})")
    };
    let mb = total as f64 / 1e6;
    println!(
        "backup of {files} files, {total} bytes, to a vault on loopback: the median of {} rounds (least–greatest)",
        rounds.len()
    );
    println!(
        "  (each step {}, its writes synced to the disk)",
        if cold {
            "from an emptied page cache"
        } else {
            "with the page cache as it was (not root: it cannot be emptied)"
        }
    );
    let first = spread(&|r| s(r.ours_first));
    println!(
        "  first backup:       alveole {}  restic {}  throughput ratio {}  ({:.0} MB/s)",
        show(first, " s"),
        show(spread(&|r| s(r.restic_first)), " s"),
        show(
            spread(&|r| s(r.restic_first) / s(r.ours_first).max(1e-9)),
            "x"
        ),
        mb / first.0.max(1e-9)
    );
    println!(
        "  1% of files changed: alveole {}  restic {}  throughput ratio {}",
        show(spread(&|r| s(r.ours_delta)), " s"),
        show(spread(&|r| s(r.restic_delta)), " s"),
        show(
            spread(&|r| s(r.restic_delta) / s(r.ours_delta).max(1e-9)),
            "x"
        ),
    );
    let restore = spread(&|r| s(r.ours_restore));
    println!(
        "  restore:            alveole {}  restic {}  throughput ratio {}  ({:.0} MB/s)",
        show(restore, " s"),
        show(spread(&|r| s(r.restic_restore)), " s"),
        show(
            spread(&|r| s(r.restic_restore) / s(r.ours_restore).max(1e-9)),
            "x"
        ),
        mb / restore.0.max(1e-9)
    );
    println!(
        "  plain copy (cp -a):  {}  alveole's restore at {} of its speed",
        show(spread(&|r| s(r.copy)), " s"),
        show(
            spread(&|r| 100.0 * s(r.copy) / s(r.ours_restore).max(1e-9)),
            "%"
        ),
    );
}
