//! The OpenAPI document is the API's contract: it stays equal to the one stored when the panel
//! was reshaped (`fixtures/openapi.json`), unless a change to the API is meant. Then set
//! `ALVEOLE_BLESS=1` to write the new document, and say why in the commit.

use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi.json")
}

#[test]
fn the_openapi_document_is_the_one_stored() {
    let document = alveole_panel::openapi::document(&alveole_panel::routes::routes());
    let text = serde_json::to_string_pretty(&document).expect("the document serialises") + "\n";
    if std::env::var_os("ALVEOLE_BLESS").is_some() {
        std::fs::write(fixture(), &text).expect("write the fixture");
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture()).expect("the fixture"))
            .expect("the fixture is JSON");
    assert!(
        stored == document,
        "the OpenAPI document changed; run with ALVEOLE_BLESS=1 if that is meant, and compare \
         with git diff crates/panel/tests/fixtures/openapi.json"
    );
}

#[test]
fn every_api_route_has_an_operation_id_and_a_summary() {
    for route in alveole_panel::routes::routes() {
        if route.surface == alveole_panel::routes::Surface::Api {
            assert!(
                !route.operation_id.is_empty() && !route.summary.trim().is_empty(),
                "{} {} has no operation id or summary",
                route.method,
                route.path
            );
        }
    }
}
