//! `alveole bench volume-sync`: the passes that copy a site's volume during a move, against
//! `rsync -a` on the same trees, in this process's temporary directory: the first pass (all
//! of it), a pass after a few files changed (what the freeze window pays), and a pass when
//! nothing changed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alveole_agent::moves::volume_sync::{sync_pass, tree_digest};
use anyhow::Context;

/// Removes the benchmark's trees, however it ends.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn rsync(source: &Path, target: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("rsync")
        .arg("-a")
        .arg("--delete")
        .arg(format!("{}/", source.display()))
        .arg(format!("{}/", target.display()))
        .status()
        .context("rsync (Debian: rsync)")?;
    anyhow::ensure!(status.success(), "rsync failed");
    Ok(started.elapsed())
}

fn ours(source: &Path, target: &Path) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let report = sync_pass(source, target)?;
    Ok((started.elapsed(), report.bytes))
}

pub fn run(files: usize, bytes_per_file: usize, changed: usize) -> anyhow::Result<()> {
    anyhow::ensure!(changed <= files, "--changed is at most --files");
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "alveole-bench-volume-{}",
        uuid::Uuid::now_v7().simple()
    )));
    let (source, ours_target, rsync_target) = (
        scratch.0.join("source"),
        scratch.0.join("alveole"),
        scratch.0.join("rsync"),
    );
    for dir in [&ours_target, &rsync_target] {
        std::fs::create_dir_all(dir)?;
    }
    let content: Vec<u8> = (0..bytes_per_file).map(|i| (i % 251) as u8).collect();
    let path_of = |i: usize| source.join(format!("d{}/f{i}", i / 100));
    for i in 0..files {
        let path = path_of(i);
        if i % 100 == 0 {
            std::fs::create_dir_all(path.parent().unwrap_or(&source))?;
        }
        std::fs::write(path, &content)?;
    }
    let total = (files * bytes_per_file) as u64;
    let (ours_first, _) = ours(&source, &ours_target)?;
    let rsync_first = rsync(&source, &rsync_target)?;
    // A few files written while the site kept serving.
    for i in (0..files)
        .step_by((files / changed.max(1)).max(1))
        .take(changed)
    {
        let mut bytes = std::fs::read(path_of(i))?;
        bytes.extend_from_slice(b"appended during the move\n");
        std::fs::write(path_of(i), bytes)?;
    }
    let (ours_delta, delta_bytes) = ours(&source, &ours_target)?;
    let rsync_delta = rsync(&source, &rsync_target)?;
    let (ours_idle, _) = ours(&source, &ours_target)?;
    let rsync_idle = rsync(&source, &rsync_target)?;
    anyhow::ensure!(
        tree_digest(&source)? == tree_digest(&ours_target)?,
        "the copy differs from the source"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "volume of {files} files of {bytes_per_file} bytes ({total} bytes), {changed} changed:"
    );
    println!(
        "  first pass:       alveole {:>9.1} ms   rsync -a {:>9.1} ms   ratio {:.2}x",
        ms(ours_first),
        ms(rsync_first),
        ratio(ours_first, rsync_first)
    );
    println!(
        "  {changed} files changed: alveole {:>9.1} ms   rsync -a {:>9.1} ms   ratio {:.2}x ({delta_bytes} bytes copied)",
        ms(ours_delta),
        ms(rsync_delta),
        ratio(ours_delta, rsync_delta)
    );
    println!(
        "  nothing changed:  alveole {:>9.1} ms   rsync -a {:>9.1} ms   ratio {:.2}x",
        ms(ours_idle),
        ms(rsync_idle),
        ratio(ours_idle, rsync_idle)
    );
    Ok(())
}
