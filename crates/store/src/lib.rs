//! alveole's persistence. The [`Store`] is a set of traits, one per area of the panel
//! (`areas/`: records, fleet, sites, agents, identity, addresses, moves, jobs, audit), each
//! implemented once in SQL (`queries/`, one file per area) and compiled twice, for SQLite and
//! for PostgreSQL (see `sqlite.rs`, `postgres.rs`): each copy is concrete, so no generic
//! database bounds, and every SQL text is written once. Only what really differs between the
//! two (migrations, how a transaction begins, how site writes serialise) lives in the backend
//! modules.
//!
//! Every state change commits through `WriteTx::commit`, which writes the change's audit event
//! in the same transaction: there is no other way to commit a write.

// `queries/` is compiled once per backend on purpose (see above).
#![allow(clippy::duplicate_mod)]

mod areas;
mod audit;
#[cfg(feature = "bench")]
pub mod baseline;
mod error;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;

use alveole_model::{BackupTarget, Clock, Member, Node, Provider, Site, SystemClock};

pub use alveole_audit::export::ExportFilter;
pub use alveole_audit::{AuditKey, ChainHead, Checkpoint};
pub use areas::addresses::AddressStore;
pub use areas::agents::{AgentStore, NodeBackups, NodeDesired, NodeStatus};
pub use areas::audit::{AuditStore, VerifiedPoint};
pub use areas::backups::{BackupStore, RestoreRequest};
pub use areas::certificates::{
    AcmeAccount, AcmeEvent, AcmeEventKind, AcmeStatus, CertificateSource, CertificateStore,
    StoredCertificate,
};
pub use areas::drills::{AlertKind, BackupAlert, DrillRequest, DrillStore};
pub use areas::fleet::{Counts, FleetStore, NodeUsage};
pub use areas::identity::{ApiToken, Expired, IdentityStore, ProviderSession, Session, TokenScope};
pub use areas::jobs::JobStore;
pub use areas::moves::{MoveStore, MoveTiming};
pub use areas::records::{
    BackupTargetFilter, MemberFilter, NodeFilter, Page, PageRequest, ProviderFilter, Records,
    SiteFilter, Stored,
};
pub use areas::series::SeriesStore;
pub use areas::site_keys::{SiteKeyKind, SiteKeyStore};
pub use areas::sites::SiteStore;
pub use audit::{
    AuditContext, AuditEvent, AuditRecord, AuditVerification, Change, PublishedKey, verify_audit,
    verify_audit_from,
};
pub use error::{StoreError, StoreResult};

/// Every trait of the store, for `use alveole_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AddressStore, AgentStore, AuditStore, BackupStore, CertificateStore, DrillStore,
        FleetStore, IdentityStore, JobStore, MoveStore, Records, SiteKeyStore, SiteStore, Store,
        Stored,
    };
}

/// Which database is behind a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything the panel persists, area by area. Writes take an [`AuditContext`] and record
/// one event per change.
pub trait Store:
    Records<Provider>
    + Records<Node>
    + Records<Member>
    + Records<Site>
    + Records<BackupTarget>
    + BackupStore
    + DrillStore
    + CertificateStore
    + FleetStore
    + SiteStore
    + AgentStore
    + IdentityStore
    + AddressStore
    + MoveStore
    + JobStore
    + AuditStore
    + SeriesStore
    + SiteKeyStore
    + Send
    + Sync
    + std::fmt::Debug
{
    fn backend(&self) -> Backend;
}

impl<'a> dyn Store + 'a {
    pub fn providers(&self) -> &dyn Records<Provider> {
        self
    }
    pub fn nodes(&self) -> &dyn Records<Node> {
        self
    }
    pub fn members(&self) -> &dyn Records<Member> {
        self
    }
    pub fn sites(&self) -> &dyn Records<Site> {
        self
    }
    pub fn backup_targets(&self) -> &dyn Records<BackupTarget> {
        self
    }
}

/// Opens (creating if needed) and migrates the database at `url`: `sqlite://path`,
/// `sqlite::memory:` or `postgres://...`. Times come from the system's clock.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_with_clock(url, Arc::new(SystemClock)).await
}

/// [`connect`], with the times it writes (creation, updates, events, expiries) read from
/// `clock`: tests move it to check expiries.
pub async fn connect_with_clock(url: &str, clock: Arc<dyn Clock>) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if is_postgres(url) {
        Arc::new(postgres::connect(url, clock).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(sqlite::connect(url, clock).await?)
    } else {
        return Err(StoreError::Database(sqlx::Error::Configuration(
            format!("unsupported database URL {url:?}: use sqlite://... or postgres://...").into(),
        )));
    };
    // Events recorded by a version without the chain join it, in their order.
    let chained = store.chain_unchained_events().await?;
    if chained > 0 {
        tracing::info!(
            chained,
            "audit events recorded before the chain were chained"
        );
    }
    Ok(store)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
