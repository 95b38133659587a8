//! Backups on the site's page, in Chromium: the edit form refuses a copy at the site's own
//! provider next to its field, takes one elsewhere; the page then shows the backups, asks for
//! one now, starts a restore whose progress shows, and a drill whose failure and alert show
//! (in French too, with the evacuations page's recovery form).

use fantoccini::{Client, Locator};
use serde_json::json;

use super::{browser, click, fill, open, start_driver, text_when};
use alveole_tests::{TestDb, TestPanel};

/// Chooses `value` in the select `id`.
async fn choose(client: &Client, id: &str, value: &str) {
    client
        .find(Locator::Css(&format!(
            "[id='{id}'] option[value='{value}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("{id} = {value}: {e}"))
        .click()
        .await
        .expect("choose");
}

#[tokio::test]
async fn browser_a_sites_backups_are_set_asked_for_and_restored_from_its_page() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node, member) = panel.seed().await;
    let (_, seeded) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    let (_, elsewhere) = panel
        .post("/api/v1/providers", json!({"name": "Ailleurs"}))
        .await;
    let target = |name: &str, provider: &serde_json::Value| json!({"name": name, "url": "https://backup.example.org/", "provider_id": provider});
    let (_, here) = panel
        .post(
            "/api/v1/backup-targets",
            target("ici", &seeded["provider_id"]),
        )
        .await;
    let (_, far) = panel
        .post("/api/v1/backup-targets", target("loin", &elsewhere["id"]))
        .await;
    let (status, site) = panel
        .post(
            "/api/v1/sites",
            json!({"owner_id": member, "primary_domain": "page.example.org",
                   "image": "registry.example.org/coop/site:1", "node_id": node}),
        )
        .await;
    assert_eq!(status, 201, "{site}");
    let id = site["id"].as_str().unwrap();
    let client = browser(&driver).await;
    open(&client, &panel, "/login").await;
    fill(&client, "token", &panel.token).await;
    click(&client, "login-submit").await;
    text_when(&client, "h1", |t| t == "Dashboard").await;

    // The site's page says it has no backups; its form refuses a copy at its own provider.
    open(&client, &panel, &format!("/sites/{id}")).await;
    text_when(&client, "#no-backups", |t| t.contains("No backups")).await;
    open(&client, &panel, &format!("/sites/{id}/edit")).await;
    choose(&client, "backup.targets", here["id"].as_str().unwrap()).await;
    click(&client, "save").await;
    let refusal = text_when(&client, "p.error[data-field='backup.targets']", |t| {
        !t.is_empty()
    })
    .await;
    assert!(
        refusal.contains("ici is at the site's provider"),
        "{refusal}"
    );
    // Elsewhere, it is saved.
    choose(&client, "backup.targets", far["id"].as_str().unwrap()).await;
    click(&client, "save").await;
    text_when(&client, "h1", |t| t == "page.example.org").await;
    let (_, read) = panel.get(&format!("/api/v1/sites/{id}")).await;
    assert_eq!(read["backup"]["targets"], json!([far["id"]]));

    // A backup now, then a restore of one file: both on the page.
    text_when(&client, "#backup-targets", |t| t.contains("loin")).await;
    click(&client, "back-up-now").await;
    text_when(&client, "#backups", |t| t.contains("backup asked for at")).await;
    fill(&client, "restore-paths", "/www/index.html").await;
    click(&client, "restore").await;
    let row = text_when(&client, "#restores", |t| t.contains("/www/index.html")).await;
    assert!(row.contains("restoring"), "{row}");
    assert_eq!(panel.events("restore.start").await.len(), 1);

    // A drill now: no node of another provider has reported, so it fails at once, and the
    // page shows it, with the alert and why; in French too.
    click(&client, "drill-now").await;
    let drill = text_when(&client, "#drills", |t| t.contains("failed")).await;
    assert!(drill.contains("no node of another provider"), "{drill}");
    let alert = text_when(&client, "p.backup-alert", |t| !t.is_empty()).await;
    assert!(alert.contains("Drill failed"), "{alert}");
    click(&client, "lang-fr").await;
    open(&client, &panel, &format!("/sites/{id}")).await;
    text_when(&client, "#drills", |t| t.contains("échoué")).await;
    text_when(&client, "p.backup-alert", |t| t.contains("Exercice échoué")).await;
    // The evacuations page offers to recover a lost node, in French.
    open(&client, &panel, "/evacuations").await;
    text_when(&client, "#recover-form", |t| t.contains("Tapez « lost »")).await;
    client.close().await.expect("close");
    db.drop_db().await;
}
