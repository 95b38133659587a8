//! Planning an evacuation: where each site of the nodes being emptied goes, in which order,
//! how long it will take, and whether a deadline holds (and if not, what would make it hold).
//! Pure: the store reads the loads and sizes, the panel learns what moves cost
//! ([`super::cost`]) and which nodes can take part.
//!
//! - **Placement** is capacity-aware: each site goes where it fits and leaves the most
//!   headroom, counting the sites already placed by this plan, so no node is promised beyond
//!   capacity × overcommit. Nodes at another provider than the site's are preferred (a
//!   provider leaving takes all its nodes); the same provider is used only when no other has
//!   room. Big sites are placed first, while room is left.
//! - **Duration** of one move: a fixed part (image, freeze, start) plus its volume at a
//!   rate, both learned from past moves between the same providers where there are some. Moves run `parallelism` at a time, longest first, which keeps the
//!   whole evacuation short (the classic longest-processing-time schedule).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capacity::NodeLoad;
use crate::ids::{NodeId, ProviderId, SiteId};
use crate::quantity::format_bytes;
use crate::resources::Reservation;

use super::cost::{CostBook, MoveCost};

/// The most moves an evacuation runs at once.
pub const MAX_PARALLELISM: u32 = 32;

/// A site to move away.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteToMove {
    pub site_id: SiteId,
    pub name: String,
    pub from_node: NodeId,
    pub from_provider: ProviderId,
    pub reservation: Reservation,
    /// Bytes its volume holds (measured, else its quota).
    pub volume_bytes: u64,
    /// Where its backups are: it may not go to their node or provider.
    pub backups_at: Vec<crate::backup::TargetPlace>,
}

impl SiteToMove {
    /// Why its backups keep it from `destination`, if they do.
    fn kept_from(&self, destination: &Destination) -> Option<String> {
        self.backups_at.iter().find_map(|place| {
            crate::backup::refuses_node(destination.load.node_id, destination.provider, place)
                .map(|(_, why)| why)
        })
    }
}

/// A node that may receive sites, with what it already holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub load: NodeLoad,
    pub name: String,
    pub provider: ProviderId,
}

/// A node left out of the plan as a destination, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExcludedNode {
    pub node_id: NodeId,
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    pub site_id: SiteId,
    pub name: String,
    pub from_node: NodeId,
    pub to_node: NodeId,
    pub to_name: String,
    pub volume_bytes: u64,
    /// Its move's estimated duration.
    pub seconds: u64,
    /// When it is expected to finish, from the start of the evacuation.
    pub done_after_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Unplaced {
    pub site_id: SiteId,
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every site has a place and the moves end before the deadline.
    Holds,
    /// Every site has a place, but the moves end after the deadline.
    Late,
    /// Some sites have no place, or one move alone outlasts the time left.
    Impossible,
    /// No deadline was given.
    NoDeadline,
}

/// The plan, in the order moves start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvacuationPlan {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<Unplaced>,
    /// Nodes that cannot receive sites now, and why.
    pub excluded: Vec<ExcludedNode>,
    pub parallelism: u32,
    /// What a move costs across the co-op (pairs of providers with history have their own).
    pub cost: MoveCost,
    /// For the placed sites, from the start.
    pub estimated_seconds: u64,
    pub deadline: Option<DateTime<Utc>>,
    pub verdict: Verdict,
    /// The verdict in plain words.
    pub statement: String,
    /// What would make the deadline hold.
    pub suggestions: Vec<String>,
}

/// When each of `durations` (in order) ends, `parallelism` at a time, each starting as soon as
/// a lane is free; and when the last ends.
pub fn schedule(durations: &[f64], parallelism: u32) -> (Vec<f64>, f64) {
    let mut lanes = vec![0.0_f64; parallelism.clamp(1, MAX_PARALLELISM) as usize];
    let mut ends = Vec::with_capacity(durations.len());
    for duration in durations {
        let (lane, _) = lanes
            .iter()
            .enumerate()
            .fold((0, f64::MAX), |best, (i, free)| {
                if *free < best.1 { (i, *free) } else { best }
            });
        lanes[lane] += duration;
        ends.push(lanes[lane]);
    }
    let total = ends.iter().copied().fold(0.0, f64::max);
    (ends, total)
}

fn add(load: &mut NodeLoad, wanted: Reservation) {
    load.reserved.cpu_millis += wanted.cpu_millis;
    load.reserved.memory_bytes += wanted.memory_bytes;
    load.reserved.disk_bytes += wanted.disk_bytes;
}

/// The destination with the most headroom after `wanted`, at another provider than `avoid`
/// if one has room.
fn best_destination(destinations: &[Destination], site: &SiteToMove) -> Option<usize> {
    let (wanted, avoid) = (site.reservation, site.from_provider);
    let pick = |other_provider: bool| {
        let candidates: Vec<NodeLoad> = destinations
            .iter()
            .filter(|d| (d.provider != avoid) == other_provider)
            .filter(|d| site.kept_from(d).is_none())
            .map(|d| d.load)
            .collect();
        crate::capacity::choose_node(&candidates, wanted)
            .and_then(|id| destinations.iter().position(|d| d.load.node_id == id))
    };
    pick(true).or_else(|| pick(false))
}

/// A duration in words a person reads at a glance: `45 s`, `12 min`, `3.5 h`.
pub fn duration_text(seconds: f64) -> String {
    let seconds = seconds.ceil() as u64;
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{:.1} h", seconds as f64 / 3600.0),
    }
}

/// Plans moving `sites` to `destinations` (`excluded`: the nodes left out, said in the plan).
pub fn plan(
    mut sites: Vec<SiteToMove>,
    mut destinations: Vec<Destination>,
    excluded: Vec<ExcludedNode>,
    costs: &CostBook,
    parallelism: u32,
    now: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
) -> EvacuationPlan {
    let parallelism = parallelism.clamp(1, MAX_PARALLELISM);
    // The biggest first, by the share of the tightest resource, then by volume.
    sites.sort_by(|a, b| {
        let size = |s: &SiteToMove| {
            (
                s.reservation.memory_bytes,
                s.reservation.cpu_millis,
                s.reservation.disk_bytes,
                s.volume_bytes,
            )
        };
        size(b).cmp(&size(a)).then(a.name.cmp(&b.name))
    });
    let mut placed: Vec<(SiteToMove, usize)> = Vec::new();
    let mut unplaced = Vec::new();
    // What the sites without a place need, in all.
    let mut missing = Reservation::default();
    for site in sites {
        match best_destination(&destinations, &site) {
            Some(index) => {
                add(&mut destinations[index].load, site.reservation);
                placed.push((site, index));
            }
            None => {
                missing.cpu_millis += site.reservation.cpu_millis;
                missing.memory_bytes += site.reservation.memory_bytes;
                missing.disk_bytes += site.reservation.disk_bytes;
                // Why: its backups keep it from every node with room, or what the roomiest
                // destination lacks.
                let kept = destinations
                    .iter()
                    .filter(|d| d.load.check_fits(site.reservation).is_ok())
                    .find_map(|d| site.kept_from(d).map(|why| format!("{}: {why}", d.name)));
                let reason = match kept {
                    Some(why) => format!("every node with room is where its backups are ({why})"),
                    None => destinations
                        .iter()
                        .filter_map(|d| d.load.check_fits(site.reservation).err())
                        .min_by_key(|e| e.requested.saturating_sub(e.available))
                        .map_or_else(
                            || "no node can receive it".to_owned(),
                            |e| format!("no node has room for it: {e}"),
                        ),
                };
                unplaced.push(Unplaced {
                    site_id: site.site_id,
                    name: site.name,
                    reason,
                });
            }
        }
    }
    // Longest moves first: the schedule ends soonest.
    placed.sort_by(|a, b| {
        b.0.volume_bytes
            .cmp(&a.0.volume_bytes)
            .then(a.0.name.cmp(&b.0.name))
    });
    let durations: Vec<f64> = placed
        .iter()
        .map(|(s, index)| {
            costs.seconds(
                s.from_provider,
                destinations[*index].provider,
                s.volume_bytes,
            )
        })
        .collect();
    let (ends, total) = schedule(&durations, parallelism);
    let placements: Vec<Placement> = placed
        .iter()
        .zip(durations.iter().zip(&ends))
        .map(|((site, index), (seconds, end))| Placement {
            site_id: site.site_id,
            name: site.name.clone(),
            from_node: site.from_node,
            to_node: destinations[*index].load.node_id,
            to_name: destinations[*index].name.clone(),
            volume_bytes: site.volume_bytes,
            seconds: seconds.ceil() as u64,
            done_after_seconds: end.ceil() as u64,
        })
        .collect();
    let window = deadline.map(|d| (d - now).num_milliseconds().max(0) as f64 / 1000.0);
    let mut suggestions = Vec::new();
    if !unplaced.is_empty() {
        suggestions.push(format!(
            "add room at another provider for the {} site(s) that fit nowhere ({}): at least \
             {} millicores, {} of memory and {} of disk",
            unplaced.len(),
            unplaced
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            missing.cpu_millis,
            format_bytes(missing.memory_bytes),
            format_bytes(missing.disk_bytes)
        ));
    }
    let longest = durations.iter().copied().fold(0.0, f64::max);
    let verdict = match window {
        None if unplaced.is_empty() => Verdict::NoDeadline,
        None => Verdict::Impossible,
        Some(_) if !unplaced.is_empty() => Verdict::Impossible,
        Some(window) if longest > window => Verdict::Impossible,
        Some(window) if total > window => Verdict::Late,
        Some(_) => Verdict::Holds,
    };
    if let Some(window) = window {
        if longest > window {
            let (site, index) = &placed[durations
                .iter()
                .position(|d| *d == longest)
                .unwrap_or_default()];
            let cost = costs.between(site.from_provider, destinations[*index].provider);
            suggestions.push(format!(
                "{} alone takes about {} ({} at {}/s): only a faster link between the nodes, or \
                 a later deadline, can make it; the other sites still move, in this order",
                site.name,
                duration_text(longest),
                format_bytes(site.volume_bytes),
                format_bytes(cost.bytes_per_second)
            ));
        } else if total > window {
            let needed =
                (parallelism..=MAX_PARALLELISM).find(|p| schedule(&durations, *p).1 <= window);
            match needed {
                Some(p) => suggestions.push(format!(
                    "run {p} moves at once instead of {parallelism}: about {}",
                    duration_text(schedule(&durations, p).1)
                )),
                None => suggestions.push(format!(
                    "even {MAX_PARALLELISM} moves at once take about {}: a faster link between \
                     the nodes or a later deadline is needed",
                    duration_text(schedule(&durations, MAX_PARALLELISM).1)
                )),
            }
            let in_time = ends.iter().filter(|end| **end <= window).count();
            let late: Vec<&str> = placements
                .iter()
                .filter(|p| p.done_after_seconds as f64 > window)
                .map(|p| p.name.as_str())
                .collect();
            let shown = late.iter().take(10).copied().collect::<Vec<_>>().join(", ");
            let more = late.len().saturating_sub(10);
            suggestions.push(format!(
                "as planned, {in_time} of {} sites are moved before the deadline; these would \
                 be late: {shown}{}. Move first the sites that matter most, or these on another \
                 route",
                placements.len(),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    let statement = match verdict {
        Verdict::Holds => format!(
            "The deadline holds: {} sites moved in about {}, {} at a time, {} before it.",
            placements.len(),
            duration_text(total),
            parallelism,
            duration_text(window.unwrap_or_default() - total)
        ),
        Verdict::Late => format!(
            "The deadline does not hold: {} sites take about {}, {} at a time, and {} is left.",
            placements.len(),
            duration_text(total),
            parallelism,
            duration_text(window.unwrap_or_default())
        ),
        Verdict::Impossible if !unplaced.is_empty() => format!(
            "Impossible as things stand: {} site(s) fit on no other node.",
            unplaced.len()
        ),
        Verdict::Impossible => format!(
            "Impossible by the deadline: one move alone outlasts the {} left.",
            duration_text(window.unwrap_or_default())
        ),
        Verdict::NoDeadline => format!(
            "{} sites moved in about {}, {} at a time.",
            placements.len(),
            duration_text(total),
            parallelism
        ),
    };
    if !excluded.is_empty() {
        suggestions.push(format!(
            "{} node(s) cannot receive sites now: {}",
            excluded.len(),
            excluded
                .iter()
                .map(|e| format!("{} ({})", e.name, e.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !costs.fleet.rate_measured {
        suggestions.push(format!(
            "the rate ({}/s) is an assumption: no moves of different enough sizes were measured \
             yet",
            format_bytes(costs.fleet.bytes_per_second)
        ));
    }
    EvacuationPlan {
        placements,
        unplaced,
        excluded,
        parallelism,
        cost: costs.fleet.clone(),
        estimated_seconds: total.ceil() as u64,
        deadline,
        verdict,
        statement,
        suggestions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Capacity, Overcommit};

    const GIB: u64 = 1 << 30;

    fn destination(name: &str, provider: ProviderId, memory_gib: u64) -> Destination {
        Destination {
            load: NodeLoad {
                node_id: NodeId::generate(),
                capacity: Capacity {
                    cpu_millis: 64_000,
                    memory_bytes: memory_gib * GIB,
                    disk_bytes: 1 << 40,
                },
                overcommit: Overcommit {
                    cpu: 1.0,
                    memory: 1.0,
                },
                reserved: Reservation::default(),
            },
            name: name.into(),
            provider,
        }
    }

    fn site(name: &str, provider: ProviderId, memory_gib: u64, volume: u64) -> SiteToMove {
        SiteToMove {
            site_id: SiteId::generate(),
            name: name.into(),
            from_node: NodeId::generate(),
            from_provider: provider,
            reservation: Reservation {
                cpu_millis: 500,
                memory_bytes: memory_gib * GIB,
                disk_bytes: GIB,
            },
            volume_bytes: volume,
            backups_at: vec![],
        }
    }

    #[test]
    fn a_site_never_goes_where_its_backups_are() {
        let (leaving, vault_provider, other) = (
            ProviderId::generate(),
            ProviderId::generate(),
            ProviderId::generate(),
        );
        let mut site = site("sauve", leaving, 1, GIB);
        site.backups_at = vec![crate::backup::TargetPlace {
            id: crate::ids::BackupTargetId::generate(),
            name: "vault-1".into(),
            provider_id: vault_provider,
            node_id: None,
        }];
        let roomy_there = destination("there", vault_provider, 64);
        let roomy_elsewhere = destination("elsewhere", other, 16);
        let now = Utc::now();
        let planned = plan(
            vec![site.clone()],
            vec![roomy_there.clone(), roomy_elsewhere.clone()],
            vec![],
            &fast(),
            1,
            now,
            None,
        );
        assert_eq!(
            planned.placements[0].to_name, "elsewhere",
            "the roomier node is at its vault's provider"
        );
        let planned = plan(vec![site], vec![roomy_there], vec![], &fast(), 1, now, None);
        assert!(planned.placements.is_empty());
        let reason = &planned.unplaced[0].reason;
        assert!(
            reason.contains("backups") && reason.contains("vault-1"),
            "{reason}"
        );
    }

    /// 3 s per move plus 100 MiB/s, measured.
    fn fast() -> CostBook {
        CostBook {
            fleet: MoveCost {
                fixed_seconds: 3.0,
                bytes_per_second: 100 << 20,
                moves: 20,
                rate_measured: true,
                basis: "measured".into(),
            },
            pairs: Default::default(),
            between_moves_seconds: 0.0,
        }
    }

    fn reserved_on(plan: &EvacuationPlan, sites: &[SiteToMove], node: NodeId) -> u64 {
        plan.placements
            .iter()
            .filter(|p| p.to_node == node)
            .map(|p| {
                sites
                    .iter()
                    .find(|s| s.site_id == p.site_id)
                    .map_or(0, |s| s.reservation.memory_bytes)
            })
            .sum()
    }

    #[test]
    fn sites_are_spread_where_a_naive_placement_would_overfill_one_node() {
        let (leaving, staying) = (ProviderId::generate(), ProviderId::generate());
        let (big, small) = (
            destination("big", staying, 4),
            destination("small", staying, 3),
        );
        let sites: Vec<_> = (0..3)
            .map(|i| site(&format!("s{i}"), leaving, 2, GIB))
            .collect();
        // Naively, each site goes to the node with the most room at the start: "big", three
        // times, 6 GiB on 4.
        let plan = plan(
            sites.clone(),
            vec![big.clone(), small.clone()],
            vec![],
            &fast(),
            2,
            Utc::now(),
            None,
        );
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert!(reserved_on(&plan, &sites, big.load.node_id) <= 4 * GIB);
        assert!(reserved_on(&plan, &sites, small.load.node_id) <= 3 * GIB);
        assert_eq!(plan.verdict, Verdict::NoDeadline);
    }

    #[test]
    fn another_provider_is_preferred_and_the_same_one_used_only_without_room_elsewhere() {
        let (leaving, staying) = (ProviderId::generate(), ProviderId::generate());
        let same = destination("same", leaving, 64);
        let other = destination("other", staying, 4);
        let sites: Vec<_> = (0..3)
            .map(|i| site(&format!("s{i}"), leaving, 2, 0))
            .collect();
        let plan = plan(
            sites,
            vec![same.clone(), other.clone()],
            vec![],
            &fast(),
            1,
            Utc::now(),
            None,
        );
        let to = |node: NodeId| plan.placements.iter().filter(|p| p.to_node == node).count();
        assert_eq!((to(other.load.node_id), to(same.load.node_id)), (2, 1));
    }

    #[test]
    fn a_site_with_no_room_anywhere_makes_the_plan_impossible_and_says_what_is_missing() {
        let provider = ProviderId::generate();
        let plan = plan(
            vec![site("huge", provider, 8, 0), site("fine", provider, 1, 0)],
            vec![destination("only", ProviderId::generate(), 4)],
            vec![],
            &fast(),
            4,
            Utc::now(),
            Some(Utc::now() + chrono::Duration::hours(60)),
        );
        assert_eq!(plan.verdict, Verdict::Impossible);
        assert_eq!(plan.unplaced.len(), 1);
        assert!(
            plan.unplaced[0].reason.contains("memory"),
            "{:?}",
            plan.unplaced
        );
        assert!(
            plan.statement.contains("fit on no other node"),
            "{}",
            plan.statement
        );
        assert!(
            plan.suggestions[0].contains("huge") && plan.suggestions[0].contains("8G"),
            "{:?}",
            plan.suggestions
        );
    }

    #[test]
    fn a_deadline_holds_is_late_with_the_parallelism_that_would_do_or_is_impossible() {
        let (leaving, staying) = (ProviderId::generate(), ProviderId::generate());
        let now = Utc::now();
        // Ten sites of 1 GiB at 100 MiB/s: about 13 s each.
        let sites: Vec<_> = (0..10)
            .map(|i| site(&format!("s{i}"), leaving, 1, GIB))
            .collect();
        let destinations = vec![destination("d", staying, 64)];
        let within = |seconds: i64, parallelism: u32| {
            plan(
                sites.clone(),
                destinations.clone(),
                vec![],
                &fast(),
                parallelism,
                now,
                Some(now + chrono::Duration::seconds(seconds)),
            )
        };
        let holds = within(3600, 2);
        assert_eq!(holds.verdict, Verdict::Holds, "{}", holds.statement);
        assert_eq!(holds.estimated_seconds, 67, "five rounds of 13.24 s");
        assert!(
            holds.placements.iter().all(|p| p.done_after_seconds <= 67),
            "{:?}",
            holds.placements
        );

        let late = within(30, 2);
        assert_eq!(late.verdict, Verdict::Late, "{}", late.statement);
        assert!(
            late.suggestions[0].starts_with("run 5 moves at once instead of 2"),
            "{:?}",
            late.suggestions
        );
        assert!(
            late.suggestions[1].contains("4 of 10 sites"),
            "{:?}",
            late.suggestions
        );

        let impossible = within(10, 32);
        assert_eq!(impossible.verdict, Verdict::Impossible);
        assert!(
            impossible.suggestions[0].contains("alone takes about 14 s"),
            "{:?}",
            impossible.suggestions
        );
    }

    #[test]
    fn an_assumed_rate_and_the_nodes_left_out_are_said() {
        let unheard = ExcludedNode {
            node_id: NodeId::generate(),
            name: "hel-1".into(),
            reason: "its agent has not reported for 10 min".into(),
        };
        let assumed = CostBook::learn(&[], |_| String::new());
        let plan = plan(vec![], vec![], vec![unheard], &assumed, 4, Utc::now(), None);
        assert!(plan.suggestions.iter().any(|s| s.contains("assumption")));
        assert!(
            plan.suggestions
                .iter()
                .any(|s| s.contains("hel-1 (its agent has not reported for 10 min)")),
            "{:?}",
            plan.suggestions
        );
        assert_eq!(plan.excluded.len(), 1);
    }

    #[test]
    fn each_move_costs_what_its_pair_of_providers_measured() {
        let (leaving, slow, quick) = (
            ProviderId::generate(),
            ProviderId::generate(),
            ProviderId::generate(),
        );
        let mut costs = fast();
        costs.pairs.insert(
            (leaving, slow),
            MoveCost {
                bytes_per_second: 1 << 20,
                ..costs.fleet.clone()
            },
        );
        let only = |provider| {
            plan(
                vec![site("s", leaving, 1, 100 << 20)],
                vec![destination("d", provider, 64)],
                vec![],
                &costs,
                1,
                Utc::now(),
                None,
            )
            .estimated_seconds
        };
        assert_eq!(only(slow), 103, "3 s plus 100 MiB at 1 MiB/s");
        assert_eq!(only(quick), 4, "3 s plus 100 MiB at 100 MiB/s");
    }

    proptest::proptest! {
        #[test]
        fn no_node_is_ever_promised_beyond_its_room(
            memories in proptest::collection::vec(1u64..6, 0..40),
            rooms in proptest::collection::vec(0u64..24, 1..6),
        ) {
            let provider = ProviderId::generate();
            let sites: Vec<_> = memories
                .iter()
                .enumerate()
                .map(|(i, m)| site(&format!("s{i}"), provider, *m, 0))
                .collect();
            let destinations: Vec<_> = rooms
                .iter()
                .enumerate()
                .map(|(i, r)| destination(&format!("d{i}"), ProviderId::generate(), *r))
                .collect();
            let plan = plan(sites.clone(), destinations.clone(), vec![], &fast(), 4, Utc::now(), None);
            for d in &destinations {
                proptest::prop_assert!(
                    reserved_on(&plan, &sites, d.load.node_id) <= d.load.capacity.memory_bytes
                );
            }
            proptest::prop_assert_eq!(plan.placements.len() + plan.unplaced.len(), sites.len());
        }
    }
}
