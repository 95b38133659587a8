//! Backup targets: where sites' backups go. A vault (a node of the co-op that keeps other
//! nodes' backups, over the agents' mutual TLS) or an external restic REST server, at a
//! provider the panel knows, so that it can keep copies away from each site's provider.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Meta;
use crate::error::{FieldError, ValidationErrors};
use crate::ids::{BackupTargetId, NodeId, ProviderId};
use crate::text::Slug;

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupTargetInput {
    /// Lowercase letters, digits and hyphens; unique.
    pub name: String,
    /// A vault: the node that keeps the backups (its provider is the target's).
    #[serde(default)]
    pub node_id: Option<NodeId>,
    /// An external restic REST server (`https://backup.example.org/alveole/`), each site's
    /// repository below it.
    #[serde(default)]
    pub url: Option<String>,
    /// The external server's provider (a vault's is its node's).
    #[serde(default)]
    pub provider_id: Option<ProviderId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetKind {
    Vault {
        node_id: NodeId,
    },
    Rest {
        url: String,
        provider_id: ProviderId,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewBackupTarget {
    pub name: Slug,
    pub kind: TargetKind,
}

impl BackupTargetInput {
    pub fn validate(self) -> Result<NewBackupTarget, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", Slug::parse(self.name.trim()));
        let url = self
            .url
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        let kind = match (self.node_id, url, self.provider_id) {
            (Some(node_id), None, None) => Some(TargetKind::Vault { node_id }),
            (Some(_), Some(_), _) => {
                errors.push(FieldError::new(
                    "url",
                    "target.both",
                    "a target is a vault node or a REST server, not both",
                ));
                None
            }
            (Some(_), None, Some(_)) => {
                errors.push(FieldError::new(
                    "provider_id",
                    "target.vault_provider",
                    "a vault is at its node's provider: leave the provider out",
                ));
                None
            }
            (None, Some(url), provider) => {
                let url = errors.check("url", parse_rest_url(&url));
                if provider.is_none() {
                    errors.push(FieldError::new(
                        "provider_id",
                        "required",
                        "say at which provider the REST server is, so copies stay away from each site's provider",
                    ));
                }
                Some(TargetKind::Rest {
                    url: url.unwrap_or_default(),
                    provider_id: provider.unwrap_or(ProviderId(uuid::Uuid::nil())),
                })
            }
            (None, None, _) => {
                errors.push(FieldError::new(
                    "node_id",
                    "required",
                    "name the vault's node, or give the url of a REST server",
                ));
                None
            }
        };
        errors.finish(|| {
            Some(NewBackupTarget {
                name: name?,
                kind: kind?,
            })
        })
    }
}

/// An http(s) address without credentials (they would be stored and shown in clear), query
/// or fragment; it ends with `/` so that repositories go below it.
fn parse_rest_url(raw: &str) -> Result<String, FieldError> {
    let invalid = |message: &str| FieldError::new("", "url.invalid", message);
    let url = url::Url::parse(raw)
        .map_err(|_| invalid("an address such as https://backup.example.org/alveole/"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("an http or https address"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "no user or password in the address: the panel would show them",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || raw.len() > 2048 {
        return Err(invalid("no query or fragment, at most 2048 characters"));
    }
    let mut text = url.to_string();
    if !text.ends_with('/') {
        text.push('/');
    }
    Ok(text)
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct BackupTarget {
    pub id: BackupTargetId,
    pub name: Slug,
    #[serde(flatten)]
    pub kind: TargetKind,
    #[serde(flatten)]
    pub meta: Meta,
}

impl BackupTarget {
    pub fn to_input(&self) -> BackupTargetInput {
        let (node_id, url, provider_id) = match &self.kind {
            TargetKind::Vault { node_id } => (Some(*node_id), None, None),
            TargetKind::Rest { url, provider_id } => (None, Some(url.clone()), Some(*provider_id)),
        };
        BackupTargetInput {
            name: self.name.to_string(),
            node_id,
            url,
            provider_id,
        }
    }

    pub fn vault_node(&self) -> Option<NodeId> {
        match self.kind {
            TargetKind::Vault { node_id } => Some(node_id),
            TargetKind::Rest { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> BackupTargetInput {
        BackupTargetInput {
            name: "vault-be".into(),
            node_id: None,
            url: None,
            provider_id: None,
        }
    }

    #[test]
    fn a_target_is_a_vault_or_a_rest_server_at_a_named_provider() {
        let node = NodeId::generate();
        let vault = BackupTargetInput {
            node_id: Some(node),
            ..input()
        };
        assert_eq!(
            vault.validate().unwrap().kind,
            TargetKind::Vault { node_id: node }
        );
        let provider = ProviderId::generate();
        let rest = BackupTargetInput {
            url: Some("https://backup.example.org/alveole".into()),
            provider_id: Some(provider),
            ..input()
        };
        assert_eq!(
            rest.validate().unwrap().kind,
            TargetKind::Rest {
                url: "https://backup.example.org/alveole/".into(),
                provider_id: provider
            }
        );
        let code = |input: BackupTargetInput| {
            let errors = input.validate().unwrap_err().0;
            (errors[0].field.clone(), errors[0].code.clone())
        };
        assert_eq!(code(input()), ("node_id".into(), "required".into()));
        let no_provider = BackupTargetInput {
            url: Some("https://backup.example.org/".into()),
            ..input()
        };
        assert_eq!(code(no_provider), ("provider_id".into(), "required".into()));
        for bad in [
            "ftp://backup.example.org/",
            "https://user:pw@backup.example.org/",
            "https://backup.example.org/?x=1",
            "not a url",
        ] {
            let rest = BackupTargetInput {
                url: Some(bad.into()),
                provider_id: Some(provider),
                ..input()
            };
            assert_eq!(code(rest), ("url".into(), "url.invalid".into()), "{bad}");
        }
    }
}
