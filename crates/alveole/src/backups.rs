//! The backup commands of `alveole site`: back up now, show a site's backups, restore (with a
//! progress bar until the restore ends).

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::RestoreArgs;
use crate::client::{Api, BACKUP_TARGETS, Kind, bar, print_one};

fn only_sites(kind: Kind) -> anyhow::Result<()> {
    anyhow::ensure!(kind.plural == "sites", "only sites have backups");
    Ok(())
}

async fn site_id(api: &Api, kind: Kind, key: &str) -> anyhow::Result<String> {
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
        Some(seconds) => println!("data-loss window: {seconds} s (the newest snapshot's age)"),
        None => println!("data-loss window: no snapshot yet"),
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
