//! The OpenAPI 3.0 document, generated from the route table and the types' JSON schemas.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::routes::{Access, Route, Surface, problem_schema};

pub fn document(routes: &[Route]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    for route in routes.iter().filter(|r| r.surface == Surface::Api) {
        let Some(doc) = &route.doc else { continue };
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                // Items are named by their uuid; an address and a site's database by themselves.
                let schema = match name {
                    "address" => {
                        json!({"type": "string", "description": "An IPv4 or IPv6 address"})
                    }
                    "name" => json!({"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$",
                                     "description": "A site's database, by name"}),
                    _ => json!({"type": "string", "format": "uuid"}),
                };
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        parameters.extend(doc.query.iter().map(|(name, description)| {
            let schema = match *name {
                "limit" => json!({"type": "integer", "minimum": 1, "maximum": 500}),
                "version" => json!({"type": "integer"}),
                "after" | "wait" => json!({"type": "integer", "minimum": 0}),
                _ => json!({"type": "string"}),
            };
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
        }));
        let mut responses = Map::new();
        let (status, body) = doc.success;
        let mut success = json!({"description": "Success"});
        if let Some(body) = body {
            success["content"] = json!({"application/json": {"schema": body(&mut generator)}});
        }
        responses.insert(status.to_string(), success);
        // Every route that reads a body refuses one too large (413) or not JSON (415).
        let body_errors: &[u16] = if doc.request.is_some() {
            &[413, 415]
        } else {
            &[]
        };
        for status in doc.errors.iter().chain(body_errors) {
            responses.insert(
                status.to_string(),
                json!({"description": "Problem", "content": {"application/problem+json": {"schema": problem_schema(&mut generator)}}}),
            );
        }
        let mut operation = json!({
            "operationId": route.operation_id,
            "summary": route.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(request) = doc.request {
            let content_type = if route.method == axum::http::Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            operation["requestBody"] = json!({"required": true, "content": {content_type: {"schema": request(&mut generator)}, "application/json": {"schema": request(&mut generator)}}});
        }
        operation["security"] = if route.access == Access::Public {
            json!([])
        } else {
            json!([{"bearer": []}])
        };
        let entry = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    add_links(routes, &mut paths);
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "alveole",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The control panel of a hosting cooperative.",
            "license": {"name": "AGPL-3.0-or-later"}
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

/// OpenAPI links from each create (a POST answering 201 or 202 with the new item) to the operations
/// on that item, whose path goes on from the create's path (`/sites` → `/sites/{id}/move`) or
/// names its last segment (`/members/{id}/tokens` → `/tokens/{id}`): clients and fuzzers follow
/// them with the new item's id.
fn add_links(routes: &[Route], paths: &mut Map<String, Value>) {
    let api = || {
        routes
            .iter()
            .filter(|r| r.surface == Surface::Api && r.doc.is_some())
    };
    for create in api().filter(|r| {
        r.method == axum::http::Method::POST
            && r.doc
                .as_ref()
                .is_some_and(|d| matches!(d.success.0, 201 | 202))
    }) {
        let status = create.doc.as_ref().map_or(201, |d| d.success.0).to_string();
        let last = create.path.rsplit('/').next().unwrap_or_default();
        let prefixes = [format!("{}/{{", create.path), format!("/api/v1/{last}/{{")];
        let mut links = Map::new();
        for target in api() {
            let Some(rest) = prefixes
                .iter()
                .find_map(|p| target.path.strip_prefix(p.as_str()))
            else {
                continue;
            };
            let Some((parameter, _)) = rest.split_once('}') else {
                continue;
            };
            links.insert(
                target.operation_id.clone(),
                json!({
                    "operationId": target.operation_id,
                    "parameters": {parameter: "$response.body#/id"}
                }),
            );
        }
        if links.is_empty() {
            continue;
        }
        let method = create.method.as_str().to_ascii_lowercase();
        if let Some(response) = paths
            .get_mut(&create.path)
            .and_then(|path| path.get_mut(&method))
            .and_then(|operation| operation["responses"].get_mut(&status))
        {
            response["links"] = Value::Object(links);
        }
    }
}
