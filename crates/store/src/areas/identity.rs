//! Who may act: the panel's own tokens, members' API tokens, page sessions, sign-ins through
//! the identity provider, break-glass links, and members' roles and offboarding.

use alveole_model::{Member, MemberId, Role};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::{AuditContext, StoreResult};

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
    pub member_id: MemberId,
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
    pub member_id: Option<MemberId>,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Set when the session was opened through the identity provider.
    pub provider: Option<ProviderSession>,
}

/// The account at the identity provider a session was opened for.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderSession {
    pub issuer: String,
    pub subject: String,
    /// The provider's session id (the ID token's `sid`), when it sends one.
    pub sid: Option<String>,
    /// The ID token, sealed with the secrets key (sent back as `id_token_hint` at sign-out).
    pub sealed_id_token: Option<String>,
}

/// What [`IdentityStore::remove_expired`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub sessions: u64,
    pub sign_ins: u64,
    pub break_glass: u64,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Replaces the hash of a named panel token (`bootstrap`), audited.
    async fn set_admin_token(
        &self,
        ctx: &AuditContext,
        name: &str,
        token_hash: &str,
    ) -> StoreResult<()>;
    async fn admin_token_hash(&self, name: &str) -> StoreResult<Option<String>>;

    /// Keeps a new API token (its hash) for a member (audited). `NotFound` for no such member.
    async fn create_api_token(
        &self,
        ctx: &AuditContext,
        token: &ApiToken,
        token_hash: &str,
    ) -> StoreResult<()>;
    async fn api_tokens_of(&self, member: MemberId) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a token (audited); `NotFound` when there is no such token.
    async fn revoke_api_token(&self, ctx: &AuditContext, id: uuid::Uuid) -> StoreResult<()>;
    /// The token with this hash and its member, if it is neither revoked nor expired at `now`.
    async fn api_token_holder(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(ApiToken, Member)>>;

    async fn create_session(&self, ctx: &AuditContext, session: &Session) -> StoreResult<()>;
    /// The session if it exists, has not reached its end and was used within `idle` of `now`;
    /// notes the use (at most once a minute, telemetry: not audited).
    async fn find_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, ctx: &AuditContext, token_hash: &str) -> StoreResult<()>;
    /// Ends the sessions opened for `subject` at `issuer`, or only those of the provider's
    /// session `sid` when it is given (back-channel logout), each recorded as
    /// `session.delete`. Returns how many ended.
    async fn end_provider_sessions(
        &self,
        ctx: &AuditContext,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> StoreResult<u64>;
    /// Every sealed ID token kept with a session, by the session's hash (for a rotation of
    /// the secrets key).
    async fn sealed_id_tokens(&self) -> StoreResult<Vec<(String, String)>>;
    /// Replaces a session's sealed ID token (a rotation of the secrets key: bookkeeping of a
    /// value that does not change, so not audited).
    async fn reseal_id_token(&self, token_hash: &str, sealed: &str) -> StoreResult<()>;

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
    ) -> StoreResult<Option<MemberId>>;
    /// Links an account at an identity provider to a member (audited).
    async fn link_identity(
        &self,
        ctx: &AuditContext,
        issuer: &str,
        subject: &str,
        member: MemberId,
    ) -> StoreResult<()>;
    /// The member with this e-mail address (compared without case), if any.
    async fn member_by_email(&self, email: &str) -> StoreResult<Option<MemberId>>;
    /// Sets a member's role (audited), as the identity provider's groups say.
    async fn set_member_role(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        role: Role,
    ) -> StoreResult<()>;
    /// The member, unless disabled. `NotFound` for no such member.
    async fn active_member(&self, member: MemberId) -> StoreResult<Option<Member>>;
    /// Offboards a member in one audited transaction: disabled (their tokens stop at once),
    /// and each of their sites handed to `hand_to`, or else stopped. `NotFound` for an
    /// unknown member (either one).
    async fn disable_member(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        hand_to: Option<MemberId>,
    ) -> StoreResult<()>;

    /// Enables a disabled member again (audited): they may sign in and be given sites and
    /// tokens. Their old tokens stay revoked, and their sites as they were left. Enabling an
    /// enabled member changes and records nothing.
    async fn enable_member(&self, ctx: &AuditContext, member: MemberId) -> StoreResult<Member>;

    /// Forgets sessions past their end or unused for `idle`, sign-ins abandoned at the
    /// provider and break-glass links past their use-by time, as of `now` (bookkeeping: none
    /// of them could be used any more, so nothing is audited).
    async fn remove_expired(&self, now: DateTime<Utc>, idle: Duration) -> StoreResult<Expired>;
}
