//! Environment variables of a site. A secret value is write-only: it serialises as `null`,
//! prints as `[redacted]`, and can be read only through [`Secret::expose`], which the store
//! (to persist it) and later the agent (to start the container) call, and nothing else.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// POSIX-style variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct EnvName(String);

impl EnvName {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let mut bytes = input.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !first_ok || input.len() > 128 || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(FieldError::new(
                "",
                "env.name_invalid",
                "a variable name uses letters, digits and _, and does not start with a digit",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A value nobody may read back.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The only way to the value. Call it where the value leaves for storage or a container.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

/// A variable's value: shown, or secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

/// One variable. In JSON: `{"name": "MODE", "value": "prod", "secret": false}`; a secret's
/// `value` is always `null` on the way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: EnvName,
    pub value: EnvValue,
}

const MAX_VALUE_LEN: usize = 32 * 1024;

impl EnvVar {
    /// Validates a value (no NUL, at most 32 KiB).
    pub fn new(name: EnvName, value: String, secret: bool) -> Result<Self, FieldError> {
        if value.contains('\0') || value.len() > MAX_VALUE_LEN {
            return Err(FieldError::new(
                "",
                "env.value_invalid",
                "a value has at most 32 KiB and no NUL character",
            ));
        }
        let value = if secret {
            EnvValue::Secret(Secret::new(value))
        } else {
            EnvValue::Plain(value)
        };
        Ok(Self { name, value })
    }

    /// A secret as the store keeps it (sealed: its length is the sealing's, not a client's).
    pub fn kept_secret(name: EnvName, stored: String) -> Self {
        Self {
            name,
            value: EnvValue::Secret(Secret::new(stored)),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self.value, EnvValue::Secret(_))
    }

    /// The value for storage or a container; never for an answer, a page or a log.
    pub fn expose(&self) -> &str {
        match &self.value {
            EnvValue::Plain(v) => v,
            EnvValue::Secret(s) => s.expose(),
        }
    }
}

/// How an [`EnvVar`] looks to the outside world.
#[derive(Serialize, JsonSchema)]
struct EnvVarView<'a> {
    name: &'a EnvName,
    /// `null` when `secret` is true.
    value: Option<&'a str>,
    secret: bool,
}

impl Serialize for EnvVar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = match &self.value {
            EnvValue::Plain(v) => Some(v.as_str()),
            EnvValue::Secret(_) => None,
        };
        EnvVarView {
            name: &self.name,
            value,
            secret: self.is_secret(),
        }
        .serialize(s)
    }
}

impl JsonSchema for EnvVar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnvVar".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        EnvVarView::json_schema(generator)
    }
}

/// A variable as written by a client. On update, a secret sent with no value keeps the value
/// it had, so a form never has to show a secret to keep it. (`Site::to_input` leaves secret
/// values out, so serialising an input built from a stored site reveals nothing.)
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EnvVarInput {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_serialises_or_prints() {
        let var = EnvVar::new(
            EnvName::parse("DB_PASSWORD").unwrap(),
            "hunter2".into(),
            true,
        )
        .unwrap();
        let json = serde_json::to_string(&var).unwrap();
        assert_eq!(json, r#"{"name":"DB_PASSWORD","value":null,"secret":true}"#);
        assert!(!format!("{var:?}").contains("hunter2"));
        assert_eq!(var.expose(), "hunter2");
    }

    #[test]
    fn names() {
        assert!(EnvName::parse("_A1").is_ok());
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(EnvName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
