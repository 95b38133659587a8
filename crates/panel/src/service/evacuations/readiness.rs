//! Exit readiness: for each provider, how long leaving it would take right now (a dry-run
//! evacuation plan, made when asked, so always current) against the co-op's notice period,
//! and what stands in the way.

use alveole_model::ProviderId;
use alveole_model::evacuation::Verdict;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::{Fleet, PlanQuery};
use crate::error::ApiResult;
use crate::service::Service;

/// Moves at once in a readiness plan (the evacuation's default).
const READINESS_PARALLELISM: u32 = 4;

/// Leaving one provider, as things stand.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ProviderReadiness {
    pub provider_id: ProviderId,
    pub name: String,
    pub nodes: usize,
    pub sites: usize,
    /// How long moving every site away would take, from now.
    pub estimated_seconds: u64,
    /// True when every site has a place elsewhere and the moves end within the notice.
    pub ready: bool,
    pub verdict: Verdict,
    /// The plan's verdict in words.
    pub statement: String,
    /// What stands in the way (empty when ready): no room elsewhere, nodes that cannot
    /// receive, sites too big for the time left.
    pub blockers: Vec<String>,
    /// What the durations are based on.
    pub basis: String,
}

/// Every provider's readiness to be left.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ExitReadiness {
    pub computed_at: DateTime<Utc>,
    /// The notice a provider is assumed to give (the panel's `--exit-notice-hours`).
    pub notice_seconds: u64,
    pub providers: Vec<ProviderReadiness>,
}

impl Service {
    /// For each provider with nodes: the plan of leaving it within the notice period.
    pub async fn exit_readiness(&self) -> ApiResult<ExitReadiness> {
        let fleet = Fleet::read(self.store()).await?;
        let notice = self.config().exit_notice;
        let now = self.now();
        let deadline = now + chrono::Duration::from_std(notice).unwrap_or(chrono::Duration::MAX);
        let mut providers = Vec::new();
        for (provider, name) in &fleet.provider_names {
            let nodes = fleet.scope(None, Some(*provider)).len();
            if nodes == 0 {
                continue;
            }
            let query = PlanQuery {
                node_id: None,
                provider_id: Some(*provider),
                deadline: Some(deadline),
                parallelism: Some(READINESS_PARALLELISM),
            };
            let plan = self.plan_with(&fleet, &query, Some(deadline)).await?;
            let ready = plan.verdict == Verdict::Holds;
            let blockers = if ready {
                Vec::new()
            } else {
                // The plan's reasons, but not the note that the rate is assumed.
                plan.suggestions
                    .iter()
                    .filter(|s| !s.starts_with("the rate ("))
                    .cloned()
                    .collect()
            };
            providers.push(ProviderReadiness {
                provider_id: *provider,
                name: name.clone(),
                nodes,
                sites: plan.placements.len() + plan.unplaced.len(),
                estimated_seconds: plan.estimated_seconds,
                ready,
                verdict: plan.verdict,
                statement: plan.statement,
                blockers,
                basis: plan.cost.basis,
            });
        }
        Ok(ExitReadiness {
            computed_at: now,
            notice_seconds: notice.as_secs(),
            providers,
        })
    }
}
