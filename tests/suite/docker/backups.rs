//! Backups end to end: a real panel, three real agents standing for three providers (the
//! site's node, a vault, another node), the machine's Docker engine, and Debian's `restic`.
//! The site's node backs it up to the vault over mutual TLS and to a REST server at a fourth
//! provider (its hook's output in both snapshots); restic lists, checks and reads the repository on the vault's disk; a file and
//! the whole site are restored in place, a snapshot restic took is restored into the site, and
//! the site is restored into another site on the third provider's node: each then serves the
//! restored content.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alveole_tests::docker::NodeCleanup;
use alveole_tests::{TestDb, TestPanel, ensure_test_image, skip_or_fail};
use reqwest::Method;
use serde_json::{Value, json};

use super::moves::{
    create_site, enrolled, get_through, reported, start_agent, volume_dir, wait_for,
};

const HOST: &str = "sauve.example.org";
const ELSEWHERE: &str = "ailleurs.example.org";

/// Debian's restic on a repository on this disk, with its key in a file.
struct Restic {
    repository: PathBuf,
    password_file: PathBuf,
}

impl Restic {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("restic")
            .arg("--repo")
            .arg(&self.repository)
            .arg("--password-file")
            .arg(&self.password_file)
            .args(["--no-cache", "--quiet"])
            .args(args)
            .output()
            .expect("restic runs");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A restic REST server at another provider, standing in for one a co-op rents: alveole's
/// vault, served over plain HTTP on loopback, every request as one client's, granted
/// `repository`. Its address, and the directory it keeps repositories in.
async fn rest_server(repository: &str) -> (SocketAddr, tempfile::TempDir) {
    use alveole_agent::vault::{Grants, Vault};
    let dir = alveole_tests::temp_dir("alveole-rest-server-");
    let client = alveole_model::NodeId::generate();
    let vault = std::sync::Arc::new(Vault::new(dir.path().to_owned()));
    vault.set_grants(Grants::from([(
        repository.to_owned(),
        std::collections::BTreeSet::from([client]),
    )]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let vault = vault.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let vault = vault.clone();
                    async move {
                        use alveole_agent::moves::peer::PeerHandler;
                        Ok::<_, std::convert::Infallible>(vault.handle(client, request).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (at, dir)
}

pub(super) async fn provider(panel: &TestPanel, name: &str) -> Value {
    let (status, created) = panel.post("/api/v1/providers", json!({"name": name})).await;
    assert_eq!(status, 201, "{created}");
    created["id"].clone()
}

pub(super) async fn node(panel: &TestPanel, provider: &Value, name: &str) -> String {
    let (status, created) = panel
        .post(
            "/api/v1/nodes",
            json!({"provider_id": provider, "name": name, "public_addresses": [],
                   "capacity": {"cpu_millis": 8000, "memory_bytes": 16u64 << 30,
                                "disk_bytes": 500u64 << 30}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Asks for a restore and waits (bounded) for its end: the restore as the panel keeps it.
pub(super) async fn restored(panel: &TestPanel, site: &str, body: Value) -> Value {
    let (status, restore) = panel
        .post(&format!("/api/v1/sites/{site}/restores"), body)
        .await;
    assert_eq!(status, 202, "{restore}");
    let path = format!("/api/v1/restores/{}", restore["id"].as_str().unwrap());
    let done = wait_for("the restore", Duration::from_secs(120), async || {
        let (_, seen) = panel.get(&path).await;
        (seen["state"] != "running").then_some(seen)
    })
    .await;
    assert_eq!(done["state"], "restored", "{done}");
    assert!(
        done["bytes_done"].as_u64() == done["bytes_total"].as_u64(),
        "its progress ends full: {done}"
    );
    done
}

/// Waits until `host` answers `body` at `/` through `ingress`.
async fn serves(ingress: SocketAddr, host: &str, body: &str) {
    wait_for(
        &format!("{host} to serve {body:?}"),
        Duration::from_secs(60),
        async || (get_through(ingress, host, "/").await == Some((200, body.into()))).then_some(()),
    )
    .await;
}

pub(super) fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

#[tokio::test]
async fn docker_a_site_is_backed_up_at_another_provider_and_restored_in_place_and_elsewhere() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    if Command::new("restic").arg("version").output().is_err() {
        skip_or_fail("restic", "apt-get install restic (.ci/run does)");
        return;
    }
    let db = TestDb::sqlite().await;
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
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
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
    let site = create_site(&panel, &member, a.id, HOST).await;
    // A second copy at a REST server of a fourth provider.
    let (rest_at, rest_dir) = rest_server(&site).await;
    let rest_provider = provider(&panel, "Stockage").await;
    let (status, rest) = panel
        .post(
            "/api/v1/backup-targets",
            json!({"name": "rest-stockage", "url": format!("http://{rest_at}/vault/"),
                   "provider_id": rest_provider}),
        )
        .await;
    assert_eq!(status, 201, "{rest}");
    let volume = wait_for("the site's volume", Duration::from_secs(60), async || {
        Some(volume_dir(a.id, &site)).filter(|dir| dir.is_dir())
    })
    .await;
    write(&volume, "www/index.html", "hello\n");
    write(&volume, "files/keep.txt", "keep\n");
    serves(agent_a.ingress, HOST, "hello\n").await;
    let (_, current) = panel.get(&format!("/api/v1/sites/{site}")).await;
    let policy = json!({"version": current["version"], "backup": {"targets": [target["id"], rest["id"]],
        "hook": {"name": "index", "command": ["/bin/cat", "/data/www/index.html"], "timeout_seconds": 30}}});
    let (status, changed) = panel
        .call(
            Method::PATCH,
            &format!("/api/v1/sites/{site}"),
            Some(policy),
        )
        .await;
    assert_eq!(status, 200, "{changed}");

    // Its node backs it up at once (never backed up there), to the vault and the REST server.
    let backups = format!("/api/v1/sites/{site}/backups");
    let runs = wait_for("the first backups", Duration::from_secs(120), async || {
        let (_, seen) = panel.get(&backups).await;
        let runs = seen["runs"].as_array()?.clone();
        for run in &runs {
            assert!(run["error"].is_null(), "a backup failed: {run}");
        }
        (runs.len() >= 2).then_some(runs)
    })
    .await;
    let first = runs
        .iter()
        .find(|run| run["target_id"] == target["id"])
        .expect("a copy at the vault")
        .clone();
    let second = runs
        .iter()
        .find(|run| run["target_id"] == rest["id"])
        .expect("a copy at the REST server");
    let snapshot = first["snapshot_id"].as_str().unwrap().to_owned();
    assert!(first["bytes_total"].as_u64().unwrap() >= 11, "{first}");

    // Debian's restic reads it on the vault's disk, with the key the site's node was given.
    let key = panel
        .service()
        .desired_state(a.id, None, Duration::ZERO)
        .await
        .unwrap()
        .sites[0]
        .backup
        .clone()
        .unwrap()
        .password
        .0;
    let password_file = v.state_dir.path().join("restic-password");
    std::fs::write(&password_file, &key).unwrap();
    let restic = Restic {
        repository: v.state_dir.path().join("vault").join(&site),
        password_file,
    };
    assert!(restic.run(&["snapshots"]).contains(&snapshot[..8]));
    restic.run(&["check", "--read-data"]);
    assert_eq!(
        restic.run(&["dump", &snapshot, "/www/index.html"]),
        "hello\n"
    );
    assert_eq!(
        restic.run(&["dump", &snapshot, "/.alveole/hooks/index"]),
        "hello\n",
        "the hook's output is in the snapshot"
    );
    assert!(
        !volume.join(".alveole/hooks/index").exists(),
        "and not left in the volume"
    );
    let at_rest = Restic {
        repository: rest_dir.path().join(&site),
        password_file: restic.password_file.clone(),
    };
    let copy = second["snapshot_id"].as_str().unwrap();
    assert_eq!(at_rest.run(&["dump", copy, "/www/index.html"]), "hello\n");

    // One file, in place: the rest stays as it is.
    write(&volume, "www/index.html", "broken\n");
    write(&volume, "files/new.txt", "new\n");
    serves(agent_a.ingress, HOST, "broken\n").await;
    restored(&panel, &site, json!({"paths": ["/www/index.html"]})).await;
    serves(agent_a.ingress, HOST, "hello\n").await;
    assert!(
        volume.join("files/new.txt").exists(),
        "a file restore removes nothing"
    );

    // The whole site, in place: exactly the snapshot (the site stopped meanwhile).
    write(&volume, "www/index.html", "broken again\n");
    restored(&panel, &site, json!({"snapshot": &snapshot[..8]})).await;
    serves(agent_a.ingress, HOST, "hello\n").await;
    assert!(
        !volume.join("files/new.txt").exists(),
        "what the snapshot lacks goes"
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("files/keep.txt")).unwrap(),
        "keep\n"
    );

    // A snapshot restic took (of a directory of its own) restores into the site.
    let taken = alveole_tests::temp_dir("alveole-restic-site-");
    write(taken.path(), "www/index.html", "from restic\n");
    let out = restic.run(&[
        "backup",
        "--json",
        "--host",
        "cli",
        &taken.path().to_string_lossy(),
    ]);
    let summary: Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message_type"] == "summary")
        .expect("restic's summary");
    let theirs = summary["snapshot_id"].as_str().unwrap().to_owned();
    restored(&panel, &site, json!({"snapshot": theirs})).await;
    serves(agent_a.ingress, HOST, "from restic\n").await;

    // Into another site, on a node of a third provider.
    let other = create_site(&panel, &member, c.id, ELSEWHERE).await;
    wait_for(
        "the other site's volume",
        Duration::from_secs(60),
        async || Some(volume_dir(c.id, &other)).filter(|dir| dir.is_dir()),
    )
    .await;
    let done = restored(
        &panel,
        &site,
        json!({"snapshot": snapshot, "into_site_id": other}),
    )
    .await;
    assert_eq!(done["site_id"], other.as_str());
    serves(agent_c.ingress, ELSEWHERE, "hello\n").await;
    // Each backup and restore is in the audit record.
    assert!(!panel.events("backup.completed").await.is_empty());
    assert_eq!(panel.events("restore.finish").await.len(), 4);
    db.drop_db().await;
}
