//! A container engine in memory that records every changing call and can be told to fail, for
//! tests of the reconciler, the agent and the panel without an engine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use alveole_model::{DatabaseSpec, ImageRef, SiteId, SiteSpec};
use async_trait::async_trait;
use futures::StreamExt;

use crate::engine::runtime::{
    ByteStream, ExecOutcome, MoveRuntime, Naming, Observed, ObservedContainer, ObservedPart,
    PartRole, Runtime, RuntimeError,
};

#[derive(Debug, Default)]
struct State {
    observed: Observed,
    calls: Vec<String>,
    created: u32,
    /// Calls told to fail (`create_container`, `start`, ...), and how many more times.
    failing: BTreeMap<String, u32>,
    paused: BTreeSet<String>,
    images: BTreeSet<String>,
    /// Whether the engine answers at all.
    away: bool,
    /// The volumes' directories it made (under the system's temporary directory).
    volume_dirs: BTreeSet<std::path::PathBuf>,
}

impl Drop for State {
    /// A fake leaves nothing on the machine.
    fn drop(&mut self) {
        for dir in &self.volume_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    /// The changing calls made so far (`create_container <site>`, `stop <id>`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn observed(&self) -> Observed {
        self.lock().observed.clone()
    }

    /// The next `times` calls of `call` (a method's name) fail.
    pub fn fail(&self, call: &str, times: u32) {
        self.lock().failing.insert(call.to_owned(), times);
    }

    /// The engine stops answering (every call fails) until `back`.
    pub fn go_away(&self) {
        self.lock().away = true;
    }

    pub fn back(&self) {
        self.lock().away = false;
    }

    /// Removes a container behind the agent's back (drift).
    pub fn lose_container(&self, site: SiteId) {
        self.lock()
            .observed
            .containers
            .retain(|c| c.site_id != site);
    }

    pub fn is_paused(&self, container: &str) -> bool {
        self.lock().paused.contains(container)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a changing call, or fails it when told to.
    fn call(
        &self,
        name: &str,
        detail: impl std::fmt::Display,
    ) -> Result<MutexGuard<'_, State>, RuntimeError> {
        let mut state = self.lock();
        Self::answer(&mut state, name)?;
        state.calls.push(format!("{name} {detail}"));
        Ok(state)
    }

    fn answer(state: &mut State, name: &str) -> Result<(), RuntimeError> {
        if state.away {
            return Err(RuntimeError::Fake("the fake engine is away".into()));
        }
        if let Some(left) = state.failing.get_mut(name).filter(|left| **left > 0) {
            *left -= 1;
            return Err(RuntimeError::Fake(format!("{name} was told to fail")));
        }
        Ok(())
    }

    fn add_part(state: &mut State, site_id: SiteId, role: PartRole, digest: String) -> String {
        state.created += 1;
        let id = format!("p{}", state.created);
        let pod_endpoint = match role {
            PartRole::Pod => None,
            PartRole::Database(_) => Self::pod_endpoint(state, site_id),
        };
        state.observed.parts.push(ObservedPart {
            id: id.clone(),
            site_id,
            role,
            digest,
            running: false,
            address: None,
            pod_endpoint,
        });
        id
    }

    /// The site's pod's endpoint now, which containers made in the pod remember.
    fn pod_endpoint(state: &State, site: SiteId) -> Option<String> {
        state
            .observed
            .parts
            .iter()
            .find(|p| p.site_id == site && p.role == PartRole::Pod)
            .and_then(|p| p.pod_endpoint.clone())
    }

    /// The site's pod is started again behind the agent's back: a new namespace.
    pub fn restart_pod(&self, site: SiteId) {
        let mut state = self.lock();
        if let Some(pod) = state
            .observed
            .parts
            .iter_mut()
            .find(|p| p.site_id == site && p.role == PartRole::Pod)
        {
            pod.pod_endpoint = Some(format!("endpoint-{}-again", pod.id));
        }
    }

    fn container<'a>(
        state: &'a mut State,
        id: &str,
    ) -> Result<&'a mut ObservedContainer, RuntimeError> {
        state
            .observed
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| RuntimeError::NoSuchContainer(id.to_owned()))
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn observe(&self, _: &Naming) -> Result<Observed, RuntimeError> {
        let mut state = self.lock();
        Self::answer(&mut state, "observe")?;
        Ok(state.observed.clone())
    }

    async fn create_network(&self, _: &Naming) -> Result<(), RuntimeError> {
        self.call("create_network", "")?.observed.network = true;
        Ok(())
    }

    async fn create_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError> {
        let mut state = self.call("create_volume", site)?;
        state.observed.volumes.push(naming.volume(site));
        Ok(())
    }

    async fn create_container(&self, _: &Naming, spec: &SiteSpec) -> Result<String, RuntimeError> {
        let mut state = self.call("create_container", spec.site_id)?;
        state.created += 1;
        let id = format!("c{}", state.created);
        let pod_endpoint = Self::pod_endpoint(&state, spec.site_id);
        state.observed.containers.push(ObservedContainer {
            id: id.clone(),
            site_id: spec.site_id,
            digest: spec.container_digest(),
            running: false,
            address: None,
            pod_endpoint,
        });
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.call("start", id)?;
        let octet = u8::try_from(state.created % 250).unwrap_or(1) + 2;
        let address = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, octet)));
        if let Some(part) = state.observed.parts.iter_mut().find(|p| p.id == id) {
            part.running = true;
            if part.role == PartRole::Pod {
                part.address = address;
                part.pod_endpoint = Some(format!("endpoint-{id}-{octet}"));
            }
            return Ok(());
        }
        let container = Self::container(&mut state, id)?;
        container.running = true;
        container.address = address;
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.call("stop", id)?;
        if let Some(part) = state.observed.parts.iter_mut().find(|p| p.id == id) {
            part.running = false;
            part.address = None;
            return Ok(());
        }
        let container = Self::container(&mut state, id)?;
        container.running = false;
        container.address = None;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.call("remove", id)?;
        state.observed.containers.retain(|c| c.id != id);
        state.observed.parts.retain(|p| p.id != id);
        Ok(())
    }

    async fn create_pod(&self, _: &Naming, spec: &SiteSpec) -> Result<String, RuntimeError> {
        let mut state = self.call("create_pod", spec.site_id)?;
        Ok(Self::add_part(
            &mut state,
            spec.site_id,
            PartRole::Pod,
            spec.pod_digest(),
        ))
    }

    async fn create_database_volume(
        &self,
        naming: &Naming,
        site: SiteId,
        database: &str,
    ) -> Result<(), RuntimeError> {
        let mut state = self.call("create_database_volume", format!("{site} {database}"))?;
        state
            .observed
            .volumes
            .push(naming.database_volume(site, database));
        Ok(())
    }

    async fn create_database(
        &self,
        _: &Naming,
        site: SiteId,
        db: &DatabaseSpec,
    ) -> Result<String, RuntimeError> {
        let mut state = self.call("create_database", format!("{site} {}", db.name))?;
        Ok(Self::add_part(
            &mut state,
            site,
            PartRole::Database(db.name.clone()),
            db.container_digest(),
        ))
    }

    /// Records the command's first word after `-c` (or its first); exit code 0.
    async fn exec(
        &self,
        container: &str,
        _: &[String],
        _: &[String],
    ) -> Result<ExecOutcome, RuntimeError> {
        drop(self.call("exec", container)?);
        Ok(ExecOutcome {
            exit_code: 0,
            stderr_tail: String::new(),
        })
    }

    async fn remove_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError> {
        let name = naming.volume(site);
        self.call("remove_volume", site)?
            .observed
            .volumes
            .retain(|v| *v != name);
        Ok(())
    }

    async fn address(&self, _: &Naming, id: &str) -> Result<Option<IpAddr>, RuntimeError> {
        let mut state = self.lock();
        Self::answer(&mut state, "address")?;
        Ok(Self::container(&mut state, id)?.address)
    }

    async fn ready(&self, _: SocketAddr) -> Result<(), RuntimeError> {
        Self::answer(&mut self.lock(), "ready")
    }

    async fn volume_usage(
        &self,
        naming: &Naming,
    ) -> Result<BTreeMap<SiteId, crate::engine::runtime::VolumeUsage>, RuntimeError> {
        let mut state = self.lock();
        Self::answer(&mut state, "volume_usage")?;
        // Every volume of a site holds one page.
        let mut usage: BTreeMap<SiteId, crate::engine::runtime::VolumeUsage> = BTreeMap::new();
        for c in &state.observed.containers {
            if state.observed.volumes.contains(&naming.volume(c.site_id)) {
                usage.entry(c.site_id).or_default().site = Some(4096);
            }
        }
        for part in &state.observed.parts {
            if let PartRole::Database(name) = &part.role
                && state
                    .observed
                    .volumes
                    .contains(&naming.database_volume(part.site_id, name))
            {
                usage
                    .entry(part.site_id)
                    .or_default()
                    .databases
                    .insert(name.clone(), 4096);
            }
        }
        Ok(usage)
    }

    fn watch(
        &self,
        _: &Naming,
        _: std::sync::Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    fn engine_version(&self) -> Option<String> {
        Some("fake engine".into())
    }
}

#[async_trait]
impl MoveRuntime for FakeRuntime {
    async fn pause(&self, container: &str) -> Result<(), RuntimeError> {
        self.call("pause", container)?
            .paused
            .insert(container.to_owned());
        Ok(())
    }

    async fn unpause(&self, container: &str) -> Result<(), RuntimeError> {
        self.call("unpause", container)?.paused.remove(container);
        Ok(())
    }

    /// A directory of its own under the system's temporary directory.
    /// Writes the command's words to `output`, one per line; exit code 3 when the command
    /// is `false`.
    async fn exec_from_file(
        &self,
        container: &str,
        _: &[String],
        _: &[String],
        _: &std::path::Path,
    ) -> Result<crate::engine::runtime::ExecOutcome, RuntimeError> {
        drop(self.call("exec_from_file", container)?);
        Ok(crate::engine::runtime::ExecOutcome {
            exit_code: 0,
            stderr_tail: String::new(),
        })
    }

    async fn exec_to_file(
        &self,
        container: &str,
        command: &[String],
        _: &[String],
        output: &std::path::Path,
    ) -> Result<crate::engine::runtime::ExecOutcome, RuntimeError> {
        drop(self.call("exec", container)?);
        std::fs::write(output, command.join("\n"))
            .map_err(|e| RuntimeError::Engine(Box::new(e)))?;
        let failed = command.first().is_some_and(|c| c == "false");
        Ok(crate::engine::runtime::ExecOutcome {
            exit_code: if failed { 3 } else { 0 },
            stderr_tail: if failed {
                "false failed".into()
            } else {
                String::new()
            },
        })
    }

    async fn volume_path(
        &self,
        naming: &Naming,
        site: SiteId,
    ) -> Result<std::path::PathBuf, RuntimeError> {
        let mut state = self.lock();
        Self::answer(&mut state, "volume_path")?;
        let path = std::env::temp_dir().join(naming.volume(site));
        std::fs::create_dir_all(&path).map_err(|e| RuntimeError::Engine(Box::new(e)))?;
        state.volume_dirs.insert(path.clone());
        Ok(path)
    }

    async fn has_image(&self, image: &ImageRef) -> Result<bool, RuntimeError> {
        let mut state = self.lock();
        Self::answer(&mut state, "has_image")?;
        Ok(state.images.contains(image.as_str()))
    }

    /// The archive of a fake image is its name.
    fn save_image(&self, image: &ImageRef) -> ByteStream<RuntimeError> {
        let known = self.lock().images.contains(image.as_str());
        let answer = if known {
            Ok(bytes::Bytes::from(image.as_str().to_owned()))
        } else {
            Err(RuntimeError::ImageMissing(image.to_string()))
        };
        Box::pin(futures::stream::once(async move { answer }))
    }

    async fn load_image(
        &self,
        mut archive: ByteStream<std::io::Error>,
    ) -> Result<(), RuntimeError> {
        let mut name = Vec::new();
        while let Some(chunk) = archive.next().await {
            name.extend_from_slice(&chunk.map_err(|e| RuntimeError::Engine(Box::new(e)))?);
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        self.call("load_image", &name)?.images.insert(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reconcile::Reconciler;
    use alveole_model::{DesiredState, Hostname, Limits, NodeId, Volume, Wildcard};

    fn desired(naming: &Naming) -> DesiredState {
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
            backup: None,
            tls: None,
            admission: None,
            databases: vec![],
            databases_stay_up: false,
        };
        DesiredState {
            node_id: naming.node_id,
            generation: 1,
            sites: vec![spec],
            purge_volumes: vec![],
            addresses: vec![],
            input_filter: None,
            moves_out: vec![],
            moves_in: vec![],
            restores: vec![],
            drills: vec![],
            acme_challenges: vec![],
            vault: None,
        }
    }

    #[tokio::test]
    async fn a_second_pass_with_nothing_changed_changes_nothing() {
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let desired = desired(&naming);
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

    #[tokio::test]
    async fn a_call_told_to_fail_fails_that_many_times_and_an_absent_engine_answers_nothing() {
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let fake = FakeRuntime::default();
        fake.fail("create_network", 1);
        assert!(fake.create_network(&naming).await.is_err());
        fake.create_network(&naming).await.unwrap();
        assert_eq!(fake.calls(), ["create_network "]);
        fake.go_away();
        assert!(fake.observe(&naming).await.is_err());
        fake.back();
        assert!(fake.observe(&naming).await.unwrap().network);
    }

    #[tokio::test]
    async fn a_sites_pod_and_database_come_before_it_and_a_second_pass_changes_nothing() {
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let mut desired = desired(&naming);
        let site = desired.sites[0].site_id;
        desired.sites[0].databases = vec![DatabaseSpec {
            name: "app".into(),
            engine: alveole_model::DatabaseEngine::Postgresql,
            image: ImageRef::parse("alveole-test/postgresql:15").unwrap(),
            limits: Default::default(),
            quota_bytes: 1 << 30,
            password: alveole_model::backup::WireSecret("p".into()),
            admin_password: alveole_model::backup::WireSecret("a".into()),
        }];
        let reconciler = Reconciler::new(FakeRuntime::default(), naming);
        let first = reconciler.reconcile(&desired).await.unwrap();
        assert!(first.failures.is_empty(), "{:?}", first.failures);
        let calls = reconciler.runtime().calls();
        let position = |call: &str| calls.iter().position(|c| c.starts_with(call)).unwrap();
        assert!(position("create_pod") < position("create_database "));
        assert!(position("create_database ") < position("create_container"));
        assert!(
            position("exec") < position("create_container"),
            "the server answers and has the site's password before the site starts: {calls:?}"
        );
        assert!(first.addresses.contains_key(&site));
        let second = reconciler.reconcile(&desired).await.unwrap();
        assert_eq!(second.actions, []);
        // The pod started again by hand: the database and the site join its new namespace.
        reconciler.runtime().restart_pod(site);
        let rejoined = reconciler.reconcile(&desired).await.unwrap();
        assert!(
            rejoined
                .actions
                .iter()
                .any(|a| matches!(a, crate::engine::runtime::Action::ReplaceDatabase { .. }))
                && rejoined
                    .actions
                    .iter()
                    .any(|a| matches!(a, crate::engine::runtime::Action::Replace { .. })),
            "{:?}",
            rejoined.actions
        );
        assert_eq!(reconciler.reconcile(&desired).await.unwrap().actions, []);
        let usage = reconciler
            .runtime()
            .volume_usage(reconciler.naming())
            .await
            .unwrap();
        assert_eq!(usage[&site].databases.get("app"), Some(&4096));
    }
}
