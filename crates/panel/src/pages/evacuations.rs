//! The evacuations page: plan emptying a node or a provider by a deadline (the plan shows
//! where each site would go and whether the deadline holds), start it, and follow the
//! evacuations under way with their progress; admins pause, resume or cancel them.

use std::collections::BTreeMap;

use alveole_model::evacuation::{JobState, duration_text};
use alveole_model::{JobId, NodeId, ProviderId};
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::{error_page, render};
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::evacuations::PlanQuery;

/// The form's fields as a plan request. A deadline comes from a `datetime-local` input
/// (`2026-11-29T20:00`, read as UTC) or as RFC 3339.
fn plan_request(fields: &BTreeMap<String, String>) -> Result<Option<PlanQuery>, ApiError> {
    let field = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let scope = field("scope");
    let (node_id, provider_id) = match scope.and_then(|s| s.split_once(':')) {
        Some(("node", id)) => (Some(parse_id::<NodeId>(id)?), None),
        Some(("provider", id)) => (None, Some(parse_id::<ProviderId>(id)?)),
        _ => return Ok(None),
    };
    let deadline = field("deadline")
        .map(|text| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                .map(|local| local.and_utc())
                .or_else(|_| {
                    chrono::DateTime::parse_from_rfc3339(text)
                        .map(|d| d.with_timezone(&chrono::Utc))
                })
                .map_err(|_| {
                    ApiError::field(
                        "deadline",
                        "deadline.invalid",
                        "a date and time, like 2026-11-29T20:00",
                    )
                })
        })
        .transpose()?;
    let parallelism = field("parallelism")
        .map(|text| {
            text.parse::<u32>().map_err(|_| {
                ApiError::field(
                    "parallelism",
                    "parallelism.invalid",
                    "a number of moves, 1 to 32",
                )
            })
        })
        .transpose()?;
    Ok(Some(PlanQuery {
        node_id,
        provider_id,
        deadline,
        parallelism,
    }))
}

pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(fields): Query<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let store = state.store();
        let all = alveole_store::PageRequest {
            after: None,
            limit: 500,
        };
        let nodes = store.nodes().list(&Default::default(), &all).await?.items;
        let providers = store.providers().list(&Default::default(), &all).await?.items;
        let name_of = |id: &alveole_model::NodeId| {
            nodes
                .iter()
                .find(|n| n.id == *id)
                .map_or_else(|| id.to_string(), |n| n.name.to_string())
        };
        let plan = match plan_request(&fields)? {
            Some(request) => Some(state.service().plan_evacuation(&request).await?),
            None => None,
        };
        let evacuations: Vec<_> = state
            .service()
            .evacuations()
            .await?
            .into_iter()
            .map(|e| {
                let counts = e.counts();
                let ended = ["done", "failed", "skipped"]
                    .iter()
                    .map(|s| counts.get(s).copied().unwrap_or(0))
                    .sum::<usize>();
                let scope = e
                    .spec
                    .node_id
                    .map(|n| name_of(&n))
                    .or_else(|| {
                        e.spec.provider_id.map(|p| {
                            providers
                                .iter()
                                .find(|x| x.id == p)
                                .map_or_else(|| p.to_string(), |x| x.name.to_string())
                        })
                    })
                    .unwrap_or_default();
                json!({
                    "id": e.id,
                    "scope": scope,
                    "state": e.state.as_str(),
                    "created_at": e.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    "total": e.items.len(),
                    "ended": ended,
                    "done": counts.get("done").copied().unwrap_or(0),
                    "moving": counts.get("moving").copied().unwrap_or(0),
                    "failed": counts.get("failed").copied().unwrap_or(0),
                    "predicted": duration_text(e.spec.predicted_seconds as f64),
                    "took": e.finished_at.map(|f| duration_text((f - e.created_at).num_seconds() as f64)),
                    "left": e.estimate.as_ref().map(|x| duration_text(x.remaining_seconds as f64)),
                    "basis": e.estimate.as_ref().map(|x| x.basis.clone()),
                    "remaining": e.remaining,
                    "recovery": e.spec.recovery.is_some(),
                    "losses": e.items.iter().filter_map(|i| {
                        let lost = i.data_loss_seconds?;
                        Some(json!({"site": i.site_id, "lost": duration_text(lost as f64)}))
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut context = tera::Context::new();
        context.insert(
            "scopes",
            &nodes
                .iter()
                .map(|n| json!({"value": format!("node:{}", n.id), "label": n.name.to_string()}))
                .chain(providers.iter().map(|p| {
                    json!({"value": format!("provider:{}", p.id), "label": format!("{} (provider)", p.name)})
                }))
                .collect::<Vec<_>>(),
        );
        context.insert("fields", &fields);
        context.insert("plan", &plan);
        context.insert("evacuations", &evacuations);
        context.insert(
            "active",
            &evacuations.iter().any(|e| e["state"] == "running"),
        );
        context.insert("admin", &(caller.role == alveole_model::Role::Admin && !caller.read_only));
        Ok::<_, ApiError>(context)
    }
    .await;
    match result {
        Ok(context) => render(&state, &headers, Some(&caller), "evacuations.html", context),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

/// Starts the evacuation the plan form described.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let request = plan_request(&form)?.ok_or_else(|| {
            ApiError::field("scope", "evacuation.scope", "choose a node or a provider")
        })?;
        let ctx = audit_context(&caller, &headers);
        state.service().start_evacuation(&ctx, &request).await
    }
    .await;
    back_to_page(&state, &headers, &caller, result)
}

/// "This node (or provider) is lost": fences it and recovers its sites from their backups.
pub async fn recover(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let request = plan_request(&form)?.ok_or_else(|| {
            ApiError::field("scope", "evacuation.scope", "choose a node or a provider")
        })?;
        if form.get("confirm").map(String::as_str) != Some("lost") {
            return Err(ApiError::field(
                "confirm",
                "recovery.confirm",
                "type \"lost\": its nodes are fenced and its sites restored from backups",
            ));
        }
        let ctx = audit_context(&caller, &headers);
        state.service().start_recovery(&ctx, &request).await
    }
    .await;
    back_to_page(&state, &headers, &caller, result)
}

/// Pauses, resumes or cancels one (`verb` from the path).
pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
) -> Response {
    let result = async {
        let to = match verb.as_str() {
            "pause" => JobState::Paused,
            "resume" => JobState::Running,
            "cancel" => JobState::Cancelled,
            _ => return Err(ApiError::NotFound("no such action")),
        };
        let id: JobId = parse_id(&id)?;
        let ctx = audit_context(&caller, &headers);
        state.service().set_evacuation_state(&ctx, id, to).await
    }
    .await;
    back_to_page(&state, &headers, &caller, result)
}

/// After a form: back to the page, or the error.
fn back_to_page(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    result: Result<alveole_model::evacuation::Evacuation, ApiError>,
) -> Response {
    match result {
        Ok(_) => Redirect::to("/evacuations").into_response(),
        Err(error) => error_page(state, headers, Some(caller), error),
    }
}
