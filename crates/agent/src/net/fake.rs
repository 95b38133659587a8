//! The node's network in memory, for tests of the agent without root: an uplink that records
//! what was done to it, and a table that records every plan it was asked to put in place and
//! can be told to refuse.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::routing::{IngressPorts, NftError, Outcome, Routing, RoutingError, RoutingPlan};
use super::uplink::{AddressState, Interface, UplinkError};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An interface in memory that records what was done to it.
#[derive(Debug, Default)]
pub struct FakeInterface {
    present: Mutex<Vec<(IpAddr, AddressState)>>,
    log: Mutex<Vec<String>>,
}

impl FakeInterface {
    /// An address configured by someone else (the node's admin, another host).
    pub fn configure(&self, address: IpAddr, state: AddressState) {
        lock(&self.present).push((address, state));
    }

    /// What was done since the last call (`add …`, `announce …`, `remove …`, `forget …`).
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.log))
    }

    fn note(&self, line: String) {
        lock(&self.log).push(line);
    }
}

impl Interface for std::sync::Arc<FakeInterface> {
    fn prepare(&self) -> Result<(), UplinkError> {
        Ok(())
    }
    fn addresses(&self) -> Result<Vec<(IpAddr, AddressState)>, UplinkError> {
        Ok(lock(&self.present).clone())
    }
    fn add(&self, address: IpAddr) -> Result<(), UplinkError> {
        self.note(format!("add {address}"));
        lock(&self.present).push((address, AddressState::Ready));
        Ok(())
    }
    fn remove(&self, address: IpAddr) -> Result<(), UplinkError> {
        self.note(format!("remove {address}"));
        lock(&self.present).retain(|(a, _)| *a != address);
        Ok(())
    }
    fn announce(&self, address: IpAddr) -> Result<(), UplinkError> {
        self.note(format!("announce {address}"));
        Ok(())
    }
    fn forget_connections(&self, address: IpAddr) -> Result<(), UplinkError> {
        self.note(format!("forget {address}"));
        Ok(())
    }
}

/// The node's table in memory: keeps the last plan it was given.
#[derive(Debug)]
pub struct FakeRouting {
    ingress: IngressPorts,
    plans: Mutex<Vec<RoutingPlan>>,
    refusals: Mutex<u32>,
}

impl FakeRouting {
    pub fn new(ingress: IngressPorts) -> Self {
        Self {
            ingress,
            plans: Mutex::new(Vec::new()),
            refusals: Mutex::new(0),
        }
    }

    /// The next `count` passes fail to put the table in place.
    pub fn refuse(&self, count: u32) {
        *lock(&self.refusals) = count;
    }

    /// Every plan put in place, oldest first.
    pub fn plans(&self) -> Vec<RoutingPlan> {
        lock(&self.plans).clone()
    }
}

#[async_trait]
impl Routing for FakeRouting {
    fn ingress(&self) -> IngressPorts {
        self.ingress
    }

    async fn ensure(&self, plan: RoutingPlan) -> Result<Outcome, RoutingError> {
        {
            let mut refusals = lock(&self.refusals);
            if *refusals > 0 {
                *refusals -= 1;
                return Err(NftError::Refused("the fake table was told to refuse".into()).into());
            }
        }
        let mut plans = lock(&self.plans);
        let replaced = plans.last().is_none_or(|last| last.shape != plan.shape);
        let added = plan.elements.len();
        plans.push(plan);
        Ok(Outcome {
            replaced,
            removed: 0,
            added,
            drift: None,
        })
    }
}
