//! Backups on the pages: the targets (a resource of admins'), and on a site's page its
//! backups (newest snapshot per target, data-loss window, restore time and sizes plotted,
//! alerts, latest runs), a "back up now" and a "drill now" button, restores and drills with
//! their progress.

use std::collections::BTreeMap;

use alveole_model::backup::RestoreInput;
use alveole_model::quantity::format_bytes;
use alveole_model::{BackupTarget, Site, SiteId, TargetKind};
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::error_page;
use super::form::{Field, Kind, Options};
use super::resources::PageResource;
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::plots::Plot;
use crate::service::backups::{size_series, window_series};
use crate::service::drills::restore_series;

impl PageResource for BackupTarget {
    const COLUMNS: &'static [&'static str] = &["name", "kind", "where"];
    const FIELDS: &'static [Field] = &[
        Field {
            name: "name",
            kind: Kind::Text,
        },
        Field {
            name: "node_id",
            kind: Kind::Select(Options::Nodes),
        },
        Field {
            name: "url",
            kind: Kind::Text,
        },
        Field {
            name: "provider_id",
            kind: Kind::Select(Options::ProvidersOrNone),
        },
    ];
    fn cells(t: &BackupTarget) -> Vec<String> {
        let (kind, place) = match &t.kind {
            TargetKind::Vault { node_id } => ("vault", node_id.to_string()),
            TargetKind::Rest { url, .. } => ("rest", url.clone()),
        };
        vec![t.name.to_string(), kind.to_owned(), place]
    }
    fn title(t: &BackupTarget) -> String {
        t.name.to_string()
    }
    fn blank_input() -> Value {
        json!({})
    }
}

/// The site page's backups section.
pub async fn section(
    state: &AppState,
    caller: &Caller,
    site: &Site,
) -> Result<Option<Value>, ApiError> {
    let backups = state
        .service()
        .site_backups(caller.limited_to(), site.id)
        .await?;
    let now = state.service().now();
    let since = now - chrono::Duration::hours(48);
    let window_plot = plot(
        state,
        window_series(site.id),
        "window",
        since,
        now,
        &|seconds| alveole_model::evacuation::duration_text(seconds),
    )
    .await?;
    let size_plot = plot(state, size_series(site.id), "size", since, now, &|bytes| {
        format_bytes(bytes.max(0.0) as u64)
    })
    .await?;
    // Drills are weekly: their plot spans the 8 days the series keeps.
    let restore_plot = plot(
        state,
        restore_series(site.id),
        "restore",
        now - chrono::Duration::days(8),
        now,
        &|seconds| alveole_model::evacuation::duration_text(seconds),
    )
    .await?;
    let drills: Vec<Value> = backups
        .drills
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "state": d.state.as_str(),
                "phase": d.phase.as_str(),
                "at": d.requested_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                "target": backups.targets.iter().find(|t| t.target_id == d.target_id).map(|t| t.name.clone()),
                "snapshot": d.snapshot_id,
                "files": d.files_verified,
                "restore": d.restore_ms.map(|ms| alveole_model::evacuation::duration_text(ms as f64 / 1000.0)),
                "error": d.error,
            })
        })
        .collect();
    let alerts: Vec<Value> = backups
        .alerts
        .iter()
        .map(|a| {
            json!({
                "kind": a.kind,
                "reason": a.reason,
                "since": a.since.format("%Y-%m-%d %H:%M UTC").to_string(),
            })
        })
        .collect();
    let targets: Vec<Value> = backups
        .targets
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "target_id": t.target_id,
                "snapshot": t.newest.as_ref().and_then(|r| r.snapshot_id.clone()),
                "at": t.newest.as_ref().map(|r| r.started_at.format("%Y-%m-%d %H:%M UTC").to_string()),
                "size": t.newest.as_ref().map(|r| format_bytes(r.bytes_total)),
            })
        })
        .collect();
    let runs: Vec<Value> = backups
        .runs
        .iter()
        .map(|r| {
            json!({
                "at": r.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                "target": backups.targets.iter().find(|t| t.target_id == r.target_id).map(|t| t.name.clone()),
                "snapshot": r.snapshot_id,
                "added": format_bytes(r.bytes_added),
                "size": format_bytes(r.bytes_total),
                "seconds": format!("{:.1}", r.duration_ms as f64 / 1000.0),
                "error": r.error,
            })
        })
        .collect();
    let restores: Vec<Value> = backups
        .restores
        .iter()
        .map(|r| {
            let percent = if r.bytes_total > 0 {
                (r.bytes_done as f64 / r.bytes_total as f64 * 100.0).min(100.0) as u64
            } else {
                0
            };
            json!({
                "id": r.id,
                "state": r.state.as_str(),
                "at": r.requested_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                "from": r.source_site_id,
                "snapshot": r.snapshot_id.clone().or(r.snapshot.clone()),
                "paths": r.paths.join(", "),
                "percent": percent,
                "done": format_bytes(r.bytes_done),
                "total": format_bytes(r.bytes_total),
                "error": r.error,
            })
        })
        .collect();
    Ok(Some(json!({
        "on": site.backup.is_on(),
        "targets": targets,
        "window": backups.window_seconds.map(|s| alveole_model::evacuation::duration_text(s as f64)),
        "proven_at": backups.proven_at.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
        "newest": backups.newest_snapshot_seconds.map(|s| alveole_model::evacuation::duration_text(s as f64)),
        "restore_time": backups.restore_seconds.map(alveole_model::evacuation::duration_text),
        "restore_plot": restore_plot,
        "alerts": alerts,
        "drills": drills,
        "drilling": backups.drills.iter().any(|d| d.state == alveole_model::backup::DrillState::Running),
        "requested_at": backups.requested_at.map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        "window_plot": window_plot,
        "size_plot": size_plot,
        "runs": runs,
        "restores": restores,
        "restoring": backups.restores.iter().any(|r| r.state == alveole_model::backup::RestoreState::Running),
    })))
}

/// A series drawn from `since` to `now` (nothing when the name cannot be made).
pub(super) async fn plot(
    state: &AppState,
    series: Option<alveole_model::series::SeriesName>,
    title: &str,
    since: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    format: &(dyn Fn(f64) -> String + Sync),
) -> Result<String, ApiError> {
    let Some(series) = series else {
        return Ok(String::new());
    };
    let points: Vec<_> = state
        .store()
        .points(&series, since)
        .await?
        .into_iter()
        .map(|(_, point)| point)
        .collect();
    Ok(Plot {
        title,
        format,
        from: since,
        to: now,
    }
    .render(&points))
}

/// "Back up now", then back to the site's page.
pub async fn back_up_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let ctx = audit_context(&caller, &headers);
        state
            .service()
            .request_backup(&ctx, caller.limited_to(), site)
            .await?;
        Ok::<_, ApiError>(site)
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}

/// "Drill now", then back to the site's page.
pub async fn drill_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let ctx = audit_context(&caller, &headers);
        state
            .service()
            .start_drill(&ctx, caller.limited_to(), site)
            .await?;
        Ok::<_, ApiError>(site)
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}

/// The restore form: a target, a snapshot (newest when empty), paths (one per line; the
/// whole site when empty), and the site to restore into (itself when empty).
pub async fn restore(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let text = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let input = RestoreInput {
            target_id: text("target_id").map(parse_id).transpose()?,
            snapshot: text("snapshot").map(str::to_owned),
            paths: text("paths")
                .map(|p| {
                    p.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            into_site_id: text("into_site_id").map(parse_id).transpose()?,
        };
        let ctx = audit_context(&caller, &headers);
        let restore = state
            .service()
            .start_restore(&ctx, caller.limited_to(), site, input)
            .await?;
        Ok::<_, ApiError>(restore.site_id)
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}

/// Back to the site's page, or the error's page.
pub(super) fn back_to_site(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    result: Result<SiteId, ApiError>,
) -> Response {
    match result {
        Ok(site) => Redirect::to(&format!("/sites/{site}")).into_response(),
        Err(error) => error_page(state, headers, Some(caller), error),
    }
}
