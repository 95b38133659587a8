//! Small validated text values: slugs (which reach container names and Docker labels),
//! display names and notes (shown only), e-mail addresses and country codes.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $parse:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(input: &str) -> Result<Self, FieldError> {
                $parse(input).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_value!(
    /// `[a-z0-9-]`, 1 to 63 characters, no leading or trailing hyphen: safe in a container
    /// name, a Docker label, a DNS label and an nft comment.
    Slug,
    parse_slug
);
text_value!(
    /// Free text for people (1 to 200 characters, no control characters).
    DisplayName,
    parse_display_name
);
text_value!(
    /// Longer free text (up to 10,000 characters; line breaks allowed).
    Notes,
    parse_notes
);
text_value!(
    /// An e-mail address, lowercased in its domain part.
    Email,
    parse_email
);
text_value!(
    /// ISO 3166-1 alpha-2 country code, upper case.
    CountryCode,
    parse_country
);

fn parse_slug(input: &str) -> Result<String, FieldError> {
    let ok_chars = input
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if input.is_empty() || input.len() > 63 || !ok_chars {
        return Err(FieldError::new(
            "",
            "slug.invalid",
            "use 1 to 63 lowercase letters, digits and hyphens",
        ));
    }
    if input.starts_with('-') || input.ends_with('-') {
        return Err(FieldError::new(
            "",
            "slug.hyphen",
            "may not begin or end with a hyphen",
        ));
    }
    Ok(input.to_owned())
}

fn parse_display_name(input: &str) -> Result<String, FieldError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new("", "text.empty", "this field is required"));
    }
    if trimmed.chars().count() > 200 {
        return Err(FieldError::new(
            "",
            "text.too_long",
            "at most 200 characters",
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            "",
            "text.control",
            "control characters are not allowed",
        ));
    }
    Ok(trimmed.to_owned())
}

fn parse_notes(input: &str) -> Result<String, FieldError> {
    if input.chars().count() > 10_000 {
        return Err(FieldError::new(
            "",
            "text.too_long",
            "at most 10,000 characters",
        ));
    }
    if input
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(FieldError::new(
            "",
            "text.control",
            "control characters are not allowed",
        ));
    }
    Ok(input.to_owned())
}

fn parse_email(input: &str) -> Result<String, FieldError> {
    let invalid = || {
        FieldError::new(
            "",
            "email.invalid",
            "enter an address like name@example.org",
        )
    };
    let (local, domain) = input.trim().rsplit_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.');
    if !local_ok {
        return Err(invalid());
    }
    let domain = crate::Hostname::parse(domain, crate::Wildcard::Refused).map_err(|_| invalid())?;
    Ok(format!("{local}@{domain}"))
}

fn parse_country(input: &str) -> Result<String, FieldError> {
    let code = input.trim().to_ascii_uppercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(FieldError::new(
            "",
            "country.invalid",
            "use a two-letter country code such as FR",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(Slug::parse("node-1").is_ok());
        for bad in [
            "",
            "Node",
            "a_b",
            "-a",
            "a-",
            "a b",
            "a.b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_lowercase_their_domain_only() {
        assert_eq!(
            Email::parse("Ana@Exemple.ORG").unwrap().as_str(),
            "Ana@exemple.org"
        );
        assert_eq!(Email::parse(" a@b.org\n").unwrap().as_str(), "a@b.org");
        for bad in [
            "",
            "a",
            "@a.org",
            "a@",
            "a@b",
            "a b@c.org",
            "a\n@b.org",
            ".a@b.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_and_countries() {
        assert_eq!(
            DisplayName::parse("  Hébergeur  ").unwrap().as_str(),
            "Hébergeur"
        );
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse("   ").is_err());
        assert_eq!(CountryCode::parse("fr").unwrap().as_str(), "FR");
        assert!(CountryCode::parse("FRA").is_err());
    }
}
