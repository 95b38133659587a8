//! Every state-changing route records exactly the events it should: a walk through the route
//! table, API and pages, one step per area, that fails when a new route has no case.

use std::collections::BTreeSet;
use std::sync::Arc;

use alveole_store::{ExportFilter, Store};
use alveole_tests::{TestDb, TestPanel};
use reqwest::Method;
use serde_json::{Value, json};

use super::verification;
use agents::{
    agent_credentials_and_checkpoints, agents_enrol_and_report, api_site_moves, evacuations,
    page_site_moves, recoveries,
};
use api::{api_addresses, api_resources, api_tokens, offboarding_and_deletions};
use pages::{break_glass, page_addresses, page_deletions, page_edits, page_resources};

mod agents;
mod api;
mod backups;
mod certificates;
mod databases;
mod pages;

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
    recoveries(&mut walk, &browser).await;
    agent_credentials_and_checkpoints(&mut walk, &made, &agents).await;
    api_tokens(&mut walk, &made).await;
    backups::api_backups(&mut walk, &made).await;
    certificates::api_certificates(&mut walk, &made).await;
    databases::api_databases(&mut walk, &made).await;
    let other_node = api_addresses(&mut walk, &made).await;
    offboarding_and_deletions(&mut walk, &made, &agents, &other_node).await;

    let pages = page_resources(&mut walk).await;
    page_edits(&mut walk, &pages).await;
    backups::page_backups(&mut walk, &pages).await;
    certificates::page_certificates(&mut walk, &pages).await;
    databases::page_databases(&mut walk, &pages).await;
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

    /// The call added one event, by the bootstrap admin.
    async fn by_admin(
        &mut self,
        method: &str,
        route: impl Into<String>,
        action: &str,
        target: impl Into<String>,
    ) {
        self.expect(method, route, &[(ADMIN, action, target.into())])
            .await;
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
