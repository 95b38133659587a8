//! The vault role against Debian's `restic`: a node backs up to another node's vault over
//! the agents' mutual TLS, with its own certificate; restic lists, checks and restores what
//! it wrote; the node can neither delete nor rewrite a snapshot; a node not granted the
//! repository reads nothing of it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use alveole_agent::control::identity::Credential;
use alveole_agent::moves::peer::{PeerIdentity, node_name};
use alveole_agent::vault::{Grants, Vault};
use alveole_tests::{TestDb, TestPanel, skip_or_fail};
use serde_json::json;

use crate::moves::create_node;

const PASSWORD: &str = "the site's repository password";

/// Forwards every CONNECT to `to`: restic reaches the vault by its certificate's name (which
/// no resolver knows) through it, as through any HTTPS proxy.
async fn connect_proxy(to: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                if !head.starts_with(b"CONNECT ") {
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (at, task)
}

/// restic, as a node whose credential is `who`, on repository `repository` of the vault.
struct Restic<'a> {
    dir: &'a Path,
    url: String,
    proxy: SocketAddr,
    who: &'a str,
}

impl Restic<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("restic");
        command
            .args(["--repo", &self.url, "--cacert"])
            .arg(self.dir.join("ca.pem"))
            .arg("--tls-client-cert")
            .arg(self.dir.join(format!("{}.pem", self.who)))
            .args(["--no-cache", "--json"])
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("HTTPS_PROXY", format!("http://{}", self.proxy))
            .env("HOME", self.dir);
        command
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("restic runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// How many files are under `dir` (a repository's packs).
fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// An HTTPS client with `who`'s certificate, reaching `vault`'s agent at `at`: it and the
/// base URL.
fn as_node(
    who: &Credential,
    ca_pem: &str,
    vault: alveole_model::NodeId,
    at: SocketAddr,
) -> (reqwest::Client, String) {
    let name = node_name(vault);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(who.identity_pem().as_bytes()).unwrap())
        .resolve(&name, at)
        .build()
        .unwrap();
    (http, format!("https://{name}:{}", at.port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_backs_up_to_a_vault_that_never_lets_a_node_delete_or_rewrite() {
    if Command::new("restic").arg("version").output().is_err() {
        skip_or_fail("restic", "apt-get install restic (.ci/run does)");
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (_, provider) = panel
        .post("/api/v1/providers", json!({"name": "vault-provider"}))
        .await;
    let node = |name: &'static str| {
        let (panel, provider) = (&panel, &provider["id"]);
        async move { create_node(panel, provider, name, (1000, 1)).await }
    };
    let (vault_node, site_node, other_node) =
        (node("vault").await, node("web").await, node("other").await);
    let enrolled: Vec<Credential> = vec![
        panel.enrol(&vault_node).await,
        panel.enrol(&site_node).await,
        panel.enrol(&other_node).await,
    ];
    let ca_pem = panel.tls.ca.ca_pem.clone();

    // The vault: one repository, granted to the site's node only.
    let scratch = alveole_tests::temp_dir("alveole-vault-");
    let dir = scratch.path();
    let vault = Arc::new(Vault::new(dir.join("repositories")));
    let repository = "site-0193";
    vault.set_grants(Grants::from([(
        repository.to_owned(),
        [enrolled[1].node_id].into(),
    )]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let server = tokio::spawn(alveole_agent::moves::peer::serve(
        listener,
        PeerIdentity::new(enrolled[0].clone(), ca_pem.clone()),
        vault.clone(),
    ));
    let (proxy, proxy_task) = connect_proxy(at).await;
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("web.pem"), enrolled[1].identity_pem()).unwrap();
    std::fs::write(dir.join("other.pem"), enrolled[2].identity_pem()).unwrap();
    let url = format!(
        "rest:https://{}:{}/vault/{repository}/",
        node_name(enrolled[0].node_id),
        at.port()
    );
    let web = Restic {
        dir,
        url: url.clone(),
        proxy,
        who: "web",
    };

    // A site's files, backed up twice (the second time after a change).
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("uploads")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>la coop</h1>").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(site.join("uploads/photo.bin"), &big).unwrap();
    web.ok(&["init"]);
    web.ok(&["backup", site.to_str().unwrap()]);
    std::fs::write(site.join("index.html"), "<h1>la coop, v2</h1>").unwrap();
    web.ok(&["backup", site.to_str().unwrap()]);
    let snapshots: serde_json::Value = serde_json::from_str(&web.ok(&["snapshots"])).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 2, "{snapshots}");
    web.ok(&["check", "--read-data"]);

    // Restored by restic, as it was at the first snapshot.
    let first = snapshots[0]["short_id"].as_str().unwrap().to_owned();
    let restored = dir.join("restored");
    web.ok(&["restore", &first, "--target", restored.to_str().unwrap()]);
    let inside = restored.join(site.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(inside.join("index.html")).unwrap(),
        "<h1>la coop</h1>"
    );
    assert_eq!(
        std::fs::read(inside.join("uploads/photo.bin")).unwrap(),
        big
    );

    // The node cannot delete a snapshot with its own certificate (restic tries for a while
    // before it gives up).
    let forget = web.run(&["forget", &first]);
    assert!(!forget.status.success(), "forget went through");
    let after: serde_json::Value = serde_json::from_str(&web.ok(&["snapshots"])).unwrap();
    assert_eq!(
        after.as_array().unwrap().len(),
        2,
        "both snapshots are still there"
    );

    // Nor rewrite one: the vault refuses a file under an existing name, and content that
    // does not hash to its name.
    let (http, base) = as_node(&enrolled[1], &ca_pem, enrolled[0].node_id, at);
    let names: Vec<String> = http
        .get(format!("{base}/vault/{repository}/snapshots/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let existing = format!("{base}/vault/{repository}/snapshots/{}", names[0]);
    let unnamed = format!("{base}/vault/{repository}/snapshots/{}", "0".repeat(64));
    for (url, body, refused) in [
        (&existing, &b"a forged snapshot"[..], 403),
        (&unnamed, &b"x"[..], 400),
    ] {
        let status = http
            .post(url)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, refused, "{url}");
    }
    let status = http.delete(&existing).send().await.unwrap().status();
    assert_eq!(status, 403);
    web.ok(&["check"]);

    // The vault stops in the middle of a backup (as when its machine dies): the backup fails,
    // the repository still checks, and the next backup completes once the vault is back.
    let bulk = site.join("bulk");
    std::fs::create_dir_all(&bulk).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for file in 0..12 {
        let bytes: Vec<u8> = (0..8_000_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        std::fs::write(bulk.join(format!("{file}.bin")), bytes).unwrap();
    }
    let packs_before = count_files(&dir.join("repositories").join(repository).join("data"));
    let mut backup = web
        .command(&["backup", site.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count_files(&dir.join("repositories").join(repository).join("data")) == packs_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never wrote a pack"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.abort();
    let _ = server.await;
    // restic would try again for minutes; this backup run is lost either way.
    let _ = backup.kill();
    let interrupted = backup.wait().unwrap();
    assert!(
        !interrupted.success(),
        "the backup finished before the vault stopped"
    );
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    let server = tokio::spawn(alveole_agent::moves::peer::serve(
        listener,
        PeerIdentity::new(enrolled[0].clone(), ca_pem.clone()),
        vault.clone(),
    ));
    web.ok(&["unlock"]);
    web.ok(&["check"]);
    web.ok(&["backup", site.to_str().unwrap()]);
    web.ok(&["check"]);
    let after: serde_json::Value = serde_json::from_str(&web.ok(&["snapshots"])).unwrap();
    assert_eq!(after.as_array().unwrap().len(), 3, "{after}");

    // Another node, not granted this repository: nothing.
    let other = Restic {
        dir,
        url,
        proxy,
        who: "other",
    };
    let refused = other.run(&["snapshots"]);
    assert!(!refused.status.success());

    server.abort();
    proxy_task.abort();
    db.drop_db().await;
}
