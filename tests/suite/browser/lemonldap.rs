//! Signing in and out through LemonLDAP::NG from Debian (started by `tests/lemonldap/start.sh`,
//! as `.ci/run` does), configured here as `docs/identity-providers.md` says: claims from its
//! userinfo endpoint (its default), groups as a list or as its `hGroups` object, its issuer
//! with a trailing slash, sign-out with `id_token_hint` and no confirmation.

use std::time::Duration;

use alveole_tests::{TestDb, TestPanel, skip_or_fail};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use super::{browser, click, fill, open, start_driver, text_when, text_within};

/// Where the test instance keeps its configuration (one JSON file per version).
const CONF_DIR: &str = "/var/lib/alveole-llng/conf";

/// The portal's address, which is its issuer (trailing slash included); `None` (said loudly)
/// when it does not answer and CI is unset.
async fn portal() -> Option<String> {
    alveole_tests::init();
    let portal = std::env::var("ALVEOLE_TEST_LEMONLDAP_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8470/".to_owned());
    let discovery = format!("{portal}.well-known/openid-configuration");
    match reqwest::get(&discovery).await {
        Ok(response) if response.status().is_success() => Some(portal),
        _ => {
            skip_or_fail(
                "LemonLDAP::NG",
                "bash tests/lemonldap/start.sh starts it (.ci/run does)",
            );
            None
        }
    }
}

/// A relying party of the portal for a panel at `base`, with its groups exported as
/// `groups` says (`groups;string;always`: a list; `hGroups`: an object).
struct RelyingParty<'a> {
    client_id: &'a str,
    base: &'a str,
    groups: &'a str,
}

/// Writes the next version of the portal's configuration with these relying parties (and
/// no other), then waits until the portal serves it: its discovery document lists a marker
/// of the version, on several requests in a row (each FastCGI worker reloads on its own).
///
/// Version numbers are never used twice: the portal keeps a version it has loaded by its
/// number, and would not see new content under an old one. The versions before the newest
/// are removed, so that one file is left between runs.
async fn configure(portal: &str, parties: &[RelyingParty<'_>]) {
    let versions: Vec<u32> = std::fs::read_dir(CONF_DIR)
        .expect("the portal's configuration")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("lmConf-")?
                .strip_suffix(".json")?
                .parse::<u32>()
                .ok()
        })
        .collect();
    let newest = *versions.iter().max().expect("a configuration version");
    // The first version is the one tests/lemonldap/start.sh wrote; the others are tests'.
    for old in versions.iter().filter(|v| **v != 1 && **v != newest) {
        let _ = std::fs::remove_file(format!("{CONF_DIR}/lmConf-{old}.json"));
    }
    let mut conf: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CONF_DIR}/lmConf-{newest}.json")).unwrap(),
    )
    .unwrap();
    let version = newest + 1;
    let marker = format!("alveole-tests-{version}-{}", uuid::Uuid::now_v7().simple());
    conf["cfgNum"] = json!(version);
    conf["oidcServiceMetaDataAuthnContext"] = json!({"loa-1": 1, &marker: 1});
    let (mut options, mut exported) = (json!({}), json!({}));
    for party in parties {
        options[party.client_id] = json!({
            "oidcRPMetaDataOptionsClientID": party.client_id,
            "oidcRPMetaDataOptionsClientSecret": "a-client-secret",
            "oidcRPMetaDataOptionsPublic": 0,
            "oidcRPMetaDataOptionsRequirePKCE": 1,
            "oidcRPMetaDataOptionsIDTokenSignAlg": "RS256",
            "oidcRPMetaDataOptionsBypassConsent": 1,
            "oidcRPMetaDataOptionsRedirectUris": format!("{}/login/oidc/callback", party.base),
            "oidcRPMetaDataOptionsPostLogoutRedirectUris": format!("{}/login", party.base),
            "oidcRPMetaDataOptionsLogoutBypassConfirm": 1,
        });
        exported[party.client_id] = json!({
            "email": "mail",
            "email_verified": "mail_verified;bool",
            "name": "cn",
            "groups": party.groups,
        });
    }
    conf["oidcRPMetaDataOptions"] = options;
    conf["oidcRPMetaDataExportedVars"] = exported;
    let path = format!("{CONF_DIR}/lmConf-{version}.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&conf).unwrap()).unwrap();
    let discovery = format!("{portal}.well-known/openid-configuration");
    let mut in_a_row = 0;
    for _ in 0..200 {
        let served = match reqwest::get(&discovery).await {
            Ok(response) => response.text().await.unwrap_or_default().contains(&marker),
            Err(_) => false,
        };
        in_a_row = if served { in_a_row + 1 } else { 0 };
        if in_a_row == 4 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("LemonLDAP::NG never served configuration {version}");
}

/// A panel whose members sign in through the portal as `client_id`.
async fn panel(db: &TestDb, portal: &str, client_id: &str) -> TestPanel {
    let issuer = portal.to_owned();
    let client_id = client_id.to_owned();
    TestPanel::start_with_oidc(db, |base| alveole_panel::oidc::OidcConfig {
        issuer,
        client_id,
        client_secret: Some("a-client-secret".into()),
        scopes: vec!["email".into(), "profile".into()],
        groups_claim: "groups".into(),
        roles: alveole_panel::oidc::parse_roles("coop-admins=admin,board=auditor").unwrap(),
        redirect_url: format!("{base}/login/oidc/callback"),
    })
    .await
}

async fn add_member(panel: &TestPanel, name: &str, email: &str) {
    let (status, body) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": name, "email": email}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// From the panel's sign-in page through the portal's form, as `user` (the Demo module's
/// password is the login).
async fn sign_in(client: &Client, panel: &TestPanel, user: &str) {
    open(client, panel, "/login").await;
    click(client, "login-oidc").await;
    password_asked(client).await;
    fill(client, "userfield", user).await;
    fill(client, "passwordfield", user).await;
    client
        .find(Locator::Css("#lform button[type='submit']"))
        .await
        .expect("the portal's sign-in button")
        .click()
        .await
        .expect("sign in at the portal");
}

/// Waits for the portal's sign-in form (bounded).
async fn password_asked(client: &Client) {
    client
        .wait()
        .at_most(PORTAL_STEP)
        .for_element(Locator::Id("passwordfield"))
        .await
        .expect("the portal asks for the password");
}

/// How long a step through the portal may take: its Perl workers load their modules again
/// after a configuration change, slowly when the machine is busy with other tests.
const PORTAL_STEP: Duration = Duration::from_secs(45);

/// The text of `css` on the page the portal sends the browser back to.
async fn back_from_portal(client: &Client, css: &str) -> String {
    text_within(client, css, |t| !t.is_empty(), PORTAL_STEP).await
}

/// The role the panel shows once signed in.
async fn role_shown(client: &Client) -> String {
    back_from_portal(client, "#whoami").await
}

/// Signs out of the panel, and waits until the browser is back on its sign-in page, having
/// left the portal's session on the way.
async fn sign_out(client: &Client, panel: &TestPanel) {
    click(client, "logout").await;
    let login = format!("{}/login", panel.base);
    // Bounded by PORTAL_STEP (50 ms a look).
    for _ in 0..(PORTAL_STEP.as_millis() / 50) {
        if let Ok(url) = client.current_url().await
            && url.as_str() == login
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = client.current_url().await.expect("url");
    let page = client.source().await.unwrap_or_default();
    panic!("not back on {login} after signing out: at {url}: {page}");
}

#[tokio::test]
async fn people_sign_in_through_lemonldap_with_their_role_and_out_of_both() {
    let Some(portal) = portal().await else {
        return;
    };
    let Some(driver) = start_driver().await else {
        return;
    };
    let (db_list, db_object) = (TestDb::sqlite().await, TestDb::sqlite().await);
    let with_list = panel(&db_list, &portal, "alveole-list").await;
    let with_object = panel(&db_object, &portal, "alveole-object").await;
    configure(
        &portal,
        &[
            RelyingParty {
                client_id: "alveole-list",
                base: &with_list.base,
                groups: "groups;string;always",
            },
            RelyingParty {
                client_id: "alveole-object",
                base: &with_object.base,
                groups: "hGroups",
            },
        ],
    )
    .await;
    // Demo accounts: dwho is in coop-admins, rtyler in board, msmith in neither.
    for each in [&with_list, &with_object] {
        add_member(each, "Rose", "rtyler@badwolf.org").await;
        add_member(each, "Mickey", "msmith@badwolf.org").await;
    }
    add_member(&with_list, "Doctor", "dwho@badwolf.org").await;
    let client = browser(&driver).await;

    // Groups as a list: an admin, then (after signing out of both) an auditor.
    sign_in(&client, &with_list, "dwho").await;
    assert_eq!(role_shown(&client).await, "admin");
    sign_out(&client, &with_list).await;
    // Signed out of the portal too: the next sign-in asks for the password again.
    sign_in(&client, &with_list, "rtyler").await;
    assert_eq!(role_shown(&client).await, "auditor");
    sign_out(&client, &with_list).await;

    // Groups as LemonLDAP::NG's object: an auditor, then a plain member, who sees only the
    // pages that are theirs.
    sign_in(&client, &with_object, "rtyler").await;
    assert_eq!(role_shown(&client).await, "auditor");
    sign_out(&client, &with_object).await;
    sign_in(&client, &with_object, "msmith").await;
    assert_eq!(role_shown(&client).await, "member");
    let nav = text_when(&client, "header nav", |t| !t.is_empty()).await;
    assert!(!nav.contains("Nodes") && !nav.contains("Audit"), "{nav}");
    open(&client, &with_object, "/nodes").await;
    let refused = text_when(&client, ".message", |t| !t.is_empty()).await;
    assert!(refused.contains("admins and auditors"), "{refused}");
    sign_out(&client, &with_object).await;

    // Someone the co-op has not added: refused, with a page that says why.
    sign_in(&client, &with_object, "dwho").await;
    let why = back_from_portal(&client, ".message").await;
    assert!(why.contains("no member of the co-op"), "{why}");

    let links = with_list.events("member.link_identity").await.len();
    assert_eq!(
        links, 2,
        "dwho and rtyler linked by their verified addresses"
    );
    client.close().await.expect("close");
    drop(driver);
    db_list.drop_db().await;
    db_object.drop_db().await;
}
