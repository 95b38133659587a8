//! A site's pod and databases on the real engine. The pod is a small container that holds the
//! site's network namespace and its address on the node's bridge (whose inter-container
//! traffic stays off); the site's container and its databases join that namespace, so the
//! site reaches its databases on 127.0.0.1 and nothing else can. Replacing the site's container
//! leaves its databases running. (decision 0038)

use std::collections::HashMap;

use alveole_model::{DatabaseSpec, SiteId, SiteSpec};
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptions;
use futures::StreamExt;

use super::docker::{DockerRuntime, engine};
use super::runtime::{ExecOutcome, Naming, RuntimeError, labels};

/// The user a pod runs as: nobody (it only sleeps).
const POD_USER: &str = "65534:65534";

fn restart_unless_stopped() -> Option<RestartPolicy> {
    Some(RestartPolicy {
        name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
        maximum_retry_count: None,
    })
}

/// How the engine binds published ports: each port's bindings.
pub(super) type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// Every port the site exposes, published on loopback only so that Docker's own filter lets
/// the node's table forward to them (see `create_container`).
pub(super) fn published(spec: &SiteSpec) -> (Vec<String>, Option<PortBindings>) {
    let published: Vec<String> = spec
        .published_ports()
        .into_iter()
        .map(|(protocol, port)| format!("{port}/{protocol}"))
        .collect();
    let bindings = (!published.is_empty()).then(|| {
        published
            .iter()
            .map(|key| {
                let loopback = PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                };
                (key.clone(), Some(vec![loopback]))
            })
            .collect()
    });
    (published, bindings)
}

impl DockerRuntime {
    pub(super) async fn make_pod(
        &self,
        naming: &Naming,
        spec: &SiteSpec,
    ) -> Result<String, RuntimeError> {
        // Any image with `sleep` serves: the first database's (already on the node).
        let Some(first) = spec.databases.first() else {
            return Err(RuntimeError::NoPodImage);
        };
        let mut pod_labels: HashMap<String, String> =
            naming.labels(Some(spec.site_id)).into_iter().collect();
        pod_labels.insert(labels::ROLE.into(), "pod".into());
        pod_labels.insert(labels::DIGEST.into(), spec.pod_digest());
        let (exposed, port_bindings) = published(spec);
        let host_config = HostConfig {
            port_bindings,
            memory: Some(16 << 20),
            nano_cpus: Some(50_000_000),
            pids_limit: Some(8),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            network_mode: Some(naming.network()),
            readonly_rootfs: Some(true),
            restart_policy: restart_unless_stopped(),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(first.image.to_string()),
            user: Some(POD_USER.into()),
            entrypoint: Some(vec!["sleep".into()]),
            cmd: Some(vec!["infinity".into()]),
            labels: Some(pod_labels),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(host_config),
            ..Default::default()
        };
        self.create_named(naming.pod(spec.site_id), body).await
    }

    /// The site's pod's endpoint on the node's network now (`None` while it is stopped).
    pub(super) async fn pod_endpoint(
        &self,
        naming: &Naming,
        site: SiteId,
    ) -> Result<Option<String>, RuntimeError> {
        let inspected = self
            .client()
            .inspect_container(&naming.pod(site), None)
            .await
            .map_err(engine)?;
        Ok(inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&naming.network()))
            .and_then(|e| e.endpoint_id)
            .filter(|id| !id.is_empty()))
    }

    pub(super) async fn make_database_volume(
        &self,
        naming: &Naming,
        site: SiteId,
        database: &str,
    ) -> Result<(), RuntimeError> {
        let mut volume_labels: HashMap<String, String> =
            naming.labels(Some(site)).into_iter().collect();
        volume_labels.insert(labels::DATABASE.into(), database.into());
        let request = VolumeCreateRequest {
            name: Some(naming.database_volume(site, database)),
            labels: Some(volume_labels),
            ..Default::default()
        };
        self.client().create_volume(request).await.map_err(engine)?;
        Ok(())
    }

    pub(super) async fn make_database(
        &self,
        naming: &Naming,
        site: SiteId,
        db: &DatabaseSpec,
    ) -> Result<String, RuntimeError> {
        let mut db_labels: HashMap<String, String> =
            naming.labels(Some(site)).into_iter().collect();
        db_labels.insert(labels::ROLE.into(), "database".into());
        db_labels.insert(labels::DATABASE.into(), db.name.clone());
        db_labels.insert(labels::DIGEST.into(), db.container_digest());
        if let Some(endpoint) = self.pod_endpoint(naming, site).await? {
            db_labels.insert(labels::POD_ENDPOINT.into(), endpoint);
        }
        let host_config = HostConfig {
            memory: i64::try_from(db.limits.memory_bytes).ok(),
            nano_cpus: Some(i64::from(db.limits.cpu_millis) * 1_000_000),
            pids_limit: Some(i64::from(db.limits.pids)),
            // The server runs as its own user from the start: it needs no capability.
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            binds: Some(vec![format!(
                "{}:{}",
                naming.database_volume(site, &db.name),
                db.engine.data_path()
            )]),
            network_mode: Some(format!("container:{}", naming.pod(site))),
            restart_policy: restart_unless_stopped(),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(db.image.to_string()),
            user: Some(db.engine.system_user().into()),
            cmd: Some(db.server_args()),
            env: Some(
                db.server_env()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(db_labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        self.create_named(naming.database(site, &db.name), body)
            .await
    }

    pub(super) async fn create_named(
        &self,
        name: String,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        let options = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        let created = self
            .client()
            .create_container(Some(options), body)
            .await
            .map_err(engine)?;
        Ok(created.id)
    }

    pub(super) async fn exec_env(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
    ) -> Result<ExecOutcome, RuntimeError> {
        use bollard::exec::StartExecResults;
        let exec = self.new_exec(container, command, env, false).await?;
        let mut stderr: Vec<u8> = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .client()
            .start_exec(&exec, None)
            .await
            .map_err(engine)?
        {
            while let Some(chunk) = output.next().await {
                if let bollard::container::LogOutput::StdErr { message } = chunk.map_err(engine)? {
                    keep_tail(&mut stderr, &message);
                }
            }
        }
        self.exec_outcome(&exec, &stderr).await
    }
}

impl DockerRuntime {
    /// Runs `command` with the file `input` as its standard input, closed at its end.
    pub(super) async fn exec_with_input(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        input: &std::path::Path,
    ) -> Result<ExecOutcome, RuntimeError> {
        use bollard::exec::StartExecResults;
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| RuntimeError::Engine(Box::new(e));
        let mut file = tokio::fs::File::open(input).await.map_err(io)?;
        let exec = self.new_exec(container, command, env, true).await?;
        let mut stderr: Vec<u8> = Vec::new();
        if let StartExecResults::Attached {
            mut output,
            mut input,
        } = self
            .client()
            .start_exec(&exec, None)
            .await
            .map_err(engine)?
        {
            // The input is written while the output is read: a command that answers as it
            // reads would otherwise block on a full pipe.
            let writing = async {
                tokio::io::copy(&mut file, &mut input).await?;
                input.shutdown().await
            };
            let reading = async {
                while let Some(chunk) = output.next().await {
                    if let bollard::container::LogOutput::StdErr { message } =
                        chunk.map_err(engine)?
                    {
                        keep_tail(&mut stderr, &message);
                    }
                }
                Ok::<(), RuntimeError>(())
            };
            let (written, read) = tokio::join!(writing, reading);
            read?;
            written.map_err(io)?;
        }
        self.exec_outcome(&exec, &stderr).await
    }
}

/// Keeps the last 2 KiB of a command's standard error (the reason of a failure).
pub(super) fn keep_tail(tail: &mut Vec<u8>, message: &[u8]) {
    tail.extend_from_slice(message);
    let excess = tail.len().saturating_sub(2048);
    tail.drain(..excess);
}

impl DockerRuntime {
    /// Makes an exec of `command` in `container` with `env` added, its output attached (and
    /// its input, with `stdin`): its id.
    pub(super) async fn new_exec(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        stdin: bool,
    ) -> Result<String, RuntimeError> {
        let created = self
            .client()
            .create_exec(
                container,
                bollard::exec::CreateExecOptions {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(command.to_vec()),
                    env: Some(env.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine)?;
        Ok(created.id)
    }

    /// How an exec ended: its exit code, and the tail of its standard error.
    pub(super) async fn exec_outcome(
        &self,
        exec: &str,
        stderr: &[u8],
    ) -> Result<ExecOutcome, RuntimeError> {
        let inspected = self.client().inspect_exec(exec).await.map_err(engine)?;
        Ok(ExecOutcome {
            exit_code: inspected.exit_code.unwrap_or(-1),
            stderr_tail: String::from_utf8_lossy(stderr).trim().to_owned(),
        })
    }
}
