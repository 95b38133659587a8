//! Addresses: pools at providers, allocations to nodes and sites, and moves between nodes.

use std::net::IpAddr;

use alveole_model::{
    AddressMove, FieldError, IpAllocation, IpPool, Node, NodeId, Prefix, Provider, ProviderId,
    Site, SiteId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::lock_site_writes;
use super::records::fetch;
use super::{SqlStore, bump_generation};
use crate::{AddressStore, AuditContext, Change, StoreError, StoreResult};

/// An address as the database keeps it (canonical text).
pub(super) fn parse_address(text: &str) -> StoreResult<IpAddr> {
    text.parse().map_err(|_| StoreError::Corrupt {
        kind: "ip allocation",
        id: text.to_owned(),
        reason: "not an address".into(),
    })
}

#[async_trait]
impl AddressStore for SqlStore {
    async fn create_ip_pool(&self, ctx: &AuditContext, pool: &IpPool) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch::<Provider>(&mut tx, pool.provider_id).await?;
        let existing: Vec<String> = sqlx::query_scalar("SELECT prefix FROM ip_pools")
            .fetch_all(tx.conn())
            .await?;
        for other in existing.iter().filter_map(|p| Prefix::parse(p).ok()) {
            if pool.prefix.overlaps(&other) {
                return Err(StoreError::Conflict {
                    message: format!("{} overlaps the pool {other}", pool.prefix),
                    errors: vec![FieldError::new(
                        "prefix",
                        "prefix.overlap",
                        format!("overlaps the pool {other}"),
                    )],
                });
            }
        }
        sqlx::query(
            "INSERT INTO ip_pools (id, provider_id, prefix, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(pool.id)
        .bind(pool.provider_id.0)
        .bind(pool.prefix.to_string())
        .bind(pool.created_at)
        .execute(tx.conn())
        .await?;
        let change = Change::of("ip_pool.create", "ip_pool", pool.id, None, Some(pool));
        tx.commit(ctx, change).await
    }

    async fn ip_pools(&self) -> StoreResult<Vec<(IpPool, u64)>> {
        let rows: Vec<(Uuid, Uuid, String, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT p.id, p.provider_id, p.prefix, p.created_at, \
             (SELECT COUNT(*) FROM ip_allocations a WHERE a.pool_id = p.id) \
             FROM ip_pools p ORDER BY p.prefix",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, provider, prefix, created_at, used)| {
                let prefix = Prefix::parse(&prefix).map_err(|e| StoreError::Corrupt {
                    kind: "ip pool",
                    id: id.to_string(),
                    reason: e.message,
                })?;
                Ok((
                    IpPool {
                        id,
                        provider_id: ProviderId(provider),
                        prefix,
                        created_at,
                    },
                    u64::try_from(used).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn delete_ip_pool(&self, ctx: &AuditContext, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let prefix: Option<String> =
            sqlx::query_scalar("SELECT prefix FROM ip_pools WHERE id = $1")
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
        let prefix = prefix.ok_or(StoreError::NotFound { kind: "ip pool" })?;
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ip_allocations WHERE pool_id = $1")
                .bind(id)
                .fetch_one(tx.conn())
                .await?;
        if used > 0 {
            return Err(StoreError::Conflict {
                message: format!("{used} addresses of {prefix} are allocated: release them first"),
                errors: vec![],
            });
        }
        sqlx::query("DELETE FROM ip_pools WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "ip_pool.delete",
            target_kind: "ip_pool",
            target_id: id.to_string(),
            before: Some(serde_json::json!({"prefix": prefix})),
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn allocate_ip(
        &self,
        ctx: &AuditContext,
        pool: Uuid,
        node: NodeId,
        site: Option<SiteId>,
        address: Option<IpAddr>,
    ) -> StoreResult<IpAllocation> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let prefix: Option<String> =
            sqlx::query_scalar("SELECT prefix FROM ip_pools WHERE id = $1")
                .bind(pool)
                .fetch_optional(tx.conn())
                .await?;
        let prefix = prefix
            .and_then(|p| Prefix::parse(&p).ok())
            .ok_or(StoreError::NotFound { kind: "ip pool" })?;
        fetch::<Node>(&mut tx, node).await?;
        if let Some(site) = site
            && fetch::<Site>(&mut tx, site).await?.node_id != Some(node)
        {
            return Err(StoreError::Conflict {
                message: "the site is not on this node".into(),
                errors: vec![FieldError::new(
                    "site_id",
                    "site.other_node",
                    "a site's dedicated address is on the node it runs on",
                )],
            });
        }
        let taken: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT address FROM ip_allocations WHERE pool_id = $1")
                .bind(pool)
                .fetch_all(tx.conn())
                .await?
                .into_iter()
                .collect();
        let address = match address {
            Some(address) if !prefix.is_usable(address) => {
                return Err(StoreError::Conflict {
                    message: format!("{address} is not a usable address of {prefix}"),
                    errors: vec![FieldError::new(
                        "address",
                        "address.outside",
                        format!("not a usable address of {prefix}"),
                    )],
                });
            }
            Some(address) => address,
            None => prefix
                .usable()
                .find(|a| !taken.contains(&a.to_string()))
                .ok_or_else(|| StoreError::Conflict {
                    message: format!("every address of {prefix} is allocated"),
                    errors: vec![],
                })?,
        };
        let allocation = IpAllocation {
            address,
            pool_id: pool,
            node_id: node,
            site_id: site,
            created_at: tx.now,
        };
        sqlx::query(
            "INSERT INTO ip_allocations (address, pool_id, node_id, site_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(address.to_string())
        .bind(pool)
        .bind(node.0)
        .bind(site.map(|s| s.0))
        .bind(allocation.created_at)
        .execute(tx.conn())
        .await?;
        // The node routes the address (and a site's, for that site).
        bump_generation(&mut tx, Some(node)).await?;
        let change = Change::of(
            "ip.allocate",
            "ip_address",
            address,
            None,
            Some(&allocation),
        );
        tx.commit(ctx, change).await?;
        Ok(allocation)
    }

    async fn ip_allocations(&self) -> StoreResult<Vec<IpAllocation>> {
        let rows: Vec<(String, Uuid, Uuid, Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT address, pool_id, node_id, site_id, created_at FROM ip_allocations \
             ORDER BY address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(address, pool_id, node, site, created_at)| {
                Ok(IpAllocation {
                    address: parse_address(&address)?,
                    pool_id,
                    node_id: NodeId(node),
                    site_id: site.map(SiteId),
                    created_at,
                })
            })
            .collect()
    }

    async fn release_ip(&self, ctx: &AuditContext, address: IpAddr) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let held_by: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM ip_allocations WHERE address = $1 RETURNING node_id")
                .bind(address.to_string())
                .fetch_optional(tx.conn())
                .await?;
        let Some(node) = held_by else {
            return Err(StoreError::NotFound {
                kind: "ip allocation",
            });
        };
        // The node stops routing the address.
        bump_generation(&mut tx, Some(NodeId(node))).await?;
        let change = Change {
            action: "ip.release",
            target_kind: "ip_address",
            target_id: address.to_string(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn start_address_move(
        &self,
        ctx: &AuditContext,
        address: IpAddr,
        to: NodeId,
        forced: bool,
    ) -> StoreResult<AddressMove> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let held: Option<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT node_id, site_id FROM ip_allocations WHERE address = $1")
                .bind(address.to_string())
                .fetch_optional(tx.conn())
                .await?;
        let (from, site) = held.ok_or(StoreError::NotFound {
            kind: "ip allocation",
        })?;
        let from = NodeId(from);
        fetch::<Node>(&mut tx, to).await?;
        if from == to {
            return Err(StoreError::Conflict {
                message: format!("{address} is already on this node"),
                errors: vec![FieldError::new(
                    "to_node",
                    "address.same_node",
                    "the address is already on this node",
                )],
            });
        }
        if let Some(site) = site
            && fetch::<Site>(&mut tx, SiteId(site)).await?.node_id != Some(to)
        {
            return Err(StoreError::Conflict {
                message: format!("{address} is dedicated to a site that does not run on that node"),
                errors: vec![FieldError::new(
                    "to_node",
                    "address.site_elsewhere",
                    "a site's dedicated address moves with its site: move the site first",
                )],
            });
        }
        let moving: Option<Uuid> =
            sqlx::query_scalar("SELECT to_node FROM address_moves WHERE address = $1")
                .bind(address.to_string())
                .fetch_optional(tx.conn())
                .await?;
        if moving.is_some() {
            return Err(StoreError::Conflict {
                message: format!("{address} is already moving: finish or cancel that move first"),
                errors: vec![],
            });
        }
        // The old node lets the address go in its next desired state.
        bump_generation(&mut tx, Some(from)).await?;
        let release_generation: i64 =
            sqlx::query_scalar("SELECT desired_generation FROM nodes WHERE id = $1")
                .bind(from.0)
                .fetch_one(tx.conn())
                .await?;
        let movement = AddressMove {
            address,
            from_node: from,
            to_node: to,
            release_generation: u64::try_from(release_generation).unwrap_or_default(),
            forced,
            started_at: tx.now,
            last_error: None,
        };
        sqlx::query(
            "INSERT INTO address_moves \
             (address, from_node, to_node, release_generation, forced, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(address.to_string())
        .bind(from.0)
        .bind(to.0)
        .bind(release_generation)
        .bind(forced)
        .bind(movement.started_at)
        .execute(tx.conn())
        .await?;
        let change = Change::of(
            "ip.move.start",
            "ip_address",
            address,
            None,
            Some(&movement),
        );
        tx.commit(ctx, change).await?;
        Ok(movement)
    }

    async fn address_moves(&self) -> StoreResult<Vec<AddressMove>> {
        type Row = (String, Uuid, Uuid, i64, bool, DateTime<Utc>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT address, from_node, to_node, release_generation, forced, started_at, \
             last_error FROM address_moves ORDER BY started_at, address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(address, from, to, generation, forced, started_at, last_error)| {
                    Ok(AddressMove {
                        address: parse_address(&address)?,
                        from_node: NodeId(from),
                        to_node: NodeId(to),
                        release_generation: u64::try_from(generation).unwrap_or_default(),
                        forced,
                        started_at,
                        last_error,
                    })
                },
            )
            .collect()
    }

    async fn complete_address_move(
        &self,
        ctx: &AuditContext,
        address: IpAddr,
    ) -> StoreResult<IpAllocation> {
        let mut tx = self.begin_write().await?;
        let moving: Option<(Uuid, Uuid, bool, DateTime<Utc>)> = sqlx::query_as(
            "DELETE FROM address_moves WHERE address = $1 \
             RETURNING from_node, to_node, forced, started_at",
        )
        .bind(address.to_string())
        .fetch_optional(tx.conn())
        .await?;
        let (from, to, forced, started_at) = moving.ok_or(StoreError::NotFound {
            kind: "address move",
        })?;
        let row: (Uuid, Option<Uuid>, DateTime<Utc>) = sqlx::query_as(
            "UPDATE ip_allocations SET node_id = $1 WHERE address = $2 \
             RETURNING pool_id, site_id, created_at",
        )
        .bind(to)
        .bind(address.to_string())
        .fetch_one(tx.conn())
        .await?;
        // The new node takes the address in its next desired state.
        bump_generation(&mut tx, Some(NodeId(to))).await?;
        let completed_at = tx.now;
        let change = Change {
            action: "ip.move.complete",
            target_kind: "ip_address",
            target_id: address.to_string(),
            before: Some(serde_json::json!({"node_id": from})),
            after: Some(serde_json::json!({
                "node_id": to,
                "forced": forced,
                "started_at": started_at,
                "took_ms": (completed_at - started_at).num_milliseconds(),
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(IpAllocation {
            address,
            pool_id: row.0,
            node_id: NodeId(to),
            site_id: row.1.map(SiteId),
            created_at: row.2,
        })
    }

    async fn note_address_move_error(&self, address: IpAddr, error: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE address_moves SET last_error = $1 WHERE address = $2")
            .bind(error)
            .bind(address.to_string())
            .execute(tx.conn())
            .await?;
        // A note on work in progress, not a change: nothing to audit.
        tx.commit_bookkeeping().await
    }

    async fn cancel_address_move(&self, ctx: &AuditContext, address: IpAddr) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let moving: Option<(Uuid, Uuid)> = sqlx::query_as(
            "DELETE FROM address_moves WHERE address = $1 RETURNING from_node, to_node",
        )
        .bind(address.to_string())
        .fetch_optional(tx.conn())
        .await?;
        let (from, to) = moving.ok_or(StoreError::NotFound {
            kind: "address move",
        })?;
        // The old node takes the address back.
        bump_generation(&mut tx, Some(NodeId(from))).await?;
        let change = Change {
            action: "ip.move.cancel",
            target_kind: "ip_address",
            target_id: address.to_string(),
            before: Some(serde_json::json!({"moving_to": to})),
            after: Some(serde_json::json!({"node_id": from})),
        };
        tx.commit(ctx, change).await
    }
}
