//! The route table: the OpenAPI document and the table agree, and every route asks for its
//! credentials.

use std::collections::BTreeSet;

use alveole_panel::routes::{Surface, routes};
use alveole_tests::{TestDb, TestPanel};

#[tokio::test]
async fn the_openapi_document_and_the_route_table_agree() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (status, document) = panel.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = routes()
        .iter()
        .filter(|r| r.surface == Surface::Api)
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(documented, table);
    assert!(
        table.len() >= 21,
        "four resources × five operations + the document itself"
    );
    // Every documented $ref resolves.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{name} is not defined"
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn every_route_requires_its_credentials() {
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = uuid::Uuid::now_v7();
    for route in routes() {
        let path = route
            .path
            .replace("{id}", &id.to_string())
            .replace("{lang}", "fr");
        let response = anonymous
            .request(route.method.clone(), format!("{}{path}", panel.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        match (route.access, route.surface) {
            (alveole_panel::routes::Access::Public, _) => {
                assert!(status < 500 && status != 401, "{path}: {status}")
            }
            (_, Surface::Api) => assert_eq!(status, 401, "{} {path}", route.method),
            (_, _) => assert_eq!(
                (status, response.headers()["location"].to_str().unwrap()),
                (303, "/login"),
                "{} {path}",
                route.method
            ),
        }
    }
    let (status, _) = panel.get("/healthz").await;
    assert_eq!(status, 200);
    let metrics = reqwest::get(format!("{}/metrics", panel.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("alveole_sites{phase=\"running\"}"),
        "{metrics}"
    );
    db.drop_db().await;
}
