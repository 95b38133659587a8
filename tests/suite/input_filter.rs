//! The node's opt-in input filter, end to end: set through the API, applied by a real agent
//! to its table (in a network namespace this test creates), confirmed once the agent reaches
//! the panel in a later pass, and rolled back by the agent on its own when it loses the
//! panel after a change.
//!
//! The panel is lost here by stopping it: the agent talks to it over the test's loopback,
//! which the node namespace's filter cannot cut. What is tested is the agent's side: a change
//! it cannot confirm is undone by the deadline, one it confirmed stays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alveole_agent::agent::{Agent, credential};
use alveole_agent::engine::fake::FakeRuntime;
use alveole_agent::ingress::Ingress;
use alveole_agent::net::routing::{IngressPorts, NftCommand, NftRouting};
use alveole_tests::netns::{Netns, ask_tcp, dropped, link, serve_tcp};
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::json;

const SERVICE: u16 = 2223;
const INGRESS: u16 = 8080;
/// How long a change may go unconfirmed here before the agent rolls it back.
const WINDOW: Duration = Duration::from_secs(4);

/// A stranger and an admin's machine, each on its own link to the node.
struct Lab {
    node: Netns,
    stranger: Netns,
    admin: Netns,
}

impl Lab {
    fn new() -> Self {
        let (node, stranger, admin) = (Netns::new("if-n"), Netns::new("if-s"), Netns::new("if-a"));
        link(&stranger, "s0", &node, "n0");
        stranger.ip(&["addr", "add", "198.51.100.2/24", "dev", "s0"]);
        node.ip(&["addr", "add", "198.51.100.1/24", "dev", "n0"]);
        link(&admin, "a0", &node, "n1");
        admin.ip(&["addr", "add", "203.0.113.2/24", "dev", "a0"]);
        node.ip(&["addr", "add", "203.0.113.1/24", "dev", "n1"]);
        serve_tcp(&node, SERVICE, "service");
        serve_tcp(&node, INGRESS, "ingress");
        Self {
            node,
            stranger,
            admin,
        }
    }

    fn stranger_reaches_the_service(&self) -> bool {
        !dropped(ask_tcp(&self.stranger, "198.51.100.1", SERVICE))
    }

    fn admin_reaches_the_service(&self) -> bool {
        !dropped(ask_tcp(&self.admin, "203.0.113.1", SERVICE))
    }
}

/// Runs passes until `done` holds (bounded).
async fn passes_until<R: alveole_agent::engine::runtime::MoveRuntime + 'static>(
    agent: &mut Agent<R>,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        agent.pass().await;
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_filter(panel: &TestPanel, node: &str, enabled: bool, allowed: &[&str]) {
    let (_, current) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    let (status, changed) = panel
        .call(
            Method::PATCH,
            &format!("/api/v1/nodes/{node}"),
            Some(json!({"version": current["version"], "input_filter": enabled, "input_allowed": allowed})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_change_the_agent_cannot_confirm_is_rolled_back_by_itself() {
    alveole_tests::init();
    if !alveole_tests::netns::available() {
        return;
    }
    let lab = Lab::new();
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    let (node, _) = panel.seed().await;

    // Refused: a filter with nobody allowed would shut the admins out.
    let (_, current) = panel.get(&format!("/api/v1/nodes/{node}")).await;
    let (status, refused) = panel
        .call(
            Method::PATCH,
            &format!("/api/v1/nodes/{node}"),
            Some(json!({"version": current["version"], "input_filter": true})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "input_allowed.empty");

    let (status, join) = panel
        .post(&format!("/api/v1/nodes/{node}/join-token"), json!({}))
        .await;
    assert_eq!(status, 201, "{join}");
    let state_dir = tempfile::tempdir().unwrap();
    let client = panel.agent_client();
    let credential = credential(&client, state_dir.path(), join["join_token"].as_str())
        .await
        .unwrap();
    let routing = NftRouting::new(
        NftCommand::in_netns(&lab.node.name),
        IngressPorts {
            http: INGRESS,
            https: None,
        },
    );
    let mut agent = Agent::new(
        credential,
        client,
        state_dir.path(),
        FakeRuntime::default(),
        Arc::new(Ingress::new()),
    )
    .with_routing(Arc::new(routing))
    .with_input_filter_window(WINDOW);
    agent.pass().await;
    assert!(lab.stranger_reaches_the_service(), "no filter yet");

    // Opted in: only the admins' network reaches the host's service; the ingress stays open.
    set_filter(&panel, &node, true, &["203.0.113.0/24"]).await;
    agent.pass().await;
    // Confirmed by the next pass's report (the window counts from the apply).
    agent.pass().await;
    assert!(!lab.stranger_reaches_the_service());
    assert!(lab.admin_reaches_the_service());
    assert_eq!(
        ask_tcp(&lab.stranger, "198.51.100.1", INGRESS).unwrap(),
        "ingress 198.51.100.2"
    );
    // Losing the panel afterwards changes nothing.
    panel.stop().await;
    let lost = Instant::now();
    passes_until(&mut agent, "the window to pass", || {
        lost.elapsed() > WINDOW + Duration::from_secs(1)
    })
    .await;
    assert!(
        !lab.stranger_reaches_the_service(),
        "a confirmed filter stays"
    );
    assert!(lab.admin_reaches_the_service());
    panel.resume().await;
    agent.pass().await;

    // A change that shuts the admins out, then the panel is lost: the agent goes back to
    // the confirmed filter by itself.
    set_filter(&panel, &node, true, &["192.0.2.0/24"]).await;
    agent.pass().await;
    assert!(
        !lab.admin_reaches_the_service(),
        "the new filter is in place"
    );
    panel.stop().await;
    passes_until(&mut agent, "the rollback", || {
        lab.admin_reaches_the_service()
    })
    .await;
    assert!(
        !lab.stranger_reaches_the_service(),
        "back to the confirmed filter, not to none"
    );
    panel.resume().await;
    agent.pass().await;
    agent.pass().await;
    assert!(
        lab.admin_reaches_the_service(),
        "not applied again while the panel asks for it"
    );
    let (_, status) = panel.get(&format!("/api/v1/nodes/{node}/status")).await;
    let warnings = status["report"]["warnings"].to_string();
    assert!(warnings.contains("rolled back"), "{status}");
    let (_, audit) = panel
        .get("/api/v1/audit/events?action=agent.input_filter_rolled_back")
        .await;
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert!(
        events[0]["after"].to_string().contains("1 network(s)"),
        "{audit}"
    );

    // A corrected change is applied and confirmed; taking the filter away is immediate.
    set_filter(&panel, &node, true, &["203.0.113.2"]).await;
    agent.pass().await;
    agent.pass().await;
    assert!(lab.admin_reaches_the_service() && !lab.stranger_reaches_the_service());
    set_filter(&panel, &node, false, &[]).await;
    agent.pass().await;
    assert!(lab.stranger_reaches_the_service());
    db.drop_db().await;
}
