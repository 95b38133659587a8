//! Backup targets kept as records (one in use may not go, nor move to a provider one of its
//! sites is at), and the placement rule, checked when a site's policy or node changes and
//! when a node changes provider.

use alveole_model::backup::{TargetPlace, check_placement};
use alveole_model::{
    BackupTarget, BackupTargetId, FieldError, Meta, NewBackupTarget, NodeId, ProviderId, SiteId,
    TargetKind,
};
use async_trait::async_trait;
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use super::super::Db;
use super::providers::unknown_provider;
use super::records::{Actions, Audited, fetch};
use super::{WriteTx, bump_generation, in_use, names_of};
use crate::rows::BackupTargetRow;
use crate::{BackupTargetFilter, StoreError, StoreResult};

#[async_trait]
impl Audited for BackupTarget {
    const TABLE: &'static str = "backup_targets";
    const COLUMNS: &'static str =
        "id, name, node_id, url, provider_id, version, created_at, updated_at";
    const SERIALISED: bool = true;
    const ACTIONS: Actions = Actions {
        create: "backup_target.create",
        update: "backup_target.update",
        delete: "backup_target.delete",
    };
    type Row = BackupTargetRow;

    fn uuid(id: BackupTargetId) -> Uuid {
        id.0
    }
    fn new_id() -> BackupTargetId {
        BackupTargetId::generate()
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn bind(&self, q: &mut QueryBuilder<Db>) {
        let (node, url, provider) = match &self.kind {
            TargetKind::Vault { node_id } => (Some(node_id.0), None, None),
            TargetKind::Rest { url, provider_id } => (None, Some(url.clone()), Some(provider_id.0)),
        };
        let mut s = q.separated(", ");
        s.push_bind(self.id.0)
            .push_bind(self.name.to_string())
            .push_bind(node)
            .push_bind(url)
            .push_bind(provider)
            .push_bind(self.meta.version)
            .push_bind(self.meta.created_at)
            .push_bind(self.meta.updated_at);
    }

    fn filter(_: &BackupTargetFilter, _: &mut QueryBuilder<Db>) {}

    fn build(id: BackupTargetId, new: NewBackupTarget, meta: Meta, _: Option<&Self>) -> Self {
        BackupTarget {
            id,
            name: new.name,
            kind: new.kind,
            meta,
        }
    }

    /// Its node or provider exists; a changed target still keeps every site's copies away
    /// from the site's provider and node.
    async fn check(
        tx: &mut WriteTx,
        new: &mut NewBackupTarget,
        before: Option<&Self>,
    ) -> StoreResult<()> {
        match &new.kind {
            TargetKind::Vault { node_id } => {
                fetch::<alveole_model::Node>(tx, *node_id)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound { .. } => StoreError::Conflict {
                            message: "the node does not exist".into(),
                            errors: vec![FieldError::new(
                                "node_id",
                                "node.unknown",
                                "no node has this id",
                            )],
                        },
                        other => other,
                    })?;
            }
            TargetKind::Rest { provider_id, .. } => {
                fetch::<alveole_model::Provider>(tx, *provider_id)
                    .await
                    .map_err(unknown_provider)?;
            }
        }
        let Some(before) = before else { return Ok(()) };
        let place = place_of(tx, before.id, &new.name.to_string(), &new.kind).await?;
        let users: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
            "SELECT s.id, s.node_id FROM site_backup_targets t JOIN sites s ON s.id = t.site_id \
             WHERE t.target_id = $1 ORDER BY s.id",
        )
        .bind(before.id.0)
        .fetch_all(tx.conn())
        .await?;
        for (site, node) in users {
            let Some(node) = node else { continue };
            let provider = provider_of(tx, NodeId(node)).await?;
            if let Some(error) =
                check_placement(NodeId(node), provider, std::slice::from_ref(&place)).pop()
            {
                return Err(placement_conflict(
                    "the target would break a site's placement rule",
                    vec![FieldError::new(
                        match new.kind {
                            TargetKind::Vault { .. } => "node_id",
                            TargetKind::Rest { .. } => "provider_id",
                        },
                        &error.code,
                        format!("site {site}: {}", error.message),
                    )],
                ));
            }
        }
        Ok(())
    }

    /// The vault's node was told, and its sites' nodes (their endpoints changed).
    async fn follow(
        tx: &mut WriteTx,
        before: Option<&Self>,
        after: Option<&Self>,
    ) -> StoreResult<()> {
        for target in before.into_iter().chain(after) {
            bump_generation(tx, target.vault_node()).await?;
            bump_sites_of(tx, target.id).await?;
        }
        Ok(())
    }

    async fn check_delete(tx: &mut WriteTx, target: &Self) -> StoreResult<()> {
        let sites = names_of(
            tx.conn(),
            "SELECT s.primary_domain FROM site_backup_targets t JOIN sites s ON s.id = t.site_id \
             WHERE t.target_id = $1 ORDER BY s.primary_domain",
            target.id.0,
        )
        .await?;
        let restoring = names_of(
            tx.conn(),
            "SELECT s.primary_domain FROM restores r JOIN sites s ON s.id = r.site_id \
             WHERE r.target_id = $1 AND r.state = 'running' ORDER BY s.primary_domain",
            target.id.0,
        )
        .await?;
        if !restoring.is_empty() {
            return Err(in_use(
                "backup target",
                "backup_target.restoring",
                "restores under way",
                &restoring,
            ));
        }
        if sites.is_empty() {
            sqlx::query("DELETE FROM restores WHERE target_id = $1 AND state <> 'running'")
                .bind(target.id.0)
                .execute(tx.conn())
                .await?;
            Ok(())
        } else {
            Err(in_use(
                "backup target",
                "backup_target.in_use",
                "sites backing up to it",
                &sites,
            ))
        }
    }
}

fn placement_conflict(message: &str, errors: Vec<FieldError>) -> StoreError {
    StoreError::Conflict {
        message: message.into(),
        errors,
    }
}

async fn provider_of(tx: &mut WriteTx, node: NodeId) -> StoreResult<ProviderId> {
    let provider: Uuid = sqlx::query_scalar("SELECT provider_id FROM nodes WHERE id = $1")
        .bind(node.0)
        .fetch_one(tx.conn())
        .await?;
    Ok(ProviderId(provider))
}

async fn place_of(
    tx: &mut WriteTx,
    id: BackupTargetId,
    name: &str,
    kind: &TargetKind,
) -> StoreResult<TargetPlace> {
    Ok(match kind {
        TargetKind::Vault { node_id } => TargetPlace {
            id,
            name: name.to_owned(),
            provider_id: provider_of(tx, *node_id).await?,
            node_id: Some(*node_id),
        },
        TargetKind::Rest { provider_id, .. } => TargetPlace {
            id,
            name: name.to_owned(),
            provider_id: *provider_id,
            node_id: None,
        },
    })
}

/// Tells the nodes of the sites that back up to `target` (their documents name it).
async fn bump_sites_of(tx: &mut WriteTx, target: BackupTargetId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE nodes SET desired_generation = desired_generation + 1 WHERE id IN \
         (SELECT s.node_id FROM site_backup_targets t JOIN sites s ON s.id = t.site_id \
          WHERE t.target_id = $1)",
    )
    .bind(target.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Where targets keep their copies, in the order of `targets` (unknown ones left out).
pub(super) async fn target_places(
    conn: &mut <Db as sqlx::Database>::Connection,
    targets: &[BackupTargetId],
) -> StoreResult<Vec<TargetPlace>> {
    let mut places = Vec::new();
    for id in targets {
        let row: Option<(String, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
            "SELECT t.name, t.node_id, COALESCE(t.provider_id, n.provider_id) \
             FROM backup_targets t LEFT JOIN nodes n ON n.id = t.node_id WHERE t.id = $1",
        )
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((name, node, Some(provider))) = row {
            places.push(TargetPlace {
                id: *id,
                name,
                provider_id: ProviderId(provider),
                node_id: node.map(NodeId),
            });
        }
    }
    Ok(places)
}

/// The placement rule for a site on `node` backing up to `targets`: every target exists,
/// none is at the node's provider or on the node, two are at two providers.
pub(super) async fn check_site_placement(
    tx: &mut WriteTx,
    node: NodeId,
    targets: &[BackupTargetId],
) -> StoreResult<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let mut places = Vec::new();
    let mut errors = Vec::new();
    for (i, id) in targets.iter().enumerate() {
        let found = target_places(tx.conn(), std::slice::from_ref(id)).await?;
        match found.into_iter().next() {
            Some(place) => places.push(place),
            None => errors.push(FieldError::new(
                format!("backup.targets[{i}]"),
                "target.unknown",
                "no backup target has this id",
            )),
        }
    }
    if errors.is_empty() {
        let provider = provider_of(tx, node).await?;
        errors = check_placement(node, provider, &places);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(placement_conflict(
            "the backup policy breaks the placement rule: a site's backups are kept at other providers than its own",
            errors,
        ))
    }
}

/// Keeps the policy's targets as rows (a target in use cannot go).
pub(super) async fn write_site_targets(
    tx: &mut WriteTx,
    site: SiteId,
    targets: &[BackupTargetId],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM site_backup_targets WHERE site_id = $1")
        .bind(site.0)
        .execute(tx.conn())
        .await?;
    for (position, target) in targets.iter().enumerate() {
        sqlx::query(
            "INSERT INTO site_backup_targets (site_id, target_id, position) VALUES ($1, $2, $3)",
        )
        .bind(site.0)
        .bind(target.0)
        .bind(i64::try_from(position).unwrap_or(0))
        .execute(tx.conn())
        .await?;
    }
    bump_vaults(tx, targets).await
}

/// Tells the vaults among `targets` (their grants follow the sites that use them).
pub(super) async fn bump_vaults(tx: &mut WriteTx, targets: &[BackupTargetId]) -> StoreResult<()> {
    for target in targets {
        let vault: Option<Uuid> =
            sqlx::query_scalar("SELECT node_id FROM backup_targets WHERE id = $1")
                .bind(target.0)
                .fetch_optional(tx.conn())
                .await?
                .flatten();
        bump_generation(tx, vault.map(NodeId)).await?;
    }
    Ok(())
}

/// A node moving to `provider` (an edit of its provider) must keep the rule: its sites'
/// copies stay at other providers, and the sites that keep copies on it (a vault) are at
/// other providers.
pub(super) async fn check_node_provider(
    tx: &mut WriteTx,
    node: NodeId,
    provider: ProviderId,
) -> StoreResult<()> {
    let refused = |message: String| {
        placement_conflict(
            "the node's new provider breaks the backups' placement rule",
            vec![FieldError::new(
                "provider_id",
                "backup.same_provider",
                message,
            )],
        )
    };
    let policies: Vec<(String, Json<alveole_model::BackupPolicy>)> = sqlx::query_as(
        "SELECT primary_domain, backup_policy FROM sites WHERE node_id = $1 ORDER BY primary_domain",
    )
    .bind(node.0)
    .fetch_all(tx.conn())
    .await?;
    for (site, policy) in policies {
        for place in target_places(tx.conn(), &policy.0.targets).await? {
            if place.provider_id == provider {
                return Err(refused(format!(
                    "{site} keeps its backups at {}, at that provider",
                    place.name
                )));
            }
        }
    }
    let kept: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.primary_domain, t.name FROM backup_targets t \
         JOIN site_backup_targets st ON st.target_id = t.id JOIN sites s ON s.id = st.site_id \
         JOIN nodes n ON n.id = s.node_id WHERE t.node_id = $1 AND n.provider_id = $2 \
         ORDER BY s.primary_domain",
    )
    .bind(node.0)
    .bind(provider.0)
    .fetch_all(tx.conn())
    .await?;
    match kept.first() {
        Some((site, target)) => Err(refused(format!(
            "{site}, at that provider, keeps its backups here ({target})"
        ))),
        None => Ok(()),
    }
}
