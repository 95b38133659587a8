//! Keeping under the CA's rate limits (Let's Encrypt's: 300 new orders per account per three
//! hours, 50 certificates per registered domain per week, 5 failed validations per name per
//! hour), co-op wide: which due sites may be ordered now, one queue per registered domain,
//! and until when the others wait. Pure, so that the limits are unit-tested.

use std::collections::{BTreeMap, HashMap};

use alveole_model::SiteId;
use alveole_store::{AcmeEvent, AcmeEventKind};
use chrono::{DateTime, Duration, Utc};

use crate::acme::AcmeLimits;

/// A site whose certificate is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub site: SiteId,
    /// The names to order, the site's primary first.
    pub names: Vec<String>,
    /// The registered domain its queue is kept by (its primary name's).
    pub domain: String,
    /// The certificate it replaces, when it is a renewal (PEM).
    pub replaces: Option<String>,
    /// Whether the CA gave renewal information for that certificate.
    pub replaces_known_to_ca: bool,
    /// The sooner, the earlier in its queue (expiry, or now for a first certificate).
    pub urgency: DateTime<Utc>,
}

/// A due site that must wait, why, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub site: SiteId,
    pub reason: String,
    pub until: DateTime<Utc>,
}

/// What the limits allow now: queues (one per registered domain, ordered within) to run,
/// and the sites held back.
#[derive(Debug, Default)]
pub struct Admitted {
    pub queues: Vec<Vec<Due>>,
    pub held: Vec<Held>,
}

/// Sorts `due` into per-domain queues under `limits`, given the events of the last week.
pub fn admit(
    mut due: Vec<Due>,
    events: &[AcmeEvent],
    limits: &AcmeLimits,
    now: DateTime<Utc>,
) -> Admitted {
    let window = |kind: AcmeEventKind, span: Duration| {
        let mut times: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
        for event in events
            .iter()
            .filter(|e| e.kind == kind && e.at > now - span)
        {
            times.entry(&event.key).or_default().push(event.at);
        }
        times
    };
    let orders: Vec<DateTime<Utc>> = window(AcmeEventKind::Order, Duration::hours(3))
        .into_values()
        .flatten()
        .collect();
    let issued = window(AcmeEventKind::Issued, Duration::weeks(1));
    let failed = window(AcmeEventKind::Failed, Duration::hours(1));
    // When the `limit`-th most recent event of `times` leaves the window of `span`.
    let frees_at = |times: &[DateTime<Utc>], limit: u32, span: Duration| {
        let mut sorted = times.to_vec();
        sorted.sort();
        let over = sorted.len().saturating_sub(limit as usize);
        sorted.get(over).map_or(now, |t| *t + span)
    };

    due.sort_by(|a, b| a.urgency.cmp(&b.urgency).then(a.site.cmp(&b.site)));
    let mut admitted = Admitted::default();
    let mut queues: BTreeMap<String, Vec<Due>> = BTreeMap::new();
    let mut orders_left = (limits.orders_per_3_hours as usize).saturating_sub(orders.len());
    let mut issued_left: HashMap<String, usize> = HashMap::new();
    for site in due {
        let failing = site.names.iter().find_map(|name| {
            let times = failed.get(name.as_str())?;
            (times.len() >= limits.failures_per_name_hour as usize).then(|| {
                (
                    name.clone(),
                    frees_at(times, limits.failures_per_name_hour, Duration::hours(1)),
                )
            })
        });
        if let Some((name, until)) = failing {
            admitted.held.push(Held {
                site: site.site,
                reason: format!(
                    "{name} failed its validation {} times within the hour: no order for it \
                     before {until}",
                    limits.failures_per_name_hour
                ),
                until,
            });
            continue;
        }
        let domain_issued = issued
            .get(site.domain.as_str())
            .map_or(&[][..], Vec::as_slice);
        let left = issued_left.entry(site.domain.clone()).or_insert_with(|| {
            (limits.certificates_per_domain_week as usize).saturating_sub(domain_issued.len())
        });
        // A renewal (the same names again) is exempt from this limit at the CA: a busy domain
        // never loses a certificate it has.
        if *left == 0 && site.replaces.is_none() {
            let until = frees_at(
                domain_issued,
                limits.certificates_per_domain_week,
                Duration::weeks(1),
            );
            admitted.held.push(Held {
                site: site.site,
                reason: format!(
                    "{} certificates for {} this week, the CA's limit: the next after {until}",
                    limits.certificates_per_domain_week, site.domain
                ),
                until: until.max(now + Duration::minutes(1)),
            });
            continue;
        }
        if orders_left == 0 {
            let until = frees_at(&orders, limits.orders_per_3_hours, Duration::hours(3));
            admitted.held.push(Held {
                site: site.site,
                reason: format!(
                    "the co-op's account reached {} new orders within three hours: waiting \
                     until {until}",
                    limits.orders_per_3_hours
                ),
                until: until.max(now + Duration::minutes(1)),
            });
            continue;
        }
        *left = left.saturating_sub(1);
        orders_left -= 1;
        queues.entry(site.domain.clone()).or_default().push(site);
    }
    admitted.queues = queues.into_values().collect();
    admitted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn due(name: &str, domain: &str, minutes: i64) -> Due {
        Due {
            site: SiteId::generate(),
            names: vec![name.to_owned()],
            domain: domain.to_owned(),
            replaces: None,
            replaces_known_to_ca: false,
            urgency: now() + Duration::minutes(minutes),
        }
    }

    fn event(kind: AcmeEventKind, key: &str, minutes_ago: i64) -> AcmeEvent {
        AcmeEvent {
            kind,
            key: key.to_owned(),
            at: now() - Duration::minutes(minutes_ago),
        }
    }

    #[test]
    fn one_queue_per_registered_domain_most_urgent_first() {
        let sites = vec![
            due("b.example.org", "example.org", 30),
            due("a.example.org", "example.org", 10),
            due("c.example.net", "example.net", 0),
        ];
        let admitted = admit(sites, &[], &AcmeLimits::default(), now());
        assert!(admitted.held.is_empty());
        assert_eq!(admitted.queues.len(), 2);
        let org = admitted
            .queues
            .iter()
            .find(|q| q[0].domain == "example.org")
            .map(|q| q.iter().map(|d| d.names[0].as_str()).collect::<Vec<_>>());
        assert_eq!(org, Some(vec!["a.example.org", "b.example.org"]));
    }

    #[test]
    fn a_domain_at_its_weekly_limit_waits_until_its_oldest_certificate_leaves_the_week() {
        let limits = AcmeLimits {
            certificates_per_domain_week: 2,
            ..AcmeLimits::default()
        };
        let events = [
            event(AcmeEventKind::Issued, "example.org", 60),
            event(AcmeEventKind::Issued, "example.org", 30),
        ];
        let admitted = admit(
            vec![
                due("a.example.org", "example.org", 0),
                due("b.example.net", "example.net", 0),
            ],
            &events,
            &limits,
            now(),
        );
        assert_eq!(admitted.queues.len(), 1);
        assert_eq!(admitted.queues[0][0].domain, "example.net");
        assert_eq!(admitted.held.len(), 1);
        assert_eq!(
            admitted.held[0].until,
            now() - Duration::minutes(60) + Duration::weeks(1)
        );
        assert!(admitted.held[0].reason.contains("example.org"));
    }

    #[test]
    fn a_renewal_is_not_held_by_its_domains_weekly_limit() {
        let limits = AcmeLimits {
            certificates_per_domain_week: 1,
            ..AcmeLimits::default()
        };
        let events = [event(AcmeEventKind::Issued, "example.org", 60)];
        let mut renewal = due("a.example.org", "example.org", 0);
        renewal.replaces = Some("-----BEGIN CERTIFICATE-----".into());
        let admitted = admit(
            vec![renewal, due("b.example.org", "example.org", 1)],
            &events,
            &limits,
            now(),
        );
        assert_eq!(admitted.queues.len(), 1);
        assert_eq!(admitted.queues[0][0].names, ["a.example.org"]);
        assert_eq!(admitted.held.len(), 1, "the new certificate waits");
    }

    #[test]
    fn the_account_limit_counts_orders_admitted_in_this_run_too() {
        let limits = AcmeLimits {
            orders_per_3_hours: 3,
            ..AcmeLimits::default()
        };
        let events = [event(AcmeEventKind::Order, "ca", 170)];
        let sites = (0..5)
            .map(|i| {
                due(
                    &format!("s{i}.example{i}.org"),
                    &format!("example{i}.org"),
                    i,
                )
            })
            .collect();
        let admitted = admit(sites, &events, &limits, now());
        let running: usize = admitted.queues.iter().map(Vec::len).sum();
        assert_eq!(running, 2, "3 per three hours, one already spent");
        assert_eq!(admitted.held.len(), 3);
        assert_eq!(
            admitted.held[0].until,
            now() + Duration::minutes(10),
            "when the order of 170 minutes ago leaves the window"
        );
    }

    #[test]
    fn a_name_failing_too_often_is_held_for_the_hour() {
        let limits = AcmeLimits::default();
        let events: Vec<_> = (0..5)
            .map(|i| event(AcmeEventKind::Failed, "broken.example.org", 50 - i))
            .collect();
        let admitted = admit(
            vec![due("broken.example.org", "example.org", 0)],
            &events,
            &limits,
            now(),
        );
        assert!(admitted.queues.is_empty());
        assert_eq!(admitted.held[0].until, now() + Duration::minutes(10));
    }
}
