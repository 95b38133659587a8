//! The secrets key of the real binary: rotated while the panel runs.

use std::process::Command;

use crate::{SECRET, Server, alveole, json_of, node_fields, start_server};

/// The key id each secret of the database at `database` is sealed under.
fn sealed_under(database: &str) -> Vec<String> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = alveole_store::connect(database).await.unwrap();
        let page = store
            .sites()
            .list(
                &alveole_store::SiteFilter::default(),
                &alveole_store::PageRequest {
                    after: None,
                    limit: 100,
                },
            )
            .await
            .unwrap();
        page.items
            .iter()
            .flat_map(|site| &site.env)
            .filter(|var| var.is_secret())
            .map(|var| {
                let sealed = var.expose();
                assert!(!sealed.contains(SECRET), "a secret in clear");
                sealed.split(':').nth(3).unwrap_or_default().to_owned()
            })
            .collect()
    })
}

/// A secret site of `owner` named `domain`, through the CLI.
fn secret_site(server: &Server, owner: &str, domain: &str) {
    let env = format!(r#"env=[{{"name":"DB_PASSWORD","value":"{SECRET}","secret":true}}]"#);
    alveole(
        server,
        &[
            "site",
            "create",
            "--set",
            &format!("owner_id={owner}"),
            "--set",
            &format!("primary_domain={domain}"),
            "--set",
            "image=registry.example.org/coop/site:1",
            "--set",
            &env,
        ],
    );
}

/// `alveole admin rotate-secrets-key` while the panel runs: every secret sealed again under
/// the new key, the old key gone from the file, and the running panel sealing new secrets
/// with the new key.
#[test]
fn the_secrets_key_rotates_while_the_panel_runs() {
    let server = start_server();
    let database = format!("sqlite://{}", server.dir.join("panel.db").display());
    let key_file = server.dir.join(".alveole").join("secrets.key");
    let provider = json_of(&alveole(
        &server,
        &["provider", "create", "--json", "--set", "name=Rot"],
    ));
    let mut args = vec!["node", "create", "--json"];
    let fields = node_fields(provider["id"].as_str().unwrap(), "rot-1");
    args.extend(fields.iter().map(String::as_str));
    alveole(&server, &args);
    let member = json_of(&alveole(
        &server,
        &[
            "member",
            "create",
            "--json",
            "--set",
            "display_name=Rot",
            "--set",
            "email=rot@exemple.org",
        ],
    ));
    let owner = member["id"].as_str().unwrap();
    secret_site(&server, owner, "before.exemple.org");
    let before = sealed_under(&database);
    assert_eq!(before.len(), 1);
    let old_file = std::fs::read_to_string(&key_file).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args(["admin", "rotate-secrets-key", "--database-url", &database])
        .arg("--secrets-key-file")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 site(s)"));
    let new_file = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_file, new_file);
    assert_eq!(new_file.lines().count(), 1, "the old key is gone");
    let after = sealed_under(&database);
    assert_ne!(after, before, "sealed again, under the new key");

    // The running panel seals the next secret with the new key too.
    secret_site(&server, owner, "after.exemple.org");
    let both = sealed_under(&database);
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|id| *id == after[0]), "{both:?}");
    let logs = server.stop_and_logs();
    assert!(!logs.contains(SECRET));
}
