//! Attempts per client address on the sign-in doors (token login, break-glass): a fixed window
//! per address, so that guessing is slow for one client and nobody else is locked out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at most; beyond, windows that have ended are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    attempts: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    /// At most `attempts` per `window` per client address.
    pub fn new(attempts: u32, window: Duration) -> Self {
        Self {
            attempts,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt from `client` at `now`: `Ok` to go on, or `Err(seconds)` to wait.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_ADDRESSES {
            let window = self.window;
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = seen.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.attempts {
            let wait = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(wait.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_waits_and_the_others_do_not() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, start).is_ok());
        }
        let wait = limiter
            .check(a, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, 50);
        assert!(limiter.check(b, start).is_ok(), "another client goes on");
        assert!(
            limiter.check(a, start + Duration::from_secs(61)).is_ok(),
            "a new window"
        );
    }
}
