//! The audit chain on both databases: concurrent writers never fork it, every kind of
//! tampering is found and named, checkpoints reveal truncation and rewrites, events from
//! before the chain join it, and the API and pages show it all.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use alveole_audit::{ChainHead, EventFields, Link, seal};
use alveole_store::{AuditVerification, Checkpoint, ExportFilter, Store};
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

/// A panel with `n` providers created through the API.
async fn panel_with_providers(db: &TestDb, n: usize) -> TestPanel {
    let panel = TestPanel::start(db).await;
    for i in 0..n {
        let (status, body) = panel
            .post(
                "/api/v1/providers",
                json!({"name": format!("Provider {i}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    panel
}

async fn verification(panel: &TestPanel) -> AuditVerification {
    alveole_store::verify_audit(panel.store.as_ref(), &[], None)
        .await
        .unwrap()
}

/// Every chained event, in order.
async fn links(store: &dyn Store) -> Vec<Link> {
    store
        .audit_records(&ExportFilter::default(), 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.link)
        .collect()
}

#[tokio::test]
async fn concurrent_writers_never_fork_the_chain() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let before = panel.store.audit_head().await.unwrap().length;
        let mut writers = Vec::new();
        for i in 0..24 {
            let (http, base, token) = (panel.http.clone(), panel.base.clone(), panel.token.clone());
            writers.push(tokio::spawn(async move {
                let (path, body) = if i % 2 == 0 {
                    ("providers", json!({"name": format!("P{i}")}))
                } else {
                    (
                        "members",
                        json!({"display_name": format!("M{i}"), "email": format!("m{i}@example.org")}),
                    )
                };
                http.post(format!("{base}/api/v1/{path}"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for writer in writers {
            assert_eq!(writer.await.unwrap(), 201);
        }
        let report = verification(&panel).await;
        assert!(report.intact, "{}: {report:?}", db.backend());
        assert_eq!(report.head.length, before + 24, "{}", db.backend());
        let all = links(panel.store.as_ref()).await;
        let indexes: Vec<u64> = all.iter().map(|l| l.index).collect();
        assert_eq!(indexes, (1..=before + 24).collect::<Vec<_>>());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_edited_column_is_found_and_named() {
    for db in TestDb::all().await {
        let panel = panel_with_providers(&db, 4).await;
        assert!(verification(&panel).await.intact);
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE chain_index = 3")
            .await;
        let report = verification(&panel).await;
        let broken = report.first_break.expect("found");
        assert_eq!(broken.index, 3, "{}", db.backend());
        assert!(broken.reason.contains("columns"), "{}", broken.reason);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_rewritten_event_breaks_the_next_link_and_a_removed_one_is_missing() {
    for db in TestDb::all().await {
        let panel = panel_with_providers(&db, 4).await;
        // Event 3 rewritten consistently (text, hash and columns) by someone with the database.
        let chain = links(panel.store.as_ref()).await;
        let parsed = alveole_audit::chain::parse(&chain[2].canonical).unwrap();
        let mut fields: EventFields = parsed.fields;
        fields.actor = "mallory".into();
        let forged = seal(
            &fields,
            &ChainHead {
                length: 2,
                hash: Some(chain[1].hash.clone()),
            },
        );
        db.execute(&format!(
            "UPDATE audit_events SET actor = 'mallory', canonical = '{}', hash = '{}' WHERE chain_index = 3",
            forged.canonical.replace('\'', "''"),
            forged.hash
        ))
        .await;
        let broken = verification(&panel).await.first_break.expect("found");
        assert_eq!(broken.index, 4, "{}: {broken:?}", db.backend());
        assert!(broken.reason.contains("does not link"), "{}", broken.reason);

        let other = TestDb::sqlite().await;
        let panel = panel_with_providers(&other, 4).await;
        other
            .execute("DELETE FROM audit_events WHERE chain_index = 2")
            .await;
        let broken = verification(&panel).await.first_break.expect("found");
        assert_eq!(broken.index, 2, "{broken:?}");
        assert!(broken.reason.contains("missing"), "{}", broken.reason);
        other.drop_db().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn checkpoints_reveal_truncation_and_rewrites_that_the_chain_alone_cannot() {
    for db in TestDb::all().await {
        let panel = panel_with_providers(&db, 5).await;
        let (status, signed) = panel.post("/api/v1/audit/checkpoints", json!({})).await;
        assert_eq!(status, 201, "{signed}");
        let kept: Checkpoint = serde_json::from_value(signed).unwrap();
        let keys: Vec<_> = panel
            .store
            .audit_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key)
            .collect();
        let chain = links(panel.store.as_ref()).await;
        let length = chain.len() as u64;
        assert_eq!(kept.length, length);

        // Truncation: the last two events removed and the head moved back. The chain is
        // consistent again, but the checkpoint covers more than it holds.
        db.execute(&format!(
            "DELETE FROM audit_events WHERE chain_index > {}; \
             UPDATE audit_chain SET length = {}, head = '{}' WHERE id = 1",
            length - 2,
            length - 2,
            chain[chain.len() - 3].hash
        ))
        .await;
        let broken = verification(&panel).await.first_break.expect("found");
        assert!(broken.reason.contains("removed from the end"), "{broken:?}");

        // A full rewrite by whoever holds the database, checkpoints deleted too: the database
        // alone looks intact (the documented limit), a checkpoint kept outside does not.
        let mut head = ChainHead {
            length: 1,
            hash: Some(chain[0].hash.clone()),
        };
        let mut sql = String::from("DELETE FROM audit_checkpoints;");
        for link in &chain[1..chain.len() - 2] {
            let mut fields = alveole_audit::chain::parse(&link.canonical).unwrap().fields;
            fields.request_id = "rewritten".into();
            let forged = seal(&fields, &head);
            sql.push_str(&format!(
                "UPDATE audit_events SET request_id = 'rewritten', canonical = '{}', hash = '{}' WHERE chain_index = {};",
                forged.canonical.replace('\'', "''"),
                forged.hash,
                forged.index
            ));
            head = ChainHead {
                length: forged.index,
                hash: Some(forged.hash),
            };
        }
        sql.push_str(&format!(
            "UPDATE audit_chain SET length = {}, head = '{}' WHERE id = 1;",
            head.length,
            head.hash.clone().unwrap()
        ));
        db.execute(&sql).await;
        assert!(verification(&panel).await.intact, "{}", db.backend());
        let outside = alveole_store::verify_audit(
            panel.store.as_ref(),
            std::slice::from_ref(&kept),
            Some(&keys),
        )
        .await
        .unwrap();
        let broken = outside
            .first_break
            .expect("found with the outside checkpoint");
        assert!(
            broken.reason.contains("removed from the end") || broken.reason.contains("rewritten"),
            "{broken:?}"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn events_recorded_before_the_chain_join_it_in_order() {
    for db in TestDb::all().await {
        let panel = panel_with_providers(&db, 2).await;
        let length = panel.store.audit_head().await.unwrap().length;
        // As a version without the chain wrote them: no position, text or hash.
        let uuid = |n: u32| match db.backend() {
            "postgres" => format!("'01a20000-0000-7000-8000-00000000000{n}'"),
            _ => format!("x'01a20000000070008000{n:012}'"),
        };
        let now = match db.backend() {
            "postgres" => "now()",
            _ => "'2026-11-01T10:00:00.000001+00:00'",
        };
        for n in 1..=2 {
            db.execute(&format!(
                "INSERT INTO audit_events (id, at, actor, action, target_kind, target_id, request_id) \
                 VALUES ({}, {now}, 'old-admin', 'site.create', 'site', 'old-{n}', 'r')",
                uuid(n)
            ))
            .await;
        }
        assert!(!verification(&panel).await.intact, "not chained yet");
        let reopened = alveole_store::connect(&db.url).await.unwrap();
        let report = alveole_store::verify_audit(reopened.as_ref(), &[], None)
            .await
            .unwrap();
        assert!(report.intact, "{}: {report:?}", db.backend());
        assert_eq!(report.head.length, length + 2);
        let chained = links(reopened.as_ref()).await;
        assert!(chained[chained.len() - 1].canonical.contains("old-2"));
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_record_is_served_filtered_exported_and_signed() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (_, member) = panel.seed().await;
    let (status, site) = panel
        .post(
            "/api/v1/sites",
            json!({"owner_id": member, "primary_domain": "report.example.org", "image": "registry.example.org/s:1"}),
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

    // Checkpoints and keys are public, and the signature checks with the published key.
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

    // The JSON Lines export verifies on its own.
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

    // The pages: the record with its state, and the printable report.
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
    db.drop_db().await;
}
