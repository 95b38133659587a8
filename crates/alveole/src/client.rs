//! The resource subcommands: thin calls to the JSON API, printed as tables or JSON.

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::cli::{ClientArgs, ResourceAction, ResourceArgs};

/// Which resource a subcommand manages, and how its table looks.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub plural: &'static str,
    /// JSON paths shown as columns.
    pub columns: &'static [&'static str],
}

pub const SITES: Kind = Kind {
    plural: "sites",
    columns: &["id", "primary_domain", "image", "phase", "node_id"],
};
pub const MOVES: Kind = Kind {
    plural: "site-moves",
    columns: &[
        "id",
        "phase",
        "from_node",
        "to_node",
        "started_at",
        "progress.freeze_ms",
        "progress.passes",
    ],
};
pub const PLACEMENTS: Kind = Kind {
    plural: "placements",
    columns: &[
        "name",
        "to_name",
        "volume_bytes",
        "seconds",
        "done_after_seconds",
    ],
};
pub const NODES: Kind = Kind {
    plural: "nodes",
    columns: &[
        "id",
        "name",
        "public_addresses",
        "capacity.cpu_millis",
        "capacity.memory_bytes",
    ],
};
pub const BACKUP_TARGETS: Kind = Kind {
    plural: "backup-targets",
    columns: &["id", "name", "kind", "node_id", "url", "provider_id"],
};
pub const PROVIDERS: Kind = Kind {
    plural: "providers",
    columns: &["id", "name", "country", "contract_end"],
};
pub const MEMBERS: Kind = Kind {
    plural: "members",
    columns: &["id", "display_name", "email", "role"],
};

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let token = args
            .token
            .clone()
            .context("no API token: pass --token or set ALVEOLE_TOKEN")?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("alveole-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: args.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the panel at {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            let problem: Value = serde_json::from_str(&text).unwrap_or(json!({"detail": text}));
            let mut message = format!("{status}: {}", problem["detail"].as_str().unwrap_or(""));
            for error in problem["errors"].as_array().into_iter().flatten() {
                message.push_str(&format!(
                    "\n  {}: {}",
                    error["field"].as_str().unwrap_or(""),
                    error["message"].as_str().unwrap_or("")
                ));
            }
            bail!(message);
        }
        Ok(if text.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&text)?)
        })
    }

    /// A request whose body and answer are streams (a database's dump): the answer, or the
    /// panel's reason as an error.
    pub(crate) async fn stream(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the panel at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await?;
        let problem: Value = serde_json::from_str(&text).unwrap_or(json!({"detail": text}));
        bail!("{status}: {}", problem["detail"].as_str().unwrap_or(""));
    }

    /// A resource by id; sites also by host name.
    pub(crate) async fn resolve(&self, kind: Kind, key: &str) -> anyhow::Result<Value> {
        if uuid::Uuid::parse_str(key).is_ok() {
            return self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/{}/{key}", kind.plural),
                    None,
                )
                .await?
                .context("empty answer");
        }
        if kind.plural != "sites" {
            bail!("{key:?} is not an id");
        }
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sites?hostname={}", urlencode(key)),
                None,
            )
            .await?
            .context("empty answer")?;
        page["items"]
            .get(0)
            .cloned()
            .with_context(|| format!("no site answers for {key}"))
    }
}

impl Api {
    /// A provider's id, from its id or its name.
    pub(crate) async fn provider_by_id_or_name(&self, key: &str) -> anyhow::Result<String> {
        self.id_by_id_or_name("providers", key).await
    }

    /// A node's id, from its id or its name.
    pub(crate) async fn node_by_id_or_name(&self, key: &str) -> anyhow::Result<String> {
        self.id_by_id_or_name("nodes", key).await
    }

    async fn id_by_id_or_name(&self, plural: &str, key: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(key).is_ok() {
            return Ok(key.to_owned());
        }
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/{plural}?limit=500"),
                None,
            )
            .await?
            .context("empty answer")?;
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|item| item["name"] == key)
            .and_then(|item| item["id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no {} is named {key}", plural.trim_end_matches('s')))
    }

    /// Shows a move's progress (a bar on a terminal) until it is no longer copying; the move
    /// as it ended. Bounded: gives up after an hour of no change.
    async fn follow_move(&self, id: &str, quiet: bool) -> anyhow::Result<Value> {
        self.follow(
            &format!("/api/v1/site-moves/{id}"),
            &format!("the move {id}"),
            quiet,
            |movement| movement["phase"] == "copying",
            progress_line,
        )
        .await
    }

    /// Reads `path` every half second while `under_way` says so, drawing `line` of it on
    /// standard error when it changes (unless `quiet`): the item as it ended. Bounded: gives
    /// up after an hour without a change.
    pub(crate) async fn follow(
        &self,
        path: &str,
        what: &str,
        quiet: bool,
        under_way: fn(&Value) -> bool,
        line: fn(&Value) -> String,
    ) -> anyhow::Result<Value> {
        let mut last_change = std::time::Instant::now();
        let mut last_line = String::new();
        loop {
            let item = self
                .call(reqwest::Method::GET, path, None)
                .await?
                .context("empty answer")?;
            let shown = line(&item);
            if shown != last_line {
                last_change = std::time::Instant::now();
                if !quiet {
                    eprint!("\r{shown}");
                }
                last_line = shown;
            }
            if !under_way(&item) {
                if !quiet {
                    eprintln!();
                }
                return Ok(item);
            }
            anyhow::ensure!(
                last_change.elapsed() < std::time::Duration::from_secs(3600),
                "{what} has shown no progress for an hour"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

/// `[#######·············]` for `percent` (0 to 100).
pub(crate) fn bar(percent: u64) -> String {
    let filled = usize::try_from(percent.min(100) / 5).unwrap_or(20);
    format!("[{}{}]", "#".repeat(filled), "·".repeat(20 - filled))
}

/// `[#######·············]  35%  copying, pass 2, 70 MB of 200 MB` and, once switched, the
/// freeze window.
pub fn progress_line(movement: &Value) -> String {
    let progress = &movement["progress"];
    let number = |key: &str| progress[key].as_u64().unwrap_or(0);
    let (sent, total) = (
        number("bytes_sent") + number("bytes_already_there"),
        number("volume_bytes"),
    );
    let step = progress["step"].as_str().unwrap_or("waiting");
    let done = match movement["phase"].as_str() {
        Some("copying") if total > 0 => ((sent as f64 / total as f64).min(0.99) * 100.0) as u64,
        Some("copying") => 0,
        _ => 100,
    };
    let mut line = format!(
        "{} {done:>3}%  {step}, pass {}, {} of {}",
        bar(done),
        number("passes"),
        alveole_model::quantity::format_bytes(sent.min(total.max(sent))),
        alveole_model::quantity::format_bytes(total)
    );
    if let Some(freeze) = progress["freeze_ms"].as_u64() {
        line.push_str(&format!(", frozen {freeze} ms"));
    }
    if let Some(error) = progress["last_error"].as_str() {
        line.push_str(&format!(" (retrying: {error})"));
    }
    line
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `a.b=3` → `{"a": {"b": 3}}`; values that parse as JSON are JSON, others are text.
pub fn apply_sets(target: &mut Value, sets: &[String]) -> anyhow::Result<()> {
    for set in sets {
        let (path, raw) = set
            .split_once('=')
            .with_context(|| format!("{set:?}: write PATH=VALUE"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        let mut node = &mut *target;
        let keys: Vec<&str> = path.split('.').collect();
        for (i, key) in keys.iter().enumerate() {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                unreachable!("made an object above")
            };
            if i == keys.len() - 1 {
                map.insert((*key).to_owned(), value.clone());
                break;
            }
            node = map
                .entry((*key).to_owned())
                .or_insert(Value::Object(Map::new()));
        }
    }
    Ok(())
}

pub async fn run(kind: Kind, args: ResourceArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    let json_out = args.client.json;
    match args.action {
        ResourceAction::List { filters, max } => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query: Vec<String> = filters
                    .iter()
                    .map(|f| match f.split_once('=') {
                        Some((k, v)) => format!("{}={}", urlencode(k), urlencode(v)),
                        None => urlencode(f),
                    })
                    .collect();
                query.push("limit=500".into());
                if let Some(c) = &cursor {
                    query.push(format!("cursor={c}"));
                }
                let page = api
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/v1/{}?{}", kind.plural, query.join("&")),
                        None,
                    )
                    .await?
                    .context("empty answer")?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
                if cursor.is_none() || items.len() >= max {
                    break;
                }
            }
            items.truncate(max);
            print_items(kind, &items, json_out);
        }
        ResourceAction::Show { id } => {
            let item = api.resolve(kind, &id).await?;
            print_one(&item, json_out);
        }
        ResourceAction::Create { sets, file } => {
            let mut body = match file {
                Some(path) => serde_json::from_str(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?,
                None => json!({}),
            };
            apply_sets(&mut body, &sets)?;
            let item = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/{}", kind.plural),
                    Some(&body),
                )
                .await?
                .context("empty answer")?;
            print_one(&item, json_out);
        }
        ResourceAction::Update { id, sets } => {
            let current = api.resolve(kind, &id).await?;
            let mut patch = json!({"version": current["version"]});
            apply_sets(&mut patch, &sets)?;
            let id = current["id"].as_str().context("no id")?;
            let item = api
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/{}/{id}", kind.plural),
                    Some(&patch),
                )
                .await?
                .context("empty answer")?;
            print_one(&item, json_out);
        }
        ResourceAction::JoinToken { id } => {
            anyhow::ensure!(
                kind.plural == "nodes",
                "only nodes have join tokens: alveole node join-token NODE"
            );
            let node = api.resolve(kind, &id).await?;
            let id = node["id"].as_str().context("no id")?;
            let token = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/nodes/{id}/join-token"),
                    Some(&json!({})),
                )
                .await?
                .context("empty answer")?;
            if json_out {
                println!("{token}");
            } else {
                println!(
                    "One-time join token (valid until {}). On the node, run:\n\n    {}",
                    token["expires_at"].as_str().unwrap_or("?"),
                    token["command"].as_str().unwrap_or("")
                );
            }
        }
        ResourceAction::Move { id, to, no_wait } => {
            anyhow::ensure!(
                kind.plural == "sites",
                "only sites move: alveole site move SITE --to NODE"
            );
            let site = api.resolve(kind, &id).await?;
            let site_id = site["id"].as_str().context("no id")?;
            let node = api.node_by_id_or_name(&to).await?;
            let started = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/sites/{site_id}/move"),
                    Some(&json!({"to_node": node})),
                )
                .await?
                .context("empty answer")?;
            if no_wait {
                print_one(&started, json_out);
            } else {
                let id = started["id"].as_str().context("no move id")?;
                let ended = api.follow_move(id, json_out).await?;
                print_one(&ended, json_out);
                anyhow::ensure!(
                    ended["phase"] != "failed" && ended["phase"] != "cancelled",
                    "the move did not happen: {}",
                    ended["error"].as_str().unwrap_or("no reason given")
                );
            }
        }
        ResourceAction::Backup { id } => {
            crate::backups::back_up_now(&api, kind, &id, json_out).await?;
        }
        ResourceAction::Backups { id } => {
            crate::backups::show(&api, kind, &id, json_out).await?;
        }
        ResourceAction::Drill { id, no_wait } => {
            crate::backups::drill(&api, kind, &id, no_wait, json_out).await?;
        }
        ResourceAction::Drills { id } => {
            crate::backups::drills(&api, kind, &id, json_out).await?;
        }
        ResourceAction::Certificate(args) => {
            crate::certificates::certificate(&api, kind, args, json_out).await?;
        }
        ResourceAction::Database(args) => {
            crate::databases::database(&api, kind, args, json_out).await?;
        }
        ResourceAction::Restore(restore) => {
            crate::backups::restore(&api, kind, restore, json_out).await?;
        }
        ResourceAction::Moves { id } => {
            anyhow::ensure!(kind.plural == "sites", "only sites have moves");
            let site = api.resolve(kind, &id).await?;
            let site_id = site["id"].as_str().context("no id")?;
            let moves = api
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/sites/{site_id}/moves"),
                    None,
                )
                .await?
                .context("empty answer")?;
            print_items(
                MOVES,
                moves.as_array().map(Vec::as_slice).unwrap_or(&[]),
                json_out,
            );
        }
        ResourceAction::Delete { id, purge } => {
            let current = api.resolve(kind, &id).await?;
            let id = current["id"].as_str().context("no id")?;
            let version = current["version"].as_i64().unwrap_or_default();
            if purge {
                anyhow::ensure!(kind.plural == "sites", "only a site has a volume to purge");
                let path = format!("/api/v1/sites/{id}/purge?version={version}");
                api.call(reqwest::Method::POST, &path, None).await?;
            } else {
                let path = format!("/api/v1/{}/{id}?version={version}", kind.plural);
                api.call(reqwest::Method::DELETE, &path, None).await?;
            }
            if !json_out {
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

fn cell(item: &Value, path: &str) -> String {
    let value = path
        .split('.')
        .try_fold(item, |v, key| v.get(key))
        .unwrap_or(&Value::Null);
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// A plain text table, one line a row, columns padded.
pub fn table(kind: Kind, items: &[Value]) -> String {
    let rows: Vec<Vec<String>> =
        std::iter::once(kind.columns.iter().map(|c| c.to_uppercase()).collect())
            .chain(
                items
                    .iter()
                    .map(|item| kind.columns.iter().map(|c| cell(item, c)).collect()),
            )
            .collect();
    let widths: Vec<usize> = (0..kind.columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
                + "\n"
        })
        .collect()
}

pub(crate) fn print_items(kind: Kind, items: &[Value], json_out: bool) {
    if json_out {
        println!("{}", Value::Array(items.to_vec()));
    } else {
        print!("{}", table(kind, items));
    }
}

pub(crate) fn print_one(item: &Value, json_out: bool) {
    if json_out {
        println!("{item}");
    } else {
        println!("{}", serde_json::to_string_pretty(item).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_build_nested_json() {
        let mut body = json!({});
        apply_sets(
            &mut body,
            &[
                "name=Hetzner".into(),
                "limits.pids=64".into(),
                "aliases=[\"a.org\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"name": "Hetzner", "limits": {"pids": 64}, "aliases": ["a.org"]})
        );
        assert!(apply_sets(&mut body, &["nonsense".into()]).is_err());
    }

    #[test]
    fn a_move_shows_a_bar_while_copying_and_its_freeze_once_switched() {
        let copying = json!({"phase": "copying", "progress": {
            "step": "copying", "passes": 1, "bytes_sent": 50u64 << 20,
            "bytes_already_there": 0, "volume_bytes": 200u64 << 20}});
        let line = progress_line(&copying);
        assert!(
            line.starts_with("[#####···············]  25%  copying, pass 1"),
            "{line}"
        );
        let retrying = json!({"phase": "copying", "progress": {
            "step": "copying", "volume_bytes": 0, "last_error": "the target is away"}});
        assert!(progress_line(&retrying).contains("(retrying: the target is away)"));
        let switched = json!({"phase": "forwarding", "progress": {
            "step": "switched", "passes": 3, "bytes_sent": 200u64 << 20,
            "volume_bytes": 200u64 << 20, "freeze_ms": 412}});
        let line = progress_line(&switched);
        assert!(
            line.starts_with("[####################] 100%  switched, pass 3"),
            "{line}"
        );
        assert!(line.ends_with("frozen 412 ms"), "{line}");
    }

    #[test]
    fn tables_align_columns() {
        let items = vec![
            json!({"id": "1", "name": "a", "email": "x@y.org", "role": "admin", "display_name": "Ana"}),
        ];
        let text = table(MEMBERS, &items);
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("ID  DISPLAY_NAME  EMAIL"));
    }
}
