//! Every state-changing route records exactly the events it should: a walk through the route
//! table, API and pages, one step per area, that fails when a new route has no case.

use std::collections::BTreeSet;
use std::sync::Arc;

use alveole_agent::agent::{Credential, PanelClient};
use alveole_agent::control::panel::Control;
use alveole_model::SiteMoveId;
use alveole_store::{ExportFilter, Store};
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Browser, verification};

/// An event the walk expects: (actor, action, target id).
type Event<'a> = (&'a str, &'a str, String);

const ADMIN: &str = "bootstrap-admin";

#[tokio::test]
async fn every_state_changing_route_records_its_events() {
    let db = TestDb::sqlite().await;
    let mut panel = TestPanel::start(&db).await;
    // Background tasks (jobs, checkpoints) would add their events whenever they run: none
    // run here.
    panel
        .configure(|config| config.background.run = false)
        .await;
    let mut walk = Walk::new(&panel).await;

    let made = api_resources(&mut walk).await;
    let agents = agents_enrol_and_report(&mut walk, &made).await;
    api_site_moves(&mut walk, &made, &agents).await;
    let browser = page_site_moves(&mut walk, &made, &agents).await;
    evacuations(&mut walk, &agents, &browser).await;
    agent_credentials_and_checkpoints(&mut walk, &made, &agents).await;
    api_tokens(&mut walk, &made).await;
    let other_node = api_addresses(&mut walk, &made).await;
    offboarding_and_deletions(&mut walk, &made, &agents, &other_node).await;

    let pages = page_resources(&mut walk).await;
    page_edits(&mut walk, &pages).await;
    page_addresses(&mut walk, &pages).await;
    page_deletions(&mut walk, &pages).await;
    break_glass(&mut walk, &pages.browser).await;

    // Every state-changing route of the table was walked: a new one without its case fails.
    let mutating: BTreeSet<(String, String)> = alveole_panel::routes::routes()
        .into_iter()
        .filter(|r| r.mutates)
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let missing: Vec<_> = mutating.difference(&walk.covered).collect();
    assert!(
        missing.is_empty(),
        "routes without an audit case: {missing:?}"
    );
    assert_eq!(
        walk.seen,
        walk.store.audit_head().await.unwrap().length,
        "no event beyond those expected"
    );
    assert!(verification(&panel).await.intact);
    db.drop_db().await;
}

/// The walk's ledger: the events it has seen so far and the routes it has exercised.
struct Walk<'p> {
    panel: &'p TestPanel,
    store: Arc<dyn Store>,
    seen: u64,
    covered: BTreeSet<(String, String)>,
}

impl<'p> Walk<'p> {
    async fn new(panel: &'p TestPanel) -> Walk<'p> {
        let store = panel.store.clone();
        let seen = store.audit_head().await.unwrap().length;
        Walk {
            panel,
            store,
            seen,
            covered: BTreeSet::new(),
        }
    }

    /// The events added since the last call are exactly `events`, in order; the call
    /// exercised `method route`.
    async fn expect(&mut self, method: &str, route: impl Into<String>, events: &[Event<'_>]) {
        let route = route.into();
        let added: Vec<(String, String, String)> = self
            .store
            .audit_records(&ExportFilter::default(), self.seen, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.event.actor, r.event.action, r.event.target_id))
            .collect();
        let wanted: Vec<(String, String, String)> = events
            .iter()
            .map(|(actor, action, target)| (actor.to_string(), action.to_string(), target.clone()))
            .collect();
        assert_eq!(added, wanted, "{method} {route}");
        self.seen += added.len() as u64;
        self.covered.insert((method.to_owned(), route));
    }

    /// Steps over `n` events a step does not check (another route's, checked elsewhere).
    fn pass_over(&mut self, n: u64) {
        self.seen += n;
    }

    /// The target of the next event not seen yet (a session's id, which only the panel knows).
    async fn next_target(&self) -> String {
        let next = self
            .store
            .audit_records(&ExportFilter::default(), self.seen, 1)
            .await
            .unwrap();
        assert_eq!(next.len(), 1, "an event after {}", self.seen);
        next[0].event.target_id.clone()
    }

    /// Creates through the API; returns the new record.
    async fn create(&self, path: &str, body: Value) -> Value {
        let (status, created) = self.panel.post(path, body).await;
        assert_eq!(status, 201, "{path}: {created}");
        created
    }

    /// Deletes through the API (204).
    async fn delete(&self, path: &str) {
        let (status, body) = self.panel.call(Method::DELETE, path, None).await;
        assert_eq!(status, 204, "{path}: {body}");
    }

    /// Posts an action through the API and checks its status.
    async fn act(&self, path: &str, body: Value, wanted: u16) -> Value {
        let (status, answer) = self.panel.post(path, body).await;
        assert_eq!(status, wanted, "{path}: {answer}");
        answer
    }
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().unwrap().to_owned()
}

fn node_body(provider: &str, name: &str, address: &str, small: bool) -> Value {
    let capacity = if small {
        json!({"cpu_millis": 1000, "memory_bytes": 1073741824u64, "disk_bytes": 10737418240u64})
    } else {
        json!({"cpu_millis": 8000, "memory_bytes": 17179869184u64, "disk_bytes": 536870912000u64})
    };
    json!({"provider_id": provider, "name": name, "public_addresses": [address], "capacity": capacity})
}

fn site_body(member: &str, domain: &str) -> Value {
    json!({"owner_id": member, "primary_domain": domain, "image": "registry.example.org/s:1"})
}

/// What the API steps made.
struct Made {
    provider: String,
    member: String,
    node: String,
    site: String,
}

/// Each resource created and changed through the API.
async fn api_resources(walk: &mut Walk<'_>) -> Made {
    let mut ids = Vec::new();
    for (plural, kind, body, change) in [
        (
            "providers",
            "provider",
            json!({"name": "Audit walk"}),
            json!({"notes": "changed"}),
        ),
        (
            "members",
            "member",
            json!({"display_name": "Walker", "email": "walker@example.org"}),
            json!({"display_name": "Walker Two"}),
        ),
    ] {
        let created = walk.create(&format!("/api/v1/{plural}"), body).await;
        let id = id_of(&created);
        walk.expect(
            "POST",
            format!("/api/v1/{plural}"),
            &[(ADMIN, &format!("{kind}.create"), id.clone())],
        )
        .await;
        let mut change = change;
        change["version"] = created["version"].clone();
        let (status, body) = walk
            .panel
            .call(
                Method::PATCH,
                &format!("/api/v1/{plural}/{id}"),
                Some(change),
            )
            .await;
        assert_eq!(status, 200, "{plural}: {body}");
        walk.expect(
            "PATCH",
            format!("/api/v1/{plural}/{{id}}"),
            &[(ADMIN, &format!("{kind}.update"), id.clone())],
        )
        .await;
        ids.push(id);
    }
    let (provider, member) = (ids[0].clone(), ids[1].clone());
    let node = walk
        .create(
            "/api/v1/nodes",
            node_body(&provider, "walk-1", "192.0.2.30", false),
        )
        .await;
    let node_id = id_of(&node);
    walk.expect(
        "POST",
        "/api/v1/nodes",
        &[(ADMIN, "node.create", node_id.clone())],
    )
    .await;
    let change = json!({"version": node["version"], "public_addresses": ["192.0.2.31"]});
    let path = format!("/api/v1/nodes/{node_id}");
    assert_eq!(
        walk.panel.call(Method::PATCH, &path, Some(change)).await.0,
        200
    );
    walk.expect(
        "PATCH",
        "/api/v1/nodes/{id}",
        &[(ADMIN, "node.update", node_id.clone())],
    )
    .await;
    let site = walk
        .create("/api/v1/sites", site_body(&member, "walk.example.org"))
        .await;
    let site_id = id_of(&site);
    walk.expect(
        "POST",
        "/api/v1/sites",
        &[(ADMIN, "site.create", site_id.clone())],
    )
    .await;
    let change = json!({"version": site["version"], "http_port": 8081});
    let path = format!("/api/v1/sites/{site_id}");
    assert_eq!(
        walk.panel.call(Method::PATCH, &path, Some(change)).await.0,
        200
    );
    walk.expect(
        "PATCH",
        "/api/v1/sites/{id}",
        &[(ADMIN, "site.update", site_id.clone())],
    )
    .await;
    Made {
        provider,
        member,
        node: node_id,
        site: site_id,
    }
}

/// Two nodes' agents: enrolled, reporting where other agents reach them.
struct Agents {
    a: PanelClient,
    b: PanelClient,
    a_credential: Credential,
    node_b: String,
    a_actor: String,
    b_actor: String,
}

/// Join tokens, enrolment and reports (a drift repaired and a site's phase are recorded).
async fn agents_enrol_and_report(walk: &mut Walk<'_>, made: &Made) -> Agents {
    let node = &made.node;
    walk.act(&format!("/api/v1/nodes/{node}/join-token"), json!({}), 201)
        .await;
    walk.expect(
        "POST",
        "/api/v1/nodes/{id}/join-token",
        &[(ADMIN, "node.join_token", node.clone())],
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
        }],
        inventory: None,
        addresses: None,
        endpoints: None,
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
    walk.expect(
        "POST",
        "/api/v1/nodes",
        &[(ADMIN, "node.create", node_b.clone())],
    )
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

async fn start_move(walk: &Walk<'_>, site: &str, to: &str) -> SiteMoveId {
    let path = format!("/api/v1/sites/{site}/move");
    let started = walk.act(&path, json!({"to_node": to}), 202).await;
    started["id"].as_str().unwrap().parse().unwrap()
}

fn no_progress() -> alveole_model::MoveOutcome {
    alveole_model::MoveOutcome {
        progress: Default::default(),
        reason: Some("walk".into()),
    }
}

/// Site moves through the API: rolled back by the source, cancelled, switched and finished.
async fn api_site_moves(walk: &mut Walk<'_>, made: &Made, agents: &Agents) {
    let site = &made.site;
    let rolled_back = start_move(walk, site, &agents.node_b).await;
    walk.expect(
        "POST",
        "/api/v1/sites/{id}/move",
        &[(ADMIN, "site.move.start", site.clone())],
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
        walk.expect(
            "POST",
            "/api/v1/site-moves/{id}/finish",
            &[(ADMIN, "site.move.finish", site.clone())],
        )
        .await;
    }
}

/// The site page's move forms; returns the signed-in browser.
async fn page_site_moves(walk: &mut Walk<'_>, made: &Made, agents: &Agents) -> Browser {
    let (browser, _) = Browser::sign_in(walk.panel).await;
    let session = walk.next_target().await;
    walk.expect("POST", "/login", &[(ADMIN, "session.create", session)])
        .await;
    let site = &made.site;
    let site_key: alveole_model::SiteId = site.parse().unwrap();
    let store = walk.store.clone();
    let latest_move = async || store.site_moves(Some(site_key)).await.unwrap()[0].id;
    let move_form = [("to_node", agents.node_b.as_str())];
    browser
        .submit(&format!("/sites/{site}/move"), &move_form)
        .await;
    walk.expect(
        "POST",
        "/sites/{id}/move",
        &[(ADMIN, "site.move.start", site.clone())],
    )
    .await;
    browser
        .submit(&format!("/site-moves/{}/cancel", latest_move().await), &[])
        .await;
    walk.expect(
        "POST",
        "/site-moves/{id}/cancel",
        &[(ADMIN, "site.move.cancel", site.clone())],
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
async fn evacuations(walk: &mut Walk<'_>, agents: &Agents, browser: &Browser) {
    let node_b = &agents.node_b;
    let started = walk
        .act("/api/v1/evacuations", json!({"node_id": node_b}), 202)
        .await;
    let job = id_of(&started);
    walk.expect(
        "POST",
        "/api/v1/evacuations",
        &[(ADMIN, "evacuation.start", job.clone())],
    )
    .await;
    for verb in ["pause", "resume", "cancel"] {
        walk.act(&format!("/api/v1/evacuations/{job}/{verb}"), json!({}), 200)
            .await;
        walk.expect(
            "POST",
            format!("/api/v1/evacuations/{{id}}/{verb}"),
            &[(ADMIN, &format!("evacuation.{verb}"), job.clone())],
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
    walk.expect(
        "POST",
        "/evacuations/start",
        &[(ADMIN, "evacuation.start", job.clone())],
    )
    .await;
    browser
        .submit(&format!("/evacuations/{job}/cancel"), &[])
        .await;
    walk.expect(
        "POST",
        "/evacuations/{id}/{verb}",
        &[(ADMIN, "evacuation.cancel", job)],
    )
    .await;
}

/// An agent's certificate renewed, then revoked; a checkpoint signed.
async fn agent_credentials_and_checkpoints(walk: &mut Walk<'_>, made: &Made, agents: &Agents) {
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
    walk.expect(
        "DELETE",
        "/api/v1/nodes/{id}/credential",
        &[(ADMIN, "node.revoke", node.clone())],
    )
    .await;
    let checkpoint = walk.act("/api/v1/audit/checkpoints", json!({}), 201).await;
    let length = checkpoint["length"].as_u64().unwrap().to_string();
    walk.expect(
        "POST",
        "/api/v1/audit/checkpoints",
        &[(ADMIN, "audit.checkpoint", length)],
    )
    .await;
}

/// A member's API token, made and revoked.
async fn api_tokens(walk: &mut Walk<'_>, made: &Made) {
    let token = walk
        .create(
            &format!("/api/v1/members/{}/tokens", made.member),
            json!({"name": "walk", "scope": "read"}),
        )
        .await;
    let token_id = id_of(&token);
    walk.expect(
        "POST",
        "/api/v1/members/{id}/tokens",
        &[(ADMIN, "api_token.create", token_id.clone())],
    )
    .await;
    walk.delete(&format!("/api/v1/tokens/{token_id}")).await;
    walk.expect(
        "DELETE",
        "/api/v1/tokens/{id}",
        &[(ADMIN, "api_token.revoke", token_id)],
    )
    .await;
}

/// Pools and allocations through the API, an address moved (forced, then started and
/// cancelled); returns the node the address moved to.
async fn api_addresses(walk: &mut Walk<'_>, made: &Made) -> String {
    let body = json!({"provider_id": made.provider, "prefix": "198.51.100.0/28"});
    let pool_id = id_of(&walk.create("/api/v1/ip-pools", body).await);
    walk.expect(
        "POST",
        "/api/v1/ip-pools",
        &[(ADMIN, "ip_pool.create", pool_id.clone())],
    )
    .await;
    let allocations = format!("/api/v1/ip-pools/{pool_id}/allocations");
    let body = json!({"node_id": made.node, "site_id": made.site});
    walk.create(&allocations, body).await;
    let first = "198.51.100.1".to_owned();
    walk.expect(
        "POST",
        "/api/v1/ip-pools/{id}/allocations",
        &[(ADMIN, "ip.allocate", first.clone())],
    )
    .await;
    walk.delete(&format!("/api/v1/ip-allocations/{first}"))
        .await;
    walk.expect(
        "DELETE",
        "/api/v1/ip-allocations/{address}",
        &[(ADMIN, "ip.release", first)],
    )
    .await;

    let address = "198.51.100.2".to_owned();
    let body = json!({"node_id": made.node, "address": address});
    walk.create(&allocations, body).await;
    walk.expect(
        "POST",
        "/api/v1/ip-pools/{id}/allocations",
        &[(ADMIN, "ip.allocate", address.clone())],
    )
    .await;
    let other = walk
        .create(
            "/api/v1/nodes",
            node_body(&made.provider, "walk-2", "192.0.2.31", true),
        )
        .await;
    let other_node = id_of(&other);
    walk.expect(
        "POST",
        "/api/v1/nodes",
        &[(ADMIN, "node.create", other_node.clone())],
    )
    .await;
    let move_path = format!("/api/v1/ip-allocations/{address}/move");
    let forced = json!({"to_node": other_node, "force": true});
    walk.act(&move_path, forced, 202).await;
    walk.expect(
        "POST",
        "/api/v1/ip-allocations/{address}/move",
        &[
            (ADMIN, "ip.move.start", address.clone()),
            (ADMIN, "ip.move.complete", address.clone()),
        ],
    )
    .await;
    walk.act(&move_path, json!({"to_node": made.node}), 202)
        .await;
    walk.expect(
        "POST",
        "/api/v1/ip-allocations/{address}/move",
        &[(ADMIN, "ip.move.start", address.clone())],
    )
    .await;
    walk.delete(&move_path).await;
    walk.expect(
        "DELETE",
        "/api/v1/ip-allocations/{address}/move",
        &[(ADMIN, "ip.move.cancel", address.clone())],
    )
    .await;
    walk.delete(&format!("/api/v1/ip-allocations/{address}"))
        .await;
    walk.expect(
        "DELETE",
        "/api/v1/ip-allocations/{address}",
        &[(ADMIN, "ip.release", address)],
    )
    .await;
    walk.delete(&format!("/api/v1/ip-pools/{pool_id}")).await;
    walk.expect(
        "DELETE",
        "/api/v1/ip-pools/{id}",
        &[(ADMIN, "ip_pool.delete", pool_id)],
    )
    .await;
    other_node
}

/// A member disabled, a site purged, then everything the API steps made deleted.
async fn offboarding_and_deletions(
    walk: &mut Walk<'_>,
    made: &Made,
    agents: &Agents,
    other_node: &str,
) {
    let leaver = walk
        .create(
            "/api/v1/members",
            json!({"display_name": "Leaver", "email": "leaver@example.org"}),
        )
        .await;
    walk.pass_over(1); // its creation
    let leaver = id_of(&leaver);
    walk.act(&format!("/api/v1/members/{leaver}/disable"), json!({}), 204)
        .await;
    walk.expect(
        "POST",
        "/api/v1/members/{id}/disable",
        &[(ADMIN, "member.disable", leaver)],
    )
    .await;

    let purged = walk
        .create(
            "/api/v1/sites",
            site_body(&made.member, "purge.example.org"),
        )
        .await;
    walk.pass_over(1);
    let purged = id_of(&purged);
    walk.act(&format!("/api/v1/sites/{purged}/purge"), json!({}), 204)
        .await;
    walk.expect(
        "POST",
        "/api/v1/sites/{id}/purge",
        &[(ADMIN, "site.purge", purged)],
    )
    .await;
    for (plural, kind, id) in [
        ("sites", "site", &made.site),
        ("nodes", "node", &made.node),
        ("nodes", "node", &other_node.to_owned()),
        ("nodes", "node", &agents.node_b),
        ("members", "member", &made.member),
        ("providers", "provider", &made.provider),
    ] {
        walk.delete(&format!("/api/v1/{plural}/{id}")).await;
        walk.expect(
            "DELETE",
            format!("/api/v1/{plural}/{{id}}"),
            &[(ADMIN, &format!("{kind}.delete"), id.clone())],
        )
        .await;
    }
}

/// What the page steps made, and the browser they made it with.
struct PageMade {
    browser: Browser,
    session: String,
    provider: String,
    member: String,
    node: String,
    site: String,
}

fn node_form(provider: &str, name: &str) -> Vec<(&'static str, String)> {
    [
        ("name", name),
        ("provider_id", provider),
        ("public_addresses", "192.0.2.40"),
        ("capacity.cpu_millis", "8"),
        ("capacity.memory_bytes", "17179869184"),
        ("capacity.disk_bytes", "536870912000"),
        ("overcommit.cpu", "1"),
        ("overcommit.memory", "1"),
    ]
    .map(|(field, value)| (field, value.to_owned()))
    .to_vec()
}

fn site_form(member: &str, domain: &str) -> Vec<(&'static str, String)> {
    [
        ("primary_domain", domain),
        ("owner_id", member),
        ("image", "registry.example.org/s:1"),
        ("http_port", "8080"),
        ("limits.cpu_millis", "0.5"),
        ("limits.memory_bytes", "268435456"),
        ("limits.pids", "64"),
        ("volume.quota_bytes", "1073741824"),
        ("volume.mount_path", "/data"),
        ("phase", "running"),
    ]
    .map(|(field, value)| (field, value.to_owned()))
    .to_vec()
}

fn borrowed<'f>(form: &'f [(&'static str, String)]) -> Vec<(&'static str, &'f str)> {
    form.iter()
        .map(|(field, value)| (*field, value.as_str()))
        .collect()
}

/// Signing in, then one of each resource created through the pages' forms.
async fn page_resources(walk: &mut Walk<'_>) -> PageMade {
    let (browser, status) = Browser::sign_in(walk.panel).await;
    assert_eq!(status, 303);
    let session = walk.next_target().await;
    walk.expect(
        "POST",
        "/login",
        &[(ADMIN, "session.create", session.clone())],
    )
    .await;
    let (_, provider) = browser
        .submit("/providers/new", &[("name", "Page walk")])
        .await;
    walk.expect(
        "POST",
        "/providers/new",
        &[(ADMIN, "provider.create", provider.clone())],
    )
    .await;
    let member_form = [
        ("display_name", "Page walker"),
        ("email", "pw@example.org"),
        ("role", "member"),
    ];
    let (_, member) = browser.submit("/members/new", &member_form).await;
    walk.expect(
        "POST",
        "/members/new",
        &[(ADMIN, "member.create", member.clone())],
    )
    .await;
    let form = node_form(&provider, "page-1");
    let (_, node) = browser.submit("/nodes/new", &borrowed(&form)).await;
    walk.expect(
        "POST",
        "/nodes/new",
        &[(ADMIN, "node.create", node.clone())],
    )
    .await;
    let form = site_form(&member, "page.example.org");
    let (_, site) = browser.submit("/sites/new", &borrowed(&form)).await;
    walk.expect(
        "POST",
        "/sites/new",
        &[(ADMIN, "site.create", site.clone())],
    )
    .await;
    PageMade {
        browser,
        session,
        provider,
        member,
        node,
        site,
    }
}

/// Each resource's edit form, and a node's join token from its page.
async fn page_edits(walk: &mut Walk<'_>, made: &PageMade) {
    // A site changes node by a move, not by an edit: the edit names the node it is on.
    let placed_on = walk
        .panel
        .get(&format!("/api/v1/sites/{}", made.site))
        .await
        .1["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut site = site_form(&made.member, "page2.example.org");
    site.push(("node_id", placed_on));
    let member = [
        ("display_name", "Page walker 2"),
        ("email", "pw@example.org"),
        ("role", "member"),
    ]
    .map(|(field, value)| (field, value.to_owned()))
    .to_vec();
    for (plural, kind, id, mut form) in [
        (
            "providers",
            "provider",
            &made.provider,
            vec![("name", "Page walk 2".to_owned())],
        ),
        ("members", "member", &made.member, member),
        (
            "nodes",
            "node",
            &made.node,
            node_form(&made.provider, "page-2"),
        ),
        ("sites", "site", &made.site, site),
    ] {
        form.push(("version", "1".to_owned()));
        made.browser
            .submit(&format!("/{plural}/{id}/edit"), &borrowed(&form))
            .await;
        walk.expect(
            "POST",
            format!("/{plural}/{{id}}/edit"),
            &[(ADMIN, &format!("{kind}.update"), id.clone())],
        )
        .await;
    }
    made.browser
        .submit(&format!("/nodes/{}/join-token", made.node), &[])
        .await;
    walk.expect(
        "POST",
        "/nodes/{id}/join-token",
        &[(ADMIN, "node.join_token", made.node.clone())],
    )
    .await;
}

/// The addresses page's forms: a pool, an allocation, a move started and cancelled, a release.
async fn page_addresses(walk: &mut Walk<'_>, made: &PageMade) {
    let browser = &made.browser;
    let pool_form = [
        ("provider_id", made.provider.as_str()),
        ("prefix", "198.51.100.16/28"),
    ];
    browser.submit("/addresses/pools", &pool_form).await;
    let pool_id = walk.store.ip_pools().await.unwrap()[0].0.id.to_string();
    walk.expect(
        "POST",
        "/addresses/pools",
        &[(ADMIN, "ip_pool.create", pool_id.clone())],
    )
    .await;
    let allocation = [("pool_id", pool_id.as_str()), ("node_id", &made.node)];
    browser.submit("/addresses/allocations", &allocation).await;
    let address = "198.51.100.17".to_owned();
    walk.expect(
        "POST",
        "/addresses/allocations",
        &[(ADMIN, "ip.allocate", address.clone())],
    )
    .await;
    let spare = walk
        .create(
            "/api/v1/nodes",
            node_body(&made.provider, "page-spare", "192.0.2.32", true),
        )
        .await;
    let spare = id_of(&spare);
    walk.expect(
        "POST",
        "/api/v1/nodes",
        &[(ADMIN, "node.create", spare.clone())],
    )
    .await;
    let allocation = format!("/addresses/allocations/{address}");
    browser
        .submit(&format!("{allocation}/move"), &[("to_node", &spare)])
        .await;
    walk.expect(
        "POST",
        "/addresses/allocations/{address}/move",
        &[(ADMIN, "ip.move.start", address.clone())],
    )
    .await;
    browser
        .submit(&format!("{allocation}/cancel-move"), &[])
        .await;
    walk.expect(
        "POST",
        "/addresses/allocations/{address}/cancel-move",
        &[(ADMIN, "ip.move.cancel", address.clone())],
    )
    .await;
    walk.delete(&format!("/api/v1/nodes/{spare}")).await;
    walk.expect(
        "DELETE",
        "/api/v1/nodes/{id}",
        &[(ADMIN, "node.delete", spare)],
    )
    .await;
    browser.submit(&format!("{allocation}/release"), &[]).await;
    walk.expect(
        "POST",
        "/addresses/allocations/{address}/release",
        &[(ADMIN, "ip.release", address)],
    )
    .await;
    // The provider can go afterwards.
    walk.delete(&format!("/api/v1/ip-pools/{pool_id}")).await;
    walk.expect(
        "DELETE",
        "/api/v1/ip-pools/{id}",
        &[(ADMIN, "ip_pool.delete", pool_id)],
    )
    .await;
}

/// A checkpoint signed from the audit page, each resource deleted from its page, signing out.
async fn page_deletions(walk: &mut Walk<'_>, made: &PageMade) {
    let head = walk.store.audit_head().await.unwrap().length;
    made.browser.submit("/audit/checkpoints", &[]).await;
    walk.expect(
        "POST",
        "/audit/checkpoints",
        &[(ADMIN, "audit.checkpoint", head.to_string())],
    )
    .await;
    for (plural, kind, id) in [
        ("sites", "site", &made.site),
        ("nodes", "node", &made.node),
        ("members", "member", &made.member),
        ("providers", "provider", &made.provider),
    ] {
        made.browser
            .submit(&format!("/{plural}/{id}/delete"), &[("version", "2")])
            .await;
        walk.expect(
            "POST",
            format!("/{plural}/{{id}}/delete"),
            &[(ADMIN, &format!("{kind}.delete"), id.clone())],
        )
        .await;
    }
    made.browser.submit("/logout", &[]).await;
    walk.expect(
        "POST",
        "/logout",
        &[(ADMIN, "session.delete", made.session.clone())],
    )
    .await;
}

/// Break-glass: issued on the panel's host, used in a browser.
async fn break_glass(walk: &mut Walk<'_>, browser: &Browser) {
    let link = alveole_panel::auth::issue_break_glass(
        walk.store.as_ref(),
        &walk.panel.base,
        chrono::Duration::minutes(10),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let prefix = |secret: &str| -> String {
        alveole_panel::auth::hash_token(secret)
            .chars()
            .take(12)
            .collect()
    };
    walk.pass_over(1); // its issue: ("system:admin-cli", "break_glass.issue")
    let used = browser
        .http
        .post(format!("{}/break-glass", walk.panel.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 303);
    let session = used.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    let glass = alveole_panel::auth::BREAK_GLASS_ACTOR;
    walk.expect(
        "POST",
        "/break-glass",
        &[
            (glass, "break_glass.use", prefix(&token)),
            (glass, "session.create", prefix(&session)),
        ],
    )
    .await;
}
