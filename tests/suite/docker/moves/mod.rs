//! Moving a site between two nodes, end to end: a real panel, two real agents standing for two
//! providers (their own node ids, state directories, ingress and peer listeners; the copy goes
//! over TCP with mutual TLS), one real Docker engine scoped by node id.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alveole_agent::agent::{Agent, Timing};
use alveole_agent::engine::docker::DockerRuntime;
use alveole_agent::engine::runtime::Naming;
use alveole_agent::ingress::Ingress;
use alveole_model::{AgentEndpoints, NodeId};
use alveole_tests::docker::{NodeCleanup, docker};
use alveole_tests::{TEST_IMAGE, TestDb, TestPanel, ensure_test_image};
use serde_json::{Value, json};

mod evacuation;
mod failures;
mod over_https;
mod under_traffic;

/// The site serves `/data/www`: an index page, and a CGI script that appends the query to
/// `/data/log.txt` and answers `ok <query>` (a write acknowledged to the client).
fn site_command() -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        "mkdir -p /data/www/cgi-bin && exec /bin/httpd -f -p 8080 -h /data/www".into(),
    ]
}

pub(super) const APPEND_SCRIPT: &str = "#!/bin/sh\necho \"$QUERY_STRING\" >> /data/log.txt\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok %s\\n' \"$QUERY_STRING\"\n";

/// One node's agent, as a process would run it; `kill` stops it at once.
pub(super) struct RunningAgent {
    pub(super) ingress: SocketAddr,
    /// Its ingress's HTTPS listener (sites with a certificate, by SNI).
    pub(super) https: SocketAddr,
    pub(super) peer: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningAgent {
    fn kill(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(super) struct NodeSetup {
    pub(super) id: NodeId,
    credential: alveole_agent::control::identity::Credential,
    pub(super) state_dir: tempfile::TempDir,
}

/// Starts `node`'s agent on the given addresses (port 0: any).
pub(super) async fn start_agent(
    panel: &TestPanel,
    node: &NodeSetup,
    ingress: SocketAddr,
    peer: SocketAddr,
) -> RunningAgent {
    let client = panel.agent_client();
    client.authenticate(&node.credential).unwrap();
    let ingress_listener = tokio::net::TcpListener::bind(ingress).await.unwrap();
    let peer_listener = tokio::net::TcpListener::bind(peer).await.unwrap();
    let (ingress, peer) = (
        ingress_listener.local_addr().unwrap(),
        peer_listener.local_addr().unwrap(),
    );
    let proxy = Arc::new(Ingress::new());
    let serving = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let _ = proxy.serve(ingress_listener).await;
        }
    });
    let https_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = https_listener.local_addr().unwrap();
    let serving_https = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let _ = proxy.serve_tls(https_listener).await;
        }
    });
    let agent = Agent::new(
        node.credential.clone(),
        client,
        node.state_dir.path(),
        DockerRuntime::connect().await.unwrap(),
        proxy,
    )
    .with_moves(
        peer_listener,
        AgentEndpoints {
            peer: Some(peer),
            ingress: Some(ingress),
        },
    )
    .unwrap();
    let running = tokio::spawn(agent.run(
        Timing {
            pass: Duration::from_millis(500),
        },
        std::future::pending(),
    ));
    RunningAgent {
        ingress,
        https,
        peer,
        tasks: vec![serving, serving_https, running],
    }
}

pub(super) async fn enrolled(panel: &TestPanel, node: &str) -> NodeSetup {
    NodeSetup {
        id: node.parse().unwrap(),
        credential: panel.enrol(node).await,
        state_dir: alveole_tests::temp_dir("alveole-move-agent-"),
    }
}

/// Two nodes at two providers, each with a running agent, and a member: (a, b, member).
async fn two_nodes(panel: &TestPanel) -> (NodeSetup, NodeSetup, String) {
    let (node_a, member) = panel.seed().await;
    let (status, provider) = panel
        .post(
            "/api/v1/providers",
            json!({"name": "Autre hébergeur", "country": "be"}),
        )
        .await;
    assert_eq!(status, 201, "{provider}");
    let (status, node_b) = panel
        .post(
            "/api/v1/nodes",
            json!({
                "provider_id": provider["id"], "name": "node-b", "public_addresses": ["198.51.100.10"],
                "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 500u64 << 30}
            }),
        )
        .await;
    assert_eq!(status, 201, "{node_b}");
    let a = enrolled(panel, &node_a).await;
    let b = enrolled(panel, node_b["id"].as_str().unwrap()).await;
    (a, b, member)
}

/// Waits (bounded) until `done` gives a value, checking every 50 ms.
pub(super) async fn wait_for<T>(
    what: &str,
    within: Duration,
    mut done: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = done().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn get_through(
    ingress: SocketAddr,
    host: &str,
    path: &str,
) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{ingress}{path}"))
        .header("host", host)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

pub(super) fn volume_dir(node: NodeId, site: &str) -> PathBuf {
    let name = Naming { node_id: node }.volume(site.parse().unwrap());
    PathBuf::from(docker(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &name,
    ]))
}

/// Puts the site's pages and `bytes` of data in `files` files (in 20 directories) into its
/// volume, as a member's upload would.
fn fill_volume(root: &Path, files: usize, bytes: usize) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("www/cgi-bin")).unwrap();
    std::fs::write(root.join("www/index.html"), "hello\n").unwrap();
    let script = root.join("www/cgi-bin/append");
    std::fs::write(&script, APPEND_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let each = bytes / files;
    for i in 0..files {
        let dir = root.join(format!("files/d{:02}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        // Different contents per file, so a file copied to the wrong place shows.
        let line = format!("file {i} of the site's data\n");
        let contents: Vec<u8> = line.bytes().cycle().take(each).collect();
        std::fs::write(dir.join(format!("f{i:05}.bin")), contents).unwrap();
    }
}

/// Requests the site every few milliseconds through `ingress` until `stop`: each request's
/// start, end and outcome.
#[derive(Debug, Default)]
struct Traffic {
    /// (started, ended, ok, detail)
    requests: Vec<(Instant, Instant, bool, String)>,
    /// Sequence numbers whose append the site acknowledged.
    acknowledged: Vec<u64>,
}

impl Traffic {
    fn failures(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| !r.2)
            .map(|r| r.3.clone())
            .collect()
    }

    /// The longest time between two consecutive answers (or the first request's start).
    fn longest_gap(&self) -> Duration {
        let mut ends: Vec<Instant> = self.requests.iter().map(|r| r.1).collect();
        ends.sort();
        ends.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

fn spawn_traffic(
    ingress: SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
    traffic: Arc<Mutex<Traffic>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let reader = {
        let (client, stop, traffic) = (client.clone(), stop.clone(), traffic.clone());
        tokio::spawn(async move {
            // Bounded however the test goes: 40,000 requests or two minutes.
            let started = Instant::now();
            for _ in 0..40_000 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let at = Instant::now();
                let outcome = client
                    .get(format!("http://{ingress}/"))
                    .header("host", host)
                    .send()
                    .await;
                let (ok, detail) = match outcome {
                    Ok(r) if r.status() == 200 => (true, String::new()),
                    Ok(r) => (
                        false,
                        format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    ),
                    Err(e) => (false, e.to_string()),
                };
                traffic
                    .lock()
                    .unwrap()
                    .requests
                    .push((at, Instant::now(), ok, detail));
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        for seq in 1..=20_000u64 {
            if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120) {
                break;
            }
            let at = Instant::now();
            let outcome = client
                .get(format!("http://{ingress}/cgi-bin/append?{seq}"))
                .header("host", host)
                .send()
                .await;
            let (ok, detail) = match outcome {
                Ok(r) if r.status() == 200 => {
                    let body = r.text().await.unwrap_or_default();
                    (body.trim() == format!("ok {seq}"), body)
                }
                Ok(r) => (
                    false,
                    format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                ),
                Err(e) => (false, e.to_string()),
            };
            {
                let mut traffic = traffic.lock().unwrap();
                if ok {
                    traffic.acknowledged.push(seq);
                }
                traffic.requests.push((at, Instant::now(), ok, detail));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    vec![reader, writer]
}

/// Waits until `node`'s agent has told the panel where other agents reach it.
pub(super) async fn reported(panel: &TestPanel, node: NodeId) {
    wait_for(
        "the node's first report",
        Duration::from_secs(30),
        async || {
            let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
            status["report"]["endpoints"]["peer"]
                .is_string()
                .then_some(())
        },
    )
    .await;
}

pub(super) async fn create_site(
    panel: &TestPanel,
    member: &str,
    node: NodeId,
    host: &str,
) -> String {
    let site = json!({
        "owner_id": member, "primary_domain": host, "image": TEST_IMAGE,
        "command": site_command(), "node_id": node,
        "limits": {"cpu_millis": 500, "memory_bytes": 134217728, "pids": 64}
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Waits for the site's volume on `node`, fills it (`files` files, `bytes` in all), and waits
/// until the site serves its page through `ingress`: the volume's directory.
async fn filled_and_serving(
    site: &str,
    node: NodeId,
    ingress: SocketAddr,
    host: &str,
    (files, bytes): (usize, usize),
) -> PathBuf {
    let volume = wait_for("the site's volume", Duration::from_secs(60), async || {
        Some(volume_dir(node, site)).filter(|dir| dir.is_dir())
    })
    .await;
    fill_volume(&volume, files, bytes);
    wait_for("the site to serve", Duration::from_secs(60), async || {
        (get_through(ingress, host, "/").await == Some((200, "hello\n".into()))).then_some(())
    })
    .await;
    volume
}

async fn the_move(panel: &TestPanel, id: &str) -> Value {
    let (status, movement) = panel.get(&format!("/api/v1/site-moves/{id}")).await;
    assert_eq!(status, 200, "{movement}");
    movement
}
