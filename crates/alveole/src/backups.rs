//! The backup commands of `alveole site`: back up now, show a site's backups, restore (with a
//! progress bar until the restore ends), drill (following it to its end), list drills.

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::RestoreArgs;
use crate::client::{Api, BACKUP_TARGETS, Kind, bar, print_one};

fn only_sites(kind: Kind) -> anyhow::Result<()> {
    anyhow::ensure!(kind.plural == "sites", "only sites have backups");
    Ok(())
}

pub(crate) async fn site_id(api: &Api, kind: Kind, key: &str) -> anyhow::Result<String> {
    only_sites(kind)?;
    let site = api.resolve(kind, key).await?;
    Ok(site["id"].as_str().context("no id")?.to_owned())
}

pub(crate) async fn back_up_now(
    api: &Api,
    kind: Kind,
    key: &str,
    json_out: bool,
) -> anyhow::Result<()> {
    let site = site_id(api, kind, key).await?;
    let asked = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site}/backups"),
            Some(&json!({})),
        )
        .await?
        .context("empty answer")?;
    if json_out {
        print_one(&asked, true);
    } else {
        println!(
            "asked at {}: the site's node backs it up at its next pass",
            asked["requested_at"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) async fn show(api: &Api, kind: Kind, key: &str, json_out: bool) -> anyhow::Result<()> {
    let site = site_id(api, kind, key).await?;
    let backups = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/sites/{site}/backups"),
            None,
        )
        .await?
        .context("empty answer")?;
    if json_out {
        print_one(&backups, true);
        return Ok(());
    }
    match backups["window_seconds"].as_i64() {
        Some(seconds) => println!(
            "data-loss window: {} (the newest snapshot that passed a drill or a check was taken at {})",
            duration(seconds as f64),
            backups["proven_at"].as_str().unwrap_or("?")
        ),
        None => println!("data-loss window: no snapshot has passed a drill or a check yet"),
    }
    match backups["restore_seconds"].as_f64() {
        Some(seconds) => println!("restore time: {} (the last drill)", duration(seconds)),
        None => println!("restore time: no drill has passed yet"),
    }
    for alert in backups["alerts"].as_array().into_iter().flatten() {
        println!(
            "ALERT ({}, since {}): {}",
            alert["kind"].as_str().unwrap_or("?"),
            alert["since"].as_str().unwrap_or("?"),
            alert["reason"].as_str().unwrap_or("?")
        );
    }
    for target in backups["targets"].as_array().into_iter().flatten() {
        let newest = &target["newest"];
        println!(
            "{}\t{}\t{}",
            target["name"].as_str().unwrap_or("?"),
            newest["snapshot_id"].as_str().unwrap_or("no snapshot"),
            newest["started_at"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn restore(
    api: &Api,
    kind: Kind,
    args: RestoreArgs,
    json_out: bool,
) -> anyhow::Result<()> {
    let site = site_id(api, kind, &args.id).await?;
    let into = match &args.into {
        Some(key) => Some(site_id(api, kind, key).await?),
        None => None,
    };
    let target = match &args.target {
        Some(key) if uuid::Uuid::parse_str(key).is_ok() => Some(key.clone()),
        Some(name) => Some(target_by_name(api, name).await?),
        None => None,
    };
    let body = json!({"snapshot": args.snapshot, "paths": args.paths,
                      "into_site_id": into, "target_id": target});
    let started = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site}/restores"),
            Some(&body),
        )
        .await?
        .context("empty answer")?;
    if args.no_wait {
        print_one(&started, json_out);
        return Ok(());
    }
    let id = started["id"].as_str().context("no restore id")?;
    let ended = api
        .follow(
            &format!("/api/v1/restores/{id}"),
            &format!("the restore {id}"),
            json_out,
            |restore| restore["state"] == "running",
            progress_line,
        )
        .await?;
    print_one(&ended, json_out);
    anyhow::ensure!(
        ended["state"] == "restored",
        "the restore failed: {}",
        ended["error"].as_str().unwrap_or("no reason given")
    );
    Ok(())
}

/// Drills the site's backups now, and follows the drill to its end (its phase meanwhile).
pub(crate) async fn drill(
    api: &Api,
    kind: Kind,
    key: &str,
    no_wait: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let site = site_id(api, kind, key).await?;
    let started = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site}/drills"),
            Some(&json!({})),
        )
        .await?
        .context("empty answer")?;
    if no_wait {
        print_one(&started, json_out);
        return Ok(());
    }
    let id = started["id"].as_str().context("no drill id")?;
    let ended = api
        .follow(
            &format!("/api/v1/drills/{id}"),
            &format!("the drill {id}"),
            json_out,
            |drill| drill["state"] == "running",
            |drill| {
                format!(
                    "{}  {}",
                    progress_line(drill),
                    drill["phase"].as_str().unwrap_or("?")
                )
            },
        )
        .await?;
    if json_out {
        print_one(&ended, true);
    } else if ended["state"] == "passed" {
        println!(
            "passed: snapshot {} restored and equal ({} files), answering in {}",
            ended["snapshot_id"].as_str().unwrap_or("?"),
            ended["files_verified"].as_u64().unwrap_or(0),
            duration(ended["restore_ms"].as_f64().unwrap_or(0.0) / 1000.0)
        );
    }
    anyhow::ensure!(
        ended["state"] == "passed",
        "the drill failed ({}): {}",
        ended["phase"].as_str().unwrap_or("?"),
        ended["error"].as_str().unwrap_or("no reason given")
    );
    Ok(())
}

/// The site's latest drills.
pub(crate) async fn drills(api: &Api, kind: Kind, key: &str, json_out: bool) -> anyhow::Result<()> {
    let site = site_id(api, kind, key).await?;
    let drills = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/sites/{site}/drills"),
            None,
        )
        .await?
        .context("empty answer")?;
    if json_out {
        print_one(&drills, true);
        return Ok(());
    }
    for drill in drills.as_array().into_iter().flatten() {
        let restore = drill["restore_ms"]
            .as_f64()
            .map(|ms| duration(ms / 1000.0))
            .unwrap_or_else(|| "—".into());
        println!(
            "{}\t{}\t{}\t{}\t{}",
            drill["requested_at"].as_str().unwrap_or("?"),
            drill["state"].as_str().unwrap_or("?"),
            drill["snapshot_id"].as_str().unwrap_or("—"),
            restore,
            drill["error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// "1 min 5 s", "2.3 s".
fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!(
            "{} min {} s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    } else {
        format!(
            "{} h {} min",
            (seconds / 3600.0) as u64,
            ((seconds % 3600.0) / 60.0) as u64
        )
    }
}

async fn target_by_name(api: &Api, name: &str) -> anyhow::Result<String> {
    let page = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/{}?limit=500", BACKUP_TARGETS.plural),
            None,
        )
        .await?
        .context("empty answer")?;
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no backup target is named {name}"))
}

/// `[#######·············]  35%  12 MB of 34 MB`.
pub fn progress_line(restore: &Value) -> String {
    let done = restore["bytes_done"].as_u64().unwrap_or(0);
    let total = restore["bytes_total"].as_u64().unwrap_or(0);
    let percent = done
        .saturating_mul(100)
        .checked_div(total)
        .unwrap_or(0)
        .min(100);
    format!(
        "{} {percent:>3}%  {} of {}  {}",
        bar(percent),
        alveole_model::quantity::format_bytes(done),
        alveole_model::quantity::format_bytes(total),
        restore["state"].as_str().unwrap_or("")
    )
}
