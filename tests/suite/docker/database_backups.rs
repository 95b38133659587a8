//! A site's databases in its backups: three real agents (the site's node, a vault, a node of a
//! third provider), a site with a MariaDB and a PostgreSQL database. Each backup holds a
//! consistent dump of both; a drill on the third provider's node loads them into a copy and
//! finds the backup's rows; a whole restore in place brings their rows back; a restore into a
//! site on the third provider's node gives the same row counts and checksums there; a dump is
//! downloaded and imported through the panel.

use std::time::Duration;

use alveole_tests::TestPanel;
use alveole_tests::docker::{NodeCleanup, ensure_database_images};
use reqwest::Method;
use serde_json::{Value, json};

use super::Naming;
use super::backups::{node, provider, restored};
use super::databases::{exec, site_with};
use super::moves::{enrolled, get_through, reported, start_agent, wait_for};

/// Fills both databases of the site in `container`: `rows` rows each, with some text.
fn fill(container: &str, rows: u32) {
    let (ok, out) = exec(
        container,
        &format!(
            r#"MYSQL_PWD="$ALVEOLE_DB_APP_PASSWORD" mariadb -h 127.0.0.1 -u app app -e "CREATE TABLE kept (n INT PRIMARY KEY, words TEXT); INSERT INTO kept SELECT seq, CONCAT('row ', seq, ' é') FROM seq_1_to_{rows}""#
        ),
    );
    assert!(ok, "{out}");
    let (ok, out) = exec(
        container,
        &format!(
            r#"psql "$ALVEOLE_DB_SHOP_URL" -qc "CREATE TABLE kept (n int PRIMARY KEY, words text); INSERT INTO kept SELECT n, 'row ' || n || ' é' FROM generate_series(1, {rows}) n""#
        ),
    );
    assert!(ok, "{out}");
}

/// Each database's row count and the checksum of its rows, as the site's container reads
/// them: "mariadb <count> <md5> / postgresql <count> <md5>" (an error's text instead when a
/// table is missing).
fn contents(container: &str) -> String {
    let (_, maria) = exec(
        container,
        r#"MYSQL_PWD="$ALVEOLE_DB_APP_PASSWORD" mariadb -h 127.0.0.1 -u app app -N -e "SELECT COUNT(*), MD5(GROUP_CONCAT(n, words ORDER BY n SEPARATOR ',')) FROM kept""#,
    );
    let (_, pg) = exec(
        container,
        r#"psql "$ALVEOLE_DB_SHOP_URL" -tAF ' ' -c "SELECT count(*), md5(string_agg(n || words, ',' ORDER BY n)) FROM kept""#,
    );
    format!(
        "mariadb {} / postgresql {}",
        maria.split_whitespace().collect::<Vec<_>>().join(" "),
        pg.trim()
    )
}

/// The site on `node`, with a MariaDB database `app` and a PostgreSQL one `shop`: its id.
async fn site_on(panel: &TestPanel, member: &str, node: &str, name: &str) -> String {
    let mut body = site_with(
        member,
        name,
        "alveole-test/mariadb:10.11",
        json!([{"name": "app", "engine": "mariadb", "version": "10.11"},
               {"name": "shop", "engine": "postgresql", "version": "15"}]),
    );
    body["node_id"] = json!(node);
    let (status, created) = panel.post("/api/v1/sites", body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// A database's dump through the panel's API.
async fn dump(panel: &TestPanel, path: &str) -> String {
    let response = panel
        .http
        .get(format!("{}{path}", panel.base))
        .bearer_auth(&panel.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/sql");
    response.text().await.unwrap()
}

/// An import through the panel's API: its status and answer.
async fn import(panel: &TestPanel, path: &str, sql: &str) -> (u16, String) {
    let response = panel
        .http
        .put(format!("{}{path}", panel.base))
        .bearer_auth(&panel.token)
        .header("content-type", "application/sql")
        .body(sql.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn serves(ingress: std::net::SocketAddr, host: &str, body: &str) {
    wait_for(
        &format!("{host} to serve"),
        Duration::from_secs(120),
        async || (get_through(ingress, host, "/").await == Some((200, body.into()))).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn docker_databases_are_dumped_in_backups_and_restored_in_place_and_elsewhere() {
    alveole_tests::init();
    if !ensure_database_images() {
        return;
    }
    let db = alveole_tests::TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node_a, member) = panel.seed().await;
    let vault_provider = provider(&panel, "Coffre").await;
    let far_provider = provider(&panel, "Ailleurs").await;
    let vault_node = node(&panel, &vault_provider, "vault-1").await;
    let node_c = node(&panel, &far_provider, "node-c").await;
    let a = enrolled(&panel, &node_a).await;
    let v = enrolled(&panel, &vault_node).await;
    let c = enrolled(&panel, &node_c).await;
    let _cleanup = NodeCleanup::new([a.id, v.id, c.id]);
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let _agent_v = start_agent(&panel, &v, any, any).await;
    let agent_c = start_agent(&panel, &c, any, any).await;
    reported(&panel, v.id).await;
    reported(&panel, c.id).await;
    let (status, target) = panel
        .post(
            "/api/v1/backup-targets",
            json!({"name": "coffre", "node_id": vault_node}),
        )
        .await;
    assert_eq!(status, 201, "{target}");

    let site = site_on(&panel, &member, &node_a, "donnees").await;
    serves(
        agent_a.ingress,
        "donnees.example.org",
        "hello from donnees\n",
    )
    .await;
    let container = Naming { node_id: a.id }.container(site.parse().unwrap());
    fill(&container, 5000);
    let original = contents(&container);
    assert!(original.starts_with("mariadb 5000 "), "{original}");

    let (_, current) = panel.get(&format!("/api/v1/sites/{site}")).await;
    let policy = json!({"version": current["version"], "backup": {"targets": [target["id"]]}});
    let (status, changed) = panel
        .call(
            Method::PATCH,
            &format!("/api/v1/sites/{site}"),
            Some(policy),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    let backups = format!("/api/v1/sites/{site}/backups");
    let run: Value = wait_for("the first backup", Duration::from_secs(120), async || {
        let (_, seen) = panel.get(&backups).await;
        let run = seen["runs"].as_array()?.first()?.clone();
        assert!(run["error"].is_null(), "the backup failed: {run}");
        Some(run)
    })
    .await;
    let snapshot = run["snapshot_id"].as_str().unwrap().to_owned();

    // A drill on another provider's node loads both dumps into a copy of the site's databases:
    // they answer, with exactly the rows of the backup.
    let (status, drill) = panel
        .post(&format!("/api/v1/sites/{site}/drills"), json!({}))
        .await;
    assert_eq!(status, 202, "{drill}");
    let path = format!("/api/v1/drills/{}", drill["id"].as_str().unwrap());
    let drilled = wait_for("the drill to end", Duration::from_secs(180), async || {
        let (_, seen) = panel.get(&path).await;
        (seen["state"] != "running").then_some(seen)
    })
    .await;
    assert_eq!(drilled["state"], "passed", "{drilled}");

    // Rows lost after the backup come back with a whole restore in place.
    let (ok, out) = exec(
        &container,
        r#"MYSQL_PWD="$ALVEOLE_DB_APP_PASSWORD" mariadb -h 127.0.0.1 -u app app -e "DELETE FROM kept WHERE n > 10; CREATE TABLE extra (x INT)" && psql "$ALVEOLE_DB_SHOP_URL" -qc "DROP TABLE kept""#,
    );
    assert!(ok, "{out}");
    assert_ne!(contents(&container), original);
    restored(&panel, &site, json!({"snapshot": snapshot})).await;
    serves(
        agent_a.ingress,
        "donnees.example.org",
        "hello from donnees\n",
    )
    .await;
    assert_eq!(contents(&container), original, "restored in place");
    let (ok, out) = exec(
        &container,
        r#"MYSQL_PWD="$ALVEOLE_DB_APP_PASSWORD" mariadb -h 127.0.0.1 -u app app -N -e "SHOW TABLES""#,
    );
    assert!(
        ok && out.trim() == "kept",
        "exactly the snapshot's tables: {out}"
    );

    // A member downloads a dump through the panel, and imports: a dump that does not load
    // changes nothing; one that loads replaces the database's content.
    // (pg_dump empties the search path: its table is public.kept from there on.)
    for (name, table) in [("app", "`kept`"), ("shop", "public.kept")] {
        let path = format!("/api/v1/sites/{site}/databases/{name}/dump");
        let dumped = dump(&panel, &path).await;
        assert!(
            dumped.contains(&format!("CREATE TABLE {table}")),
            "{name}: {}",
            &dumped[..dumped.len().min(400)]
        );
        let before = contents(&container);
        let (status, refused) = import(&panel, &path, "CREATE TABLE broken (;\n").await;
        assert_eq!(status, 400, "{refused}");
        assert!(refused.contains("syntax"), "the server's reason: {refused}");
        assert_eq!(contents(&container), before, "{name}: nothing changed");
        let extended = format!("{dumped}\nINSERT INTO {table} VALUES (100001, 'imported');\n");
        let (status, imported) = import(&panel, &path, &extended).await;
        assert_eq!(status, 200, "{imported}");
    }
    let after = contents(&container);
    assert_eq!(
        after.matches(" 5001 ").count(),
        2,
        "one more row in each: {after}"
    );
    assert_eq!(panel.events("database.import").await.len(), 2);
    assert_eq!(panel.events("database.dump").await.len(), 2);

    // Into a site with the same databases on the third provider's node: the same rows.
    let elsewhere = site_on(&panel, &member, &node_c, "ailleurs").await;
    serves(
        agent_c.ingress,
        "ailleurs.example.org",
        "hello from ailleurs\n",
    )
    .await;
    let done = restored(
        &panel,
        &site,
        json!({"snapshot": snapshot, "into_site_id": elsewhere}),
    )
    .await;
    assert_eq!(done["site_id"], elsewhere.as_str());
    serves(
        agent_c.ingress,
        "ailleurs.example.org",
        "hello from ailleurs\n",
    )
    .await;
    let there = Naming { node_id: c.id }.container(elsewhere.parse().unwrap());
    assert_eq!(
        contents(&there),
        original,
        "the same row counts and checksums"
    );
    db.drop_db().await;
}
