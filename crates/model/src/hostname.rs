//! Host names in one normal form: UTS-46 mapped, lowercase A-labels, no trailing dot. That
//! form is what is stored, compared and made unique, so `Exemple.ORG.`, `exemple.org` and a
//! U-label spelling of the same name are one name.

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_security::MixedScript;

use crate::error::FieldError;

const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A validated host name, possibly a wildcard (`*.example.org`) when the caller allows one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Hostname(String);

/// Whether a `*.` wildcard is acceptable where the name is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wildcard {
    Allowed,
    Refused,
}

impl Hostname {
    /// Validates and normalises `input`; errors name the rule that failed.
    pub fn parse(input: &str, wildcard: Wildcard) -> Result<Self, FieldError> {
        let invalid = |code: &str, message: String| FieldError::new("", code, message);
        if input.is_empty() {
            return Err(invalid("hostname.empty", "a host name is required".into()));
        }
        if let Some(bad) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "hostname.invalid_character",
                format!("{bad:?} is not allowed in a host name"),
            ));
        }
        let without_dot = input.strip_suffix('.').unwrap_or(input);
        let (is_wildcard, rest) = match without_dot.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, without_dot),
        };
        if is_wildcard && wildcard == Wildcard::Refused {
            return Err(invalid(
                "hostname.wildcard_refused",
                "a wildcard is not allowed here".into(),
            ));
        }
        if rest.contains('*') {
            return Err(invalid(
                "hostname.misplaced_wildcard",
                "`*` may only stand alone as the first label, as in *.example.org".into(),
            ));
        }
        let ascii = Uts46::new()
            .to_ascii(
                rest.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::Allow,
                DnsLength::Ignore,
            )
            .map_err(|_| {
                invalid(
                    "hostname.invalid_character",
                    "only letters, digits and hyphens are allowed in a host name".into(),
                )
            })?;
        check_labels(&ascii)?;
        check_single_script(&ascii)?;
        let name = if is_wildcard {
            format!("*.{ascii}")
        } else {
            ascii.into_owned()
        };
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "hostname.too_long",
                format!("a host name has at most {MAX_NAME_LEN} characters"),
            ));
        }
        Ok(Self(name))
    }

    /// The normal form (A-labels, lowercase, no trailing dot).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name one level up: `a.org` for both `x.a.org` and `*.a.org`. A wildcard covers
    /// exactly the names whose parent is its own parent and that are not wildcards.
    pub fn parent(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, parent)| parent)
    }

    /// Whether this name, a wildcard, covers `other`.
    pub fn covers(&self, other: &Hostname) -> bool {
        self.is_wildcard() && !other.is_wildcard() && self.parent() == other.parent()
    }

    /// The human spelling (U-labels), for display only.
    pub fn to_unicode(&self) -> String {
        let (unicode, _) = idna::domain_to_unicode(&self.0);
        unicode
    }
}

fn check_labels(ascii: &str) -> Result<(), FieldError> {
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(FieldError::new(
            "",
            "hostname.not_qualified",
            "a host name needs at least two labels, as in example.org",
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(FieldError::new(
                "",
                "hostname.empty_label",
                "a host name has an empty label",
            ));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(FieldError::new(
                "",
                "hostname.label_too_long",
                format!("a label has at most {MAX_LABEL_LEN} characters"),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(FieldError::new(
                "",
                "hostname.hyphen",
                "a label may not begin or end with a hyphen",
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(FieldError::new(
            "",
            "hostname.numeric_tld",
            "the last label cannot be all digits (an IP address is not a host name)",
        ));
    }
    Ok(())
}

/// Refuses labels that mix scripts (`pаypal` with a Cyrillic `а`): the usual homoglyph attack.
fn check_single_script(ascii: &str) -> Result<(), FieldError> {
    for label in ascii.split('.') {
        if !label.starts_with("xn--") {
            continue;
        }
        let (unicode, result) = idna::domain_to_unicode(label);
        if result.is_err() || !unicode.as_str().is_single_script() {
            return Err(FieldError::new(
                "",
                "hostname.mixed_script",
                format!("the label {unicode:?} mixes scripts, which can imitate another name"),
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hostname {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Hostname::parse(&raw, Wildcard::Allowed).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, String> {
        Hostname::parse(s, Wildcard::Allowed)
            .map(|h| h.0)
            .map_err(|e| e.code)
    }

    #[test]
    fn spellings_of_one_name_normalise_to_one_form() {
        for spelling in [
            "Exemple.ORG.",
            "exemple.org",
            "EXEMPLE.org",
            "ｅｘｅｍｐｌｅ.org",
        ] {
            assert_eq!(parse(spelling).as_deref(), Ok("exemple.org"), "{spelling}");
        }
        assert_eq!(parse("café.fr"), parse("xn--caf-dma.fr"));
        assert_eq!(parse("CAFÉ.fr.").as_deref(), Ok("xn--caf-dma.fr"));
    }

    #[test]
    fn valid_names_are_accepted() {
        for name in [
            "a.org",
            "www.exemple.org",
            "école.fr",
            "bücher.de",
            "日本語.jp",
            "пример.рф",
            "xn--80ak6aa92e.com",
            "a-b.c-d.org",
            "*.exemple.org",
            "1a.org",
            &format!("{}.org", "a".repeat(63)),
        ] {
            assert!(
                parse(name).is_ok(),
                "{name} should be accepted: {:?}",
                parse(name)
            );
        }
    }

    #[test]
    fn hostile_names_are_rejected_with_a_reason() {
        let cases = [
            ("", "hostname.empty"),
            ("a.org;rm", "hostname.invalid_character"),
            ("a.org\nb.org", "hostname.invalid_character"),
            ("a\".org", "hostname.invalid_character"),
            ("'a'.org", "hostname.invalid_character"),
            ("$(reboot).org", "hostname.invalid_character"),
            ("{a}.org", "hostname.invalid_character"),
            ("a b.org", "hostname.invalid_character"),
            ("a_b.org", "hostname.invalid_character"),
            ("a/b.org", "hostname.invalid_character"),
            (
                &format!("{}.org", "a".repeat(64)),
                "hostname.label_too_long",
            ),
            ("-a.org", "hostname.hyphen"),
            ("a-.org", "hostname.hyphen"),
            ("a..org", "hostname.empty_label"),
            ("localhost", "hostname.not_qualified"),
            ("192.0.2.1", "hostname.numeric_tld"),
            ("a.*.org", "hostname.misplaced_wildcard"),
            ("**.org", "hostname.misplaced_wildcard"),
            ("pаypal.com", "hostname.mixed_script"),
            ("аpple.com", "hostname.mixed_script"),
        ];
        for (name, code) in cases {
            assert_eq!(parse(name), Err(code.to_owned()), "{name:?}");
        }
        let long = format!("{}.org", vec!["a".repeat(60); 5].join("."));
        assert_eq!(parse(&long), Err("hostname.too_long".to_owned()));
    }

    #[test]
    fn wildcards_cover_one_level_of_other_names() {
        let wild = Hostname::parse("*.a.org", Wildcard::Allowed).unwrap();
        let x = Hostname::parse("x.a.org", Wildcard::Refused).unwrap();
        let deep = Hostname::parse("y.x.a.org", Wildcard::Refused).unwrap();
        let apex = Hostname::parse("a.org", Wildcard::Refused).unwrap();
        assert!(wild.covers(&x));
        assert!(!wild.covers(&deep));
        assert!(!wild.covers(&apex));
        assert!(!x.covers(&wild));
        assert_eq!(wild.parent(), "a.org");
        assert_eq!(
            Hostname::parse("*.a.org", Wildcard::Refused).map_err(|e| e.code),
            Err("hostname.wildcard_refused".to_owned())
        );
    }
}
