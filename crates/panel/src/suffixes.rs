//! The Public Suffix List (Debian's `publicsuffix` package keeps it at
//! `/usr/share/publicsuffix/public_suffix_list.dat`): a wildcard directly under a public
//! suffix (`*.co.uk`, `*.github.io`) would claim everybody's names there, so it is refused.

use std::path::{Path, PathBuf};

use publicsuffix::{List, Psl};

/// Where Debian's package puts the list.
pub const DEBIAN_LIST: &str = "/usr/share/publicsuffix/public_suffix_list.dat";

/// The list as read at start, or why it could not be.
#[derive(Debug)]
pub struct PublicSuffixes {
    list: Result<List, String>,
    source: PathBuf,
}

impl PublicSuffixes {
    /// Reads the list at `path`. A list that cannot be read is not fatal: wildcards are then
    /// refused with the reason (and the panel warns at start), since nothing can tell which
    /// are safe.
    pub fn load(path: &Path) -> Self {
        let list = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))
            .and_then(|text| {
                text.parse::<List>().map_err(|error| {
                    format!("{} is not a public suffix list: {error}", path.display())
                })
            });
        if let Err(reason) = &list {
            tracing::warn!(%reason, "wildcard names are refused until the public suffix list can be read (Debian: apt install publicsuffix)");
        }
        Self {
            list,
            source: path.to_owned(),
        }
    }

    /// A list from its text (tests).
    pub fn from_text(text: &str) -> Self {
        Self {
            list: text.parse::<List>().map_err(|error| error.to_string()),
            source: PathBuf::from("(text)"),
        }
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Why `*.{parent}` may not be a site's name, if it may not.
    pub fn refuses_wildcard_under(&self, parent: &str) -> Option<String> {
        let list = match &self.list {
            Ok(list) => list,
            Err(reason) => {
                return Some(format!(
                    "wildcards cannot be checked against the public suffix list ({reason})"
                ));
            }
        };
        // A name that is its own suffix (`co.uk`, `org`, or one label under the implicit `*`
        // rule) is where others register their names.
        let suffix = list.suffix(parent.as_bytes())?;
        (suffix.as_bytes() == parent.as_bytes()).then(|| {
            format!(
                "{parent} is a public suffix: a wildcard under it would take other people's names"
            )
        })
    }
}

impl PublicSuffixes {
    /// The name under which `name` was registered (`www.example.co.uk`: `example.co.uk`):
    /// what a CA's weekly limit of certificates counts by. Without the list, the last two
    /// labels.
    pub fn registered_domain(&self, name: &str) -> String {
        let name = name.trim_start_matches("*.");
        if let Ok(list) = &self.list
            && let Some(domain) = list.domain(name.as_bytes())
        {
            return String::from_utf8_lossy(domain.as_bytes()).into_owned();
        }
        let labels: Vec<&str> = name.rsplitn(3, '.').collect();
        match labels.as_slice() {
            [tld, second, ..] => format!("{second}.{tld}"),
            _ => name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "// ===BEGIN ICANN DOMAINS===\norg\nuk\nco.uk\n// ===END ICANN DOMAINS===\n// ===BEGIN PRIVATE DOMAINS===\ngithub.io\n// ===END PRIVATE DOMAINS===\n";

    #[test]
    fn a_name_counts_under_the_domain_it_was_registered_as() {
        let list = PublicSuffixes::from_text(LIST);
        assert_eq!(list.registered_domain("www.example.co.uk"), "example.co.uk");
        assert_eq!(list.registered_domain("a.b.example.org"), "example.org");
        assert_eq!(list.registered_domain("me.github.io"), "me.github.io");
        let none = PublicSuffixes::load(Path::new("/nonexistent"));
        assert_eq!(none.registered_domain("a.b.example.org"), "example.org");
    }

    #[test]
    fn wildcards_directly_under_a_public_suffix_are_refused() {
        let suffixes = PublicSuffixes::from_text(LIST);
        for refused in ["co.uk", "org", "github.io", "localhost"] {
            assert!(
                suffixes.refuses_wildcard_under(refused).is_some(),
                "*.{refused}"
            );
        }
        for allowed in [
            "example.org",
            "shop.co.uk",
            "me.github.io",
            "a.b.example.org",
        ] {
            assert_eq!(
                suffixes.refuses_wildcard_under(allowed),
                None,
                "*.{allowed}"
            );
        }
    }

    #[test]
    fn without_a_list_every_wildcard_is_refused_with_the_reason() {
        let suffixes = PublicSuffixes::load(Path::new("/nonexistent/list.dat"));
        let reason = suffixes.refuses_wildcard_under("example.org").unwrap();
        assert!(reason.contains("/nonexistent/list.dat"), "{reason}");
    }

    #[test]
    fn debians_list_is_read_when_installed() {
        if !Path::new(DEBIAN_LIST).exists() {
            assert!(std::env::var_os("CI").is_none(), "CI installs publicsuffix");
            eprintln!("SKIPPED: {DEBIAN_LIST} is missing (apt install publicsuffix)");
            return;
        }
        let suffixes = PublicSuffixes::load(Path::new(DEBIAN_LIST));
        assert!(suffixes.refuses_wildcard_under("co.uk").is_some());
        assert!(suffixes.refuses_wildcard_under("github.io").is_some());
        assert_eq!(suffixes.refuses_wildcard_under("exemple.org"), None);
    }
}
