//! Sites in the engine: hardened, limited, their drift repaired, their volumes measured,
//! images shipped between nodes without a registry, paused without failing requests.

use super::*;

#[tokio::test]
async fn docker_a_site_runs_hardened_and_drift_is_repaired() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    // The optional hardening too: a read-only root and an unprivileged user.
    let mut alpha = spec("alpha");
    alpha.security = alveole_model::Security {
        read_only_root: true,
        user: Some("1000:1000".into()),
    };
    let mut desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![alpha],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let site = desired.sites[0].site_id;

    let report = reconciler.reconcile(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let address = report.addresses[&site];
    assert_eq!(get(address).await.unwrap().trim(), "hello from alpha");
    let container = naming.container(site);
    let first_id = docker(&["inspect", "-f", "{{.Id}}", &container]);

    // Nothing changed: nothing done, same container.
    let again = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(again.actions, []);
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &container]), first_id);

    runs_hardened(&container);
    drift_by_hand_is_repaired(&reconciler, &desired, &container).await;
    only_this_nodes_leftovers_are_removed(&reconciler, &desired, &naming).await;

    // A changed environment replaces the container; the volume stays.
    desired.generation = 2;
    desired.sites[0].env[0].value = "beta".into();
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(
        get(report.addresses[&site]).await.unwrap().trim(),
        "hello from beta"
    );
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", &container]), first_id);

    // The site is no longer desired: container gone, volume kept until purge.
    desired.generation = 3;
    desired.sites.clear();
    reconciler.reconcile(&desired).await.unwrap();
    assert!(docker(&["ps", "-aq", "--filter", &format!("name={container}")]).is_empty());
    let volume = naming.volume(site);
    assert_eq!(
        docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]),
        volume
    );
}

/// Hardening, as the engine reports it and by behaviour: the image cannot be written to,
/// /tmp can, and nobody is root.
fn runs_hardened(container: &str) {
    let inspect: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", container])).unwrap();
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges:true"])
    );
    assert_eq!(host["Memory"], 64 << 20);
    assert_eq!(host["NanoCpus"], 250_000_000);
    assert_eq!(host["PidsLimit"], 64);
    assert!(
        !inspect.to_string().contains("docker.sock"),
        "no engine socket inside"
    );
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(inspect[0]["Config"]["User"], "1000:1000");
    let write_root = Command::new("docker")
        .args(["exec", container, "/bin/busybox", "touch", "/x"])
        .output()
        .unwrap();
    assert!(
        !write_root.status.success(),
        "the root file system is read-only"
    );
    assert_eq!(
        docker(&["exec", container, "/bin/busybox", "id", "-u"]),
        "1000"
    );
}

/// Drift: removed by hand → back; stopped by hand → running again.
async fn drift_by_hand_is_repaired(
    reconciler: &Reconciler<DockerRuntime>,
    desired: &DesiredState,
    container: &str,
) {
    let site = desired.sites[0].site_id;
    docker(&["rm", "-f", container]);
    let report = reconciler.reconcile(desired).await.unwrap();
    assert_eq!(report.actions, [Action::Create { site }]);
    assert_eq!(
        get(report.addresses[&site]).await.unwrap().trim(),
        "hello from alpha"
    );
    docker(&["stop", "-t", "1", container]);
    let report = reconciler.reconcile(desired).await.unwrap();
    assert!(
        matches!(report.actions.as_slice(), [Action::Start { .. }]),
        "{:?}",
        report.actions
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", container]),
        "true"
    );
}

/// Containers of other nodes, and unlabelled ones, are never touched; this node's containers
/// for sites no longer desired are removed.
async fn only_this_nodes_leftovers_are_removed(
    reconciler: &Reconciler<DockerRuntime>,
    desired: &DesiredState,
    naming: &Naming,
) {
    let other_node = format!("coop.alveole.node={}", NodeId::generate());
    let gone = SiteId::generate();
    let leftover_site = format!("coop.alveole.site={gone}");
    let this_node = format!("coop.alveole.node={}", naming.node_id);
    let create = |labels: &[&str]| {
        let mut args = vec!["create"];
        for label in labels {
            args.extend(["--label", label]);
        }
        args.extend([TEST_IMAGE, "/bin/sleep", "60"]);
        docker(&args)
    };
    let foreign = create(&[&other_node, &leftover_site]);
    let unlabelled = create(&[]);
    // (Removed at the end whatever happens: no node's clean-up would find them.)
    let _strangers = Containers(vec![foreign.clone(), unlabelled.clone()]);
    let leftover = create(&[&this_node, &leftover_site]);
    let report = reconciler.reconcile(desired).await.unwrap();
    assert_eq!(
        report.actions,
        [Action::Remove {
            site: gone,
            container: leftover.clone()
        }]
    );
    let exists = |id: &str| docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")]);
    assert!(exists(&leftover).is_empty());
    for kept in [&foreign, &unlabelled] {
        assert_eq!(exists(kept), *kept);
    }
}

/// Containers removed when dropped.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for id in &self.0 {
            docker(&["rm", "-f", id]);
        }
    }
}

#[tokio::test]
async fn docker_drift_is_repaired_on_engine_events_without_waiting_for_the_timer() {
    use alveole_agent::agent::{Agent, Timing};
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        node_id,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let site = json!({
        "owner_id": member, "primary_domain": "events.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "events"}]
    });
    let (_, created) = panel.post("/api/v1/sites", site).await;
    let container = Naming { node_id }.container(created["id"].as_str().unwrap().parse().unwrap());

    // A timer of an hour: after the first pass, only engine events can trigger another.
    let agent = Agent::new(
        credential,
        client,
        &state_dir,
        DockerRuntime::connect().await.unwrap(),
        Arc::new(Ingress::new()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.run(
        Timing {
            pass: std::time::Duration::from_secs(3600),
        },
        async {
            let _ = stopped.await;
        },
    ));
    let running_id = |name: &str| {
        docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("name={name}"),
        ])
    };
    let wait_for = |want_new_than: String| {
        let container = container.clone();
        async move {
            // Bounded: 60 s, for a loaded CI machine; usually about one second.
            for _ in 0..600 {
                let id = running_id(&container);
                if !id.is_empty() && id != want_new_than {
                    return id;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the container did not come back");
        }
    };
    let first = wait_for(String::new()).await;
    docker(&["rm", "-f", &container]);
    let second = wait_for(first.clone()).await;
    assert_ne!(first, second, "a new container replaced the removed one");

    let _ = stop.send(());
    running.await.unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn docker_limits_hold_and_the_neighbour_keeps_serving() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let mut greedy = spec("greedy");
    greedy.limits = Limits {
        cpu_millis: 250,
        memory_bytes: 32 << 20,
        pids: 32,
        ..Limits::default()
    };
    let neighbour = spec("neighbour");
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![greedy.clone(), neighbour.clone()],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let neighbour_address = report.addresses[&neighbour.site_id];
    let greedy_container = naming.container(greedy.site_id);

    // A fork storm (bounded: 200 tries) stops at the process limit.
    let storm = Command::new("docker")
        .args([
            "exec",
            &greedy_container,
            "/bin/sh",
            "-c",
            "for i in $(/bin/busybox seq 1 200); do /bin/sleep 30 & done 2>/dev/null; true",
        ])
        .output()
        .unwrap();
    assert!(
        !storm.status.success(),
        "the storm hit the limit: {}",
        String::from_utf8_lossy(&storm.stderr)
    );
    let pids: u32 = docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.PIDs}}",
        &greedy_container,
    ])
    .parse()
    .unwrap();
    assert!(pids <= 32, "{pids} processes in a container limited to 32");
    assert_eq!(
        get(neighbour_address).await.unwrap().trim(),
        "hello from neighbour"
    );

    // Eating memory past the limit gets the eater killed (137); the neighbour is untouched.
    docker(&["restart", "-t", "0", &greedy_container]);
    let eat = Command::new("docker")
        .args([
            "exec",
            &greedy_container,
            "/bin/sh",
            "-c",
            "a=$(/bin/busybox head -c 100000000 /dev/zero | /bin/busybox tr '\\0' a); echo ${#a}",
        ])
        .output()
        .unwrap();
    assert_eq!(eat.status.code(), Some(137), "out of memory: killed");
    assert_eq!(
        get(neighbour_address).await.unwrap().trim(),
        "hello from neighbour"
    );
}

#[tokio::test]
async fn docker_a_volume_over_its_quota_raises_an_alert() {
    use alveole_agent::agent::Agent;
    use alveole_agent::ingress::Ingress;
    use serde_json::json;
    use std::sync::Arc;

    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let Fixture {
        db,
        panel,
        node,
        node_id,
        member,
        credential,
        client,
        state_dir,
        cleanup: _cleanup,
        ..
    } = fixture;
    let site = json!({
        "owner_id": member, "primary_domain": "quota.example.org", "image": TEST_IMAGE,
        "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "quota"}],
        "volume": {"quota_bytes": 1048576, "mount_path": "/data"}
    });
    let (_, created) = panel.post("/api/v1/sites", site).await;
    let site_id: SiteId = created["id"].as_str().unwrap().parse().unwrap();
    let runtime = DockerRuntime::connect().await.unwrap();
    let mut agent = Agent::new(
        credential,
        client,
        &state_dir,
        runtime,
        Arc::new(Ingress::new()),
    )
    .with_usage_interval(std::time::Duration::ZERO);
    agent.pass().await.expect("a pass");
    let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert_eq!(status["alerts"], json!([]), "within its quota: {status}");

    // The site writes 3 MiB into its 1 MiB volume: the next report raises the alert.
    let container = Naming { node_id }.container(site_id);
    docker(&[
        "exec",
        &container,
        "/bin/sh",
        "-c",
        "/bin/busybox head -c 3145728 /dev/zero > /data/big",
    ]);
    agent.pass().await.expect("a pass");
    let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    assert_eq!(status["alerts"][0]["kind"], "volume_over_quota", "{status}");
    assert_eq!(status["alerts"][0]["site_id"], site_id.to_string());
    let used = status["report"]["sites"][0]["volume_bytes"]
        .as_u64()
        .unwrap();
    assert!(used >= 3 << 20, "measured {used} bytes");
    // And for Prometheus, the usage beside the quota.
    let metrics = reqwest::get(format!("{}/metrics", panel.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&site_id.to_string()))
            .map(str::to_owned)
    };
    assert_eq!(
        line("alveole_site_volume_quota_bytes")
            .unwrap()
            .rsplit(' ')
            .next(),
        Some("1048576")
    );
    assert!(line("alveole_site_volume_bytes").is_some(), "{metrics}");
    db.drop_db().await;
}

/// With no registry, an agent ships a site's image to another as `docker save` writes it,
/// and the other loads it: the same image, by id. Something else than an archive is refused.
#[tokio::test]
async fn docker_an_image_saved_on_one_node_loads_on_another() {
    use futures::TryStreamExt;

    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let runtime = DockerRuntime::connect().await.expect("connect to Docker");
    let tag = format!(
        "alveole-test/ship-{}:1",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    docker(&["tag", TEST_IMAGE, &tag]);
    let _untag = Untag(tag.clone());
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert!(id.starts_with("sha256:"), "{id}");
    let archive: Vec<_> = runtime
        .save_image(&ImageRef::parse(&tag).unwrap())
        .try_collect()
        .await
        .unwrap();
    let size: usize = archive.iter().map(|chunk| chunk.len()).sum();
    assert!(size > 100_000, "an archive of {size} bytes");
    // The tag goes (the test image keeps the layers), as on a node that never had it.
    docker(&["rmi", &tag]);
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), "");

    let truncated = futures::stream::iter([Ok::<_, std::io::Error>(archive[0].slice(..512))]);
    assert!(
        runtime.load_image(Box::pin(truncated)).await.is_err(),
        "not a whole archive"
    );
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), "");

    let shipped = futures::stream::iter(archive.into_iter().map(Ok::<_, std::io::Error>));
    runtime.load_image(Box::pin(shipped)).await.unwrap();
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), id);
}

/// Removes an image tag when dropped, whatever the test left.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        docker(&["rmi", &self.0]);
    }
}

/// A paused site's requests wait instead of failing, and are answered once it is unpaused:
/// what a move's freeze relies on.
#[tokio::test]
async fn docker_a_paused_site_holds_its_requests_until_unpaused() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("frozen")],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let site = desired.sites[0].site_id;
    let report = reconciler.reconcile(&desired).await.unwrap();
    let address = report.addresses[&site];
    assert_eq!(get(address).await.unwrap().trim(), "hello from frozen");
    let container = naming.container(site);

    reconciler.runtime().pause(&container).await.unwrap();
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Paused}}", &container]),
        "true"
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let mut pending = tokio::spawn(async move {
        client
            .get(format!("http://{address}:8080/"))
            .send()
            .await?
            .text()
            .await
    });
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut pending).await;
    assert!(early.is_err(), "no answer while paused: {early:?}");
    // A pass while paused changes nothing: a paused container is not drift.
    let during = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(during.actions, []);

    reconciler.runtime().unpause(&container).await.unwrap();
    let answer = pending.await.unwrap().unwrap();
    assert_eq!(answer.trim(), "hello from frozen", "held, not failed");
}
