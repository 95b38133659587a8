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
pub const PROVIDERS: Kind = Kind {
    plural: "providers",
    columns: &["id", "name", "country", "contract_end"],
};
pub const MEMBERS: Kind = Kind {
    plural: "members",
    columns: &["id", "display_name", "email", "role"],
};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(args: &ClientArgs) -> anyhow::Result<Self> {
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

    async fn call(
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

    /// A resource by id; sites also by host name.
    async fn resolve(&self, kind: Kind, key: &str) -> anyhow::Result<Value> {
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

fn urlencode(text: &str) -> String {
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

fn print_items(kind: Kind, items: &[Value], json_out: bool) {
    if json_out {
        println!("{}", Value::Array(items.to_vec()));
    } else {
        print!("{}", table(kind, items));
    }
}

fn print_one(item: &Value, json_out: bool) {
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
    fn tables_align_columns() {
        let items = vec![
            json!({"id": "1", "name": "a", "email": "x@y.org", "role": "admin", "display_name": "Ana"}),
        ];
        let text = table(MEMBERS, &items);
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("ID  DISPLAY_NAME  EMAIL"));
    }
}
