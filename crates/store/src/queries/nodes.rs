//! Nodes: kept as records (a node's capacity must keep holding its sites; a node may not go
//! while it has sites), and the fleet's usage and counts.

use alveole_model::{Meta, NewNode, Node, NodeId, NodeLoad};
use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::Db;
use super::providers::unknown_provider;
use super::records::{Actions, Audited, fetch};
use super::{SqlStore, WriteTx, bump_filtering_nodes, bump_generation, in_use, int, names_of};
use crate::rows::{NodeRow, NodeUsageRow};
use crate::{Counts, FleetStore, NodeFilter, NodeUsage, StoreResult};

#[async_trait]
impl Audited for Node {
    const TABLE: &'static str = "nodes";
    const COLUMNS: &'static str = "id, provider_id, name, public_addresses, cpu_millis, \
         memory_bytes, disk_bytes, overcommit_cpu, overcommit_memory, input_filter, \
         input_allowed, version, created_at, updated_at";
    const SERIALISED: bool = true;
    const ACTIONS: Actions = Actions {
        create: "node.create",
        update: "node.update",
        delete: "node.delete",
    };
    type Row = NodeRow;

    fn uuid(id: NodeId) -> Uuid {
        id.0
    }
    fn new_id() -> NodeId {
        NodeId::generate()
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn bind(&self, q: &mut QueryBuilder<Db>) {
        let addresses: Vec<String> = self
            .public_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        let allowed: Vec<String> = self.input_allowed.iter().map(ToString::to_string).collect();
        let mut s = q.separated(", ");
        s.push_bind(self.id.0)
            .push_bind(self.provider_id.0)
            .push_bind(self.name.to_string())
            .push_bind(Json(addresses))
            .push_bind(i64::from(self.capacity.cpu_millis))
            .push_bind(int(self.capacity.memory_bytes))
            .push_bind(int(self.capacity.disk_bytes))
            .push_bind(self.overcommit.cpu)
            .push_bind(self.overcommit.memory)
            .push_bind(self.input_filter)
            .push_bind(Json(allowed))
            .push_bind(self.meta.version)
            .push_bind(self.meta.created_at)
            .push_bind(self.meta.updated_at);
    }

    fn filter(filter: &NodeFilter, q: &mut QueryBuilder<Db>) {
        if let Some(provider) = filter.provider_id {
            q.push(" AND provider_id = ").push_bind(provider.0);
        }
    }

    fn build(id: NodeId, new: NewNode, meta: Meta, _before: Option<&Self>) -> Self {
        Node {
            id,
            provider_id: new.provider_id,
            name: new.name,
            public_addresses: new.public_addresses,
            capacity: new.capacity,
            overcommit: new.overcommit,
            input_filter: new.input_filter,
            input_allowed: new.input_allowed,
            meta,
        }
    }

    /// The provider exists, and a new capacity still holds the sites already placed.
    async fn check(tx: &mut WriteTx, new: &mut NewNode, before: Option<&Self>) -> StoreResult<()> {
        fetch::<alveole_model::Provider>(tx, new.provider_id)
            .await
            .map_err(unknown_provider)?;
        let Some(before) = before else {
            return Ok(());
        };
        if new.provider_id != before.provider_id {
            super::backup_targets::check_node_provider(tx, before.id, new.provider_id).await?;
        }
        let usage = fetch_node_usage(tx.conn()).await?;
        if let Some(usage) = usage.iter().find(|u| u.load.node_id == before.id) {
            let shrunk = NodeLoad {
                capacity: new.capacity,
                overcommit: new.overcommit,
                reserved: Default::default(),
                ..usage.load
            };
            shrunk.check_fits(usage.load.reserved)?;
        }
        Ok(())
    }

    /// A node's addresses are in its peers' input filters; its own filter may have changed.
    async fn follow(
        tx: &mut WriteTx,
        before: Option<&Self>,
        after: Option<&Self>,
    ) -> StoreResult<()> {
        if let (Some(_), Some(after)) = (before, after) {
            bump_generation(tx, Some(after.id)).await?;
        }
        bump_filtering_nodes(tx).await
    }

    async fn check_delete(tx: &mut WriteTx, node: &Self) -> StoreResult<()> {
        let sites = names_of(
            tx.conn(),
            "SELECT primary_domain FROM sites WHERE node_id = $1 ORDER BY primary_domain",
            node.id.0,
        )
        .await?;
        if !sites.is_empty() {
            return Err(in_use("node", "node.has_sites", "sites", &sites));
        }
        let targets = names_of(
            tx.conn(),
            "SELECT name FROM backup_targets WHERE node_id = $1 ORDER BY name",
            node.id.0,
        )
        .await?;
        if targets.is_empty() {
            Ok(())
        } else {
            Err(in_use("node", "node.is_vault", "backup targets", &targets))
        }
    }
}

/// What every node holds: its sites, and the sites on their way there (a move holds its room
/// on the target until it ends).
pub(super) async fn fetch_node_usage<'e>(
    ex: impl Executor<'e, Database = Db>,
) -> StoreResult<Vec<NodeUsage>> {
    let rows: Vec<NodeUsageRow> = sqlx::query_as(
        "SELECT n.id, n.name, n.cpu_millis, n.memory_bytes, n.disk_bytes, n.overcommit_cpu, \
                n.overcommit_memory, \
                CAST(COALESCE(SUM(s.cpu_millis), 0) AS BIGINT) AS reserved_cpu, \
                CAST(COALESCE(SUM(s.memory_bytes), 0) AS BIGINT) AS reserved_memory, \
                CAST(COALESCE(SUM(s.volume_quota), 0) AS BIGINT) AS reserved_disk, \
                CAST(COALESCE(SUM(CASE WHEN s.node_id = n.id THEN 1 ELSE 0 END), 0) AS BIGINT) \
                    AS sites \
         FROM nodes n LEFT JOIN sites s ON s.node_id = n.id \
              OR EXISTS (SELECT 1 FROM site_moves m WHERE m.site_id = s.id \
                         AND m.to_node = n.id AND m.phase = 'copying') \
         GROUP BY n.id, n.name, n.cpu_millis, n.memory_bytes, n.disk_bytes, n.overcommit_cpu, \
                  n.overcommit_memory \
         ORDER BY n.name",
    )
    .fetch_all(ex)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

#[async_trait]
impl FleetStore for SqlStore {
    async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>> {
        fetch_node_usage(&self.pool).await
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let (providers, nodes, members, sites): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM providers), (SELECT COUNT(*) FROM nodes), \
                    (SELECT COUNT(*) FROM members), (SELECT COUNT(*) FROM sites)",
        )
        .fetch_one(&self.pool)
        .await?;
        let by_phase: Vec<(String, i64)> =
            sqlx::query_as("SELECT phase, COUNT(*) FROM sites GROUP BY phase")
                .fetch_all(&self.pool)
                .await?;
        let sites_by_phase = alveole_model::SitePhase::ALL
            .into_iter()
            .map(|phase| {
                let n = by_phase
                    .iter()
                    .find(|(p, _)| p == phase.as_str())
                    .map_or(0, |(_, n)| *n);
                (phase, n)
            })
            .collect();
        Ok(Counts {
            providers,
            nodes,
            members,
            sites,
            sites_by_phase,
        })
    }
}
