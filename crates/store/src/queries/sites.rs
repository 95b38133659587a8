//! Sites: kept as records. A write places the site (on the node with most room when none is
//! given), checks the node's room and that every host name is free, with site writes
//! serialised so that two writers cannot both see a name or a node as free; its host names and
//! its nodes' generations follow it.

use alveole_model::{
    EnvVar, FieldError, Hostname, Member, MemberId, Meta, NewSite, NodeId, Site, SiteId,
    choose_node,
};
use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::Db;
use super::nodes::fetch_node_usage;
use super::records::{Actions, Audited, delete_as, fetch};
use super::{SqlStore, WriteTx, bump_generation, int};
use crate::rows::{SITE_COLUMNS, SiteRow, StoredDatabase, StoredEnvVar};
use crate::{AuditContext, SiteFilter, SiteStore, StoreError, StoreResult};

#[async_trait]
impl Audited for Site {
    const TABLE: &'static str = "sites";
    const COLUMNS: &'static str = SITE_COLUMNS;
    const SERIALISED: bool = true;
    const ACTIONS: Actions = Actions {
        create: "site.create",
        update: "site.update",
        delete: "site.delete",
    };
    type Row = SiteRow;

    fn uuid(id: SiteId) -> Uuid {
        id.0
    }
    fn new_id() -> SiteId {
        SiteId::generate()
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn bind(&self, q: &mut QueryBuilder<Db>) {
        let aliases: Vec<String> = self.aliases.iter().map(ToString::to_string).collect();
        let env: Vec<StoredEnvVar> = self.env.iter().map(StoredEnvVar::from_var).collect();
        let mut s = q.separated(", ");
        s.push_bind(self.id.0)
            .push_bind(self.owner_id.0)
            .push_bind(self.primary_domain.to_string())
            .push_bind(Json(aliases))
            .push_bind(self.image.to_string())
            .push_bind(Json(self.command.clone()))
            .push_bind(Json(env))
            .push_bind(i64::from(self.http_port))
            .push_bind(int(self.volume.quota_bytes))
            .push_bind(self.volume.mount_path.clone())
            .push_bind(i64::from(self.limits.cpu_millis))
            .push_bind(int(self.limits.memory_bytes))
            .push_bind(i64::from(self.limits.pids))
            .push_bind(int(self.limits.request_body_bytes))
            .push_bind(self.security.read_only_root)
            .push_bind(self.security.user.clone())
            .push_bind(Json(self.exposed_ports.clone()))
            .push_bind(self.limit_tier.as_str())
            .push_bind(self.node_id.map(|n| n.0))
            .push_bind(self.phase.as_str())
            .push_bind(Json(self.backup.clone()))
            .push_bind(Json(self.https.clone()))
            .push_bind(Json(self.admission.clone()))
            .push_bind(Json(
                self.databases
                    .iter()
                    .map(StoredDatabase::from_database)
                    .collect::<Vec<_>>(),
            ))
            .push_bind(self.meta.version)
            .push_bind(self.meta.created_at)
            .push_bind(self.meta.updated_at);
    }

    fn filter(filter: &SiteFilter, q: &mut QueryBuilder<Db>) {
        if let Some(owner) = filter.owner_id {
            q.push(" AND owner_id = ").push_bind(owner.0);
        }
        if let Some(node) = filter.node_id {
            q.push(" AND node_id = ").push_bind(node.0);
        }
        if let Some(phase) = filter.phase {
            q.push(" AND phase = ").push_bind(phase.as_str());
        }
        if let Some(hostname) = &filter.hostname {
            q.push(" AND id IN (SELECT site_id FROM hostnames WHERE name = ")
                .push_bind(hostname.clone())
                .push(")");
        }
    }

    fn build(id: SiteId, new: NewSite, meta: Meta, _before: Option<&Self>) -> Self {
        Site::from_new(id, new, meta)
    }

    /// Its owner exists, its node has room (the node with most room when none is given) and
    /// every one of its names is free.
    async fn check(tx: &mut WriteTx, new: &mut NewSite, before: Option<&Self>) -> StoreResult<()> {
        let owner = fetch::<Member>(tx, new.owner_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => StoreError::Conflict {
                    message: "the owner does not exist".into(),
                    errors: vec![FieldError::new(
                        "owner_id",
                        "owner.unknown",
                        "no member has this id",
                    )],
                },
                other => other,
            })?;
        let owner_changes = before.is_none_or(|site| site.owner_id != new.owner_id);
        if owner.disabled_at.is_some() && owner_changes {
            return Err(StoreError::Conflict {
                message: "the owner is disabled".into(),
                errors: vec![FieldError::new(
                    "owner_id",
                    "owner.disabled",
                    "this member is disabled: enable them before giving them a site",
                )],
            });
        }
        place(tx, new, before).await?;
        if let Some(node) = new.node_id {
            super::backup_targets::check_site_placement(tx, node, &new.backup.targets).await?;
        }
        let own_site = before.map(|s| s.id.0);
        let fields = std::iter::once("primary_domain".to_owned())
            .chain((0..new.aliases.len()).map(|i| format!("aliases[{i}]")));
        for (hostname, field) in new.hostnames().zip(fields) {
            check_hostname_free(tx, hostname, new.owner_id, own_site)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict { message, .. } => StoreError::Conflict {
                        errors: vec![FieldError::new(field, "hostname.taken", message.clone())],
                        message,
                    },
                    other => other,
                })?;
        }
        Ok(())
    }

    /// Its names, and its nodes told.
    async fn follow(
        tx: &mut WriteTx,
        before: Option<&Self>,
        after: Option<&Self>,
    ) -> StoreResult<()> {
        if let Some(before) = before {
            // Its vaults grant its node, or no longer do.
            super::backup_targets::bump_vaults(tx, &before.backup.targets).await?;
            sqlx::query("DELETE FROM hostnames WHERE site_id = $1")
                .bind(before.id.0)
                .execute(tx.conn())
                .await?;
            bump_generation(tx, before.node_id).await?;
        }
        if let Some(after) = after {
            for hostname in std::iter::once(&after.primary_domain).chain(&after.aliases) {
                sqlx::query(
                    "INSERT INTO hostnames (name, site_id, parent, wildcard) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(hostname.as_str())
                .bind(after.id.0)
                .bind(hostname.parent())
                .bind(hostname.is_wildcard())
                .execute(tx.conn())
                .await?;
            }
            if before.is_none_or(|before| before.node_id != after.node_id) {
                bump_generation(tx, after.node_id).await?;
            }
            if before.is_none_or(|before| before.backup.targets != after.backup.targets) {
                super::backup_targets::write_site_targets(tx, after.id, &after.backup.targets)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Places `new` when it names no node, and checks that its node has room for it (its own
/// reservation, when it replaces `before`, is replaced, not added to).
async fn place(tx: &mut WriteTx, new: &mut NewSite, before: Option<&Site>) -> StoreResult<()> {
    let mut loads: Vec<_> = fetch_node_usage(tx.conn())
        .await?
        .into_iter()
        .map(|u| u.load)
        .collect();
    if let Some(old) = before.filter(|old| old.node_id.is_some()) {
        let old_reservation = old.reservation();
        for load in loads.iter_mut().filter(|l| Some(l.node_id) == old.node_id) {
            load.reserved.cpu_millis -= old_reservation.cpu_millis.min(load.reserved.cpu_millis);
            load.reserved.memory_bytes -=
                old_reservation.memory_bytes.min(load.reserved.memory_bytes);
            load.reserved.disk_bytes -= old_reservation.disk_bytes.min(load.reserved.disk_bytes);
        }
    }
    let wanted = new.reservation();
    match new.node_id {
        Some(node_id) => {
            let load = loads.iter().find(|l| l.node_id == node_id).ok_or_else(|| {
                StoreError::Conflict {
                    message: "the node does not exist".into(),
                    errors: vec![FieldError::new(
                        "node_id",
                        "node.unknown",
                        "no node has this id",
                    )],
                }
            })?;
            load.check_fits(wanted)?;
        }
        None => {
            let chosen = choose_node(&loads, wanted).ok_or_else(|| StoreError::Conflict {
                message: "no node has room for this site".into(),
                errors: vec![FieldError::new(
                    "node_id",
                    "placement.no_room",
                    "no node has room for this site",
                )],
            })?;
            new.node_id = Some(chosen);
        }
    }
    Ok(())
}

/// A name is taken when another site has it. Between members, a wildcard `*.D` claims `D`
/// and every name under it: it is refused when another member holds one of them, and a name
/// at or under `D` is refused when another member holds `*.D`.
async fn check_hostname_free(
    tx: &mut WriteTx,
    hostname: &Hostname,
    owner: MemberId,
    own_site: Option<Uuid>,
) -> StoreResult<()> {
    let taken: Option<Uuid> = sqlx::query_scalar("SELECT site_id FROM hostnames WHERE name = $1")
        .bind(hostname.as_str())
        .fetch_optional(tx.conn())
        .await?;
    if taken.is_some_and(|site| Some(site) != own_site) {
        return Err(StoreError::Conflict {
            message: format!("{hostname} is already used by a site"),
            errors: vec![],
        });
    }
    // The name a wildcard claims from (`D` of `*.D`), or the name itself.
    let base = if hostname.is_wildcard() {
        hostname.parent()
    } else {
        hostname.as_str()
    };
    // Another member's wildcard over `base` or one of its ancestors.
    let claimed_by: Option<String> = sqlx::query_scalar(
        "SELECT h.name FROM hostnames h JOIN sites s ON s.id = h.site_id \
         WHERE h.wildcard AND s.owner_id <> $2 AND (h.parent = CAST($1 AS TEXT) \
           OR (length(CAST($1 AS TEXT)) > length(h.parent) \
               AND substr(CAST($1 AS TEXT), length(CAST($1 AS TEXT)) - length(h.parent)) = '.' || h.parent)) \
         LIMIT 1",
    )
    .bind(base)
    .bind(owner.0)
    .fetch_optional(tx.conn())
    .await?;
    // For a wildcard: another member's name at or under `base`.
    let claimed_from: Option<String> = if hostname.is_wildcard() {
        sqlx::query_scalar(
            "SELECT h.name FROM hostnames h JOIN sites s ON s.id = h.site_id \
             WHERE s.owner_id <> $2 AND (h.name = CAST($1 AS TEXT) \
               OR (length(h.name) > length(CAST($1 AS TEXT)) \
                   AND substr(h.name, length(h.name) - length(CAST($1 AS TEXT))) = '.' || CAST($1 AS TEXT))) \
             LIMIT 1",
        )
        .bind(base)
        .bind(owner.0)
        .fetch_optional(tx.conn())
        .await?
    } else {
        None
    };
    match claimed_by.or(claimed_from) {
        Some(other) => Err(StoreError::Conflict {
            message: format!("{hostname} overlaps {other}, which belongs to another member"),
            errors: vec![],
        }),
        None => Ok(()),
    }
}

/// The sites whose volumes the node must remove.
pub(super) async fn fetch_volume_purges<'e>(
    ex: impl Executor<'e, Database = Db>,
    node: NodeId,
) -> StoreResult<Vec<SiteId>> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT site_id FROM volume_purges WHERE node_id = $1 ORDER BY site_id")
            .bind(node.0)
            .fetch_all(ex)
            .await?;
    Ok(ids.into_iter().map(SiteId).collect())
}

#[async_trait]
impl SiteStore for SqlStore {
    async fn purge_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
    ) -> StoreResult<()> {
        let (mut tx, before, change) = delete_as::<Site>(self, "site.purge", id, version).await?;
        if let Some(node) = before.node_id {
            sqlx::query(
                "INSERT INTO volume_purges (site_id, node_id, requested_at) VALUES ($1, $2, $3)",
            )
            .bind(id.0)
            .bind(node.0)
            .bind(tx.now)
            .execute(tx.conn())
            .await?;
        }
        tx.commit(ctx, change).await
    }

    async fn rewrite_site_secrets(
        &self,
        ctx: &AuditContext,
        action: &'static str,
        id: SiteId,
        version: i64,
        env: Vec<EnvVar>,
        databases: Vec<alveole_model::Database>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let before = fetch::<Site>(&mut tx, id).await?;
        if before.meta.version != version {
            return Err(StoreError::VersionMismatch {
                kind: "site",
                expected: version,
                actual: before.meta.version,
            });
        }
        let after = Site {
            env,
            databases,
            meta: tx.next_meta(&before.meta),
            ..before.clone()
        };
        let stored: Vec<StoredEnvVar> = after.env.iter().map(StoredEnvVar::from_var).collect();
        let databases: Vec<StoredDatabase> = after
            .databases
            .iter()
            .map(StoredDatabase::from_database)
            .collect();
        sqlx::query(
            "UPDATE sites SET env = $1, databases = $2, version = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(Json(stored))
        .bind(Json(databases))
        .bind(after.meta.version)
        .bind(after.meta.updated_at)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        // Its node runs with the new values (a new password, say).
        bump_generation(&mut tx, after.node_id).await?;
        let change = crate::Change::of(action, "site", id, Some(&before), Some(&after));
        tx.commit(ctx, change).await
    }
}
