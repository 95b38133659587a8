//! `alveole evacuate` (the plan, or the job followed to its end) and `alveole recover` (a
//! lost node's sites restored elsewhere), with their progress line.

use anyhow::Context;
use serde_json::{Value, json};

use crate::client::{Api, PLACEMENTS, print_items, print_one, urlencode};

/// `alveole evacuate`: the plan, in words and as a table (JSON with `--json`).
pub async fn evacuate(args: crate::cli::EvacuateArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    // One request, as the plan route's query and as the start route's body.
    let mut request = scope(&api, &args.node, &args.provider, args.parallelism).await?;
    if let Some(deadline) = &args.deadline {
        let at = crate::cli::parse_deadline(deadline, chrono::Utc::now())?;
        request.insert("deadline".into(), json!(at.to_rfc3339()));
    }
    if !args.dry_run {
        return run_evacuation(&api, "/api/v1/evacuations", request, args.client.json).await;
    }
    let query: Vec<String> = request
        .iter()
        .map(|(key, value)| {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            format!("{key}={}", urlencode(&text))
        })
        .collect();
    let plan = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/evacuation-plan?{}", query.join("&")),
            None,
        )
        .await?
        .context("empty answer")?;
    if args.client.json {
        println!("{plan}");
        return Ok(());
    }
    println!("{}", plan["statement"].as_str().unwrap_or(""));
    for suggestion in plan["suggestions"].as_array().into_iter().flatten() {
        println!("  - {}", suggestion.as_str().unwrap_or(""));
    }
    println!();
    print_items(
        PLACEMENTS,
        plan["placements"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]),
        false,
    );
    for unplaced in plan["unplaced"].as_array().into_iter().flatten() {
        println!(
            "no place for {}: {}",
            unplaced["name"].as_str().unwrap_or("?"),
            unplaced["reason"].as_str().unwrap_or("")
        );
    }
    for excluded in plan["excluded"].as_array().into_iter().flatten() {
        println!(
            "not a target: {}: {}",
            excluded["name"].as_str().unwrap_or("?"),
            excluded["reason"].as_str().unwrap_or("")
        );
    }
    println!(
        "durations: {}",
        plan["cost"]["basis"].as_str().unwrap_or("unknown")
    );
    Ok(())
}

/// `alveole recover`: fences the lost nodes and restores their sites elsewhere.
pub async fn recover(args: crate::cli::RecoverArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    let request = scope(&api, &args.node, &args.provider, args.parallelism).await?;
    run_evacuation(&api, "/api/v1/recoveries", request, args.client.json).await
}

/// The nodes a command is about (a node, or a provider's, by id or name) and how many sites
/// at once, as the API takes them.
async fn scope(
    api: &Api,
    node: &Option<String>,
    provider: &Option<String>,
    parallelism: u32,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut request = serde_json::Map::new();
    request.insert("parallelism".into(), json!(parallelism));
    if let Some(node) = node {
        request.insert("node_id".into(), json!(api.node_by_id_or_name(node).await?));
    }
    if let Some(provider) = provider {
        let id = api.provider_by_id_or_name(provider).await?;
        request.insert("provider_id".into(), json!(id));
    }
    Ok(request)
}

/// Starts the evacuation (or the recovery, at `path`: the same request as the plan's) and
/// follows it to its end with a progress line.
pub(crate) async fn run_evacuation(
    api: &Api,
    path: &str,
    request: serde_json::Map<String, Value>,
    quiet: bool,
) -> anyhow::Result<()> {
    let started = api
        .call(reqwest::Method::POST, path, Some(&Value::Object(request)))
        .await?
        .context("empty answer")?;
    let id = started["id"]
        .as_str()
        .context("no evacuation id")?
        .to_owned();
    if !quiet {
        eprintln!("{}", started["spec"]["statement"].as_str().unwrap_or(""));
    }
    let since = std::time::Instant::now();
    let ended = loop {
        let evacuation = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/evacuations/{id}"),
                None,
            )
            .await?
            .context("empty answer")?;
        if !quiet {
            eprint!("\r{}", evacuation_line(&evacuation, since.elapsed()));
        }
        if evacuation["finished_at"].is_string() {
            break evacuation;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    if !quiet {
        eprintln!();
    }
    // What each recovered site lost, then what is left on the nodes, each site with why.
    for item in ended["items"].as_array().into_iter().flatten() {
        if let Some(lost) = item["data_loss_seconds"].as_i64() {
            println!(
                "recovered: {} (lost its last {lost} s of writes)",
                item["site_id"].as_str().unwrap_or("?")
            );
        }
    }
    for site in ended["remaining"].as_array().into_iter().flatten() {
        println!(
            "not moved: {}: {}",
            site["name"].as_str().unwrap_or("?"),
            site["reason"].as_str().unwrap_or("")
        );
    }
    print_one(&ended, quiet);
    match ended["state"].as_str() {
        Some("done") => Ok(()),
        state => anyhow::bail!(
            "the evacuation ended {} with {} site(s) left on the nodes being emptied",
            state.unwrap_or("?"),
            ended["remaining"].as_array().map_or(0, Vec::len)
        ),
    }
}

/// `[##########··········] 3/6 ended: 3 done, 2 moving, 0 failed, 14 s (predicted 23 s, 9 s left)`
pub fn evacuation_line(evacuation: &Value, elapsed: std::time::Duration) -> String {
    let items = evacuation["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let count = |state: &str| items.iter().filter(|i| i["state"] == state).count();
    let ended = count("done") + count("failed") + count("skipped");
    let filled = (ended * 20).checked_div(items.len()).unwrap_or(20);
    format!(
        "[{}{}] {ended}/{} ended: {} done, {} moving, {} failed, {} s (predicted {} s{}){}",
        "#".repeat(filled),
        "·".repeat(20 - filled),
        items.len(),
        count("done"),
        count("moving"),
        count("failed"),
        elapsed.as_secs(),
        evacuation["spec"]["predicted_seconds"]
            .as_u64()
            .unwrap_or(0),
        evacuation["estimate"]["remaining_seconds"]
            .as_u64()
            .map_or_else(String::new, |left| format!(", {left} s left")),
        match evacuation["state"].as_str() {
            Some("paused") => ", paused",
            Some("cancelled") => ", cancelled",
            Some("incomplete") => ", incomplete",
            _ => "",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evacuation_shows_its_sites_ended_over_all() {
        let evacuation = json!({"state": "running", "spec": {"predicted_seconds": 23},
            "items": [{"state": "done"}, {"state": "moving"}, {"state": "failed"}, {"state": "pending"}]});
        assert_eq!(
            evacuation_line(&evacuation, std::time::Duration::from_secs(14)),
            "[##########··········] 2/4 ended: 1 done, 1 moving, 1 failed, 14 s (predicted 23 s)"
        );
        // The expected end, redone by the panel as moves finish.
        let redone = json!({"state": "running", "spec": {"predicted_seconds": 23},
            "estimate": {"remaining_seconds": 41}, "items": [{"state": "moving"}]});
        assert!(
            evacuation_line(&redone, std::time::Duration::from_secs(3))
                .ends_with("3 s (predicted 23 s, 41 s left)")
        );
    }
}
