//! Evacuations: the plan (where every site of a node, or of a provider's nodes, would go, how
//! long moving them would take at the throughput measured between nodes, and whether a
//! deadline holds), and running it as a durable job (`crate::jobs`).

use std::collections::BTreeMap;

use alveole_model::evacuation::{
    self, Destination, Evacuation, EvacuationPlan, EvacuationSpec, JobState, SiteToMove, Throughput,
};
use alveole_model::{MovePhase, NodeId, ProviderId};
use alveole_store::{PageRequest, SiteFilter};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// What to empty, by when, how many moves at once.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    pub node_id: Option<NodeId>,
    pub provider_id: Option<ProviderId>,
    /// RFC 3339, e.g. 2026-11-29T20:00:00Z.
    pub deadline: Option<DateTime<Utc>>,
    /// Moves at once (1 to 32; 4 by default).
    pub parallelism: Option<u32>,
}

/// The throughput assumed when no move was measured yet: 50 MiB/s.
const ASSUMED_BYTES_PER_SECOND: u64 = 50 << 20;
/// How many recent moves the measured throughput is the median of.
const MEASURED_MOVES: usize = 20;

pub async fn plan(
    State(state): State<AppState>,
    Query(query): Query<PlanQuery>,
) -> ApiResult<Json<EvacuationPlan>> {
    Ok(Json(compute_plan(&state, &query).await?))
}

/// Plans the evacuation, then runs it as a durable job: moves start in the plan's order,
/// `parallelism` at a time, in whichever panel process holds the job's lease.
pub async fn start(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PlanQuery>,
) -> ApiResult<(StatusCode, Json<Evacuation>)> {
    let ctx = audit_context(&caller, &headers);
    let evacuation = start_job(&state, &ctx, &request).await?;
    Ok((StatusCode::ACCEPTED, Json(evacuation)))
}

/// Plans, then records the evacuation as a job (the API and the page).
pub(crate) async fn start_job(
    state: &AppState,
    ctx: &alveole_store::AuditContext,
    request: &PlanQuery,
) -> ApiResult<Evacuation> {
    let plan = compute_plan(state, request).await?;
    let spec = EvacuationSpec {
        node_id: request.node_id,
        provider_id: request.provider_id,
        deadline: request.deadline,
        parallelism: plan.parallelism,
        predicted_seconds: plan.estimated_seconds,
        statement: plan.statement.clone(),
        unplaced: plan.unplaced.clone(),
    };
    let items: Vec<_> = plan
        .placements
        .iter()
        .map(|p| (p.site_id, p.to_node))
        .collect();
    Ok(state.store().create_evacuation(ctx, &spec, &items).await?)
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Evacuation>>> {
    Ok(Json(state.store().evacuations().await?))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    Ok(Json(state.store().get_evacuation(parse_id(&id)?).await?))
}

async fn set_state(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    to: JobState,
) -> ApiResult<Json<Evacuation>> {
    let ctx = audit_context(caller, headers);
    Ok(Json(
        state
            .store()
            .set_evacuation_state(&ctx, parse_id(id)?, to)
            .await?,
    ))
}

/// No new move starts; those under way finish.
pub async fn pause(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    set_state(&state, &caller, &headers, &id, JobState::Paused).await
}

pub async fn resume(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    set_state(&state, &caller, &headers, &id, JobState::Running).await
}

/// Stops for good: the sites not started stay; moves under way finish.
pub async fn cancel(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    set_state(&state, &caller, &headers, &id, JobState::Cancelled).await
}

pub(crate) async fn compute_plan(state: &AppState, query: &PlanQuery) -> ApiResult<EvacuationPlan> {
    let store = state.store();
    let nodes = store
        .list_nodes(
            &Default::default(),
            &PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await?
        .items;
    let leaving: Vec<NodeId> = match (query.node_id, query.provider_id) {
        (Some(node), None) => {
            store.get_node(node).await?;
            vec![node]
        }
        (None, Some(provider)) => {
            store.get_provider(provider).await?;
            nodes
                .iter()
                .filter(|n| n.provider_id == provider)
                .map(|n| n.id)
                .collect()
        }
        _ => {
            return Err(ApiError::field(
                "node_id",
                "evacuation.scope",
                "give either node_id or provider_id",
            ));
        }
    };
    let provider_of: BTreeMap<NodeId, ProviderId> =
        nodes.iter().map(|n| (n.id, n.provider_id)).collect();
    let measured: BTreeMap<_, _> = store
        .node_statuses()
        .await?
        .into_iter()
        .flat_map(|s| s.report.sites)
        .filter_map(|r| Some((r.site_id, r.volume_bytes?)))
        .collect();
    let mut sites = Vec::new();
    for node in &leaving {
        let filter = SiteFilter {
            node_id: Some(*node),
            ..Default::default()
        };
        let page = PageRequest {
            after: None,
            limit: 500,
        };
        for site in store.list_sites(&filter, &page).await?.items {
            sites.push(SiteToMove {
                site_id: site.id,
                name: site.primary_domain.to_unicode(),
                from_node: *node,
                from_provider: provider_of
                    .get(node)
                    .copied()
                    .unwrap_or(ProviderId(uuid::Uuid::nil())),
                reservation: site.reservation(),
                volume_bytes: measured
                    .get(&site.id)
                    .copied()
                    .unwrap_or(site.volume.quota_bytes),
            });
        }
    }
    let destinations: Vec<Destination> = store
        .node_usage()
        .await?
        .into_iter()
        .filter(|u| !leaving.contains(&u.load.node_id))
        .filter_map(|u| {
            Some(Destination {
                provider: *provider_of.get(&u.load.node_id)?,
                name: u.name.to_string(),
                load: u.load,
            })
        })
        .collect();
    let throughput = measured_throughput(state, &leaving).await?;
    Ok(evacuation::plan(
        sites,
        destinations,
        throughput,
        query.parallelism.unwrap_or(4),
        state.config().clock.now(),
        query.deadline,
    ))
}

/// The median throughput (bytes sent over the time from start to switch) of the latest moves
/// away from the nodes being emptied, else of the co-op's latest moves; an assumption when
/// there were none.
async fn measured_throughput(state: &AppState, leaving: &[NodeId]) -> Result<Throughput, ApiError> {
    let moves = state.store().site_moves(None).await?;
    let rate_of = |m: &alveole_model::SiteMove| {
        let took = (m.switched_at? - m.started_at).num_milliseconds();
        let switched = matches!(m.phase, MovePhase::Forwarding | MovePhase::Done);
        (switched && took > 0 && m.progress.bytes_sent > 0)
            .then(|| m.progress.bytes_sent.saturating_mul(1000) / took as u64)
    };
    let median = |mut rates: Vec<u64>| {
        rates.sort_unstable();
        rates.get(rates.len() / 2).copied()
    };
    let from_here: Vec<u64> = moves
        .iter()
        .filter(|m| leaving.contains(&m.from_node))
        .filter_map(rate_of)
        .take(MEASURED_MOVES)
        .collect();
    let anywhere: Vec<u64> = moves
        .iter()
        .filter_map(rate_of)
        .take(MEASURED_MOVES)
        .collect();
    Ok(match median(from_here).or_else(|| median(anywhere)) {
        Some(rate) => Throughput {
            bytes_per_second: rate,
            measured: true,
        },
        None => Throughput {
            bytes_per_second: ASSUMED_BYTES_PER_SECOND,
            measured: false,
        },
    })
}
