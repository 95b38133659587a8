//! Claims where providers put them: in the ID token, or only at the userinfo endpoint (as
//! LemonLDAP::NG does by default), with groups as a list, a string or an object.

use serde_json::json;

use super::fake_issuer::{SUBJECT, bench, sign_in};
use alveole_tests::TestPanel;

/// The role of the member forge@example.org, as the panel stores it.
async fn role(panel: &TestPanel) -> String {
    let (_, members) = panel.get("/api/v1/members").await;
    members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "forge@example.org")
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test]
async fn claims_only_at_userinfo_sign_in_with_the_role_their_groups_give() {
    let (fake, db, panel) = bench("coop-admins=admin,board=auditor").await;
    // Nothing but the subject in the ID token; all the rest from userinfo, groups as
    // LemonLDAP::NG's hGroups object.
    fake.set(|b| {
        b.id_token = json!({});
        b.userinfo = Some(json!({
            "sub": SUBJECT,
            "email": "forge@example.org",
            "email_verified": true,
            "groups": {"board": {"name": "board"}, "readers": {"name": "readers"}},
        }));
    });
    let (status, cookie, page) = sign_in(&panel).await;
    assert_eq!((status, cookie.is_some()), (303, true), "{page}");
    assert_eq!(role(&panel).await, "auditor");

    // The groups claim as a space-separated string, then as a list: each read.
    fake.set(|b| {
        b.userinfo.as_mut().unwrap()["groups"] = json!("readers coop-admins");
    });
    assert_eq!(sign_in(&panel).await.0, 303);
    assert_eq!(role(&panel).await, "admin");
    fake.set(|b| {
        b.userinfo.as_mut().unwrap()["groups"] = json!(["readers"]);
    });
    assert_eq!(sign_in(&panel).await.0, 303);
    assert_eq!(role(&panel).await, "member");

    // A groups claim of no known shape: signed in, the role left as it was (not demoted to
    // nothing), and a warning in the log.
    fake.set(|b| {
        b.userinfo.as_mut().unwrap()["groups"] = json!(42);
    });
    let (status, _, _) = sign_in(&panel).await;
    assert_eq!(status, 303);
    assert_eq!(role(&panel).await, "member");
    db.drop_db().await;
}

#[tokio::test]
async fn what_the_id_token_says_is_not_overridden_by_userinfo() {
    let (fake, db, panel) = bench("board=auditor").await;
    // The ID token has the address; only the groups come from userinfo.
    fake.set(|b| {
        b.id_token = json!({"email": "forge@example.org", "email_verified": true});
        b.userinfo = Some(json!({
            "sub": SUBJECT, "email": "someone-else@example.org", "groups": ["board"],
        }));
    });
    let (status, cookie, page) = sign_in(&panel).await;
    assert_eq!((status, cookie.is_some()), (303, true), "{page}");
    assert_eq!(role(&panel).await, "auditor");
    db.drop_db().await;
}

#[tokio::test]
async fn userinfo_about_another_account_opens_no_session() {
    let (fake, db, panel) = bench("").await;
    fake.set(|b| {
        b.id_token = json!({});
        b.userinfo = Some(json!({
            "sub": "someone-else", "email": "forge@example.org", "email_verified": true,
        }));
    });
    let (status, cookie, page) = sign_in(&panel).await;
    assert_eq!((status, cookie), (401, None));
    assert!(page.contains("another account"), "{page}");
    let links = panel.events("member.link_identity").await.len();
    assert_eq!(links, 0, "nobody linked");
    db.drop_db().await;
}

#[tokio::test]
async fn a_missing_email_verified_is_named() {
    let (fake, db, panel) = bench("").await;
    fake.set(|b| {
        b.id_token = json!({"email": "forge@example.org"});
        b.userinfo = Some(json!({"sub": SUBJECT}));
    });
    let (status, cookie, page) = sign_in(&panel).await;
    assert_eq!((status, cookie), (403, None));
    assert!(
        page.contains("email_verified") && page.contains("forge@example.org"),
        "{page}"
    );
    // No userinfo endpoint at all: the ID token is all there is, and the same is said.
    fake.set(|b| b.userinfo = None);
    let (status, _, page) = sign_in(&panel).await;
    assert_eq!(status, 403);
    assert!(page.contains("email_verified"), "{page}");
    db.drop_db().await;
}
