//! Sign-in doors that do not depend on an identity provider: who am I, token login with a
//! per-address allowance, and break-glass links.

use alveole_tests::{TestDb, TestPanel};

fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn me_says_who_and_with_which_role() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (status, me) = panel.get("/api/v1/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["actor"], "bootstrap-admin");
    assert_eq!(me["role"], "admin");
    let anonymous = reqwest::get(format!("{}/api/v1/me", panel.base))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    db.drop_db().await;
}

#[tokio::test]
async fn token_login_is_rate_limited_per_address_without_locking_others_out() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let login = |client: reqwest::Client, token: &'static str| {
        let url = format!("{}/login", panel.base);
        async move {
            let response = client
                .post(url)
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned()),
            )
        }
    };
    let guesser = client_from([127, 0, 0, 1]);
    for _ in 0..alveole_panel::SIGN_IN_ATTEMPTS {
        assert_eq!(login(guesser.clone(), "alv_guess").await.0, 401);
    }
    let (status, retry_after) = login(guesser.clone(), "alv_guess").await;
    assert_eq!(status, 429);
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // The right token from the same address waits too (guessing must stay slow)...
    let token: &'static str = Box::leak(panel.token.clone().into_boxed_str());
    assert_eq!(login(guesser, token).await.0, 429);
    // ... while another address is not locked out.
    let other = client_from([127, 0, 0, 2]);
    assert_eq!(login(other.clone(), "alv_guess").await.0, 401);
    assert_eq!(login(other, token).await.0, 303);
    db.drop_db().await;
}

#[tokio::test]
async fn a_break_glass_link_opens_one_admin_session_of_limited_life_and_is_recorded() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let link = alveole_panel::auth::issue_break_glass(
        panel.store.as_ref(),
        &panel.base,
        chrono::Duration::minutes(30),
        alveole_model::Clock::now(panel.clock.as_ref()),
    )
    .await
    .unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let browser = client_from([127, 0, 0, 1]);
    // Opening the link changes nothing: a button does.
    let page = browser.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&token));
    let used = browser
        .post(format!("{}/break-glass", panel.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 303);
    let cookie = used.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let dashboard = browser
        .get(format!("{}/", panel.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), 200, "an admin session");

    // Once only.
    let again = browser
        .post(format!("{}/break-glass", panel.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403);

    // The session ends after the life the link granted, however busy it is.
    let page = |cookie: String| {
        let (browser, url) = (browser.clone(), format!("{}/", panel.base));
        async move {
            browser
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    panel.clock.advance(chrono::Duration::minutes(20));
    assert_eq!(page(cookie.clone()).await, 200);
    panel.clock.advance(chrono::Duration::minutes(11));
    assert_eq!(page(cookie.clone()).await, 303, "back to the sign-in page");
    let now = chrono::Utc::now() + chrono::Duration::minutes(31);

    // An expired link opens nothing.
    let late = alveole_panel::auth::issue_break_glass(
        panel.store.as_ref(),
        &panel.base,
        chrono::Duration::minutes(30),
        alveole_model::Clock::now(panel.clock.as_ref()),
    )
    .await
    .unwrap();
    let late_token = late.split("token=").nth(1).unwrap();
    let ctx = alveole_store::AuditContext::new("test", "late");
    let used_late = panel
        .store
        .use_break_glass(
            &ctx,
            &alveole_panel::auth::hash_token(late_token),
            now + chrono::Duration::minutes(16),
        )
        .await
        .unwrap();
    assert_eq!(used_late, None);

    // Issue and use are in the audit record, with the session it opened.
    let actions: Vec<(String, String)> = panel
        .store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action))
        .collect();
    for expected in [
        ("system:admin-cli", "break_glass.issue"),
        ("break-glass-admin", "break_glass.use"),
        ("break-glass-admin", "session.create"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, b)| (a.as_str(), b.as_str()) == expected),
            "{expected:?} in {actions:?}"
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn a_session_ends_when_unused_and_at_its_absolute_end_and_when_revoked() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let browser = client_from([127, 0, 0, 1]);
    let sign_in = || {
        let (browser, url, token) = (
            browser.clone(),
            format!("{}/login", panel.base),
            panel.token.clone(),
        );
        async move {
            let response = browser
                .post(url)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            let set_cookie = response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
            set_cookie.split(';').next().unwrap().to_owned()
        }
    };
    let page = |cookie: String| {
        let (browser, url) = (browser.clone(), format!("{}/sites", panel.base));
        async move {
            browser
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Idle: two hours without use end it.
    let cookie = sign_in().await;
    panel.clock.advance(chrono::Duration::minutes(119));
    assert_eq!(page(cookie.clone()).await, 200, "used within the idle time");
    panel.clock.advance(chrono::Duration::minutes(119));
    assert_eq!(
        page(cookie.clone()).await,
        200,
        "each use starts the idle time again"
    );
    panel.clock.advance(chrono::Duration::minutes(121));
    assert_eq!(page(cookie).await, 303, "unused for two hours");

    // Absolute: twelve hours after sign-in, however busy.
    let cookie = sign_in().await;
    for _ in 0..11 {
        panel.clock.advance(chrono::Duration::hours(1));
        assert_eq!(page(cookie.clone()).await, 200);
    }
    panel.clock.advance(chrono::Duration::minutes(61));
    assert_eq!(page(cookie).await, 303, "twelve hours after sign-in");

    // Revoked: signing out ends it on the server, not only in the browser.
    let cookie = sign_in().await;
    let out = alveole_tests::sign_out(&browser, &panel.base, &cookie).await;
    assert_eq!(out.status(), 303);
    assert_eq!(page(cookie).await, 303, "the old cookie opens nothing");
    db.drop_db().await;
}

#[tokio::test]
async fn over_https_the_session_cookie_is_a_host_cookie() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    // The same panel as `--secure-cookies` serves it (HTTPS is the proxy's; here plain HTTP).
    let config = alveole_panel::PanelConfig {
        secure_cookies: true,
        ..Default::default()
    };
    let state = alveole_panel::AppState::new(panel.store.clone(), config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app =
        alveole_panel::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let response = client_from([127, 0, 0, 1])
        .post(format!("{base}/login"))
        .form(&[("token", panel.token.as_str())])
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with("__Host-alveole_session="),
        "{set_cookie}"
    );
    for part in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    server.abort();
    db.drop_db().await;
}

#[tokio::test]
async fn join_tokens_expire_and_agent_certificates_are_dated_by_the_panels_clock() {
    use alveole_model::Clock;

    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (node, _) = panel.seed().await;
    let (status, join) = panel
        .post(
            &format!("/api/v1/nodes/{node}/join-token"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 201, "{join}");
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(join["expires_at"].clone()).unwrap();
    let lifetime = expires - panel.clock.now();
    assert!(lifetime <= chrono::Duration::hours(24) && lifetime > chrono::Duration::hours(23));

    // A day later by the panel's clock, the token opens nothing, and the clean-up forgets it.
    panel.clock.advance(chrono::Duration::hours(25));
    let key = alveole_agent::control::identity::NewKey::generate().unwrap();
    let refused = panel
        .agent_client()
        .enroll(join["join_token"].as_str().unwrap(), &key.csr_pem)
        .await;
    assert!(refused.is_err(), "an expired join token enrols nobody");
    assert_eq!(
        panel
            .store
            .remove_expired_join_tokens(panel.clock.now())
            .await
            .unwrap(),
        1
    );

    // A fresh token enrols; the certificate counts its day from the panel's now.
    let credential = panel.enrol(&node).await;
    let lasts = credential.not_after - panel.clock.now();
    assert!(
        lasts > chrono::Duration::hours(23) && lasts <= chrono::Duration::hours(24),
        "{lasts}"
    );
    assert!(credential.not_before > chrono::Utc::now() + chrono::Duration::hours(24));
    db.drop_db().await;
}

#[tokio::test]
async fn the_clean_up_forgets_sessions_sign_ins_and_links_that_can_no_longer_be_used() {
    use alveole_model::Clock;

    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let store = panel.store.as_ref();
    let ctx = alveole_store::AuditContext::new("test", "clean-up");
    let now = panel.clock.now();
    let idle = chrono::Duration::hours(2);
    // One session used now, one whose end has come, one idle for too long.
    for (hash, created, ends) in [
        ("fresh", now, now + chrono::Duration::hours(12)),
        (
            "ended",
            now - chrono::Duration::hours(13),
            now - chrono::Duration::hours(1),
        ),
        (
            "idle",
            now - chrono::Duration::hours(3),
            now + chrono::Duration::hours(9),
        ),
    ] {
        let session = alveole_store::Session {
            token_hash: hash.into(),
            actor: "bootstrap-admin".into(),
            member_id: None,
            csrf_token: "c".into(),
            created_at: created,
            expires_at: ends,
            provider: None,
        };
        store.create_session(&ctx, &session).await.unwrap();
    }
    store
        .start_oidc_login("abandoned", "n", "v", now - chrono::Duration::minutes(1))
        .await
        .unwrap();
    store
        .create_break_glass(&ctx, "stale", now - chrono::Duration::minutes(1), 600)
        .await
        .unwrap();
    let expired = store.remove_expired(now, idle).await.unwrap();
    assert_eq!(
        (expired.sessions, expired.sign_ins, expired.break_glass),
        (2, 1, 1)
    );
    assert!(
        store
            .find_session("fresh", now, idle)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.remove_expired(now, idle).await.unwrap(),
        alveole_store::Expired::default(),
        "a second pass finds nothing"
    );
    db.drop_db().await;
}
