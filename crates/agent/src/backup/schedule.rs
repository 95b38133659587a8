//! When a site's next backup is due: every period after the last one began, shifted by a
//! jitter of up to a tenth of the period (fixed per site and backup, so that a node's sites,
//! and the nodes backing up to one vault, do not all start on the hour); at once when one was
//! asked for since (by a member, after a move), or when the site was never backed up here.

use alveole_model::SiteId;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

/// When the backup after one begun at `last` is due.
pub fn next_after(site: SiteId, every_minutes: u32, last: DateTime<Utc>) -> DateTime<Utc> {
    let period = i64::from(every_minutes.max(1)) * 60;
    let spread = (period / 10).max(1);
    let seed = Sha256::digest(format!("{site}{}", last.timestamp()).as_bytes());
    let draw = i64::from(u16::from_be_bytes([seed[0], seed[1]]));
    // Between -spread/2 and +spread/2 seconds.
    let jitter = draw * spread / 65_536 - spread / 2;
    last + Duration::seconds(period + jitter)
}

/// Whether the site's backup is due `now`.
pub fn due(
    site: SiteId,
    every_minutes: u32,
    last: Option<DateTime<Utc>>,
    requested: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match last {
        None => true,
        Some(last) => {
            requested.is_some_and(|asked| asked > last)
                || now >= next_after(site, every_minutes, last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_come_every_period_with_a_bounded_jitter_and_at_once_when_asked() {
        let now = Utc::now();
        let mut offsets = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let site = SiteId::generate();
            let next = next_after(site, 60, now);
            let offset = (next - now).num_seconds();
            assert!((3600 - 180..=3600 + 180).contains(&offset), "{offset}");
            offsets.insert(offset);
        }
        assert!(offsets.len() > 50, "sites are spread: {}", offsets.len());
        let site = SiteId::generate();
        assert!(due(site, 60, None, None, now), "never backed up here");
        assert!(!due(site, 60, Some(now), None, now));
        assert!(
            due(site, 60, Some(now), Some(now + Duration::seconds(1)), now),
            "asked for after the last one began"
        );
        assert!(!due(
            site,
            60,
            Some(now),
            Some(now - Duration::seconds(1)),
            now
        ));
        assert!(due(site, 60, Some(now - Duration::hours(2)), None, now));
    }
}
