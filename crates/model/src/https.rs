//! HTTPS for a site: what its member chooses (certificates from the co-op's ACME CA, the
//! redirect, HSTS), the answers its node gives to the CA's challenges, and when a certificate
//! is renewed, raises an alert, or is ordered again after a failure.

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};

/// A site's HTTPS settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HttpsPolicy {
    /// Certificates from the co-op's ACME CA for the site's names (not its wildcards), ordered
    /// and renewed by the panel. Off, or while the member's own certificate is in place,
    /// nothing is ordered.
    #[serde(default = "yes")]
    pub acme: bool,
    /// Plain HTTP is redirected to HTTPS once the site has a certificate (the ACME challenge
    /// path excepted).
    #[serde(default = "yes")]
    pub redirect: bool,
    /// `Strict-Transport-Security: max-age` in seconds on HTTPS answers; 0 sends none. Once a
    /// browser has seen it, it refuses plain HTTP for that long: turn it on when HTTPS works.
    #[serde(default)]
    #[schemars(range(max = 63_072_000))]
    pub hsts_seconds: u32,
}

fn yes() -> bool {
    true
}

impl Default for HttpsPolicy {
    fn default() -> Self {
        Self {
            acme: true,
            redirect: true,
            hsts_seconds: 0,
        }
    }
}

/// Two years, the longest HSTS browsers' preload lists ask for.
pub const MAX_HSTS_SECONDS: u32 = 63_072_000;

/// Field paths under `https.`.
pub fn validate_https(errors: &mut ValidationErrors, policy: &HttpsPolicy) {
    if policy.hsts_seconds > MAX_HSTS_SECONDS {
        errors.push(FieldError::new(
            "https.hsts_seconds",
            "range",
            format!("between 0 (no HSTS) and {MAX_HSTS_SECONDS} seconds (two years)"),
        ));
    }
}

/// The answer a node's ingress gives at `/.well-known/acme-challenge/<token>` (HTTP-01), for
/// whichever name the CA asks it for: the token is unguessable and the answer public.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct AcmeChallenge {
    pub token: String,
    pub key_authorization: String,
}

/// A fraction in [0, 1) fixed by `seed`: spreads renewals that would fall together.
fn fraction(seed: u64) -> f64 {
    // A multiplicative hash, so that neighbouring seeds land far apart.
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64
}

fn lifetime(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Duration {
    (not_after - not_before).max(Duration::zero())
}

/// When a certificate without renewal information from its CA is renewed: at two thirds of
/// its lifetime, up to a fifteenth of it earlier (by `seed`, per site), so that certificates
/// issued together are not renewed together.
pub fn renew_at(not_before: DateTime<Utc>, not_after: DateTime<Utc>, seed: u64) -> DateTime<Utc> {
    let life = lifetime(not_before, not_after);
    let jitter = life.num_milliseconds() as f64 / 15.0 * fraction(seed);
    not_before + life * 2 / 3 - Duration::milliseconds(jitter as i64)
}

/// A time in the renewal window a CA suggests (RFC 9773 §4.2: chosen uniformly in it).
pub fn in_window(start: DateTime<Utc>, end: DateTime<Utc>, seed: u64) -> DateTime<Utc> {
    let span = (end - start).max(Duration::zero());
    start + Duration::milliseconds((span.num_milliseconds() as f64 * fraction(seed)) as i64)
}

/// From when a certificate not yet renewed is alerted on: once five sixths of its lifetime
/// have passed (15 days ahead of a 90-day certificate's expiry, a day ahead of a 6-day one's),
/// half of the time its renewals had.
pub fn alert_at(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    not_before + lifetime(not_before, not_after) * 5 / 6
}

/// When a site whose order failed `failures` times in a row is tried again: after a minute,
/// doubling up to a day, so that a broken name does not spend the CA's limits.
pub fn retry_after_failures(failed_at: DateTime<Utc>, failures: u32) -> DateTime<Utc> {
    let minutes = 1i64 << failures.saturating_sub(1).min(11);
    failed_at + Duration::minutes(minutes.min(24 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default() + Duration::days(days)
    }

    #[test]
    fn renewal_falls_in_the_last_fifteenth_before_two_thirds() {
        let (from, to) = (at(0), at(90));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200u64 {
            let when = renew_at(from, to, seed);
            assert!(when <= at(60), "{when} after two thirds");
            assert!(when >= at(54), "{when} more than a fifteenth early");
            seen.insert(when.timestamp() / 3600);
        }
        assert!(
            seen.len() > 50,
            "renewals spread: {} distinct hours",
            seen.len()
        );
    }

    #[test]
    fn a_window_time_is_inside_the_window() {
        for seed in 0..100u64 {
            let when = in_window(at(10), at(12), seed);
            assert!(when >= at(10) && when < at(12));
        }
        assert_eq!(
            in_window(at(12), at(10), 7),
            at(12),
            "an inverted window is its start"
        );
    }

    #[test]
    fn the_alert_comes_after_the_renewal_and_before_expiry() {
        for days in [6, 90] {
            let alert = alert_at(at(0), at(days));
            assert!(alert > renew_at(at(0), at(days), 0));
            assert!(alert < at(days));
        }
        assert_eq!(alert_at(at(0), at(90)), at(75));
    }

    #[test]
    fn failures_back_off_doubling_up_to_a_day() {
        assert_eq!(retry_after_failures(at(0), 1), at(0) + Duration::minutes(1));
        assert_eq!(retry_after_failures(at(0), 4), at(0) + Duration::minutes(8));
        assert_eq!(retry_after_failures(at(0), 40), at(1));
    }

    #[test]
    fn hsts_beyond_two_years_is_refused_on_its_field() {
        let mut errors = ValidationErrors::default();
        validate_https(
            &mut errors,
            &HttpsPolicy {
                hsts_seconds: MAX_HSTS_SECONDS + 1,
                ..Default::default()
            },
        );
        assert_eq!(errors.0[0].field, "https.hsts_seconds");
    }
}
