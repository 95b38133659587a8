//! What a move costs, learned from the moves already made: a fixed part (image, freeze,
//! checks, start) plus its bytes at a rate.
//!
//! The two are fitted together, robustly (Theil–Sen): the rate is the median of the slopes
//! between pairs of moves whose sizes differ enough to tell, the fixed part the median of
//! what each move took beyond its bytes. So a history of tiny moves teaches the fixed part
//! and leaves the rate to a wider history (or the assumption), instead of dividing a few
//! hundred bytes by two seconds and calling that the link's speed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::ProviderId;
use crate::quantity::format_bytes;

/// The rate assumed when no history tells it: 50 MiB/s.
pub const ASSUMED_BYTES_PER_SECOND: u64 = 50 << 20;
/// The fixed part assumed when no move was measured yet (seconds).
pub const ASSUMED_FIXED_SECONDS: f64 = 3.0;
/// Two moves tell a rate only when their sizes differ by at least this much.
const SIZE_SPREAD_BYTES: u64 = 4 << 20;
/// How many of the latest moves a cost is learned from.
pub const LEARNED_FROM_LATEST: usize = 50;
/// A pair of providers has its own cost once it has this many moves.
const PAIR_MOVES: usize = 3;

/// One move already made: its bytes, and the time from its start to its switch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoveSample {
    pub from_provider: ProviderId,
    pub to_provider: ProviderId,
    pub bytes: u64,
    pub seconds: f64,
}

/// What one move costs, and what that is based on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MoveCost {
    /// Start, freeze, checks: what a move of no bytes takes.
    pub fixed_seconds: f64,
    pub bytes_per_second: u64,
    /// How many moves the fixed part was learned from (0: assumed).
    pub moves: u32,
    /// Whether the rate was measured (moves of different enough sizes) or assumed.
    pub rate_measured: bool,
    /// In words: "measured from 12 moves", "assumed".
    pub basis: String,
}

impl MoveCost {
    /// The cost assumed with no history at all.
    pub fn assumed() -> Self {
        MoveCost {
            fixed_seconds: ASSUMED_FIXED_SECONDS,
            bytes_per_second: ASSUMED_BYTES_PER_SECOND,
            moves: 0,
            rate_measured: false,
            basis: format!(
                "assumed: {ASSUMED_FIXED_SECONDS} s per move plus {}/s, no move measured yet",
                format_bytes(ASSUMED_BYTES_PER_SECOND)
            ),
        }
    }

    /// How long moving `bytes` takes.
    pub fn seconds(&self, bytes: u64) -> f64 {
        self.fixed_seconds + bytes as f64 / self.bytes_per_second.max(1) as f64
    }

    /// Learns a cost from `samples` (the latest first; only the first
    /// [`LEARNED_FROM_LATEST`] count). The rate falls back to `fallback`'s when the samples'
    /// sizes are too alike to tell it; with no samples, `fallback` is the answer. `scope`
    /// names the samples in the basis ("Scaleway → Hetzner").
    pub fn learn(samples: &[MoveSample], fallback: &MoveCost, scope: &str) -> MoveCost {
        let samples = &samples[..samples.len().min(LEARNED_FROM_LATEST)];
        if samples.is_empty() {
            return fallback.clone();
        }
        let seconds_per_byte = median_slope(samples);
        let (bytes_per_second, rate_measured) = match seconds_per_byte {
            Some(slope) => ((1.0 / slope).round().max(1.0) as u64, true),
            None => (fallback.bytes_per_second, fallback.rate_measured),
        };
        let mut beyond: Vec<f64> = samples
            .iter()
            .map(|s| s.seconds - s.bytes as f64 / bytes_per_second as f64)
            .collect();
        let fixed_seconds = median(&mut beyond)
            .unwrap_or(fallback.fixed_seconds)
            .max(0.0);
        let count = samples.len();
        let rate = format_bytes(bytes_per_second);
        let basis = if rate_measured && seconds_per_byte.is_some() {
            format!(
                "measured from {count} move(s) {scope}: {fixed_seconds:.1} s per move plus {rate}/s"
            )
        } else {
            format!(
                "{fixed_seconds:.1} s per move measured from {count} move(s) {scope}, too alike in \
                 size to tell the rate: {rate}/s {}",
                if fallback.rate_measured {
                    "as measured across the co-op"
                } else {
                    "assumed"
                }
            )
        };
        MoveCost {
            fixed_seconds,
            bytes_per_second,
            moves: u32::try_from(count).unwrap_or(u32::MAX),
            rate_measured,
            basis,
        }
    }
}

/// Seconds per byte: the median slope between moves whose sizes differ enough; `None` when no
/// pair does, or when the slopes say bigger moves are not slower (noise, not a rate).
fn median_slope(samples: &[MoveSample]) -> Option<f64> {
    let mut slopes = Vec::new();
    for (i, a) in samples.iter().enumerate() {
        for b in &samples[i + 1..] {
            let spread = a.bytes.abs_diff(b.bytes);
            if spread >= SIZE_SPREAD_BYTES {
                let (small, big) = if a.bytes < b.bytes { (a, b) } else { (b, a) };
                slopes.push((big.seconds - small.seconds) / spread as f64);
            }
        }
    }
    median(&mut slopes).filter(|slope| *slope > 0.0)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// The costs an evacuation plan uses: one per pair of providers with enough history, and
/// the co-op's for the others.
#[derive(Clone, Debug, PartialEq)]
pub struct CostBook {
    pub fleet: MoveCost,
    pub pairs: BTreeMap<(ProviderId, ProviderId), MoveCost>,
    /// What the job adds to each move beyond its own start-to-switch time: a move that
    /// switched is noticed, and the next one started, at the job's next step (half its
    /// period, on average).
    pub between_moves_seconds: f64,
}

impl CostBook {
    /// Learns the co-op's cost from every sample, and each pair's from its own (the co-op's
    /// rate standing in where a pair's moves are too alike in size). `name` names a
    /// provider in the basis.
    pub fn learn(samples: &[MoveSample], name: impl Fn(ProviderId) -> String) -> CostBook {
        let fleet = MoveCost::learn(samples, &MoveCost::assumed(), "across the co-op");
        let mut by_pair: BTreeMap<(ProviderId, ProviderId), Vec<MoveSample>> = BTreeMap::new();
        for sample in samples {
            by_pair
                .entry((sample.from_provider, sample.to_provider))
                .or_default()
                .push(*sample);
        }
        let pairs = by_pair
            .into_iter()
            .filter(|(_, samples)| samples.len() >= PAIR_MOVES)
            .map(|((from, to), samples)| {
                let scope = format!("from {} to {}", name(from), name(to));
                ((from, to), MoveCost::learn(&samples, &fleet, &scope))
            })
            .collect();
        CostBook {
            fleet,
            pairs,
            between_moves_seconds: 0.0,
        }
    }

    /// The same, for a job that steps every `period_seconds`.
    pub fn with_job_step(self, period_seconds: f64) -> CostBook {
        CostBook {
            between_moves_seconds: period_seconds.max(0.0) / 2.0,
            ..self
        }
    }

    /// How long a move of `bytes` from a node of `from` to a node of `to` keeps its lane.
    pub fn seconds(&self, from: ProviderId, to: ProviderId, bytes: u64) -> f64 {
        self.between(from, to).seconds(bytes) + self.between_moves_seconds
    }

    /// The cost of a move from a node of `from` to a node of `to`.
    pub fn between(&self, from: ProviderId, to: ProviderId) -> &MoveCost {
        self.pairs.get(&(from, to)).unwrap_or(&self.fleet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sample(bytes: u64, seconds: f64) -> MoveSample {
        MoveSample {
            from_provider: ProviderId(uuid::Uuid::nil()),
            to_provider: ProviderId(uuid::Uuid::nil()),
            bytes,
            seconds,
        }
    }

    #[test]
    fn tiny_moves_teach_the_fixed_part_and_leave_the_rate_assumed() {
        // Five near-empty sites, about 2 s each: once read as 133 bytes/s.
        let tiny: Vec<_> = [266, 300, 180, 250, 270]
            .iter()
            .map(|b| sample(*b, 2.0))
            .collect();
        let cost = MoveCost::learn(&tiny, &MoveCost::assumed(), "across the co-op");
        assert_eq!(cost.bytes_per_second, ASSUMED_BYTES_PER_SECOND);
        assert!(!cost.rate_measured);
        assert!((cost.fixed_seconds - 2.0).abs() < 0.01, "{cost:?}");
        // A 197 MB site: about 6 s, not 431 h.
        let seconds = cost.seconds(197_000_000);
        assert!((5.0..8.0).contains(&seconds), "{seconds}");
        assert!(cost.basis.contains("assumed"), "{}", cost.basis);
    }

    #[test]
    fn mixed_sizes_give_both_parts_even_with_an_outlier() {
        // 2 s plus 20 MiB/s, and one move slowed down by a busy disk.
        let mut samples: Vec<_> = [0, 10, 40, 80, 120, 200]
            .iter()
            .map(|mib| sample(mib * MIB, 2.0 + *mib as f64 / 20.0))
            .collect();
        samples.push(sample(40 * MIB, 60.0));
        let cost = MoveCost::learn(&samples, &MoveCost::assumed(), "across the co-op");
        assert!(cost.rate_measured);
        let rate = cost.bytes_per_second as f64 / MIB as f64;
        assert!((18.0..22.0).contains(&rate), "{cost:?}");
        assert!((1.5..2.6).contains(&cost.fixed_seconds), "{cost:?}");
        assert!(
            cost.basis.contains("measured from 7 move(s)"),
            "{}",
            cost.basis
        );
    }

    #[test]
    fn a_pair_with_history_has_its_own_cost_and_others_the_co_ops() {
        let (a, b, c) = (
            ProviderId::generate(),
            ProviderId::generate(),
            ProviderId::generate(),
        );
        let between = |from, to, mib: u64, rate: f64| MoveSample {
            from_provider: from,
            to_provider: to,
            bytes: mib * MIB,
            seconds: 1.0 + mib as f64 / rate,
        };
        let samples = vec![
            between(a, b, 10, 5.0),
            between(a, b, 50, 5.0),
            between(a, b, 100, 5.0),
            between(a, c, 10, 100.0),
            between(a, c, 100, 100.0),
        ];
        let book = CostBook::learn(&samples, |p| if p == a { "A".into() } else { "B".into() });
        let pair = book.between(a, b);
        assert_eq!(pair.bytes_per_second, 5 * MIB, "{pair:?}");
        assert!(pair.basis.contains("from A to B"), "{}", pair.basis);
        // Two moves only towards C: the co-op's cost.
        assert_eq!(book.between(a, c), &book.fleet);
    }

    #[test]
    fn no_history_is_the_assumption() {
        let book = CostBook::learn(&[], |_| String::new());
        assert_eq!(book.fleet, MoveCost::assumed());
    }

    proptest::proptest! {
        #[test]
        fn a_learned_cost_is_never_negative_and_grows_with_size(
            moves in proptest::collection::vec((0u64..(300 * MIB), 0.1f64..600.0), 1..30),
        ) {
            let samples: Vec<_> = moves.iter().map(|(b, s)| sample(*b, *s)).collect();
            let cost = MoveCost::learn(&samples, &MoveCost::assumed(), "here");
            proptest::prop_assert!(cost.fixed_seconds >= 0.0);
            proptest::prop_assert!(cost.bytes_per_second >= 1);
            // Moving more never takes less time.
            proptest::prop_assert!(cost.seconds(MIB) <= cost.seconds(100 * MIB));
        }
    }
}
