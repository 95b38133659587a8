//! Small time series the panel keeps, and later issues reuse (a site's data-loss window and
//! backup sizes, a restore's duration, a site's admissions): one point a minute for 48 hours,
//! then one an hour for 8 days. A point of either resolution summarises the values recorded
//! in its minute or hour: their mean, least, greatest and count, so that rolling minutes
//! into hours loses no extreme.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};

/// How long minute points are kept.
pub const MINUTES_KEPT: Duration = Duration::hours(48);
/// How long hour points are kept.
pub const HOURS_KEPT: Duration = Duration::days(8);

/// A series' name: lowercase letters, digits and `._:-`, 1 to 128 of them
/// (`site:<id>:rpo_seconds`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SeriesName(String);

impl SeriesName {
    pub fn parse(text: &str) -> Result<Self, ValidationErrors> {
        let ok = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b':' | b'-')
            });
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(ValidationErrors::from(FieldError::new(
                "series",
                "series.invalid",
                "lowercase letters, digits and . _ : -, 1 to 128 of them",
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SeriesName {
    type Error = ValidationErrors;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<SeriesName> for String {
    fn from(name: SeriesName) -> Self {
        name.0
    }
}

impl std::fmt::Display for SeriesName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The span a point summarises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "minute" => Some(Resolution::Minute),
            "hour" => Some(Resolution::Hour),
            _ => None,
        }
    }

    fn span(self) -> Duration {
        match self {
            Resolution::Minute => Duration::minutes(1),
            Resolution::Hour => Duration::hours(1),
        }
    }

    /// The start of the minute or hour `at` falls in.
    pub fn bucket(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.span()).unwrap_or(at)
    }
}

/// What a minute or an hour of a series holds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The start of its minute or hour.
    pub at: DateTime<Utc>,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: u64,
}

impl Point {
    /// One value recorded at `at`, in its bucket of `resolution`.
    pub fn single(resolution: Resolution, at: DateTime<Utc>, value: f64) -> Self {
        Self {
            at: resolution.bucket(at),
            mean: value,
            min: value,
            max: value,
            count: 1,
        }
    }

    /// Two summaries of the same bucket as one.
    pub fn merged(self, other: Point) -> Point {
        let count = self.count + other.count;
        // Weighted by count; counts are small enough for f64.
        let mean = if count == 0 {
            0.0
        } else {
            (self.mean * self.count as f64 + other.mean * other.count as f64) / count as f64
        };
        Point {
            at: self.at,
            mean,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            count,
        }
    }
}

/// What keeping a series tidy at `now` does: the hour points to write (each merged with the
/// stored one of the same hour, if any), and the times before which minute and hour points
/// are removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Compaction {
    pub hours: Vec<Point>,
    pub minutes_before: DateTime<Utc>,
    pub hours_before: DateTime<Utc>,
}

/// Rolls the minute points older than [`MINUTES_KEPT`] into hours, merged with the hour
/// points already kept (`hours`), and drops what is older than [`HOURS_KEPT`].
pub fn compact(minutes: &[Point], hours: &[Point], now: DateTime<Utc>) -> Compaction {
    // Whole hours only: a minute rolls up once its hour is entirely past the minute horizon,
    // so that an hour is written once with all its minutes.
    let minutes_before = Resolution::Hour.bucket(now - MINUTES_KEPT);
    let hours_before = now - HOURS_KEPT;
    let mut rolled: std::collections::BTreeMap<DateTime<Utc>, Point> = Default::default();
    for minute in minutes.iter().filter(|m| m.at < minutes_before) {
        let hour = Resolution::Hour.bucket(minute.at);
        let point = Point {
            at: hour,
            ..*minute
        };
        rolled
            .entry(hour)
            .and_modify(|p| *p = p.merged(point))
            .or_insert(point);
    }
    let hours = rolled
        .into_values()
        .filter(|point| point.at >= hours_before)
        .map(|point| match hours.iter().find(|h| h.at == point.at) {
            Some(kept) => kept.merged(point),
            None => point,
        })
        .collect();
    Compaction {
        hours,
        minutes_before,
        hours_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 17).unwrap()
    }

    #[test]
    fn names_are_checked() {
        assert!(SeriesName::parse("site:0193:rpo_seconds").is_ok());
        for bad in ["", "Site", "a b", &"x".repeat(129)] {
            assert!(SeriesName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn points_fall_in_their_bucket_and_merge_without_losing_extremes() {
        let a = Point::single(Resolution::Minute, at(10, 5), 2.0);
        assert_eq!(a.at, Utc.with_ymd_and_hms(2026, 12, 1, 10, 5, 0).unwrap());
        let b = Point::single(Resolution::Minute, at(10, 5), 6.0);
        let c = Point::single(Resolution::Minute, at(10, 5), 1.0);
        let merged = a.merged(b).merged(c);
        assert_eq!((merged.min, merged.max, merged.count), (1.0, 6.0, 3));
        assert!((merged.mean - 3.0).abs() < 1e-9);
    }

    #[test]
    fn old_minutes_roll_into_whole_hours_and_old_hours_go() {
        let now = at(12, 30) + Duration::days(2);
        let minutes: Vec<Point> = [at(9, 1), at(9, 59), at(10, 30), at(12, 10)]
            .into_iter()
            .zip([1.0, 3.0, 5.0, 7.0])
            .map(|(t, v)| Point::single(Resolution::Minute, t, v))
            .collect();
        let kept_nine = Point {
            count: 2,
            ..Point::single(Resolution::Hour, at(9, 0), 10.0)
        };
        let done = compact(&minutes, &[kept_nine], now);
        // 48 h before 2026-12-03 12:30 is 12:30 on the 1st: hours before 12:00 roll up.
        assert_eq!(done.minutes_before, Resolution::Hour.bucket(at(12, 0)));
        assert_eq!(done.hours.len(), 2, "{:?}", done.hours);
        let nine = done.hours[0];
        assert_eq!((nine.count, nine.min, nine.max), (4, 1.0, 10.0));
        assert!((nine.mean - 6.0).abs() < 1e-9);
        assert_eq!(done.hours[1].mean, 5.0);
        assert_eq!(done.hours_before, now - HOURS_KEPT);
        // Ten days later nothing of it is kept.
        let later = compact(&minutes, &[], now + Duration::days(10));
        assert!(later.hours.is_empty());
    }
}
