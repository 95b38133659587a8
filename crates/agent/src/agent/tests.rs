//! The agent's tasks against fakes of everything it touches (the panel, the engine, the node's
//! table, the state directory): no root, no Docker, no network.

use std::sync::Arc;
use std::time::Duration;

use alveole_model::{
    AgentEventKind, DesiredState, Hostname, ImageRef, Limits, NodeId, SiteId, SiteSpec, SiteState,
    SystemClock, Volume, Wildcard,
};

use super::{Agent, Parts, Timing};
use crate::control::fake::FakePanel;
use crate::control::files::MemoryFiles;
use crate::control::identity::{IssuedCertificate, NewKey};
use crate::engine::fake::FakeRuntime;
use crate::ingress::Ingress;
use crate::net::fake::FakeRouting;
use crate::net::routing::IngressPorts;

struct Node {
    agent: Agent<FakeRuntime>,
    panel: Arc<FakePanel>,
    ingress: Arc<Ingress>,
    routing: Arc<FakeRouting>,
    id: NodeId,
}

fn node() -> Node {
    let id = NodeId::generate();
    let now = chrono::Utc::now();
    let credential = NewKey::generate()
        .expect("a key")
        .certified(IssuedCertificate {
            node_id: id,
            certificate_pem: String::new(),
            not_before: now,
            not_after: now + chrono::Duration::hours(24),
        });
    let panel = Arc::new(FakePanel::default());
    let ingress = Arc::new(Ingress::new());
    let routing = Arc::new(FakeRouting::new(IngressPorts {
        http: 8081,
        https: None,
    }));
    let agent = Agent::assemble(Parts {
        credential,
        control: panel.clone(),
        files: Arc::new(MemoryFiles::default()),
        runtime: FakeRuntime::default(),
        ingress: ingress.clone(),
        clock: Arc::new(SystemClock),
        routing: Some(routing.clone()),
        panel_ca: None,
    });
    Node {
        agent,
        panel,
        ingress,
        routing,
        id,
    }
}

fn site(name: &str, run: bool) -> SiteSpec {
    SiteSpec {
        site_id: SiteId::generate(),
        hostnames: vec![Hostname::parse(name, Wildcard::Refused).expect("a name")],
        image: ImageRef::parse("alveole-test/busybox:1").expect("an image"),
        command: vec![],
        env: vec![],
        http_port: 8080,
        volume: Volume::default(),
        limits: Limits::default(),
        security: Default::default(),
        run,
        dedicated_addresses: vec![],
        exposed_ports: vec![],
        limit_tier: Default::default(),
        backup: None,
        tls: None,
        admission: None,
        databases: vec![],
        databases_stay_up: false,
    }
}

fn document(node: NodeId, generation: u64, sites: Vec<SiteSpec>) -> DesiredState {
    DesiredState {
        node_id: node,
        generation,
        sites,
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    }
}

fn runtime(agent: &Agent<FakeRuntime>) -> &FakeRuntime {
    agent.passes.runtime()
}

#[tokio::test]
async fn a_document_arrives_the_engine_fails_once_and_the_next_pass_repairs() {
    let mut node = node();
    let blog = site("blog.example.org", true);
    node.panel.publish(document(node.id, 1, vec![blog.clone()]));
    runtime(&node.agent).fail("create_container", 1);

    node.agent.pass().await.expect("a pass");
    assert_eq!(
        node.agent.held_generation(),
        Some(1),
        "the document is held"
    );
    let first = node.panel.reports().pop().expect("a report");
    assert_eq!(first.sites[0].state, SiteState::Failing);
    let reason = first.sites[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("told to fail"), "{reason}");
    assert!(node.ingress.routes().lookup("blog.example.org").is_none());

    let repaired = node.agent.pass().await.expect("a pass");
    assert!(!repaired.actions.is_empty(), "the next pass acts again");
    let second = node.panel.reports().pop().expect("a report");
    assert_eq!(second.sites[0].state, SiteState::Running);
    assert!(node.ingress.routes().lookup("blog.example.org").is_some());
    let creates = runtime(&node.agent)
        .calls()
        .iter()
        .filter(|c| c.starts_with("create_container"))
        .count();
    assert_eq!(creates, 1, "made once, after the refusal the report told");
    assert!(
        !node.routing.plans().is_empty(),
        "the node's table was put in place"
    );
}

#[tokio::test]
async fn with_the_panel_away_the_agent_serves_repairs_and_keeps_its_events_until_it_is_back() {
    let mut node = node();
    let blog = site("blog.example.org", true);
    node.panel.publish(document(node.id, 1, vec![blog.clone()]));
    node.agent.pass().await.expect("a pass");
    node.panel.set_away(true);
    runtime(&node.agent).lose_container(blog.site_id);

    let repaired = node
        .agent
        .pass()
        .await
        .expect("a pass from the held document");
    assert!(
        !repaired.actions.is_empty(),
        "drift repaired without the panel"
    );
    assert!(node.ingress.routes().lookup("blog.example.org").is_some());
    let sent = node.panel.reports().len();

    node.panel.set_away(false);
    node.agent.pass().await.expect("a pass");
    let reports = node.panel.reports();
    assert_eq!(reports.len(), sent + 1);
    let events = &reports[sent].events;
    assert!(
        events
            .iter()
            .any(|e| e.kind == AgentEventKind::DriftRepaired && e.site_id == Some(blog.site_id)),
        "{events:?}"
    );
    node.agent.pass().await.expect("a pass");
    assert!(
        node.panel
            .reports()
            .last()
            .expect("a report")
            .events
            .is_empty(),
        "acknowledged events are not sent again"
    );
}

#[tokio::test]
async fn running_the_tasks_a_new_document_reaches_the_node_and_each_pass_is_reported() {
    let node = node();
    let blog = site("blog.example.org", true);
    node.panel.publish(document(node.id, 1, vec![blog.clone()]));
    let (panel, ingress, id) = (node.panel.clone(), node.ingress.clone(), node.id);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.agent.run(
        Timing {
            pass: Duration::from_secs(30),
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let reported = |state: SiteState, generation: u64| {
        let panel = panel.clone();
        async move {
            for _ in 0..200 {
                let done = panel.reports().iter().any(|r| {
                    r.generation == Some(generation) && r.sites.iter().any(|s| s.state == state)
                });
                if done {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        }
    };
    // Well before the 30 s timer: the long poll brings the document, a pass follows.
    assert!(
        reported(SiteState::Running, 1).await,
        "{:?}",
        panel.reports()
    );
    assert!(ingress.routes().lookup("blog.example.org").is_some());
    let mut stopped_blog = blog;
    stopped_blog.run = false;
    panel.publish(document(id, 2, vec![stopped_blog]));
    assert!(
        reported(SiteState::Stopped, 2).await,
        "{:?}",
        panel.reports()
    );
    assert!(ingress.routes().lookup("blog.example.org").is_none());
    let _ = stop.send(());
    running.await.expect("the agent stops");
}

#[tokio::test]
async fn a_table_that_cannot_be_put_in_place_is_said_in_the_report() {
    let mut node = node();
    node.panel
        .publish(document(node.id, 1, vec![site("a.example.org", true)]));
    node.routing.refuse(1);
    node.agent.pass().await.expect("a pass");
    let warnings = node.panel.reports().pop().expect("a report").warnings;
    assert!(
        warnings.iter().any(|w| w.contains("table is not in place")),
        "{warnings:?}"
    );
    node.agent.pass().await.expect("a pass");
    let warnings = node.panel.reports().pop().expect("a report").warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn a_waiting_room_that_opens_and_closes_is_reported_for_the_record() {
    let mut node = node();
    let school = site("ecole.example.org", true);
    node.panel
        .publish(document(node.id, 1, vec![school.clone()]));
    node.agent.pass().await.expect("a pass");
    for opened in [true, false] {
        node.ingress.note_room_change(crate::ingress::RoomChange {
            site: school.site_id,
            opened,
            at: chrono::Utc::now(),
            waiting: usize::from(opened) * 40,
            active: 200,
        });
    }
    node.agent.pass().await.expect("a pass");
    let events = node.panel.reports().pop().expect("a report").events;
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e.site_id == Some(school.site_id))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            AgentEventKind::WaitingRoomOpened,
            AgentEventKind::WaitingRoomClosed
        ],
        "{events:?}"
    );
    assert!(events[0].detail.contains("40 waiting"), "{events:?}");
    assert!(node.ingress.take_room_changes().is_empty(), "taken once");
}
