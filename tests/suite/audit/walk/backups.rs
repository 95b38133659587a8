//! Backups: targets through the API and the pages, a site's policy, a backup asked for,
//! restores and drills, each recorded.

use reqwest::Method;
use serde_json::json;

use super::api::Made;
use super::pages::PageMade;
use super::{ADMIN, Walk, id_of};

/// Targets created, changed and deleted; a site's policy; a backup now; a restore.
pub(super) async fn api_backups(walk: &mut Walk<'_>, made: &Made) {
    let elsewhere = walk
        .create("/api/v1/providers", json!({"name": "Walk vault provider"}))
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/providers",
        "provider.create",
        id_of(&elsewhere),
    )
    .await;
    let mut targets = Vec::new();
    for name in ["walk-rest", "walk-gone"] {
        let target = walk
            .create(
                "/api/v1/backup-targets",
                json!({"name": name, "url": "https://backup.example.net/", "provider_id": elsewhere["id"]}),
            )
            .await;
        walk.by_admin(
            "POST",
            "/api/v1/backup-targets",
            "backup_target.create",
            id_of(&target),
        )
        .await;
        targets.push(target);
    }
    let gone = id_of(&targets[1]);
    let change = json!({"version": targets[1]["version"], "url": "https://backup.example.net/b/"});
    let path = format!("/api/v1/backup-targets/{gone}");
    assert_eq!(
        walk.panel.call(Method::PATCH, &path, Some(change)).await.0,
        200
    );
    walk.by_admin(
        "PATCH",
        "/api/v1/backup-targets/{id}",
        "backup_target.update",
        gone.clone(),
    )
    .await;
    walk.delete(&path).await;
    walk.by_admin(
        "DELETE",
        "/api/v1/backup-targets/{id}",
        "backup_target.delete",
        gone,
    )
    .await;

    let site = &made.site;
    let (_, current) = walk.panel.get(&format!("/api/v1/sites/{site}")).await;
    let policy = json!({"version": current["version"], "backup": {"targets": [targets[0]["id"]]}});
    let (status, body) = walk
        .panel
        .call(
            Method::PATCH,
            &format!("/api/v1/sites/{site}"),
            Some(policy),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    walk.pass_over(1); // site.update, the API's PATCH case
    walk.act(&format!("/api/v1/sites/{site}/backups"), json!({}), 202)
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/sites/{id}/backups",
        "backup.request",
        site.clone(),
    )
    .await;
    walk.act(
        &format!("/api/v1/sites/{site}/restores"),
        json!({"paths": ["/www"]}),
        202,
    )
    .await;
    walk.expect(
        "POST",
        "/api/v1/sites/{id}/restores",
        &[(ADMIN, "restore.start", site.clone())],
    )
    .await;
    // No node of another provider has reported here: the drill fails at once, and alerts.
    walk.act(&format!("/api/v1/sites/{site}/drills"), json!({}), 202)
        .await;
    walk.expect(
        "POST",
        "/api/v1/sites/{id}/drills",
        &[
            (ADMIN, "drill.start", site.clone()),
            (ADMIN, "drill.fail", site.clone()),
            (ADMIN, "backup.alert", site.clone()),
        ],
    )
    .await;
}

/// The same through the pages: a target's forms, and on a site of its own (made and
/// deleted through the API, so the page steps' site keeps its versions) "back up now" and
/// the restore form.
pub(super) async fn page_backups(walk: &mut Walk<'_>, made: &PageMade) {
    let provider = walk
        .create(
            "/api/v1/providers",
            json!({"name": "Walk page vault provider"}),
        )
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/providers",
        "provider.create",
        id_of(&provider),
    )
    .await;
    let provider = id_of(&provider);
    let mut form = vec![
        ("name", "page-rest"),
        ("url", "https://backup.example.org/"),
        ("provider_id", provider.as_str()),
        ("node_id", ""),
    ];
    let (_, target) = made.browser.submit("/backup-targets/new", &form).await;
    walk.by_admin(
        "POST",
        "/backup-targets/new",
        "backup_target.create",
        target.clone(),
    )
    .await;
    form[0].1 = "page-rest-2";
    form.push(("version", "1"));
    made.browser
        .submit(&format!("/backup-targets/{target}/edit"), &form)
        .await;
    walk.by_admin(
        "POST",
        "/backup-targets/{id}/edit",
        "backup_target.update",
        target.clone(),
    )
    .await;
    made.browser
        .submit(
            &format!("/backup-targets/{target}/delete"),
            &[("version", "2")],
        )
        .await;
    walk.by_admin(
        "POST",
        "/backup-targets/{id}/delete",
        "backup_target.delete",
        target,
    )
    .await;

    let target = walk
        .create(
            "/api/v1/backup-targets",
            json!({"name": "page-site-rest", "url": "https://backup.example.org/", "provider_id": provider}),
        )
        .await;
    walk.pass_over(1); // backup_target.create, the API step's case
    let mut body = super::site_body(&made.member, "page-backups.example.org");
    body["node_id"] = json!(made.node);
    body["backup"] = json!({"targets": [target["id"]]});
    let site = id_of(&walk.create("/api/v1/sites", body).await);
    walk.pass_over(1); // site.create
    made.browser
        .submit(&format!("/sites/{site}/backup"), &[])
        .await;
    walk.by_admin("POST", "/sites/{id}/backup", "backup.request", site.clone())
        .await;
    made.browser
        .submit(
            &format!("/sites/{site}/restore"),
            &[("paths", "/www/index.html\n/files"), ("snapshot", "")],
        )
        .await;
    walk.by_admin("POST", "/sites/{id}/restore", "restore.start", site.clone())
        .await;
    made.browser
        .submit(&format!("/sites/{site}/drill"), &[])
        .await;
    walk.expect(
        "POST",
        "/sites/{id}/drill",
        &[
            (ADMIN, "drill.start", site.clone()),
            (ADMIN, "drill.fail", site.clone()),
            (ADMIN, "backup.alert", site.clone()),
        ],
    )
    .await;
    walk.delete(&format!("/api/v1/sites/{site}")).await;
    walk.pass_over(1); // site.delete
}
