//! Routes for machines: health, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;
use crate::error::ApiResult;
use crate::metrics::{BackupLabels, PhaseLabels, ProviderLabels, SiteLabels};

/// 200 when the database answers.
pub async fn healthz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store().counts().await?;
    Ok("ok\n")
}

pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = state.store().counts().await?;
    for (phase, count) in counts.sites_by_phase {
        state
            .metrics()
            .sites
            .get_or_create(&PhaseLabels {
                phase: phase.as_str().to_owned(),
            })
            .set(count);
    }
    // Volume usage as the agents last measured it, beside each quota.
    let store = state.store();
    let sites = crate::api::every(|page| {
        Box::pin(async move { store.sites().list(&Default::default(), &page).await })
    })
    .await?;
    for status in store.node_statuses().await? {
        for observed in &status.report.sites {
            let (Some(used), Some(site)) = (
                observed.volume_bytes,
                sites
                    .iter()
                    .find(|s| s.id == observed.site_id && s.node_id == Some(status.node_id)),
            ) else {
                continue;
            };
            let labels = SiteLabels {
                site: site.id.to_string(),
                hostname: site.primary_domain.to_string(),
            };
            let metrics = state.metrics();
            metrics
                .volume_bytes
                .get_or_create(&labels)
                .set(i64::try_from(used).unwrap_or(i64::MAX));
            metrics
                .volume_quota_bytes
                .get_or_create(&labels)
                .set(i64::try_from(site.volume.quota_bytes).unwrap_or(i64::MAX));
        }
    }
    // Each site's newest snapshot at each target.
    let targets = store
        .backup_targets()
        .list(
            &Default::default(),
            &alveole_store::PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await?
        .items;
    let now = state.service().now();
    for run in store.latest_snapshots(None).await? {
        let (Some(site), Some(target)) = (
            sites.iter().find(|s| s.id == run.site_id),
            targets.iter().find(|t| t.id == run.target_id),
        ) else {
            continue;
        };
        let labels = BackupLabels {
            site: site.id.to_string(),
            hostname: site.primary_domain.to_string(),
            target: target.name.to_string(),
        };
        let metrics = state.metrics();
        metrics
            .backup_age_seconds
            .get_or_create(&labels)
            .set((now - run.started_at).num_seconds().max(0));
        metrics
            .backup_bytes
            .get_or_create(&labels)
            .set(i64::try_from(run.bytes_total).unwrap_or(i64::MAX));
    }
    // What drills and checks prove of each site, and its alerts.
    let alerts = store.backup_alerts(None).await?;
    for proof in state.service().site_proofs(None).await? {
        let Some(site) = sites.iter().find(|s| s.id == proof.site_id) else {
            continue;
        };
        let labels = SiteLabels {
            site: site.id.to_string(),
            hostname: site.primary_domain.to_string(),
        };
        let metrics = state.metrics();
        if let Some(window) = proof.window_seconds {
            metrics
                .data_loss_window_seconds
                .get_or_create(&labels)
                .set(window);
        }
        if let Some(seconds) = proof.restore_seconds {
            metrics.restore_seconds.get_or_create(&labels).set(seconds);
        }
        let raised = alerts.iter().filter(|a| a.site_id == site.id).count();
        metrics
            .backup_alerts
            .get_or_create(&labels)
            .set(i64::try_from(raised).unwrap_or(i64::MAX));
    }
    // Certificates' expiry, and those not renewed in time.
    for expiry in state.service().certificate_expiries().await? {
        let labels = SiteLabels {
            site: expiry.site.to_string(),
            hostname: expiry.name,
        };
        let metrics = state.metrics();
        metrics
            .certificate_expiry
            .get_or_create(&labels)
            .set(expiry.not_after.timestamp());
        metrics
            .certificate_alerts
            .get_or_create(&labels)
            .set(i64::from(expiry.alerted));
    }
    // Exit readiness, planned now, for alerting on a provider that could not be left in time.
    let readiness = state.service().exit_readiness().await?;
    let metrics = state.metrics();
    metrics
        .exit_notice_seconds
        .set(i64::try_from(readiness.notice_seconds).unwrap_or(i64::MAX));
    for provider in readiness.providers {
        let labels = ProviderLabels {
            provider: provider.name,
        };
        metrics
            .provider_exit_seconds
            .get_or_create(&labels)
            .set(i64::try_from(provider.estimated_seconds).unwrap_or(i64::MAX));
        metrics
            .provider_exit_ready
            .get_or_create(&labels)
            .set(i64::from(provider.ready));
    }
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    ))
}

pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi().clone())
}
