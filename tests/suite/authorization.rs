//! Who may call what: a matrix built from the route table (a new route is covered the day it
//! is declared), and a member's reach limited to their own sites.

use alveole_panel::routes::{Access, Surface, routes};
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

/// A caller of the matrix: its bearer token (none: anonymous), role and scope.
struct Who {
    name: &'static str,
    token: Option<String>,
    role: Option<&'static str>,
    read_only: bool,
}

/// What a caller must get from a route, from the same rules the panel states.
fn allowed(who: &Who, access: Access, mutates: bool) -> Result<(), u16> {
    let Some(role) = who.role else {
        return match access {
            Access::Public => Ok(()),
            _ => Err(401),
        };
    };
    match access {
        Access::Agent => Err(403),
        Access::SignedIn => Ok(()),
        _ if mutates && (who.read_only || role == "auditor") => Err(403),
        Access::Admin if role != "admin" => Err(403),
        Access::OwnersData if role == "auditor" => Err(403),
        Access::Read if role == "member" => Err(403),
        _ => Ok(()),
    }
}

async fn token_for(panel: &TestPanel, member: &str, scope: &str) -> String {
    let (status, token) = panel
        .post(
            &format!("/api/v1/members/{member}/tokens"),
            json!({"name": "test", "scope": scope}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    token["token"].as_str().unwrap().to_owned()
}

async fn member(panel: &TestPanel, name: &str, role: &str) -> String {
    let (status, member) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": name, "email": format!("{name}@example.org"), "role": role}),
        )
        .await;
    assert_eq!(status, 201, "{member}");
    member["id"].as_str().unwrap().to_owned()
}

async fn site(panel: &TestPanel, owner: &str, domain: &str) -> String {
    let (status, site) = panel
        .post(
            "/api/v1/sites",
            json!({"owner_id": owner, "primary_domain": domain, "image": "registry.example.org/s:1"}),
        )
        .await;
    assert_eq!(status, 201, "{site}");
    site["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_rules_say() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, _) = panel.seed().await;
        let ana = member(&panel, "ana", "member").await;
        let ben = member(&panel, "ben", "member").await;
        let cleo = member(&panel, "cleo", "auditor").await;
        let ana_site = site(&panel, &ana, "ana.example.org").await;
        let callers = [
            Who {
                name: "anonymous",
                token: None,
                role: None,
                read_only: false,
            },
            Who {
                name: "admin",
                token: Some(panel.token.clone()),
                role: Some("admin"),
                read_only: false,
            },
            Who {
                name: "auditor",
                token: Some(token_for(&panel, &cleo, "full").await),
                role: Some("auditor"),
                read_only: false,
            },
            Who {
                name: "member",
                token: Some(token_for(&panel, &ana, "full").await),
                role: Some("member"),
                read_only: false,
            },
            Who {
                name: "member read-only",
                token: Some(token_for(&panel, &ana, "read").await),
                role: Some("member"),
                read_only: true,
            },
        ];
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut checked = 0;
        for route in routes().into_iter().filter(|r| r.surface == Surface::Api) {
            // Reads get real ids (they change nothing); changes get unknown ones, so that an
            // allowed change answers 400 or 404 and changes nothing either.
            let id = if route.mutates {
                uuid::Uuid::now_v7().to_string()
            } else if route.path.starts_with("/api/v1/sites/") {
                ana_site.clone()
            } else if route.path.starts_with("/api/v1/nodes/") {
                node.clone()
            } else if route.path.starts_with("/api/v1/members/") {
                ana.clone()
            } else {
                uuid::Uuid::now_v7().to_string()
            };
            let path = route.path.replace("{id}", &id);
            for who in &callers {
                let mut request =
                    http.request(route.method.clone(), format!("{}{path}", panel.base));
                if let Some(token) = &who.token {
                    request = request.bearer_auth(token);
                }
                if route.mutates {
                    request = request.json(&json!({}));
                }
                let status = request.send().await.unwrap().status().as_u16();
                let expected = allowed(who, route.access, route.mutates);
                match expected {
                    Err(code) => assert_eq!(
                        status, code,
                        "{} {} as {}",
                        route.method, route.path, who.name
                    ),
                    Ok(()) => assert!(
                        status != 401 && status != 403 && status < 500,
                        "{} {} as {}: {status}",
                        route.method,
                        route.path,
                        who.name
                    ),
                }
                checked += 1;
            }
        }
        assert!(checked > 150, "{checked}");
        let _ = ben;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_member_reaches_their_own_sites_only() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        panel.seed().await;
        let ana = member(&panel, "ana", "member").await;
        let ben = member(&panel, "ben", "member").await;
        let ana_site = site(&panel, &ana, "ana.example.org").await;
        let ben_site = site(&panel, &ben, "ben.example.org").await;
        let token = token_for(&panel, &ana, "full").await;
        let http = reqwest::Client::new();
        let call = |method: Method, path: String, body: Option<Value>| {
            let mut request = http
                .request(method, format!("{}{path}", panel.base))
                .bearer_auth(&token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                (
                    status,
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
                )
            }
        };

        // Her list holds her sites only, whatever filter she sends.
        for query in ["", &format!("?owner_id={ben}")] {
            let (status, list) = call(Method::GET, format!("/api/v1/sites{query}"), None).await;
            assert_eq!(status, 200);
            let ids: Vec<&str> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, [ana_site.as_str()], "{query}");
        }
        // Ben's site does not exist for her: 404 on every route, never 403.
        for (method, path) in [
            (Method::GET, format!("/api/v1/sites/{ben_site}")),
            (Method::PATCH, format!("/api/v1/sites/{ben_site}")),
            (Method::DELETE, format!("/api/v1/sites/{ben_site}")),
            (Method::POST, format!("/api/v1/sites/{ben_site}/purge")),
        ] {
            let body = (method == Method::PATCH).then(|| json!({"version": 1, "http_port": 9090}));
            let (status, _) = call(method.clone(), path.clone(), body).await;
            assert_eq!(status, 404, "{method} {path}");
        }
        assert_eq!(
            panel.get(&format!("/api/v1/sites/{ben_site}")).await.1["http_port"],
            8080,
            "untouched"
        );

        // An owner smuggled into a body is refused; her own goes through.
        let (status, refused) = call(
            Method::POST,
            "/api/v1/sites".into(),
            Some(json!({"owner_id": ben, "primary_domain": "smuggled.example.org", "image": "registry.example.org/s:1"})),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["errors"][0]["code"], "owner.not_you");
        let (status, own) = call(
            Method::POST,
            "/api/v1/sites".into(),
            Some(json!({"owner_id": ana, "primary_domain": "mine.example.org", "image": "registry.example.org/s:1"})),
        )
        .await;
        assert_eq!(status, 201, "{own}");
        let (status, refused) = call(
            Method::PATCH,
            format!("/api/v1/sites/{ana_site}"),
            Some(json!({"version": 1, "owner_id": ben})),
        )
        .await;
        assert_eq!(status, 400, "giving a site away: {refused}");
        let (status, _) = call(
            Method::PATCH,
            format!("/api/v1/sites/{ana_site}"),
            Some(json!({"version": 1, "http_port": 8081})),
        )
        .await;
        assert_eq!(status, 200);
        // Her changes are recorded as hers.
        let events = panel.store.audit_events(0, 1000).await.unwrap();
        let last = events
            .iter()
            .rev()
            .find(|e| e.action == "site.update")
            .unwrap();
        assert_eq!(last.actor, format!("member:{ana}"));

        // A read-only token reads and changes nothing; a revoked or expired one opens nothing.
        let reader = token_for(&panel, &ana, "read").await;
        let as_reader = |method: Method, path: String| {
            let request = http
                .request(method, format!("{}{path}", panel.base))
                .bearer_auth(&reader)
                .json(&json!({"version": 2, "http_port": 8082}));
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(
            as_reader(Method::GET, format!("/api/v1/sites/{ana_site}")).await,
            200
        );
        assert_eq!(
            as_reader(Method::PATCH, format!("/api/v1/sites/{ana_site}")).await,
            403
        );
        let (_, tokens) = panel.get(&format!("/api/v1/members/{ana}/tokens")).await;
        let reader_id = tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["scope"] == "read")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            tokens.to_string().find("alt_").is_none(),
            "secrets are never listed"
        );
        let (status, _) = panel
            .call(Method::DELETE, &format!("/api/v1/tokens/{reader_id}"), None)
            .await;
        assert_eq!(status, 204);
        assert_eq!(
            as_reader(Method::GET, format!("/api/v1/sites/{ana_site}")).await,
            401
        );
        panel.clock.advance(chrono::Duration::days(91));
        assert_eq!(
            call(Method::GET, format!("/api/v1/sites/{ana_site}"), None)
                .await
                .0,
            401,
            "expired after 90 days"
        );
        let (status, me) = panel.get("/api/v1/me").await;
        assert_eq!((status, me["role"].as_str()), (200, Some("admin")));
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_offboarded_members_tokens_stop_and_their_sites_are_handed_over_or_stopped() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        panel.seed().await;
        let ana = member(&panel, "ana", "member").await;
        let ben = member(&panel, "ben", "member").await;
        let ana_sites = [
            site(&panel, &ana, "one.ana.example.org").await,
            site(&panel, &ana, "two.ana.example.org").await,
        ];
        let ben_site = site(&panel, &ben, "ben.example.org").await;
        let token = token_for(&panel, &ana, "full").await;
        let mine = |token: String| {
            let url = format!("{}/api/v1/sites", panel.base);
            async move {
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(mine(token.clone()).await, 200);

        // Ana leaves; Ben takes over her sites.
        let (status, refused) = panel
            .post(
                &format!("/api/v1/members/{ana}/disable"),
                json!({"hand_sites_to": ana}),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        let (status, _) = panel
            .post(
                &format!("/api/v1/members/{ana}/disable"),
                json!({"hand_sites_to": ben}),
            )
            .await;
        assert_eq!(status, 204);
        assert_eq!(mine(token).await, 401, "her tokens stopped at once");
        for id in &ana_sites {
            let (_, site) = panel.get(&format!("/api/v1/sites/{id}")).await;
            assert_eq!(site["owner_id"], ben.as_str());
            assert_eq!(site["phase"], "pending", "still meant to run");
        }

        // Ben leaves with nobody to take over: every site of his is stopped, data kept.
        let (status, _) = panel
            .post(&format!("/api/v1/members/{ben}/disable"), json!({}))
            .await;
        assert_eq!(status, 204);
        for id in ana_sites.iter().chain([&ben_site]) {
            assert_eq!(
                panel.get(&format!("/api/v1/sites/{id}")).await.1["phase"],
                "stopped"
            );
        }
        let events = panel.store.audit_events(0, 1000).await.unwrap();
        let disabled: Vec<&str> = events
            .iter()
            .filter(|e| e.action == "member.disable")
            .map(|e| e.target_id.as_str())
            .collect();
        assert_eq!(disabled, [ana.as_str(), ben.as_str()]);
        let (status, _) = panel
            .post(
                &format!("/api/v1/members/{}/disable", uuid::Uuid::now_v7()),
                json!({}),
            )
            .await;
        assert_eq!(status, 404);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_member_sees_the_record_of_their_own_sites_and_an_auditor_sees_it_all() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        panel.seed().await;
        let ana = member(&panel, "ana", "member").await;
        let ben = member(&panel, "ben", "member").await;
        let cleo = member(&panel, "cleo", "auditor").await;
        let ana_site = site(&panel, &ana, "ana.example.org").await;
        let ben_site = site(&panel, &ben, "ben.example.org").await;
        let ana_token = token_for(&panel, &ana, "full").await;
        let cleo_token = token_for(&panel, &cleo, "read").await;
        let get = |token: String, path: &str| {
            let url = format!("{}{path}", panel.base);
            async move {
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        };
        let targets = |page: &str| -> Vec<String> {
            let page: Value = serde_json::from_str(page).unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["target_id"].as_str().unwrap().to_owned())
                .collect()
        };
        let hers = targets(&get(ana_token.clone(), "/api/v1/audit/events").await);
        assert!(!hers.is_empty());
        assert!(hers.iter().all(|t| *t == ana_site), "{hers:?}");
        // Asking for Ben's site, or for everything, changes nothing.
        let asked = targets(
            &get(
                ana_token.clone(),
                &format!("/api/v1/audit/events?target_id={ben_site}"),
            )
            .await,
        );
        assert!(asked.is_empty(), "{asked:?}");
        let export = get(ana_token, "/api/v1/audit/export").await;
        assert!(!export.contains(&ben_site));
        let report = alveole_audit::export::verify_export(&export, &[], None).unwrap();
        assert!(!report.complete, "hers only: verified event by event");
        // The auditor reads everything, with a read-only token.
        let all = targets(&get(cleo_token, "/api/v1/audit/events?limit=1000").await);
        assert!(all.contains(&ana_site) && all.contains(&ben_site));
        db.drop_db().await;
    }
}

/// A page session for a member, as the identity provider's callback opens one.
async fn member_session(panel: &TestPanel, member: &str) -> String {
    let ctx = alveole_store::AuditContext::new("test", "session");
    let cookie = alveole_panel::auth::open_member_session(
        panel.store.as_ref(),
        &ctx,
        member.parse().unwrap(),
        chrono::Utc::now(),
        None,
    )
    .await
    .unwrap();
    format!("{}={cookie}", alveole_panel::auth::SESSION_COOKIE)
}

#[tokio::test]
async fn pages_answer_members_and_auditors_by_their_role() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        panel.seed().await;
        let ana = member(&panel, "ana", "member").await;
        let ben = member(&panel, "ben", "member").await;
        let cleo = member(&panel, "cleo", "auditor").await;
        site(&panel, &ana, "ana.example.org").await;
        let ben_site = site(&panel, &ben, "ben.example.org").await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let get = |cookie: String, path: String| {
            let request = http
                .get(format!("{}{path}", panel.base))
                .header("cookie", cookie);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_owned());
                (status, location, response.text().await.unwrap())
            }
        };
        let post = |cookie: String, path: String, form: Vec<(&'static str, String)>| {
            let request = http
                .post(format!("{}{path}", panel.base))
                .header("cookie", cookie)
                .form(&form);
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        let csrf_of = alveole_tests::csrf_of;

        // Ana, a member: her sites, nothing else.
        let as_ana = member_session(&panel, &ana).await;
        let (status, location, _) = get(as_ana.clone(), "/".into()).await;
        assert_eq!((status, location.as_deref()), (303, Some("/sites")));
        let (status, _, list) = get(as_ana.clone(), "/sites".into()).await;
        assert_eq!(status, 200);
        assert!(
            list.contains("ana.example.org") && !list.contains("ben.example.org"),
            "{list}"
        );
        for path in [
            format!("/sites/{ben_site}"),
            format!("/sites/{ben_site}/edit"),
        ] {
            assert_eq!(get(as_ana.clone(), path.clone()).await.0, 404, "{path}");
        }
        for path in ["/providers", "/nodes", "/members", "/audit", "/inventory"] {
            let (status, _, page) = get(as_ana.clone(), path.into()).await;
            assert_eq!(status, 403, "{path}");
            // A page, not a problem document, saying why.
            assert!(page.contains("admins and auditors"), "{path}: {page}");
        }
        // In her language.
        let refused = http
            .get(format!("{}/nodes", panel.base))
            .header("cookie", as_ana.clone())
            .header("accept-language", "fr")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            refused.contains("réservée aux administrateurs"),
            "{refused}"
        );
        // Her menu offers only what she may open.
        let (_, _, sites) = get(as_ana.clone(), "/sites".into()).await;
        let nav = sites
            .split("<nav>")
            .nth(1)
            .unwrap()
            .split("</nav>")
            .next()
            .unwrap();
        assert!(nav.contains("/sites"), "{nav}");
        for hidden in ["/nodes", "/providers", "/members", "/audit", "/inventory"] {
            assert!(!nav.contains(hidden), "{hidden} in {nav}");
        }
        // The API answers her browser's session for reads (who am I), never for changes.
        let (status, _, me) = get(as_ana.clone(), "/api/v1/me".into()).await;
        assert_eq!(status, 200, "{me}");
        assert!(me.contains(&ana), "{me}");
        let changed = http
            .post(format!("{}/api/v1/members/{ana}/tokens", panel.base))
            .header("cookie", as_ana.clone())
            .json(&serde_json::json!({"name": "from a page"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(changed, 401, "a change through the API needs a token");
        let (status, _, form) = get(as_ana.clone(), "/sites/new".into()).await;
        assert_eq!(status, 200);
        assert!(
            form.contains("ana@example.org") && !form.contains("ben@example.org"),
            "only herself as owner"
        );
        let csrf = csrf_of(&form);
        let (status, _) = post(
            as_ana.clone(),
            format!("/sites/{ben_site}/delete"),
            vec![("csrf", csrf.clone())],
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(
            panel.get(&format!("/api/v1/sites/{ben_site}")).await.0,
            200,
            "still there"
        );
        let (status, page) = post(
            as_ana.clone(),
            "/sites/new".into(),
            vec![
                ("csrf", csrf),
                ("primary_domain", "smuggled.example.org".into()),
                ("owner_id", ben.clone()),
                ("image", "registry.example.org/s:1".into()),
                ("http_port", "8080".into()),
                ("limits.cpu_millis", "0.5".into()),
                ("limits.memory_bytes", "268435456".into()),
                ("limits.pids", "64".into()),
                ("limits.request_body_bytes", "64M".into()),
                ("volume.quota_bytes", "1073741824".into()),
                ("volume.mount_path", "/data".into()),
                ("phase", "running".into()),
            ],
        )
        .await;
        assert_eq!(status, 400, "{page}");
        assert!(
            page.contains(r#"data-field="owner_id""#),
            "refused for its owner: {page}"
        );

        // Cleo, an auditor: reads everything, changes nothing.
        let as_cleo = member_session(&panel, &cleo).await;
        for path in [
            "/providers".to_owned(),
            format!("/sites/{ben_site}"),
            "/audit".into(),
            "/".into(),
        ] {
            assert_eq!(get(as_cleo.clone(), path.clone()).await.0, 200, "{path}");
        }
        assert_eq!(get(as_cleo.clone(), "/providers/new".into()).await.0, 403);
        let (_, _, page) = get(as_cleo.clone(), "/sites".into()).await;
        let (status, _) = post(
            as_cleo.clone(),
            format!("/sites/{ben_site}/delete"),
            vec![("csrf", csrf_of(&page))],
        )
        .await;
        assert_eq!(status, 403);
        let (status, _) = post(
            as_cleo.clone(),
            "/sites/new".into(),
            vec![
                ("csrf", csrf_of(&page)),
                ("primary_domain", "x.example.org".into()),
            ],
        )
        .await;
        assert_eq!(status, 403, "an auditor's form goes nowhere");

        // Offboarded: her session ends with her.
        let (status, _) = panel
            .post(&format!("/api/v1/members/{ana}/disable"), json!({}))
            .await;
        assert_eq!(status, 204);
        let (status, location, _) = get(as_ana, "/sites".into()).await;
        assert_eq!((status, location.as_deref()), (303, Some("/login")));
        db.drop_db().await;
    }
}

/// A signed-in admin's page session: its cookie and the CSRF token its forms carry.
pub(crate) async fn admin_page_session(
    panel: &TestPanel,
    browser: &reqwest::Client,
) -> (String, String) {
    let login = browser
        .post(format!("{}/login", panel.base))
        .form(&[("token", panel.token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let home = browser
        .get(format!("{}/", panel.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (cookie, alveole_tests::csrf_of(&home))
}

#[tokio::test]
async fn every_state_changing_page_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing()
{
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node, member) = panel.seed().await;
    let site = site(&panel, &member, "csrf.example.org").await;
    let (_, node_view) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    let provider = node_view["provider_id"].as_str().unwrap().to_owned();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (cookie, csrf) = admin_page_session(&panel, &browser).await;
    let head = panel.store.audit_head().await.unwrap();

    // Real ids, and fields that would succeed: only the token stands between each form and
    // its change.
    let forms: Vec<_> = routes()
        .into_iter()
        .filter(|r| r.surface == Surface::Page && r.mutates && r.access != Access::Public)
        .collect();
    assert!(forms.len() >= 20, "the table has the panel's forms");
    for route in &forms {
        let id = match route.path.split('/').nth(1) {
            Some("providers") => &provider,
            Some("nodes") => &node,
            Some("members") => &member,
            _ => &site,
        };
        let path = route
            .path
            .replace("{id}", id)
            .replace("{address}", "192.0.2.10")
            .replace("{verb}", "cancel");
        let fields = [
            ("name", "Renamed"),
            ("display_name", "Renamed"),
            ("email", "renamed@example.org"),
            ("role", "member"),
            ("version", "1"),
            ("to_node", node.as_str()),
        ];
        for csrf in [None, Some("not-the-session-token")] {
            let mut form: Vec<(&str, &str)> = fields.to_vec();
            form.extend(csrf.map(|token| ("csrf", token)));
            let response = browser
                .post(format!("{}{path}", panel.base))
                .header("cookie", &cookie)
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, 400, "POST {path} with csrf {csrf:?}: {body}");
            assert!(body.contains("expired"), "POST {path}: {body}");
        }
    }
    assert_eq!(
        panel.store.audit_head().await.unwrap(),
        head,
        "nothing was recorded, so nothing changed"
    );

    // The session's own token opens the same door.
    let (status, spare) = panel
        .post("/api/v1/providers", json!({"name": "Spare"}))
        .await;
    assert_eq!(status, 201);
    let delete = browser
        .post(format!(
            "{}/providers/{}/delete",
            panel.base,
            spare["id"].as_str().unwrap()
        ))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 303);
    let (status, _) = panel
        .get(&format!(
            "/api/v1/providers/{}",
            spare["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 404, "deleted");
    db.drop_db().await;
}
