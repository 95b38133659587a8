//! HTTPS: a member's own certificate put in place and removed, through the API and the
//! pages; a revocation refused for it (no event). ACME's own events (orders, issues,
//! renewals, failures) are walked against pebble in `certificates::pebble`.

use serde_json::json;

use super::api::Made;
use super::pages::PageMade;
use super::{Walk, id_of};

/// A self-signed certificate for `name`, and its key, in PEM.
fn own_certificate(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (certificate.pem(), key.serialize_pem())
}

pub(super) async fn api_certificates(walk: &mut Walk<'_>, made: &Made) {
    let site = &made.site;
    let (_, current) = walk.panel.get(&format!("/api/v1/sites/{site}")).await;
    let (chain, key) = own_certificate(current["primary_domain"].as_str().unwrap());
    let path = format!("/api/v1/sites/{site}/certificate");
    walk.act(&path, json!({"chain_pem": chain, "key_pem": key}), 200)
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/sites/{id}/certificate",
        "certificate.upload",
        site.clone(),
    )
    .await;
    // A member's own certificate is revoked at its CA, not here: nothing recorded.
    walk.act(&format!("{path}/revoke"), json!({}), 409).await;
    walk.expect("POST", "/api/v1/sites/{id}/certificate/revoke", &[])
        .await;
    let (status, body) = walk.panel.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{body}");
    walk.by_admin(
        "DELETE",
        "/api/v1/sites/{id}/certificate",
        "certificate.remove",
        site.clone(),
    )
    .await;
}

pub(super) async fn page_certificates(walk: &mut Walk<'_>, made: &PageMade) {
    let mut body = super::site_body(&made.member, "page-https.example.org");
    body["node_id"] = json!(made.node);
    let site = id_of(&walk.create("/api/v1/sites", body).await);
    walk.pass_over(1); // site.create
    let (chain, key) = own_certificate("page-https.example.org");
    made.browser
        .submit(
            &format!("/sites/{site}/certificate"),
            &[("chain_pem", &chain), ("key_pem", &key)],
        )
        .await;
    walk.by_admin(
        "POST",
        "/sites/{id}/certificate",
        "certificate.upload",
        site.clone(),
    )
    .await;
    made.browser
        .submit(&format!("/sites/{site}/certificate/remove"), &[])
        .await;
    walk.by_admin(
        "POST",
        "/sites/{id}/certificate/remove",
        "certificate.remove",
        site.clone(),
    )
    .await;
    walk.delete(&format!("/api/v1/sites/{site}")).await;
    walk.pass_over(1); // site.delete
}
