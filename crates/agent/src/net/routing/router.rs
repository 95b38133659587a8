//! Keeps the node's table equal to the plan, pass after pass.
//!
//! - At agent start, after drift, and when the node-wide shape changes: the table is rendered
//!   whole and replaced in one transaction.
//! - Otherwise only elements change (a site added, moved or stopped): one small transaction.
//! - Before either, the table is read back and compared with what was last applied. Whatever
//!   differs (the table gone or flushed, a rule added by hand, an element deleted) is drift:
//!   it is described line by line, and the table is replaced whole.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::listing::Listing;
use super::nft::{Nft, NftError};
use super::plan::{Element, RoutingPlan, Shape, Slot, element_changes};
use super::render;

/// What the table held after the last apply.
#[derive(Clone, Debug)]
struct Applied {
    shape: Shape,
    elements: BTreeMap<Slot, Element>,
    /// The skeleton nft listed (tersely) right after the last full apply.
    skeleton: Vec<String>,
    /// When the elements were last read back and compared.
    elements_checked: Instant,
}

/// Up to this many elements, they are read back and compared on every pass; beyond, once
/// per [`ELEMENT_CHECK_EVERY`] (10,000 sites list in about 0.4 s). Rules, chains and sets
/// are compared on every pass whatever the size, from a listing without elements.
const ELEMENTS_CHECKED_EVERY_PASS: usize = 2_000;
const ELEMENT_CHECK_EVERY: Duration = Duration::from_secs(60);

impl Applied {
    fn elements_due(&self) -> bool {
        self.elements.len() <= ELEMENTS_CHECKED_EVERY_PASS
            || self.elements_checked.elapsed() >= ELEMENT_CHECK_EVERY
    }
}

/// What one `ensure` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The table was rendered and replaced whole.
    pub replaced: bool,
    pub removed: usize,
    pub added: usize,
    /// What had changed behind alveole's back, if anything.
    pub drift: Option<Drift>,
}

/// A difference between the table and what alveole last applied, found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// One line per difference: `-` for what was missing, `+` for what was not alveole's.
    pub lines: Vec<String>,
    /// Every table was gone, Docker's included: Docker must be restarted to get its rules
    /// back (alveole never writes them).
    pub docker_rules_lost: bool,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.lines.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Listing(#[from] super::listing::ListingError),
    #[error("the router stopped in an earlier pass (a panic); the agent must restart")]
    Poisoned,
    #[error("the routing task stopped before it finished")]
    Task(#[source] tokio::task::JoinError),
}

/// The node's table and what alveole knows of it.
#[derive(Debug)]
pub struct Router<N> {
    nft: N,
    applied: Option<Applied>,
    /// Whether Docker's chains were there at the last look.
    docker_seen: bool,
}

impl<N: Nft> Router<N> {
    pub fn new(nft: N) -> Self {
        Self {
            nft,
            applied: None,
            docker_seen: false,
        }
    }

    pub fn nft(&self) -> &N {
        &self.nft
    }

    /// Makes the table match `plan`, repairing and describing drift first.
    pub fn ensure(&mut self, plan: &RoutingPlan) -> Result<Outcome, RoutingError> {
        let docker_now = self.docker_present();
        let drift = match &self.applied {
            None => None,
            Some(applied) => self.drift(applied, docker_now)?,
        };
        if drift.is_none()
            && let Some(applied) = self.applied.as_mut()
            && applied.elements_due()
        {
            applied.elements_checked = Instant::now();
        }
        self.docker_seen = docker_now;
        let whole = drift.is_some()
            || self
                .applied
                .as_ref()
                .is_none_or(|applied| applied.shape != plan.shape);
        if whole {
            self.replace(plan)?;
            return Ok(Outcome {
                replaced: true,
                removed: 0,
                added: plan.elements.len(),
                drift,
            });
        }
        let Some(applied) = self.applied.as_mut() else {
            return Ok(Outcome::default());
        };
        let (removed, added) = element_changes(&applied.elements, &plan.elements);
        if !removed.is_empty() || !added.is_empty() {
            let batch = render::changes(&plan.shape, &removed, &added);
            if let Err(error) = self.nft.apply(&batch.to_string()) {
                // The transaction changed nothing; the next pass renders the table whole.
                self.applied = None;
                return Err(error.into());
            }
            applied.elements = plan.elements.clone();
        }
        Ok(Outcome {
            replaced: false,
            removed: removed.len(),
            added: added.len(),
            drift: None,
        })
    }

    /// Renders the whole table, replaces it, and remembers nft's own listing of it.
    fn replace(&mut self, plan: &RoutingPlan) -> Result<(), RoutingError> {
        self.applied = None;
        let batch = render::full(&plan.shape, plan.elements.values());
        self.nft.apply(&batch)?;
        let listing = self
            .nft
            .list_table(&plan.shape.table, false)?
            .ok_or_else(|| {
                NftError::Refused("the table vanished right after it was applied".into())
            })?;
        let listing = Listing::parse(&listing)?;
        self.applied = Some(Applied {
            shape: plan.shape.clone(),
            elements: plan.elements.clone(),
            skeleton: listing.skeleton,
            elements_checked: Instant::now(),
        });
        Ok(())
    }

    /// Reads the table back and describes what differs from the last apply.
    fn drift(&self, applied: &Applied, docker_now: bool) -> Result<Option<Drift>, RoutingError> {
        let table = &applied.shape.table;
        let with_elements = applied.elements_due();
        let Some(listing) = self.nft.list_table(table, with_elements)? else {
            let docker_rules_lost = self.docker_seen && !docker_now;
            let mut lines = vec![format!("- table inet {table} (deleted)")];
            if docker_rules_lost {
                lines.push(
                    "the whole ruleset was flushed: Docker's rules are gone too; restart Docker \
                     (systemctl restart docker) to get them back"
                        .to_owned(),
                );
            }
            return Ok(Some(Drift {
                lines,
                docker_rules_lost,
            }));
        };
        let listing = Listing::parse(&listing)?;
        let mut lines = multiset_difference(&applied.skeleton, &listing.skeleton);
        if lines.is_empty() && applied.skeleton != listing.skeleton {
            lines.push("~ the same rules in another order".to_owned());
        }
        if with_elements {
            let (missing, unexpected) = element_changes(&applied.elements, &listing.elements);
            lines.extend(missing.iter().map(|e| format!("- {e}")));
            lines.extend(unexpected.iter().map(|e| format!("+ {e}")));
            let ingress = applied.shape.ingress;
            let expected: BTreeMap<u16, u16> = std::iter::once((80, ingress.http))
                .chain(ingress.https.map(|https| (443, https)))
                .collect();
            if listing.ingress != expected {
                lines.push(format!(
                    "~ ingress ports {:?} instead of {expected:?}",
                    listing.ingress
                ));
            }
        }
        Ok((!lines.is_empty()).then_some(Drift {
            lines,
            docker_rules_lost: false,
        }))
    }

    /// Whether Docker's chains are in the ruleset (iptables-nft keeps them in nf_tables).
    fn docker_present(&self) -> bool {
        self.nft
            .chains()
            .map(|chains| chains.iter().any(|(_, _, chain)| chain == "DOCKER"))
            .unwrap_or(false)
    }

    /// Deletes the table (a retired node, tests).
    pub fn remove(&mut self, shape: &Shape) -> Result<(), RoutingError> {
        self.applied = None;
        self.nft.apply(&render::delete(&shape.table).to_string())?;
        Ok(())
    }
}

/// `-` lines for what `expected` has and `actual` lacks, `+` lines for the reverse, counting
/// repeats (a rule added twice is two lines).
fn multiset_difference(expected: &[String], actual: &[String]) -> Vec<String> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for line in expected {
        *counts.entry(line).or_default() += 1;
    }
    for line in actual {
        *counts.entry(line).or_default() -= 1;
    }
    let mut lines = Vec::new();
    for (line, count) in counts {
        let sign = if count > 0 { '-' } else { '+' };
        for _ in 0..count.unsigned_abs() {
            lines.push(format!("{sign} {line}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_counts_repeats_both_ways() {
        let expected = vec!["a".to_owned(), "b".to_owned()];
        let actual = vec!["b".to_owned(), "c".to_owned(), "c".to_owned()];
        assert_eq!(
            multiset_difference(&expected, &actual),
            ["- a", "+ c", "+ c"]
        );
        assert!(multiset_difference(&expected, &expected).is_empty());
    }
}
