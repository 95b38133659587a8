//! alveole's one nftables table per node, derived from the node's desired state and never
//! edited by hand: ports 80/443 of a site's dedicated address go to the node's ingress, its
//! exposed ports go by DNAT straight to its container (the client's address unchanged), its
//! egress leaves from its dedicated address, connections to it are bounded by its limit tier,
//! and the host's own services are kept away from the sites' bridge.
//!
//! `plan` derives the table (pure), `render` writes it as nft JSON, `listing` reads it back,
//! `router` keeps the two equal (element changes, whole replacement, drift repair), and `nft`
//! runs the `nft` program. docs/ARCHITECTURE.md explains how the table lives beside Docker's.

pub mod listing;
pub mod nft;
pub mod plan;
pub mod render;
pub mod router;
mod session;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

pub use nft::{Nft, NftCommand, NftError};
pub use plan::{Element, IngressPorts, RoutingPlan, Shape, Slot};
pub use router::{Drift, Outcome, Router, RoutingError};

/// Deletes the table that alveole versions before routing kept (`alveole_isolation_<node>`):
/// the node's table holds its rules now. Absent, it is not an error.
pub fn remove_legacy_table(nft: &impl Nft, naming: &crate::engine::runtime::Naming) {
    let node = naming.bridge().trim_start_matches("alv-").to_owned();
    delete_table(nft, &format!("alveole_isolation_{node}"));
}

/// Deletes the node's table (a retired node, benchmarks, tests). Absent, it is not an error.
pub fn remove_node_table(nft: &impl Nft, naming: &crate::engine::runtime::Naming) {
    let any_ports = IngressPorts {
        http: 80,
        https: None,
    };
    delete_table(nft, &Shape::of(naming, any_ports).table);
}

fn delete_table(nft: &impl Nft, table: &str) {
    if let Err(error) = nft.apply(&render::delete(table).to_string()) {
        tracing::warn!(%error, %table, "could not delete a table of alveole's");
    }
}

/// The node's table as the reconciler sees it: given a plan on every pass, it makes the table
/// match (repairing drift) and says what it did.
#[async_trait]
pub trait Routing: Send + Sync + std::fmt::Debug {
    fn ingress(&self) -> IngressPorts;
    async fn ensure(&self, plan: RoutingPlan) -> Result<Outcome, RoutingError>;
}

/// [`Routing`] through the `nft` program. The router runs on a blocking thread (nft is a
/// process), one pass at a time.
#[derive(Clone, Debug)]
pub struct NftRouting<N> {
    router: Arc<Mutex<Router<N>>>,
    ingress: IngressPorts,
}

impl<N: Nft + 'static> NftRouting<N> {
    pub fn new(nft: N, ingress: IngressPorts) -> Self {
        Self {
            router: Arc::new(Mutex::new(Router::new(nft))),
            ingress,
        }
    }
}

#[async_trait]
impl<N: Nft + std::fmt::Debug + 'static> Routing for NftRouting<N> {
    fn ingress(&self) -> IngressPorts {
        self.ingress
    }

    async fn ensure(&self, plan: RoutingPlan) -> Result<Outcome, RoutingError> {
        let router = self.router.clone();
        tokio::task::spawn_blocking(move || {
            let mut router = router.lock().map_err(|_| RoutingError::Poisoned)?;
            router.ensure(&plan)
        })
        .await
        .map_err(RoutingError::Task)?
    }
}
