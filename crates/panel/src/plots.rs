//! Plots of the panel's time series as SVG, drawn on the server: no JavaScript, readable in
//! any browser and in a printed report. A band shows each point's least and greatest values,
//! a line its mean; the axes name the highest value and the span of time.

use std::fmt::Write;

use alveole_model::series::Point;
use chrono::{DateTime, Utc};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
/// Room for the labels, left and bottom.
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;
const RIGHT: f64 = 8.0;

/// What a plot shows.
pub struct Plot<'a> {
    /// Its title, read out by screen readers too.
    pub title: &'a str,
    /// How a value reads (`|v| format!("{v:.0} s")`).
    pub format: &'a dyn Fn(f64) -> String,
    /// From when to when.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl std::fmt::Debug for Plot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plot")
            .field("title", &self.title)
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Plot<'_> {
    /// The SVG document of `points` (in time order), with a sentence for an empty series.
    pub fn render(&self, points: &[Point]) -> String {
        let mut svg = String::new();
        let title = escape(self.title);
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" class="plot"><title>{title}</title>"#
        );
        let span = (self.to - self.from).num_milliseconds().max(1) as f64;
        let shown: Vec<&Point> = points
            .iter()
            .filter(|p| p.at >= self.from && p.at <= self.to && p.max.is_finite())
            .collect();
        let (inner_w, inner_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let _ = write!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" fill="none" stroke="currentColor" stroke-opacity="0.3"/>"#
        );
        if shown.is_empty() {
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">no data yet</text></svg>"#,
                LEFT + inner_w / 2.0,
                TOP + inner_h / 2.0
            );
            return svg;
        }
        let top = shown
            .iter()
            .map(|p| p.max)
            .fold(0.0_f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let x = |at: DateTime<Utc>| {
            LEFT + inner_w * ((at - self.from).num_milliseconds() as f64 / span)
        };
        let y = |value: f64| TOP + inner_h * (1.0 - (value.max(0.0) / top).min(1.0));
        // The band: along the greatest values, back along the least.
        let mut band = String::new();
        for p in &shown {
            let _ = write!(band, "{:.1},{:.1} ", x(p.at), y(p.max));
        }
        for p in shown.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", x(p.at), y(p.min));
        }
        let line: String = shown
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.at), y(p.mean)))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = write!(
            svg,
            r#"<polygon points="{}" fill="currentColor" fill-opacity="0.15"/><polyline points="{line}" fill="none" stroke="currentColor" stroke-width="1.5"/>"#,
            band.trim_end()
        );
        let label = |text: &str| escape(text);
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="11">{}</text><text x="{}" y="{}" text-anchor="end" font-size="11">0</text><text x="{LEFT}" y="{}" font-size="11">{}</text><text x="{}" y="{}" text-anchor="end" font-size="11">{}</text></svg>"#,
            LEFT - 4.0,
            TOP + 10.0,
            label(&(self.format)(top)),
            LEFT - 4.0,
            TOP + inner_h,
            HEIGHT - 6.0,
            label(&self.from.format("%Y-%m-%d %H:%M").to_string()),
            WIDTH - RIGHT,
            HEIGHT - 6.0,
            label(&self.to.format("%Y-%m-%d %H:%M").to_string()),
        );
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alveole_model::series::Resolution;
    use chrono::Duration;

    fn plot<'a>(format: &'a dyn Fn(f64) -> String, now: DateTime<Utc>) -> Plot<'a> {
        Plot {
            title: "Data-loss window <site & co>",
            format,
            from: now - Duration::hours(2),
            to: now,
        }
    }

    #[test]
    fn a_series_is_drawn_within_the_frame_with_its_highest_value_named() {
        let now = Utc::now();
        let format = |v: f64| format!("{v:.0} s");
        let points: Vec<Point> = (0..5)
            .map(|i| {
                let mut p = Point::single(
                    Resolution::Minute,
                    now - Duration::minutes(100 - 20 * i),
                    30.0 * f64::from(i as u8),
                );
                p.max += 10.0;
                p
            })
            .collect();
        let svg = plot(&format, now).render(&points);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains("&lt;site &amp; co&gt;"),
            "the title is escaped"
        );
        assert!(svg.contains(">130 s<"), "the highest value: {svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
        // Every coordinate is inside the picture.
        let numbers = svg
            .split(['"', ' ', ','])
            .filter_map(|t| t.parse::<f64>().ok());
        assert!(numbers.clone().all(|n| (0.0..=WIDTH).contains(&n)), "{svg}");
        assert!(!svg.contains("script"), "no JavaScript");
    }

    #[test]
    fn an_empty_or_flat_series_still_draws() {
        let now = Utc::now();
        let format = |v: f64| format!("{v}");
        assert!(plot(&format, now).render(&[]).contains("no data yet"));
        let flat = [Point::single(Resolution::Minute, now, 0.0)];
        let svg = plot(&format, now).render(&flat);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
