//! Secrets at rest, on SQLite and PostgreSQL: a dump of the database holds no secret in clear,
//! the node's agent still gets it, secrets stored in clear by an earlier version are sealed,
//! and a rotation of the key seals them again (recorded).

use std::time::Duration;

use alveole_store::AuditContext;
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use crate::records::site;

/// The secret's value in the node's document, as its agent gets it.
async fn on_the_node(panel: &TestPanel, node: &str) -> Option<String> {
    let desired = panel
        .service()
        .desired_state(node.parse().unwrap(), None, Duration::ZERO)
        .await
        .unwrap();
    desired
        .sites
        .iter()
        .flat_map(|spec| &spec.env)
        .find(|var| var.name == "DB_PASSWORD")
        .map(|var| var.value.clone())
}

async fn site_with_secret(panel: &TestPanel, member: &str, secret: &str) -> Value {
    let mut body = site(member, "exemple.org");
    body["env"] = json!([{"name": "DB_PASSWORD", "value": secret, "secret": true}]);
    let (status, created) = panel.post("/api/v1/sites", body).await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test]
async fn a_dump_holds_no_secret_and_the_node_still_gets_it() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let secret = format!("s3cret-{}", uuid::Uuid::now_v7().simple());
        let created = site_with_secret(&panel, &member, &secret).await;
        let dump = db.dump().await;
        assert!(
            !dump.contains(&secret),
            "{}: the secret is in the dump",
            db.backend()
        );
        assert!(dump.contains("alveole:sealed:v1:"), "stored sealed");
        assert_eq!(
            on_the_node(&panel, &node).await.as_deref(),
            Some(secret.as_str())
        );

        // An edit that leaves the secret out keeps it, sealed.
        let path = format!("/api/v1/sites/{}", created["id"].as_str().unwrap());
        let patch = json!({"version": 1, "limits": {"pids": 64}});
        let (status, changed) = panel.call(Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 200, "{changed}");
        assert!(!db.dump().await.contains(&secret));
        assert_eq!(
            on_the_node(&panel, &node).await.as_deref(),
            Some(secret.as_str())
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn secrets_in_clear_are_sealed_and_a_rotation_seals_them_again() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let secret = format!("s3cret-{}", uuid::Uuid::now_v7().simple());
        site_with_secret(&panel, &member, &secret).await;
        // The row as an earlier version wrote it: the secret in clear, and a mount path that
        // today's rules refuse (sealing must not depend on them).
        db.execute(&format!(
            r#"UPDATE sites SET env = '[{{"name":"DB_PASSWORD","value":"{secret}","secret":true}}]', volume_mount_path = '/proc/data'"#
        ))
        .await;
        assert!(db.dump().await.contains(&secret));

        let ctx = AuditContext::new("system:test", "secrets");
        let sealed = panel.service().seal_stored_secrets(&ctx).await.unwrap();
        assert_eq!(sealed, 1, "one site sealed");
        assert!(!db.dump().await.contains(&secret), "{}", db.backend());
        assert_eq!(
            on_the_node(&panel, &node).await.as_deref(),
            Some(secret.as_str())
        );
        assert_eq!(
            panel.service().seal_stored_secrets(&ctx).await.unwrap(),
            0,
            "nothing left in clear"
        );

        let keyring = panel.service().config().secrets.clone();
        let old = keyring.current_id().unwrap();
        assert_eq!(panel.service().rotate_secrets_key(&ctx).await.unwrap(), 1);
        let new = keyring.current_id().unwrap();
        assert_ne!(old, new);
        let dump = db.dump().await;
        assert!(dump.contains(&format!("alveole:sealed:v1:{new}:")));
        assert!(
            !dump.contains(&format!("alveole:sealed:v1:{old}:")),
            "none left under the old key"
        );
        assert!(!dump.contains(&secret));
        assert_eq!(
            on_the_node(&panel, &node).await.as_deref(),
            Some(secret.as_str())
        );
        let (_, events) = panel
            .get("/api/v1/audit/events?action=secrets.rotate")
            .await;
        assert_eq!(
            events["items"].as_array().map(Vec::len),
            Some(1),
            "{events}"
        );
        db.drop_db().await;
    }
}
