//! The listeners' counters for Prometheus, summed per listener name over the process's live
//! guards: how many connections are open, unfinished and idle, and how many were refused,
//! timed out and closed to make room. Register [`ListenerCollector`] with a registry.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::{Guard, Stats};

static GUARDS: Mutex<Vec<Weak<Guard>>> = Mutex::new(Vec::new());

/// Remembers `guard` for the collector (until it is dropped).
pub(crate) fn register(guard: Weak<Guard>) {
    let mut guards = GUARDS.lock().unwrap_or_else(PoisonError::into_inner);
    guards.retain(|g| g.strong_count() > 0);
    guards.push(guard);
}

/// Each listener's counters, summed over its live guards.
pub fn by_listener() -> BTreeMap<&'static str, Stats> {
    let guards = GUARDS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut all: BTreeMap<&'static str, Stats> = BTreeMap::new();
    for guard in guards.iter().filter_map(Weak::upgrade) {
        let stats = guard.stats();
        let sum = all.entry(guard.name()).or_default();
        sum.open += stats.open;
        sum.unfinished += stats.unfinished;
        sum.idle += stats.idle;
        sum.refused += stats.refused;
        sum.timed_out += stats.timed_out;
        sum.evicted += stats.evicted;
    }
    all
}

/// The listeners' counters, read at each scrape.
#[derive(Debug, Default)]
pub struct ListenerCollector;

impl Collector for ListenerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let listeners = by_listener();
        let gauge = |n: usize| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        {
            let kind = gauge(0).metric_type();
            let mut family = encoder.encode_descriptor(
                "listener_connections",
                "Connections a listener holds, by state (open, unfinished head, idle)",
                None,
                kind,
            )?;
            for (name, stats) in &listeners {
                for (state, n) in [
                    ("open", stats.open),
                    ("unfinished", stats.unfinished),
                    ("idle", stats.idle),
                ] {
                    let labels = [("listener", *name), ("state", state)];
                    gauge(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (metric, help, pick) in [
            (
                "listener_refused",
                "Connections a listener closed at once (a bound said no)",
                (|s: &Stats| s.refused) as fn(&Stats) -> u64,
            ),
            (
                "listener_timed_out",
                "Connections closed for a head or an idle time that ran out",
                |s: &Stats| s.timed_out,
            ),
            (
                "listener_evicted",
                "Connections closed to make room (the longest idle first)",
                |s: &Stats| s.evicted,
            ),
        ] {
            let kind = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(metric, help, None, kind)?;
            for (name, stats) in &listeners {
                let labels = [("listener", *name)];
                ConstCounter::new(pick(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn each_listener_is_counted_under_its_name() {
        let guard = Guard::new("metrics-test", Limits::default());
        let mut registry = prometheus_client::registry::Registry::with_prefix("alveole");
        registry.register_collector(Box::new(ListenerCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"alveole_listener_connections{listener="metrics-test",state="open"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"alveole_listener_refused_total{listener="metrics-test"} 0"#));
        drop(guard);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            !text.contains("metrics-test"),
            "a dropped guard is forgotten"
        );
    }
}
