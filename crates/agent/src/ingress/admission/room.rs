//! One site's admissions and waiting line, as pure state: every call is given the time (ms
//! since the epoch, the clock passes are stamped with), so that tests drive it without
//! waiting.
//!
//! Admitted visitors count as active until `active_ms` after their last request. Above the
//! limit (or the rate of new visitors), newcomers join a line per class, ordered by when they
//! joined: a pass carries that time, so a visitor keeps their place on any node. Places free
//! up as visitors leave; the next visitors are *called in* and admitted at their next
//! request. Classes take turns by stride scheduling: each class with people waiting gets at
//! least its share of the calls, and a class with nobody waiting leaves its share to others.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// A class by its index: 0 is everyone else, `i + 1` the site's `i`-th class.
pub(crate) type ClassIx = usize;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RoomLimits {
    pub active_visitors: u32,
    pub new_per_minute: u32,
    pub active_ms: u64,
    pub refresh_ms: u64,
    /// Per class index: its share of the calls, in percent (everyone else's first).
    pub shares: Vec<u32>,
}

impl RoomLimits {
    /// How long a waiting visitor keeps their place after their last refresh: three
    /// refreshes, and a little for a slow network.
    pub fn keep_place_ms(&self) -> u64 {
        self.refresh_ms * 3 + 5_000
    }
}

/// What the ingress knows of a visitor from their pass.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Known {
    /// No pass, or one that does not verify (forged, another site's).
    Nobody,
    Admitted {
        visitor: u64,
        class: ClassIx,
        seen_ms: u64,
    },
    Waiting {
        visitor: u64,
        class: ClassIx,
        joined_ms: u64,
        seen_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Admitted {
        visitor: u64,
        class: ClassIx,
        /// Called in from the line (counts in the waiting-time metric).
        waited_ms: Option<u64>,
    },
    Waiting {
        visitor: u64,
        class: ClassIx,
        joined_ms: u64,
        /// 1 for the first in their class's line.
        place: usize,
        /// The estimated wait: visitors ahead ÷ the class's calls per minute.
        wait_ms: u64,
    },
    /// The line is full: the visitor is turned away (503).
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    seen_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Called {
    at_ms: u64,
    joined_ms: u64,
    class: ClassIx,
}

/// The most visitors one site's line holds; more are turned away.
pub(crate) const MAX_WAITING: usize = 100_000;
/// How often the bookkeeping forgets visitors who left.
const PRUNE_EVERY_MS: u64 = 1_000;
/// Calls counted to measure each class's pace.
const PACE_WINDOW_MS: u64 = 60_000;

#[derive(Debug)]
pub(crate) struct Room {
    limits: RoomLimits,
    active: HashMap<u64, Active>,
    /// Per class: (joined, visitor) → last seen.
    lines: Vec<BTreeMap<(u64, u64), u64>>,
    waiting: usize,
    called: HashMap<u64, Called>,
    /// Stride scheduling: each class's pass (the lowest with people waiting is called next).
    strides: Vec<f64>,
    /// The pass of the class last called: a class that starts waiting starts there.
    virtual_time: f64,
    tokens: f64,
    tokens_at_ms: u64,
    /// Per class: when its recent calls were made (its pace).
    calls: Vec<VecDeque<u64>>,
    pruned_at_ms: u64,
    /// Node pressure lowers the limits (1.0: none).
    factor: f64,
    max_waiting: usize,
    /// Each waiting visitor's place at the last bookkeeping (counting a place in a long
    /// line at each refresh would cost the line's length), and the calls made from each
    /// class's line since.
    places: HashMap<u64, usize>,
    called_since: Vec<usize>,
}

impl Room {
    pub fn new(limits: RoomLimits, now_ms: u64) -> Self {
        let classes = limits.shares.len().max(1);
        let burst = Self::burst(&limits);
        Self {
            lines: vec![BTreeMap::new(); classes],
            strides: vec![0.0; classes],
            calls: vec![VecDeque::new(); classes],
            limits,
            active: HashMap::new(),
            waiting: 0,
            called: HashMap::new(),
            virtual_time: 0.0,
            tokens: burst,
            tokens_at_ms: now_ms,
            pruned_at_ms: now_ms,
            factor: 1.0,
            max_waiting: MAX_WAITING,
            places: HashMap::new(),
            called_since: vec![0; classes],
        }
    }

    /// New visitors admitted at once: ten seconds' worth, at least one.
    fn burst(limits: &RoomLimits) -> f64 {
        (f64::from(limits.new_per_minute) / 6.0).max(1.0)
    }

    /// Lowers (or restores) the limits under node pressure: `factor` in (0, 1].
    pub fn set_factor(&mut self, factor: f64) {
        self.factor = factor.clamp(0.05, 1.0);
    }

    fn active_limit(&self) -> usize {
        ((f64::from(self.limits.active_visitors) * self.factor).ceil() as usize).max(1)
    }

    fn per_ms(&self) -> f64 {
        f64::from(self.limits.new_per_minute) * self.factor / 60_000.0
    }

    pub fn active(&self) -> usize {
        self.active.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Whether a pass admitted and last renewed at `seen_ms` still admits (not one from
    /// the future either: clocks of nodes differ by less than a refresh).
    pub fn still_admitted(&self, seen_ms: u64, now_ms: u64) -> bool {
        seen_ms.saturating_add(self.limits.active_ms) >= now_ms
            && seen_ms <= now_ms.saturating_add(self.limits.keep_place_ms())
    }

    /// Whether newcomers would wait: people are in line, or the room is full.
    pub fn is_open(&mut self, now_ms: u64) -> bool {
        self.tick(now_ms);
        self.waiting > 0 || !self.has_room()
    }

    fn has_room(&self) -> bool {
        self.active.len() + self.called.len() < self.active_limit() && self.tokens >= 1.0
    }

    /// A visitor's request: admitted, or told their place.
    pub fn enter(
        &mut self,
        known: Known,
        class_of_new: ClassIx,
        now_ms: u64,
        new_visitor: u64,
    ) -> Outcome {
        self.tick(now_ms);
        let keep = self.limits.keep_place_ms();
        let (visitor, class, joined) = match known {
            Known::Admitted {
                visitor,
                class,
                seen_ms,
            } if self.still_admitted(seen_ms, now_ms) => {
                // Admitted once, admitted while active: even above the limit (a site that
                // moved here brings its visitors).
                self.active.insert(visitor, Active { seen_ms: now_ms });
                return Outcome::Admitted {
                    visitor,
                    class,
                    waited_ms: None,
                };
            }
            Known::Waiting {
                visitor,
                class,
                joined_ms,
                seen_ms,
            } if seen_ms.saturating_add(keep) >= now_ms && joined_ms <= now_ms => {
                (visitor, class, Some(joined_ms))
            }
            // An expired pass keeps its class, not its place.
            Known::Admitted { visitor, class, .. } | Known::Waiting { visitor, class, .. } => {
                (visitor, class, None)
            }
            Known::Nobody => (new_visitor, class_of_new, None),
        };
        let class = class.min(self.lines.len() - 1);
        let joined = match joined {
            Some(joined) => joined,
            None if self.waiting == 0 && self.has_room() => {
                self.tokens -= 1.0;
                self.active.insert(visitor, Active { seen_ms: now_ms });
                return Outcome::Admitted {
                    visitor,
                    class,
                    waited_ms: None,
                };
            }
            None => now_ms,
        };
        if let Some(called) = self.called.remove(&visitor) {
            self.active.insert(visitor, Active { seen_ms: now_ms });
            return Outcome::Admitted {
                visitor,
                class: called.class,
                waited_ms: Some(now_ms.saturating_sub(called.joined_ms)),
            };
        }
        let key = (joined, visitor);
        if !self.lines[class].contains_key(&key) {
            if self.waiting >= self.max_waiting {
                return Outcome::Full;
            }
            if self.lines[class].is_empty() {
                self.strides[class] = self.strides[class].max(self.virtual_time);
            }
            self.waiting += 1;
        }
        self.lines[class].insert(key, now_ms);
        self.call_in(now_ms);
        if let Some(called) = self.called.remove(&visitor) {
            self.active.insert(visitor, Active { seen_ms: now_ms });
            return Outcome::Admitted {
                visitor,
                class,
                waited_ms: Some(now_ms.saturating_sub(called.joined_ms)),
            };
        }
        let place = self.place_of(class, key);
        Outcome::Waiting {
            visitor,
            class,
            joined_ms: joined,
            place,
            wait_ms: self.estimate_ms(class, place, now_ms),
        }
    }

    fn place_of(&self, class: ClassIx, key: (u64, u64)) -> usize {
        let line = &self.lines[class];
        if let Some(place) = self.places.get(&key.1) {
            return place.saturating_sub(self.called_since[class]).max(1);
        }
        if line.last_key_value().is_some_and(|(last, _)| *last == key) {
            return line.len();
        }
        // Back in line after a move, ahead of newcomers: counted once, until the next
        // bookkeeping.
        line.range(..key).count() + 1
    }

    /// Visitors ahead ÷ the class's pace: its calls over the last minute, or before any,
    /// what its share of the limits allows.
    fn estimate_ms(&self, class: ClassIx, place: usize, now_ms: u64) -> u64 {
        let recent: Vec<u64> = self.calls[class]
            .iter()
            .copied()
            .filter(|at| *at + PACE_WINDOW_MS >= now_ms)
            .collect();
        // Calls per minute over the time they span, once there are enough of them to judge
        // a pace by (a line that just formed is not judged on its first few calls).
        let span = recent
            .first()
            .map_or(0, |first| now_ms.saturating_sub(*first));
        let per_minute = if recent.len() >= 20 || span >= 10_000 {
            recent.len() as f64 * 60_000.0 / span.max(1_000) as f64
        } else {
            let turnover = f64::from(self.limits.active_visitors) * 60_000.0
                / self.limits.active_ms.max(1) as f64;
            let base = (f64::from(self.limits.new_per_minute)).min(turnover) * self.factor;
            let backlogged: u32 = (0..self.lines.len())
                .filter(|c| !self.lines[*c].is_empty())
                .map(|c| self.limits.shares.get(c).copied().unwrap_or(100))
                .sum();
            let share = self.limits.shares.get(class).copied().unwrap_or(100);
            base * f64::from(share) / f64::from(backlogged.max(share).max(1))
        };
        // The first in line still waits for one place to free.
        (place as f64 * 60_000.0 / per_minute.max(0.01)) as u64
    }

    /// Forgets who left, refills the rate of new visitors, calls in whom there is room for.
    fn tick(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.tokens_at_ms);
        if elapsed > 0 {
            self.tokens =
                (self.tokens + elapsed as f64 * self.per_ms()).min(Self::burst(&self.limits));
            self.tokens_at_ms = now_ms;
        }
        if now_ms.saturating_sub(self.pruned_at_ms) >= PRUNE_EVERY_MS {
            self.prune(now_ms);
        }
        self.call_in(now_ms);
    }

    fn prune(&mut self, now_ms: u64) {
        self.pruned_at_ms = now_ms;
        let active_ms = self.limits.active_ms;
        let keep = self.limits.keep_place_ms();
        self.active
            .retain(|_, a| a.seen_ms.saturating_add(active_ms) >= now_ms);
        self.called
            .retain(|_, c| c.at_ms.saturating_add(keep) >= now_ms);
        let mut waiting = 0;
        self.places.clear();
        for line in &mut self.lines {
            line.retain(|_, seen| seen.saturating_add(keep) >= now_ms);
            waiting += line.len();
            for (place, (_, visitor)) in line.keys().enumerate() {
                self.places.insert(*visitor, place + 1);
            }
        }
        self.called_since.iter_mut().for_each(|n| *n = 0);
        self.waiting = waiting;
        for calls in &mut self.calls {
            while calls.front().is_some_and(|at| at + PACE_WINDOW_MS < now_ms) {
                calls.pop_front();
            }
        }
    }

    fn call_in(&mut self, now_ms: u64) {
        while self.waiting > 0 && self.has_room() {
            let Some(class) = (0..self.lines.len())
                .filter(|c| !self.lines[*c].is_empty())
                .min_by(|a, b| {
                    self.strides[*a]
                        .total_cmp(&self.strides[*b])
                        // Ties go to the larger share.
                        .then(self.share(*b).cmp(&self.share(*a)))
                })
            else {
                break;
            };
            let Some(((joined_ms, visitor), _)) = self.lines[class].pop_first() else {
                break;
            };
            self.waiting -= 1;
            self.tokens -= 1.0;
            self.called_since[class] += 1;
            self.places.remove(&visitor);
            self.virtual_time = self.strides[class];
            self.strides[class] += 1.0 / f64::from(self.share(class).max(1));
            self.calls[class].push_back(now_ms);
            self.called.insert(
                visitor,
                Called {
                    at_ms: now_ms,
                    joined_ms,
                    class,
                },
            );
        }
    }

    fn share(&self, class: ClassIx) -> u32 {
        self.limits.shares.get(class).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn limits(active: u32, per_minute: u32, shares: Vec<u32>) -> RoomLimits {
        RoomLimits {
            active_visitors: active,
            new_per_minute: per_minute,
            active_ms: 300_000,
            refresh_ms: 20_000,
            shares,
        }
    }

    fn waiting(outcome: &Outcome) -> (u64, u64, usize) {
        match outcome {
            Outcome::Waiting {
                visitor,
                joined_ms,
                place,
                ..
            } => (*visitor, *joined_ms, *place),
            other => panic!("expected to wait: {other:?}"),
        }
    }

    fn as_waiting(visitor: u64, joined_ms: u64, now: u64) -> Known {
        Known::Waiting {
            visitor,
            class: 0,
            joined_ms,
            seen_ms: now,
        }
    }

    #[test]
    fn below_the_limits_everyone_walks_in_and_stays_in() {
        let mut room = Room::new(limits(3, 600, vec![100]), T0);
        for visitor in 1..=3 {
            assert!(matches!(
                room.enter(Known::Nobody, 0, T0, visitor),
                Outcome::Admitted {
                    waited_ms: None,
                    ..
                }
            ));
        }
        assert!(room.is_open(T0));
        // The fourth waits; the first ones, back, are still in.
        waiting(&room.enter(Known::Nobody, 0, T0, 4));
        let back = Known::Admitted {
            visitor: 1,
            class: 0,
            seen_ms: T0,
        };
        assert!(matches!(
            room.enter(back, 0, T0 + 60_000, 9),
            Outcome::Admitted { visitor: 1, .. }
        ));
    }

    #[test]
    fn the_line_moves_in_order_as_visitors_leave_and_each_place_goes_down() {
        let mut room = Room::new(limits(2, 6000, vec![100]), T0);
        room.enter(Known::Nobody, 0, T0, 1);
        room.enter(Known::Nobody, 0, T0 + 1, 2);
        let mut line = Vec::new();
        for visitor in 10..15 {
            let (v, joined, place) = waiting(&room.enter(Known::Nobody, 0, T0 + visitor, visitor));
            assert_eq!(place, line.len() + 1);
            line.push((v, joined));
        }
        // Visitor 1 stays; visitor 2 leaves. Everyone refreshes every 20 s.
        let mut now = T0;
        let mut admitted = Vec::new();
        let mut places: HashMap<u64, usize> = HashMap::new();
        while admitted.len() < line.len() && now < T0 + 3_600_000 {
            now += 20_000;
            room.enter(
                Known::Admitted {
                    visitor: 1,
                    class: 0,
                    seen_ms: now - 20_000,
                },
                0,
                now,
                99,
            );
            for &(visitor, joined) in &line {
                if admitted.contains(&visitor) {
                    continue;
                }
                match room.enter(as_waiting(visitor, joined, now - 20_000), 0, now, 99) {
                    Outcome::Admitted { visitor, .. } => admitted.push(visitor),
                    Outcome::Waiting { place, .. } => {
                        let before = places.insert(visitor, place);
                        assert!(before.is_none_or(|b| place <= b), "a place never grows");
                    }
                    Outcome::Full => panic!("full"),
                }
            }
        }
        // One place frees as visitor 2's admission runs out: then one at a time, in order.
        assert_eq!(admitted, [10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_place_survives_a_move_to_another_room_and_a_forged_pass_goes_to_the_back() {
        let mut here = Room::new(limits(1, 600, vec![100]), T0);
        here.enter(Known::Nobody, 0, T0, 1);
        let (first, first_joined, _) = waiting(&here.enter(Known::Nobody, 0, T0 + 10, 2));
        let (second, second_joined, _) = waiting(&here.enter(Known::Nobody, 0, T0 + 20, 3));
        // The site moves: its new node's room starts empty; the second visitor refreshes
        // first, then the first: each has the place their pass says.
        let mut there = Room::new(limits(1, 600, vec![100]), T0 + 30);
        there.enter(
            Known::Admitted {
                visitor: 1,
                class: 0,
                seen_ms: T0,
            },
            0,
            T0 + 30,
            0,
        );
        let now = T0 + 40;
        assert_eq!(
            waiting(&there.enter(as_waiting(second, second_joined, now), 0, now, 0)).2,
            1
        );
        assert_eq!(
            waiting(&there.enter(as_waiting(first, first_joined, now), 0, now, 0)).2,
            1
        );
        assert_eq!(
            waiting(&there.enter(as_waiting(second, second_joined, now), 0, now, 0)).2,
            2
        );
        // Someone whose pass does not verify is Nobody: the back of the line.
        assert_eq!(waiting(&there.enter(Known::Nobody, 0, now, 77)).2, 3);
    }

    #[test]
    fn a_visitor_who_stops_refreshing_loses_their_place_and_rejoins_at_the_back() {
        let mut room = Room::new(limits(1, 600, vec![100]), T0);
        room.enter(Known::Nobody, 0, T0, 1);
        let (gone, joined, _) = waiting(&room.enter(Known::Nobody, 0, T0, 2));
        let (stays, stays_joined, place) = waiting(&room.enter(Known::Nobody, 0, T0 + 1, 3));
        assert_eq!(place, 2);
        let later = T0 + room.limits.keep_place_ms() + 2_000;
        // Visitor 3 kept refreshing; visitor 2 did not, and comes back after the others.
        for now in (T0..later).step_by(20_000) {
            room.enter(as_waiting(stays, stays_joined, now), 0, now, 0);
        }
        room.enter(
            Known::Admitted {
                visitor: 1,
                class: 0,
                seen_ms: later - 1_000,
            },
            0,
            later,
            0,
        );
        assert_eq!(
            waiting(&room.enter(as_waiting(stays, stays_joined, later), 0, later, 0)).2,
            1
        );
        let (_, rejoined, place) = waiting(&room.enter(as_waiting(gone, joined, T0), 0, later, 0));
        assert_eq!((rejoined, place), (later, 2));
    }

    #[test]
    fn classes_get_at_least_their_share_and_everyone_else_still_moves() {
        // Teachers reserve 60%; everyone else has the rest. 400 of each wait.
        let mut room = Room::new(limits(1, 60_000, vec![40, 60]), T0);
        room.enter(Known::Nobody, 0, T0, 1);
        for visitor in 0..400u64 {
            room.enter(Known::Nobody, 0, T0, 1_000 + visitor);
            room.enter(Known::Nobody, 1, T0, 5_000 + visitor);
        }
        let mut counts = [0usize; 2];
        // Each call frees one place: let 100 visitors in, one by one.
        let mut now = T0;
        for _ in 0..100 {
            now += 400_000; // every admission runs out: room for one more
            room.lines.iter_mut().for_each(|line| {
                for seen in line.values_mut() {
                    *seen = now;
                }
            });
            room.tick(now);
            for called in room.called.values() {
                counts[called.class] += 1;
            }
            room.called.clear();
        }
        assert_eq!(counts[0] + counts[1], 100, "{counts:?}");
        assert!((58..=62).contains(&counts[1]), "teachers: {counts:?}");
        assert!(counts[0] >= 38, "everyone else still moves: {counts:?}");
    }

    #[test]
    fn the_estimate_is_the_visitors_ahead_over_the_pace() {
        let mut room = Room::new(limits(1, 60, vec![100]), T0);
        room.enter(Known::Nobody, 0, T0, 1);
        for visitor in 2..12 {
            room.enter(Known::Nobody, 0, T0, visitor);
        }
        match room.enter(Known::Nobody, 0, T0, 12) {
            Outcome::Waiting { place, wait_ms, .. } => {
                assert_eq!(place, 11);
                // Before any call: 1 place per 5 minutes (the admission's lifetime) caps the
                // 60 per minute: 11 × 5 min.
                assert_eq!(wait_ms, 11 * 300_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn node_pressure_lowers_the_limit_and_its_end_restores_it() {
        let mut room = Room::new(limits(4, 6000, vec![100]), T0);
        room.set_factor(0.5);
        assert!(matches!(
            room.enter(Known::Nobody, 0, T0, 1),
            Outcome::Admitted { .. }
        ));
        assert!(matches!(
            room.enter(Known::Nobody, 0, T0, 2),
            Outcome::Admitted { .. }
        ));
        let (third, joined, _) = waiting(&room.enter(Known::Nobody, 0, T0, 3));
        room.set_factor(1.0);
        assert!(matches!(
            room.enter(as_waiting(third, joined, T0), 0, T0 + 1, 0),
            Outcome::Admitted { visitor: 3, .. }
        ));
    }

    #[test]
    fn the_line_is_bounded() {
        let mut room = Room::new(limits(1, 60, vec![100]), T0);
        room.max_waiting = 100;
        room.enter(Known::Nobody, 0, T0, 0);
        for visitor in 1..=100 {
            room.enter(Known::Nobody, 0, T0, visitor);
        }
        assert_eq!(room.waiting(), 100);
        assert_eq!(room.enter(Known::Nobody, 0, T0, u64::MAX), Outcome::Full);
    }
}
