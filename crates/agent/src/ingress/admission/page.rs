//! The waiting room's page, in English or French (from Accept-Language): the visitor's
//! place and an estimated wait. It refreshes itself (a `Refresh` field and its `<meta>`
//! twin: no JavaScript), announces changes politely to screen readers, and takes the co-op's
//! stylesheet after its own.

use bytes::Bytes;

use crate::ingress::pages::{Page, escape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Fr,
}

impl Lang {
    /// The visitor's preferred of English and French (English when neither is asked for).
    pub(crate) fn from_accept_language(value: Option<&[u8]>) -> Lang {
        let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return Lang::En;
        };
        let mut best = (Lang::En, -1.0f32);
        for item in text.split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("fr") => Lang::Fr,
                Some("en") => Lang::En,
                _ => continue,
            };
            if quality > best.1 {
                best = (lang, quality);
            }
        }
        best.0
    }
}

/// What the page says.
pub(crate) struct Line<'a> {
    pub host: &'a str,
    pub place: usize,
    pub wait_seconds: u64,
    pub refresh_seconds: u32,
}

/// A wait as people say it: seconds (by tens) under a minute and a half, else minutes.
enum Wait {
    Seconds(u64),
    Minutes(u64),
}

fn wait_of(seconds: u64) -> Wait {
    if seconds < 90 {
        Wait::Seconds((seconds.div_ceil(10) * 10).max(10))
    } else {
        Wait::Minutes(seconds.div_ceil(60))
    }
}

/// The waiting room's page (503, so that crawlers and caches do not keep it).
pub(crate) fn waiting_room(line: &Line<'_>, lang: Lang, style: &str) -> Page {
    let host = escape(line.host);
    let wait = wait_of(line.wait_seconds);
    let (lang_tag, title, heading, place, estimate, refresh, keep) = match lang {
        Lang::En => (
            "en",
            "You are in line",
            format!("{host} is very busy: you are in line"),
            format!("Your place in line: <strong>{}</strong>", line.place),
            match wait {
                Wait::Seconds(n) => format!("Estimated wait: about {n} seconds"),
                Wait::Minutes(1) => "Estimated wait: about 1 minute".to_owned(),
                Wait::Minutes(n) => format!("Estimated wait: about {n} minutes"),
            },
            format!(
                "This page refreshes itself every {} seconds and lets you in when it is your turn.",
                line.refresh_seconds
            ),
            "Keep it open to keep your place.",
        ),
        Lang::Fr => (
            "fr",
            "Vous êtes dans la file d’attente",
            format!("{host} est très demandé : vous êtes dans la file d’attente"),
            format!("Votre place dans la file : <strong>{}</strong>", line.place),
            match wait {
                Wait::Seconds(n) => format!("Attente estimée : environ {n} secondes"),
                Wait::Minutes(1) => "Attente estimée : environ 1 minute".to_owned(),
                Wait::Minutes(n) => format!("Attente estimée : environ {n} minutes"),
            },
            format!(
                "Cette page se recharge toute seule toutes les {} secondes et vous laisse entrer quand votre tour arrive.",
                line.refresh_seconds
            ),
            "Gardez-la ouverte pour garder votre place.",
        ),
    };
    let html = format!(
        "<!doctype html><html lang=\"{lang_tag}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_seconds}\">\
         <title>{title} · {host}</title><style>{BASE_STYLE}</style><style>{style}</style></head>\
         <body><main><h1>{heading}</h1>\
         <div role=\"status\" aria-live=\"polite\"><p class=\"place\">{place}</p><p class=\"wait\" data-seconds=\"{wait_seconds}\">{estimate}</p></div>\
         <p>{refresh} {keep}</p></main></body></html>",
        refresh_seconds = line.refresh_seconds,
        wait_seconds = line.wait_seconds,
    );
    Page {
        status: 503,
        content_type: "text/html; charset=utf-8",
        extra: vec![
            ("retry-after", line.refresh_seconds.to_string()),
            ("refresh", line.refresh_seconds.to_string()),
            ("cache-control", "no-store".to_owned()),
        ],
        body: Bytes::from(html),
    }
}

/// For what is not a page (APIs, assets) while visitors wait: try again later.
pub(crate) fn come_back(retry_after: u32) -> Page {
    Page {
        status: 503,
        content_type: "text/plain; charset=utf-8",
        extra: vec![
            ("retry-after", retry_after.to_string()),
            ("cache-control", "no-store".to_owned()),
        ],
        body: Bytes::from_static(b"This site is very busy. Please try again shortly.\n"),
    }
}

/// Readable on any screen, with contrast well above WCAG AA; the co-op's stylesheet follows.
const BASE_STYLE: &str = "body{font-family:system-ui,sans-serif;line-height:1.5;color:#1a1a1a;\
background:#fafafa;margin:0}main{max-width:40rem;margin:3rem auto;padding:0 1rem}\
.place{font-size:1.5rem}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visitors_language_is_chosen_by_preference() {
        let lang = |v: &str| Lang::from_accept_language(Some(v.as_bytes()));
        assert_eq!(lang("fr-FR,fr;q=0.9,en;q=0.8"), Lang::Fr);
        assert_eq!(lang("en-GB,fr;q=0.5"), Lang::En);
        assert_eq!(lang("de-DE,fr;q=0.7,en;q=0.3"), Lang::Fr);
        assert_eq!(lang("de"), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
    }

    #[test]
    fn the_page_says_the_place_the_wait_and_refreshes_itself_in_either_language() {
        let line = Line {
            host: "école.example.org<script>",
            place: 42,
            wait_seconds: 150,
            refresh_seconds: 20,
        };
        let fr = waiting_room(&line, Lang::Fr, "body{color:navy}");
        let body = String::from_utf8(fr.body.to_vec()).unwrap();
        assert_eq!(fr.status, 503);
        assert!(body.contains("lang=\"fr\""), "{body}");
        assert!(body.contains("<strong>42</strong>") && body.contains("environ 3 minutes"));
        assert!(
            body.contains("data-seconds=\"150\""),
            "exact, for tools: {body}"
        );
        assert!(body.contains("content=\"20\"") && body.contains("body{color:navy}"));
        assert!(!body.contains("<script>"), "the host is escaped");
        assert!(fr.extra.contains(&("refresh", "20".to_owned())));
        let en = waiting_room(&line, Lang::En, "");
        let body = String::from_utf8(en.body.to_vec()).unwrap();
        assert!(body.contains("Your place in line: <strong>42</strong>"));
        assert!(body.contains("about 3 minutes"));
        let soon = waiting_room(
            &Line {
                wait_seconds: 41,
                ..line
            },
            Lang::En,
            "",
        );
        let body = String::from_utf8(soon.body.to_vec()).unwrap();
        assert!(body.contains("about 50 seconds"), "{body}");
    }
}
