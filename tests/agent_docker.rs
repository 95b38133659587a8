//! The agent against the real Docker engine of this machine. Each test works as its own node
//! (a fresh node id), so it sees and touches only its own objects, and removes them at the end.
//! These tests run one at a time (nextest group `serial`).

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use alveole_agent::docker::DockerRuntime;
use alveole_agent::{Action, Naming, Reconciler};
use alveole_model::{
    DesiredState, Hostname, ImageRef, Limits, NodeId, SiteId, SiteSpec, Volume, Wildcard, WireEnv,
};
use alveole_tests::{TEST_IMAGE, ensure_test_image, hello_command};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn spec(name: &str) -> SiteSpec {
    SiteSpec {
        site_id: SiteId::generate(),
        hostnames: vec![
            Hostname::parse(&format!("{name}.example.org"), Wildcard::Refused).unwrap(),
        ],
        image: ImageRef::parse(TEST_IMAGE).unwrap(),
        command: hello_command(),
        env: vec![WireEnv {
            name: "SITE_NAME".into(),
            value: name.into(),
        }],
        http_port: 8080,
        volume: Volume::default(),
        limits: Limits {
            cpu_millis: 250,
            memory_bytes: 64 << 20,
            pids: 64,
        },
        run: true,
    }
}

/// Removes everything labelled for `node`, whatever state the test left.
struct NodeCleanup(NodeId, Naming);

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let filter = format!("label=coop.alveole.node={}", self.0);
        for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
            docker(&["rm", "-f", id]);
        }
        for volume in docker(&["volume", "ls", "-q", "--filter", &filter]).lines() {
            docker(&["volume", "rm", "-f", volume]);
        }
        docker(&["network", "rm", &self.1.network()]);
    }
}

async fn setup() -> Option<(Reconciler<DockerRuntime>, Naming, NodeCleanup)> {
    if !ensure_test_image() {
        return None;
    }
    let runtime = DockerRuntime::connect().await.expect("connect to Docker");
    let naming = Naming {
        node_id: NodeId::generate(),
    };
    let cleanup = NodeCleanup(naming.node_id, naming.clone());
    Some((Reconciler::new(runtime, naming.clone()), naming, cleanup))
}

async fn get(address: std::net::IpAddr) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    // The server may need a moment after start: retry a bounded number of times on refusal.
    let mut last = None;
    for _ in 0..50 {
        match client.get(format!("http://{address}:8080/")).send().await {
            Ok(response) => return response.text().await,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last.expect("an error"))
}

#[tokio::test]
async fn docker_a_site_runs_hardened_and_drift_is_repaired() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let mut desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("alpha")],
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

    // Hardening, as the engine reports it.
    let inspect: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", &container])).unwrap();
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

    // Drift: removed by hand → back; stopped by hand → running again.
    docker(&["rm", "-f", &container]);
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(report.actions, [Action::Create { site }]);
    assert_eq!(
        get(report.addresses[&site]).await.unwrap().trim(),
        "hello from alpha"
    );
    docker(&["stop", "-t", "1", &container]);
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert!(
        matches!(report.actions.as_slice(), [Action::Start { .. }]),
        "{:?}",
        report.actions
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &container]),
        "true"
    );

    // Containers of other nodes, and unlabelled ones, are never touched; this node's
    // containers for sites no longer desired are removed.
    let other_node = format!("coop.alveole.node={}", NodeId::generate());
    let leftover_site = format!("coop.alveole.site={}", SiteId::generate());
    let this_node = format!("coop.alveole.node={}", naming.node_id);
    let foreign = docker(&[
        "create",
        "--label",
        &other_node,
        "--label",
        &leftover_site,
        TEST_IMAGE,
        "/bin/sleep",
        "60",
    ]);
    let unlabelled = docker(&["create", TEST_IMAGE, "/bin/sleep", "60"]);
    let leftover = docker(&[
        "create",
        "--label",
        &this_node,
        "--label",
        &leftover_site,
        TEST_IMAGE,
        "/bin/sleep",
        "60",
    ]);
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert_eq!(
        report.actions,
        [Action::Remove {
            container: leftover.clone()
        }]
    );
    assert!(
        docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("id={leftover}")
        ])
        .is_empty()
    );
    for kept in [&foreign, &unlabelled] {
        assert_eq!(
            docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={kept}")]),
            *kept
        );
        docker(&["rm", "-f", kept]);
    }

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
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", naming.volume(site))
        ]),
        naming.volume(site)
    );
}

#[tokio::test]
async fn docker_sites_cannot_reach_each_other() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("a"), spec("b")],
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let (a, b) = (desired.sites[0].site_id, desired.sites[1].site_id);
    // Positive first: the host reaches both, and A's own server answers inside A.
    assert_eq!(
        get(report.addresses[&b]).await.unwrap().trim(),
        "hello from b"
    );
    assert_eq!(
        get(report.addresses[&a]).await.unwrap().trim(),
        "hello from a"
    );
    let inside = docker(&[
        "exec",
        &naming.container(a),
        "/bin/busybox",
        "timeout",
        "3",
        "wget",
        "-O",
        "-",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(inside, "hello from a");
    // Then A → B by address fails. (busybox 1.35's wget crashes with -q or -T: `timeout` bounds it.)
    let url = format!("http://{}:8080/", report.addresses[&b]);
    let status = Command::new("docker")
        .args([
            "exec",
            &naming.container(a),
            "/bin/busybox",
            "timeout",
            "3",
            "wget",
            "-O",
            "-",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "A reached B: {}",
        String::from_utf8_lossy(&status.stdout)
    );
}
