//! A visitor's pass: the ingress's own cookie, signed with the site's key (HMAC-SHA256), so
//! that any node the site runs on trusts it and nobody can forge a place, an admission or a
//! class. It says who the visitor is, whether they wait or were admitted, when they joined
//! the line (their place, wherever the site runs) and when they were last seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The cookie's name.
pub(crate) const COOKIE: &str = "alveole_pass";
/// The longest cookie value read (a pass is about 110 bytes).
const MAX_VALUE: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pass {
    pub visitor: u64,
    pub admitted: bool,
    /// When the visitor joined the line (ms since the epoch): their place.
    pub joined_ms: u64,
    /// When the visitor was last seen (ms since the epoch).
    pub seen_ms: u64,
    /// Their priority class; empty for everyone else.
    pub class: String,
}

/// Signs and reads one site's passes.
pub(crate) struct Signer {
    key: hmac::Key,
    /// Binds a pass to its site: another site's pass does not verify.
    site: [u8; 16],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// `key` as the panel sends it (hex; other text is used as it is).
    pub(crate) fn new(key: &str, site: alveole_model::SiteId) -> Self {
        let bytes = decode_hex(key).unwrap_or_else(|| key.as_bytes().to_vec());
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            site: *site.0.as_bytes(),
        }
    }

    fn signed(&self, payload: &str) -> Vec<u8> {
        [&self.site[..], payload.as_bytes()].concat()
    }

    /// The cookie's value.
    pub(crate) fn encode(&self, pass: &Pass) -> String {
        let payload = format!(
            "1.{:016x}.{}.{}.{}.{}",
            pass.visitor,
            if pass.admitted { 'a' } else { 'w' },
            pass.joined_ms,
            pass.seen_ms,
            pass.class
        );
        let tag = hmac::sign(&self.key, &self.signed(&payload));
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The pass in a cookie value, if it is this site's and unaltered.
    pub(crate) fn decode(&self, value: &str) -> Option<Pass> {
        if value.len() > MAX_VALUE {
            return None;
        }
        let (payload, mac) = value.rsplit_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        hmac::verify(&self.key, &self.signed(payload), &mac).ok()?;
        let mut parts = payload.split('.');
        let (Some("1"), Some(visitor), Some(state), Some(joined), Some(seen), Some(class), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        Some(Pass {
            visitor: u64::from_str_radix(visitor, 16).ok()?,
            admitted: match state {
                "a" => true,
                "w" => false,
                _ => return None,
            },
            joined_ms: joined.parse().ok()?,
            seen_ms: seen.parse().ok()?,
            class: class.to_owned(),
        })
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.is_empty() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The values of the `alveole_pass` cookies in a Cookie field's value (a browser sends
/// every cookie of that name it holds, for this host and its parents).
pub(crate) fn find_cookies(field: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(field)
        .unwrap_or("")
        .split(';')
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alveole_model::SiteId;

    #[test]
    fn a_pass_reads_back_only_with_its_sites_key_and_unaltered() {
        let site = SiteId::generate();
        let signer = Signer::new(&"ab".repeat(32), site);
        let pass = Pass {
            visitor: 0xdead_beef,
            admitted: false,
            joined_ms: 1_700_000_000_000,
            seen_ms: 1_700_000_020_000,
            class: "teachers".into(),
        };
        let cookie = signer.encode(&pass);
        assert_eq!(signer.decode(&cookie), Some(pass.clone()));
        // Another site with the same key, the same site with another key: refused.
        assert_eq!(
            Signer::new(&"ab".repeat(32), SiteId::generate()).decode(&cookie),
            None
        );
        assert_eq!(Signer::new(&"cd".repeat(32), site).decode(&cookie), None);
        // Any change to what it says: refused.
        for (from, to) in [
            (".w.", ".a."),
            ("teachers", "admins"),
            ("1700000000000", "1"),
        ] {
            let forged = cookie.replacen(from, to, 1);
            assert_ne!(forged, cookie);
            assert_eq!(signer.decode(&forged), None, "{forged}");
        }
        assert_eq!(signer.decode("garbage"), None);
        assert_eq!(signer.decode(&"a.".repeat(500)), None);
    }

    #[test]
    fn passes_are_found_among_other_cookies() {
        fn found(field: &[u8]) -> Vec<&str> {
            find_cookies(field).collect()
        }
        assert_eq!(
            found(b"theme=dark; alveole_pass=1.x.y; lang=fr; alveole_pass=2"),
            ["1.x.y", "2"]
        );
        assert!(found(b"alveole_pass_other=1").is_empty());
        assert!(found(b"\xff\xfe").is_empty());
    }
}
