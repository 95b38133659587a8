//! Properties of the validators over arbitrary input: they never panic, and whatever they
//! accept survives the places it will be written to (a Docker label, a container name, nft's
//! JSON) unchanged, and is a fixed point of validation.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use alveole_model::{EnvName, Hostname, ImageRef, Slug, Wildcard};
use proptest::prelude::*;

/// What Docker accepts as a container name.
fn valid_container_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A Docker label value travels as a JSON string in the engine's API; nft rules as nft's JSON.
fn json_round_trip(value: &str) -> String {
    let encoded =
        serde_json::to_string(&serde_json::json!({"label": value, "nft": {"comment": value}}))
            .unwrap();
    let decoded: serde_json::Value = serde_json::from_str(&encoded).unwrap();
    assert_eq!(decoded["label"], decoded["nft"]["comment"]);
    decoded["label"].as_str().unwrap().to_owned()
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9.;$(){}'\"` \\n\\t*-]{0,80}",
        "[a-z]{1,10}(\\.[a-zé日ー-]{1,10}){1,4}\\.?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hostnames_never_panic_and_accepted_ones_are_safe(input in hostile()) {
        if let Ok(name) = Hostname::parse(&input, Wildcard::Allowed) {
            let text = name.as_str();
            prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.*".contains(&b)), "{text}");
            prop_assert_eq!(json_round_trip(text), text);
            if !name.is_wildcard() {
                prop_assert!(valid_container_name(text), "{}", text);
            }
            let again = Hostname::parse(text, Wildcard::Allowed).unwrap();
            prop_assert_eq!(again, name.clone());
            let unicode = Hostname::parse(&name.to_unicode(), Wildcard::Allowed).unwrap();
            prop_assert_eq!(unicode, name);
        }
    }

    #[test]
    fn slugs_image_refs_and_env_names_never_panic(input in hostile()) {
        if let Ok(slug) = Slug::parse(&input) {
            prop_assert!(valid_container_name(slug.as_str()));
            prop_assert_eq!(json_round_trip(slug.as_str()), slug.as_str());
        }
        if let Ok(image) = ImageRef::parse(&input) {
            let shell_meta: &[u8] = b";$()'\"`";
            let safe = !image.as_str().bytes().any(|b| b.is_ascii_whitespace() || shell_meta.contains(&b) || b == b'{' || b == b'}');
            prop_assert!(safe, "{}", image.as_str());
            prop_assert_eq!(json_round_trip(image.as_str()), image.as_str());
        }
        if let Ok(name) = EnvName::parse(&input) {
            prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
        let _ = alveole_model::quantity::parse_bytes(&input);
        let _ = alveole_model::quantity::parse_millicores(&input);
    }
}
