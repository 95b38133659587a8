//! `alveole site certificate`: a site's HTTPS (its certificate, renewal, last error), the
//! member's own certificate put in place or removed, a revocation.

use anyhow::Context;
use serde_json::{Value, json};

use crate::backups::site_id;
use crate::cli::CertificateArgs;
use crate::client::{Api, Kind, print_one};

pub(crate) async fn certificate(
    api: &Api,
    kind: Kind,
    args: CertificateArgs,
    json_out: bool,
) -> anyhow::Result<()> {
    let site = site_id(api, kind, &args.id).await?;
    let path = format!("/api/v1/sites/{site}/certificate");
    let answer = match (&args.chain, &args.key, args.remove, args.revoke) {
        (Some(chain), Some(key), false, false) => {
            let read = |file: &std::path::Path| {
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
            };
            let body = json!({"chain_pem": read(chain)?, "key_pem": read(key)?});
            api.call(reqwest::Method::POST, &path, Some(&body)).await?
        }
        (None, None, true, false) => api.call(reqwest::Method::DELETE, &path, None).await?,
        (None, None, false, true) => {
            api.call(
                reqwest::Method::POST,
                &format!("{path}/revoke"),
                Some(&json!({})),
            )
            .await?
        }
        (None, None, false, false) => api.call(reqwest::Method::GET, &path, None).await?,
        _ => anyhow::bail!(
            "give --chain and --key together (your own certificate), or --remove, or --revoke"
        ),
    }
    .context("empty answer")?;
    if json_out {
        print_one(&answer, true);
    } else {
        print!("{}", describe(&answer));
    }
    Ok(())
}

/// A site's HTTPS in lines a person reads.
fn describe(view: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("—").to_owned();
    let mut lines = Vec::new();
    match view["certificate"].as_object() {
        Some(certificate) => {
            let names: Vec<String> = certificate["names"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            lines.push(format!(
                "certificate\t{} ({})",
                names.join(", "),
                text(&certificate["source"])
            ));
            lines.push(format!("issuer\t{}", text(&certificate["issuer"])));
            lines.push(format!("expires\t{}", text(&certificate["not_after"])));
            lines.push(format!("serial\t{}", text(&certificate["serial"])));
        }
        None => lines.push("certificate\tnone".to_owned()),
    }
    lines.push(format!(
        "acme\t{}",
        if view["acme"] == true { "on" } else { "off" }
    ));
    lines.push(format!("renews\t{}", text(&view["renew_at"])));
    lines.push(format!("last renewal\t{}", text(&view["last_renewal"])));
    if let Some(error) = view["last_error"].as_str() {
        lines.push(format!("last error\t{error}"));
        lines.push(format!("next try\t{}", text(&view["retry_at"])));
    }
    let uncovered: Vec<String> = view["uncovered"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !uncovered.is_empty() {
        lines.push(format!("not covered\t{}", uncovered.join(", ")));
    }
    if let Some(alert) = view["alert"].as_str() {
        lines.push(format!("alert\t{alert}"));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}
