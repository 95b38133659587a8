//! The audit chain on both databases: concurrent writers never fork it, every kind of
//! tampering is found and named, checkpoints reveal truncation and rewrites, events from
//! before the chain join it, and the API and pages show it all.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use alveole_agent::control::panel::Control;
use std::collections::BTreeMap;

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

/// A signed-in browser without a browser: a session cookie and the session's CSRF token.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn sign_in(panel: &TestPanel) -> (Browser, u16) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login = http
            .post(format!("{}/login", panel.base))
            .form(&[("token", panel.token.as_str())])
            .send()
            .await
            .unwrap();
        let status = login.status().as_u16();
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = http
            .get(format!("{}/providers/new", panel.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = alveole_tests::csrf_of(&page);
        let browser = Browser {
            http,
            base: panel.base.clone(),
            cookie,
            csrf,
        };
        (browser, status)
    }

    /// Submits a form; returns the status and, for a redirect to a resource, its id.
    async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &self.csrf));
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        assert!(status < 400, "{path}: {status} {body}");
        (status, location)
    }
}

#[tokio::test]
async fn every_state_changing_route_records_its_events() {
    use std::collections::BTreeSet;

    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    // Background tasks (jobs, checkpoints) would add their events whenever they run: none
    // run here.
    panel
        .configure(|config| config.background.run = false)
        .await;
    let store = panel.store.clone();
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen = store.audit_head().await.unwrap().length;
    // Each call: the route it exercises, then the events it must have added, exactly
    // (actor, action, target id), in order.
    macro_rules! expect {
        ($method:expr, $route:expr, $events:expr) => {{
            let added: Vec<(String, String, String)> = store
                .audit_records(&ExportFilter::default(), seen, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.event.actor, r.event.action, r.event.target_id))
                .collect();
            let wanted: Vec<(String, String, String)> = $events
                .iter()
                .map(|(a, b, c): &(&str, &str, String)| (a.to_string(), b.to_string(), c.clone()))
                .collect();
            assert_eq!(added, wanted, "{} {}", $method, $route);
            seen += added.len() as u64;
            covered.insert(($method.to_string(), $route.to_string()));
        }};
    }
    let admin = "bootstrap-admin";

    // --- the API, resource by resource ------------------------------------------------------
    let mut ids = BTreeMap::new();
    for (plural, kind, body) in [
        ("providers", "provider", json!({"name": "Audit walk"})),
        (
            "members",
            "member",
            json!({"display_name": "Walker", "email": "walker@example.org"}),
        ),
    ] {
        let (status, created) = panel.post(&format!("/api/v1/{plural}"), body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        expect!(
            "POST",
            format!("/api/v1/{plural}"),
            [(admin, &*format!("{kind}.create"), id.clone())]
        );
        let (status, _) = panel
            .call(
                Method::PATCH,
                &format!("/api/v1/{plural}/{id}"),
                Some(json!({"version": created["version"], "notes": "changed"})),
            )
            .await;
        assert!(status == 200 || status == 400, "{plural}: {status}");
        if status == 400 {
            // Members have no notes: change their name instead.
            let (status, _) = panel
                .call(
                    Method::PATCH,
                    &format!("/api/v1/{plural}/{id}"),
                    Some(json!({"version": created["version"], "display_name": "Walker Two"})),
                )
                .await;
            assert_eq!(status, 200);
        }
        expect!(
            "PATCH",
            format!("/api/v1/{plural}/{{id}}"),
            [(admin, &*format!("{kind}.update"), id.clone())]
        );
        ids.insert(kind, id);
    }
    let (status, node) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": ids["provider"], "name": "walk-1", "public_addresses": ["192.0.2.30"],
                   "capacity": {"cpu_millis": 8000, "memory_bytes": 17179869184u64, "disk_bytes": 536870912000u64}}),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    let node_id = node["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/nodes",
        [(admin, "node.create", node_id.clone())]
    );
    let (status, _) = panel
        .call(
            Method::PATCH,
            &format!("/api/v1/nodes/{node_id}"),
            Some(json!({"version": node["version"], "public_addresses": ["192.0.2.31"]})),
        )
        .await;
    assert_eq!(status, 200);
    expect!(
        "PATCH",
        "/api/v1/nodes/{id}",
        [(admin, "node.update", node_id.clone())]
    );
    let site_body = |domain: &str| json!({"owner_id": ids["member"], "primary_domain": domain, "image": "registry.example.org/s:1"});
    let (status, site) = panel
        .post("/api/v1/sites", site_body("walk.example.org"))
        .await;
    assert_eq!(status, 201, "{site}");
    let site_id = site["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/sites",
        [(admin, "site.create", site_id.clone())]
    );
    let (status, _) = panel
        .call(
            Method::PATCH,
            &format!("/api/v1/sites/{site_id}"),
            Some(json!({"version": site["version"], "http_port": 8081})),
        )
        .await;
    assert_eq!(status, 200);
    expect!(
        "PATCH",
        "/api/v1/sites/{id}",
        [(admin, "site.update", site_id.clone())]
    );

    // --- the node's agent ---------------------------------------------------------------------
    let (status, _) = panel
        .post(&format!("/api/v1/nodes/{node_id}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201);
    expect!(
        "POST",
        "/api/v1/nodes/{id}/join-token",
        [(admin, "node.join_token", node_id.clone())]
    );
    // (`enrol` asks for a join token first: its event is the one above's kind.)
    let credential = panel.enrol(&node_id).await;
    expect!(
        "POST",
        "/api/v1/agent/enroll",
        [
            (admin, "node.join_token", node_id.clone()),
            ("agent:enrolment", "node.enroll", node_id.clone())
        ]
    );
    let agent = panel.agent_client();
    agent.authenticate(&credential).unwrap();
    let node_actor = format!("node:{node_id}");
    let report = alveole_model::NodeReport {
        generation: Some(1),
        sites: vec![alveole_model::SiteReport {
            site_id: site_id.parse().unwrap(),
            state: alveole_model::SiteState::Running,
            reason: None,
            volume_bytes: None,
        }],
        resources: serde_json::from_value(
            json!({"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
            "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1}),
        )
        .unwrap(),
        agent_version: "walk".into(),
        warnings: vec![],
        events: vec![alveole_model::AgentEvent {
            seq: 1,
            at: chrono::Utc::now(),
            kind: alveole_model::AgentEventKind::DriftRepaired,
            site_id: Some(site_id.parse().unwrap()),
            detail: "its container was missing: made again".into(),
        }],
        inventory: None,
        addresses: None,
        endpoints: None,
    };
    agent.report(&report).await.unwrap();
    expect!(
        "POST",
        "/api/v1/agent/status",
        [
            (&*node_actor, "agent.drift_repaired", site_id.clone()),
            (&*node_actor, "site.phase", site_id.clone())
        ]
    );
    // --- site moves: a second node whose agent says where agents reach it ------------------
    let (status, node_b) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": ids["provider"], "name": "walk-moves", "public_addresses": ["192.0.2.40"],
                   "capacity": {"cpu_millis": 8000, "memory_bytes": 17179869184u64, "disk_bytes": 536870912000u64}}),
        )
        .await;
    assert_eq!(status, 201, "{node_b}");
    let node_b = node_b["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/nodes",
        [(admin, "node.create", node_b.clone())]
    );
    let agent_b = panel.agent_client();
    agent_b.authenticate(&panel.enrol(&node_b).await).unwrap();
    expect!(
        "POST",
        "/api/v1/agent/enroll",
        [
            (admin, "node.join_token", node_b.clone()),
            ("agent:enrolment", "node.enroll", node_b.clone())
        ]
    );
    let node_b_actor = format!("node:{node_b}");
    let endpoints = Some(alveole_model::AgentEndpoints {
        peer: Some("127.0.0.1:9".parse().unwrap()),
        ingress: Some("127.0.0.1:9".parse().unwrap()),
    });
    for client in [&agent, &agent_b] {
        let quiet = alveole_model::NodeReport {
            sites: vec![],
            events: vec![],
            endpoints,
            ..report.clone()
        };
        client.report(&quiet).await.unwrap();
    }
    expect!(
        "POST",
        "/api/v1/agent/status",
        Vec::<(&str, &str, String)>::new()
    );
    let start_move = async |to: &str| -> alveole_model::SiteMoveId {
        let (status, started) = panel
            .post(
                &format!("/api/v1/sites/{site_id}/move"),
                json!({"to_node": to}),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        started["id"].as_str().unwrap().parse().unwrap()
    };
    let no_progress = alveole_model::MoveOutcome {
        progress: Default::default(),
        reason: Some("walk".into()),
    };
    // Rolled back by its source.
    let rolled_back = start_move(&node_b).await;
    expect!(
        "POST",
        "/api/v1/sites/{id}/move",
        [(admin, "site.move.start", site_id.clone())]
    );
    agent
        .move_progress(rolled_back, &Default::default())
        .await
        .unwrap();
    expect!(
        "POST",
        "/api/v1/agent/site-moves/{id}/progress",
        Vec::<(&str, &str, String)>::new()
    );
    agent
        .move_outcome(rolled_back, "fail", &no_progress)
        .await
        .unwrap();
    expect!(
        "POST",
        "/api/v1/agent/site-moves/{id}/fail",
        [(&*node_actor, "site.move.fail", site_id.clone())]
    );
    // Cancelled by an admin.
    let cancelled = start_move(&node_b).await;
    let (status, _) = panel
        .post(&format!("/api/v1/site-moves/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    expect!(
        "POST",
        "/api/v1/site-moves/{id}/cancel",
        [
            (admin, "site.move.start", site_id.clone()),
            (admin, "site.move.cancel", site_id.clone())
        ]
    );
    // Switched, its forwarding ended early; then back the same way.
    for (source, target, source_actor) in [
        (&agent, &node_b, &node_actor),
        (&agent_b, &node_id, &node_b_actor),
    ] {
        let moved = start_move(target).await;
        source
            .move_outcome(moved, "switch", &no_progress)
            .await
            .unwrap();
        expect!(
            "POST",
            "/api/v1/agent/site-moves/{id}/switch",
            [
                (admin, "site.move.start", site_id.clone()),
                (&**source_actor, "site.move.switch", site_id.clone())
            ]
        );
        let (status, _) = panel
            .post(&format!("/api/v1/site-moves/{moved}/finish"), json!({}))
            .await;
        assert_eq!(status, 200);
        expect!(
            "POST",
            "/api/v1/site-moves/{id}/finish",
            [(admin, "site.move.finish", site_id.clone())]
        );
    }

    // The site page's forms.
    let (browser, _) = Browser::sign_in(&panel).await;
    let session = store
        .audit_records(&ExportFilter::default(), seen, 1000)
        .await
        .unwrap()[0]
        .event
        .target_id
        .clone();
    expect!("POST", "/login", [(admin, "session.create", session)]);
    let site_key: alveole_model::SiteId = site_id.parse().unwrap();
    let latest_move = async || store.site_moves(Some(site_key)).await.unwrap()[0].id;
    browser
        .submit(&format!("/sites/{site_id}/move"), &[("to_node", &node_b)])
        .await;
    expect!(
        "POST",
        "/sites/{id}/move",
        [(admin, "site.move.start", site_id.clone())]
    );
    browser
        .submit(&format!("/site-moves/{}/cancel", latest_move().await), &[])
        .await;
    expect!(
        "POST",
        "/site-moves/{id}/cancel",
        [(admin, "site.move.cancel", site_id.clone())]
    );
    browser
        .submit(&format!("/sites/{site_id}/move"), &[("to_node", &node_b)])
        .await;
    let moved = latest_move().await;
    agent
        .move_outcome(moved, "switch", &no_progress)
        .await
        .unwrap();
    browser
        .submit(&format!("/site-moves/{moved}/finish"), &[])
        .await;
    expect!(
        "POST",
        "/site-moves/{id}/finish",
        [
            (admin, "site.move.start", site_id.clone()),
            (&*node_actor, "site.move.switch", site_id.clone()),
            (admin, "site.move.finish", site_id.clone())
        ]
    );
    // Back to the first node, for the rest of the walk.
    let back = start_move(&node_id).await;
    agent_b
        .move_outcome(back, "switch", &no_progress)
        .await
        .unwrap();
    expect!(
        "POST",
        "/api/v1/agent/site-moves/{id}/switch",
        [
            (admin, "site.move.start", site_id.clone()),
            (&*node_b_actor, "site.move.switch", site_id.clone())
        ]
    );

    // --- evacuations -----------------------------------------------------------------------
    let (status, evacuation) = panel
        .post("/api/v1/evacuations", json!({"node_id": node_b}))
        .await;
    assert_eq!(status, 202, "{evacuation}");
    let job = evacuation["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/evacuations",
        [(admin, "evacuation.start", job.clone())]
    );
    for (verb, action) in [
        ("pause", "evacuation.pause"),
        ("resume", "evacuation.resume"),
        ("cancel", "evacuation.cancel"),
    ] {
        let (status, body) = panel
            .post(&format!("/api/v1/evacuations/{job}/{verb}"), json!({}))
            .await;
        assert_eq!(status, 200, "{verb}: {body}");
        expect!(
            "POST",
            format!("/api/v1/evacuations/{{id}}/{verb}"),
            [(admin, action, job.clone())]
        );
    }
    // The evacuations page's forms.
    browser
        .submit(
            "/evacuations/start",
            &[("scope", &format!("node:{node_b}")), ("parallelism", "2")],
        )
        .await;
    let job = store.evacuations().await.unwrap()[0].id.to_string();
    expect!(
        "POST",
        "/evacuations/start",
        [(admin, "evacuation.start", job.clone())]
    );
    browser
        .submit(&format!("/evacuations/{job}/cancel"), &[])
        .await;
    expect!(
        "POST",
        "/evacuations/{id}/{verb}",
        [(admin, "evacuation.cancel", job)]
    );

    agent
        .renew(&credential.signing_request().unwrap())
        .await
        .unwrap();
    expect!(
        "POST",
        "/api/v1/agent/certificate",
        [(&*node_actor, "node.certificate_renew", node_id.clone())]
    );
    let (status, _) = panel
        .call(
            Method::DELETE,
            &format!("/api/v1/nodes/{node_id}/credential"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/nodes/{id}/credential",
        [(admin, "node.revoke", node_id.clone())]
    );
    let (status, checkpoint) = panel.post("/api/v1/audit/checkpoints", json!({})).await;
    assert_eq!(status, 201);
    let length = checkpoint["length"].as_u64().unwrap().to_string();
    expect!(
        "POST",
        "/api/v1/audit/checkpoints",
        [(admin, "audit.checkpoint", length)]
    );

    // --- API tokens -------------------------------------------------------------------------
    let (status, token) = panel
        .post(
            &format!("/api/v1/members/{}/tokens", ids["member"]),
            json!({"name": "walk", "scope": "read"}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let token_id = token["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/members/{id}/tokens",
        [(admin, "api_token.create", token_id.clone())]
    );
    let (status, _) = panel
        .call(Method::DELETE, &format!("/api/v1/tokens/{token_id}"), None)
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/tokens/{id}",
        [(admin, "api_token.revoke", token_id)]
    );

    // --- addresses ----------------------------------------------------------------------------
    let (status, pool) = panel
        .post(
            "/api/v1/ip-pools",
            json!({"provider_id": ids["provider"], "prefix": "198.51.100.0/28"}),
        )
        .await;
    assert_eq!(status, 201, "{pool}");
    let pool_id = pool["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/ip-pools",
        [(admin, "ip_pool.create", pool_id.clone())]
    );
    let (status, allocated) = panel
        .post(
            &format!("/api/v1/ip-pools/{pool_id}/allocations"),
            json!({"node_id": node_id, "site_id": site_id}),
        )
        .await;
    assert_eq!(status, 201, "{allocated}");
    expect!(
        "POST",
        "/api/v1/ip-pools/{id}/allocations",
        [(admin, "ip.allocate", "198.51.100.1".to_owned())]
    );
    let (status, _) = panel
        .call(Method::DELETE, "/api/v1/ip-allocations/198.51.100.1", None)
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/ip-allocations/{address}",
        [(admin, "ip.release", "198.51.100.1".to_owned())]
    );
    // An address moved to another node: forced (finished at once), then started and cancelled.
    let (status, _) = panel
        .post(
            &format!("/api/v1/ip-pools/{pool_id}/allocations"),
            json!({"node_id": node_id, "address": "198.51.100.2"}),
        )
        .await;
    assert_eq!(status, 201);
    expect!(
        "POST",
        "/api/v1/ip-pools/{id}/allocations",
        [(admin, "ip.allocate", "198.51.100.2".to_owned())]
    );
    let (status, other) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": ids["provider"], "name": "walk-2", "public_addresses": ["192.0.2.31"],
                   "capacity": {"cpu_millis": 1000, "memory_bytes": 1073741824u64, "disk_bytes": 10737418240u64}}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other_node = other["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/nodes",
        [(admin, "node.create", other_node.clone())]
    );
    let address = "198.51.100.2".to_owned();
    let (status, _) = panel
        .post(
            "/api/v1/ip-allocations/198.51.100.2/move",
            json!({"to_node": other_node, "force": true}),
        )
        .await;
    assert_eq!(status, 202);
    expect!(
        "POST",
        "/api/v1/ip-allocations/{address}/move",
        [
            (admin, "ip.move.start", address.clone()),
            (admin, "ip.move.complete", address.clone())
        ]
    );
    let (status, _) = panel
        .post(
            "/api/v1/ip-allocations/198.51.100.2/move",
            json!({"to_node": node_id}),
        )
        .await;
    assert_eq!(status, 202);
    expect!(
        "POST",
        "/api/v1/ip-allocations/{address}/move",
        [(admin, "ip.move.start", address.clone())]
    );
    let (status, _) = panel
        .call(
            Method::DELETE,
            "/api/v1/ip-allocations/198.51.100.2/move",
            None,
        )
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/ip-allocations/{address}/move",
        [(admin, "ip.move.cancel", address.clone())]
    );
    let (status, _) = panel
        .call(Method::DELETE, "/api/v1/ip-allocations/198.51.100.2", None)
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/ip-allocations/{address}",
        [(admin, "ip.release", address.clone())]
    );
    let (status, _) = panel
        .call(Method::DELETE, &format!("/api/v1/ip-pools/{pool_id}"), None)
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/ip-pools/{id}",
        [(admin, "ip_pool.delete", pool_id)]
    );

    // --- offboarding ---------------------------------------------------------------------------
    let (status, leaver) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": "Leaver", "email": "leaver@example.org"}),
        )
        .await;
    assert_eq!(status, 201);
    seen += 1; // its creation
    let leaver = leaver["id"].as_str().unwrap().to_owned();
    let (status, _) = panel
        .post(&format!("/api/v1/members/{leaver}/disable"), json!({}))
        .await;
    assert_eq!(status, 204);
    expect!(
        "POST",
        "/api/v1/members/{id}/disable",
        [(admin, "member.disable", leaver)]
    );

    // --- deletions ----------------------------------------------------------------------------
    let (status, other) = panel
        .post("/api/v1/sites", site_body("purge.example.org"))
        .await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().unwrap().to_owned();
    seen += 1;
    let (status, _) = panel
        .post(&format!("/api/v1/sites/{other_id}/purge"), json!({}))
        .await;
    assert_eq!(status, 204);
    expect!(
        "POST",
        "/api/v1/sites/{id}/purge",
        [(admin, "site.purge", other_id.clone())]
    );
    for (plural, kind, id) in [
        ("sites", "site", site_id.clone()),
        ("nodes", "node", node_id.clone()),
        ("nodes", "node", other_node.clone()),
        ("nodes", "node", node_b.clone()),
        ("members", "member", ids["member"].clone()),
        ("providers", "provider", ids["provider"].clone()),
    ] {
        let (status, body) = panel
            .call(Method::DELETE, &format!("/api/v1/{plural}/{id}"), None)
            .await;
        assert_eq!(status, 204, "{plural}: {body}");
        expect!(
            "DELETE",
            format!("/api/v1/{plural}/{{id}}"),
            [(admin, &*format!("{kind}.delete"), id)]
        );
    }

    // --- the pages ----------------------------------------------------------------------------
    let (browser, status) = Browser::sign_in(&panel).await;
    assert_eq!(status, 303);
    let session_events = store
        .audit_records(&ExportFilter::default(), seen, 1000)
        .await
        .unwrap();
    assert_eq!(session_events.len(), 1);
    let session_target = session_events[0].event.target_id.clone();
    expect!(
        "POST",
        "/login",
        [(admin, "session.create", session_target.clone())]
    );
    let (_, provider) = browser
        .submit("/providers/new", &[("name", "Page walk")])
        .await;
    expect!(
        "POST",
        "/providers/new",
        [(admin, "provider.create", provider.clone())]
    );
    let (_, member) = browser
        .submit(
            "/members/new",
            &[
                ("display_name", "Page walker"),
                ("email", "pw@example.org"),
                ("role", "member"),
            ],
        )
        .await;
    expect!(
        "POST",
        "/members/new",
        [(admin, "member.create", member.clone())]
    );
    let node_form = |name: &'static str| {
        vec![
            ("name", name),
            ("provider_id", provider.as_str()),
            ("public_addresses", "192.0.2.40"),
            ("capacity.cpu_millis", "8"),
            ("capacity.memory_bytes", "17179869184"),
            ("capacity.disk_bytes", "536870912000"),
            ("overcommit.cpu", "1"),
            ("overcommit.memory", "1"),
        ]
    };
    let (_, page_node) = browser.submit("/nodes/new", &node_form("page-1")).await;
    expect!(
        "POST",
        "/nodes/new",
        [(admin, "node.create", page_node.clone())]
    );
    let site_form = |domain: &'static str| {
        vec![
            ("primary_domain", domain),
            ("owner_id", member.as_str()),
            ("image", "registry.example.org/s:1"),
            ("http_port", "8080"),
            ("limits.cpu_millis", "0.5"),
            ("limits.memory_bytes", "268435456"),
            ("limits.pids", "64"),
            ("volume.quota_bytes", "1073741824"),
            ("volume.mount_path", "/data"),
            ("phase", "running"),
        ]
    };
    let (_, page_site) = browser
        .submit("/sites/new", &site_form("page.example.org"))
        .await;
    expect!(
        "POST",
        "/sites/new",
        [(admin, "site.create", page_site.clone())]
    );
    // A site changes node by a move, not by an edit: the edit names the node it is on.
    let placed_on = panel.get(&format!("/api/v1/sites/{page_site}")).await.1["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (plural, kind, id, mut form) in [
        (
            "providers",
            "provider",
            provider.clone(),
            vec![("name", "Page walk 2")],
        ),
        (
            "members",
            "member",
            member.clone(),
            vec![
                ("display_name", "Page walker 2"),
                ("email", "pw@example.org"),
                ("role", "member"),
            ],
        ),
        ("nodes", "node", page_node.clone(), node_form("page-2")),
        ("sites", "site", page_site.clone(), {
            let mut form = site_form("page2.example.org");
            form.push(("node_id", &placed_on));
            form
        }),
    ] {
        form.push(("version", "1"));
        browser.submit(&format!("/{plural}/{id}/edit"), &form).await;
        expect!(
            "POST",
            format!("/{plural}/{{id}}/edit"),
            [(admin, &*format!("{kind}.update"), id)]
        );
    }
    browser
        .submit(&format!("/nodes/{page_node}/join-token"), &[])
        .await;
    expect!(
        "POST",
        "/nodes/{id}/join-token",
        [(admin, "node.join_token", page_node.clone())]
    );
    // The addresses page's forms.
    browser
        .submit(
            "/addresses/pools",
            &[("provider_id", &provider), ("prefix", "198.51.100.16/28")],
        )
        .await;
    let pool_id = store.ip_pools().await.unwrap()[0].0.id.to_string();
    expect!(
        "POST",
        "/addresses/pools",
        [(admin, "ip_pool.create", pool_id.clone())]
    );
    browser
        .submit(
            "/addresses/allocations",
            &[("pool_id", &pool_id), ("node_id", &page_node)],
        )
        .await;
    expect!(
        "POST",
        "/addresses/allocations",
        [(admin, "ip.allocate", "198.51.100.17".to_owned())]
    );
    let (status, spare) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": provider, "name": "page-spare", "public_addresses": ["192.0.2.32"],
                   "capacity": {"cpu_millis": 1000, "memory_bytes": 1073741824u64, "disk_bytes": 10737418240u64}}),
        )
        .await;
    assert_eq!(status, 201, "{spare}");
    let spare = spare["id"].as_str().unwrap().to_owned();
    expect!(
        "POST",
        "/api/v1/nodes",
        [(admin, "node.create", spare.clone())]
    );
    browser
        .submit(
            "/addresses/allocations/198.51.100.17/move",
            &[("to_node", &spare)],
        )
        .await;
    expect!(
        "POST",
        "/addresses/allocations/{address}/move",
        [(admin, "ip.move.start", "198.51.100.17".to_owned())]
    );
    browser
        .submit("/addresses/allocations/198.51.100.17/cancel-move", &[])
        .await;
    expect!(
        "POST",
        "/addresses/allocations/{address}/cancel-move",
        [(admin, "ip.move.cancel", "198.51.100.17".to_owned())]
    );
    let (status, _) = panel
        .call(Method::DELETE, &format!("/api/v1/nodes/{spare}"), None)
        .await;
    assert_eq!(status, 204);
    expect!(
        "DELETE",
        "/api/v1/nodes/{id}",
        [(admin, "node.delete", spare)]
    );
    browser
        .submit("/addresses/allocations/198.51.100.17/release", &[])
        .await;
    expect!(
        "POST",
        "/addresses/allocations/{address}/release",
        [(admin, "ip.release", "198.51.100.17".to_owned())]
    );
    let (status, _) = panel
        .call(Method::DELETE, &format!("/api/v1/ip-pools/{pool_id}"), None)
        .await;
    assert_eq!(status, 204, "the provider can go afterwards");
    expect!(
        "DELETE",
        "/api/v1/ip-pools/{id}",
        [(admin, "ip_pool.delete", pool_id)]
    );
    let head = store.audit_head().await.unwrap().length;
    browser.submit("/audit/checkpoints", &[]).await;
    expect!(
        "POST",
        "/audit/checkpoints",
        [(admin, "audit.checkpoint", head.to_string())]
    );
    for (plural, kind, id) in [
        ("sites", "site", page_site.clone()),
        ("nodes", "node", page_node.clone()),
        ("members", "member", member.clone()),
        ("providers", "provider", provider.clone()),
    ] {
        browser
            .submit(&format!("/{plural}/{id}/delete"), &[("version", "2")])
            .await;
        expect!(
            "POST",
            format!("/{plural}/{{id}}/delete"),
            [(admin, &*format!("{kind}.delete"), id)]
        );
    }
    browser.submit("/logout", &[]).await;
    expect!(
        "POST",
        "/logout",
        [(admin, "session.delete", session_target)]
    );

    // Break-glass: issued on the panel's host, used in a browser.
    let link = alveole_panel::auth::issue_break_glass(
        store.as_ref(),
        &panel.base,
        chrono::Duration::minutes(10),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let prefix = |secret: &str| -> String {
        alveole_panel::auth::hash_token(secret)
            .chars()
            .take(12)
            .collect()
    };
    seen += 1; // its issue: ("system:admin-cli", "break_glass.issue")
    let used = browser
        .http
        .post(format!("{}/break-glass", panel.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 303);
    let session = used.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    let glass = alveole_panel::auth::BREAK_GLASS_ACTOR;
    expect!(
        "POST",
        "/break-glass",
        [
            (glass, "break_glass.use", prefix(&token)),
            (glass, "session.create", prefix(&session))
        ]
    );

    // Every state-changing route of the table was walked: a new one without its case fails.
    let mutating: BTreeSet<(String, String)> = alveole_panel::routes::routes()
        .into_iter()
        .filter(|r| r.mutates)
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let missing: Vec<_> = mutating.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without an audit case: {missing:?}"
    );
    assert_eq!(
        seen,
        store.audit_head().await.unwrap().length,
        "no event beyond those expected"
    );
    assert!(verification(&panel).await.intact);
    db.drop_db().await;
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
    let key = alveole_audit::SigningKey::load_or_create(
        &std::env::temp_dir().join(format!("alveole-webhook-{}.key", uuid::Uuid::now_v7())),
    )
    .unwrap();
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

/// The actor the chained event at `index` was recorded with.
async fn actor_of(store: &dyn Store, index: u64) -> String {
    links(store)
        .await
        .into_iter()
        .find(|l| l.index == index)
        .and_then(|l| alveole_audit::chain::parse(&l.canonical))
        .map(|p| p.fields.actor)
        .expect("the event")
}

/// Adds `n` events (providers); returns the chain's length after them.
async fn panel_with_more_events(panel: &TestPanel, n: usize) -> u64 {
    for i in 0..n {
        let (status, body) = panel
            .post("/api/v1/providers", json!({"name": format!("More {i}")}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    panel.store.audit_head().await.unwrap().length
}
