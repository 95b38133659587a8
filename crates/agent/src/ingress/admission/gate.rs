//! Requests a site's container is given at once. Above that, requests wait for a place, in
//! the order they came, but not forever: like CoDel, when requests have kept waiting longer
//! than a target for a whole interval (a stuck or overwhelmed container), the ones that
//! would wait are turned away at once until waits are short again. Other sites' requests
//! never wait here: each site has its own gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

/// How long requests may wait, and when waiting means the container does not keep up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// A wait longer than this is a standing queue.
    pub target: Duration,
    /// A standing queue this long means the container does not keep up.
    pub interval: Duration,
    /// The longest any request waits for a place.
    pub max_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        // Admission keeps a site's load below its capacity; the gate is for a container
        // that stops keeping up (stuck, or its limits lowered): waits of half a second for
        // three seconds in a row.
        Self {
            target: Duration::from_millis(500),
            interval: Duration::from_secs(3),
            max_wait: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Gate {
    places: Arc<Semaphore>,
    timing: Timing,
    created: Instant,
    /// Since when (ns after `created`, plus one) requests have waited longer than
    /// the target; 0: they have not. An atomic: the common path only reads it.
    standing_since: AtomicU64,
}

impl Gate {
    pub(crate) fn new(concurrent: u32, timing: Timing) -> Self {
        Self {
            places: Arc::new(Semaphore::new(concurrent.max(1) as usize)),
            timing,
            created: Instant::now(),
            standing_since: AtomicU64::new(0),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.created).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn standing_for(&self) -> Option<Duration> {
        match self.standing_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_nanos(
                self.stamp(Instant::now()).saturating_sub(since),
            )),
        }
    }

    /// A place for one request, held until dropped; `None`: turned away.
    pub(crate) async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(place) = self.places.clone().try_acquire_owned() {
            if self.standing_since.load(Ordering::Relaxed) != 0 {
                self.standing_since.store(0, Ordering::Relaxed);
            }
            return Some(place);
        }
        if self
            .standing_for()
            .is_some_and(|standing| standing >= self.timing.interval)
        {
            return None;
        }
        let asked = Instant::now();
        let place =
            tokio::time::timeout(self.timing.max_wait, self.places.clone().acquire_owned()).await;
        if asked.elapsed() > self.timing.target {
            // Kept from the first long wait on, until a short one.
            let _ = self.standing_since.compare_exchange(
                0,
                self.stamp(asked),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.standing_since.store(0, Ordering::Relaxed);
        }
        place.ok()?.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_are_bounded_and_a_stuck_container_sheds_at_once() {
        let timing = Timing {
            target: Duration::from_millis(50),
            interval: Duration::from_millis(100),
            max_wait: Duration::from_millis(300),
        };
        let gate = Arc::new(Gate::new(1, timing));
        let first = gate.enter().await.expect("the first request gets in");
        // The second waits, and gets in when the first ends.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.is_some() }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiting.await.unwrap());
        // A container that never answers: a waiting request gives up after `max_wait`…
        let stuck = gate.enter().await.unwrap();
        let started = Instant::now();
        assert!(gate.enter().await.is_none());
        assert!(started.elapsed() >= timing.max_wait);
        // …and since waits have stood that long, the next ones are turned away at once.
        let started = Instant::now();
        assert!(gate.enter().await.is_none());
        assert!(started.elapsed() < timing.target);
        // The container answers again: requests get in at once.
        drop(stuck);
        assert!(gate.enter().await.is_some());
    }
}
