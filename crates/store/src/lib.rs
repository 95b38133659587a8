//! alveole's persistence. One [`Store`] trait; two implementations compiled from one query
//! file (`queries.rs`), once for SQLite and once for PostgreSQL (see `sqlite.rs`,
//! `postgres.rs`): each copy is concrete, so no generic database bounds, and every SQL text is
//! written once. Only what really differs between the two (migrations, how a write transaction
//! begins, how site writes serialise) lives in the backend modules.
//!
//! Every state change commits through `WriteTx::commit`, which writes the change's audit event
//! in the same transaction: there is no other way to commit a write.

// `queries.rs` is compiled once per backend on purpose (see above).
#![allow(clippy::duplicate_mod)]

mod audit;
mod error;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;

use alveole_model::{
    Member, MemberId, NewMember, NewNode, NewProvider, NewSite, Node, NodeId, NodeLoad, NodeReport,
    Provider, ProviderId, Role, Site, SiteId, SiteMoveId, SitePhase, Slug,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use alveole_audit::export::ExportFilter;
pub use alveole_audit::{AuditKey, ChainHead, Checkpoint};
pub use audit::{
    AuditContext, AuditEvent, AuditRecord, AuditVerification, Change, PublishedKey, verify_audit,
};
pub use error::{StoreError, StoreResult};

/// Which database is behind a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Opens (creating if needed) and migrates the database at `url`: `sqlite://path`,
/// `sqlite::memory:` or `postgres://...`.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("postgres://")
        || url.starts_with("postgresql://")
    {
        Arc::new(postgres::connect(url).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(sqlite::connect(url).await?)
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

/// A node with what its sites reserve, for the dashboard and the placement planner.
#[derive(Clone, Debug)]
pub struct NodeUsage {
    pub name: Slug,
    pub load: NodeLoad,
    pub sites: i64,
}

/// Counts for the dashboard.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub providers: i64,
    pub nodes: i64,
    pub members: i64,
    pub sites: i64,
    /// Sites per phase, in [`SitePhase::ALL`] order.
    pub sites_by_phase: Vec<(SitePhase, i64)>,
}

/// A node's last report, as kept.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub reported_at: DateTime<Utc>,
    pub report: NodeReport,
}

/// What an API token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Reads only: any change answers 403.
    Read,
    /// Whatever the member's role allows.
    Full,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Full => "full",
        }
    }
}

/// An API token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct ApiToken {
    pub id: uuid::Uuid,
    pub member_id: alveole_model::MemberId,
    pub name: String,
    pub scope: TokenScope,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A browser session of the panel.
#[derive(Clone, Debug)]
pub struct Session {
    pub token_hash: String,
    pub actor: String,
    /// The member signed in, if a member (the bootstrap admin's sessions have none).
    pub member_id: Option<alveole_model::MemberId>,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Everything the panel persists. Writes take an [`AuditContext`] and record one event.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;

    async fn list_providers(
        &self,
        filter: &ProviderFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Provider>>;
    async fn get_provider(&self, id: ProviderId) -> StoreResult<Provider>;
    async fn create_provider(&self, ctx: &AuditContext, new: NewProvider) -> StoreResult<Provider>;
    async fn update_provider(
        &self,
        ctx: &AuditContext,
        id: ProviderId,
        version: i64,
        new: NewProvider,
    ) -> StoreResult<Provider>;
    /// Refused (conflict naming them) while the provider has nodes.
    async fn delete_provider(
        &self,
        ctx: &AuditContext,
        id: ProviderId,
        version: Option<i64>,
    ) -> StoreResult<()>;

    async fn list_nodes(&self, filter: &NodeFilter, page: &PageRequest) -> StoreResult<Page<Node>>;
    async fn get_node(&self, id: NodeId) -> StoreResult<Node>;
    async fn create_node(&self, ctx: &AuditContext, new: NewNode) -> StoreResult<Node>;
    /// Refused when the new capacity no longer holds the sites already placed.
    async fn update_node(
        &self,
        ctx: &AuditContext,
        id: NodeId,
        version: i64,
        new: NewNode,
    ) -> StoreResult<Node>;
    /// Refused (conflict naming them) while the node has sites.
    async fn delete_node(
        &self,
        ctx: &AuditContext,
        id: NodeId,
        version: Option<i64>,
    ) -> StoreResult<()>;
    async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>>;

    async fn list_members(
        &self,
        filter: &MemberFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Member>>;
    async fn get_member(&self, id: MemberId) -> StoreResult<Member>;
    async fn create_member(&self, ctx: &AuditContext, new: NewMember) -> StoreResult<Member>;
    async fn update_member(
        &self,
        ctx: &AuditContext,
        id: MemberId,
        version: i64,
        new: NewMember,
    ) -> StoreResult<Member>;
    /// Refused (conflict naming them) while the member owns sites.
    async fn delete_member(
        &self,
        ctx: &AuditContext,
        id: MemberId,
        version: Option<i64>,
    ) -> StoreResult<()>;

    async fn list_sites(&self, filter: &SiteFilter, page: &PageRequest) -> StoreResult<Page<Site>>;
    /// The same list with `LIMIT/OFFSET` paging: the naive baseline that benchmarks compare
    /// keyset pagination against. Not used by the panel.
    async fn list_sites_by_offset(&self, offset: u32, limit: u32) -> StoreResult<Vec<Site>>;
    async fn get_site(&self, id: SiteId) -> StoreResult<Site>;
    /// Places the site (on the node with most room when none is given), checks capacity and
    /// that every host name is free, then creates it.
    async fn create_site(&self, ctx: &AuditContext, new: NewSite) -> StoreResult<Site>;
    async fn update_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: i64,
        new: NewSite,
    ) -> StoreResult<Site>;
    async fn delete_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
    ) -> StoreResult<()>;
    /// Deletes the site and orders its node to remove its volume (one audited change).
    async fn purge_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
    ) -> StoreResult<()>;
    /// The sites whose volumes the node must remove.
    async fn volume_purges(&self, node: NodeId) -> StoreResult<Vec<SiteId>>;

    async fn counts(&self) -> StoreResult<Counts>;

    /// The node's desired-state generation, the sites placed on it and their dedicated
    /// addresses, read together.
    async fn desired_state(&self, node: NodeId) -> StoreResult<NodeDesired>;
    /// Stores a one-time join token (hashed) for the node's agent, audited.
    async fn create_join_token(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Consumes a valid join token and records the hash of the agent's public key, replacing
    /// any earlier one; returns the node. `NotFound` when the token is unknown or expired.
    async fn enroll_agent(
        &self,
        ctx: &AuditContext,
        join_hash: &str,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<NodeId>;
    /// Forgets the node's agent key (audited): its certificates stop working at once, and the
    /// agent must enrol again with a new join token. `NotFound` when the node does not exist.
    async fn revoke_agent(&self, ctx: &AuditContext, node: NodeId) -> StoreResult<()>;
    /// The node whose agent key has this hash.
    async fn node_for_agent_key(&self, key_hash: &str) -> StoreResult<Option<NodeId>>;
    /// Keeps the node's report (telemetry, not audited) and moves the phases of its sites as
    /// the report says (each move audited). Reports about sites not on this node are ignored.
    /// Returns the sites whose phase changed.
    async fn record_node_report(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        report: &NodeReport,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(SiteId, SitePhase)>>;
    /// The last report of every node that has reported.
    /// Each node's inventory as its agent last sent it, and when.
    async fn node_inventories(
        &self,
    ) -> StoreResult<Vec<(NodeId, DateTime<Utc>, alveole_model::NodeInventory)>>;
    async fn node_statuses(&self) -> StoreResult<Vec<NodeStatus>>;

    /// Replaces the hash of a named panel token (`bootstrap`), audited.
    async fn set_admin_token(
        &self,
        ctx: &AuditContext,
        name: &str,
        token_hash: &str,
    ) -> StoreResult<()>;
    async fn admin_token_hash(&self, name: &str) -> StoreResult<Option<String>>;
    async fn create_session(&self, ctx: &AuditContext, session: &Session) -> StoreResult<()>;
    /// Keeps a new API token (its hash) for a member (audited). `NotFound` for no such member.
    async fn create_api_token(
        &self,
        ctx: &AuditContext,
        token: &ApiToken,
        token_hash: &str,
    ) -> StoreResult<()>;
    async fn api_tokens_of(&self, member: alveole_model::MemberId) -> StoreResult<Vec<ApiToken>>;
    /// Adds a pool of addresses at a provider (audited); refused when it overlaps another.
    async fn create_ip_pool(
        &self,
        ctx: &AuditContext,
        pool: &alveole_model::IpPool,
    ) -> StoreResult<()>;
    /// Every pool, with how many of its addresses are allocated.
    async fn ip_pools(&self) -> StoreResult<Vec<(alveole_model::IpPool, u64)>>;
    /// Removes an empty pool (audited); refused while addresses are allocated from it.
    async fn delete_ip_pool(&self, ctx: &AuditContext, id: uuid::Uuid) -> StoreResult<()>;
    /// Allocates `address` (or the first free one) of the pool to a node, maybe dedicated to
    /// one of its sites (audited). An address is never allocated twice.
    async fn allocate_ip(
        &self,
        ctx: &AuditContext,
        pool: uuid::Uuid,
        node: alveole_model::NodeId,
        site: Option<alveole_model::SiteId>,
        address: Option<std::net::IpAddr>,
    ) -> StoreResult<alveole_model::IpAllocation>;
    async fn ip_allocations(&self) -> StoreResult<Vec<alveole_model::IpAllocation>>;
    /// Releases an address (audited).
    async fn release_ip(&self, ctx: &AuditContext, address: std::net::IpAddr) -> StoreResult<()>;
    /// Starts moving an allocated address to another node (audited): the old node's desired
    /// state loses it at once; the new node's gains it when [`Store::complete_address_move`]
    /// runs. A site's dedicated address moves only to the node its site runs on.
    async fn start_address_move(
        &self,
        ctx: &AuditContext,
        address: std::net::IpAddr,
        to: alveole_model::NodeId,
        forced: bool,
    ) -> StoreResult<alveole_model::AddressMove>;
    async fn address_moves(&self) -> StoreResult<Vec<alveole_model::AddressMove>>;
    /// Gives the moving address to its new node (audited with how long the move took).
    async fn complete_address_move(
        &self,
        ctx: &AuditContext,
        address: std::net::IpAddr,
    ) -> StoreResult<alveole_model::IpAllocation>;
    /// Keeps why the last attempt to finish a move failed, for the page and the API.
    async fn note_address_move_error(
        &self,
        address: std::net::IpAddr,
        error: &str,
    ) -> StoreResult<()>;
    /// Gives a moving address back to its old node (audited).
    async fn cancel_address_move(
        &self,
        ctx: &AuditContext,
        address: std::net::IpAddr,
    ) -> StoreResult<()>;
    /// Starts moving `site` to the node `to`: checks the target's room (its sites and the
    /// sites already moving there), records the move (`copying`) and tells both nodes.
    async fn start_site_move(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        to: NodeId,
        timing: MoveTiming,
    ) -> StoreResult<alveole_model::SiteMove>;
    async fn get_site_move(&self, id: SiteMoveId) -> StoreResult<alveole_model::SiteMove>;
    /// Moves, newest first: of one site (its history), or all.
    async fn site_moves(&self, site: Option<SiteId>) -> StoreResult<Vec<alveole_model::SiteMove>>;
    /// Moves still forwarding whose forwarding period is over at `now`.
    async fn forwardings_over(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<alveole_model::SiteMove>>;
    /// Records an evacuation (running) with its sites in the order they move (audited).
    async fn create_evacuation(
        &self,
        ctx: &AuditContext,
        spec: &alveole_model::evacuation::EvacuationSpec,
        items: &[(SiteId, NodeId)],
    ) -> StoreResult<alveole_model::evacuation::Evacuation>;
    async fn get_evacuation(
        &self,
        id: alveole_model::JobId,
    ) -> StoreResult<alveole_model::evacuation::Evacuation>;
    /// Newest first.
    async fn evacuations(&self) -> StoreResult<Vec<alveole_model::evacuation::Evacuation>>;
    /// Pauses, resumes or cancels an unfinished evacuation (audited); cancelling skips the
    /// sites not started yet.
    async fn set_evacuation_state(
        &self,
        ctx: &AuditContext,
        id: alveole_model::JobId,
        state: alveole_model::evacuation::JobState,
    ) -> StoreResult<alveole_model::evacuation::Evacuation>;
    /// Takes, or keeps, the lease of unfinished jobs for `owner` until `until`: those with no
    /// lease, an expired one, or `owner`'s own. On PostgreSQL, rows another process is
    /// claiming at the same moment are skipped (`FOR UPDATE SKIP LOCKED`).
    async fn claim_jobs(
        &self,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<alveole_model::JobId>>;
    /// Starts the move of one pending site of an evacuation, in the same transaction as the
    /// item becomes `moving` with the move's id; `None` when the item is no longer pending
    /// (another process started it): a site is never moved twice.
    async fn start_evacuation_item(
        &self,
        ctx: &AuditContext,
        job: alveole_model::JobId,
        site: SiteId,
        timing: MoveTiming,
    ) -> StoreResult<Option<alveole_model::SiteMove>>;
    /// An item's move ended (done) or did not happen (failed, with why).
    async fn settle_evacuation_item(
        &self,
        job: alveole_model::JobId,
        site: SiteId,
        state: alveole_model::evacuation::ItemState,
        error: Option<&str>,
    ) -> StoreResult<()>;
    /// Marks an evacuation done once no site is pending or moving (audited, with the predicted
    /// and the actual duration).
    async fn finish_evacuation(
        &self,
        ctx: &AuditContext,
        id: alveole_model::JobId,
    ) -> StoreResult<alveole_model::evacuation::Evacuation>;
    /// Keeps what the source agent reports (telemetry: not audited).
    async fn note_site_move_progress(
        &self,
        id: SiteMoveId,
        progress: &alveole_model::MoveProgress,
    ) -> StoreResult<()>;
    /// The point of no return: the site becomes the target's, the source forwards its
    /// requests until `forward_until`. Asking again answers the same (the source may not have
    /// heard the first answer); a move no longer copying is refused.
    async fn switch_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
        progress: &alveole_model::MoveProgress,
    ) -> StoreResult<alveole_model::SiteMove>;
    /// The source rolled back: the site stays (or is again) on the source. A switch the
    /// source never heard of is undone: nothing was sent to the target yet.
    async fn fail_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
        reason: &str,
        progress: &alveole_model::MoveProgress,
    ) -> StoreResult<alveole_model::SiteMove>;
    /// An admin stops a move before its switch.
    async fn cancel_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
    ) -> StoreResult<alveole_model::SiteMove>;
    /// Ends the forwarding (its period is over, or an admin ends it early): the source drops
    /// its copy.
    async fn finish_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
    ) -> StoreResult<alveole_model::SiteMove>;
    /// Keeps a sign-in in progress at the identity provider (not audited: nothing changes yet).
    async fn start_oidc_login(
        &self,
        state_hash: &str,
        nonce: &str,
        pkce_verifier: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Takes a sign-in in progress once: its nonce and PKCE verifier, unless unknown or expired.
    async fn take_oidc_login(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(String, String)>>;
    /// The member an account at an identity provider is linked to.
    async fn member_for_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<alveole_model::MemberId>>;
    /// Links an account at an identity provider to a member (audited).
    async fn link_identity(
        &self,
        ctx: &AuditContext,
        issuer: &str,
        subject: &str,
        member: alveole_model::MemberId,
    ) -> StoreResult<()>;
    /// The member with this e-mail address (compared without case), if any.
    async fn member_by_email(&self, email: &str) -> StoreResult<Option<alveole_model::MemberId>>;
    /// Sets a member's role (audited), as the identity provider's groups say.
    async fn set_member_role(
        &self,
        ctx: &AuditContext,
        member: alveole_model::MemberId,
        role: alveole_model::Role,
    ) -> StoreResult<()>;
    /// The member, unless disabled. `NotFound` for no such member.
    async fn active_member(&self, member: alveole_model::MemberId) -> StoreResult<Option<Member>>;
    /// Offboards a member in one audited transaction: disabled (their tokens stop at once),
    /// and each of their sites handed to `hand_to`, or else stopped. `NotFound` for an
    /// unknown member (either one).
    async fn disable_member(
        &self,
        ctx: &AuditContext,
        member: alveole_model::MemberId,
        hand_to: Option<alveole_model::MemberId>,
    ) -> StoreResult<()>;
    /// Revokes a token (audited); `NotFound` when there is no such token.
    async fn revoke_api_token(&self, ctx: &AuditContext, id: uuid::Uuid) -> StoreResult<()>;
    /// The token with this hash and its member, if it is neither revoked nor expired at `now`.
    async fn api_token_holder(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(ApiToken, Member)>>;
    /// The session if it exists, has not reached its end and was used within `idle` of `now`;
    /// notes the use (at most once a minute, telemetry: not audited).
    async fn find_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        idle: chrono::Duration,
    ) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, ctx: &AuditContext, token_hash: &str) -> StoreResult<()>;
    /// Keeps a one-time break-glass token (hashed), usable until `expires_at`, for an admin
    /// session of `session_seconds` (audited).
    async fn create_break_glass(
        &self,
        ctx: &AuditContext,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        session_seconds: i64,
    ) -> StoreResult<()>;
    /// Uses a break-glass token once (audited): the session life it grants, or `None` when
    /// the token is unknown, used or expired.
    async fn use_break_glass(
        &self,
        ctx: &AuditContext,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>>;

    /// Audit events after `after_seq`, oldest first.
    async fn audit_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>>;

    // --- the audit chain (docs/ARCHITECTURE.md, "Audit") ---------------------------------
    /// The chain's head as recorded.
    async fn audit_head(&self) -> StoreResult<ChainHead>;
    /// Chained events matching `filter`, in chain order, after position `after`.
    async fn audit_records(
        &self,
        filter: &ExportFilter,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// Chains the events recorded before the chain existed, in their order, when the chain has
    /// not begun yet (an upgrade); returns how many.
    async fn chain_unchained_events(&self) -> StoreResult<u64>;
    /// Keeps a signed checkpoint; its signing is itself an event (after the checkpoint).
    async fn record_checkpoint(
        &self,
        ctx: &AuditContext,
        checkpoint: &Checkpoint,
    ) -> StoreResult<()>;
    /// Records an action that changes no other row (an agent's certificate renewed).
    async fn record_action(&self, ctx: &AuditContext, change: Change) -> StoreResult<()>;
    /// The newest checkpoints first.
    async fn checkpoints(&self, limit: u32) -> StoreResult<Vec<Checkpoint>>;
    /// Publishes the key that signs checkpoints from now on (audited when it is new), and
    /// retires the others; their public keys stay published. Returns whether it was new.
    async fn publish_audit_key(&self, ctx: &AuditContext, key: &AuditKey) -> StoreResult<bool>;
    async fn audit_keys(&self) -> StoreResult<Vec<PublishedKey>>;
}

/// What the panel wants on one node, read in one transaction so the parts agree.
#[derive(Clone, Debug, Default)]
pub struct NodeDesired {
    pub generation: u64,
    pub sites: Vec<Site>,
    /// The addresses allocated to each site alone.
    pub dedicated: std::collections::BTreeMap<alveole_model::SiteId, Vec<std::net::IpAddr>>,
    /// Every address the node answers on (its own and its sites'), none that is moving.
    pub addresses: Vec<std::net::IpAddr>,
    /// Its input filter, when opted in: its admins' networks and the other nodes' addresses.
    pub input_filter: Option<alveole_model::InputFilter>,
    /// Each site's latest move, when it is from or to the node, oldest first (an ended one
    /// says which copies the node may drop).
    pub moves: Vec<alveole_model::SiteMove>,
}

/// How long a move's switch may keep a site frozen, and how long its source forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveTiming {
    pub forward_seconds: u64,
    pub freeze_deadline_ms: u64,
}

impl NodeDesired {
    /// The sites as the node runs them, each with its dedicated addresses.
    pub fn specs(&self) -> Vec<alveole_model::SiteSpec> {
        self.sites
            .iter()
            .map(|site| {
                let mut spec = site.to_spec();
                spec.dedicated_addresses =
                    self.dedicated.get(&site.id).cloned().unwrap_or_default();
                spec
            })
            .collect()
    }
}
