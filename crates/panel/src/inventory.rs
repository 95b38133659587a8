//! The platform inventory an outside audit of the platform needs: providers and their
//! contracts, nodes with their alveole, engine and operating system (packages included, as
//! their agents report them), sites per node, address pools and allocations, and the licences of
//! alveole's own components, so the co-op can show that its platform runs free software.

use std::collections::BTreeMap;

use alveole_model::{NodeInventory, Provider};
use alveole_store::{NodeFilter, ProviderFilter, Store, StoreResult};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The licences of what the binary is built from, checked against the dependency tree by
/// `crates/panel/tests/licenses.rs`.
const LICENSES: &str = include_str!("../licenses.json");

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Component {
    pub name: String,
    pub version: String,
    /// An SPDX expression.
    pub license: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Inventory {
    pub generated_at: DateTime<Utc>,
    pub alveole_version: String,
    pub providers: Vec<ProviderEntry>,
    /// The address pools at each provider, with their use.
    pub address_pools: Vec<crate::service::addresses::PoolView>,
    /// Every allocated address: its node and dedicated site.
    pub address_allocations: Vec<alveole_model::IpAllocation>,
    pub components: Components,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProviderEntry {
    pub provider: Provider,
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeEntry {
    pub id: alveole_model::NodeId,
    pub name: String,
    pub public_addresses: Vec<std::net::IpAddr>,
    pub sites: i64,
    /// The alveole version its agent last reported.
    pub agent_version: Option<String>,
    /// What its agent last reported of the node's software, and when.
    pub inventory: Option<NodeInventory>,
    pub inventory_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Components {
    pub count: usize,
    /// SPDX expression → number of components.
    pub per_license: BTreeMap<String, usize>,
    pub list: Vec<Component>,
}

pub fn components() -> Components {
    let list: Vec<Component> = serde_json::from_str(LICENSES).unwrap_or_default();
    let mut per_license = BTreeMap::new();
    for component in &list {
        *per_license.entry(component.license.clone()).or_default() += 1;
    }
    Components {
        count: list.len(),
        per_license,
        list,
    }
}

/// Everything, from the store and the build.
pub async fn collect(store: &dyn Store, now: DateTime<Utc>) -> StoreResult<Inventory> {
    let providers = crate::api::every(|page| {
        Box::pin(async move {
            store
                .providers()
                .list(&ProviderFilter::default(), &page)
                .await
        })
    })
    .await?;
    let nodes = crate::api::every(|page| {
        Box::pin(async move { store.nodes().list(&NodeFilter::default(), &page).await })
    })
    .await?;
    let sites: BTreeMap<String, i64> = store
        .node_usage()
        .await?
        .into_iter()
        .map(|u| (u.name.to_string(), u.sites))
        .collect();
    let statuses = store.node_statuses().await?;
    let inventories = store.node_inventories().await?;
    let entries = providers
        .into_iter()
        .map(|provider| {
            let nodes = nodes
                .iter()
                .filter(|n| n.provider_id == provider.id)
                .map(|node| {
                    let status = statuses.iter().find(|s| s.node_id == node.id);
                    let inventory = inventories.iter().find(|(id, _, _)| *id == node.id);
                    NodeEntry {
                        id: node.id,
                        name: node.name.to_string(),
                        public_addresses: node.public_addresses.clone(),
                        sites: sites.get(node.name.as_str()).copied().unwrap_or(0),
                        agent_version: status.map(|s| s.report.agent_version.clone()),
                        inventory: inventory.map(|(_, _, i)| i.clone()),
                        inventory_at: inventory.map(|(_, at, _)| *at),
                    }
                })
                .collect();
            ProviderEntry { provider, nodes }
        })
        .collect();
    Ok(Inventory {
        generated_at: now,
        alveole_version: env!("CARGO_PKG_VERSION").to_owned(),
        providers: entries,
        address_pools: store
            .ip_pools()
            .await?
            .into_iter()
            .map(|(pool, used)| crate::service::addresses::PoolView::of(pool, used))
            .collect(),
        address_allocations: store.ip_allocations().await?,
        components: components(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_build_s_components_and_licences_are_known() {
        let components = super::components();
        assert!(components.count > 100);
        assert!(
            components
                .list
                .iter()
                .any(|c| c.name == "alveole" && c.license == "AGPL-3.0-or-later")
        );
        assert_eq!(
            components.per_license.values().sum::<usize>(),
            components.count
        );
    }
}
