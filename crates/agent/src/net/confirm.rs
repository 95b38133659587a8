//! The node's input filter, applied "commit-confirmed". A new filter is on trial until the
//! agent reaches the panel in a pass after the one that applied it; if its deadline passes
//! first, the agent goes back to the last confirmed filter by itself and keeps refusing the
//! new one until the panel asks for another. Taking a filter away needs no trial: it cannot
//! shut anyone out. The state is kept in the state directory, so an agent restarted during a
//! trial still rolls back at the deadline.

use std::sync::Arc;
use std::time::Duration;

use alveole_model::InputFilter;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::files::StateFiles;

const FILE: &str = "input-filter.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// In force, and the panel was reached with it (`None`: no filter).
    confirmed: Option<InputFilter>,
    trial: Option<Trial>,
    /// Rolled back: not applied again while the desired state still asks for it.
    rolled_back: Option<InputFilter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Trial {
    filter: InputFilter,
    deadline: DateTime<Utc>,
    /// The pass that applied it (0 after a restart: any pass of this run confirms it).
    #[serde(skip)]
    applied_in_pass: u64,
}

/// What the guard decided for one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The pass it was made for (a report of a later pass confirms a filter on trial).
    pub pass: u64,
    /// The filter to put in place.
    pub filter: Option<InputFilter>,
    /// Why the desired filter is not in place (rolled back), for the report's warnings.
    pub warning: Option<String>,
    /// Set on the pass that rolled back: what the audit record should say.
    pub rolled_back: Option<String>,
}

pub struct InputFilterGuard {
    files: Arc<dyn StateFiles>,
    state: State,
    window: Duration,
    pass: u64,
}

impl std::fmt::Debug for InputFilterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputFilterGuard")
            .field("trial", &self.state.trial.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a new filter may go without the panel being reached before it is rolled back.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

impl InputFilterGuard {
    /// The guard kept in `files`. An unreadable file counts as "no filter confirmed": the
    /// next filter is then on trial, which errs on the side of rolling back.
    pub fn load(files: Arc<dyn StateFiles>, window: Duration) -> Self {
        let state = match files.read(FILE) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, "the input filter's state is unreadable; starting afresh");
                State::default()
            }),
            Ok(None) | Err(_) => State::default(),
        };
        Self {
            files,
            state,
            window,
            pass: 0,
        }
    }

    fn save(&self) {
        let write = serde_json::to_vec(&self.state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| self.files.write(FILE, &bytes));
        if let Err(error) = write {
            tracing::warn!(%error, "could not keep the input filter's state");
        }
    }

    /// Decides which filter this pass puts in place, given the one the panel asks for.
    pub fn decide(&mut self, desired: Option<&InputFilter>, now: DateTime<Utc>) -> Decision {
        self.pass += 1;
        let before = self.state.clone();
        let decision = Decision {
            pass: self.pass,
            ..self.next(desired, now)
        };
        if self.state != before {
            self.save();
        }
        decision
    }

    fn next(&mut self, desired: Option<&InputFilter>, now: DateTime<Utc>) -> Decision {
        let state = &mut self.state;
        let Some(desired) = desired else {
            *state = State::default();
            return Decision::default();
        };
        if state.confirmed.as_ref() == Some(desired) {
            state.trial = None;
            state.rolled_back = None;
            return Decision {
                filter: Some(desired.clone()),
                ..Decision::default()
            };
        }
        if state.rolled_back.as_ref() == Some(desired) {
            return Decision {
                filter: state.confirmed.clone(),
                warning: Some(
                    "the input filter the panel asks for was rolled back (the panel was not \
                     reached after it was applied); the previous one stays until it changes"
                        .to_owned(),
                ),
                ..Decision::default()
            };
        }
        match &state.trial {
            Some(trial) if &trial.filter == desired && now >= trial.deadline => {
                state.trial = None;
                state.rolled_back = Some(desired.clone());
                Decision {
                    filter: state.confirmed.clone(),
                    warning: Some(
                        "a new input filter was rolled back: the panel was not reached after \
                         it was applied"
                            .to_owned(),
                    ),
                    rolled_back: Some(format!(
                        "rolled back the input filter allowing {} network(s): the panel was not \
                         reached within {} s of applying it; {} is in force again",
                        desired.allowed.len(),
                        self.window.as_secs(),
                        match &state.confirmed {
                            Some(previous) => format!(
                                "the previous filter ({} network(s))",
                                previous.allowed.len()
                            ),
                            None => "no filter".to_owned(),
                        }
                    )),
                    ..Decision::default()
                }
            }
            Some(trial) if &trial.filter == desired => Decision {
                filter: Some(desired.clone()),
                ..Decision::default()
            },
            _ => {
                let window =
                    chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
                state.trial = Some(Trial {
                    filter: desired.clone(),
                    deadline: now + window,
                    applied_in_pass: self.pass,
                });
                state.rolled_back = None;
                Decision {
                    filter: Some(desired.clone()),
                    ..Decision::default()
                }
            }
        }
    }

    /// The panel answered the report of pass `reported` (a [`Decision::pass`]): a filter on
    /// trial since an earlier pass is confirmed. Returns whether one was.
    pub fn panel_reached(&mut self, reported: u64) -> bool {
        let confirmed = match &self.state.trial {
            Some(trial) if reported > trial.applied_in_pass => trial.filter.clone(),
            _ => return false,
        };
        self.state.confirmed = Some(confirmed);
        self.state.trial = None;
        self.save();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::files::MemoryFiles;

    fn filter(networks: &[&str]) -> InputFilter {
        InputFilter {
            allowed: networks
                .iter()
                .map(|n| alveole_model::Prefix::parse(n).unwrap())
                .collect(),
        }
    }

    fn guard(files: &Arc<MemoryFiles>) -> InputFilterGuard {
        InputFilterGuard::load(files.clone(), Duration::from_secs(60))
    }

    #[test]
    fn a_new_filter_is_confirmed_by_reaching_the_panel_in_a_later_pass() {
        let files = Arc::new(MemoryFiles::default());
        let mut guard = guard(&files);
        let (now, office) = (Utc::now(), filter(&["198.51.100.0/24"]));
        let applied = guard.decide(Some(&office), now);
        assert_eq!(applied.filter, Some(office.clone()));
        let next = guard.decide(Some(&office), now);
        assert!(
            !guard.panel_reached(applied.pass),
            "the report of the pass that applied it does not count, even when late"
        );
        assert_eq!(next.filter, Some(office.clone()));
        assert!(guard.panel_reached(next.pass));
        let late = now + chrono::Duration::minutes(5);
        let decision = guard.decide(Some(&office), late);
        assert_eq!((decision.filter, decision.warning), (Some(office), None));
    }

    #[test]
    fn a_filter_not_confirmed_in_time_goes_back_to_the_previous_one_even_after_a_restart() {
        let files = Arc::new(MemoryFiles::default());
        let (now, office, typo) = (
            Utc::now(),
            filter(&["198.51.100.0/24"]),
            filter(&["198.51.10.0/24"]),
        );
        let mut first = guard(&files);
        first.decide(Some(&office), now);
        let second = first.decide(Some(&office), now);
        assert!(first.panel_reached(second.pass));
        // The new filter: applied, then the panel is never reached again.
        assert_eq!(first.decide(Some(&typo), now).filter, Some(typo.clone()));
        let soon = now + chrono::Duration::seconds(30);
        assert_eq!(first.decide(Some(&typo), soon).filter, Some(typo.clone()));
        // The agent restarts; the deadline still holds.
        let mut restarted = guard(&files);
        let late = now + chrono::Duration::seconds(61);
        let decision = restarted.decide(Some(&typo), late);
        assert_eq!(
            decision.filter,
            Some(office.clone()),
            "back to the confirmed one"
        );
        assert!(decision.rolled_back.unwrap().contains("rolled back"));
        assert!(
            !restarted.panel_reached(decision.pass),
            "nothing on trial any more"
        );
        // Not tried again while the panel asks for it; a new one is.
        let decision = restarted.decide(Some(&typo), late);
        assert_eq!(decision.filter, Some(office.clone()));
        assert!(decision.warning.is_some() && decision.rolled_back.is_none());
        let fixed = filter(&["198.51.100.0/24", "203.0.113.0/24"]);
        assert_eq!(restarted.decide(Some(&fixed), late).filter, Some(fixed));
    }

    #[test]
    fn taking_the_filter_away_needs_no_trial_and_a_first_filter_rolls_back_to_none() {
        let files = Arc::new(MemoryFiles::default());
        let mut guard = guard(&files);
        let (now, office) = (Utc::now(), filter(&["198.51.100.0/24"]));
        guard.decide(Some(&office), now);
        let decision = guard.decide(Some(&office), now + chrono::Duration::seconds(60));
        assert_eq!(decision.filter, None, "rolled back to no filter");
        assert_eq!(guard.decide(None, now).filter, None);
        assert_eq!(
            guard.decide(Some(&office), now).filter,
            Some(office),
            "tried again"
        );
    }
}
