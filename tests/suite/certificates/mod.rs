//! HTTPS for sites against real ACME servers: Debian's pebble for ordering, renewing,
//! revoking, a challenge that fails and a name that points elsewhere (`pebble.rs`); a small
//! ACME stand-in for what pebble 2.4 lacks, renewal information and 429s (`stand_in.rs`);
//! a member's own certificate (`uploaded.rs`).

mod pebble;
mod stand_in;
mod uploaded;

use std::time::Duration;

use alveole_tests::TestPanel;
pub(crate) use alveole_tests::acme::{RunningNode, node_with_agent};
use serde_json::{Value, json};

/// A site of `member` on `node` answering for `names` (the first its primary name).
pub(crate) async fn site(panel: &TestPanel, member: &str, node: &str, names: &[&str]) -> String {
    let (status, site) = panel
        .post(
            "/api/v1/sites",
            json!({
                "owner_id": member, "primary_domain": names[0], "aliases": &names[1..],
                "image": alveole_tests::TEST_IMAGE, "node_id": node,
                "limits": {"cpu_millis": 10, "memory_bytes": 16777216, "pids": 16}
            }),
        )
        .await;
    assert_eq!(status, 201, "{site}");
    site["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn member(panel: &TestPanel) -> String {
    let (status, member) = panel
        .post(
            "/api/v1/members",
            json!({"display_name": "Ana", "email": format!("ana-{}@exemple.org", uuid::Uuid::now_v7().simple())}),
        )
        .await;
    assert_eq!(status, 201, "{member}");
    member["id"].as_str().unwrap().to_owned()
}

/// The site's certificate view once `done` holds of it (the certificates task poked
/// meanwhile), within a minute.
pub(crate) async fn certificate_when(
    panel: &TestPanel,
    site: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/api/v1/sites/{site}/certificate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, view) = panel.get(&path).await;
        if status != 200 {
            let why = panel
                .service()
                .site_certificate(None, site.parse().unwrap())
                .await;
            panic!("{status} {view}: {why:?}");
        }
        if done(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within a minute: {view}"
        );
        panel
            .service()
            .poke(alveole_panel::background::Task::Certificates);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A listener on a free port of loopback, kept (another test cannot take its port).
pub(crate) async fn http_listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port")
}
