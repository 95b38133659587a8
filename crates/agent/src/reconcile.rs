//! Runs the planner's actions against the runtime. Idempotent and resumable: it takes no input
//! from whatever triggered it (a new document, an engine event, the timer), observes, plans and
//! acts; a failed action is reported and retried by the next pass.

use std::collections::BTreeMap;
use std::net::IpAddr;

use alveole_model::{DesiredState, SiteId};

use crate::plan::plan;
use crate::runtime::{Action, Naming, Runtime, RuntimeError};

/// What one pass did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub actions: Vec<Action>,
    /// Actions that failed, with the reason.
    pub failures: Vec<(Action, String)>,
    /// Where each running site answers on the node's network.
    pub addresses: BTreeMap<SiteId, IpAddr>,
}

#[derive(Debug)]
pub struct Reconciler<R> {
    runtime: R,
    naming: Naming,
}

impl<R: Runtime> Reconciler<R> {
    pub fn new(runtime: R, naming: Naming) -> Self {
        Self { runtime, naming }
    }

    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    pub async fn reconcile(&self, desired: &DesiredState) -> Result<Report, RuntimeError> {
        let observed = self.runtime.observe(&self.naming).await?;
        let actions = plan(&self.naming, desired, &observed);
        let mut failures = Vec::new();
        for action in &actions {
            if let Err(error) = self.apply(desired, action).await {
                tracing::warn!(?action, %error, "reconcile action failed");
                failures.push((action.clone(), error.to_string()));
            }
        }
        let observed = if actions.is_empty() {
            observed
        } else {
            self.runtime.observe(&self.naming).await?
        };
        let addresses = observed
            .containers
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| Some((c.site_id, c.address?)))
            .collect();
        Ok(Report {
            actions,
            failures,
            addresses,
        })
    }

    async fn apply(&self, desired: &DesiredState, action: &Action) -> Result<(), RuntimeError> {
        match action {
            Action::CreateNetwork => self.runtime.create_network(&self.naming).await,
            Action::CreateVolume { site } => self.runtime.create_volume(&self.naming, *site).await,
            Action::Create { site } => {
                let Some(spec) = desired.sites.iter().find(|s| s.site_id == *site) else {
                    return Ok(());
                };
                let id = self.runtime.create_container(&self.naming, spec).await?;
                if spec.run {
                    self.runtime.start(&id).await
                } else {
                    Ok(())
                }
            }
            Action::Start { container } => self.runtime.start(container).await,
            Action::Stop { container } => self.runtime.stop(container).await,
            Action::Remove { container } => self.runtime.remove(container).await,
        }
    }
}
