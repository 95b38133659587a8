//! The runtime on a real Docker engine, through bollard. Every object carries alveole's labels
//! and every listing filters on this node's label. Containers are hardened by default: all
//! capabilities dropped, no-new-privileges, memory, CPU and process limits, no engine socket,
//! one per-node bridge with inter-container traffic disabled.

use std::collections::HashMap;

use alveole_model::{DatabaseSpec, SiteId, SiteSpec};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, NetworkCreateRequest,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures::StreamExt;

use crate::engine::runtime::{
    ExecOutcome, MoveRuntime, Naming, Observed, ObservedContainer, ObservedPart, PartRole, Runtime,
    RuntimeError, labels,
};

/// The oldest engine API alveole drives: Docker Engine 20.10 (API 1.41), Debian 12's engine.
pub const MIN_API_VERSION: (u32, u32) = (1, 41);

#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    /// `Docker Engine 20.10.24 (API 1.41)`.
    version: String,
}

pub(super) fn engine(error: BollardError) -> RuntimeError {
    match error {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } if message.contains("No such image") => RuntimeError::ImageMissing(message),
        other => RuntimeError::Engine(Box::new(other)),
    }
}

fn parse_api_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

impl DockerRuntime {
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// Connects to the local engine (DOCKER_HOST or the default socket) and checks its version.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(engine)?
            .negotiate_version()
            .await
            .map_err(engine)?;
        let version = docker.version().await.map_err(engine)?;
        let api = version
            .api_version
            .as_deref()
            .and_then(parse_api_version)
            .unwrap_or((0, 0));
        if api < MIN_API_VERSION {
            return Err(RuntimeError::EngineTooOld {
                found: format!("{}.{}", api.0, api.1),
                needed: format!("{}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1),
            });
        }
        let version = format!(
            "Docker Engine {} (API {})",
            version.version.as_deref().unwrap_or("?"),
            version.api_version.as_deref().unwrap_or("?")
        );
        Ok(Self { docker, version })
    }

    /// The volumes labelled for this node.
    async fn node_volumes(
        &self,
        naming: &Naming,
    ) -> Result<Vec<bollard::models::Volume>, RuntimeError> {
        let options = ListVolumesOptions {
            filters: Some(Self::node_filter(naming)),
        };
        Ok(self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(engine)?
            .volumes
            .unwrap_or_default())
    }

    fn node_filter(naming: &Naming) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", labels::NODE, naming.node_id)],
        )])
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn ready(&self, address: std::net::SocketAddr) -> Result<(), RuntimeError> {
        crate::engine::runtime::wait_until_accepting(address).await
    }

    fn engine_version(&self) -> Option<String> {
        Some(self.version.clone())
    }

    async fn observe(&self, naming: &Naming) -> Result<Observed, RuntimeError> {
        let network = match self.docker.inspect_network(&naming.network(), None).await {
            Ok(_) => true,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => false,
            Err(other) => return Err(engine(other)),
        };
        let volumes = self
            .node_volumes(naming)
            .await?
            .into_iter()
            .map(|v| v.name)
            .collect();
        let listed = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(Self::node_filter(naming)),
                ..Default::default()
            }))
            .await
            .map_err(engine)?;
        let mut parts = Vec::new();
        let mut containers: Vec<ObservedContainer> = listed
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let site_id: SiteId = labels.get(labels::SITE)?.parse().ok()?;
                // A paused container (a move's freeze) is running, frozen on purpose: not drift
                // to repair.
                let running = matches!(
                    c.state,
                    Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::PAUSED)
                );
                let endpoint = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|mut n| n.remove(&naming.network()))
                    .filter(|_| running);
                let address = endpoint
                    .as_ref()
                    .and_then(|e| e.ip_address.as_ref())
                    .and_then(|ip| ip.parse().ok());
                // A pod's own endpoint; the one a container in a pod was made in.
                let pod_endpoint = match endpoint.and_then(|e| e.endpoint_id) {
                    Some(own) if !own.is_empty() => Some(own),
                    _ => labels.get(labels::POD_ENDPOINT).cloned(),
                };
                let digest = labels.get(labels::DIGEST).cloned().unwrap_or_default();
                let role = match labels.get(labels::ROLE).map(String::as_str) {
                    None => None,
                    Some("pod") => Some(PartRole::Pod),
                    Some(_) => Some(PartRole::Database(
                        labels.get(labels::DATABASE).cloned().unwrap_or_default(),
                    )),
                };
                if let Some(role) = role {
                    parts.push(ObservedPart {
                        id: c.id?,
                        site_id,
                        role,
                        digest,
                        running,
                        address,
                        pod_endpoint,
                    });
                    return None;
                }
                Some(ObservedContainer {
                    id: c.id?,
                    site_id,
                    digest,
                    running,
                    address,
                    pod_endpoint,
                })
            })
            .collect();
        // A site in a pod answers at its pod's address.
        for container in containers.iter_mut().filter(|c| c.running) {
            if container.address.is_none() {
                container.address = parts
                    .iter()
                    .find(|p| p.site_id == container.site_id && p.role == PartRole::Pod)
                    .and_then(|p| p.address);
            }
        }
        Ok(Observed {
            network,
            volumes,
            containers,
            parts,
        })
    }

    async fn create_network(&self, naming: &Naming) -> Result<(), RuntimeError> {
        let request = NetworkCreateRequest {
            name: naming.network(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([
                (
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "false".to_owned(),
                ),
                ("com.docker.network.bridge.name".to_owned(), naming.bridge()),
            ])),
            labels: Some(naming.labels(None).into_iter().collect()),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(engine)?;
        Ok(())
    }

    async fn create_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError> {
        let request = VolumeCreateRequest {
            name: Some(naming.volume(site)),
            labels: Some(naming.labels(Some(site)).into_iter().collect()),
            ..Default::default()
        };
        self.docker.create_volume(request).await.map_err(engine)?;
        Ok(())
    }

    async fn create_container(
        &self,
        naming: &Naming,
        spec: &SiteSpec,
    ) -> Result<String, RuntimeError> {
        let mut container_labels: HashMap<String, String> =
            naming.labels(Some(spec.site_id)).into_iter().collect();
        container_labels.insert(labels::DIGEST.to_owned(), spec.container_digest());
        // Exposed ports are reached through the node's table (DNAT to the container). They are
        // also published, on loopback and a port of Docker's choosing, only so that Docker's
        // own filter, which drops forwarded traffic to unpublished ports, lets them through:
        // alveole never writes in Docker's tables (docs/ARCHITECTURE.md, "Routing").
        // A site with databases joins its pod, which publishes them instead.
        let in_pod = !spec.databases.is_empty();
        let (published, port_bindings) = if in_pod {
            (Vec::new(), None)
        } else {
            super::docker_pods::published(spec)
        };
        let network_mode = if in_pod {
            if let Some(endpoint) = self.pod_endpoint(naming, spec.site_id).await? {
                container_labels.insert(labels::POD_ENDPOINT.to_owned(), endpoint);
            }
            format!("container:{}", naming.pod(spec.site_id))
        } else {
            naming.network()
        };
        let host_config = HostConfig {
            port_bindings,
            memory: i64::try_from(spec.limits.memory_bytes).ok(),
            nano_cpus: Some(i64::from(spec.limits.cpu_millis) * 1_000_000),
            pids_limit: Some(i64::from(spec.limits.pids)),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            binds: Some(vec![format!(
                "{}:{}",
                naming.volume(spec.site_id),
                spec.volume.mount_path
            )]),
            network_mode: Some(network_mode),
            readonly_rootfs: Some(spec.security.read_only_root),
            // A read-only image still needs somewhere to write its temporary files.
            tmpfs: spec.security.read_only_root.then(|| {
                HashMap::from([(
                    "/tmp".to_owned(),
                    "rw,nosuid,nodev,size=64m,mode=1777".to_owned(),
                )])
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            user: spec.security.user.clone(),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(
                spec.env
                    .iter()
                    .map(|v| format!("{}={}", v.name, v.value))
                    .collect(),
            ),
            labels: Some(container_labels),
            exposed_ports: (!published.is_empty()).then_some(published),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(naming.container(spec.site_id)),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(engine)?;
        Ok(created.id)
    }

    async fn start(&self, container: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(engine)
    }

    async fn stop(&self, container: &str) -> Result<(), RuntimeError> {
        self.docker
            .stop_container(
                container,
                Some(StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                }),
            )
            .await
            .map_err(engine)
    }

    /// Walks each volume's directory on this host: engines before API 1.44 report no sizes the
    /// client library can read, and the agent runs beside the engine anyway.
    async fn volume_usage(
        &self,
        naming: &Naming,
    ) -> Result<std::collections::BTreeMap<SiteId, crate::engine::runtime::VolumeUsage>, RuntimeError>
    {
        let volumes = self.node_volumes(naming).await?;
        let targets: Vec<(SiteId, Option<String>, std::path::PathBuf)> = volumes
            .into_iter()
            .filter_map(|v| {
                Some((
                    v.labels.get(labels::SITE)?.parse().ok()?,
                    v.labels.get(labels::DATABASE).cloned(),
                    v.mountpoint.into(),
                ))
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut usage = std::collections::BTreeMap::new();
            for (site, database, path) in targets {
                let site: &mut crate::engine::runtime::VolumeUsage = usage.entry(site).or_default();
                let bytes = disk_usage(&path);
                match database {
                    Some(name) => {
                        site.databases.insert(name, bytes);
                    }
                    None => site.site = Some(bytes),
                }
            }
            usage
        })
        .await
        .map_err(RuntimeError::Task)
    }

    fn watch(
        &self,
        naming: &Naming,
        poke: std::sync::Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let docker = self.docker.clone();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![format!("{}={}", labels::NODE, naming.node_id)],
            ),
        ]);
        Some(tokio::spawn(async move {
            loop {
                let options = EventsOptions {
                    filters: Some(filters.clone()),
                    ..Default::default()
                };
                let mut events = std::pin::pin!(docker.events(Some(options)));
                // Whatever happened while not listening (start, reconnection) deserves a pass.
                poke.notify_one();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(_) => poke.notify_one(),
                        Err(error) => {
                            tracing::debug!(%error, "engine event stream ended");
                            break;
                        }
                    }
                }
                // The engine restarted or the stream broke: listen again shortly.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }))
    }

    /// Removes the site's volume and its databases' ones.
    async fn remove_volume(&self, naming: &Naming, site: SiteId) -> Result<(), RuntimeError> {
        let mut names = vec![naming.volume(site)];
        names.extend(
            self.node_volumes(naming)
                .await?
                .into_iter()
                .filter(|v| {
                    v.labels.get(labels::SITE) == Some(&site.to_string())
                        && v.labels.contains_key(labels::DATABASE)
                })
                .map(|v| v.name),
        );
        for name in names {
            match self
                .docker
                .remove_volume(
                    &name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                other => other.map_err(engine)?,
            }
        }
        Ok(())
    }

    async fn create_pod(&self, naming: &Naming, spec: &SiteSpec) -> Result<String, RuntimeError> {
        self.make_pod(naming, spec).await
    }

    async fn create_database_volume(
        &self,
        naming: &Naming,
        site: SiteId,
        database: &str,
    ) -> Result<(), RuntimeError> {
        self.make_database_volume(naming, site, database).await
    }

    async fn create_database(
        &self,
        naming: &Naming,
        site: SiteId,
        database: &DatabaseSpec,
    ) -> Result<String, RuntimeError> {
        self.make_database(naming, site, database).await
    }

    async fn exec(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
    ) -> Result<ExecOutcome, RuntimeError> {
        self.exec_env(container, command, env).await
    }

    async fn address(
        &self,
        naming: &Naming,
        container: &str,
    ) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        let mut inspected = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(engine)?;
        // A container in a pod has its pod's address.
        let holder = inspected
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            .and_then(|mode| mode.strip_prefix("container:"))
            .map(str::to_owned);
        if let Some(holder) = holder {
            inspected = self
                .docker
                .inspect_container(&holder, None)
                .await
                .map_err(engine)?;
        }
        Ok(inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&naming.network()))
            .and_then(|e| e.ip_address)
            .and_then(|ip| ip.parse().ok()))
    }

    async fn remove(&self, container: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(container, Some(options)).await {
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            other => other.map_err(engine),
        }
    }
}

#[async_trait]
impl MoveRuntime for DockerRuntime {
    async fn pause(&self, container: &str) -> Result<(), RuntimeError> {
        self.docker.pause_container(container).await.map_err(engine)
    }

    async fn unpause(&self, container: &str) -> Result<(), RuntimeError> {
        self.docker
            .unpause_container(container)
            .await
            .map_err(engine)
    }

    async fn volume_path(
        &self,
        naming: &Naming,
        site: SiteId,
    ) -> Result<std::path::PathBuf, RuntimeError> {
        // Made with the site's labels when missing, as the reconciler would make it.
        let name = naming.volume(site);
        let inspected = match self.docker.inspect_volume(&name).await {
            Ok(volume) => volume,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.create_volume(naming, site).await?;
                self.docker.inspect_volume(&name).await.map_err(engine)?
            }
            Err(other) => return Err(engine(other)),
        };
        Ok(inspected.mountpoint.into())
    }

    async fn has_image(&self, image: &alveole_model::ImageRef) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(&image.to_string()).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(other) => Err(engine(other)),
        }
    }

    /// The image as `docker save` writes it (a tar archive of its layers and configuration),
    /// streamed: what one agent ships to another when there is no registry.
    fn save_image(
        &self,
        image: &alveole_model::ImageRef,
    ) -> crate::engine::runtime::ByteStream<RuntimeError> {
        Box::pin(
            self.docker
                .export_image(&image.to_string())
                .map(|chunk| chunk.map_err(engine)),
        )
    }

    /// Loads an archive made by `save_image` (`docker load`).
    async fn load_image(
        &self,
        archive: crate::engine::runtime::ByteStream<std::io::Error>,
    ) -> Result<(), RuntimeError> {
        let options = bollard::query_parameters::ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        let mut progress = self.docker.import_image_stream(options, archive, None);
        while let Some(step) = progress.next().await {
            let step = step.map_err(engine)?;
            if let Some(error) = step.error_detail.and_then(|detail| detail.message) {
                return Err(RuntimeError::ImageLoad(error));
            }
        }
        Ok(())
    }

    async fn exec_to_file(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        output: &std::path::Path,
    ) -> Result<crate::engine::runtime::ExecOutcome, RuntimeError> {
        self.run_exec(container, command, env, output).await
    }

    async fn exec_from_file(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        input: &std::path::Path,
    ) -> Result<crate::engine::runtime::ExecOutcome, RuntimeError> {
        self.exec_with_input(container, command, env, input).await
    }
}

impl DockerRuntime {
    async fn run_exec(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        output: &std::path::Path,
    ) -> Result<crate::engine::runtime::ExecOutcome, RuntimeError> {
        use bollard::exec::StartExecResults;
        use tokio::io::AsyncWriteExt;
        let exec = self.new_exec(container, command, env, false).await?;
        let io = |e: std::io::Error| RuntimeError::Engine(Box::new(e));
        let mut file = tokio::fs::File::create(output).await.map_err(io)?;
        let mut stderr: Vec<u8> = Vec::new();
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&exec, None).await.map_err(engine)?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(engine)? {
                    bollard::container::LogOutput::StdOut { message } => {
                        file.write_all(&message).await.map_err(io)?;
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        super::docker_pods::keep_tail(&mut stderr, &message);
                    }
                    _ => {}
                }
            }
        }
        file.sync_all().await.map_err(io)?;
        self.exec_outcome(&exec, &stderr).await
    }
}

/// Bytes allocated under `path` (like `du`), not following symbolic links.
fn disk_usage(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            total += metadata.blocks() * 512;
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_versions_compare_numerically() {
        assert_eq!(super::parse_api_version("1.41"), Some((1, 41)));
        assert!(super::parse_api_version("1.9").unwrap() < super::MIN_API_VERSION);
        assert!(super::parse_api_version("1.50").unwrap() > super::MIN_API_VERSION);
    }
}
