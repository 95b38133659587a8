//! "Now", behind a trait: everything that decides by the time (expiries, leases, forwarding
//! periods, certificates) asks a [`Clock`], so tests move time instead of waiting for it.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// The time, as whatever decides something by it sees it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that follows the system's, shifted by what `advance` added (tests).
#[derive(Debug, Default)]
pub struct ShiftedClock {
    shift: Mutex<Duration>,
}

impl ShiftedClock {
    pub fn advance(&self, by: Duration) {
        *self.shift.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let shift = *self.shift.lock().unwrap_or_else(PoisonError::into_inner);
        Utc::now() + shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_moves_by_what_was_added() {
        let clock = ShiftedClock::default();
        let before = clock.now();
        clock.advance(Duration::hours(25));
        let gap = clock.now() - before;
        assert!(
            gap >= Duration::hours(25) && gap < Duration::hours(26),
            "{gap}"
        );
    }
}
