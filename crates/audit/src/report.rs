//! The board's report over a period: what was done, by whom, month by month; what happened to
//! sites; the incidents. Computed from events alone, so it is as trustworthy as the chain.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::chain::EventFields;

/// One incident: a site that an agent reported failing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    pub at: DateTime<Utc>,
    pub site: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub events: u64,
    /// `2026-11` → number of events.
    pub per_month: BTreeMap<String, u64>,
    /// Actor → number of events.
    pub per_actor: BTreeMap<String, u64>,
    /// Action → number of events.
    pub per_action: BTreeMap<String, u64>,
    pub sites_created: u64,
    pub sites_moved: u64,
    pub sites_deleted: u64,
    pub incidents: Vec<Incident>,
}

impl Report {
    pub fn of<'a>(events: impl IntoIterator<Item = &'a EventFields>) -> Self {
        let mut report = Report::default();
        for event in events {
            report.events += 1;
            *report
                .per_month
                .entry(event.at.format("%Y-%m").to_string())
                .or_default() += 1;
            *report.per_actor.entry(event.actor.clone()).or_default() += 1;
            *report.per_action.entry(event.action.clone()).or_default() += 1;
            match event.action.as_str() {
                "site.create" => report.sites_created += 1,
                "site.move" => report.sites_moved += 1,
                "site.delete" => report.sites_deleted += 1,
                "site.phase" => {
                    let after = event.after.as_ref();
                    let phase = after.and_then(|a| a["phase"].as_str());
                    if phase == Some("failed") {
                        report.incidents.push(Incident {
                            at: event.at,
                            site: event.target_id.clone(),
                            reason: after
                                .and_then(|a| a["reason"].as_str())
                                .unwrap_or("")
                                .to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(at: &str, actor: &str, action: &str, after: Option<serde_json::Value>) -> EventFields {
        EventFields {
            id: uuid::Uuid::now_v7(),
            at: at.parse().unwrap(),
            actor: actor.into(),
            action: action.into(),
            target_kind: "site".into(),
            target_id: "s1".into(),
            before: None,
            after,
            request_id: "r".into(),
        }
    }

    #[test]
    fn counts_by_month_actor_and_kind_of_change() {
        let events = [
            event("2026-10-31T23:59:59Z", "admin-a", "site.create", None),
            event("2026-11-01T00:00:00Z", "admin-b", "site.create", None),
            event("2026-11-02T10:00:00Z", "admin-a", "site.delete", None),
            event(
                "2026-11-03T10:00:00Z",
                "node:n1",
                "site.phase",
                Some(json!({"phase": "failed", "reason": "image missing"})),
            ),
            event(
                "2026-11-03T11:00:00Z",
                "node:n1",
                "site.phase",
                Some(json!({"phase": "running"})),
            ),
        ];
        let report = Report::of(&events);
        assert_eq!(report.events, 5);
        assert_eq!(report.per_month["2026-10"], 1);
        assert_eq!(report.per_month["2026-11"], 4);
        assert_eq!(report.per_actor["admin-a"], 2);
        assert_eq!((report.sites_created, report.sites_deleted), (2, 1));
        assert_eq!(report.incidents.len(), 1);
        assert_eq!(report.incidents[0].reason, "image missing");
    }
}
