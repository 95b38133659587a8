//! The site page's traffic section: requests per second and visitors waiting in line (the
//! overload protection's waiting room) over the last 48 hours, from the agents' reports.

use alveole_model::Site;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::service::traffic::{requests_series, waiting_series};

pub async fn section(state: &AppState, site: &Site) -> Result<Option<Value>, ApiError> {
    let now = state.service().now();
    let since = now - chrono::Duration::hours(48);
    let requests_plot = super::backups::plot(
        state,
        requests_series(site.id),
        "requests",
        since,
        now,
        &|per_second| format!("{per_second:.1}/s"),
    )
    .await?;
    let waiting_plot = super::backups::plot(
        state,
        waiting_series(site.id),
        "waiting",
        since,
        now,
        &|visitors| format!("{visitors:.0}"),
    )
    .await?;
    Ok(Some(json!({
        "protected": site.admission.enabled,
        "requests_plot": requests_plot,
        "waiting_plot": waiting_plot,
    })))
}
