//! `alveole audit`: check the record (in the database or in an export file, on its own), sign
//! a checkpoint, rotate the signing key, export through the API.

use std::path::Path;

use alveole_audit::{AuditKey, Checkpoint, SigningKey};
use alveole_panel::notary::Notary;
use anyhow::{Context, bail};

use crate::cli::AuditCommand;

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify {
            database,
            export,
            checkpoint,
            keys,
        } => {
            let outside = read_checkpoints(&checkpoint)?;
            let keys = keys
                .map(|path| read_json::<Vec<AuditKey>>(&path))
                .transpose()?;
            match export {
                Some(path) => verify_export(&path, &outside, keys.as_deref()),
                None => {
                    let store = alveole_store::connect(&database.database_url).await?;
                    let report =
                        alveole_store::verify_audit(store.as_ref(), &outside, keys.as_deref())
                            .await?;
                    match report.first_break {
                        None => {
                            println!(
                                "intact: {} events, head {}; checkpoints verified: {}",
                                report.head.length,
                                report.head.hash.as_deref().unwrap_or("-"),
                                lengths(&report.checkpoints_verified)
                            );
                            Ok(())
                        }
                        Some(broken) => {
                            bail!("NOT INTACT: {broken}")
                        }
                    }
                }
            }
        }
        AuditCommand::Checkpoint { database, key } => {
            let store = alveole_store::connect(&database.database_url).await?;
            let notary = Notary::new(signing_key(&key.audit_key_file)?, None);
            notary.publish_key(store.as_ref()).await?;
            let ctx = alveole_store::AuditContext::new("system:admin-cli", "audit-checkpoint");
            let checkpoint = notary
                .checkpoint(store.as_ref(), &ctx, chrono::Utc::now())
                .await?;
            println!("{}", serde_json::to_string_pretty(&checkpoint)?);
            Ok(())
        }
        AuditCommand::RotateKey { database, key } => {
            let store = alveole_store::connect(&database.database_url).await?;
            let rotated = SigningKey::rotate(&key.audit_key_file)
                .with_context(|| format!("rotating {}", key.audit_key_file.display()))?;
            let key_id = rotated.key_id().to_owned();
            let notary = Notary::new(rotated, None);
            notary.publish_key(store.as_ref()).await?;
            let ctx = alveole_store::AuditContext::new("system:admin-cli", "audit-rotate-key");
            let checkpoint = notary
                .checkpoint(store.as_ref(), &ctx, chrono::Utc::now())
                .await?;
            println!(
                "new signing key {key_id}; checkpoint of length {} signed with it",
                checkpoint.length
            );
            Ok(())
        }
        AuditCommand::Export {
            client,
            format,
            from,
            to,
            actor,
            action,
            target_kind,
            target_id,
            output,
        } => {
            let token = client
                .token
                .clone()
                .context("no API token: pass --token or set ALVEOLE_TOKEN")?;
            let mut query = vec![("format", format)];
            for (name, value) in [
                ("from", from),
                ("to", to),
                ("actor", actor),
                ("action", action),
                ("target_kind", target_kind),
                ("target_id", target_id),
            ] {
                if let Some(value) = value {
                    query.push((name, value));
                }
            }
            let url = format!("{}/api/v1/audit/export", client.url.trim_end_matches('/'));
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(token)
                .query(&query)
                .send()
                .await
                .with_context(|| format!("reaching {url}"))?;
            let status = response.status();
            let body = response.text().await?;
            if !status.is_success() {
                bail!("the panel answered {status}: {body}");
            }
            match output {
                Some(path) => std::fs::write(&path, body)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{body}"),
            }
            Ok(())
        }
    }
}

fn verify_export(
    path: &Path,
    outside: &[Checkpoint],
    keys: Option<&[AuditKey]>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match alveole_audit::export::verify_export(&text, outside, keys) {
        Ok(report) => {
            let scope = if report.complete {
                "the whole chain"
            } else {
                "a filtered export: each event and its neighbours"
            };
            println!(
                "intact: {} events ({scope}){}; checkpoints verified: {}",
                report.events,
                report
                    .head
                    .map(|h| format!(", head {}", h.hash.unwrap_or_default()))
                    .unwrap_or_default(),
                lengths(&report.checkpoints)
            );
            Ok(())
        }
        Err(error) => bail!("NOT INTACT: {error}"),
    }
}

fn lengths(checkpoints: &[u64]) -> String {
    if checkpoints.is_empty() {
        return "none".to_owned();
    }
    checkpoints
        .iter()
        .map(|l| format!("length {l}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    SigningKey::load_or_create(path)
        .with_context(|| format!("opening the audit signing key {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not what was expected", path.display()))
}

/// Checkpoint files: one checkpoint, or a list of them.
fn read_checkpoints(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Checkpoint>> {
    let mut all = Vec::new();
    for path in paths {
        let value: serde_json::Value = read_json(path)?;
        let parsed = if value.is_array() {
            serde_json::from_value::<Vec<Checkpoint>>(value)
        } else {
            serde_json::from_value::<Checkpoint>(value).map(|c| vec![c])
        };
        all.extend(parsed.with_context(|| format!("{} holds no checkpoint", path.display()))?);
    }
    Ok(all)
}
