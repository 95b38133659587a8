//! Runs the planner's actions against the runtime. Idempotent and resumable: it takes no input
//! from whatever triggered it (a new document, an engine event, the timer), observes, plans and
//! acts; a failed action is reported and retried by the next pass.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use alveole_model::{DesiredState, SiteId, SiteSpec};

use futures::StreamExt;

use crate::engine::plan::plan;
use crate::engine::runtime::{Action, Naming, NoTraffic, Runtime, RuntimeError, Traffic};
use crate::net::routing::{Drift, Outcome, Routing, RoutingPlan, Shape};
use crate::net::uplink::{Uplink, UplinkReport};

/// How many actions of one phase run at once (the engine serialises some work itself).
const PARALLEL_ACTIONS: usize = 8;

/// What one pass did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub actions: Vec<Action>,
    /// Actions that failed, with the reason.
    pub failures: Vec<(Action, String)>,
    /// Where each running site answers on the node's network.
    pub addresses: BTreeMap<SiteId, IpAddr>,
    /// What the node's table did this pass, when the node has one.
    pub routing: Option<Outcome>,
    /// Why the node's table could not be put in place, if it could not: the sites are then
    /// neither routed nor isolated from the host.
    pub routing_error: Option<String>,
    /// Entries of the desired state that collide with others (not routed).
    pub routing_conflicts: Vec<String>,
    /// The public addresses on the node's uplink after the pass, and what went wrong there,
    /// when the agent manages them.
    pub uplink: Option<UplinkReport>,
}

impl Report {
    /// Drift found in the node's table and repaired this pass.
    pub fn routing_drift(&self) -> Option<&Drift> {
        self.routing.as_ref()?.drift.as_ref()
    }
}

pub struct Reconciler<R> {
    runtime: Arc<R>,
    naming: Naming,
    traffic: Arc<dyn Traffic>,
    routing: Option<Arc<dyn Routing>>,
    uplink: Option<Arc<Uplink>>,
}

impl<R> std::fmt::Debug for Reconciler<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("naming", &self.naming)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Reconciler<R> {
    /// Launches the site's container, its databases' passwords set first (a rotation gives
    /// the new one to the server and the site together).
    async fn create(&self, spec: &SiteSpec) -> Result<Option<SocketAddr>, RuntimeError> {
        if spec.run {
            for db in &spec.databases {
                let server = self.naming.database(spec.site_id, &db.name);
                crate::engine::database::set_password(self.runtime.as_ref(), &server, db).await?;
            }
        }
        crate::engine::runtime::launch(self.runtime.as_ref(), &self.naming, spec).await
    }

    /// Creates a site's database server and, when the site runs, starts it and waits until it
    /// answers (the site's container comes after).
    async fn create_database(&self, spec: &SiteSpec, name: &str) -> Result<(), RuntimeError> {
        let Some(db) = spec.databases.iter().find(|db| db.name == name) else {
            return Ok(());
        };
        let id = self
            .runtime
            .create_database(&self.naming, spec.site_id, db)
            .await?;
        if spec.run || spec.databases_stay_up {
            self.runtime.start(&id).await?;
            crate::engine::database::wait_ready(self.runtime.as_ref(), &id, db).await?;
        }
        Ok(())
    }

    pub fn new(runtime: R, naming: Naming) -> Self {
        Self {
            runtime: Arc::new(runtime),
            naming,
            traffic: Arc::new(NoTraffic),
            routing: None,
            uplink: None,
        }
    }

    /// Keeps the node's table (routing, limits, isolation from the host) in place on every
    /// pass.
    pub fn with_routing(mut self, routing: Arc<dyn Routing>) -> Self {
        self.set_routing(routing);
        self
    }

    pub fn set_routing(&mut self, routing: Arc<dyn Routing>) {
        self.routing = Some(routing);
    }

    /// Whether the node's table is kept.
    pub fn has_routing(&self) -> bool {
        self.routing.is_some()
    }

    /// Holds the node's public addresses on its uplink.
    pub fn set_uplink(&mut self, uplink: Arc<Uplink>) {
        self.uplink = Some(uplink);
    }

    /// Runs one step on the uplink away from the async workers (it runs programs).
    async fn on_uplink(
        &self,
        step: fn(&Uplink, &[IpAddr]) -> UplinkReport,
        wanted: &[IpAddr],
    ) -> Option<UplinkReport> {
        let uplink = self.uplink.clone()?;
        let wanted = wanted.to_vec();
        let wanted_again = wanted.clone();
        Some(
            tokio::task::spawn_blocking(move || step(&uplink, &wanted))
                .await
                .unwrap_or_else(|error| UplinkReport {
                    held: wanted_again,
                    problems: vec![format!("the uplink step stopped: {error}")],
                }),
        )
    }

    /// Puts the uplink's addresses in place without the rest of a pass (the engine is away):
    /// addresses do not depend on it.
    pub async fn converge_uplink(&self, desired: &DesiredState) -> Option<UplinkReport> {
        self.on_uplink(Uplink::converge, &desired.addresses).await
    }

    /// Holds and repoints requests through `traffic` when a site's container is replaced.
    pub fn with_traffic(mut self, traffic: Arc<dyn Traffic>) -> Self {
        self.traffic = traffic;
        self
    }

    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The runtime, shared (moves use it beside the reconciler).
    pub fn shared_runtime(&self) -> Arc<R> {
        self.runtime.clone()
    }

    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    pub async fn reconcile(&self, desired: &DesiredState) -> Result<Report, RuntimeError> {
        self.reconcile_with(desired, desired.input_filter.as_ref())
            .await
    }

    /// A pass with `input_filter` in force instead of the desired one (the agent keeps the
    /// last confirmed filter while a new one is on trial or was rolled back).
    pub async fn reconcile_with(
        &self,
        desired: &DesiredState,
        input_filter: Option<&alveole_model::InputFilter>,
    ) -> Result<Report, RuntimeError> {
        let observed = self.runtime.observe(&self.naming).await?;
        let actions = plan(&self.naming, desired, &observed);
        // The network first, then volumes, then pods, then databases (in their site's pod),
        // then the sites' containers (after their databases), then purged volumes (no container
        // may use a volume when it goes): each phase needs the one before.
        // Within a phase, actions concern different objects and run a few at a time.
        let mut failures = Vec::new();
        let phases: [fn(&Action) -> bool; 6] = [
            |a| matches!(a, Action::CreateNetwork),
            |a| {
                matches!(
                    a,
                    Action::CreateVolume { .. } | Action::CreateDatabaseVolume { .. }
                )
            },
            |a| matches!(a, Action::CreatePod { .. } | Action::StartPod { .. }),
            |a| {
                matches!(
                    a,
                    Action::CreateDatabase { .. }
                        | Action::ReplaceDatabase { .. }
                        | Action::StartDatabase { .. }
                )
            },
            |a| {
                !matches!(
                    a,
                    Action::CreateNetwork
                        | Action::CreateVolume { .. }
                        | Action::CreateDatabaseVolume { .. }
                        | Action::CreatePod { .. }
                        | Action::CreateDatabase { .. }
                        | Action::ReplaceDatabase { .. }
                        | Action::StartPod { .. }
                        | Action::StartDatabase { .. }
                        | Action::RemoveVolume { .. }
                )
            },
            |a| matches!(a, Action::RemoveVolume { .. }),
        ];
        for in_phase in phases {
            // Boxed with one named lifetime: the unboxed form trips the compiler's `Send` proof.
            let work: Vec<futures::future::BoxFuture<'_, (&Action, Result<(), RuntimeError>)>> =
                actions
                    .iter()
                    .filter(|a| in_phase(a))
                    .map(|action| -> futures::future::BoxFuture<'_, _> {
                        Box::pin(async move { (action, self.apply(desired, action).await) })
                    })
                    .collect();
            let results: Vec<_> = futures::stream::iter(work)
                .buffer_unordered(PARALLEL_ACTIONS)
                .collect()
                .await;
            for (action, result) in results {
                if let Err(error) = result {
                    let error = crate::describe(&error);
                    tracing::warn!(?action, %error, "reconcile action failed");
                    failures.push((action.clone(), error));
                }
            }
        }
        let observed = if actions.is_empty() {
            observed
        } else {
            self.runtime.observe(&self.naming).await?
        };
        let addresses: BTreeMap<SiteId, IpAddr> = observed
            .containers
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| Some((c.site_id, c.address?)))
            .collect();
        // After the actions, so the node's bridge exists when the table refers to it, and
        // the containers' addresses are known.
        let mut report = Report {
            actions,
            failures,
            routing: None,
            routing_error: None,
            routing_conflicts: Vec::new(),
            addresses,
            uplink: None,
        };
        // Addresses taken away go before the table changes, new ones come after it: the old
        // node stops answering first, and a new address answers only once it is routed.
        let released = self.on_uplink(Uplink::release, &desired.addresses).await;
        if let Some(routing) = &self.routing
            && observed.network
        {
            let shape = Shape::of(&self.naming, routing.ingress()).with_input_filter(input_filter);
            let plan = RoutingPlan::new(shape, desired, &report.addresses);
            for conflict in &plan.conflicts {
                tracing::warn!(%conflict, "not routed");
            }
            report.routing_conflicts = plan.conflicts.clone();
            match routing.ensure(plan).await {
                Ok(outcome) => {
                    if let Some(drift) = &outcome.drift {
                        tracing::warn!(%drift, "repaired drift in the node's table");
                    }
                    report.routing = Some(outcome);
                }
                Err(error) => {
                    let error = crate::describe(&error);
                    tracing::warn!(%error, "the node's table is not in place");
                    report.routing_error = Some(error);
                }
            }
        }
        if let Some(mut taken) = self.on_uplink(Uplink::take, &desired.addresses).await {
            let mut problems = released.map(|r| r.problems).unwrap_or_default();
            problems.append(&mut taken.problems);
            taken.problems = problems;
            report.uplink = Some(taken);
        }
        Ok(report)
    }

    async fn apply(&self, desired: &DesiredState, action: &Action) -> Result<(), RuntimeError> {
        match action {
            Action::CreateNetwork => self.runtime.create_network(&self.naming).await,
            Action::CreateVolume { site } => self.runtime.create_volume(&self.naming, *site).await,
            Action::Create { site } => match desired.sites.iter().find(|s| s.site_id == *site) {
                Some(spec) => self.create(spec).await.map(|_| ()),
                None => Ok(()),
            },
            Action::Replace { site, old } => {
                let Some(spec) = desired.sites.iter().find(|s| s.site_id == *site) else {
                    return Ok(());
                };
                // New requests wait; those in flight finish on the old container first.
                let _held = self.traffic.hold(*site).await;
                self.runtime.remove(old).await?;
                if let Some(address) = self.create(spec).await? {
                    self.traffic.repoint(*site, address);
                }
                Ok(())
            }
            Action::CreatePod { site } => {
                let Some(spec) = desired.sites.iter().find(|s| s.site_id == *site) else {
                    return Ok(());
                };
                let id = self.runtime.create_pod(&self.naming, spec).await?;
                self.runtime.start(&id).await
            }
            Action::CreateDatabaseVolume { site, database } => {
                self.runtime
                    .create_database_volume(&self.naming, *site, database)
                    .await
            }
            Action::CreateDatabase { site, database } => {
                match desired.sites.iter().find(|s| s.site_id == *site) {
                    Some(spec) => self.create_database(spec, database).await,
                    None => Ok(()),
                }
            }
            Action::ReplaceDatabase {
                site,
                database,
                old,
            } => {
                let Some(spec) = desired.sites.iter().find(|s| s.site_id == *site) else {
                    return Ok(());
                };
                self.runtime.remove(old).await?;
                self.create_database(spec, database).await
            }
            Action::StartPod { container, .. } | Action::StartDatabase { container, .. } => {
                self.runtime.start(container).await
            }
            Action::Start { container, .. } => self.runtime.start(container).await,
            Action::Stop { container, .. } => self.runtime.stop(container).await,
            Action::Remove { container, .. } => self.runtime.remove(container).await,
            Action::RemoveVolume { site } => self.runtime.remove_volume(&self.naming, *site).await,
        }
    }
}
