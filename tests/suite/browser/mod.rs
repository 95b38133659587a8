//! The pages in a real browser: headless Chromium driven through chromedriver (WebDriver).

mod backups;
mod lemonldap;
mod waiting_room;

use alveole_agent::control::panel::Control;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alveole_tests::{TestDb, TestPanel, skip_or_fail};
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver on a free port, killed when dropped; it and its browsers keep their
/// temporary files in a directory of their own, removed with it.
pub(crate) struct Driver {
    child: Child,
    url: String,
    scratch: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A browser outlives its driver, still writing its profile into the scratch
        // directory: stop the browsers that use it (bounded), so that it goes with them.
        let path = self.scratch.path().display().to_string();
        for _ in 0..50 {
            let signalled = Command::new("pkill")
                .args(["-f", &path])
                .status()
                .is_ok_and(|status| status.success());
            if !signalled {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub(crate) async fn start_driver() -> Option<Driver> {
    alveole_tests::init();
    let binary = ["chromedriver", "/usr/bin/chromedriver"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok());
    let Some(binary) = binary else {
        skip_or_fail(
            "chromium-driver",
            "chromedriver is not installed (.ci/run installs it)",
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let scratch = alveole_tests::temp_dir("alveole-chromium-");
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .env("TMPDIR", scratch.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        scratch,
    };
    // Wait for the driver to answer its status endpoint (bounded).
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    browser_with(driver, &[]).await
}

/// A browser with more command-line arguments (which names lead where, which CA to trust).
pub(crate) async fn browser_with(driver: &Driver, extra: &[String]) -> Client {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--lang=en-US",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(extra.iter().cloned());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": args }),
    );
    // The driver listens on loopback over plain HTTP: no TLS stack (and none of its
    // crypto backends) in the test build.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("start chromium")
}

/// The text of `css` once it satisfies `ready` (pages load after a click: wait for the
/// condition, bounded, instead of sleeping).
pub(crate) async fn text_when(client: &Client, css: &str, ready: impl Fn(&str) -> bool) -> String {
    text_within(client, css, ready, Duration::from_secs(10)).await
}

/// [`text_when`] within `within`; the element is looked for again each time, since the one
/// found may belong to a page being replaced. Panics naming where the browser is.
pub(crate) async fn text_within(
    client: &Client,
    css: &str,
    ready: impl Fn(&str) -> bool,
    within: Duration,
) -> String {
    let deadline = std::time::Instant::now() + within;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if ready(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = client.current_url().await.map(|u| u.to_string());
    panic!("{css} never became ready; last text {last:?}, at {at:?}");
}

pub(crate) async fn text_of(client: &Client, css: &str) -> String {
    text_when(client, css, |_| true).await
}

pub(crate) async fn open(client: &Client, panel: &TestPanel, path: &str) {
    let url = format!("{}{path}", panel.base);
    client
        .goto(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
}

pub(crate) async fn click(client: &Client, id: &str) {
    let element = client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    element
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

pub(crate) async fn fill(client: &Client, id: &str, value: &str) {
    let input = client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

#[tokio::test]
async fn browser_admin_signs_in_creates_a_site_sees_errors_and_switches_to_french() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node, _) = panel.seed().await;
    let client = browser(&driver).await;
    signs_in(&client, &panel).await;
    let site_id = creates_a_site_and_reads_it_back(&client, &panel).await;
    sees_field_errors_with_its_input_kept(&client, &panel).await;
    let other = moves_an_address(&client, &panel, &node).await;
    moves_a_site_then_cancels(&client, &panel, &site_id, &other).await;
    plans_and_runs_an_evacuation(&client, &panel, &node, &other).await;
    enrols_a_nodes_agent(&client, &panel, &node).await;
    reads_it_all_in_french(&client, &panel, &site_id).await;
    client.close().await.expect("close");
    db.drop_db().await;
}

/// Not signed in: sent to the login page; a wrong token is refused, the right one signs in.
async fn signs_in(client: &Client, panel: &TestPanel) {
    open(client, panel, "/sites").await;
    assert!(
        client
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/login")
    );
    fill(client, "token", "alv_wrong").await;
    click(client, "login-submit").await;
    text_when(client, "#login-error", |t| !t.is_empty()).await;

    fill(client, "token", &panel.token).await;
    click(client, "login-submit").await;
    text_when(client, "h1", |t| t == "Dashboard").await;
    assert_eq!(text_of(client, "#count-nodes").await, "1");
}

/// A site made through the form (a tier, ports, a secret): listed, and its edit form shows
/// what was written but not the secret. Returns its id.
async fn creates_a_site_and_reads_it_back(client: &Client, panel: &TestPanel) -> String {
    open(client, panel, "/sites/new").await;
    fill(client, "primary_domain", "Formulaire.Example.ORG").await;
    fill(client, "image", "registry.example.org/coop/site:1").await;
    fill(client, "secret_env", "DB_PASSWORD=browser-secret-123").await;
    fill(client, "exposed_ports", "tcp 2222:22\nudp 5353").await;
    client
        .find(Locator::Css("#limit_tier option[value='large']"))
        .await
        .expect("the large tier")
        .click()
        .await
        .expect("choose it");
    click(client, "save").await;
    text_when(client, "h1", |t| t == "formulaire.example.org").await;
    let (_, sites) = panel.get("/api/v1/sites").await;
    let site = &sites["items"][0];
    let site_id = site["id"].as_str().unwrap().to_owned();
    assert_eq!(site["limit_tier"], "large", "{site}");
    assert_eq!(
        site["exposed_ports"],
        serde_json::json!([{"protocol": "tcp", "port": 2222, "container_port": 22},
                           {"protocol": "udp", "port": 5353, "container_port": 5353}])
    );
    // Its edit form shows them as they were written.
    open(
        client,
        panel,
        &format!("/sites/{}/edit", site["id"].as_str().unwrap()),
    )
    .await;
    let shown = client
        .find(Locator::Id("exposed_ports"))
        .await
        .expect("field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(shown.as_deref(), Some("tcp 2222:22\nudp 5353"));
    assert!(
        !client
            .source()
            .await
            .expect("html")
            .contains("browser-secret-123"),
        "the secret is not shown"
    );
    open(client, panel, "/sites").await;
    assert!(
        text_of(client, "#list")
            .await
            .contains("formulaire.example.org")
    );
    site_id
}

/// Bad input: the message sits next to its field, the input is kept, nothing is saved.
async fn sees_field_errors_with_its_input_kept(client: &Client, panel: &TestPanel) {
    open(client, panel, "/sites/new").await;
    fill(client, "primary_domain", "bad;name.org").await;
    fill(client, "image", "registry.example.org/coop/site:1").await;
    click(client, "save").await;
    text_when(client, "p.error[data-field='primary_domain']", |t| {
        t.contains("letters, digits and hyphens")
    })
    .await;
    let kept = client
        .find(Locator::Id("primary_domain"))
        .await
        .expect("field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some("bad;name.org"));
    let kept_image = client
        .find(Locator::Id("image"))
        .await
        .expect("field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(
        kept_image.as_deref(),
        Some("registry.example.org/coop/site:1")
    );
    assert_eq!(
        panel.store.counts().await.expect("counts").sites,
        1,
        "nothing saved"
    );
    // Port 443 belongs to the ingress: said next to the ports, nothing saved.
    open(client, panel, "/sites/new").await;
    fill(client, "primary_domain", "ports.example.org").await;
    fill(client, "image", "registry.example.org/coop/site:1").await;
    fill(client, "exposed_ports", "tcp 443").await;
    click(client, "save").await;
    text_when(client, "p.error[data-field='exposed_ports']", |t| {
        t.contains("443")
    })
    .await;
    assert_eq!(panel.store.counts().await.expect("counts").sites, 1);
}

/// An address moves to another node from the addresses page: it waits for the old node.
/// Returns the other node.
async fn moves_an_address(client: &Client, panel: &TestPanel, node: &str) -> serde_json::Value {
    let (_, view) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    let (status, other) = panel
        .post(
            "/api/v1/nodes",
            serde_json::json!({
                "provider_id": view["provider_id"], "name": "node-2", "public_addresses": ["192.0.2.11"],
                "capacity": {"cpu_millis": 1000, "memory_bytes": 1u64 << 30, "disk_bytes": 10u64 << 30}
            }),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let (_, pool) = panel
        .post(
            "/api/v1/ip-pools",
            serde_json::json!({"provider_id": view["provider_id"], "prefix": "203.0.113.0/29"}),
        )
        .await;
    let (status, _) = panel
        .post(
            &format!(
                "/api/v1/ip-pools/{}/allocations",
                pool["id"].as_str().unwrap()
            ),
            serde_json::json!({"node_id": node}),
        )
        .await;
    assert_eq!(status, 201);
    open(client, panel, "/addresses").await;
    client
        .find(Locator::Css(
            "tr[data-address='203.0.113.1'] form.move button",
        ))
        .await
        .expect("the move button")
        .click()
        .await
        .expect("move");
    text_when(client, "tr[data-address='203.0.113.1'] td.moving", |t| {
        t.contains("node-2") && t.contains("old node")
    })
    .await;
    let (_, moves) = panel.get("/api/v1/address-moves").await;
    assert_eq!(moves[0]["to_node"], other["id"], "{moves}");
    other
}

/// A site's page shows its moves and moves it: refused while the target's agent has never
/// reported, then started, and cancelled from the same page.
async fn moves_a_site_then_cancels(
    client: &Client,
    panel: &TestPanel,
    site_id: &str,
    other: &serde_json::Value,
) {
    open(client, panel, &format!("/sites/{site_id}")).await;
    text_when(client, "#no-moves", |t| t.contains("not moved yet")).await;
    click(client, "move").await;
    text_when(client, "body", |t| {
        t.contains("its agent has never reported")
    })
    .await;
    let target = panel.agent_client();
    target
        .authenticate(&panel.enrol(other["id"].as_str().unwrap()).await)
        .unwrap();
    let report: alveole_model::NodeReport = serde_json::from_value(serde_json::json!({
        "generation": null, "sites": [], "agent_version": "test",
        "resources": {"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
                      "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1},
        "endpoints": {"peer": "127.0.0.1:9", "ingress": "127.0.0.1:10"}
    }))
    .unwrap();
    target.report(&report).await.unwrap();
    open(client, panel, &format!("/sites/{site_id}")).await;
    click(client, "move").await;
    text_when(client, "tr.move[data-phase='copying']", |t| {
        t.contains("node-1 → node-2") && t.contains("copying")
    })
    .await;
    click(client, "cancel-move").await;
    text_when(client, "tr.move[data-phase='cancelled']", |t| {
        t.contains("cancelled")
    })
    .await;
}

/// The evacuations page plans emptying node-1, then starts it; no agent moves the site here,
/// so its move is cancelled and the evacuation ends incomplete, naming the site left.
async fn plans_and_runs_an_evacuation(
    client: &Client,
    panel: &TestPanel,
    node: &str,
    other: &serde_json::Value,
) {
    // The dashboard says whether each provider could be left within the notice.
    open(client, panel, "/").await;
    text_when(client, "#exit-readiness", |t| t.contains("Hébergeur")).await;
    open(client, panel, "/evacuations").await;
    client
        .find(Locator::Id("scope"))
        .await
        .expect("the scope")
        .select_by_value(&format!("node:{node}"))
        .await
        .expect("choose node-1");
    click(client, "plan").await;
    text_when(client, "#plan-result .statement", |t| {
        t.contains("1 sites moved")
    })
    .await;
    click(client, "start-evacuation").await;
    text_when(client, "tr.evacuation", |t| t.contains("node-1")).await;
    let (_, evacuations) = panel.get("/api/v1/evacuations").await;
    assert_eq!(evacuations[0]["items"][0]["to_node"], other["id"]);
    // No agent moves it here: its move is cancelled, and the evacuation ends without it.
    let job = evacuations[0]["id"].as_str().unwrap().to_owned();
    let mut ended = false;
    for _ in 0..200 {
        let (_, evacuation) = panel.get(&format!("/api/v1/evacuations/{job}")).await;
        if let Some(move_id) = evacuation["items"][0]["move_id"].as_str()
            && evacuation["items"][0]["state"] == "moving"
        {
            panel
                .post(
                    &format!("/api/v1/site-moves/{move_id}/cancel"),
                    serde_json::json!({}),
                )
                .await;
        }
        if evacuation["finished_at"].is_string() {
            assert_eq!(evacuation["state"], "incomplete", "{evacuation}");
            assert_eq!(evacuation["items"][0]["state"], "failed", "{evacuation}");
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "the evacuation ended");
    // The page says what is left, and why.
    open(client, panel, "/evacuations").await;
    text_when(client, "tr.remaining", |t| {
        t.contains("Still on the nodes being emptied") && t.contains("its move was cancelled")
    })
    .await;
}

/// A node's page offers to enrol its agent: the command comes with a one-time token.
async fn enrols_a_nodes_agent(client: &Client, panel: &TestPanel, node: &str) {
    open(client, panel, &format!("/nodes/{node}")).await;
    click(client, "action-1").await;
    text_when(client, "p.message", |t| {
        t.contains("alveole agent --panel-url") && t.contains("--join-token alj_")
    })
    .await;
}

/// Switched to French: the pages and the field messages follow.
async fn reads_it_all_in_french(client: &Client, panel: &TestPanel, site_id: &str) {
    open(client, panel, "/sites/new").await;
    click(client, "lang-fr").await;
    text_when(client, "h1", |t| t == "Tableau de bord").await;
    open(client, panel, "/sites/new").await;
    text_when(client, "h1", |t| t == "Nouveau site").await;
    fill(client, "primary_domain", "bad;name.org").await;
    click(client, "save").await;
    text_when(client, "p.error[data-field='primary_domain']", |t| {
        t.contains("lettres, des chiffres et des tirets")
    })
    .await;
    fill(client, "primary_domain", "ports.example.org").await;
    fill(client, "image", "registry.example.org/coop/site:1").await;
    fill(client, "exposed_ports", "tcp 443").await;
    click(client, "save").await;
    text_when(client, "p.error[data-field='exposed_ports']", |t| {
        t.contains("passent par l'ingress")
    })
    .await;

    open(client, panel, &format!("/sites/{site_id}")).await;
    text_when(client, "#moves h2", |t| t == "Déménagements").await;
    text_when(client, "tr.move[data-phase='cancelled']", |t| {
        t.contains("annulé")
    })
    .await;
    open(client, panel, "/evacuations").await;
    text_when(client, "h1", |t| t == "Évacuations").await;
    text_when(client, "tr.evacuation", |t| t.contains("incomplète")).await;
}

#[tokio::test]
async fn browser_a_member_signs_in_at_the_identity_provider_and_out_again() {
    use alveole_tests::OidcProvider;

    let Some(driver) = start_driver().await else {
        return;
    };
    let users = [serde_json::json!({
        "sub": "ana-at-idp", "email": "ana@example.org", "email_verified": true,
        "groups": ["coop-admins"]
    })];
    let Some(provider) = OidcProvider::start(&users).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let issuer = provider.issuer.clone();
    let panel = TestPanel::start_with_oidc(&db, |base| alveole_panel::oidc::OidcConfig {
        issuer,
        client_id: "alveole".into(),
        client_secret: Some("not-a-secret".into()),
        scopes: vec!["email".into()],
        groups_claim: "groups".into(),
        roles: alveole_panel::oidc::parse_roles("coop-admins=admin").unwrap(),
        redirect_url: format!("{base}/login/oidc/callback"),
    })
    .await;
    let (status, _) = panel
        .post(
            "/api/v1/members",
            serde_json::json!({"display_name": "Ana", "email": "ana@example.org"}),
        )
        .await;
    assert_eq!(status, 201);
    let client = browser(&driver).await;

    // The panel sends her to the provider's own page; she signs in there.
    open(&client, &panel, "/sites").await;
    click(&client, "login-oidc").await;
    let at_provider = client
        .wait()
        .for_element(Locator::Css("button[value='ana-at-idp']"))
        .await
        .expect("the provider's login page");
    at_provider.click().await.expect("sign in at the provider");

    // Back on the panel: the dashboard, as an admin (her groups say so).
    let role = text_when(&client, "#whoami", |t| !t.is_empty()).await;
    assert_eq!(role, "admin");
    assert!(text_of(&client, "h1").await.contains("Dashboard"));
    let member = panel
        .store
        .member_by_email("ana@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        panel.store.members().get(member).await.unwrap().role,
        alveole_model::Role::Admin
    );

    // Signing out ends the session (and visits the provider's sign-out): the panel asks to
    // sign in again.
    let signed_in_at = client.current_url().await.expect("url");
    click(&client, "logout").await;
    // Bounded: the browser leaves the page once the sign-out is answered.
    for _ in 0..200 {
        if client.current_url().await.ok().as_ref() != Some(&signed_in_at) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open(&client, &panel, "/sites").await;
    text_when(&client, "h1", |t| t.contains("Sign in")).await;
    client.close().await.expect("close");
    drop(provider);
    db.drop_db().await;
}
