//! Shared test fixtures: a fresh database per test on every backend, and the real panel served
//! in-process on a free loopback port.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod acme;
pub mod docker;
pub mod netns;

pub use docker::{TEST_IMAGE, ensure_test_image, hello_command};

use std::sync::Arc;

use alveole_panel::{AppState, PanelConfig};
use alveole_store::Store;
use serde_json::{Value, json};

/// Process-wide setup: the TLS provider every HTTP client of the tests uses.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether missing components must fail the run (CI) rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Says loudly that a test did not run its part for `component`; fails under CI.
pub fn skip_or_fail(component: &str, why: &str) {
    assert!(!in_ci(), "{component} is required under CI=true: {why}");
    eprintln!(
        "\n!!!! SKIPPED: {component} is not available ({why}); set it up to run this test. !!!!\n"
    );
}

/// A fresh directory under the system's temporary one, removed when dropped (from a failed
/// test as well).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temporary directory")
}

/// A loopback address, free when asked, whose port lies below the kernel's ephemeral range:
/// for a listener a test stops and starts again on the same address. A port from the
/// ephemeral range (`:0`) may meanwhile become the local end of some outgoing connection of a
/// test running beside it, and the restart would find it taken.
pub fn restartable_addr() -> std::net::SocketAddr {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let below = ephemeral_start / 2..ephemeral_start;
    for _ in 0..200 {
        let random = uuid::Uuid::new_v4().as_u128();
        let span = u128::from(below.end - below.start);
        let port = below.start + u16::try_from(random % span).expect("under a u16's range");
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(address).is_ok() {
            return address;
        }
    }
    panic!("no free port below the ephemeral range {below:?}");
}

/// A fresh, empty database.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    admin_url: Option<String>,
    name: String,
    /// Whether `drop_db` has removed it already.
    removed: bool,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        // Its files (with `-wal` and `-shm`) go with it: see `Drop`.
        let name = format!("alveole-test-{}.db", uuid::Uuid::now_v7().simple());
        TestDb {
            url: format!("sqlite://{}", std::env::temp_dir().join(&name).display()),
            admin_url: None,
            name,
            removed: false,
        }
    }

    /// A new database on the server of `ALVEOLE_TEST_POSTGRES_URL`, or None (skipped) outside CI.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("ALVEOLE_TEST_POSTGRES_URL") else {
            skip_or_fail(
                "PostgreSQL",
                "ALVEOLE_TEST_POSTGRES_URL is not set (.ci/run sets it)",
            );
            return None;
        };
        let name = format!("alveole_t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("database URL with a path");
        Some(TestDb {
            url: format!("{base}/{name}"),
            admin_url: Some(admin_url),
            name,
            removed: false,
        })
    }

    /// SQLite always; PostgreSQL when available.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite().await];
        dbs.extend(TestDb::postgres().await);
        dbs
    }

    pub fn backend(&self) -> &'static str {
        if self.admin_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Runs SQL straight on the database, behind the panel's back (tests of tampering).
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.admin_url {
            Some(_) => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("SQL");
            }
            None => {
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("SQL");
            }
        }
    }

    /// The database as a dump or a backup would hold it: `pg_dump`'s output, or a compacted
    /// copy of the SQLite file (`VACUUM INTO`, without the free pages an update leaves).
    pub async fn dump(&self) -> String {
        match &self.admin_url {
            Some(_) => {
                let output = std::process::Command::new("pg_dump")
                    .arg(&self.url)
                    .output()
                    .expect("pg_dump (postgresql-client) runs");
                assert!(output.status.success(), "pg_dump: {output:?}");
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
            None => {
                let copy = std::env::temp_dir().join(format!("{}.dump", self.name));
                self.execute(&format!("VACUUM INTO '{}'", copy.display()))
                    .await;
                let bytes = std::fs::read(&copy).expect("the copy");
                let _ = std::fs::remove_file(&copy);
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// Removes the database now (dropping a `TestDb` removes it too, from a failed test as
    /// well, but waits on its own runtime to do so).
    pub async fn drop_db(mut self) {
        remove_database(self.admin_url.clone(), &self.url, &self.name).await;
        self.removed = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let Some(admin_url) = self.admin_url.clone() else {
            remove_sqlite_files(&self.url);
            return;
        };
        let (url, name) = (self.url.clone(), self.name.clone());
        // Dropped inside the test's runtime, which cannot be blocked on: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(remove_database(Some(admin_url), &url, &name));
        })
        .join();
    }
}

async fn remove_database(admin_url: Option<String>, url: &str, name: &str) {
    match admin_url {
        Some(admin_url) => {
            if let Ok(mut admin) =
                <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await
            {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await;
            }
        }
        None => remove_sqlite_files(url),
    }
}

fn remove_sqlite_files(url: &str) {
    let path = url.trim_start_matches("sqlite://");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

/// A real OpenID Connect provider for the tests (oidc-provider-mock from PyPI, on loopback),
/// stopped when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    child: std::process::Child,
    pub issuer: String,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcProvider {
    /// Starts the provider with these users (their claims), once it answers; `None` (said
    /// loudly) when it is not installed and CI is unset.
    pub async fn start(users: &[Value]) -> Option<OidcProvider> {
        init();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = std::process::Command::new("oidc-provider-mock");
        command.args(["--port", &port.to_string(), "--require-nonce", "true"]);
        for user in users {
            command.args(["--user-claims", &user.to_string()]);
        }
        let child = match command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(_) => {
                skip_or_fail(
                    "oidc-provider-mock",
                    "pip install oidc-provider-mock (.ci/run does)",
                );
                return None;
            }
        };
        let provider = OidcProvider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        };
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        // Bounded: the provider starts in about a second.
        for _ in 0..300 {
            if reqwest::get(&discovery)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Some(provider);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the provider never answered at {discovery}");
    }
}

/// Signs the page session `cookie` out as a browser does: the sign-out form of a page, with
/// that page's CSRF token. The panel's answer.
pub async fn sign_out(http: &reqwest::Client, base: &str, cookie: &str) -> reqwest::Response {
    let page = http
        .get(format!("{base}/sites"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("a page")
        .text()
        .await
        .expect("its text");
    http.post(format!("{base}/logout"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .expect("signing out")
}

/// The CSRF token a page's forms carry (`<input name="csrf" value="…">`).
pub fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with a CSRF token")
        .to_owned()
}

/// The panel, served from a fresh database: to people on `base` (HTTP), to agents on
/// `agent_base` (TLS with the panel's CA and client certificates), as `alveole serve` does.
#[derive(Debug)]
pub struct TestPanel {
    pub base: String,
    pub agent_base: String,
    pub token: String,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub tls: alveole_panel::tls::PanelTls,
    pub notary: alveole_panel::notary::Notary,
    /// The panel's clock for sessions and sign-in links: `advance` it to test expiries.
    pub clock: Arc<alveole_model::ShiftedClock>,
    /// Stands in for the providers' APIs that route failover addresses.
    pub provider: Arc<alveole_panel::failover::RecordingProvider>,
    config: PanelConfig,
    /// What the running panel serves from (its rules, which tests poke).
    state: AppState,
    tls_dir: std::path::PathBuf,
    servers: Vec<tokio::task::JoinHandle<()>>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
}

impl TestPanel {
    pub async fn start(db: &TestDb) -> TestPanel {
        Self::start_with(db, |_| None).await
    }

    /// A panel whose members sign in through an identity provider, configured from the
    /// panel's own address (the provider sends browsers back to it).
    pub async fn start_with_oidc(
        db: &TestDb,
        oidc: impl FnOnce(&str) -> alveole_panel::oidc::OidcConfig,
    ) -> TestPanel {
        Self::start_with(db, |base| {
            Some(Arc::new(
                alveole_panel::oidc::Oidc::new(oidc(base)).expect("identity provider"),
            ))
        })
        .await
    }

    async fn start_with(
        db: &TestDb,
        oidc: impl FnOnce(&str) -> Option<Arc<alveole_panel::oidc::Oidc>>,
    ) -> TestPanel {
        init();
        let clock = Arc::new(alveole_model::ShiftedClock::default());
        let store = alveole_store::connect_with_clock(&db.url, clock.clone())
            .await
            .expect("open store");
        let token = alveole_panel::auth::ensure_bootstrap_token(store.as_ref())
            .await
            .expect("token")
            .expect("a new token");
        let tls_dir =
            std::env::temp_dir().join(format!("alveole-tls-{}", uuid::Uuid::now_v7().simple()));
        let tls = alveole_panel::tls::load_or_create(
            &tls_dir,
            &[],
            alveole_panel::tls::DEFAULT_AGENT_CERTIFICATE_LIFETIME,
        )
        .expect("the panel's TLS material");
        let bind = |address: &'static str| async move {
            tokio::net::TcpListener::bind(address).await.expect("bind")
        };
        let (people, agents) = (bind("127.0.0.1:0").await, bind("127.0.0.1:0").await);
        let base = format!("http://{}", people.local_addr().expect("address"));
        let agent_base = format!("https://{}", agents.local_addr().expect("address"));
        // The panel's audit key, published as `alveole serve` does.
        let notary = alveole_panel::notary::Notary::new(
            alveole_audit::SigningKey::load_or_create(&tls_dir.join("audit.key"))
                .expect("the audit key"),
            None,
        );
        notary
            .publish_key(store.as_ref())
            .await
            .expect("publish the audit key");
        let provider = Arc::new(alveole_panel::failover::RecordingProvider::default());
        let config = PanelConfig {
            agent_tls: Some(tls.clone()),
            notary: Some(notary.clone()),
            clock: clock.clone(),
            oidc: oidc(&base),
            provider_routing: provider.clone(),
            // The images `.ci/run` builds from Debian's packages (no registry here).
            databases: docker::TEST_DATABASE_OFFERS
                .iter()
                .filter_map(|offer| alveole_model::DatabaseOffer::parse(offer).ok())
                .collect(),
            ..PanelConfig::default()
        };
        let (servers, shutdown, state) =
            serve_until_stopped(store.clone(), &config, people, agents);
        TestPanel {
            base,
            agent_base,
            token,
            store,
            http: reqwest::Client::new(),
            tls,
            notary,
            clock,
            provider,
            config,
            state,
            tls_dir,
            servers,
            shutdown: Some(shutdown),
        }
    }

    /// The running panel's state (to serve it on another listener, say).
    /// The audit events named `action` recorded so far (the first thousand events).
    pub async fn events(&self, action: &str) -> Vec<alveole_store::AuditEvent> {
        self.store
            .audit_events(0, 1000)
            .await
            .expect("the audit events")
            .into_iter()
            .filter(|e| e.action == action)
            .collect()
    }

    /// The identity provider's settings, when members sign in through one.
    pub fn oidc_config(&self) -> Option<&alveole_panel::oidc::OidcConfig> {
        self.config.oidc.as_ref().map(|oidc| oidc.config())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The running panel's rules (to poke a background task, say).
    pub fn service(&self) -> &alveole_panel::Service {
        self.state.service()
    }

    /// A client for the agent routes, trusting the panel's CA (not yet enrolled).
    pub fn agent_client(&self) -> alveole_agent::agent::PanelClient {
        alveole_agent::agent::PanelClient::with_ca(&self.agent_base, &self.tls.ca.ca_pem)
            .expect("agent client")
    }

    /// An HTTP client for the agent listener that trusts the panel's CA and presents
    /// `credential`'s certificate.
    pub fn agent_http(
        &self,
        credential: &alveole_agent::control::identity::Credential,
    ) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.tls.ca.ca_pem.as_bytes()).expect("CA"),
            ])
            .identity(
                reqwest::Identity::from_pem(credential.identity_pem().as_bytes())
                    .expect("identity"),
            )
            .build()
            .expect("client")
    }

    /// Enrols a new agent key for `node` with a fresh join token, through the API: the
    /// credential (key and certificate), as the agent would keep it.
    pub async fn enrol(&self, node: &str) -> alveole_agent::control::identity::Credential {
        let (status, join) = self
            .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
            .await;
        assert_eq!(status, 201, "{join}");
        let key = alveole_agent::control::identity::NewKey::generate().expect("key");
        let issued = self
            .agent_client()
            .enroll(
                join["join_token"].as_str().unwrap_or_default(),
                &key.csr_pem,
            )
            .await
            .expect("enrolment");
        key.certified(issued)
    }

    /// Stops serving, idle keep-alive connections included (the panel is down); `resume`
    /// brings it back on the same addresses.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
        for server in &mut self.servers {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), &mut *server).await;
            server.abort();
        }
    }

    /// Changes the panel's configuration: it stops, then serves again with it.
    pub async fn configure(&mut self, change: impl FnOnce(&mut PanelConfig)) {
        self.stop().await;
        change(&mut self.config);
        self.resume().await;
    }

    /// Serves again from the same database, on the same addresses.
    pub async fn resume(&mut self) {
        let rebind = |url: &str| {
            let address = url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_owned();
            async move {
                tokio::net::TcpListener::bind(&address)
                    .await
                    .expect("rebind the panel's address")
            }
        };
        let (people, agents) = (rebind(&self.base).await, rebind(&self.agent_base).await);
        let (servers, shutdown, state) =
            serve_until_stopped(self.store.clone(), &self.config, people, agents);
        self.state = state;
        self.servers = servers;
        self.shutdown = Some(shutdown);
    }

    /// The HTML of a page, signed in with the admin token (a real session, as a browser has).
    pub async fn page(&self, path: &str) -> String {
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let login = no_redirects
            .post(format!("{}/login", self.base))
            .form(&[("token", self.token.as_str())])
            .send()
            .await
            .expect("login");
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let response = no_redirects
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("page");
        response.text().await.expect("html")
    }

    /// `method path` with the admin token and an optional JSON body: (status, JSON body).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A provider, a roomy node and a member, ready for sites: (node id, member id).
    pub async fn seed(&self) -> (String, String) {
        let (status, provider) = self
            .post(
                "/api/v1/providers",
                json!({"name": "Hébergeur", "country": "fr"}),
            )
            .await;
        assert_eq!(status, 201, "{provider}");
        let (status, node) = self
            .post(
                "/api/v1/nodes",
                json!({
                    "provider_id": provider["id"], "name": "node-1", "public_addresses": ["192.0.2.10"],
                    "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 500u64 << 30}
                }),
            )
            .await;
        assert_eq!(status, 201, "{node}");
        let (status, member) = self
            .post(
                "/api/v1/members",
                json!({"display_name": "Ana", "email": "ana@exemple.org"}),
            )
            .await;
        assert_eq!(status, 201, "{member}");
        (
            node["id"].as_str().unwrap_or_default().to_owned(),
            member["id"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

impl Drop for TestPanel {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
        let _ = std::fs::remove_dir_all(&self.tls_dir);
    }
}

/// Serves the panel to people and to agents until the returned sender says so (or is
/// dropped): a graceful shutdown, which also closes idle keep-alive connections, as a real
/// panel going away would.
fn serve_until_stopped(
    store: Arc<dyn Store>,
    config: &PanelConfig,
    people: tokio::net::TcpListener,
    agents: tokio::net::TcpListener,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    tokio::sync::watch::Sender<bool>,
    AppState,
) {
    let tls = config
        .agent_tls
        .clone()
        .expect("a test panel serves agents");
    let state = AppState::new(store, config.clone()).expect("state");
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let app = alveole_panel::app(state.clone());
    let for_people = tokio::spawn({
        let (app, stopped) = (app.clone(), stopped());
        async move {
            let limits = alveole_listen::Limits::default();
            let _ = alveole_panel::serving::serve(app, people, limits, stopped).await;
        }
    });
    let for_agents = tokio::spawn({
        let (server, stopped) = (tls.server.clone(), stopped());
        async move {
            let limits = alveole_listen::Limits::default();
            let _ =
                alveole_panel::serving::serve_agents(app, agents, server, limits, stopped).await;
        }
    });
    // Background tasks, as `alveole serve` runs them: a new owner of job leases at each start,
    // as a restarted process would be.
    let background = tokio::spawn({
        let (state, stopped) = (state.clone(), stopped());
        async move {
            let _running = alveole_panel::background::start(
                state.service(),
                alveole_panel::background::owner_name(),
            );
            stopped.await;
        }
    });
    (vec![for_people, for_agents, background], shutdown, state)
}
