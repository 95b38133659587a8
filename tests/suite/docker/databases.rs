//! A site's databases on the real engine, made through the panel: a MariaDB and a PostgreSQL
//! server beside their sites, each site reaching its own through the variables it is given;
//! no other container, and not the host, reaching either; the site's container replaced
//! without its database restarting; the passwords nowhere in clear but in the node's
//! containers; a database over its quota raising its site's alert.

use std::sync::Arc;

use alveole_agent::agent::Agent;
use alveole_agent::ingress::Ingress;
use alveole_tests::docker::ensure_database_images;
use serde_json::{Value, json};

use super::*;

/// A site on a database image (it carries the servers' clients and busybox's httpd), answering
/// `hello from <name>`.
pub(super) fn site_with(member: &str, name: &str, image: &str, databases: Value) -> Value {
    let command = [
        "/bin/sh",
        "-c",
        "mkdir -p /tmp/www && echo \"hello from $SITE_NAME\" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    ];
    json!({
        "owner_id": member, "primary_domain": format!("{name}.example.org"), "image": image,
        "command": command, "env": [{"name": "SITE_NAME", "value": name}],
        "limits": {"cpu_millis": 250, "memory_bytes": 67108864, "pids": 64},
        "databases": databases,
    })
}

/// Runs `script` with `sh -c` in `container`: (exit success, standard output and error).
pub(super) fn exec(container: &str, script: &str) -> (bool, String) {
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker exec");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn started_at(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", container])
}

/// The value of `name` in the container's environment.
fn env_of(container: &str, name: &str) -> String {
    let env = docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        container,
    ]);
    env.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn docker_sites_reach_their_own_databases_and_nothing_else_does() {
    alveole_tests::init();
    if !ensure_database_images() {
        return;
    }
    let Some(fixture) = Fixture::start().await else {
        return;
    };
    let panel = &fixture.panel;
    let ingress = Arc::new(Ingress::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress_address = listener.local_addr().unwrap();
    let server = tokio::spawn(ingress.clone().serve(listener));
    let runtime = DockerRuntime::connect().await.unwrap();
    // Volumes measured at every pass (the quota alert below).
    let mut agent = Agent::new(
        fixture.credential.clone(),
        fixture.client.clone(),
        &fixture.state_dir,
        runtime,
        ingress.clone(),
    )
    .with_usage_interval(std::time::Duration::ZERO);
    let naming = Naming {
        node_id: fixture.node_id,
    };

    // Refusals first, each on its field, nothing kept.
    let (status, refused) = panel
        .post(
            "/api/v1/sites",
            site_with(
                &fixture.member,
                "refused",
                TEST_IMAGE,
                json!([{"name": "app", "engine": "mariadb", "version": "5.5"},
                       {"name": "App", "engine": "postgresql", "version": "15"}]),
            ),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["databases[1].name"], "{refused}");
    let (status, refused) = panel
        .post(
            "/api/v1/sites",
            site_with(
                &fixture.member,
                "refused",
                TEST_IMAGE,
                json!([{"name": "app", "engine": "mariadb", "version": "5.5"}]),
            ),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "databases[0].version");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("10.11"),
        "the offered versions are named: {refused}"
    );

    let (status, maria) = panel
        .post(
            "/api/v1/sites",
            site_with(
                &fixture.member,
                "maria",
                "alveole-test/mariadb:10.11",
                json!([{"name": "app", "engine": "mariadb", "version": "10.11",
                        "quota_bytes": 16777216}]),
            ),
        )
        .await;
    assert_eq!(status, 201, "{maria}");
    let (status, pg) = panel
        .post(
            "/api/v1/sites",
            site_with(
                &fixture.member,
                "pg",
                "alveole-test/postgresql:15",
                json!([{"name": "shop", "engine": "postgresql", "version": "15"}]),
            ),
        )
        .await;
    assert_eq!(status, 201, "{pg}");
    let (status, plain) = panel
        .post(
            "/api/v1/sites",
            site_with(
                &fixture.member,
                "plain",
                "alveole-test/postgresql:15",
                json!([]),
            ),
        )
        .await;
    assert_eq!(status, 201, "{plain}");
    let id = |site: &Value| -> SiteId { site["id"].as_str().unwrap().parse().unwrap() };
    let (maria_id, pg_id, plain_id) = (id(&maria), id(&pg), id(&plain));

    let report = agent.pass().await.expect("a pass");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for host in ["maria.example.org", "pg.example.org", "plain.example.org"] {
        let (status, body) = through_ingress(ingress_address, host).await;
        assert_eq!(status, 200, "{host}: {body}");
    }

    // Each site reaches its own database with the variables it was given.
    let maria_site = naming.container(maria_id);
    let (ok, out) = exec(
        &maria_site,
        r#"MYSQL_PWD="$ALVEOLE_DB_APP_PASSWORD" mariadb -h "$ALVEOLE_DB_APP_HOST" -P "$ALVEOLE_DB_APP_PORT" -u "$ALVEOLE_DB_APP_USER" "$ALVEOLE_DB_APP_NAME" -e "CREATE TABLE kept (n INT); INSERT INTO kept VALUES (1),(2),(3); SELECT COUNT(*) FROM kept""#,
    );
    assert!(ok && out.contains('3'), "{out}");
    let pg_site = naming.container(pg_id);
    let (ok, out) = exec(
        &pg_site,
        r#"psql "$DATABASE_URL" -tAc "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1),(2); SELECT count(*) FROM kept""#,
    );
    assert!(ok && out.trim().ends_with('2'), "{out}");

    // Nothing else reaches them: not another site's container (the bridge keeps containers
    // apart), not the host (the servers listen on their pod's loopback only). The host does
    // reach the site's own port on the same address: the path exists, the database is closed.
    let pod_address = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &naming.pod(maria_id),
    ]);
    let pg_pod_address = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &naming.pod(pg_id),
    ]);
    assert!(!pod_address.is_empty() && !pg_pod_address.is_empty());
    let mariadb_from = |from: &str, address: &str| {
        exec(
            from,
            &format!("mariadb -h {address} -P 3306 --connect-timeout=2 -u app -e ''"),
        )
    };
    let psql_from = |from: &str, address: &str| {
        exec(
            from,
            &format!("PGCONNECT_TIMEOUT=2 psql -h {address} -p 5432 -U shop -d shop -c ''"),
        )
    };
    let plain_site = naming.container(plain_id);
    for from in [&plain_site, &pg_site] {
        let (ok, out) = mariadb_from(from, &pod_address);
        // Reached, the server would have answered (access denied): it was not reached.
        assert!(!ok && out.contains("Can't connect"), "{from}: {out}");
    }
    for from in [&plain_site, &maria_site] {
        let (ok, out) = psql_from(from, &pg_pod_address);
        assert!(
            !ok && out.contains("failed:") && !out.contains("authentication"),
            "{from}: {out}"
        );
    }
    let connect = |port: u16| {
        std::net::TcpStream::connect_timeout(
            &format!("{pod_address}:{port}").parse().unwrap(),
            std::time::Duration::from_secs(2),
        )
    };
    assert!(connect(8080).is_ok(), "the host reaches the site itself");
    assert!(
        connect(3306).is_err(),
        "the host does not reach its database"
    );

    // Replacing the site's container leaves its database running, its data in place.
    let database = naming.database(maria_id, "app");
    let before = started_at(&database);
    let path = format!("/api/v1/sites/{maria_id}");
    let version = panel.get(&path).await.1["version"].clone();
    let patch = json!({"version": version, "env": [{"name": "SITE_NAME", "value": "maria2"}]});
    let (status, _) = panel.call(reqwest::Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, 200);
    let report = agent.pass().await.expect("a pass");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report
            .actions
            .iter()
            .any(|a| matches!(a, Action::Replace { site, .. } if *site == maria_id)),
        "{:?}",
        report.actions
    );
    assert_eq!(
        started_at(&database),
        before,
        "the database did not restart"
    );
    let (ok, out) = exec(
        &maria_site,
        r#"MYSQL_PWD="$ALVEOLE_DB_APP_PASSWORD" mariadb -h 127.0.0.1 -u app app -N -e "SELECT COUNT(*) FROM kept""#,
    );
    assert!(ok && out.trim() == "3", "{out}");

    // The server is hardened like a site: no capability, no new privileges, its own user.
    let hardening = docker(&[
        "inspect",
        "-f",
        "{{.Config.User}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}}",
        &database,
    ]);
    assert_eq!(
        hardening, "mysql [ALL] [no-new-privileges:true] 268435456",
        "{hardening}"
    );

    // The passwords are in the node's containers and nowhere in clear at the panel.
    let password = env_of(&database, "MARIADB_PASSWORD");
    let admin = env_of(&database, "MARIADB_ROOT_PASSWORD");
    let pg_password = env_of(&naming.database(pg_id, "shop"), "POSTGRES_PASSWORD");
    assert_eq!(password.len(), 32, "a generated password");
    assert_eq!(env_of(&maria_site, "ALVEOLE_DB_APP_PASSWORD"), password);
    let (_, shown) = panel.get(&path).await;
    assert_eq!(shown["databases"][0]["name"], "app", "{shown}");
    let mut everything = shown.to_string();
    everything.push_str(&panel.get("/api/v1/sites").await.1.to_string());
    everything.push_str(&panel.page(&format!("/sites/{maria_id}")).await);
    everything.push_str(&fixture.db.dump().await);
    for event in panel.events("site.create").await {
        everything.push_str(&serde_json::to_string(&event).unwrap());
    }
    for event in panel.events("site.update").await {
        everything.push_str(&serde_json::to_string(&event).unwrap());
    }
    for secret in [&password, &admin, &pg_password] {
        assert!(!everything.contains(secret.as_str()), "a password leaked");
    }

    // A database over its quota (16 MiB: a MariaDB data directory is larger) raises the
    // site's alert; the site's own volume is within its quota.
    agent.pass().await.expect("a pass");
    let (_, status) = panel
        .get(&format!("/api/v1/nodes/{}/status", fixture.node))
        .await;
    let alerts = status["alerts"].as_array().cloned().unwrap_or_default();
    assert!(
        alerts.iter().any(|a| a["kind"] == "database_over_quota"
            && a["site_id"] == maria_id.to_string()
            && a["message"].as_str().unwrap().contains("database app")),
        "{status}"
    );
    assert!(
        !alerts.iter().any(|a| a["site_id"] == pg_id.to_string()),
        "{status}"
    );

    // A new password: set in the running server, then given to the site's new container.
    let (status, rotated) = panel
        .post(&format!("{path}/databases/app/password"), json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let report = agent.pass().await.expect("a pass");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let new_password = env_of(&maria_site, "ALVEOLE_DB_APP_PASSWORD");
    assert!(new_password.len() == 32 && new_password != password);
    assert_eq!(
        started_at(&database),
        before,
        "the database did not restart"
    );
    let query = |secret: &str| {
        exec(
            &maria_site,
            &format!(
                "MYSQL_PWD={secret} mariadb -h 127.0.0.1 -u app app -N -e 'SELECT COUNT(*) FROM kept'"
            ),
        )
    };
    let (ok, out) = query(&new_password);
    assert!(ok && out.trim() == "3", "{out}");
    let (ok, out) = query(&password);
    assert!(
        !ok && out.contains("Access denied"),
        "the old one no longer works: {out}"
    );
    let pg_server = naming.database(pg_id, "shop");
    let pg_before = started_at(&pg_server);
    let (status, _) = panel
        .post(
            &format!("/api/v1/sites/{pg_id}/databases/shop/password"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    agent.pass().await.expect("a pass");
    assert_eq!(started_at(&pg_server), pg_before);
    let (ok, out) = exec(
        &pg_site,
        r#"psql "$DATABASE_URL" -tAc "SELECT count(*) FROM kept""#,
    );
    assert!(ok && out.trim() == "2", "{out}");
    assert_ne!(env_of(&pg_site, "ALVEOLE_DB_SHOP_PASSWORD"), pg_password);

    // A pod started again by hand has a new namespace: the next pass makes the database and
    // the site again in it; the site answers, its data kept.
    docker(&["restart", "-t", "1", &naming.pod(maria_id)]);
    let report = agent.pass().await.expect("a pass");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report
            .actions
            .iter()
            .any(|a| matches!(a, Action::ReplaceDatabase { site, .. } if *site == maria_id))
            && report
                .actions
                .iter()
                .any(|a| matches!(a, Action::Replace { site, .. } if *site == maria_id)),
        "{:?}",
        report.actions
    );
    let (status, body) = through_ingress(ingress_address, "maria.example.org").await;
    assert_eq!(status, 200, "{body}");
    let (ok, out) = query(&new_password);
    assert!(ok && out.trim() == "3", "{out}");
    assert_eq!(agent.pass().await.expect("a pass").actions, []);

    // Purging the sites removes their pods, servers and volumes.
    for site in [maria_id, pg_id, plain_id] {
        let path = format!("/api/v1/sites/{site}/purge");
        let (status, _) = panel.call(reqwest::Method::POST, &path, None).await;
        assert_eq!(status, 204);
    }
    agent.pass().await.expect("a pass");
    let label = format!("label=coop.alveole.node={}", fixture.node_id);
    assert_eq!(docker(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &label]), "");
    server.abort();
}
