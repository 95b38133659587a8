//! The panel's small time series ([`alveole_model::series`]): recorded a value at a time,
//! read back for plots, compacted (minutes rolled into hours, old points dropped). Telemetry,
//! not changes: nothing here is audited.

use alveole_model::series::{Point, Resolution, SeriesName};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreResult;

#[async_trait]
pub trait SeriesStore: Send + Sync {
    /// Adds `value` to the minute of `at` of `series`.
    async fn record(&self, series: &SeriesName, at: DateTime<Utc>, value: f64) -> StoreResult<()>;
    /// The points of `series` from `since` on, hours then minutes, each in time order.
    async fn points(
        &self,
        series: &SeriesName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(Resolution, Point)>>;
    /// Rolls every series' minutes older than the minute horizon into hours and drops what is
    /// older than the hour horizon, as of `now`: how many hour points were written.
    async fn compact_series(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}
