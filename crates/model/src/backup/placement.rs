//! The placement rule: a site's backups are never at its own provider, nor on its node, and
//! two copies are at two providers. A fire, a provider's bankruptcy or its notice to leave
//! then never takes a site and its backups together.

use std::collections::BTreeMap;

use crate::error::FieldError;
use crate::ids::{BackupTargetId, NodeId, ProviderId};

/// Where a target keeps its copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPlace {
    pub id: BackupTargetId,
    pub name: String,
    pub provider_id: ProviderId,
    /// The vault's node, for a vault.
    pub node_id: Option<NodeId>,
}

/// Why a site on `node` (at `provider`) may not keep its copies at `targets` (in the
/// policy's order): one error per target that breaks the rule, under `backup.targets[i]`.
pub fn check_placement(
    node: NodeId,
    provider: ProviderId,
    targets: &[TargetPlace],
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut providers: BTreeMap<ProviderId, &str> = BTreeMap::new();
    for (i, target) in targets.iter().enumerate() {
        let field = format!("backup.targets[{i}]");
        if let Some(reason) = refuses_node(node, provider, target) {
            errors.push(FieldError::new(field, reason.0, reason.1));
        } else if let Some(first) = providers.insert(target.provider_id, &target.name) {
            errors.push(FieldError::new(
                field,
                "backup.same_provider_twice",
                format!(
                    "{} is at the same provider as {first}: two copies must be at two providers",
                    target.name
                ),
            ));
        }
    }
    errors
}

/// Why a site on `node` (at `provider`) may not keep a copy at `target`, if it may not: a
/// code and a message. Planners ask it of every node they might move the site to.
pub fn refuses_node(
    node: NodeId,
    provider: ProviderId,
    target: &TargetPlace,
) -> Option<(&'static str, String)> {
    if target.node_id == Some(node) {
        Some((
            "backup.same_node",
            format!(
                "{} is the site's own node: its backups must be elsewhere",
                target.name
            ),
        ))
    } else if target.provider_id == provider {
        Some((
            "backup.same_provider",
            format!(
                "{} is at the site's provider: a fire or a notice there would take the site and its backups together",
                target.name
            ),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, provider: ProviderId, node: Option<NodeId>) -> TargetPlace {
        TargetPlace {
            id: BackupTargetId::generate(),
            name: name.into(),
            provider_id: provider,
            node_id: node,
        }
    }

    #[test]
    fn copies_go_to_other_providers_than_the_sites_and_each_others() {
        let (here, there, third) = (
            ProviderId::generate(),
            ProviderId::generate(),
            ProviderId::generate(),
        );
        let node = NodeId::generate();
        let ok = [target("a", there, None), target("b", third, None)];
        assert!(check_placement(node, here, &ok).is_empty());

        let codes = |targets: &[TargetPlace]| -> Vec<(String, String)> {
            check_placement(node, here, targets)
                .into_iter()
                .map(|e| (e.field, e.code))
                .collect()
        };
        assert_eq!(
            codes(&[target("local", here, None)]),
            [("backup.targets[0]".into(), "backup.same_provider".into())]
        );
        assert_eq!(
            codes(&[target("self", here, Some(node))]),
            [("backup.targets[0]".into(), "backup.same_node".into())],
            "its own node is named first: it is the worse mistake"
        );
        assert_eq!(
            codes(&[target("a", there, None), target("b", there, None)]),
            [(
                "backup.targets[1]".into(),
                "backup.same_provider_twice".into()
            )]
        );
        let message = &check_placement(node, here, &[target("vault-1", here, None)])[0].message;
        assert!(message.contains("vault-1"), "{message}");
    }
}
