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
        for i in 0..50 {
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
        assert_eq!(report.head.length, before + 50, "{}", db.backend());
        let all = links(panel.store.as_ref()).await;
        let indexes: Vec<u64> = all.iter().map(|l| l.index).collect();
        assert_eq!(indexes, (1..=before + 50).collect::<Vec<_>>());
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
        assert_eq!(kept.length + 1, length, "the signing is the next event");

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
        // ... and re-signed with a key of the forger's own, published in the database.
        let forger = alveole_audit::SigningKey::load_or_create(
            &std::env::temp_dir().join(format!("alveole-forger-{}.key", uuid::Uuid::now_v7())),
        )
        .unwrap();
        let resigned = forger.sign(&head, chrono::Utc::now());
        let public = forger.public();
        sql.push_str(&format!(
            "INSERT INTO audit_keys (key_id, algorithm, public_key, created_at) \
             VALUES ('{}', 'ed25519', '{}', '2026-11-01T00:00:00Z'); \
             INSERT INTO audit_checkpoints (length, head, at, key_id, signature) \
             VALUES ({}, '{}', '{}', '{}', '{}');",
            public.key_id,
            public.public_key,
            resigned.length,
            resigned.head.clone().unwrap(),
            resigned
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            resigned.key_id,
            resigned.signature
        ));
        db.execute(&sql).await;
        let inside = verification(&panel).await;
        assert!(inside.intact, "{}: {inside:?}", db.backend());
        assert_eq!(
            inside.checkpoints_verified,
            vec![head.length],
            "the forged checkpoint"
        );
        let outside = alveole_store::verify_audit(
            panel.store.as_ref(),
            std::slice::from_ref(&kept),
            Some(&keys),
        )
        .await
        .unwrap();
        // With the keys kept outside, the forged checkpoint does not verify...
        let broken = outside.first_break.expect("found with the outside keys");
        assert!(
            broken.reason.contains("not among the published keys"),
            "{broken:?}"
        );
        // ... and the checkpoint kept outside no longer matches the chain, whatever the keys.
        let outside =
            alveole_store::verify_audit(panel.store.as_ref(), std::slice::from_ref(&kept), None)
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
async fn events_recorded_before_the_chain_join_it_and_events_slipped_in_later_do_not() {
    for db in TestDb::all().await {
        let panel = panel_with_providers(&db, 2).await;
        // A database from before the chain: events without position, text or hash.
        db.execute(
            "UPDATE audit_events SET chain_index = NULL, canonical = NULL, hash = NULL; \
             UPDATE audit_chain SET length = 0, head = NULL WHERE id = 1",
        )
        .await;
        let count = panel.store.audit_events(0, 10_000).await.unwrap().len() as u64;
        let reopened = alveole_store::connect(&db.url).await.unwrap();
        let report = alveole_store::verify_audit(reopened.as_ref(), &[], None)
            .await
            .unwrap();
        assert!(report.intact, "{}: {report:?}", db.backend());
        assert_eq!(report.head.length, count, "all chained, in order");

        // Once the chain has begun, an event slipped in behind the panel's back stays outside
        // it, even across a restart, and is reported.
        let uuid = match db.backend() {
            "postgres" => "'01a20000-0000-7000-8000-000000000001'".to_owned(),
            _ => "x'01a20000000070008000000000000001'".to_owned(),
        };
        let now = match db.backend() {
            "postgres" => "now()",
            _ => "'2026-11-01T10:00:00.000001+00:00'",
        };
        db.execute(&format!(
            "INSERT INTO audit_events (id, at, actor, action, target_kind, target_id, request_id) \
             VALUES ({uuid}, {now}, 'mallory', 'site.create', 'site', 'forged', 'r')"
        ))
        .await;
        let reopened = alveole_store::connect(&db.url).await.unwrap();
        let broken = alveole_store::verify_audit(reopened.as_ref(), &[], None)
            .await
            .unwrap()
            .first_break
            .expect("found");
        assert_eq!(broken.index, count + 1, "{broken:?}");
        assert!(broken.reason.contains("outside the chain"), "{broken:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_event_inserted_in_the_middle_is_found_at_the_event_after_it() {
    for db in TestDb::all().await {
        let panel = panel_with_providers(&db, 4).await;
        let chain = links(panel.store.as_ref()).await;
        // Events from 3 on move one place up; a forged event takes place 3, linked to 2.
        let mut fields = alveole_audit::chain::parse(&chain[2].canonical)
            .unwrap()
            .fields;
        fields.id = uuid::Uuid::now_v7();
        fields.target_id = "forged".into();
        (fields.before, fields.after) = (None, None);
        let forged = seal(
            &fields,
            &ChainHead {
                length: 2,
                hash: Some(chain[1].hash.clone()),
            },
        );
        let (uuid, at) = match db.backend() {
            "postgres" => (
                format!("'{}'", fields.id),
                format!("'{}'", fields.at.to_rfc3339()),
            ),
            _ => (
                format!("x'{}'", fields.id.simple()),
                format!("'{}'", fields.at.to_rfc3339()),
            ),
        };
        db.execute(&format!(
            "UPDATE audit_events SET chain_index = chain_index + 1000000 WHERE chain_index >= 3; \
             UPDATE audit_events SET chain_index = chain_index - 999999 WHERE chain_index > 1000000; \
             INSERT INTO audit_events (id, at, actor, action, target_kind, target_id, request_id, \
                chain_index, canonical, hash) \
             VALUES ({uuid}, {at}, '{}', '{}', '{}', 'forged', '{}', 3, '{}', '{}')",
            fields.actor,
            fields.action,
            fields.target_kind,
            fields.request_id,
            forged.canonical.replace('\'', "''"),
            forged.hash
        ))
        .await;
        let broken = verification(&panel).await.first_break.expect("found");
        assert_eq!(broken.index, 4, "{}: {broken:?}", db.backend());
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
