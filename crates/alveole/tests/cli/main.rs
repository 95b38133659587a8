//! The real binary: `alveole serve` and the resource subcommands talking to it, and the
//! README's configuration table kept equal to the CLI's own definitions.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod admission;
mod backups;
mod databases;
mod identity;
mod listeners;
mod secrets;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};

const SECRET: &str = "cli-secret-value-7781";

struct Server {
    child: Child,
    url: String,
    token: String,
    dir: std::path::PathBuf,
    /// The server's log lines, read as they come (an unread pipe would fill and block it).
    logs: std::thread::JoinHandle<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// Stops the server: everything it logged.
    fn stop_and_logs(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.logs, std::thread::spawn(String::new))
            .join()
            .unwrap()
    }
}

fn start_server() -> Server {
    start_server_with(&[], None)
}

/// `alveole serve` with more arguments, and under a limit on open files when given.
fn start_server_with(args: &[&str], open_files: Option<u32>) -> Server {
    let dir = std::env::temp_dir().join(format!("alveole-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = match open_files {
        Some(limit) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_alveole"));
            shell
        }
        None => Command::new(env!("CARGO_BIN_EXE_alveole")),
    };
    let mut child = command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        // Its key files (.alveole/...) go to the test's own directory.
        .current_dir(&dir)
        .env(
            "ALVEOLE_DATABASE_URL",
            format!("sqlite://{}", dir.join("panel.db").display()),
        )
        .env("ALVEOLE_LOG", "debug")
        // These tests are about the panel and its CLI; the local agent has its own test.
        .env("ALVEOLE_LOCAL_AGENT", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log is read from the start: a full pipe would stop the server before it listens.
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        let _ = stderr.read_to_string(&mut logs);
        logs
    });
    let mut token = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(start) = line.find("alv_") {
            token = line[start..].trim().to_owned();
        }
        if line.contains("listening on") {
            break;
        }
    }
    assert!(
        token.starts_with("alv_"),
        "the first start prints the bootstrap token"
    );
    // Standard output too, for whatever the server prints later.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        token,
        dir,
        logs,
    }
}

fn alveole(server: &Server, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args(args)
        .env("ALVEOLE_URL", &server.url)
        .env("ALVEOLE_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "alveole {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs the CLI expecting it to refuse: its output.
fn alveole_refused(server: &Server, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args(args)
        .env("ALVEOLE_URL", &server.url)
        .env("ALVEOLE_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(!output.status.success(), "alveole {args:?} succeeded");
    output
}

/// `--set` arguments for a node at `provider` named `name`.
fn node_fields(provider: &str, name: &str) -> Vec<String> {
    [
        format!("provider_id={provider}"),
        format!("name={name}"),
        "capacity.cpu_millis=4000".into(),
        "capacity.memory_bytes=8589934592".into(),
        "capacity.disk_bytes=107374182400".into(),
    ]
    .into_iter()
    .flat_map(|field| ["--set".to_owned(), field])
    .collect()
}

#[test]
fn the_cli_manages_sites_through_the_api_and_never_prints_a_secret() {
    let server = start_server();
    let provider = json_of(&alveole(
        &server,
        &[
            "provider",
            "create",
            "--json",
            "--set",
            "name=Scaleway",
            "--set",
            "country=fr",
        ],
    ));
    let provider_id = provider["id"].as_str().unwrap();
    let mut args = vec!["node", "create", "--json"];
    let fields = node_fields(provider_id, "par-1");
    args.extend(fields.iter().map(String::as_str));
    let node = json_of(&alveole(&server, &args));
    assert_eq!(node["name"], "par-1");
    let node_id = node["id"].as_str().unwrap();
    let join = alveole(&server, &["node", "join-token", node_id]);
    let join = String::from_utf8(join.stdout).unwrap();
    assert!(
        join.contains("alveole agent --panel-url") && join.contains("--join-token alj_"),
        "{join}"
    );
    let outputs = a_site_is_created_shown_listed_and_updated(&server);
    moves_are_refused_naming_why(&server, provider_id);
    an_evacuation_is_planned_then_followed_to_its_end(&server);
    a_lost_node_is_recovered_only_when_said_lost(&server);

    // A refused change says why, and exits non-zero.
    let refused = alveole_refused(&server, &["node", "delete", node_id]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cli.exemple.org"),
        "names the site"
    );
    alveole(&server, &["site", "delete", "cli.exemple.org", "--purge"]);
    assert_eq!(
        json_of(&alveole(&server, &["site", "list", "--json"])),
        serde_json::json!([])
    );

    // The secret was in no output above, and is in no log line of the server.
    for output in &outputs {
        assert!(!String::from_utf8_lossy(&output.stdout).contains(SECRET));
    }
    let logs = server.stop_and_logs();
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "logs were captured"
    );
    assert!(!logs.contains(SECRET), "a secret reached the logs");
}

/// A site with a secret, for a new member: created (its domain lowercased), shown without its
/// secret, listed as a human table, updated. Returns the outputs that touched the secret.
fn a_site_is_created_shown_listed_and_updated(server: &Server) -> Vec<Output> {
    let member = json_of(&alveole(
        server,
        &[
            "member",
            "create",
            "--json",
            "--set",
            "display_name=Léa",
            "--set",
            "email=lea@exemple.org",
        ],
    ));
    let env = format!(r#"env=[{{"name":"DB_PASSWORD","value":"{SECRET}","secret":true}}]"#);
    let created = alveole(
        server,
        &[
            "site",
            "create",
            "--json",
            "--set",
            &format!("owner_id={}", member["id"].as_str().unwrap()),
            "--set",
            "primary_domain=Cli.Exemple.ORG",
            "--set",
            "image=registry.example.org/coop/site:1",
            "--set",
            &env,
        ],
    );
    assert_eq!(json_of(&created)["primary_domain"], "cli.exemple.org");
    let shown = alveole(server, &["site", "show", "cli.exemple.org", "--json"]);
    assert_eq!(json_of(&shown)["env"][0]["value"], serde_json::Value::Null);
    let listed = String::from_utf8(alveole(server, &["site", "list"]).stdout).unwrap();
    assert!(
        listed.starts_with("ID ") && listed.contains("cli.exemple.org"),
        "a human table: {listed}"
    );
    let updated = alveole(
        server,
        &[
            "site",
            "update",
            "cli.exemple.org",
            "--json",
            "--set",
            "limits.pids=128",
        ],
    );
    assert_eq!(json_of(&updated)["limits"]["pids"], 128);
    vec![created, shown, updated]
}

/// The history is empty; a move to a node whose agent never said where other agents reach it
/// is refused, naming why, and so is one to a node that does not exist; nothing is recorded.
fn moves_are_refused_naming_why(server: &Server, provider_id: &str) {
    let moves = alveole(server, &["site", "moves", "cli.exemple.org", "--json"]);
    assert_eq!(json_of(&moves), serde_json::json!([]));
    let mut args = vec!["node", "create"];
    let fields = node_fields(provider_id, "par-2");
    args.extend(fields.iter().map(String::as_str));
    alveole(server, &args);
    let refused = alveole_refused(
        server,
        &["site", "move", "cli.exemple.org", "--to", "par-2"],
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("its agent has never reported"), "{why}");
    let unknown = alveole_refused(
        server,
        &["site", "move", "cli.exemple.org", "--to", "nowhere"],
    );
    let why = String::from_utf8_lossy(&unknown.stderr);
    assert!(why.contains("no node is named nowhere"), "{why}");
    let moves = alveole(server, &["site", "moves", "cli.exemple.org", "--json"]);
    assert_eq!(json_of(&moves), serde_json::json!([]));
}

/// Emptying par-1 by a deadline: the plan, in words and as a table, says that par-2 cannot
/// receive (its agent never reported) so the site has no place. Run anyway, the CLI follows
/// the job to its end, which is `incomplete`, names the site left and why, and exits
/// non-zero.
fn an_evacuation_is_planned_then_followed_to_its_end(server: &Server) {
    let plan = alveole(
        server,
        &[
            "evacuate",
            "--node",
            "par-1",
            "--deadline",
            "+60h",
            "--dry-run",
        ],
    );
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert!(
        plan.starts_with("Impossible as things stand: 1 site(s) fit on no other node."),
        "{plan}"
    );
    assert!(
        plan.contains("not a target: par-2: its agent has never reported"),
        "{plan}"
    );
    assert!(plan.contains("durations: assumed"), "{plan}");
    let ran = alveole_refused(server, &["evacuate", "--node", "par-1", "--json"]);
    let out = String::from_utf8(ran.stdout).unwrap();
    assert!(
        out.starts_with("not moved: cli.exemple.org: no place for it: "),
        "{out}"
    );
    let ended: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(ended["state"], "incomplete", "{ended}");
    assert_eq!(ended["remaining"][0]["name"], "cli.exemple.org");
    let why = String::from_utf8_lossy(&ran.stderr);
    assert!(
        why.contains("the evacuation ended incomplete with 1 site(s) left"),
        "{why}"
    );
}

/// `alveole recover` fences only when told the node is lost; then it follows the recovery to
/// its end: no node can receive the site, so it is named as left, and the command fails.
fn a_lost_node_is_recovered_only_when_said_lost(server: &Server) {
    let refused = alveole_refused(server, &["recover", "--node", "par-1"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--confirm-lost"),
        "{refused:?}"
    );
    let ran = alveole_refused(
        server,
        &["recover", "--node", "par-1", "--confirm-lost", "--json"],
    );
    let out = String::from_utf8(ran.stdout).unwrap();
    assert!(
        out.starts_with("not moved: cli.exemple.org: no place for it: no node can receive it"),
        "{out}"
    );
    let ended: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(ended["state"], "incomplete", "{ended}");
    assert!(
        ended["spec"]["recovery"]["lost"][0]["node_id"].is_string(),
        "{ended}"
    );
}

#[test]
fn the_admin_can_reset_the_bootstrap_token() {
    let server = start_server();
    let database = format!("sqlite://{}", server.dir.join("panel.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args(["admin", "reset-token", "--database-url", &database])
        .output()
        .unwrap();
    assert!(output.status.success());
    let fresh = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(fresh.starts_with("alv_") && fresh != server.token);
    let status = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_alveole"))
            .args(["site", "list"])
            .env("ALVEOLE_URL", &server.url)
            .env("ALVEOLE_TOKEN", token)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!status(&server.token), "the old token stopped working");
    assert!(status(&fresh), "the new one works");

    // Disabled once admins sign in through the provider: the token stops, and the panel
    // does not make a new one at its next start; reset-token is the way back.
    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args(["admin", "disable-bootstrap", "--database-url", &database])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(!status(&fresh), "disabled");
    let store = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = alveole_store::connect(&database).await.unwrap();
        alveole_panel::auth::ensure_bootstrap_token(store.as_ref())
            .await
            .unwrap()
    });
    assert_eq!(store, None, "no new token at the next start");

    // Break-glass: a one-time link for the browser, printed on the panel's host.
    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args([
            "admin",
            "break-glass",
            "--for",
            "30m",
            "--database-url",
            &database,
        ])
        .args(["--panel-url", &server.url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let link = String::from_utf8(output.stdout).unwrap();
    assert!(
        link.starts_with(&format!("{}/break-glass?token=alb_", server.url)),
        "{link}"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args([
            "admin",
            "break-glass",
            "--for",
            "2d",
            "--database-url",
            &database,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("90s, 30m or 1h"));
}

#[test]
fn the_readme_configuration_table_matches_the_cli() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let table = alveole::cli::config_table();
    assert!(
        readme.contains(&table),
        "README.md's configuration table is out of date; replace it with:\n\n{table}"
    );
}

/// `alveole audit ...` with explicit arguments, as a board member would run it.
fn audit(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alveole"))
        .arg("audit")
        .args(args)
        .env("ALVEOLE_URL", &server.url)
        .env("ALVEOLE_TOKEN", &server.token)
        .env(
            "ALVEOLE_DATABASE_URL",
            format!("sqlite://{}", server.dir.join("panel.db").display()),
        )
        .env(
            "ALVEOLE_AUDIT_KEY_FILE",
            server.dir.join(".alveole/audit/signing.key"),
        )
        .output()
        .unwrap()
}

#[test]
fn the_board_exports_the_audit_record_and_verifies_it_on_its_own() {
    let server = start_server();
    // A request id made to run as a formula in a spreadsheet: it begins its CSV cell.
    let body = r#"{"name":"Formula"}"#;
    let request = format!(
        "POST /api/v1/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         X-Request-Id: =HYPERLINK(\"http://x\")\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.token,
        body.len()
    );
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    alveole(&server, &["provider", "create", "--set", "name=Hetzner"]);

    // A checkpoint, kept outside the panel (here: a file).
    let signed = audit(&server, &["checkpoint"]);
    assert!(signed.status.success(), "{signed:?}");
    let checkpoint: serde_json::Value = serde_json::from_slice(&signed.stdout).unwrap();
    let length = checkpoint["length"].as_u64().unwrap();
    assert!(
        length >= 3,
        "key publication and two providers: {checkpoint}"
    );
    let kept = server.dir.join("checkpoint.json");
    std::fs::write(&kept, &signed.stdout).unwrap();

    // The whole record as JSON Lines verifies with nothing but the file and the checkpoint.
    let export = server.dir.join("audit.jsonl");
    let exported = audit(&server, &["export", "--output", export.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    let verified = audit(
        &server,
        &[
            "verify",
            "--export",
            export.to_str().unwrap(),
            "--checkpoint",
            kept.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        said.contains("intact") && said.contains(&format!("length {length}")),
        "{said}"
    );

    // One event changed in the file: refused, and the event is named.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = server.dir.join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("Hetzner", "Hetzner2", 1)).unwrap();
    let refused = audit(&server, &["verify", "--export", tampered.to_str().unwrap()]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("NOT INTACT") && why.contains("event"), "{why}");

    // Events cut from the end, checkpoint kept: the truncation shows.
    let lines: Vec<&str> = text.lines().collect();
    let cut: Vec<&str> = lines
        .iter()
        .filter(|l| !l.contains("\"Hetzner\"") || !l.contains("\"type\":\"event\""))
        .copied()
        .collect();
    let truncated = server.dir.join("truncated.jsonl");
    std::fs::write(&truncated, cut.join("\n")).unwrap();
    let refused = audit(
        &server,
        &[
            "verify",
            "--export",
            truncated.to_str().unwrap(),
            "--checkpoint",
            kept.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success(), "truncation must not pass");

    // A filtered export verifies event by event; the database itself verifies.
    let filtered = server.dir.join("filtered.jsonl");
    let exported = audit(
        &server,
        &[
            "export",
            "--action",
            "provider.create",
            "--output",
            filtered.to_str().unwrap(),
        ],
    );
    assert!(exported.status.success());
    let verified = audit(&server, &["verify", "--export", filtered.to_str().unwrap()]);
    assert!(verified.status.success(), "{verified:?}");
    assert!(String::from_utf8_lossy(&verified.stdout).contains("intact: 2 events"));
    let verified = audit(&server, &["verify"]);
    assert!(verified.status.success(), "{verified:?}");

    // CSV for spreadsheets: the formula is neutralised.
    let csv = audit(&server, &["export", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(csv.starts_with("index,at,actor,action"), "{csv}");
    assert!(csv.contains(",\"'=HYPERLINK"), "{csv}");
    assert!(
        !csv.lines()
            .any(|l| l.split(',').any(|cell| cell.starts_with('='))),
        "{csv}"
    );
}

/// `POST path` with a JSON body and the admin token, over a plain socket: the JSON answer.
fn post_json(server: &Server, path: &str, body: &str) -> serde_json::Value {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.token,
        body.len()
    );
    let mut stream =
        std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{answer}"))
}

#[test]
fn the_cli_with_a_members_token_cannot_touch_another_members_site() {
    let server = start_server();
    let provider = json_of(&alveole(
        &server,
        &["provider", "create", "--json", "--set", "name=P"],
    ));
    alveole(
        &server,
        &[
            "node",
            "create",
            "--set",
            &format!("provider_id={}", provider["id"].as_str().unwrap()),
            "--set",
            "name=n-1",
            "--set",
            "capacity.cpu_millis=4000",
            "--set",
            "capacity.memory_bytes=8589934592",
            "--set",
            "capacity.disk_bytes=107374182400",
        ],
    );
    let member = |name: &str| {
        json_of(&alveole(
            &server,
            &[
                "member",
                "create",
                "--json",
                "--set",
                &format!("display_name={name}"),
                "--set",
                &format!("email={name}@example.org"),
            ],
        ))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ana, ben) = (member("ana"), member("ben"));
    alveole(
        &server,
        &[
            "site",
            "create",
            "--set",
            &format!("owner_id={ben}"),
            "--set",
            "primary_domain=ben.example.org",
            "--set",
            "image=registry.example.org/s:1",
        ],
    );
    let token = post_json(
        &server,
        &format!("/api/v1/members/{ana}/tokens"),
        r#"{"name":"cli","scope":"full"}"#,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_ana = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_alveole"))
            .args(args)
            .env("ALVEOLE_URL", &server.url)
            .env("ALVEOLE_TOKEN", &token)
            .output()
            .unwrap()
    };
    let listed = as_ana(&["site", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(
        json_of(&listed),
        serde_json::json!([]),
        "Ben's site is not hers"
    );
    for args in [
        &["site", "show", "ben.example.org"][..],
        &["site", "delete", "ben.example.org"][..],
        &[
            "site",
            "update",
            "ben.example.org",
            "--set",
            "http_port=9090",
        ][..],
    ] {
        let refused = as_ana(args);
        assert!(!refused.status.success(), "{args:?}");
    }
    let still = alveole(&server, &["site", "show", "ben.example.org", "--json"]);
    assert_eq!(json_of(&still)["http_port"], 8080, "untouched");
}
