//! `alveole site database`: a site's databases (where the site reaches each, under which
//! variables, their size), a new password, a dump written to a file, a dump imported.

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::backups::site_id;
use crate::cli::SiteDatabaseArgs;
use crate::client::{Api, Kind, print_one};

pub(crate) async fn database(
    api: &Api,
    kind: Kind,
    args: SiteDatabaseArgs,
    json_out: bool,
) -> anyhow::Result<()> {
    let site = site_id(api, kind, &args.id).await?;
    let base = format!("/api/v1/sites/{site}/databases");
    if let Some(name) = &args.dump {
        let answer = api
            .stream(reqwest::Method::GET, &format!("{base}/{name}/dump"), None)
            .await?;
        return write_dump(answer, args.file.as_deref()).await;
    }
    let listed = match (&args.rotate, &args.import) {
        (Some(name), _) => api
            .call(
                reqwest::Method::POST,
                &format!("{base}/{name}/password"),
                Some(&json!({})),
            )
            .await?
            .context("empty answer")?,
        (None, Some(name)) => {
            let path = args.file.as_deref().context("--import needs --file")?;
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            let answer = api
                .stream(
                    reqwest::Method::PUT,
                    &format!("{base}/{name}/dump"),
                    Some(reqwest::Body::from(file)),
                )
                .await?;
            serde_json::from_str(&answer.text().await?)?
        }
        (None, None) => api
            .call(reqwest::Method::GET, &base, None)
            .await?
            .context("empty answer")?,
    };
    if json_out {
        print_one(&listed, true);
    } else {
        print!("{}", describe(&listed));
    }
    Ok(())
}

/// The dump into `file`, or to standard output, as it comes.
async fn write_dump(
    answer: reqwest::Response,
    file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match file {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("writing {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut chunks = answer.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk.context("the dump stopped")?).await?;
    }
    out.flush().await?;
    Ok(())
}

/// A site's databases in lines a person reads.
fn describe(listed: &Value) -> String {
    let mut lines = String::new();
    for db in listed.as_array().into_iter().flatten() {
        let text = |key: &str| match &db[key] {
            Value::String(s) => s.clone(),
            Value::Null => "—".to_owned(),
            other => other.to_string(),
        };
        lines.push_str(&format!(
            "{}\t{} {}\t{}:{}\tuser {}\t{} of {} bytes\n",
            text("name"),
            text("engine"),
            text("version"),
            text("host"),
            text("port"),
            text("user"),
            text("used_bytes"),
            text("quota_bytes"),
        ));
        let variables: Vec<String> = db["variables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        lines.push_str(&format!("\tvariables: {}\n", variables.join(", ")));
    }
    if lines.is_empty() {
        lines.push_str("no databases\n");
    }
    lines
}
