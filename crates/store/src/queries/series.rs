//! The panel's small time series: an upsert a value, a range read, and the compaction the
//! model plans ([`alveole_model::series::compact`]), one transaction per series.

use alveole_model::series::{Point, Resolution, SeriesName, compact};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use crate::areas::series::SeriesStore;
use crate::{AuditContext, StoreError, StoreResult};

type PointRow = (String, DateTime<Utc>, f64, f64, f64, i64);

fn point_of(series: &str, row: PointRow) -> StoreResult<(Resolution, Point)> {
    let (resolution, at, mean, min, max, count) = row;
    let resolution = Resolution::parse(&resolution).ok_or_else(|| StoreError::Corrupt {
        kind: "series point",
        id: series.to_owned(),
        reason: format!("resolution {resolution:?}"),
    })?;
    Ok((
        resolution,
        Point {
            at,
            mean,
            min,
            max,
            count: u64::try_from(count).unwrap_or(0),
        },
    ))
}

/// Writes `point` as the `resolution` point of its bucket, merged with the stored one.
async fn upsert(
    conn: &mut <super::super::Db as sqlx::Database>::Connection,
    series: &str,
    resolution: Resolution,
    point: &Point,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO series_points (series, resolution, at, mean, min, max, count) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (series, resolution, at) DO UPDATE SET \
           mean = (series_points.mean * series_points.count + excluded.mean * excluded.count) \
                  / (series_points.count + excluded.count), \
           min = CASE WHEN excluded.min < series_points.min THEN excluded.min ELSE series_points.min END, \
           max = CASE WHEN excluded.max > series_points.max THEN excluded.max ELSE series_points.max END, \
           count = series_points.count + excluded.count",
    )
    .bind(series)
    .bind(resolution.as_str())
    .bind(point.at)
    .bind(point.mean)
    .bind(point.min)
    .bind(point.max)
    .bind(i64::try_from(point.count).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl SeriesStore for SqlStore {
    async fn record(&self, series: &SeriesName, at: DateTime<Utc>, value: f64) -> StoreResult<()> {
        if !value.is_finite() {
            let message = format!("a value of {series} must be a finite number, not {value}");
            return Err(StoreError::Conflict {
                errors: vec![alveole_model::FieldError::new(
                    "value",
                    "series.value",
                    message.clone(),
                )],
                message,
            });
        }
        let mut tx = self.begin_write().await?;
        let point = Point::single(Resolution::Minute, at, value);
        upsert(tx.conn(), series.as_str(), Resolution::Minute, &point).await?;
        tx.commit_all(&AuditContext::new("system:series", "-"), Vec::new())
            .await
    }

    async fn points(
        &self,
        series: &SeriesName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(Resolution, Point)>> {
        let rows: Vec<PointRow> = sqlx::query_as(
            "SELECT resolution, at, mean, min, max, count FROM series_points \
             WHERE series = $1 AND at >= $2 ORDER BY resolution, at",
        )
        .bind(series.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| point_of(series.as_str(), row))
            .collect()
    }

    async fn compact_series(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let names: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT series FROM series_points")
            .fetch_all(&self.pool)
            .await?;
        let mut written = 0;
        for (name,) in names {
            let mut tx = self.begin_write().await?;
            let rows: Vec<PointRow> = sqlx::query_as(
                "SELECT resolution, at, mean, min, max, count FROM series_points \
                 WHERE series = $1 ORDER BY at",
            )
            .bind(&name)
            .fetch_all(tx.conn())
            .await?;
            let (mut minutes, mut hours) = (Vec::new(), Vec::new());
            for row in rows {
                match point_of(&name, row)? {
                    (Resolution::Minute, point) => minutes.push(point),
                    (Resolution::Hour, point) => hours.push(point),
                }
            }
            let plan = compact(&minutes, &hours, now);
            sqlx::query(
                "DELETE FROM series_points WHERE series = $1 AND resolution = 'minute' AND at < $2",
            )
            .bind(&name)
            .bind(plan.minutes_before)
            .execute(tx.conn())
            .await?;
            // The planned hours are already merged with what was kept: replace them.
            for hour in &plan.hours {
                sqlx::query(
                    "DELETE FROM series_points WHERE series = $1 AND resolution = 'hour' AND at = $2",
                )
                .bind(&name)
                .bind(hour.at)
                .execute(tx.conn())
                .await?;
                upsert(tx.conn(), &name, Resolution::Hour, hour).await?;
            }
            sqlx::query(
                "DELETE FROM series_points WHERE series = $1 AND resolution = 'hour' AND at < $2",
            )
            .bind(&name)
            .bind(plan.hours_before)
            .execute(tx.conn())
            .await?;
            tx.commit_all(&AuditContext::new("system:series", "-"), Vec::new())
                .await?;
            written += plan.hours.len() as u64;
        }
        Ok(written)
    }
}
