//! A real site over HTTPS in a real browser: its certificate ordered from Debian's pebble
//! (validated through the node's ingress), served by SNI, with pebble's root trusted by
//! Chromium; plain HTTP redirected.

use std::net::SocketAddr;
use std::time::Duration;

use alveole_tests::acme::Pebble;
use alveole_tests::{TestDb, TestPanel};
use serde_json::json;

use super::*;
use crate::browser::{browser_with, start_driver, text_when};

/// The base64 SHA-256 of a certificate's public key (what Chromium's
/// `--ignore-certificate-errors-spki-list` names a trusted key by), with `openssl`.
fn spki_hash(pem: &str) -> String {
    let script = "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der \
                  | openssl dgst -sha256 -binary | base64";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), pem.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn docker_a_browser_opens_a_site_over_https_with_a_certificate_from_pebble() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let Some(driver) = start_driver().await else {
        return;
    };
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let Some(pebble) = Pebble::start(http_port, Duration::from_secs(3600)).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    let config = pebble.acme_config();
    panel
        .configure(|c| {
            c.acme = Some(config);
            c.background.certificates_every = Duration::from_secs(1);
        })
        .await;
    let (_, member) = panel.seed().await;
    let (_, provider) = panel
        .post("/api/v1/providers", json!({"name": "HTTPS provider"}))
        .await;
    let (status, node) = panel
        .post(
            "/api/v1/nodes",
            json!({
                "provider_id": provider["id"], "name": "https-node",
                "public_addresses": ["127.0.0.1"],
                "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30, "disk_bytes": 100u64 << 30}
            }),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    let node = node["id"].as_str().unwrap().to_owned();
    let setup = super::moves::enrolled(&panel, &node).await;
    let _cleanup = NodeCleanup::new([setup.id]);
    let ingress: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent = super::moves::start_agent(&panel, &setup, ingress, any).await;

    const HOST: &str = "shop.example.org";
    let (status, site) = panel
        .post(
            "/api/v1/sites",
            json!({
                "owner_id": member, "primary_domain": HOST, "image": TEST_IMAGE,
                "command": hello_command(), "env": [{"name": "SITE_NAME", "value": "shop"}],
                "node_id": node, "https": {"hsts_seconds": 300},
                "limits": {"cpu_millis": 250, "memory_bytes": 67108864, "pids": 64}
            }),
        )
        .await;
    assert_eq!(status, 201, "{site}");
    let site = site["id"].as_str().unwrap().to_owned();
    let root = pebble.root().await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).unwrap()])
        .resolve(HOST, agent.https)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://{HOST}:{}/", agent.https.port());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let answer = loop {
        panel
            .service()
            .poke(alveole_panel::background::Task::Certificates);
        if let Ok(answer) = client.get(&url).send().await
            && answer.status() == 200
        {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the site over HTTPS within 90 s: {:?}",
            panel
                .get(&format!("/api/v1/sites/{site}/certificate"))
                .await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(answer.headers()["strict-transport-security"], "max-age=300");
    assert_eq!(answer.text().await.unwrap(), "hello from shop\n");

    // Chromium, trusting pebble's CA (by the keys of its root and of the intermediate the
    // node sends along) and sending the name to loopback.
    let trusted = format!(
        "{},{}",
        spki_hash(&root),
        spki_hash(&pebble.intermediate().await)
    );
    let browser = browser_with(
        &driver,
        &[
            format!("--ignore-certificate-errors-spki-list={trusted}"),
            format!("--host-resolver-rules=MAP {HOST} 127.0.0.1"),
        ],
    )
    .await;
    browser.goto(&url).await.unwrap();
    let body = text_when(&browser, "body", |t| t.contains("hello from shop")).await;
    assert!(body.contains("hello from shop"));
    let protocol = browser
        .execute("return window.location.protocol", vec![])
        .await
        .unwrap();
    assert_eq!(protocol, "https:");
    browser.close().await.unwrap();

    // Plain HTTP goes to HTTPS.
    let redirected = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{ingress}/basket"))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("https://{HOST}/basket")
    );
    drop(agent);
    db.drop_db().await;
}
