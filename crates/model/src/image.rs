//! OCI image references, checked against the grammar of the distribution spec
//! (`[host[:port]/]path[:tag][@algorithm:digest]`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A validated OCI image reference, kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ImageRef(String);

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let invalid = |why: &str| {
            FieldError::new(
                "",
                "image.invalid",
                format!("not an OCI image reference: {why}"),
            )
        };
        if input.is_empty() || input.len() > 512 {
            return Err(invalid("1 to 512 characters"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (input, None),
        };
        if let Some(digest) = digest {
            let (algorithm, hex) = digest
                .split_once(':')
                .ok_or_else(|| invalid("bad digest"))?;
            let algo_ok = !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            let hex_ok = hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !algo_ok || !hex_ok {
                return Err(invalid("bad digest"));
            }
        }
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_and_tag[..last_slash + i],
                Some(&name_and_tag[last_slash + i + 1..]),
            ),
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            let ok = (1..=128).contains(&tag.len())
                && tag
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(invalid("bad tag"));
            }
        }
        // The distribution spec's bound on registry host and repository together.
        if name.len() > 255 {
            return Err(invalid(
                "the registry and repository name are at most 255 characters",
            ));
        }
        let mut components: Vec<&str> = name.split('/').collect();
        if components.len() > 1 && looks_like_host(components[0]) {
            let host = components.remove(0);
            if !valid_host(host) {
                return Err(invalid("bad registry host"));
            }
        }
        if components.iter().any(|c| !valid_path_component(c)) {
            return Err(invalid("bad repository name"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    port_ok && name_ok
}

/// `[a-z0-9]+` separated by `.`, `_`, `__` or runs of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_the_spec_are_accepted() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "library/nginx:latest",
            "registry.example.org/coop/site:v1.2-rc_3",
            "localhost:5000/a/b",
            "ghcr.io/a__b/c-d/e.f:1",
            &format!("alpine@sha256:{}", "a".repeat(64)),
            &format!("r.example.org:443/x:tag@sha256:{}", "0".repeat(64)),
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "a//b",
            "a/",
            "/a",
            "nginx@sha256:xyz",
            "a b",
            "a;b",
            "$(x)",
            "a:b:c",
            "-a",
            "a.",
            "x.example.org:99999999/a",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
