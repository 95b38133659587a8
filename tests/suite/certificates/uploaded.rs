//! A member's own certificate: each refusal on its field, nothing kept from a refused one;
//! an accepted one is served by the site's node (with HSTS when the site asks), ACME orders
//! nothing for the site meanwhile, and its removal is audited.

use std::time::Duration;

use alveole_tests::{TestDb, TestPanel};
use serde_json::json;

use super::*;

struct Issuer {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn issuer() -> Issuer {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test Co-op CA");
    let pem = params.self_signed(&key).unwrap().pem();
    Issuer {
        issuer: rcgen::Issuer::new(params, key),
        pem,
    }
}

/// A certificate for `names`, valid from `days_from` to `days_to` days from now: its chain
/// (leaf, then the CA) and its key.
fn certificate(ca: &Issuer, names: &[&str], days_from: i64, days_to: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(days_from);
    params.not_after = now + time::Duration::days(days_to);
    let leaf = params.signed_by(&key, &ca.issuer).unwrap();
    (format!("{}{}", leaf.pem(), ca.pem), key.serialize_pem())
}

async fn upload(panel: &TestPanel, site: &str, chain: &str, key: &str) -> (u16, serde_json::Value) {
    panel
        .post(
            &format!("/api/v1/sites/{site}/certificate"),
            json!({"chain_pem": chain, "key_pem": key}),
        )
        .await
}

fn codes(problem: &serde_json::Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_members_own_certificate_is_checked_kept_sealed_and_served() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let node = node_with_agent(&panel, "own-node", &["127.0.0.1"], http_listener().await).await;
        let member = member(&panel).await;
        let site = site(
            &panel,
            &member,
            &node.node,
            &["own.example.org", "*.own.example.org"],
        )
        .await;
        let ca = issuer();
        let other_ca = issuer();

        let (good, good_key) = certificate(&ca, &["own.example.org", "*.own.example.org"], -1, 90);
        let (_, other_key) = certificate(&ca, &["own.example.org"], -1, 90);
        let (expired, expired_key) = certificate(&ca, &["own.example.org"], -100, -10);
        let (foreign, foreign_key) =
            certificate(&ca, &["own.example.org", "shop.example.net"], -1, 90);
        // The leaf first, then a CA that did not sign it.
        let (misordered, misordered_key) = {
            let (chain, key) = certificate(&ca, &["own.example.org"], -1, 90);
            let leaf = chain
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap()
                .to_owned();
            (format!("{leaf}{}", other_ca.pem), key)
        };
        for (chain, key, expected) in [
            (&good, &other_key, ("key_pem", "certificate.key_mismatch")),
            (&expired, &expired_key, ("chain_pem", "certificate.expired")),
            (
                &foreign,
                &foreign_key,
                ("chain_pem", "certificate.foreign_names"),
            ),
            (
                &misordered,
                &misordered_key,
                ("chain_pem", "certificate.bad_chain"),
            ),
            (
                &"not a certificate".to_owned(),
                &good_key,
                ("chain_pem", "certificate.unreadable"),
            ),
            (
                &good,
                &"not a key".to_owned(),
                ("key_pem", "key.unreadable"),
            ),
        ] {
            let (status, problem) = upload(&panel, &site, chain, key).await;
            assert_eq!(status, 400, "{problem}");
            assert!(
                codes(&problem).contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} in {problem}"
            );
        }
        let (_, view) = panel
            .get(&format!("/api/v1/sites/{site}/certificate"))
            .await;
        assert_eq!(
            view["certificate"],
            serde_json::Value::Null,
            "nothing kept: {view}"
        );
        assert!(panel.events("certificate.upload").await.is_empty());

        // Accepted: kept with its key sealed, shown without it, served by SNI.
        let (status, view) = upload(&panel, &site, &good, &good_key).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["certificate"]["source"], "uploaded");
        assert!(!view.to_string().contains("PRIVATE KEY"));
        let dump = db.dump().await;
        assert!(!dump.contains("PRIVATE KEY"), "the key is sealed at rest");
        let events = panel.events("certificate.upload").await;
        assert_eq!(events.len(), 1);
        assert!(
            !serde_json::to_string(&events[0].after)
                .unwrap()
                .contains("PRIVATE")
        );

        // HSTS asked for: on HTTPS answers.
        let path = format!("/api/v1/sites/{site}");
        let version = panel.get(&path).await.1["version"].clone();
        let (status, changed) = panel
            .call(
                reqwest::Method::PATCH,
                &path,
                Some(json!({"version": version, "https": {"hsts_seconds": 63072001}})),
            )
            .await;
        assert_eq!(status, 400, "{changed}");
        assert!(codes(&changed).contains(&("https.hsts_seconds".to_owned(), "range".to_owned())));
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
            .resolve("a.own.example.org", node.https)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match client
                .get(format!("https://a.own.example.org:{}/", node.https.port()))
                .send()
                .await
            {
                // An answer (the fake engine runs no container: not the site's own).
                Ok(answer) => {
                    assert!([404, 502].contains(&answer.status().as_u16()));
                    break;
                }
                Err(error) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the wildcard name over HTTPS within 20 s: {error:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let (status, removed) = panel
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/sites/{site}/certificate"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{removed}");
        assert_eq!(removed["certificate"], serde_json::Value::Null);
        assert_eq!(panel.events("certificate.remove").await.len(), 1);
        let (status, _) = panel
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/sites/{site}/certificate"),
                None,
            )
            .await;
        assert_eq!(status, 404, "nothing left to remove");
        node.stop().await;
        db.drop_db().await;
    }
}
