//! The route table: host names to a site's upstream, exact or by one wildcard level.

use std::collections::HashMap;
use std::net::SocketAddr;

use alveole_model::SiteId;

/// Where a site answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub site: SiteId,
    pub address: SocketAddr,
}

/// Host name → `T` (an [`Upstream`] for callers). Names are in normal form (lowercase A-labels);
/// a wildcard `*.example.org` is kept under `example.org` and matches one more label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes<T = Upstream> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> Routes<T> {
    pub fn insert(&mut self, hostname: &alveole_model::Hostname, target: T) {
        if hostname.is_wildcard() {
            self.wildcard.insert(hostname.parent().to_owned(), target);
        } else {
            self.exact.insert(hostname.as_str().to_owned(), target);
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The target for a `Host` header value (port and trailing dot ignored, any case).
    pub fn lookup(&self, host: &str) -> Option<&T> {
        let name = strip_port(host).trim_end_matches('.');
        // Browsers send lowercase names; only other spellings pay for a copy.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        if let Some(target) = self.exact.get(name) {
            return Some(target);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    pub(super) fn map<U>(&self, f: impl Fn(&T) -> U) -> Routes<U> {
        Routes {
            exact: self.exact.iter().map(|(k, v)| (k.clone(), f(v))).collect(),
            wildcard: self
                .wildcard
                .iter()
                .map(|(k, v)| (k.clone(), f(v)))
                .collect(),
        }
    }
}

impl Routes<Upstream> {
    /// Sends every name of `site` to `address`.
    pub fn repoint(&mut self, site: SiteId, address: SocketAddr) {
        for upstream in self.exact.values_mut().chain(self.wildcard.values_mut()) {
            if upstream.site == site {
                upstream.address = address;
            }
        }
    }
}

pub(super) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| h.trim_start_matches('['));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}
