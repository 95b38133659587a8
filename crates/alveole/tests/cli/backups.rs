//! Backups from the command line: a target, a site's policy refused then accepted, a backup
//! asked for, the site's backups shown, and restores refused naming the field or started.

use super::{Server, alveole, alveole_refused, json_of, node_fields, start_server};

fn create(server: &Server, what: &str, fields: &[String]) -> serde_json::Value {
    let mut args = vec![what, "create", "--json"];
    for field in fields {
        args.extend(["--set", field.as_str()]);
    }
    json_of(&alveole(server, &args))
}

#[test]
fn the_cli_sets_a_sites_backups_and_restores_them() {
    let server = start_server();
    let here = create(&server, "provider", &["name=Ici".into()]);
    let there = create(&server, "provider", &["name=Ailleurs".into()]);
    let here_id = here["id"].as_str().unwrap();
    let mut args = vec!["node", "create", "--json"];
    let fields = node_fields(here_id, "ici-1");
    args.extend(fields.iter().map(String::as_str));
    json_of(&alveole(&server, &args));
    let member = create(
        &server,
        "member",
        &["display_name=Léa".into(), "email=lea@exemple.org".into()],
    );
    let local = create(
        &server,
        "backup-target",
        &[
            "name=local".into(),
            "url=https://backup.exemple.org/".into(),
            format!("provider_id={here_id}"),
        ],
    );
    let far = create(
        &server,
        "backup-target",
        &[
            "name=far".into(),
            "url=https://backup.exemple.net/".into(),
            format!("provider_id={}", there["id"].as_str().unwrap()),
        ],
    );
    let listed = alveole(&server, &["backup-target", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("local") && listed.contains("far"),
        "{listed}"
    );

    let site = |target: &serde_json::Value| {
        vec![
            format!("owner_id={}", member["id"].as_str().unwrap()),
            "primary_domain=sauve.exemple.org".into(),
            "image=registry.example.org/coop/site:1".into(),
            format!("backup.targets=[\"{}\"]", target["id"].as_str().unwrap()),
        ]
    };
    let mut args = vec!["site", "create"];
    let refused_fields = site(&local);
    for field in &refused_fields {
        args.extend(["--set", field.as_str()]);
    }
    let refused = alveole_refused(&server, &args);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("backup.targets[0]") && why.contains("local is at the site's provider"),
        "{why}"
    );
    create(&server, "site", &site(&far));

    let asked = alveole(&server, &["site", "backup", "sauve.exemple.org"]);
    assert!(String::from_utf8_lossy(&asked.stdout).contains("asked at"));
    let shown = alveole(&server, &["site", "backups", "sauve.exemple.org"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("no snapshot has passed a drill or a check yet") && shown.contains("far"),
        "{shown}"
    );

    // A drill needs a node at another provider that reported lately: there is none here, so
    // the drill is recorded as failed, saying why, and the command fails with that reason.
    let refused = alveole_refused(&server, &["site", "drill", "sauve.exemple.org"]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("no node of another provider"), "{why}");
    let listed = alveole(&server, &["site", "drills", "sauve.exemple.org"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("failed") && listed.contains("no node of another provider"),
        "{listed}"
    );
    let shown = alveole(&server, &["site", "backups", "sauve.exemple.org"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("ALERT (drill"),
        "the failed drill alerts: {shown}"
    );

    let refused = alveole_refused(
        &server,
        &[
            "site",
            "restore",
            "sauve.exemple.org",
            "--path",
            "/www/../../etc",
        ],
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("paths[0]"));
    let started = alveole(
        &server,
        &[
            "site",
            "restore",
            "sauve.exemple.org",
            "--path",
            "/www",
            "--target",
            "far",
            "--no-wait",
            "--json",
        ],
    );
    let started = json_of(&started);
    assert_eq!(started["state"], "running");
    assert_eq!(started["paths"], serde_json::json!(["/www"]));
}
