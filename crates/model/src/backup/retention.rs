//! Retention by time, never by count, decided by the vault: the newest snapshot of each hour
//! for `hourly_hours`, of each day for `daily_days`, of each week for `weekly_weeks`, of
//! each month for `monthly_months`. Times are when each snapshot reached the vault, by the
//! vault's own clock, not the time a snapshot claims: a compromised node can write many
//! snapshots, or snapshots dated in the past, but they all arrive now, in the current hour,
//! and cannot push out what arrived in earlier hours, days, weeks or months.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Retention {
    /// The newest snapshot of each hour, this many hours back (1 to 8760).
    #[serde(default = "hours")]
    #[schemars(range(min = 1, max = 8760))]
    pub hourly_hours: u32,
    /// Of each day, this many days back (0 to 3660).
    #[serde(default = "days")]
    #[schemars(range(max = 3660))]
    pub daily_days: u32,
    /// Of each week, this many weeks back (0 to 520).
    #[serde(default = "weeks")]
    #[schemars(range(max = 520))]
    pub weekly_weeks: u32,
    /// Of each month, this many months back (0 to 120).
    #[serde(default = "months")]
    #[schemars(range(max = 120))]
    pub monthly_months: u32,
}

fn hours() -> u32 {
    48
}
fn days() -> u32 {
    30
}
fn weeks() -> u32 {
    12
}
fn months() -> u32 {
    12
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            hourly_hours: hours(),
            daily_days: days(),
            weekly_weeks: weeks(),
            monthly_months: months(),
        }
    }
}

/// Checks a retention, field paths under `backup.retention.`.
pub fn validate_retention(errors: &mut ValidationErrors, retention: &Retention) {
    for (field, value, range, unit) in [
        ("hourly_hours", retention.hourly_hours, 1..=8760, "hours"),
        ("daily_days", retention.daily_days, 0..=3660, "days"),
        ("weekly_weeks", retention.weekly_weeks, 0..=520, "weeks"),
        (
            "monthly_months",
            retention.monthly_months,
            0..=120,
            "months",
        ),
    ] {
        if !range.contains(&value) {
            errors.push(FieldError::new(
                format!("backup.retention.{field}"),
                "range",
                format!("between {} and {} {unit}", range.start(), range.end()),
            ));
        }
    }
}

/// The snapshots to forget among `snapshots` (a name, and when it reached the vault), `now`
/// by the vault's clock. A snapshot that arrived "after now" (a clock set back) is kept.
pub fn to_forget(
    snapshots: &[(String, DateTime<Utc>)],
    now: DateTime<Utc>,
    retention: &Retention,
) -> Vec<String> {
    type Bucket = fn(DateTime<Utc>) -> (i32, u32, u32);
    let windows: [(Duration, Bucket); 4] = [
        (Duration::hours(i64::from(retention.hourly_hours)), |t| {
            (t.year(), t.ordinal(), t.hour())
        }),
        (Duration::days(i64::from(retention.daily_days)), |t| {
            (t.year(), t.ordinal(), 0)
        }),
        (Duration::weeks(i64::from(retention.weekly_weeks)), |t| {
            let week = t.iso_week();
            (week.year(), week.week(), 0)
        }),
        (
            Duration::days(31 * i64::from(retention.monthly_months)),
            |t| (t.year(), t.month(), 0),
        ),
    ];
    let mut kept: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (name, arrived) in snapshots {
        if *arrived > now {
            kept.insert(name);
        }
    }
    for (span, bucket) in windows {
        let mut newest: BTreeMap<(i32, u32, u32), (&DateTime<Utc>, &str)> = BTreeMap::new();
        for (name, arrived) in snapshots {
            if *arrived > now || *arrived <= now - span {
                continue;
            }
            let slot = newest.entry(bucket(*arrived)).or_insert((arrived, name));
            if (arrived, name.as_str()) > (slot.0, slot.1) {
                *slot = (arrived, name);
            }
        }
        kept.extend(newest.values().map(|(_, name)| *name));
    }
    snapshots
        .iter()
        .filter(|(name, _)| !kept.contains(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_newest_of_each_hour_day_week_and_month_is_kept_by_arrival() {
        let now = at("2026-12-07T12:30:00Z");
        let retention = Retention {
            hourly_hours: 3,
            daily_days: 3,
            weekly_weeks: 2,
            monthly_months: 2,
        };
        let snapshots: Vec<(String, DateTime<Utc>)> = [
            ("h12-late", "2026-12-07T12:20:00Z"),
            ("h12-early", "2026-12-07T12:05:00Z"),
            ("h11", "2026-12-07T11:10:00Z"),
            ("h09", "2026-12-07T09:10:00Z"),
            ("d06-late", "2026-12-06T23:00:00Z"),
            ("d06-early", "2026-12-06T01:00:00Z"),
            ("d03", "2026-12-03T10:00:00Z"),
            ("w-nov-30", "2026-11-30T10:00:00Z"),
            ("m-oct", "2026-10-20T10:00:00Z"),
            ("too-old", "2026-06-01T10:00:00Z"),
            ("future", "2026-12-08T10:00:00Z"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), at(t)))
        .collect();
        let mut forgotten = to_forget(&snapshots, now, &retention);
        forgotten.sort();
        // Kept: each hour's newest (h12-late, h11), Dec 6's (d06-late, also its week's),
        // November's (w-nov-30), October's (m-oct), and what arrived "after now".
        assert_eq!(
            forgotten,
            ["d03", "d06-early", "h09", "h12-early", "too-old"]
        );
    }

    #[test]
    fn a_flood_of_snapshots_now_cannot_push_out_earlier_ones() {
        let now = at("2026-12-07T12:30:00Z");
        let retention = Retention::default();
        let mut snapshots: Vec<(String, DateTime<Utc>)> = (1..=30)
            .map(|day| {
                (
                    format!("good-{day:02}"),
                    at(&format!("2026-11-{day:02}T03:00:00Z")),
                )
            })
            .collect();
        let without_flood = to_forget(&snapshots, now, &retention);
        // A compromised node writes 10,000 snapshots in the current hour.
        snapshots.extend((0..10_000).map(|i| {
            (
                format!("flood-{i:05}"),
                now - Duration::milliseconds(i64::from(i)),
            )
        }));
        let forgotten = to_forget(&snapshots, now, &retention);
        let good_forgotten: Vec<_> = forgotten
            .iter()
            .filter(|name| name.starts_with("good-"))
            .cloned()
            .collect();
        assert_eq!(
            good_forgotten, without_flood,
            "the flood changes nothing for the earlier snapshots"
        );
        assert!(without_flood.len() < 30, "most of November stays");
        assert_eq!(
            forgotten.len() - good_forgotten.len(),
            9_999,
            "the hour keeps its newest"
        );
    }
}
