//! Each site's traffic through its node's ingress, from the agents' reports into time series:
//! requests per second (from the counter's rise between two reports) and visitors waiting in
//! line. The site's page plots them.

use alveole_model::series::SeriesName;
use alveole_model::{NodeId, NodeReport, SiteId};
use chrono::{DateTime, Utc};

use super::Service;

pub fn requests_series(site: SiteId) -> Option<SeriesName> {
    SeriesName::parse(&format!("site.{site}.requests_per_second")).ok()
}

pub fn waiting_series(site: SiteId) -> Option<SeriesName> {
    SeriesName::parse(&format!("site.{site}.waiting_visitors")).ok()
}

/// Requests per second between two readings of a site's counter; none when the counter went
/// back (the agent restarted) or no time passed.
fn rate(before: u64, after: u64, seconds: f64) -> Option<f64> {
    (after >= before && seconds > 0.0).then(|| (after - before) as f64 / seconds)
}

impl Service {
    /// Records the traffic `report` carries, against the node's previous report.
    pub(crate) async fn record_traffic(&self, node: NodeId, report: &NodeReport) {
        let previous = match self.store().node_status(node).await {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(%node, %error, "the node's previous report could not be read");
                None
            }
        };
        let now = self.now();
        for site in &report.sites {
            let Some(traffic) = site.traffic else {
                continue;
            };
            let mut points: Vec<(Option<SeriesName>, f64)> =
                vec![(waiting_series(site.site_id), traffic.waiting as f64)];
            let before = previous.as_ref().and_then(|p| {
                let earlier = p.report.sites.iter().find(|s| s.site_id == site.site_id)?;
                Some((earlier.traffic?.requests, p.reported_at))
            });
            if let Some(per_second) =
                before.and_then(|(requests, at)| rate(requests, traffic.requests, seconds(at, now)))
            {
                points.push((requests_series(site.site_id), per_second));
            }
            for (series, value) in points {
                let Some(series) = series else { continue };
                if let Err(error) = self.store().record(&series, now, value).await {
                    tracing::warn!(site = %site.site_id, %error, "the site's traffic was not recorded");
                }
            }
        }
    }
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_needs_a_counter_that_rose_over_some_time() {
        assert_eq!(rate(100, 400, 10.0), Some(30.0));
        assert_eq!(rate(400, 100, 10.0), None, "the agent restarted");
        assert_eq!(rate(100, 100, 0.0), None);
    }
}
