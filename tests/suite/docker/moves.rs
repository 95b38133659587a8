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

/// The site serves `/data/www`: an index page, and a CGI script that appends the query to
/// `/data/log.txt` and answers `ok <query>` (a write acknowledged to the client).
fn site_command() -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        "mkdir -p /data/www/cgi-bin && exec /bin/httpd -f -p 8080 -h /data/www".into(),
    ]
}

const APPEND_SCRIPT: &str = "#!/bin/sh\necho \"$QUERY_STRING\" >> /data/log.txt\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok %s\\n' \"$QUERY_STRING\"\n";

/// One node's agent, as a process would run it; `kill` stops it at once.
struct RunningAgent {
    ingress: SocketAddr,
    peer: SocketAddr,
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

struct NodeSetup {
    id: NodeId,
    credential: alveole_agent::control::identity::Credential,
    state_dir: tempfile::TempDir,
}

/// Starts `node`'s agent on the given addresses (port 0: any).
async fn start_agent(
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
        peer,
        tasks: vec![serving, running],
    }
}

async fn enrolled(panel: &TestPanel, node: &str) -> NodeSetup {
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
async fn wait_for<T>(what: &str, within: Duration, mut done: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = done().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_through(ingress: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{ingress}{path}"))
        .header("host", host)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

fn volume_dir(node: NodeId, site: &str) -> PathBuf {
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
async fn reported(panel: &TestPanel, node: NodeId) {
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

async fn create_site(panel: &TestPanel, member: &str, node: NodeId, host: &str) -> String {
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

#[tokio::test]
async fn docker_a_site_moves_while_requested_and_written_with_no_request_failed() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut agent_a = start_agent(&panel, &a, any, any).await;
    let agent_b = start_agent(&panel, &b, any, any).await;

    const HOST: &str = "moving.example.org";
    let site = create_site(&panel, &member, a.id, HOST).await;
    // About 200 MB in 2,000 files.
    let source_dir =
        filled_and_serving(&site, a.id, agent_a.ingress, HOST, (2_000, 200 << 20)).await;
    assert_eq!(
        get_through(agent_a.ingress, HOST, "/cgi-bin/append?0").await,
        Some((200, "ok 0\n".into()))
    );

    let (move_id, moved, traffic) =
        moved_under_traffic(&panel, &site, &a, &b, agent_a.ingress, HOST).await;
    let freeze = no_request_failed_and_no_gap_outlasted_the_freeze(&traffic, &moved);
    the_data_and_every_acknowledged_write_arrived(&panel, &site, &b, &source_dir, &traffic).await;
    the_move_is_recorded_and_shown(&panel, &site, &move_id, freeze).await;

    // An admin ends the forwarding early: node A stops answering for the site and drops its
    // copy.
    let (status, finished) = panel
        .post(&format!("/api/v1/site-moves/{move_id}/finish"), json!({}))
        .await;
    assert_eq!(status, 200, "{finished}");
    assert_eq!(finished["phase"], "done");
    wait_for(
        "node A to drop the site",
        Duration::from_secs(30),
        async || {
            let gone = get_through(agent_a.ingress, HOST, "/")
                .await
                .is_some_and(|r| r.0 == 404);
            (gone && !source_dir.exists()).then_some(())
        },
    )
    .await;

    // Node A's agent dies after the switch: node B serves the site.
    agent_a.kill();
    assert_eq!(
        get_through(agent_b.ingress, HOST, "/").await,
        Some((200, "hello\n".into()))
    );
}

/// Moves the site from A to B while a reader and a writer go through node A's ingress for the
/// whole move (and for a while after the switch, forwarded): the move's id, its record at the
/// switch, and the traffic.
async fn moved_under_traffic(
    panel: &TestPanel,
    site: &str,
    a: &NodeSetup,
    b: &NodeSetup,
    ingress: SocketAddr,
    host: &'static str,
) -> (String, Value, Traffic) {
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let clients = spawn_traffic(ingress, host, stop.clone(), traffic.clone());
    let answered = || traffic.lock().unwrap().requests.len();
    wait_for("traffic under way", Duration::from_secs(30), async || {
        (answered() >= 20).then_some(())
    })
    .await;

    // A target that has not said where agents reach it is refused; node B has.
    let path = format!("/api/v1/sites/{site}/move");
    let (status, refused) = panel.post(&path, json!({"to_node": a.id})).await;
    assert_eq!(status, 409, "{refused}");
    let (status, started) = panel.post(&path, json!({"to_node": b.id})).await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();
    let (status, again) = panel.post(&path, json!({"to_node": b.id})).await;
    assert_eq!(status, 409, "one move at a time: {again}");

    let moved = wait_for("the switch", Duration::from_secs(180), async || {
        let movement = the_move(panel, &move_id).await;
        assert_ne!(movement["phase"], "failed", "{movement}");
        (movement["phase"] == "forwarding" && movement["progress"]["freeze_ms"].is_u64())
            .then_some(movement)
    })
    .await;
    // Some more traffic after the switch, through node A (forwarded) still.
    let at_switch = answered();
    wait_for(
        "traffic after the switch",
        Duration::from_secs(30),
        async || (answered() >= at_switch + 50).then_some(()),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let traffic = std::mem::take(&mut *traffic.lock().unwrap());
    (move_id, moved, traffic)
}

/// No request failed (they were held), and the longest silence a client saw is the freeze
/// plus one request's own time. Returns the freeze.
fn no_request_failed_and_no_gap_outlasted_the_freeze(traffic: &Traffic, moved: &Value) -> Duration {
    let progress = &moved["progress"];
    let freeze = Duration::from_millis(progress["freeze_ms"].as_u64().unwrap());
    println!(
        "moved: {} requests, longest gap {:?}, freeze {:?}, {} passes, {} bytes sent, steps {}",
        traffic.requests.len(),
        traffic.longest_gap(),
        freeze,
        progress["passes"],
        progress["bytes_sent"],
        progress["freeze_steps"]
    );
    assert!(
        traffic.requests.len() > 200,
        "traffic ran: {}",
        traffic.requests.len()
    );
    assert_eq!(traffic.failures(), Vec::<String>::new(), "held, not failed");
    let one_request = Duration::from_millis(100);
    assert!(
        traffic.longest_gap() <= freeze + one_request,
        "longest gap {:?} > freeze {:?}",
        traffic.longest_gap(),
        freeze
    );
    assert!(progress["passes"].as_u64().unwrap() >= 2, "{progress}");
    assert!(
        progress["bytes_sent"].as_u64().unwrap() >= 200 << 20,
        "{progress}"
    );
    freeze
}

/// The site is node B's now, in a volume of its own with the same data; every acknowledged
/// write is on the target, and the source's log (frozen at the switch) is where the target's
/// began.
async fn the_data_and_every_acknowledged_write_arrived(
    panel: &TestPanel,
    site: &str,
    b: &NodeSetup,
    source_dir: &Path,
    traffic: &Traffic,
) {
    let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
    assert_eq!(shown["node_id"], json!(b.id), "{shown}");
    let target_dir = volume_dir(b.id, site);
    assert_ne!(
        source_dir, target_dir,
        "the target volume is another volume"
    );
    let digest =
        |dir: &Path| alveole_agent::moves::volume_sync::tree_digest(&dir.join("files")).unwrap();
    assert_eq!(
        digest(source_dir),
        digest(&target_dir),
        "the data arrived whole"
    );
    let target_log = std::fs::read_to_string(target_dir.join("log.txt")).unwrap();
    let source_log = std::fs::read_to_string(source_dir.join("log.txt")).unwrap();
    assert!(
        target_log.starts_with(&source_log),
        "no write lost or reordered"
    );
    let written: std::collections::BTreeSet<u64> =
        target_log.lines().filter_map(|l| l.parse().ok()).collect();
    let lost: Vec<u64> = traffic
        .acknowledged
        .iter()
        .filter(|seq| !written.contains(seq))
        .copied()
        .collect();
    assert!(traffic.acknowledged.len() > 50, "the writer ran");
    assert_eq!(
        lost,
        Vec::<u64>::new(),
        "acknowledged writes missing on the target"
    );
}

/// The move is in the site's history and in the audit record; the site's page shows it, its
/// freeze window, and the form that ends forwarding.
async fn the_move_is_recorded_and_shown(
    panel: &TestPanel,
    site: &str,
    move_id: &str,
    freeze: Duration,
) {
    let (_, history) = panel.get(&format!("/api/v1/sites/{site}/moves")).await;
    assert_eq!(history[0]["id"], json!(move_id), "{history}");
    let actions: Vec<String> = panel
        .store
        .audit_events(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["site.move.start", "site.move.switch"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    let page = panel.page(&format!("/sites/{site}")).await;
    assert!(page.contains(r#"data-phase="forwarding""#), "{page}");
    assert!(
        page.contains(&format!("{} ms", freeze.as_millis())),
        "{page}"
    );
    assert!(page.contains(r#"id="finish-move""#));
}

#[tokio::test]
async fn docker_a_move_whose_target_died_mid_copy_resumes_where_it_stopped() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let mut agent_b = start_agent(&panel, &b, any, any).await;
    const HOST: &str = "resumed.example.org";
    let site = create_site(&panel, &member, a.id, HOST).await;
    let source_dir =
        filled_and_serving(&site, a.id, agent_a.ingress, HOST, (2_000, 200 << 20)).await;
    reported(&panel, b.id).await;
    let (status, started) = panel
        .post(
            &format!("/api/v1/sites/{site}/move"),
            json!({"to_node": b.id}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();

    // The target's agent dies once part of the volume arrived.
    let target_dir = wait_for("the target's volume", Duration::from_secs(60), async || {
        Some(volume_dir(b.id, &site)).filter(|dir| dir.is_dir())
    })
    .await;
    let arrived = |dir: &Path| -> usize {
        (0..20)
            .map(|d| {
                std::fs::read_dir(dir.join(format!("files/d{d:02}")))
                    .map(|entries| entries.count())
                    .unwrap_or(0)
            })
            .sum()
    };
    wait_for("part of the copy", Duration::from_secs(60), async || {
        (arrived(&target_dir) >= 300).then_some(())
    })
    .await;
    let (ingress, peer) = (agent_b.ingress, agent_b.peer);
    agent_b.kill();
    let had = arrived(&target_dir);
    assert!(had < 2_000, "killed mid-copy ({had} files there)");
    let failed = wait_for(
        "the source to see the copy fail",
        Duration::from_secs(30),
        async || {
            let movement = the_move(&panel, &move_id).await;
            movement["progress"]["last_error"]
                .is_string()
                .then_some(movement)
        },
    )
    .await;
    assert_eq!(
        failed["phase"], "copying",
        "a failed copy is tried again, not given up: {failed}"
    );

    // Back on the same addresses: the move resumes and completes.
    let _agent_b = start_agent(&panel, &b, ingress, peer).await;
    let moved = wait_for("the switch", Duration::from_secs(180), async || {
        let movement = the_move(&panel, &move_id).await;
        (movement["phase"] == "forwarding" && movement["progress"]["freeze_ms"].is_u64())
            .then_some(movement)
    })
    .await;
    let progress = &moved["progress"];
    println!("resumed: {progress}");
    let total = progress["volume_bytes"].as_u64().unwrap();
    let already_there = progress["bytes_already_there"].as_u64().unwrap();
    assert!(progress["attempts"].as_u64().unwrap() >= 2, "{progress}");
    assert!(
        already_there > 0 && total - already_there < total,
        "the resumed copy sent again less than the whole volume: {progress}"
    );
    assert_eq!(
        alveole_agent::moves::volume_sync::tree_digest(&source_dir.join("files")).unwrap(),
        alveole_agent::moves::volume_sync::tree_digest(&target_dir.join("files")).unwrap()
    );
}

#[tokio::test]
async fn docker_when_the_panel_dies_during_the_freeze_the_source_serves_again() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    let deadline = Duration::from_secs(8);
    panel
        .configure(|config| config.moves.freeze_deadline_ms = deadline.as_millis() as u64)
        .await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let agent_b = start_agent(&panel, &b, any, any).await;
    const HOST: &str = "stays.example.org";
    // A site that takes a few seconds to start: the target's start keeps the freeze open long
    // enough for the panel to die during it.
    let site = json!({
        "owner_id": member, "primary_domain": HOST, "image": TEST_IMAGE, "node_id": a.id,
        "command": ["/bin/sh", "-c", "mkdir -p /data/www/cgi-bin && sleep 3 && exec /bin/httpd -f -p 8080 -h /data/www"],
        "limits": {"cpu_millis": 500, "memory_bytes": 134217728, "pids": 64}
    });
    let (status, created) = panel.post("/api/v1/sites", site).await;
    assert_eq!(status, 201, "{created}");
    let site = created["id"].as_str().unwrap().to_owned();
    let source_dir = filled_and_serving(&site, a.id, agent_a.ingress, HOST, (200, 20 << 20)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let clients = spawn_traffic(agent_a.ingress, HOST, stop.clone(), traffic.clone());
    reported(&panel, b.id).await;
    let (status, started) = panel
        .post(
            &format!("/api/v1/sites/{site}/move"),
            json!({"to_node": b.id}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();
    wait_for("the freeze", Duration::from_secs(120), async || {
        let movement = the_move(&panel, &move_id).await;
        assert!(
            ["waiting", "shipping_image", "copying", "freezing"]
                .contains(&movement["progress"]["step"].as_str().unwrap_or_default()),
            "{movement}"
        );
        (movement["progress"]["step"] == "freezing").then_some(())
    })
    .await;
    panel.stop().await;

    // Without the panel's switch the source rolls back by itself and serves again.
    wait_for(
        "the site to serve from node A again",
        deadline * 3,
        async || {
            let served = traffic
                .lock()
                .unwrap()
                .requests
                .iter()
                .rev()
                .take(20)
                .filter(|r| r.2)
                .count();
            (served == 20).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let traffic = std::mem::take(&mut *traffic.lock().unwrap());
    println!(
        "rolled back: {} requests, longest gap {:?}",
        traffic.requests.len(),
        traffic.longest_gap()
    );
    assert_eq!(
        traffic.failures(),
        Vec::<String>::new(),
        "held, then served by the source"
    );
    assert!(
        traffic.longest_gap() <= deadline,
        "served again within the freeze deadline: {:?}",
        traffic.longest_gap()
    );
    let written: std::collections::BTreeSet<u64> =
        std::fs::read_to_string(source_dir.join("log.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
    assert!(
        traffic.acknowledged.iter().all(|seq| written.contains(seq)),
        "every acknowledged write is on the source"
    );
    assert_ne!(
        get_through(agent_b.ingress, HOST, "/").await.map(|r| r.0),
        Some(200),
        "the target's copy does not answer"
    );

    // The panel comes back and hears of the rollback: the move failed, the site stayed.
    panel.resume().await;
    let failed = wait_for(
        "the panel to hear of the rollback",
        Duration::from_secs(60),
        async || {
            let movement = the_move(&panel, &move_id).await;
            (movement["phase"] == "failed").then_some(movement)
        },
    )
    .await;
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
    assert_eq!(shown["node_id"], json!(a.id));
    assert_eq!(
        get_through(agent_a.ingress, HOST, "/").await,
        Some((200, "hello\n".into()))
    );
}

#[tokio::test]
async fn docker_twenty_sites_are_evacuated_to_two_nodes_and_serve_from_there() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    panel
        .configure(|config| config.background.jobs_every = Duration::from_millis(200))
        .await;
    let (a, b, member) = two_nodes(&panel).await;
    let (status, third) = panel
        .post(
            "/api/v1/nodes",
            json!({
                "provider_id": panel.get(&format!("/api/v1/nodes/{}", b.id)).await.1["provider_id"],
                "name": "node-c", "public_addresses": ["198.51.100.11"],
                "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 500u64 << 30}
            }),
        )
        .await;
    assert_eq!(status, 201, "{third}");
    let c = enrolled(&panel, third["id"].as_str().unwrap()).await;
    let _cleanup = NodeCleanup::new([a.id, b.id, c.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let agents = [
        (b.id, start_agent(&panel, &b, any, any).await),
        (c.id, start_agent(&panel, &c, any, any).await),
    ];
    let mut hosts = Vec::new();
    for i in 0..20 {
        let host = format!("evacuated-{i}.example.org");
        let site = create_site(&panel, &member, a.id, &host).await;
        filled_and_serving(&site, a.id, agent_a.ingress, &host, (10, 1 << 20)).await;
        hosts.push((site, host));
    }
    reported(&panel, b.id).await;
    reported(&panel, c.id).await;

    let (_, node_a) = panel.get(&format!("/api/v1/nodes/{}", a.id)).await;
    let (status, started) = panel
        .post(
            "/api/v1/evacuations",
            json!({"node_id": a.id, "parallelism": 4,
                   "deadline": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert!(node_a["name"].is_string());
    let job = started["id"].as_str().unwrap().to_owned();
    assert!(
        started["spec"]["statement"]
            .as_str()
            .unwrap()
            .starts_with("The deadline holds: 20 sites"),
        "{started}"
    );
    let ended = wait_for("the evacuation", Duration::from_secs(300), async || {
        let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
        let moving = evacuation["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["state"] == "moving")
            .count();
        assert!(moving <= 4, "{evacuation}");
        (evacuation["state"] == "done").then_some(evacuation)
    })
    .await;
    let items = ended["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["state"] == "done"), "{ended}");
    let took = chrono::DateTime::parse_from_rfc3339(ended["finished_at"].as_str().unwrap())
        .unwrap()
        - chrono::DateTime::parse_from_rfc3339(ended["created_at"].as_str().unwrap()).unwrap();
    println!(
        "evacuated 20 sites: predicted {} s, took {} s",
        ended["spec"]["predicted_seconds"],
        took.num_seconds()
    );
    // Both targets received sites, and every site answers from its new node.
    for (node, agent) in &agents {
        let here: Vec<_> = items
            .iter()
            .filter(|i| i["to_node"] == json!(node))
            .collect();
        assert!(!here.is_empty(), "both nodes receive sites");
        for item in here {
            let (site, host) = hosts
                .iter()
                .find(|(site, _)| item["site_id"] == json!(site))
                .unwrap();
            let (_, shown) = panel.get(&format!("/api/v1/sites/{site}")).await;
            assert_eq!(shown["node_id"], json!(node));
            assert_eq!(
                get_through(agent.ingress, host, "/").await,
                Some((200, "hello\n".into())),
                "{host} on its new node"
            );
        }
    }
    let finish = panel
        .store
        .audit_events(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "evacuation.finish")
        .expect("the evacuation's end is audited");
    let after = finish.after.unwrap();
    assert!(
        after["predicted_seconds"].is_u64() && after["took_seconds"].is_i64(),
        "{after}"
    );
}
