//! The panel's small time series on both databases: values recorded minute by minute, read
//! back, compacted (minutes older than 48 hours rolled into hours without losing their
//! extremes, hours older than 8 days gone), and drawn as an SVG plot.

use alveole_model::series::{Resolution, SeriesName};
use alveole_panel::plots::Plot;
use alveole_tests::TestDb;
use chrono::{Duration, TimeZone, Utc};

#[tokio::test]
async fn series_are_kept_by_the_minute_then_by_the_hour_and_plotted() {
    for db in TestDb::all().await {
        let store = alveole_store::connect(&db.url).await.unwrap();
        let series = SeriesName::parse("site:0193:rpo_seconds").unwrap();
        let other = SeriesName::parse("site:0194:rpo_seconds").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 30, 0).unwrap();
        // Three values in one minute three days ago, one a day ago, one ten days ago.
        let three_days = now - Duration::days(3);
        for value in [10.0, 40.0, 25.0] {
            store.record(&series, three_days, value).await.unwrap();
        }
        store
            .record(&series, now - Duration::days(1), 7.0)
            .await
            .unwrap();
        store
            .record(&series, now - Duration::days(10), 99.0)
            .await
            .unwrap();
        store.record(&other, now, 1.0).await.unwrap();
        let refused = store.record(&series, now, f64::NAN).await;
        assert!(refused.is_err(), "a value that is not a number is refused");

        let points = store
            .points(&series, now - Duration::days(30))
            .await
            .unwrap();
        assert_eq!(points.len(), 3, "{points:?}");
        let minute = points
            .iter()
            .find(|(_, p)| p.at == Resolution::Minute.bucket(three_days))
            .unwrap()
            .1;
        assert_eq!((minute.count, minute.min, minute.max), (3, 10.0, 40.0));
        assert!((minute.mean - 25.0).abs() < 1e-9);

        assert_eq!(
            store.compact_series(now).await.unwrap(),
            1,
            "one hour rolled"
        );
        let points = store
            .points(&series, now - Duration::days(30))
            .await
            .unwrap();
        let kinds: Vec<(Resolution, f64)> = points.iter().map(|(r, p)| (*r, p.max)).collect();
        assert_eq!(
            kinds,
            [(Resolution::Hour, 40.0), (Resolution::Minute, 7.0)],
            "three days ago as an hour with its extremes, yesterday by the minute, ten days ago gone"
        );
        // Compacting again changes nothing.
        assert_eq!(store.compact_series(now).await.unwrap(), 0);
        assert_eq!(store.points(&other, now).await.unwrap().len(), 1);

        let format = |v: f64| format!("{v:.0} s");
        let svg = Plot {
            title: "Data-loss window",
            format: &format,
            from: now - Duration::days(8),
            to: now,
        }
        .render(&points.iter().map(|(_, p)| *p).collect::<Vec<_>>());
        assert!(svg.contains(">40 s<") && svg.contains("<polyline"), "{svg}");
        db.drop_db().await;
    }
}
