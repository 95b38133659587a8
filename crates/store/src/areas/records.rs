//! The resources kept with audited create, update and delete, version checks and keyset
//! lists: providers, nodes, members, sites and backup targets. One generic trait, [`Records`], serves them
//! all; what differs between them is in [`Stored`] here and in `queries/<resource>.rs`.

use std::fmt::Display;
use std::str::FromStr;

use alveole_model::{
    BackupTarget, BackupTargetId, Member, MemberId, NewBackupTarget, NewMember, NewNode,
    NewProvider, NewSite, Node, NodeId, Provider, ProviderId, Role, Site, SiteId, SitePhase,
};
use async_trait::async_trait;

use crate::{AuditContext, Store, StoreResult};

/// A page of a keyset-paginated list.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Where a list starts and how long it is.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Opaque cursor from a previous page (the last id seen).
    pub after: Option<uuid::Uuid>,
    pub limit: u32,
}

/// Backup targets are few: listed whole.
#[derive(Clone, Debug, Default)]
pub struct BackupTargetFilter;

#[derive(Clone, Debug, Default)]
pub struct ProviderFilter {
    pub country: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct NodeFilter {
    pub provider_id: Option<ProviderId>,
}

#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub role: Option<Role>,
}

#[derive(Clone, Debug, Default)]
pub struct SiteFilter {
    pub owner_id: Option<MemberId>,
    pub node_id: Option<NodeId>,
    pub phase: Option<SitePhase>,
    /// Sites answering for this (normalised) host name, primary or alias.
    pub hostname: Option<String>,
}

/// A resource the store keeps as [`Records`].
pub trait Stored: Sized + Send + Sync + 'static {
    /// Singular, lowercase (`site`): also its audit events' target kind.
    const KIND: &'static str;
    type Id: FromStr + Copy + Display + Send + Sync + 'static;
    /// What a create or an update writes (validated by the model crate).
    type New: Send + 'static;
    type Filter: Default + Send + Sync + 'static;

    fn id(&self) -> Self::Id;
    /// The store's records of this kind.
    fn records(store: &dyn Store) -> &dyn Records<Self>;
}

/// Audited create, update and delete, with optimistic versions, and keyset lists.
#[async_trait]
pub trait Records<T: Stored>: Send + Sync {
    async fn list(&self, filter: &T::Filter, page: &PageRequest) -> StoreResult<Page<T>>;
    async fn get(&self, id: T::Id) -> StoreResult<T>;
    /// Checks what spans several rows (names free, room on the node, references), then
    /// creates it (one audited change).
    async fn create(&self, ctx: &AuditContext, new: T::New) -> StoreResult<T>;
    /// As `create`, replacing the item if it still has `version`.
    async fn update(
        &self,
        ctx: &AuditContext,
        id: T::Id,
        version: i64,
        new: T::New,
    ) -> StoreResult<T>;
    /// Refused (a conflict naming them) while others depend on it; with `version`, also when
    /// the item changed since.
    async fn delete(&self, ctx: &AuditContext, id: T::Id, version: Option<i64>) -> StoreResult<()>;
}

macro_rules! stored {
    ($item:ty, $kind:literal, $id:ty, $new:ty, $filter:ty) => {
        impl Stored for $item {
            const KIND: &'static str = $kind;
            type Id = $id;
            type New = $new;
            type Filter = $filter;

            fn id(&self) -> $id {
                self.id
            }
            fn records(store: &dyn Store) -> &dyn Records<Self> {
                store
            }
        }
    };
}

stored!(
    Provider,
    "provider",
    ProviderId,
    NewProvider,
    ProviderFilter
);
stored!(Node, "node", NodeId, NewNode, NodeFilter);
stored!(Member, "member", MemberId, NewMember, MemberFilter);
stored!(Site, "site", SiteId, NewSite, SiteFilter);
stored!(
    BackupTarget,
    "backup_target",
    BackupTargetId,
    NewBackupTarget,
    BackupTargetFilter
);
