//! A site's databases from the command line: made with the site, refused naming the field,
//! listed with the variables the site reads, a password rotated, a dump the panel cannot ask
//! of any node refused with the reason.

use super::{alveole, alveole_refused, json_of, node_fields, start_server};

#[test]
fn the_cli_lists_rotates_and_says_why_a_dump_cannot_be_had() {
    let server = start_server();
    let provider = json_of(&alveole(
        &server,
        &["provider", "create", "--json", "--set", "name=Ici"],
    ));
    let mut args = vec!["node", "create", "--json"];
    let fields = node_fields(provider["id"].as_str().unwrap(), "ici-1");
    args.extend(fields.iter().map(String::as_str));
    json_of(&alveole(&server, &args));
    let member = json_of(&alveole(
        &server,
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
    let owner = format!("owner_id={}", member["id"].as_str().unwrap());
    let site_args = |databases: &'static str| {
        vec![
            "site".to_owned(),
            "create".to_owned(),
            "--json".to_owned(),
            "--set".to_owned(),
            owner.clone(),
            "--set".to_owned(),
            "primary_domain=boutique.exemple.org".to_owned(),
            "--set".to_owned(),
            "image=registry.example.org/coop/site:1".to_owned(),
            "--set".to_owned(),
            format!("databases={databases}"),
        ]
    };
    let refused = site_args(r#"[{"name":"shop","engine":"mariadb","version":"5.5"}]"#);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let why = String::from_utf8_lossy(&alveole_refused(&server, &refused).stderr).into_owned();
    assert!(
        why.contains("databases[0].version") && why.contains("10.11"),
        "{why}"
    );
    let made = site_args(r#"[{"name":"shop","engine":"mariadb","version":"10.11"}]"#);
    let made: Vec<&str> = made.iter().map(String::as_str).collect();
    let site = json_of(&alveole(&server, &made));
    let id = site["id"].as_str().unwrap();

    let listed =
        String::from_utf8_lossy(&alveole(&server, &["site", "database", id]).stdout).into_owned();
    assert!(
        listed.contains("shop\tmariadb 10.11\t127.0.0.1:3306")
            && listed.contains("ALVEOLE_DB_SHOP_PASSWORD"),
        "{listed}"
    );
    let rotated = json_of(&alveole(
        &server,
        &["site", "database", id, "--rotate", "shop", "--json"],
    ));
    assert_eq!(rotated[0]["name"], "shop");
    let refused = alveole_refused(&server, &["site", "database", id, "--dump", "shop"]);
    let why = String::from_utf8_lossy(&refused.stderr);
    // This panel serves no agents: it says so.
    assert!(why.contains("nothing can be asked of a node"), "{why}");
    let refused = alveole_refused(&server, &["site", "database", id, "--rotate", "other"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("404"));
}
