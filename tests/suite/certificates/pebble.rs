//! Against Debian's pebble: a site gets a certificate for its names, its node serves it by
//! SNI and redirects plain HTTP (not the challenge path), it is renewed when due, revoked on
//! demand, and ordered anew for the names the site has now; a name that points elsewhere is
//! reported without an order, and a challenge that fails is reported on the site.

use std::time::Duration;

use alveole_panel::acme::AcmeConfig;
use alveole_tests::acme::Pebble;
use alveole_tests::{TestDb, TestPanel};
use serde_json::json;

use super::*;

async fn panel_with(db: &TestDb, pebble: &Pebble) -> TestPanel {
    let mut panel = TestPanel::start(db).await;
    let config = AcmeConfig {
        contact: vec!["mailto:admins@exemple.org".into()],
        ..pebble.acme_config()
    };
    panel
        .configure(|c| {
            c.acme = Some(config);
            c.background.certificates_every = Duration::from_secs(1);
        })
        .await;
    panel
}

/// GET over HTTPS through the node's ingress for `name`, trusting pebble's root only: the
/// status, and the certificate's serial.
async fn over_https(node: &RunningNode, name: &str, root: &str) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).unwrap()])
        .resolve(name, node.https)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client
        .get(format!("https://{name}:{}/", node.https.port()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn pebble_issues_renews_and_revokes_a_sites_certificate_served_by_its_node() {
    for db in TestDb::all().await {
        let http = http_listener().await;
        let Some(pebble) =
            Pebble::start(http.local_addr().unwrap().port(), Duration::from_secs(3600)).await
        else {
            return;
        };
        let panel = panel_with(&db, &pebble).await;
        let node = node_with_agent(&panel, "acme-node", &["127.0.0.1"], http).await;
        let member = member(&panel).await;
        let site = site(
            &panel,
            &member,
            &node.node,
            &["shop.example.org", "www.shop.example.org"],
        )
        .await;

        // Issued for both names, shown with its issuer, served by SNI.
        let issued = certificate_when(&panel, &site, "a certificate", |v| {
            v["certificate"].is_object()
        })
        .await;
        let names: Vec<&str> = issued["certificate"]["names"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .collect();
        assert_eq!(names.len(), 2, "{issued}");
        assert!(names.contains(&"shop.example.org") && names.contains(&"www.shop.example.org"));
        assert_eq!(issued["certificate"]["source"], "acme");
        assert!(
            issued["certificate"]["issuer"]
                .as_str()
                .unwrap()
                .contains("Pebble"),
            "{issued}"
        );
        assert_eq!(issued["last_error"], serde_json::Value::Null);
        assert_eq!(issued["uncovered"], json!([]));
        let root = pebble.root().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // The node serves it once its document carries it (its next pass).
            match over_https(&node, "www.shop.example.org", &root).await {
                // An answer (the fake engine runs no container: not the site's own).
                Ok(status) => {
                    assert!(status == 404 || status == 502, "{status}");
                    break;
                }
                Err(error) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "HTTPS within 20 s: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Plain HTTP goes to HTTPS; a challenge's path does not.
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let ask = |path: &str| {
            plain
                .get(format!("http://{}{path}", node.http))
                .header("host", "shop.example.org")
                .send()
        };
        let redirected = ask("/cart?x=1").await.unwrap();
        assert_eq!(redirected.status(), 308);
        assert_eq!(
            redirected.headers()["location"],
            "https://shop.example.org/cart?x=1"
        );
        assert_ne!(
            ask("/.well-known/acme-challenge/unknown")
                .await
                .unwrap()
                .status(),
            308
        );
        assert_eq!(panel.events("certificate.order").await.len(), 1);
        assert_eq!(panel.events("certificate.issue").await.len(), 1);

        // Renewal: due once two thirds of its hour have passed (with jitter).
        let first_serial_at = issued["certificate"]["issued_at"].clone();
        assert!(issued["renew_at"].is_string());
        panel.clock.advance(chrono::Duration::minutes(45));
        let renewed = certificate_when(&panel, &site, "a renewal", |v| {
            v["certificate"]["issued_at"] != first_serial_at
        })
        .await;
        assert_eq!(panel.events("certificate.renew").await.len(), 1);
        assert!(renewed["last_renewal"].is_string());
        // Back to the real time: pebble's certificates are dated by it.
        panel.clock.advance(chrono::Duration::minutes(-45));

        // A name no longer on the site is never renewed: the next certificate is for the
        // names it has now.
        let path = format!("/api/v1/sites/{site}");
        let version = panel.get(&path).await.1["version"].clone();
        let (status, _) = panel
            .call(
                reqwest::Method::PATCH,
                &path,
                Some(json!({"version": version, "aliases": []})),
            )
            .await;
        assert_eq!(status, 200);
        let narrowed = certificate_when(&panel, &site, "a certificate for one name", |v| {
            v["certificate"]["names"] == json!(["shop.example.org"])
        })
        .await;

        // Revoked at the CA, then ordered anew.
        let (status, revoked) = panel
            .post(
                &format!("/api/v1/sites/{site}/certificate/revoke"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{revoked}");
        assert_eq!(revoked["certificate"], serde_json::Value::Null);
        assert_eq!(panel.events("certificate.revoke").await.len(), 1);
        let serial = narrowed["certificate"]["serial"].as_str().unwrap();
        assert!(
            pebble.revoked(serial).await,
            "pebble says {serial} is revoked"
        );
        certificate_when(&panel, &site, "a certificate after the revocation", |v| {
            v["certificate"]["issued_at"].is_string()
                && v["certificate"]["issued_at"] != narrowed["certificate"]["issued_at"]
        })
        .await;

        // A name that points elsewhere: reported, and no order spent on it.
        pebble.point("elsewhere.example.org", "203.0.113.9").await;
        let orders = panel.events("certificate.order").await.len();
        let elsewhere = site_on(&panel, &member, &node, "elsewhere.example.org").await;
        let reported = certificate_when(&panel, &elsewhere, "the name reported", |v| {
            v["last_error"].is_string()
        })
        .await;
        let error = reported["last_error"].as_str().unwrap();
        assert!(
            error.contains("elsewhere.example.org points to 203.0.113.9")
                && error.contains("127.0.0.1"),
            "{error}"
        );
        assert_eq!(reported["certificate"], serde_json::Value::Null);
        assert_eq!(panel.events("certificate.order").await.len(), orders);
        node.stop().await;
        db.drop_db().await;
    }
}

async fn site_on(panel: &TestPanel, member: &str, node: &RunningNode, name: &str) -> String {
    site(panel, member, &node.node, &[name]).await
}

#[tokio::test]
async fn a_challenge_that_fails_is_reported_on_the_site_and_backs_off() {
    let db = TestDb::sqlite().await;
    let http = http_listener().await;
    let Some(pebble) =
        Pebble::start(http.local_addr().unwrap().port(), Duration::from_secs(3600)).await
    else {
        return;
    };
    let panel = panel_with(&db, &pebble).await;
    // The node says it answers on 127.0.0.2 too, but its ingress listens on 127.0.0.1 only:
    // the CA's validation cannot reach it there.
    let node = node_with_agent(&panel, "acme-half", &["127.0.0.1", "127.0.0.2"], http).await;
    pebble.point("unreachable.example.org", "127.0.0.2").await;
    let member = member(&panel).await;
    let site = site(&panel, &member, &node.node, &["unreachable.example.org"]).await;
    let failed = certificate_when(&panel, &site, "the failure reported", |v| {
        v["last_error"].is_string()
    })
    .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("unreachable.example.org"), "{error}");
    assert!(failed["retry_at"].is_string(), "it backs off: {failed}");
    assert_eq!(failed["certificate"], serde_json::Value::Null);
    let fails = panel.events("certificate.fail").await;
    assert_eq!(fails.len(), 1, "audited once, then it waits");
    assert!(
        fails[0].after.as_ref().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("unreachable.example.org")
    );
    node.stop().await;
    db.drop_db().await;
}
