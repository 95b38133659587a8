//! `alveole-bench drill`: how long a restore drill's data path takes against the site's
//! size (10 MB to 1 GB by default), against a plain copy (`cp -a`) of the same tree on the
//! same disk: the newest snapshot restored whole from a vault on loopback (as a drill and a
//! recovery restore it), then compared with the snapshot blob by blob (the drill's proof).
//! Starting the copy and probing it add the site's own start time, which is the site's, not
//! the backups'.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alveole_agent::backup::progress::ByteProgress;
use alveole_agent::backup::{RestBackend, RestoreWhat, back_up, restore_into, verify_restored};
use alveole_agent::vault::{Grants, Vault};
use alveole_model::NodeId;

use crate::backup::{PASSWORD, Scratch, same_tree, serve, settle, synced, write_tree};

/// One size's durations.
struct Measured {
    bytes: u64,
    restore: Duration,
    verify: Duration,
    copy: Duration,
}

pub async fn run(sizes: Vec<u64>, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(!sizes.is_empty(), "--sizes: at least one");
    anyhow::ensure!((1..=20).contains(&rounds), "--rounds between 1 and 20");
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "alveole-bench-drill-{}",
        uuid::Uuid::now_v7().simple()
    )));
    let root = &scratch.0;
    let node = NodeId(uuid::Uuid::now_v7());
    let vault = Arc::new(Vault::new(root.join("vault")));
    let at = serve(vault.clone(), node).await?;
    let mut cold = false;
    println!(
        "restore drill's data path against a plain copy: the median of {rounds} rounds (least–greatest)"
    );
    for (i, bytes) in sizes.iter().copied().enumerate() {
        // Files of 100 KB, as a site's media would be, at least 10.
        let files = usize::try_from((bytes / 100_000).max(10))?;
        let source = root.join(format!("site-{i}"));
        write_tree(&source, files, bytes)?;
        let repository = format!("site-{i}");
        vault.set_grants(Grants::from([(repository.clone(), [node].into())]));
        let backend = RestBackend::new(
            reqwest::Client::builder().build()?,
            format!("http://{at}/vault/{repository}/"),
            tokio::runtime::Handle::current(),
        );
        let (b, s) = (backend.clone(), source.clone());
        let snapshot = tokio::task::spawn_blocking(move || back_up(b, PASSWORD, &s)).await??;
        let mut rounds_measured = Vec::new();
        for round in 0..rounds {
            let target = root.join(format!("restored-{i}-{round}"));
            std::fs::create_dir_all(&target)?;
            cold = settle();
            let started = Instant::now();
            let (b, t) = (backend.clone(), target.clone());
            tokio::task::spawn_blocking(move || {
                restore_into(
                    b,
                    PASSWORD,
                    &RestoreWhat::default(),
                    &t,
                    &ByteProgress::default(),
                )
            })
            .await??;
            synced();
            let restore = started.elapsed();
            settle();
            let started = Instant::now();
            let (b, t, id) = (backend.clone(), target.clone(), snapshot.clone());
            tokio::task::spawn_blocking(move || verify_restored(b, PASSWORD, &id, &t)).await??;
            let verify = started.elapsed();
            // A snapshot of one folder restores that folder's contents, as a site's.
            anyhow::ensure!(
                same_tree(&source, &target)?,
                "the restore differs from the source"
            );
            let copy_target = root.join(format!("copy-{i}-{round}"));
            settle();
            let started = Instant::now();
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&source)
                .arg(&copy_target)
                .status()?;
            anyhow::ensure!(copied.success(), "cp -a failed");
            synced();
            let copy = started.elapsed();
            for done in [&target, &copy_target] {
                let _ = std::fs::remove_dir_all(done);
            }
            rounds_measured.push(Measured {
                bytes,
                restore,
                verify,
                copy,
            });
        }
        report(&rounds_measured, files);
        let _ = std::fs::remove_dir_all(&source);
        let _ = std::fs::remove_dir_all(root.join("vault").join(&repository));
    }
    println!(
        "  (each step {}, its writes synced to the disk)",
        if cold {
            "from an emptied page cache"
        } else {
            "with the page cache as it was (not root: it cannot be emptied)"
        }
    );
    Ok(())
}

fn report(rounds: &[Measured], files: usize) {
    let spread = |pick: &dyn Fn(&Measured) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let show = |(median, least, most): (f64, f64, f64), unit: &str| {
        format!("{median:.2}{unit} ({least:.2}–{most:.2})")
    };
    let s = |d: Duration| d.as_secs_f64();
    let bytes = rounds[0].bytes;
    let restore = spread(&|m| s(m.restore));
    println!(
        "  {:>5} MB, {files} files: restore {}  ({:.0} MB/s)  compare {}  cp -a {}  restore / copy {}",
        bytes / 1_000_000,
        show(restore, " s"),
        bytes as f64 / 1e6 / restore.0.max(1e-9),
        show(spread(&|m| s(m.verify)), " s"),
        show(spread(&|m| s(m.copy)), " s"),
        show(spread(&|m| s(m.restore) / s(m.copy).max(1e-9)), "x"),
    );
}
