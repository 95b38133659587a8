//! The pages of every resource, written once: list, detail, the new and edit forms and their
//! submissions, deletion. Forms become the same input the API takes, through the service.

use std::collections::BTreeMap;

use alveole_model::FieldError;
use alveole_store::PageRequest;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::form::{self, Kind};
use super::resources::{self, PageResource};
use super::{error_page, render};
use crate::AppState;
use crate::api::{self, audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::i18n::negotiate;
use crate::service::records::input_of;

pub async fn list<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let page = match params.get("cursor").map(|c| c.parse()) {
        Some(Err(_)) => {
            return error_page(
                &state,
                &headers,
                Some(&caller),
                ApiError::BadRequest("bad cursor".into()),
            );
        }
        Some(Ok(after)) => PageRequest {
            after: Some(after),
            limit: api::DEFAULT_PAGE_SIZE,
        },
        None => PageRequest {
            after: None,
            limit: api::DEFAULT_PAGE_SIZE,
        },
    };
    let listed = state
        .service()
        .list::<R>(caller.limited_to(), R::Filter::default(), &page)
        .await;
    let page = match listed {
        Ok(page) => page,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let rows: Vec<Value> = page
        .items
        .iter()
        .map(|item| json!({"id": item.id().to_string(), "cells": R::cells(item)}))
        .collect();
    let mut context = tera::Context::new();
    context.insert("plural", R::PLURAL);
    context.insert("title_key", &format!("nav.{}", R::PLURAL));
    context.insert("new_key", &format!("action.new.{}", R::PLURAL));
    context.insert(
        "column_keys",
        &R::COLUMNS
            .iter()
            .map(|c| format!("field.{c}"))
            .collect::<Vec<_>>(),
    );
    context.insert("rows", &rows);
    context.insert("next_cursor", &page.next_cursor);
    render(&state, &headers, Some(&caller), "list.html", context)
}

pub async fn show<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let item = match load::<R>(&state, &caller, &id).await {
        Ok(item) => item,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let mut rows = Vec::new();
    flatten(
        "",
        &serde_json::to_value(&item).unwrap_or(Value::Null),
        &mut rows,
    );
    match R::status_rows(&state, &item).await {
        Ok(status) => rows.extend(status),
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    }
    let moves = match R::moves(&state, &caller, &item).await {
        Ok(moves) => moves,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let backups = match R::backups(&state, &caller, &item).await {
        Ok(backups) => backups,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let https = match R::https(&state, &caller, &item).await {
        Ok(https) => https,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let traffic = match R::traffic(&state, &item).await {
        Ok(traffic) => traffic,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let databases = match R::databases(&state, &caller, &item).await {
        Ok(databases) => databases,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let actions: Vec<Value> = R::actions(&item)
        .into_iter()
        .map(|(url, label)| json!({"url": url, "label_key": label}))
        .collect();
    let mut context = tera::Context::new();
    context.insert("actions", &actions);
    if let Some(moves) = &moves {
        context.insert("moves", moves);
    }
    if let Some(backups) = &backups {
        context.insert("backups", backups);
    }
    if let Some(https) = &https {
        context.insert("https", https);
    }
    if let Some(traffic) = &traffic {
        context.insert("traffic", traffic);
    }
    if let Some(databases) = &databases {
        context.insert("databases", databases);
    }
    context.insert("plural", R::PLURAL);
    context.insert("id", &id);
    context.insert("title", &R::title(&item));
    context.insert("rows", &rows);
    context.insert(
        "version",
        &serde_json::to_value(&item)
            .ok()
            .and_then(|v| v["version"].as_i64()),
    );
    render(&state, &headers, Some(&caller), "detail.html", context)
}

/// `{"limits": {"pids": 5}}` → `[("limits.pids", "5")]`, for the detail page.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            let text: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect();
            out.push((prefix.to_owned(), text.join(", ")));
        }
        Value::Array(items) => {
            let text: Vec<String> = items
                .iter()
                .map(|i| match (i["name"].as_str(), i["secret"].as_bool()) {
                    (Some(name), Some(true)) => format!("{name}=••••••"),
                    (Some(name), _) => format!("{name}={}", i["value"].as_str().unwrap_or("")),
                    _ => i.to_string(),
                })
                .collect();
            out.push((prefix.to_owned(), text.join("\n")));
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => out.push((prefix.to_owned(), "—".to_owned())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The item, if this caller may reach it (another member's answers 404).
async fn load<R: PageResource>(state: &AppState, caller: &Caller, id: &str) -> Result<R, ApiError> {
    state
        .service()
        .get::<R>(caller.limited_to(), parse_id(id)?)
        .await
}

pub async fn new_form<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let values = form::to_text(R::FIELDS, &R::blank_input());
    render_form::<R>(
        &state,
        &headers,
        &caller,
        FormPage {
            id: None,
            version: None,
            values,
            errors: vec![],
        },
    )
    .await
}

pub async fn edit_form<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let item = match load::<R>(&state, &caller, &id).await {
        Ok(item) => item,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let input = serde_json::to_value(item.to_input()).unwrap_or(Value::Null);
    let version = serde_json::to_value(&item)
        .ok()
        .and_then(|v| v["version"].as_i64());
    let values = form::to_text(R::FIELDS, &input);
    render_form::<R>(
        &state,
        &headers,
        &caller,
        FormPage {
            id: Some(id),
            version,
            values,
            errors: vec![],
        },
    )
    .await
}

pub async fn create<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(submitted): Form<BTreeMap<String, String>>,
) -> Response {
    let ctx = audit_context(&caller, &headers);
    let result = async {
        let input: R::Input = input_of(form::to_json(R::FIELDS, &submitted)?)?;
        state
            .service()
            .create::<R>(&ctx, caller.limited_to(), input)
            .await
    }
    .await;
    after_submit::<R>(&state, &headers, &caller, submitted, None, result).await
}

pub async fn update<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(submitted): Form<BTreeMap<String, String>>,
) -> Response {
    let ctx = audit_context(&caller, &headers);
    let result = async {
        let mut json = form::to_json(R::FIELDS, &submitted)?;
        let version: i64 = submitted
            .get("version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ApiError::field("version", "version.required", "send the version you read")
            })?;
        json["version"] = json!(version);
        state
            .service()
            .update::<R>(&ctx, caller.limited_to(), parse_id(&id)?, json)
            .await
    }
    .await;
    after_submit::<R>(&state, &headers, &caller, submitted, Some(id), result).await
}

/// Redirects to the saved resource, or shows the form again with the input kept and each
/// message next to its field.
async fn after_submit<R: PageResource>(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    submitted: BTreeMap<String, String>,
    id: Option<String>,
    result: Result<R, ApiError>,
) -> Response {
    match result {
        Ok(item) => Redirect::to(&format!("/{}/{}", R::PLURAL, item.id())).into_response(),
        Err(
            error @ (ApiError::Validation(_) | ApiError::Conflict { .. } | ApiError::BadRequest(_)),
        ) => {
            let mut errors = error.field_errors();
            if errors.is_empty() {
                errors.push(FieldError::new("", "", error.problem().detail));
            }
            let version = submitted.get("version").and_then(|v| v.parse().ok());
            let page = FormPage {
                id,
                version,
                values: submitted,
                errors,
            };
            let mut response = render_form::<R>(state, headers, caller, page).await;
            *response.status_mut() = error.status();
            response
        }
        Err(error) => error_page(state, headers, Some(caller), error),
    }
}

pub async fn delete<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(submitted): Form<BTreeMap<String, String>>,
) -> Response {
    let version = submitted.get("version").and_then(|v| v.parse().ok());
    let ctx = audit_context(&caller, &headers);
    let result = match parse_id(&id) {
        Ok(id) => {
            state
                .service()
                .delete::<R>(&ctx, caller.limited_to(), id, version)
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => Redirect::to(&format!("/{}", R::PLURAL)).into_response(),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

struct FormPage {
    id: Option<String>,
    version: Option<i64>,
    values: BTreeMap<String, String>,
    errors: Vec<FieldError>,
}

async fn render_form<R: PageResource>(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    page: FormPage,
) -> Response {
    let lang = negotiate(headers);
    let options = match resources::select_options(state, R::FIELDS, caller.limited_to()).await {
        Ok(options) => options,
        Err(error) => return error_page(state, headers, Some(caller), error),
    };
    let message_of = |e: &FieldError| {
        state
            .i18n()
            .text(lang, &format!("error.{}", e.code), &e.message)
    };
    let mut general: Vec<String> = Vec::new();
    let mut by_input: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for error in &page.errors {
        match form::input_for_error(R::FIELDS, &error.field) {
            Some(input) => by_input.entry(input).or_default().push(message_of(error)),
            None => general.push(message_of(error)),
        }
    }
    let fields: Vec<Value> = R::FIELDS
        .iter()
        .map(|field| {
            let name = field.input_name();
            let value = page.values.get(name).cloned().unwrap_or_default();
            let kind = match field.kind {
                Kind::Textarea
                | Kind::Lines
                | Kind::Env { .. }
                | Kind::Ports
                | Kind::Classes
                | Kind::ClassRules
                | Kind::Databases => "textarea",
                Kind::Select(_) | Kind::TargetSlot(_) => "select",
                Kind::Email => "email",
                Kind::Checkbox => "checkbox",
                Kind::Date => "date",
                _ => "text",
            };
            let choices: Vec<Value> = match field.kind.options() {
                Some(source) => options
                    .get(&source)
                    .map(|list| {
                        list.iter()
                            .map(|(v, label)| json!({"value": v, "label": label, "selected": *v == value}))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => vec![],
            };
            json!({
                "name": name,
                "label_key": format!("field.{name}"),
                "help_key": format!("help.{name}"),
                "kind": kind,
                "value": value,
                "options": choices,
                "errors": by_input.get(name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let action = match &page.id {
        Some(id) => format!("/{}/{id}/edit", R::PLURAL),
        None => format!("/{}/new", R::PLURAL),
    };
    let mut context = tera::Context::new();
    context.insert("plural", R::PLURAL);
    context.insert("new_key", &format!("action.new.{}", R::PLURAL));
    context.insert("editing", &page.id.is_some());
    context.insert("action", &action);
    context.insert("version", &page.version);
    context.insert("fields", &fields);
    context.insert("general_errors", &general);
    render(state, headers, Some(caller), "form.html", context)
}
