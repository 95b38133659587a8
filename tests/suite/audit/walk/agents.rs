//! Agents enrolling and reporting, site moves, evacuations, certificates and checkpoints.

use alveole_agent::agent::{Credential, PanelClient};
use alveole_agent::control::panel::Control;
use alveole_model::SiteMoveId;
use serde_json::json;

use super::api::Made;
use super::{ADMIN, Walk, id_of, node_body};
use crate::audit::Browser;

/// Two nodes' agents: enrolled, reporting where other agents reach them.
pub(super) struct Agents {
    pub(super) a: PanelClient,
    pub(super) b: PanelClient,
    pub(super) a_credential: Credential,
    pub(super) node_b: String,
    pub(super) a_actor: String,
    pub(super) b_actor: String,
}

/// Join tokens, enrolment and reports (a drift repaired and a site's phase are recorded).
pub(super) async fn agents_enrol_and_report(walk: &mut Walk<'_>, made: &Made) -> Agents {
    let node = &made.node;
    walk.act(&format!("/api/v1/nodes/{node}/join-token"), json!({}), 201)
        .await;
    walk.by_admin(
        "POST",
        "/api/v1/nodes/{id}/join-token",
        "node.join_token",
        node.clone(),
    )
    .await;
    // (`enrol` asks for a join token first: its event is the one above's kind.)
    let a_credential = walk.panel.enrol(node).await;
    walk.expect(
        "POST",
        "/api/v1/agent/enroll",
        &[
            (ADMIN, "node.join_token", node.clone()),
            ("agent:enrolment", "node.enroll", node.clone()),
        ],
    )
    .await;
    let a = walk.panel.agent_client();
    a.authenticate(&a_credential).unwrap();
    let a_actor = format!("node:{node}");
    let site_id: alveole_model::SiteId = made.site.parse().unwrap();
    let report = alveole_model::NodeReport {
        generation: Some(1),
        sites: vec![alveole_model::SiteReport {
            site_id,
            state: alveole_model::SiteState::Running,
            reason: None,
            volume_bytes: None,
            database_bytes: Default::default(),
            traffic: None,
        }],
        resources: serde_json::from_value(
            json!({"cpus": 1, "load_1m": 0.0, "memory_total_bytes": 1,
            "memory_available_bytes": 1, "disk_total_bytes": 1, "disk_available_bytes": 1}),
        )
        .unwrap(),
        agent_version: "walk".into(),
        warnings: vec![],
        events: vec![alveole_model::AgentEvent {
            seq: 1,
            at: chrono::Utc::now(),
            kind: alveole_model::AgentEventKind::DriftRepaired,
            site_id: Some(site_id),
            detail: "its container was missing: made again".into(),
            backup: None,
            damage: None,
        }],
        inventory: None,
        addresses: None,
        endpoints: None,
        restores: vec![],
        drills: vec![],
    };
    a.report(&report).await.unwrap();
    walk.expect(
        "POST",
        "/api/v1/agent/status",
        &[
            (&a_actor, "agent.drift_repaired", made.site.clone()),
            (&a_actor, "site.phase", made.site.clone()),
        ],
    )
    .await;

    // A second node, for site moves.
    let node_b = walk
        .create(
            "/api/v1/nodes",
            node_body(&made.provider, "walk-moves", "192.0.2.40", false),
        )
        .await;
    let node_b = id_of(&node_b);
    walk.by_admin("POST", "/api/v1/nodes", "node.create", node_b.clone())
        .await;
    let b = walk.panel.agent_client();
    b.authenticate(&walk.panel.enrol(&node_b).await).unwrap();
    walk.expect(
        "POST",
        "/api/v1/agent/enroll",
        &[
            (ADMIN, "node.join_token", node_b.clone()),
            ("agent:enrolment", "node.enroll", node_b.clone()),
        ],
    )
    .await;
    let endpoints = Some(alveole_model::AgentEndpoints {
        peer: Some("127.0.0.1:9".parse().unwrap()),
        ingress: Some("127.0.0.1:9".parse().unwrap()),
    });
    for client in [&a, &b] {
        let quiet = alveole_model::NodeReport {
            sites: vec![],
            events: vec![],
            endpoints,
            ..report.clone()
        };
        client.report(&quiet).await.unwrap();
    }
    walk.expect("POST", "/api/v1/agent/status", &[]).await;
    let b_actor = format!("node:{node_b}");
    Agents {
        a,
        b,
        a_credential,
        node_b,
        a_actor,
        b_actor,
    }
}

pub(super) async fn start_move(walk: &Walk<'_>, site: &str, to: &str) -> SiteMoveId {
    let path = format!("/api/v1/sites/{site}/move");
    let started = walk.act(&path, json!({"to_node": to}), 202).await;
    started["id"].as_str().unwrap().parse().unwrap()
}

pub(super) fn no_progress() -> alveole_model::MoveOutcome {
    alveole_model::MoveOutcome {
        progress: Default::default(),
        reason: Some("walk".into()),
    }
}

/// Site moves through the API: rolled back by the source, cancelled, switched and finished.
pub(super) async fn api_site_moves(walk: &mut Walk<'_>, made: &Made, agents: &Agents) {
    let site = &made.site;
    let rolled_back = start_move(walk, site, &agents.node_b).await;
    walk.by_admin(
        "POST",
        "/api/v1/sites/{id}/move",
        "site.move.start",
        site.clone(),
    )
    .await;
    let a = &agents.a;
    a.move_progress(rolled_back, &Default::default())
        .await
        .unwrap();
    walk.expect("POST", "/api/v1/agent/site-moves/{id}/progress", &[])
        .await;
    a.move_outcome(rolled_back, "fail", &no_progress())
        .await
        .unwrap();
    walk.expect(
        "POST",
        "/api/v1/agent/site-moves/{id}/fail",
        &[(&agents.a_actor, "site.move.fail", site.clone())],
    )
    .await;
    let cancelled = start_move(walk, site, &agents.node_b).await;
    walk.act(
        &format!("/api/v1/site-moves/{cancelled}/cancel"),
        json!({}),
        200,
    )
    .await;
    walk.expect(
        "POST",
        "/api/v1/site-moves/{id}/cancel",
        &[
            (ADMIN, "site.move.start", site.clone()),
            (ADMIN, "site.move.cancel", site.clone()),
        ],
    )
    .await;
    // Switched, its forwarding ended early; then back the same way.
    for (source, target, source_actor) in [
        (a, &agents.node_b, &agents.a_actor),
        (&agents.b, &made.node, &agents.b_actor),
    ] {
        let moved = start_move(walk, site, target).await;
        source
            .move_outcome(moved, "switch", &no_progress())
            .await
            .unwrap();
        walk.expect(
            "POST",
            "/api/v1/agent/site-moves/{id}/switch",
            &[
                (ADMIN, "site.move.start", site.clone()),
                (source_actor, "site.move.switch", site.clone()),
            ],
        )
        .await;
        walk.act(
            &format!("/api/v1/site-moves/{moved}/finish"),
            json!({}),
            200,
        )
        .await;
        walk.by_admin(
            "POST",
            "/api/v1/site-moves/{id}/finish",
            "site.move.finish",
            site.clone(),
        )
        .await;
    }
}

/// The site page's move forms; returns the signed-in browser.
pub(super) async fn page_site_moves(walk: &mut Walk<'_>, made: &Made, agents: &Agents) -> Browser {
    let (browser, _) = Browser::sign_in(walk.panel).await;
    let session = walk.next_target().await;
    walk.by_admin("POST", "/login", "session.create", session)
        .await;
    let site = &made.site;
    let site_key: alveole_model::SiteId = site.parse().unwrap();
    let store = walk.store.clone();
    let latest_move = async || store.site_moves(Some(site_key)).await.unwrap()[0].id;
    let move_form = [("to_node", agents.node_b.as_str())];
    browser
        .submit(&format!("/sites/{site}/move"), &move_form)
        .await;
    walk.by_admin("POST", "/sites/{id}/move", "site.move.start", site.clone())
        .await;
    browser
        .submit(&format!("/site-moves/{}/cancel", latest_move().await), &[])
        .await;
    walk.by_admin(
        "POST",
        "/site-moves/{id}/cancel",
        "site.move.cancel",
        site.clone(),
    )
    .await;
    browser
        .submit(&format!("/sites/{site}/move"), &move_form)
        .await;
    let moved = latest_move().await;
    agents
        .a
        .move_outcome(moved, "switch", &no_progress())
        .await
        .unwrap();
    browser
        .submit(&format!("/site-moves/{moved}/finish"), &[])
        .await;
    walk.expect(
        "POST",
        "/site-moves/{id}/finish",
        &[
            (ADMIN, "site.move.start", site.clone()),
            (&agents.a_actor, "site.move.switch", site.clone()),
            (ADMIN, "site.move.finish", site.clone()),
        ],
    )
    .await;
    // Back to the first node, for the rest of the walk.
    let back = start_move(walk, site, &made.node).await;
    agents
        .b
        .move_outcome(back, "switch", &no_progress())
        .await
        .unwrap();
    walk.expect(
        "POST",
        "/api/v1/agent/site-moves/{id}/switch",
        &[
            (ADMIN, "site.move.start", site.clone()),
            (&agents.b_actor, "site.move.switch", site.clone()),
        ],
    )
    .await;
    browser
}

/// Evacuations through the API (started, paused, resumed, cancelled) and their page's forms.
pub(super) async fn evacuations(walk: &mut Walk<'_>, agents: &Agents, browser: &Browser) {
    let node_b = &agents.node_b;
    let started = walk
        .act("/api/v1/evacuations", json!({"node_id": node_b}), 202)
        .await;
    let job = id_of(&started);
    walk.by_admin(
        "POST",
        "/api/v1/evacuations",
        "evacuation.start",
        job.clone(),
    )
    .await;
    for verb in ["pause", "resume", "cancel"] {
        walk.act(&format!("/api/v1/evacuations/{job}/{verb}"), json!({}), 200)
            .await;
        walk.by_admin(
            "POST",
            format!("/api/v1/evacuations/{{id}}/{verb}"),
            &format!("evacuation.{verb}"),
            job.clone(),
        )
        .await;
    }
    browser
        .submit(
            "/evacuations/start",
            &[("scope", &format!("node:{node_b}")), ("parallelism", "2")],
        )
        .await;
    let job = walk.store.evacuations().await.unwrap()[0].id.to_string();
    walk.by_admin(
        "POST",
        "/evacuations/start",
        "evacuation.start",
        job.clone(),
    )
    .await;
    browser
        .submit(&format!("/evacuations/{job}/cancel"), &[])
        .await;
    walk.by_admin("POST", "/evacuations/{id}/{verb}", "evacuation.cancel", job)
        .await;
}

/// Recoveries through the API and the page, each of a node of its own (with no site): the
/// job starts and fences the node in one transaction.
pub(super) async fn recoveries(walk: &mut Walk<'_>, browser: &Browser) {
    let provider = walk
        .create("/api/v1/providers", json!({"name": "Walk lost provider"}))
        .await;
    walk.pass_over(1); // provider.create
    let mut lost = Vec::new();
    for name in ["walk-lost-1", "walk-lost-2"] {
        let node = walk
            .create(
                "/api/v1/nodes",
                json!({"provider_id": provider["id"], "name": name, "public_addresses": [],
                       "capacity": {"cpu_millis": 1000, "memory_bytes": 1u64 << 30,
                                    "disk_bytes": 10u64 << 30}}),
            )
            .await;
        walk.pass_over(1); // node.create
        lost.push(id_of(&node));
    }
    let started = walk
        .act("/api/v1/recoveries", json!({"node_id": lost[0]}), 202)
        .await;
    walk.expect(
        "POST",
        "/api/v1/recoveries",
        &[
            (ADMIN, "recovery.start", id_of(&started)),
            (ADMIN, "node.fence", lost[0].clone()),
        ],
    )
    .await;
    browser
        .submit(
            "/evacuations/recover",
            &[
                ("scope", &format!("node:{}", lost[1])),
                ("parallelism", "2"),
                ("confirm", "lost"),
            ],
        )
        .await;
    let job = walk.store.evacuations().await.unwrap()[0].id.to_string();
    walk.expect(
        "POST",
        "/evacuations/recover",
        &[
            (ADMIN, "recovery.start", job),
            (ADMIN, "node.fence", lost[1].clone()),
        ],
    )
    .await;
}

/// An agent's certificate renewed, then revoked; a checkpoint signed.
pub(super) async fn agent_credentials_and_checkpoints(
    walk: &mut Walk<'_>,
    made: &Made,
    agents: &Agents,
) {
    let node = &made.node;
    agents
        .a
        .renew(&agents.a_credential.signing_request().unwrap())
        .await
        .unwrap();
    walk.expect(
        "POST",
        "/api/v1/agent/certificate",
        &[(&agents.a_actor, "node.certificate_renew", node.clone())],
    )
    .await;
    walk.delete(&format!("/api/v1/nodes/{node}/credential"))
        .await;
    walk.by_admin(
        "DELETE",
        "/api/v1/nodes/{id}/credential",
        "node.revoke",
        node.clone(),
    )
    .await;
    let checkpoint = walk.act("/api/v1/audit/checkpoints", json!({}), 201).await;
    let length = checkpoint["length"].as_u64().unwrap().to_string();
    walk.by_admin(
        "POST",
        "/api/v1/audit/checkpoints",
        "audit.checkpoint",
        length,
    )
    .await;
}
