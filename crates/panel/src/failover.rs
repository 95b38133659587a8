//! Telling a provider to deliver an address to a node: the side effect of address failover
//! (`service/addresses.rs` decides when), behind a trait, with the default that needs no call
//! and a recording stand-in for tests.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Mutex;

use alveole_model::{Node, NodeId, Provider};
use async_trait::async_trait;

/// Why a provider did not route an address.
#[derive(Debug, thiserror::Error)]
#[error("the provider did not route {address} to {node}: {reason}")]
pub struct RouteRefused {
    pub address: IpAddr,
    pub node: String,
    pub reason: String,
}

/// Telling a provider to deliver an address to a node (a failover-address API call, say).
#[async_trait]
pub trait ProviderRouting: Send + Sync + Debug {
    async fn route(
        &self,
        provider: &Provider,
        address: IpAddr,
        node: &Node,
    ) -> Result<(), RouteRefused>;
}

/// A provider that delivers an address to whichever node answers ARP or neighbour discovery
/// for it on a shared segment: there is nothing to call, the new node's announcement moves
/// the traffic. The default until a provider's API is configured.
#[derive(Debug, Default)]
pub struct SharedSegment;

#[async_trait]
impl ProviderRouting for SharedSegment {
    async fn route(&self, _: &Provider, _: IpAddr, _: &Node) -> Result<(), RouteRefused> {
        Ok(())
    }
}

/// One call a [`RecordingProvider`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteCall {
    pub provider: String,
    pub address: IpAddr,
    pub node: NodeId,
}

/// A provider that records each call and refuses while told to: stands in for a provider's
/// API in tests.
#[derive(Debug, Default)]
pub struct RecordingProvider {
    calls: Mutex<Vec<RouteCall>>,
    refusal: Mutex<Option<String>>,
}

impl RecordingProvider {
    pub fn calls(&self) -> Vec<RouteCall> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refuses every call with `reason` until called with `None`.
    pub fn refuse(&self, reason: Option<&str>) {
        *self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason.map(str::to_owned);
    }
}

#[async_trait]
impl ProviderRouting for RecordingProvider {
    async fn route(
        &self,
        provider: &Provider,
        address: IpAddr,
        node: &Node,
    ) -> Result<(), RouteRefused> {
        let refusal = self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(reason) = refusal {
            return Err(RouteRefused {
                address,
                node: node.name.to_string(),
                reason,
            });
        }
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(RouteCall {
                provider: provider.name.to_string(),
                address,
                node: node.id,
            });
        Ok(())
    }
}
