//! A runtime in memory that records every changing call, for tests of the reconciler and of
//! the panel without an engine.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use alveole_model::{SiteId, SiteSpec};
use async_trait::async_trait;

use crate::engine::runtime::{Naming, Observed, ObservedContainer, Runtime, RuntimeError};

#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<(Observed, Vec<String>, u32)>,
}

impl FakeRuntime {
    /// The changing calls made so far (`create_container <site>`, `stop <id>`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.lock().1.clone()
    }

    pub fn observed(&self) -> Observed {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Observed, Vec<String>, u32)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, call: String) {
        self.lock().1.push(call);
    }

    fn with_container(
        &self,
        id: &str,
        f: impl FnOnce(&mut ObservedContainer),
    ) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        let container = state
            .0
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| RuntimeError::Engine(format!("no container {id}")))?;
        f(container);
        Ok(())
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn observe(&self, _: &Naming) -> Result<Observed, RuntimeError> {
        Ok(self.observed())
    }

    async fn create_network(&self, _: &Naming) -> Result<(), RuntimeError> {
        self.record("create_network".into());
        self.lock().0.network = true;
        Ok(())
    }

    async fn create_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError> {
        self.record(format!("create_volume {site}"));
        self.lock().0.volumes.push(naming.volume(site));
        Ok(())
    }

    async fn create_container(&self, _: &Naming, spec: &SiteSpec) -> Result<String, RuntimeError> {
        self.record(format!("create_container {}", spec.site_id));
        let mut state = self.lock();
        state.2 += 1;
        let id = format!("c{}", state.2);
        state.0.containers.push(ObservedContainer {
            id: id.clone(),
            site_id: spec.site_id,
            digest: spec.container_digest(),
            running: false,
            address: None,
        });
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.record(format!("start {id}"));
        let octet = u8::try_from(self.lock().2 % 250).unwrap_or(1) + 2;
        self.with_container(id, |c| {
            c.running = true;
            c.address = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, octet)));
        })
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        self.record(format!("stop {id}"));
        self.with_container(id, |c| {
            c.running = false;
            c.address = None;
        })
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.record(format!("remove {id}"));
        self.lock().0.containers.retain(|c| c.id != id);
        Ok(())
    }

    async fn remove_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError> {
        self.record(format!("remove_volume {site}"));
        let name = naming.volume(site);
        self.lock().0.volumes.retain(|v| *v != name);
        Ok(())
    }

    async fn ready(&self, _: std::net::SocketAddr) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn address(&self, _: &Naming, id: &str) -> Result<Option<IpAddr>, RuntimeError> {
        Ok(self
            .lock()
            .0
            .containers
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reconcile::Reconciler;
    use alveole_model::{DesiredState, Hostname, ImageRef, Limits, NodeId, Volume, Wildcard};

    #[tokio::test]
    async fn a_second_pass_with_nothing_changed_changes_nothing() {
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let spec = SiteSpec {
            site_id: SiteId::generate(),
            hostnames: vec![Hostname::parse("a.example.org", Wildcard::Refused).unwrap()],
            image: ImageRef::parse("alveole-test/busybox:1").unwrap(),
            command: vec![],
            env: vec![],
            http_port: 8080,
            volume: Volume::default(),
            limits: Limits::default(),
            security: Default::default(),
            run: true,
            dedicated_addresses: vec![],
            exposed_ports: vec![],
            limit_tier: Default::default(),
        };
        let desired = DesiredState {
            node_id: naming.node_id,
            generation: 1,
            sites: vec![spec],
            purge_volumes: vec![],
            addresses: vec![],
            input_filter: None,
            moves_out: vec![],
            moves_in: vec![],
        };
        let reconciler = Reconciler::new(FakeRuntime::default(), naming);
        let first = reconciler.reconcile(&desired).await.unwrap();
        assert_eq!(first.actions.len(), 3);
        assert_eq!(first.addresses.len(), 1, "the running site has an address");
        let calls = reconciler.runtime().calls().len();
        let second = reconciler.reconcile(&desired).await.unwrap();
        assert!(second.actions.is_empty());
        assert_eq!(
            reconciler.runtime().calls().len(),
            calls,
            "zero changing calls"
        );
    }
}
