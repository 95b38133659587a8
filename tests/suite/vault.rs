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
struct Restic {
    dir: std::path::PathBuf,
    url: String,
    proxy: SocketAddr,
    who: &'static str,
}

impl Restic {
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
            .env("HOME", &self.dir);
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

/// A panel (its CA), three enrolled nodes (a vault, a site's node, another), and the vault
/// serving one repository granted to the site's node, reached through a CONNECT proxy.
struct Bench {
    db: TestDb,
    _panel: TestPanel,
    enrolled: Vec<Credential>,
    ca_pem: String,
    scratch: tempfile::TempDir,
    vault: Arc<Vault>,
    at: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    proxy: SocketAddr,
    proxy_task: tokio::task::JoinHandle<()>,
    url: String,
}

const REPOSITORY: &str = "site-0193";

impl Bench {
    /// `None` (said loudly) when restic is not installed and CI is unset.
    async fn start() -> Option<Bench> {
        if Command::new("restic").arg("version").output().is_err() {
            skip_or_fail("restic", "apt-get install restic (.ci/run does)");
            return None;
        }
        let db = TestDb::sqlite().await;
        let panel = TestPanel::start(&db).await;
        let (_, provider) = panel
            .post("/api/v1/providers", json!({"name": "vault-provider"}))
            .await;
        let mut enrolled = Vec::new();
        for name in ["vault", "web", "other"] {
            let node = create_node(&panel, &provider["id"], name, (1000, 1)).await;
            enrolled.push(panel.enrol(&node).await);
        }
        let ca_pem = panel.tls.ca.ca_pem.clone();
        let scratch = alveole_tests::temp_dir("alveole-vault-");
        let dir = scratch.path();
        let vault = Arc::new(Vault::new(dir.join("repositories")));
        vault.set_grants(Grants::from([(
            REPOSITORY.to_owned(),
            [enrolled[1].node_id].into(),
        )]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let server = tokio::spawn(alveole_agent::moves::peer::serve(
            listener,
            PeerIdentity::new(enrolled[0].clone(), ca_pem.clone()),
            vault.clone(),
            None,
        ));
        let (proxy, proxy_task) = connect_proxy(at).await;
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.join("web.pem"), enrolled[1].identity_pem()).unwrap();
        std::fs::write(dir.join("other.pem"), enrolled[2].identity_pem()).unwrap();
        let url = format!(
            "rest:https://{}:{}/vault/{REPOSITORY}/",
            node_name(enrolled[0].node_id),
            at.port()
        );
        Some(Bench {
            db,
            _panel: panel,
            enrolled,
            ca_pem,
            scratch,
            vault,
            at,
            server,
            proxy,
            proxy_task,
            url,
        })
    }

    fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// restic as `who` (`web` or `other`).
    fn restic(&self, who: &'static str) -> Restic {
        Restic {
            dir: self.dir().to_owned(),
            url: self.url.clone(),
            proxy: self.proxy,
            who,
        }
    }

    /// The vault stops, as when its machine dies.
    async fn stop_vault(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    /// The vault is back, on the same address.
    async fn restart_vault(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.at).await.unwrap();
        self.server = tokio::spawn(alveole_agent::moves::peer::serve(
            listener,
            PeerIdentity::new(self.enrolled[0].clone(), self.ca_pem.clone()),
            self.vault.clone(),
            None,
        ));
    }

    async fn finish(self) {
        self.server.abort();
        self.proxy_task.abort();
        self.db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_backs_up_to_a_vault_that_never_lets_a_node_delete_or_rewrite() {
    let Some(mut bench) = Bench::start().await else {
        return;
    };
    let (dir, at, ca_pem, enrolled, repository) = (
        bench.dir().to_owned(),
        bench.at,
        bench.ca_pem.clone(),
        bench.enrolled.clone(),
        REPOSITORY,
    );
    let dir = dir.as_path();
    let web = bench.restic("web");

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
    let malformed = format!("{base}/vault/{repository}/snapshots/..%2Fconfig");
    for (url, body, refused) in [
        (&existing, &b"a forged snapshot"[..], 403),
        (&unnamed, &b"x"[..], 400),
        (&malformed, &b"x"[..], 400),
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
    bench.stop_vault().await;
    // restic would try again for minutes; this backup run is lost either way.
    let _ = backup.kill();
    let interrupted = backup.wait().unwrap();
    assert!(
        !interrupted.success(),
        "the backup finished before the vault stopped"
    );
    bench.restart_vault().await;
    web.ok(&["unlock"]);
    web.ok(&["check"]);
    web.ok(&["backup", site.to_str().unwrap()]);
    web.ok(&["check"]);
    let after: serde_json::Value = serde_json::from_str(&web.ok(&["snapshots"])).unwrap();
    assert_eq!(after.as_array().unwrap().len(), 3, "{after}");

    // Another node, not granted this repository: nothing.
    let refused = bench.restic("other").run(&["snapshots"]);
    assert!(!refused.status.success());
    bench.finish().await;
}

/// alveole's own backups (rustic_core, in-process, through the vault over mutual TLS) are
/// restic's: restic lists, checks and restores them; and alveole restores what restic took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alveole_and_restic_read_each_others_backups_through_the_vault() {
    use alveole_agent::backup::{RestBackend, back_up, restore_newest};
    let Some(bench) = Bench::start().await else {
        return;
    };
    let dir = bench.dir().to_owned();
    let (http, base) = as_node(
        &bench.enrolled[1],
        &bench.ca_pem,
        bench.enrolled[0].node_id,
        bench.at,
    );
    let backend = RestBackend::new(
        http,
        format!("{base}/vault/{REPOSITORY}/"),
        tokio::runtime::Handle::current(),
    );
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("wp-content")).unwrap();
    std::fs::write(site.join("index.php"), "<?php echo 'la coop';").unwrap();
    let media: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    std::fs::write(site.join("wp-content/media.bin"), &media).unwrap();

    // alveole backs up (making the repository); restic reads it.
    let (b, s) = (backend.clone(), site.clone());
    let ours = tokio::task::spawn_blocking(move || back_up(b, PASSWORD, &s))
        .await
        .unwrap()
        .unwrap();
    let restic = bench.restic("web");
    let snapshots: serde_json::Value = serde_json::from_str(&restic.ok(&["snapshots"])).unwrap();
    assert_eq!(snapshots[0]["id"], ours.as_str(), "{snapshots}");
    restic.ok(&["check", "--read-data"]);
    let by_restic = dir.join("restored-by-restic");
    restic.ok(&["restore", "latest", "--target", by_restic.to_str().unwrap()]);
    let inside = by_restic.join(site.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(inside.join("wp-content/media.bin")).unwrap(),
        media
    );

    // restic backs up a change; alveole restores restic's snapshot.
    std::fs::write(site.join("index.php"), "<?php echo 'la coop, v2';").unwrap();
    restic.ok(&["backup", site.to_str().unwrap()]);
    let by_alveole = dir.join("restored-by-alveole");
    let b = backend.clone();
    let target = by_alveole.clone();
    tokio::task::spawn_blocking(move || restore_newest(b, PASSWORD, &target))
        .await
        .unwrap()
        .unwrap();
    let inside = by_alveole.join(site.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(inside.join("index.php")).unwrap(),
        "<?php echo 'la coop, v2';"
    );
    assert_eq!(
        std::fs::read(inside.join("wp-content/media.bin")).unwrap(),
        media
    );

    // A second alveole backup opens the repository restic and alveole share.
    let (b, s) = (backend, site);
    tokio::task::spawn_blocking(move || back_up(b, PASSWORD, &s))
        .await
        .unwrap()
        .unwrap();
    let snapshots: serde_json::Value = serde_json::from_str(&restic.ok(&["snapshots"])).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 3);
    restic.ok(&["check"]);
    bench.finish().await;
}

/// The vault's pruning, on a repository restic wrote: it forgets what its retention no
/// longer keeps, by when each snapshot reached the vault (not what the snapshot claims),
/// removes the data only those used, and leaves a repository restic checks and restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_prunes_by_arrival_time_and_restic_still_checks_and_restores() {
    use alveole_agent::vault::prune::prune;
    use alveole_agent::vault::repository::Repository;
    use alveole_model::backup::Retention;
    if Command::new("restic").arg("version").output().is_err() {
        skip_or_fail("restic", "apt-get install restic (.ci/run does)");
        return;
    }
    let dir = alveole_tests::temp_dir("alveole-vault-prune-");
    let repository = dir.path().join("vault").join("site");
    let password = dir.path().join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .arg("--repo")
            .arg(&repository)
            .arg("--password-file")
            .arg(&password)
            .args(["--no-cache", "--quiet", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    restic(&["init"]);
    let site = dir.path().join("site");
    for version in 0..4 {
        std::fs::create_dir_all(&site).unwrap();
        // Each version its own large file, so that forgetting one frees its data.
        let body: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(version) >> 13) as u8)
            .collect();
        std::fs::write(site.join("data.bin"), &body).unwrap();
        std::fs::write(site.join("index.html"), format!("version {version}\n")).unwrap();
        restic(&["backup", site.to_str().unwrap()]);
    }
    // Full ids, oldest first.
    let listed: serde_json::Value = serde_json::from_str(&restic(&["snapshots"])).unwrap();
    let ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4);
    // When each reached the vault: two on one day ten days ago, one 40 days ago, one now.
    let now = chrono::Utc::now();
    let day = (now - chrono::Duration::days(10)).date_naive();
    let arrivals = [
        day.and_hms_opt(2, 0, 0).unwrap().and_utc(),
        day.and_hms_opt(5, 0, 0).unwrap().and_utc(),
        now - chrono::Duration::days(40),
        now - chrono::Duration::minutes(1),
    ];
    for (id, at) in ids.iter().zip(arrivals) {
        let file = repository.join("snapshots").join(id);
        assert!(file.is_file(), "{}", file.display());
        let stamp = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let touched = Command::new("touch")
            .args(["-c", "-m", "-d", &stamp])
            .arg(&file)
            .status()
            .unwrap();
        assert!(touched.success());
    }
    let used_before = du(&repository);
    let retention = Retention {
        hourly_hours: 48,
        daily_days: 30,
        weekly_weeks: 0,
        monthly_months: 0,
    };
    let vault = Repository::at(repository.clone());
    let pruned = tokio::task::spawn_blocking(move || prune(&vault, PASSWORD, &retention, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((pruned.forgotten, pruned.kept), (2, 2));
    let left: serde_json::Value = serde_json::from_str(&restic(&["snapshots"])).unwrap();
    let mut left: Vec<String> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    let mut wanted = vec![ids[1].clone(), ids[3].clone()];
    wanted.sort();
    assert_eq!(left, wanted, "the day's newest and the latest stay");
    restic(&["check", "--read-data"]);
    assert_eq!(
        restic(&["dump", &ids[1], &format!("{}/index.html", site.display())]),
        "version 1\n"
    );
    assert!(
        du(&repository) < used_before,
        "the forgotten snapshots' data went"
    );
}

/// Bytes under `path`.
fn du(path: &std::path::Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The vault's rotating check rereads packs and names the damage: a repository restic wrote
/// is intact; with a byte of one pack changed on the vault's disk, the check names that pack
/// and the one snapshot that needs it (not the other), keeps rereading it while it is
/// damaged (whatever the day's share), and says intact once its bytes are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vaults_check_finds_a_damaged_pack_and_the_snapshot_it_breaks() {
    use alveole_agent::vault::check::check;
    use alveole_agent::vault::repository::{Kind, Repository};
    if Command::new("restic").arg("version").output().is_err() {
        skip_or_fail("restic", "apt-get install restic (.ci/run does)");
        return;
    }
    let dir = alveole_tests::temp_dir("alveole-vault-check-");
    let repository = dir.path().join("site");
    let password = dir.path().join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .arg("--repo")
            .arg(&repository)
            .arg("--password-file")
            .arg(&password)
            .args(["--no-cache", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    restic(&["init"]);
    // Two snapshots of two folders sharing nothing: the big file's pack is the first's alone.
    let mut snapshots = Vec::new();
    for (name, size, seed) in [
        ("big", 2_000_000u32, 2654435761u32),
        ("small", 300_000, 40503),
    ] {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let body: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(seed) >> 11) as u8)
            .collect();
        std::fs::write(folder.join(format!("{name}.bin")), &body).unwrap();
        restic(&["backup", folder.to_str().unwrap()]);
        let listed: serde_json::Value = serde_json::from_str(&restic(&[
            "snapshots",
            "--json",
            "--path",
            folder.to_str().unwrap(),
        ]))
        .unwrap();
        snapshots.push(listed[0]["id"].as_str().unwrap().to_owned());
    }
    let vault = Repository::at(repository.clone());
    let run = |vault: &Repository, share: (u32, u32), suspects: Vec<String>| {
        let vault = vault.clone();
        tokio::task::spawn_blocking(move || check(&vault, PASSWORD, share, &suspects))
    };
    let intact = run(&vault, (1, 1), vec![]).await.unwrap().unwrap();
    assert!(intact.errors.is_empty(), "{intact:?}");

    // One byte of the largest pack changed, as a failing disk would.
    let (pack, size) = vault
        .list(Kind::Data)
        .unwrap()
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let path = repository.join("data").join(&pack[..2]).join(&pack);
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    let middle = usize::try_from(size / 2).unwrap();
    bytes[middle] ^= 0xff;
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)] // the test plays a failing disk
    permissions.set_readonly(false);
    std::fs::set_permissions(&path, permissions).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let damaged = run(&vault, (1, 1), vec![]).await.unwrap().unwrap();
    assert!(
        damaged
            .errors
            .iter()
            .any(|found| found.contains(&pack[..8])),
        "the damaged pack is named: {damaged:?}"
    );
    assert_eq!(damaged.damage.packs, std::slice::from_ref(&pack));
    assert_eq!(
        damaged.damage.snapshots,
        [snapshots[0].clone()],
        "the big folder's snapshot is broken, the small one's is not"
    );

    // A later day's share may not hold the pack: the damage found before is reread anyway.
    let later = run(&vault, (29, 30), vec![pack.clone()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.damage.packs, std::slice::from_ref(&pack), "{later:?}");
    // Its bytes back (an admin's repair): intact again.
    std::fs::write(&path, &original).unwrap();
    let repaired = run(&vault, (29, 30), vec![pack.clone()])
        .await
        .unwrap()
        .unwrap();
    assert!(repaired.errors.is_empty(), "{repaired:?}");
}
