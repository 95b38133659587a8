//! The record as the board reads it: filtered, verified, exported (JSON Lines, CSV), signed
//! checkpoints sent to the co-op's archive, incremental checks, and the pages.

use alveole_store::Checkpoint;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use super::{actor_of, panel_with_more_events, panel_with_providers};

const SECRET: &str = "audit-secret-value-5521";

/// Rows of a CSV text as Python's `csv` module reads them.
fn python_csv(text: &str) -> Vec<Vec<String>> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_record_is_served_filtered_exported_and_signed() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (_, member) = panel.seed().await;
    let (status, site) = panel
        .post(
            "/api/v1/sites",
            json!({"owner_id": member, "primary_domain": "report.example.org", "image": "registry.example.org/s:1",
                   "env": [{"name": "DB_PASSWORD", "value": SECRET, "secret": true}]}),
        )
        .await;
    assert_eq!(status, 201, "{site}");
    let id = site["id"].as_str().unwrap();
    let (status, _) = panel
        .call(Method::DELETE, &format!("/api/v1/sites/{id}"), None)
        .await;
    assert_eq!(status, 204);

    // Filtered list, in chain order.
    let (status, page) = panel
        .get(&format!(
            "/api/v1/audit/events?target_kind=site&target_id={id}"
        ))
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["site.create", "site.delete"]);
    assert!(page["items"][0]["hash"].as_str().unwrap().len() == 64);
    for bad in [
        "/api/v1/audit/events?actr=x",
        "/api/v1/audit/events?from=yesterday",
        "/api/v1/audit/export?format=xml",
    ] {
        assert_eq!(panel.get(bad).await.0, 400, "{bad}");
    }
    let (status, verified) = panel.get("/api/v1/audit/verify").await;
    assert_eq!(
        (status, verified["intact"].clone()),
        (200, json!(true)),
        "{verified}"
    );

    let latest = checkpoints_are_public_and_verify(&panel).await;
    exports_verify_and_keep_no_secret(&panel, &latest).await;
    pages_show_the_record(&panel, &latest).await;
    db.drop_db().await;
}

/// Signs a checkpoint; checkpoints and keys are public, and the signature checks with the
/// published key.
async fn checkpoints_are_public_and_verify(panel: &TestPanel) -> Checkpoint {
    let anonymous = reqwest::Client::new();
    let latest = anonymous
        .get(format!("{}/api/v1/audit/checkpoints/latest", panel.base))
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), 404, "none signed yet");
    let (status, _) = panel.post("/api/v1/audit/checkpoints", json!({})).await;
    assert_eq!(status, 201);
    let latest: Checkpoint = anonymous
        .get(format!("{}/api/v1/audit/checkpoints/latest", panel.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<Value> = anonymous
        .get(format!("{}/api/v1/audit/keys", panel.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<alveole_audit::AuditKey> = serde_json::from_value(json!(keys)).unwrap();
    latest.verify(&keys).unwrap();
    assert_eq!(
        anonymous
            .post(format!("{}/api/v1/audit/checkpoints", panel.base))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "signing is for admins"
    );

    latest
}

/// The JSON Lines export verifies on its own and round-trips; the CSV reads in Python's
/// parser; no secret is in either.
async fn exports_verify_and_keep_no_secret(panel: &TestPanel, latest: &Checkpoint) {
    let export = panel
        .http
        .get(format!("{}/api/v1/audit/export", panel.base))
        .bearer_auth(&panel.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        export.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = export.text().await.unwrap();
    let report = alveole_audit::export::verify_export(&text, &[], None).unwrap();
    assert!(report.complete);
    assert_eq!(report.checkpoints, vec![latest.length]);
    // It round-trips: every line reads back into the same value.
    for line in text.lines() {
        let parsed: alveole_audit::export::Line = serde_json::from_str(line).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::from_str::<Value>(line).unwrap()
        );
    }
    let csv = panel
        .http
        .get(format!("{}/api/v1/audit/export?format=csv", panel.base))
        .bearer_auth(&panel.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // No secret in any event or export.
    let events = panel.store.audit_events(0, 10_000).await.unwrap();
    assert!(!format!("{events:?}").contains(SECRET));
    assert!(!text.contains(SECRET) && !csv.contains(SECRET));
    // The CSV reads in a standard parser (Python's) with the documented columns.
    let parsed = python_csv(&csv);
    assert_eq!(
        parsed[0],
        [
            "index",
            "at",
            "actor",
            "action",
            "target_kind",
            "target_id",
            "request_id",
            "before",
            "after",
            "hash"
        ]
    );
    assert_eq!(parsed.len() - 1, report.events as usize);
    let site_create = parsed.iter().find(|row| row[3] == "site.create").unwrap();
    let after: Value = serde_json::from_str(&site_create[8]).unwrap();
    assert_eq!(after["primary_domain"], "report.example.org");
}

/// The pages: the record with its state, the printable report, the inventory.
async fn pages_show_the_record(panel: &TestPanel, latest: &Checkpoint) {
    let page = panel.page("/audit").await;
    assert!(page.contains("The audit chain is intact"), "{page}");
    assert!(page.contains("site.delete") && page.contains(&latest.key_id));
    let report = panel.page("/audit/report").await;
    assert!(report.contains("id=\"report-sites\""), "{report}");
    let sites = report
        .split("id=\"report-sites\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap()
        .to_owned();
    assert!(
        sites.contains("<td>1</td>"),
        "one created, one deleted: {sites}"
    );
    // (As HTML: tera escapes the slashes of base64.)
    assert!(
        report.contains(&latest.signature.replace('/', "&#x2F;")),
        "the checkpoint is printed"
    );
    // The platform inventory: providers, nodes, licences.
    let inventory = panel.page("/inventory").await;
    assert!(
        inventory.contains("Hébergeur") && inventory.contains("AGPL-3.0-or-later"),
        "{inventory}"
    );
}

#[tokio::test]
async fn each_checkpoint_is_sent_to_the_webhook() {
    let db = TestDb::sqlite().await;
    let panel = panel_with_providers(&db, 1).await;
    // The co-op's archive: it keeps what it receives.
    let (sent, mut received) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let archive = axum::Router::new().route(
        "/checkpoints",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sent = sent.clone();
            async move {
                let _ = sent.send(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/checkpoints", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, archive).await });
    let keys = alveole_tests::temp_dir("alveole-webhook-");
    let key = alveole_audit::SigningKey::load_or_create(&keys.path().join("audit.key")).unwrap();
    let public = key.public();
    let notary = alveole_panel::notary::Notary::new(key, Some(url));
    notary.publish_key(panel.store.as_ref()).await.unwrap();
    let ctx = alveole_store::AuditContext::new("system:test", "webhook");
    let signed = notary
        .checkpoint(panel.store.as_ref(), &ctx, chrono::Utc::now())
        .await
        .unwrap();
    let archived: Checkpoint = serde_json::from_value(received.recv().await.unwrap()).unwrap();
    assert_eq!(archived, signed);
    archived.verify(&[public]).unwrap();
    server.abort();
    db.drop_db().await;
}

#[tokio::test]
async fn a_check_goes_on_from_where_the_last_stopped_and_the_page_shows_the_last_one() {
    for db in TestDb::all().await {
        let backend = db.backend();
        let panel = panel_with_providers(&db, 3).await;
        let service = panel.service();
        let first = service.verify_audit(true).await.unwrap();
        assert!(
            first.full && first.verification.intact,
            "{backend}: {first:?}"
        );

        // New events after the last check: the next check reads those only, and finds an
        // edit among them.
        let more = panel_with_more_events(&panel, 2).await;
        let edited = more - 1;
        let actor = actor_of(panel.store.as_ref(), edited).await;
        db.execute(&format!(
            "UPDATE audit_events SET actor = 'mallory' WHERE chain_index = {edited}"
        ))
        .await;
        let next = service.verify_audit(false).await.unwrap();
        assert!(!next.full, "{backend}: from the last check's head");
        assert_eq!(
            next.verification.first_break.map(|b| b.index),
            Some(edited),
            "{backend}"
        );
        db.execute(&format!(
            "UPDATE audit_events SET actor = '{actor}' WHERE chain_index = {edited}"
        ))
        .await;
        // After a broken check, the next one reads everything again: a repair is seen.
        let repaired = service.verify_audit(false).await.unwrap();
        assert!(repaired.full && repaired.verification.intact, "{backend}");
        assert_eq!(repaired.verification.head.length, more, "{backend}");

        // An edit of an event checked before is beyond a check from the last head (the
        // documented limit), and found by a whole check, which the page then shows.
        let second = actor_of(panel.store.as_ref(), 2).await;
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE chain_index = 2")
            .await;
        let onwards = service.verify_audit(false).await.unwrap();
        assert!(onwards.verification.intact && !onwards.full, "{backend}");
        let whole = service.verify_audit(true).await.unwrap();
        assert_eq!(
            whole.verification.first_break.map(|b| b.index),
            Some(2),
            "{backend}"
        );
        let page = panel.page("/audit").await;
        assert!(
            page.contains("The audit chain is broken at event 2"),
            "{backend}: {page}"
        );

        // The background task checks on its own when poked (its first pass is whole).
        db.execute(&format!(
            "UPDATE audit_events SET actor = '{second}' WHERE chain_index = 2"
        ))
        .await;
        let before = panel.store.last_verification().await.unwrap().unwrap().at;
        service.poke(alveole_panel::background::Task::AuditVerification);
        let mut checked = None;
        for _ in 0..100 {
            let last = panel.store.last_verification().await.unwrap().unwrap();
            if last.at > before {
                checked = Some(last);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let checked = checked.expect("the task ran within 5 seconds");
        assert!(
            checked.full && checked.verification.intact,
            "{backend}: {checked:?}"
        );
        db.drop_db().await;
    }
}
