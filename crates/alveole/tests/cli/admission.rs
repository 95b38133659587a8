//! A site's overload protection from the command line: set with --set (limits, classes,
//! rules), refused naming the field, shown back.

use super::{alveole, alveole_refused, json_of, node_fields, start_server};

#[test]
fn the_cli_sets_a_sites_admission_and_refuses_bad_settings_naming_them() {
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
    let site = json_of(&alveole(
        &server,
        &[
            "site",
            "create",
            "--json",
            "--set",
            &owner,
            "--set",
            "primary_domain=ecole.exemple.org",
            "--set",
            "image=registry.example.org/coop/site:1",
        ],
    ));
    assert_eq!(site["admission"]["enabled"], true, "on by default: {site}");
    assert_eq!(site["admission"]["refresh_seconds"], 20);
    let id = site["id"].as_str().unwrap();

    let refused = alveole_refused(
        &server,
        &[
            "site",
            "update",
            id,
            "--set",
            "admission.refresh_seconds=1",
            "--set",
            r#"admission.classes=[{"name":"profs","share_percent":95}]"#,
        ],
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("admission.refresh_seconds") && why.contains("admission.classes"),
        "{why}"
    );

    let changed = json_of(&alveole(
        &server,
        &[
            "site",
            "update",
            id,
            "--json",
            "--set",
            "admission.active_visitors=400",
            "--set",
            "admission.refresh_seconds=5",
            "--set",
            r#"admission.classes=[{"name":"profs","share_percent":60}]"#,
            "--set",
            r#"admission.rules=[{"network":"192.0.2.0/24","class":"profs"}]"#,
        ],
    ));
    let admission = &changed["admission"];
    assert_eq!(admission["active_visitors"], 400, "{changed}");
    assert_eq!(admission["classes"][0]["name"], "profs");
    assert_eq!(admission["rules"][0]["network"], "192.0.2.0/24");
    assert!(
        !changed.to_string().contains("\"key\""),
        "the site's key never leaves the panel but to its node"
    );
}
