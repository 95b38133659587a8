//! The platform's dashboard: counts, sites by phase, each node's load and state, whether
//! each provider could be left within the notice period, and the backups' worst window,
//! slowest restore and alerts. A member's home is their sites
//! instead.

use alveole_model::evacuation::duration_text;
use alveole_model::quantity::format_bytes;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::{error_page, render};
use crate::AppState;
use crate::auth::Caller;

pub async fn dashboard(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    // The dashboard is the platform's: a member's home is their sites.
    if caller.limited_to().is_some() {
        return Redirect::to("/sites").into_response();
    }
    let store = state.store();
    let (counts, usage, statuses) =
        match tokio::try_join!(store.counts(), store.node_usage(), store.node_statuses()) {
            Ok(all) => all,
            Err(error) => return error_page(&state, &headers, Some(&caller), error.into()),
        };
    let now = state.service().now();
    let percent = |used: u64, total: f64| {
        if total > 0.0 {
            ((used as f64 / total) * 100.0).round() as u64
        } else {
            0
        }
    };
    let nodes: Vec<Value> = usage
        .iter()
        .map(|u| {
            let l = &u.load;
            let cpu_total = f64::from(l.capacity.cpu_millis) * l.overcommit.cpu;
            let mem_total = l.capacity.memory_bytes as f64 * l.overcommit.memory;
            json!({
                "id": l.node_id.to_string(),
                "name": u.name.as_str(),
                "sites": u.sites,
                "cpu_percent": percent(l.reserved.cpu_millis, cpu_total),
                "memory_percent": percent(l.reserved.memory_bytes, mem_total),
                "disk_percent": percent(l.reserved.disk_bytes, l.capacity.disk_bytes as f64),
                "memory": format!("{} / {}", format_bytes(l.reserved.memory_bytes), format_bytes(mem_total as u64)),
                "state_key": node_state_key(&statuses, l.node_id, now, state.config().node_unreachable_after),
                "last_seen": statuses.iter().find(|s| s.node_id == l.node_id).map(|s| s.reported_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            })
        })
        .collect();
    let phases: Vec<Value> = counts
        .sites_by_phase
        .iter()
        .map(|(p, n)| json!({"phase": p.as_str(), "label_key": format!("phase.{}", p.as_str()), "count": n}))
        .collect();
    // Exit readiness: how long leaving each provider would take now, against the notice.
    let readiness = match state.service().exit_readiness().await {
        Ok(readiness) => readiness,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let exits: Vec<Value> = readiness
        .providers
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "ready": p.ready,
                "sites": p.sites,
                "nodes": p.nodes,
                "takes": duration_text(p.estimated_seconds as f64),
                "statement": p.statement,
                "blockers": p.blockers,
                "basis": p.basis,
            })
        })
        .collect();
    // Backups: the co-op's worst data-loss window, its slowest restore, the sites alerted.
    let (proofs, alerts) = match tokio::try_join!(state.service().site_proofs(None), async {
        Ok(store.backup_alerts(None).await?)
    }) {
        Ok(both) => both,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let (worst, slowest) = crate::service::drills::worst(&proofs);
    let mut alerted: Vec<alveole_model::SiteId> = alerts.iter().map(|a| a.site_id).collect();
    alerted.dedup();
    let backups = json!({
        "any": !proofs.is_empty(),
        "worst_window": worst.and_then(|p| p.window_seconds).map(|s| duration_text(s as f64)),
        "worst_site": worst.map(|p| p.site_id),
        "slowest_restore": slowest.and_then(|p| p.restore_seconds).map(duration_text),
        "slowest_site": slowest.map(|p| p.site_id),
        "alerted": alerted,
    });
    let mut context = tera::Context::new();
    context.insert("backups", &backups);
    context.insert("exits", &exits);
    context.insert("notice", &duration_text(readiness.notice_seconds as f64));
    context.insert("counts", &counts);
    context.insert("phases", &phases);
    context.insert("nodes", &nodes);
    render(&state, &headers, Some(&caller), "dashboard.html", context)
}

/// `node.reachable`, `node.unreachable` or `node.never_seen`, for the dashboard.
fn node_state_key(
    statuses: &[alveole_store::NodeStatus],
    node: alveole_model::NodeId,
    now: chrono::DateTime<chrono::Utc>,
    after: std::time::Duration,
) -> &'static str {
    match statuses.iter().find(|s| s.node_id == node) {
        None => "node.never_seen",
        Some(s) if crate::service::agents::reachable(Some(s.reported_at), now, after) => {
            "node.reachable"
        }
        Some(_) => "node.unreachable",
    }
}
