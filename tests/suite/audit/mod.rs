//! The audit chain on both databases: concurrent writers never fork it, every kind of
//! tampering is found and named, checkpoints reveal truncation and rewrites, every route
//! records its events, and the API and pages show it all.

use alveole_audit::Link;
use alveole_store::{AuditVerification, ExportFilter, Store};
use alveole_tests::{TestDb, TestPanel};
use serde_json::json;

mod chain;
mod record;
mod walk;

/// A panel with `n` providers created through the API.
async fn panel_with_providers(db: &TestDb, n: usize) -> TestPanel {
    let panel = TestPanel::start(db).await;
    for i in 0..n {
        let (status, body) = panel
            .post(
                "/api/v1/providers",
                json!({"name": format!("Provider {i}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    panel
}

async fn verification(panel: &TestPanel) -> AuditVerification {
    alveole_store::verify_audit(panel.store.as_ref(), &[], None)
        .await
        .unwrap()
}

/// Every chained event, in order.
async fn links(store: &dyn Store) -> Vec<Link> {
    store
        .audit_records(&ExportFilter::default(), 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.link)
        .collect()
}

/// The actor the chained event at `index` was recorded with.
async fn actor_of(store: &dyn Store, index: u64) -> String {
    links(store)
        .await
        .into_iter()
        .find(|l| l.index == index)
        .and_then(|l| alveole_audit::chain::parse(&l.canonical))
        .map(|p| p.fields.actor)
        .expect("the event")
}

/// Adds `n` events (providers); returns the chain's length after them.
async fn panel_with_more_events(panel: &TestPanel, n: usize) -> u64 {
    for i in 0..n {
        let (status, body) = panel
            .post("/api/v1/providers", json!({"name": format!("More {i}")}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    panel.store.audit_head().await.unwrap().length
}

/// A signed-in browser without a browser: a session cookie and the session's CSRF token.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn sign_in(panel: &TestPanel) -> (Browser, u16) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login = http
            .post(format!("{}/login", panel.base))
            .form(&[("token", panel.token.as_str())])
            .send()
            .await
            .unwrap();
        let status = login.status().as_u16();
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = http
            .get(format!("{}/providers/new", panel.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = alveole_tests::csrf_of(&page);
        let browser = Browser {
            http,
            base: panel.base.clone(),
            cookie,
            csrf,
        };
        (browser, status)
    }

    /// Submits a form; returns the status and, for a redirect to a resource, its id.
    async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &self.csrf));
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        assert!(status < 400, "{path}: {status} {body}");
        (status, location)
    }
}
