//! The audit record, its checkpoints and keys, and the platform inventory: API and pages.

use alveole_store::{AuditVerification, Checkpoint, PublishedKey};

use super::{Access, Get, Post, Table};
use crate::api::audit::{self, EventPage};
use crate::inventory::Inventory;
use crate::pages;

/// The filters shared by the audit list, exports and report.
const AUDIT_FILTERS: [(&str, &str); 6] = [
    (
        "from",
        "from this day (2026-11-01) or instant (RFC 3339), included",
    ),
    ("to", "up to this day or instant, excluded"),
    ("actor", "who acted (bootstrap-admin, node:ID, system:...)"),
    ("action", "what was done (site.create, node.revoke, ...)"),
    (
        "target_kind",
        "what kind of thing it was done to (site, node, ...)",
    ),
    ("target_id", "which one"),
];

pub(super) fn api(t: &mut Table) {
    t.api(Get, "/api/v1/inventory", audit::inventory)
        .named(
            "get_inventory",
            "The platform inventory: providers, nodes and their software, sites per node, licences",
        )
        .access(Access::Read)
        .returns::<Inventory>(200)
        .errors(&[401]);
    let mut events_query = AUDIT_FILTERS.to_vec();
    events_query.push(("after", "the chain position after which to list"));
    events_query.push((
        "limit",
        "at most this many events (1 to 1000, 100 by default)",
    ));
    t.api(Get, "/api/v1/audit/events", audit::events)
        .named("list_audit_events", "Audit events in chain order, filtered")
        .access(Access::Owner)
        .query(&events_query)
        .returns::<EventPage>(200)
        .errors(&[400, 401]);
    let mut export_query = AUDIT_FILTERS.to_vec();
    export_query.push((
        "format",
        "jsonl (verifiable on its own with `alveole audit verify --export`) or csv",
    ));
    t.api(Get, "/api/v1/audit/export", audit::export)
        .named(
            "export_audit",
            "The audit record for the board, as JSON Lines or CSV",
        )
        .access(Access::Owner)
        .query(&export_query)
        .status(200)
        .errors(&[400, 401]);
    t.api(Get, "/api/v1/audit/verify", audit::verify)
        .named(
            "verify_audit",
            "Checks the whole audit chain, its columns and its checkpoints",
        )
        .access(Access::Read)
        .returns::<AuditVerification>(200)
        .errors(&[401]);
    t.api(Get, "/api/v1/audit/checkpoints", audit::checkpoints)
        .named(
            "list_audit_checkpoints",
            "The newest signed checkpoints of the audit chain",
        )
        .access(Access::Read)
        .returns::<Vec<Checkpoint>>(200)
        .errors(&[401]);
    t.api(Post, "/api/v1/audit/checkpoints", audit::create_checkpoint)
        .named(
            "create_audit_checkpoint",
            "Signs a checkpoint of the audit chain now",
        )
        .returns::<Checkpoint>(201)
        .errors(&[401, 403, 503]);
    t.api(
        Get,
        "/api/v1/audit/checkpoints/latest",
        audit::latest_checkpoint,
    )
    .named(
        "latest_audit_checkpoint",
        "The newest signed checkpoint (public: keep copies of it elsewhere)",
    )
    .access(Access::Public)
    .returns::<Checkpoint>(200)
    .errors(&[404]);
    t.api(Get, "/api/v1/audit/keys", audit::keys)
        .named(
            "list_audit_keys",
            "The public keys that sign checkpoints, current and retired (public)",
        )
        .access(Access::Public)
        .returns::<Vec<PublishedKey>>(200);
}

pub(super) fn pages(t: &mut Table) {
    use pages::audit as page;
    t.page(Get, "/audit", page::record)
        .named("page_audit", "")
        .access(Access::Read);
    t.page(Get, "/audit/report", page::report)
        .named("page_audit_report", "")
        .access(Access::Read);
    t.page(Post, "/audit/checkpoints", page::sign_checkpoint)
        .named("page_audit_sign_checkpoint", "");
    t.page(Get, "/inventory", page::inventory)
        .named("page_inventory", "")
        .access(Access::Read);
}
