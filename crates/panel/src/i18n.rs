//! One translation layer for every interface string: flat JSON catalogues (`locales/*.json`,
//! a format translation platforms such as Weblate read), chosen from a `lang` cookie, else the
//! browser's `Accept-Language`, else English.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};

pub const LANG_COOKIE: &str = "alveole_lang";
pub const LANGUAGES: [&str; 2] = ["en", "fr"];

pub type Catalog = BTreeMap<String, String>;

/// The catalogues, parsed once at start.
#[derive(Debug)]
pub struct I18n {
    catalogs: Vec<(&'static str, Catalog)>,
}

impl I18n {
    pub fn load() -> Result<Self, serde_json::Error> {
        let sources = [
            ("en", include_str!("../../../locales/en.json")),
            ("fr", include_str!("../../../locales/fr.json")),
        ];
        let catalogs = sources
            .into_iter()
            .map(|(lang, text)| serde_json::from_str(text).map(|catalog| (lang, catalog)))
            .collect::<Result<_, _>>()?;
        Ok(Self { catalogs })
    }

    pub fn catalog(&self, lang: &str) -> &Catalog {
        let found = self
            .catalogs
            .iter()
            .find(|(l, _)| *l == lang)
            .or_else(|| self.catalogs.first());
        match found {
            Some((_, catalog)) => catalog,
            None => empty(),
        }
    }

    /// `key` in `lang`, else in English, else `fallback`.
    pub fn text(&self, lang: &str, key: &str, fallback: &str) -> String {
        self.catalog(lang)
            .get(key)
            .or_else(|| self.catalog("en").get(key))
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    }

    pub fn languages(&self) -> impl Iterator<Item = (&'static str, &Catalog)> {
        self.catalogs.iter().map(|(l, c)| (*l, c))
    }
}

fn empty() -> &'static Catalog {
    static EMPTY: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Catalog::new)
}

/// The language for a request.
pub fn negotiate(headers: &HeaderMap) -> &'static str {
    if let Some(lang) = crate::auth::cookie(headers, LANG_COOKIE)
        && let Some(known) = LANGUAGES.iter().find(|l| **l == lang)
    {
        return known;
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut ranked: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next()?.trim();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            Some((quality, tag))
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .iter()
        .filter_map(|(_, tag)| {
            let primary = tag.split('-').next()?.to_ascii_lowercase();
            LANGUAGES.iter().find(|l| **l == primary).copied()
        })
        .next()
        .unwrap_or("en")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn catalogues_have_the_same_keys() {
        let i18n = I18n::load().unwrap();
        let english: Vec<&String> = i18n.catalog("en").keys().collect();
        for (lang, catalog) in i18n.languages() {
            assert_eq!(
                catalog.keys().collect::<Vec<_>>(),
                english,
                "{lang} differs from en"
            );
            assert!(
                catalog.values().all(|v| !v.trim().is_empty()),
                "{lang} has an empty string"
            );
        }
    }

    #[test]
    fn language_comes_from_cookie_then_accept_language() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(&headers), "en");
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("de-DE, fr-CA;q=0.8, en;q=0.5"),
        );
        assert_eq!(negotiate(&headers), "fr");
        headers.insert(header::COOKIE, HeaderValue::from_static("alveole_lang=en"));
        assert_eq!(negotiate(&headers), "en");
    }
}
