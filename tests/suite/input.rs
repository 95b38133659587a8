//! Careless and hostile input through the API, on SQLite and PostgreSQL: names that would
//! claim other people's, fields no input has, numbers out of range, one error format
//! everywhere, edits that change nothing, and disabled members.

use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use crate::records::site;

/// The fields an error names.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A second member, as admins add them.
async fn member(panel: &TestPanel, name: &str) -> String {
    let (status, member) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": name, "email": format!("{}@exemple.org", name.to_lowercase())}),
        )
        .await;
    assert_eq!(status, 201, "{member}");
    member["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn wildcards_claim_no_public_suffix_and_no_other_members_names() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, ana) = panel.seed().await;
        let ben = member(&panel, "Ben").await;
        let with_alias = |owner: &str, domain: &str, alias: &str| {
            let mut body = site(owner, domain);
            body["aliases"] = json!([alias]);
            body
        };

        for suffix in ["*.co.uk", "*.github.io", "*.gouv.fr"] {
            let (status, refused) = panel
                .post("/api/v1/sites", with_alias(&ana, "ana.exemple.com", suffix))
                .await;
            assert_eq!(status, 400, "{suffix}: {refused}");
            assert_eq!(fields(&refused), vec!["aliases[0]"], "{refused}");
            assert_eq!(refused["errors"][0]["code"], "hostname.public_suffix");
        }

        // Ana holds exemple.org and a name two levels under shop.exemple.net: Ben may take no
        // wildcard that would claim them.
        for name in ["exemple.org", "deep.shop.exemple.net"] {
            let (status, created) = panel.post("/api/v1/sites", site(&ana, name)).await;
            assert_eq!(status, 201, "{created}");
        }
        for claim in ["*.exemple.org", "*.shop.exemple.net", "*.exemple.net"] {
            let (status, refused) = panel
                .post("/api/v1/sites", with_alias(&ben, "ben.exemple.com", claim))
                .await;
            assert_eq!(status, 409, "{claim}: {refused}");
            assert_eq!(fields(&refused), vec!["aliases[0]"]);
        }
        // Ben holds *.ben.test: Ana may not take ben.test nor anything under it.
        let (status, created) = panel
            .post(
                "/api/v1/sites",
                with_alias(&ben, "www.ben.test", "*.ben.test"),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        for name in ["ben.test", "shop.ben.test", "a.b.ben.test"] {
            let (status, refused) = panel.post("/api/v1/sites", site(&ana, name)).await;
            assert_eq!(status, 409, "{name}: {refused}");
            assert_eq!(fields(&refused), vec!["primary_domain"]);
        }
        // A member's own names and wildcards do not conflict, nor do unrelated ones.
        let (status, own) = panel
            .post(
                "/api/v1/sites",
                with_alias(&ana, "www.exemple.org", "*.exemple.org"),
            )
            .await;
        assert_eq!(status, 201, "{own}");
        let (status, other) = panel.post("/api/v1/sites", site(&ana, "notben.test")).await;
        assert_eq!(status, 201, "a name that only ends like another: {other}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn unknown_fields_are_refused_at_every_depth_and_named() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let cases = [
            (
                "security",
                json!({"read_only_rootfs": true}),
                "security.read_only_rootfs",
            ),
            (
                "security",
                json!({"privileged": true}),
                "security.privileged",
            ),
            ("limits", json!({"cpu_shares": 2}), "limits.cpu_shares"),
            ("volume", json!({"host_path": "/etc"}), "volume.host_path"),
            (
                "env",
                json!([{"name": "A", "value": "1", "bogus": 1}]),
                "env[0].bogus",
            ),
            (
                "exposed_ports",
                json!([{"protocol": "tcp", "port": 2222, "container_port": 22, "host_ip": "0.0.0.0"}]),
                "exposed_ports[0].host_ip",
            ),
        ];
        for (key, value, field) in cases {
            let mut body = site(&member, "exemple.org");
            body[key] = value;
            let (status, refused) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 400, "{field}: {refused}");
            assert!(
                fields(&refused).contains(&field.to_owned()),
                "{field}: {refused}"
            );
        }
        let (_, provider) = panel.get(&format!("/api/v1/nodes/{node}")).await;
        let (status, refused) = panel
            .post(
                "/api/v1/nodes",
                json!({"provider_id": provider["provider_id"], "name": "node-2",
                       "capacity": {"cpu_millis": 1000, "memory_bytes": 1u64 << 30,
                                    "disk_bytes": 10u64 << 30, "gpu": 1}}),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["capacity.gpu"]);

        let (_, created) = panel
            .post("/api/v1/sites", site(&member, "exemple.org"))
            .await;
        let path = format!("/api/v1/sites/{}", created["id"].as_str().unwrap());
        let (status, refused) = panel
            .call(
                Method::PATCH,
                &path,
                Some(json!({"version": 1, "limits": {"cpu_shares": 2}})),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["limits.cpu_shares"]);
        let (_, unchanged) = panel.get(&path).await;
        assert_eq!(unchanged["version"], 1, "nothing was written");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn values_out_of_range_are_refused_not_changed() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (node, member) = panel.seed().await;
        let (_, node_view) = panel.get(&format!("/api/v1/nodes/{node}")).await;
        let provider = node_view["provider_id"].clone();

        let (status, refused) = panel
            .post(
                "/api/v1/nodes",
                json!({"provider_id": provider, "name": "huge",
                       "capacity": {"cpu_millis": 1000, "memory_bytes": u64::MAX, "disk_bytes": 10u64 << 30}}),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["capacity.memory_bytes"]);

        let (status, refused) = panel
            .get(&format!(
                "/api/v1/evacuation-plan?node_id={node}&parallelism=0"
            ))
            .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["parallelism"]);

        let mut long_image = site(&member, "exemple.org");
        long_image["image"] = json!(format!("registry.example.org/{}:1", "a".repeat(250)));
        let (status, refused) = panel.post("/api/v1/sites", long_image).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["image"]);

        for mount in ["/proc", "/sys/fs", "/dev", "/"] {
            let mut body = site(&member, "exemple.org");
            body["volume"] = json!({"quota_bytes": 1u64 << 30, "mount_path": mount});
            let (status, refused) = panel.post("/api/v1/sites", body).await;
            assert_eq!(status, 400, "{mount}: {refused}");
            assert_eq!(fields(&refused), vec!["volume.mount_path"]);
        }

        let (status, refused) = panel
            .post(
                &format!("/api/v1/members/{member}/tokens"),
                json!({"name": "ci\u{0}token", "scope": "full"}),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["name"]);

        for prefix in [
            "::/0",
            "127.0.0.0/8",
            "127.0.0.0/16",
            "169.254.0.0/16",
            "ff02::/64",
        ] {
            let (status, refused) = panel
                .post(
                    "/api/v1/ip-pools",
                    json!({"provider_id": provider, "prefix": prefix}),
                )
                .await;
            assert_eq!(status, 400, "{prefix}: {refused}");
            assert_eq!(fields(&refused), vec!["prefix"], "{prefix}");
        }
        let (_, pools) = panel.get("/api/v1/ip-pools").await;
        assert_eq!(
            pools.as_array().map(Vec::len),
            Some(0),
            "no pool written: {pools}"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn every_error_is_a_problem_naming_its_field() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, member) = panel.seed().await;
        let raw = |method: Method, path: &str| {
            panel
                .http
                .request(method, format!("{}{path}", panel.base))
                .bearer_auth(&panel.token)
        };
        let problem = |response: reqwest::Response| async move {
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, kind, body)
        };

        let mut wrong_type = site(&member, "exemple.org");
        wrong_type["http_port"] = json!("eighty");
        let (status, refused) = panel.post("/api/v1/sites", wrong_type).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["http_port"]);

        let (status, kind, body) = problem(
            raw(Method::GET, "/api/v1/sites/%FF%FE")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, kind.as_str()),
            (400, "application/problem+json"),
            "{body}"
        );
        assert_eq!(fields(&body), vec!["id"]);

        let (status, kind, body) = problem(
            raw(Method::POST, "/api/v1/sites")
                .header("content-type", "application/json")
                .body(vec![b' '; 10 << 20])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, kind.as_str()),
            (413, "application/problem+json"),
            "{body}"
        );

        let (status, kind, body) = problem(
            raw(Method::POST, "/api/v1/sites")
                .header("content-type", "text/plain")
                .body(site(&member, "exemple.org").to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, kind.as_str()),
            (415, "application/problem+json"),
            "{body}"
        );

        let (status, kind, body) =
            problem(raw(Method::PUT, "/api/v1/sites").send().await.unwrap()).await;
        assert_eq!(
            (status, kind.as_str()),
            (405, "application/problem+json"),
            "{body}"
        );

        let (status, refused) = panel.get("/api/v1/sites?limit=many").await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(fields(&refused), vec!["limit"]);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_edit_that_changes_nothing_records_nothing() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, member) = panel.seed().await;
        let mut body = site(&member, "exemple.org");
        body["env"] = json!([
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"},
            {"name": "TOKEN", "value": "s3cret", "secret": true}
        ]);
        body["aliases"] = json!(["www.exemple.org", "shop.exemple.org"]);
        let (status, created) = panel.post("/api/v1/sites", body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap();
        let path = format!("/api/v1/sites/{id}");
        let events = || async {
            let (_, audit) = panel
                .get(&format!("/api/v1/audit/events?target_id={id}"))
                .await;
            audit["items"].as_array().map(Vec::len).unwrap_or(0)
        };
        let before = events().await;

        // The variables and aliases in another order, the secret left as it is.
        let same = json!({
            "version": 1,
            "env": [
                {"name": "TOKEN", "secret": true},
                {"name": "B", "value": "2"},
                {"name": "A", "value": "1"}
            ],
            "aliases": ["shop.exemple.org", "www.exemple.org"]
        });
        let (status, unchanged) = panel.call(Method::PATCH, &path, Some(same)).await;
        assert_eq!(status, 200, "{unchanged}");
        assert_eq!(unchanged["version"], 1, "no new version");
        assert_eq!(events().await, before, "nothing recorded");

        let changed = json!({"version": 1, "env": [{"name": "A", "value": "2"}]});
        let (status, changed) = panel.call(Method::PATCH, &path, Some(changed)).await;
        assert_eq!(status, 200, "{changed}");
        assert_eq!(changed["version"], 2, "a real change is one");
        assert_eq!(events().await, before + 1);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn disabled_members_show_as_such_get_nothing_new_and_can_come_back() {
    for db in TestDb::all().await {
        let panel = TestPanel::start(&db).await;
        let (_, ana) = panel.seed().await;
        let (status, _) = panel
            .post(&format!("/api/v1/members/{ana}/disable"), json!({}))
            .await;
        assert_eq!(status, 204);
        let (_, record) = panel.get(&format!("/api/v1/members/{ana}")).await;
        assert!(record["disabled_at"].is_string(), "{record}");

        let (status, refused) = panel
            .post(
                &format!("/api/v1/members/{ana}/tokens"),
                json!({"name": "ci", "scope": "full"}),
            )
            .await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["errors"][0]["code"], "member.disabled");
        let (status, refused) = panel.post("/api/v1/sites", site(&ana, "exemple.org")).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(fields(&refused), vec!["owner_id"]);

        let (status, enabled) = panel
            .post(&format!("/api/v1/members/{ana}/enable"), json!({}))
            .await;
        assert_eq!(status, 200, "{enabled}");
        assert!(enabled["disabled_at"].is_null(), "{enabled}");
        let (_, audit) = panel
            .get(&format!(
                "/api/v1/audit/events?target_id={ana}&action=member.enable"
            ))
            .await;
        assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
        let (status, created) = panel.post("/api/v1/sites", site(&ana, "exemple.org")).await;
        assert_eq!(status, 201, "{created}");
        db.drop_db().await;
    }
}

/// A body the panel refuses without reading (wrong content type, no credentials) ends its
/// connection and says so, so that a client never reuses it and meets an end of stream; a
/// body read whole keeps the connection.
#[tokio::test]
async fn an_answer_before_the_body_is_read_closes_its_connection_and_says_so() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/providers", panel.base);
    let body = "x".repeat(64 * 1024);
    let refused = [
        http.post(&url)
            .bearer_auth(&panel.token)
            .header("content-type", "text/plain")
            .body(body.clone()),
        http.post(&url)
            .header("content-type", "application/json")
            .body(body),
    ];
    for request in refused {
        let answer = request.send().await.unwrap();
        assert!(answer.status().is_client_error(), "{}", answer.status());
        assert_eq!(
            answer
                .headers()
                .get("connection")
                .map(|v| v.to_str().unwrap()),
            Some("close"),
            "{}",
            answer.status()
        );
    }
    let read = http
        .post(&url)
        .bearer_auth(&panel.token)
        .json(&json!({"name": "Lu en entier"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 201);
    assert_eq!(read.headers().get("connection"), None, "kept alive");
    db.drop_db().await;
}
