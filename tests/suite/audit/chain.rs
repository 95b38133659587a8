//! Tampering with the chain: concurrent writers never fork it, and every kind of edit,
//! rewrite, removal or insertion is found and named; checkpoints reveal what the chain alone
//! cannot.

use alveole_audit::{ChainHead, EventFields, seal};
use alveole_store::Checkpoint;
use alveole_tests::{TestDb, TestPanel};
use serde_json::json;

use super::{links, panel_with_providers, verification};

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
        let forger_dir = alveole_tests::temp_dir("alveole-forger-");
        let forger =
            alveole_audit::SigningKey::load_or_create(&forger_dir.path().join("forger.key"))
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
