//! A site's databases: a new password recorded without it (the database itself comes and goes
//! with site edits, walked with the records).

use alveole_tests::TestPanel;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::Made;
use super::pages::PageMade;
use super::{Walk, id_of};

/// Sets the site's databases (one `site.update`, walked with the records).
async fn set_databases(panel: &TestPanel, path: &str, databases: Value) {
    let (_, current) = panel.get(path).await;
    let patch = json!({"version": current["version"], "databases": databases});
    let (status, body) = panel.call(Method::PATCH, path, Some(patch)).await;
    assert_eq!(status, 200, "{body}");
}

pub(super) async fn api_databases(walk: &mut Walk<'_>, made: &Made) {
    let path = format!("/api/v1/sites/{}", made.site);
    let app = json!([{"name": "app", "engine": "mariadb", "version": "10.11"}]);
    set_databases(walk.panel, &path, app).await;
    walk.pass_over(1);
    let rotated = walk
        .act(&format!("{path}/databases/app/password"), json!({}), 200)
        .await;
    assert_eq!(rotated[0]["name"], "app");
    walk.by_admin(
        "POST",
        "/api/v1/sites/{id}/databases/{name}/password",
        "database.password_rotate",
        made.site.clone(),
    )
    .await;
    // An unknown database: nothing recorded.
    walk.act(&format!("{path}/databases/other/password"), json!({}), 404)
        .await;
    // An import its node's agent cannot take (the walk's agents serve no peers): nothing
    // recorded. A real one is in `docker::database_backups`.
    let (status, body) = walk
        .panel
        .call(
            Method::PUT,
            &format!("{path}/databases/app/dump"),
            Some(json!("SELECT 1;")),
        )
        .await;
    assert!(matches!(status, 409 | 502), "{status} {body}");
    walk.expect("PUT", "/api/v1/sites/{id}/databases/{name}/dump", &[])
        .await;
    set_databases(walk.panel, &path, json!([])).await;
    walk.pass_over(1);
}

pub(super) async fn page_databases(walk: &mut Walk<'_>, made: &PageMade) {
    let mut body = super::site_body(&made.member, "page-db.example.org");
    body["node_id"] = json!(made.node);
    body["databases"] = json!([{"name": "app", "engine": "postgresql", "version": "15"}]);
    let site = id_of(&walk.create("/api/v1/sites", body).await);
    walk.pass_over(1); // site.create
    made.browser
        .submit(&format!("/sites/{site}/databases/app/password"), &[])
        .await;
    walk.by_admin(
        "POST",
        "/sites/{id}/databases/{name}/password",
        "database.password_rotate",
        site.clone(),
    )
    .await;
    walk.delete(&format!("/api/v1/sites/{site}")).await;
    walk.pass_over(1); // site.delete
}
