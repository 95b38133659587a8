//! A real ACME CA for the tests: Debian's `pebble`, with `pebble-challtestsrv` answering its
//! DNS (every name leads to 127.0.0.1 unless a test says otherwise). Each test starts its own
//! on free ports; dropping it stops both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alveole_agent::agent::{Agent, Timing};
use alveole_agent::control::files::StateDir;
use alveole_agent::engine::fake::FakeRuntime;
use alveole_agent::ingress::Ingress;
use serde_json::json;

/// `pebble-challtestsrv` as a DNS server: every name leads to 127.0.0.1 (IPv4 only) unless
/// a test points it elsewhere.
#[derive(Debug)]
pub struct Dns {
    pub address: SocketAddr,
    management: SocketAddr,
    process: Child,
}

impl Dns {
    /// `None` when pebble is not installed and the run may skip.
    pub async fn start(logs: &std::path::Path) -> Option<Dns> {
        crate::init();
        if Command::new("pebble-challtestsrv")
            .arg("-h")
            .output()
            .is_err()
        {
            crate::skip_or_fail("pebble-challtestsrv", "apt-get install pebble");
            return None;
        }
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let process = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01"])
            .arg(address.to_string())
            .args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
            ])
            .arg(management.to_string())
            .stdout(log(logs, "challtestsrv.log"))
            .stderr(log(logs, "challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv");
        let dns = Dns {
            address,
            management,
            process,
        };
        for _ in 0..100 {
            if reqwest::Client::new()
                .post(format!("http://{management}/clear-request-history"))
                .json(&json!({"host": "", "type": ""}))
                .send()
                .await
                .is_ok()
            {
                return Some(dns);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pebble-challtestsrv did not start");
    }

    /// Makes `name` resolve to `address` alone.
    pub async fn point(&self, name: &str, address: &str) {
        let answer = reqwest::Client::new()
            .post(format!("http://{}/add-a", self.management))
            .json(&json!({"host": format!("{name}."), "addresses": [address]}))
            .send()
            .await
            .expect("challtestsrv");
        assert!(answer.status().is_success());
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn log(dir: &std::path::Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// A running pebble and its DNS server.
#[derive(Debug)]
pub struct Pebble {
    pub directory: String,
    /// Its HTTPS certificate's CA (PEM file): what the panel's ACME client trusts.
    pub roots: PathBuf,
    /// Where names are looked up (pebble and the panel's check alike).
    pub dns: Dns,
    management: SocketAddr,
    process: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Pebble {
    /// Pebble validating HTTP-01 on port `http_port` of whatever a name resolves to, issuing
    /// certificates valid for `validity` (`None` when pebble is not installed and the run
    /// may skip).
    pub async fn start(http_port: u16, validity: Duration) -> Option<Pebble> {
        crate::init();
        if Command::new("pebble").arg("-h").output().is_err() {
            crate::skip_or_fail("pebble", "apt-get install pebble");
            return None;
        }
        let dir = crate::temp_dir("alveole-pebble-");
        // Pebble's own HTTPS certificate, from a CA of the test's.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        leaf_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let roots = write("roots.pem", ca.pem());
        let cert = write("cert.pem", leaf.pem());
        let key = write("key.pem", leaf_key.serialize_pem());
        let (listen, management) = (free_port(), free_port());
        let config = write(
            "pebble.json",
            json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert, "privateKey": key,
                "httpPort": http_port, "tlsPort": free_port(),
                "ocspResponderURL": "", "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity.as_secs(),
            }})
            .to_string(),
        );
        let dns = Dns::start(dir.path()).await?;
        let process = Command::new("pebble")
            .args(["-config", &config.display().to_string(), "-dnsserver"])
            .arg(dns.address.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log(dir.path(), "pebble.log"))
            .stderr(log(dir.path(), "pebble.err"))
            .spawn()
            .expect("pebble");
        let started = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            roots,
            dns,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            process,
            _dir: dir,
        };
        let client = started.insecure();
        for _ in 0..100 {
            if client.get(&started.directory).send().await.is_ok() {
                return Some(started);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pebble did not start: see its logs");
    }

    /// A client for pebble's management API (its certificate is the test's own).
    fn insecure(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// Makes `name` resolve to `address` alone.
    pub async fn point(&self, name: &str, address: &str) {
        self.dns.point(name, address).await;
    }

    /// The panel's ACME settings for this pebble (the default limits, no profile).
    pub fn acme_config(&self) -> alveole_panel::acme::AcmeConfig {
        alveole_panel::acme::AcmeConfig {
            directory: self.directory.clone(),
            contact: vec![],
            ca_roots: Some(self.roots.clone()),
            resolver: Some(self.dns.address),
            profile: None,
            limits: alveole_panel::acme::AcmeLimits::default(),
        }
    }

    /// Its process, to measure.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The root CA pebble signs with now (PEM): what a browser or client trusts.
    pub async fn root(&self) -> String {
        self.insecure()
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .expect("pebble's root")
            .text()
            .await
            .expect("pebble's root")
    }

    /// The intermediate it signs certificates with (PEM): sent with each certificate.
    pub async fn intermediate(&self) -> String {
        self.insecure()
            .get(format!("https://{}/intermediates/0", self.management))
            .send()
            .await
            .expect("pebble's intermediate")
            .text()
            .await
            .expect("pebble's intermediate")
    }

    /// Whether pebble says a certificate (its serial, in hex) is revoked.
    pub async fn revoked(&self, serial_hex: &str) -> bool {
        let answer = self
            .insecure()
            .get(format!(
                "https://{}/cert-status-by-serial/{serial_hex}",
                self.management
            ))
            .send()
            .await
            .expect("pebble's status");
        let status: serde_json::Value = answer.json().await.unwrap_or_default();
        status["Status"] == "Revoked"
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A node's agent on the fake engine (no containers), with its real ingress serving HTTP on
/// `http` and HTTPS on `https`, running until dropped.
#[derive(Debug)]
pub struct RunningNode {
    pub node: String,
    pub https: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Tells the agent to stop (it then ends its own tasks).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
    _state: tempfile::TempDir,
}

impl RunningNode {
    /// Stops the agent (as a process would on SIGTERM: its tasks end) and its listeners, and
    /// waits for them, so that none writes into the state directory once it is removed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(agent) = self.agent.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
        }
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(&self.agent) {
            task.abort();
        }
    }
}

/// A provider, a node answering on `addresses`, and its agent, its ingress's plain HTTP on
/// `plain` (where the CA validates).
pub async fn node_with_agent(
    panel: &crate::TestPanel,
    name: &str,
    addresses: &[&str],
    plain: tokio::net::TcpListener,
) -> RunningNode {
    let http = plain.local_addr().unwrap();
    let (status, provider) = panel
        .post(
            "/api/v1/providers",
            json!({"name": format!("{name} provider"), "country": "fr"}),
        )
        .await;
    assert_eq!(status, 201, "{provider}");
    let (status, node) = panel
        .post(
            "/api/v1/nodes",
            json!({
                "provider_id": provider["id"], "name": name, "public_addresses": addresses,
                "capacity": {"cpu_millis": 64000, "memory_bytes": 512u64 << 30, "disk_bytes": 8u64 << 40}
            }),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    let node = node["id"].as_str().unwrap().to_owned();
    let state = crate::temp_dir("alveole-acme-agent-");
    let (status, join) = panel
        .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201, "{join}");
    let client = panel.agent_client();
    let credential =
        alveole_agent::agent::credential(&client, state.path(), join["join_token"].as_str())
            .await
            .expect("enrolment");
    let ingress = Arc::new(Ingress::new());
    let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = secure.local_addr().unwrap();
    let secure_ingress = ingress.clone();
    let agent = Agent::assemble(alveole_agent::agent::Parts {
        credential,
        panel_ca: client.ca_pem().map(str::to_owned),
        control: Arc::new(client),
        files: Arc::new(StateDir::new(state.path())),
        runtime: FakeRuntime::default(),
        ingress: ingress.clone(),
        clock: Arc::new(alveole_model::SystemClock),
        routing: None,
    });
    let tasks = vec![
        tokio::spawn(async move {
            let _ = ingress.clone().serve(plain).await;
        }),
        tokio::spawn(async move {
            let _ = secure_ingress.serve_tls(secure).await;
        }),
    ];
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent.run(
        Timing {
            pass: Duration::from_millis(300),
        },
        async move {
            let _ = stopped.await;
        },
    ));
    RunningNode {
        node,
        https,
        http,
        tasks,
        shutdown: Some(shutdown),
        agent: Some(agent),
        _state: state,
    }
}
