//! Who is calling. The JSON API takes bearer tokens only (so it needs no CSRF defence); pages
//! take a server-side session cookie, and every state-changing form carries the session's CSRF
//! token (checked by the middleware). The bootstrap admin token, which `alveole serve` prints
//! once and stores hashed, is how the first admin gets in.

use alveole_model::Role;
use alveole_store::{AuditContext, Session, Store, StoreResult};
use base64::Engine;
use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Name of the bootstrap admin token in the store.
pub const BOOTSTRAP: &str = "bootstrap";
pub const SESSION_COOKIE: &str = "alveole_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-alveole_session";
const SESSION_LIFETIME_HOURS: i64 = 12;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// As recorded in audit events.
    pub actor: String,
    pub role: Role,
    /// For pages: the session's CSRF token, which forms must send back.
    pub csrf_token: Option<String>,
    /// Set when the caller is a node's agent: it may call the agent routes, and only those.
    pub node: Option<alveole_model::NodeId>,
    /// Set when the caller is a member (through an API token): with the member role, they
    /// reach their own sites only.
    pub member: Option<alveole_model::MemberId>,
    /// A read-only token: every change answers 403.
    pub read_only: bool,
}

impl Caller {
    /// The member whose resources alone this caller reaches, if it is so limited.
    pub fn limited_to(&self) -> Option<alveole_model::MemberId> {
        match self.role {
            Role::Member => self.member,
            Role::Admin | Role::Auditor => None,
        }
    }
}

/// 256 random bits, URL-safe: unguessable, so a fast hash is enough to store it.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The actor of break-glass sessions, as the audit record names it.
pub const BREAK_GLASS_ACTOR: &str = "break-glass-admin";

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Creates the bootstrap token if there is none yet; returns it (to print once) when created.
pub async fn ensure_bootstrap_token(store: &dyn Store) -> StoreResult<Option<String>> {
    if store.admin_token_hash(BOOTSTRAP).await?.is_some() {
        return Ok(None);
    }
    reset_bootstrap_token(store, &AuditContext::new("system:first-start", "bootstrap"))
        .await
        .map(Some)
}

/// What the bootstrap token's hash is set to once disabled: no token hashes to it, and the
/// panel does not make a new one at its next start.
const DISABLED: &str = "disabled";

/// Disables the bootstrap token (once admins sign in through the identity provider);
/// `alveole admin reset-token` on the panel's host makes a new one if ever needed.
pub async fn disable_bootstrap_token(store: &dyn Store, ctx: &AuditContext) -> StoreResult<()> {
    store.set_admin_token(ctx, BOOTSTRAP, DISABLED).await
}

/// Replaces the bootstrap token; the old one stops working at once.
pub async fn reset_bootstrap_token(store: &dyn Store, ctx: &AuditContext) -> StoreResult<String> {
    let token = new_token("alv_");
    store
        .set_admin_token(ctx, BOOTSTRAP, &hash_token(&token))
        .await?;
    Ok(token)
}

/// The caller the bootstrap admin token stands for, if it is that token.
pub async fn caller_from_bootstrap(store: &dyn Store, token: &str) -> StoreResult<Option<Caller>> {
    let stored = store.admin_token_hash(BOOTSTRAP).await?.unwrap_or_default();
    Ok(same(&stored, &hash_token(token)).then(|| Caller {
        actor: "bootstrap-admin".into(),
        role: Role::Admin,
        csrf_token: None,
        node: None,
        member: None,
        read_only: false,
    }))
}

/// The caller a bearer token stands for, if any: the bootstrap admin, or a member's API token
/// (neither revoked nor expired), with the member's role.
pub async fn caller_from_bearer(
    store: &dyn Store,
    token: &str,
    now: chrono::DateTime<Utc>,
) -> StoreResult<Option<Caller>> {
    if let Some(admin) = caller_from_bootstrap(store, token).await? {
        return Ok(Some(admin));
    }
    let holder = store.api_token_holder(&hash_token(token), now).await?;
    Ok(holder.map(|(token, member)| Caller {
        actor: format!("member:{}", member.id),
        role: member.role,
        csrf_token: None,
        node: None,
        member: Some(member.id),
        read_only: token.scope == alveole_store::TokenScope::Read,
    }))
}

/// The caller an agent's client certificate stands for: the node whose key is on record with
/// this hash (the TLS layer has already checked that the certificate is the CA's and current).
pub async fn caller_from_agent_key(
    store: &dyn Store,
    key_hash: &str,
) -> StoreResult<Option<Caller>> {
    let node = store.node_for_agent_key(key_hash).await?;
    Ok(node.map(|node| Caller {
        actor: format!("node:{node}"),
        role: Role::Member,
        csrf_token: None,
        node: Some(node),
        member: None,
        read_only: false,
    }))
}

/// The session cookie's name: with `__Host-` when the panel is served over HTTPS, so that
/// browsers accept it only from this exact host, on every path, over TLS.
pub fn session_cookie_name(config: &crate::PanelConfig) -> &'static str {
    if config.secure_cookies {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The caller a session cookie stands for, if the session exists and is still valid: before
/// its absolute end and used within the idle time.
pub async fn caller_from_session(
    store: &dyn Store,
    config: &crate::PanelConfig,
    cookie: &str,
) -> StoreResult<Option<Caller>> {
    let idle = Duration::from_std(config.session_idle).unwrap_or(Duration::hours(2));
    let session = store
        .find_session(&hash_token(cookie), config.clock.now(), idle)
        .await?;
    let Some(session) = session else {
        return Ok(None);
    };
    let Some(member) = session.member_id else {
        // The bootstrap admin's session.
        return Ok(Some(Caller {
            actor: session.actor,
            role: Role::Admin,
            csrf_token: Some(session.csrf_token),
            node: None,
            member: None,
            read_only: false,
        }));
    };
    // A member's session: their role as it is now; none once they are disabled or gone.
    let member = match store.active_member(member).await {
        Ok(member) => member,
        Err(alveole_store::StoreError::NotFound { .. }) => None,
        Err(error) => return Err(error),
    };
    Ok(member.map(|member| Caller {
        actor: session.actor,
        role: member.role,
        csrf_token: Some(session.csrf_token),
        node: None,
        member: Some(member.id),
        read_only: false,
    }))
}

/// Opens a session for `actor` at `now`; returns the cookie value.
pub async fn open_session(
    store: &dyn Store,
    ctx: &AuditContext,
    actor: &str,
    now: chrono::DateTime<Utc>,
) -> StoreResult<String> {
    open_session_for(
        store,
        ctx,
        actor,
        now,
        Duration::hours(SESSION_LIFETIME_HOURS),
    )
    .await
}

/// Opens a session for `actor` that ends after `lifetime` whatever happens.
pub async fn open_session_for(
    store: &dyn Store,
    ctx: &AuditContext,
    actor: &str,
    now: chrono::DateTime<Utc>,
    lifetime: Duration,
) -> StoreResult<String> {
    let cookie = new_token("");
    let session = Session {
        token_hash: hash_token(&cookie),
        actor: actor.to_owned(),
        member_id: None,
        csrf_token: new_token(""),
        created_at: now,
        expires_at: now + lifetime,
        provider: None,
    };
    store.create_session(ctx, &session).await?;
    Ok(cookie)
}

/// Opens a page session for a member (signed in through the identity provider, whose
/// session it remembers): the member's role applies, and the session ends with the member.
/// Returns the cookie value.
pub async fn open_member_session(
    store: &dyn Store,
    ctx: &AuditContext,
    member: alveole_model::MemberId,
    now: chrono::DateTime<Utc>,
    provider: Option<alveole_store::ProviderSession>,
) -> StoreResult<String> {
    let cookie = new_token("");
    let session = Session {
        token_hash: hash_token(&cookie),
        actor: format!("member:{member}"),
        member_id: Some(member),
        csrf_token: new_token(""),
        created_at: now,
        expires_at: now + Duration::hours(SESSION_LIFETIME_HOURS),
        provider,
    };
    store.create_session(ctx, &session).await?;
    Ok(cookie)
}

/// How long a break-glass link can be used.
const BREAK_GLASS_LINK_MINUTES: i64 = 15;

/// Issues a one-time break-glass link, usable for 15 minutes from `now`, for an admin
/// session of `lifetime` (recorded).
pub async fn issue_break_glass(
    store: &dyn Store,
    panel_url: &str,
    lifetime: Duration,
    now: chrono::DateTime<Utc>,
) -> StoreResult<String> {
    let token = new_token("alb_");
    let ctx = AuditContext::new("system:admin-cli", "break-glass");
    store
        .create_break_glass(
            &ctx,
            &hash_token(&token),
            now + Duration::minutes(BREAK_GLASS_LINK_MINUTES),
            lifetime.num_seconds(),
        )
        .await?;
    Ok(format!(
        "{}/break-glass?token={token}",
        panel_url.trim_end_matches('/')
    ))
}

/// Ends the session of `cookie`; what it kept of the identity provider's session, if any.
pub async fn close_session(
    store: &dyn Store,
    config: &crate::PanelConfig,
    ctx: &AuditContext,
    cookie: &str,
) -> StoreResult<Option<alveole_store::ProviderSession>> {
    let hash = hash_token(cookie);
    let idle = Duration::from_std(config.session_idle).unwrap_or(Duration::hours(2));
    let session = store.find_session(&hash, config.clock.now(), idle).await?;
    store.delete_session(ctx, &hash).await?;
    Ok(session.and_then(|s| s.provider))
}

/// Whether a form's CSRF field matches the caller's session.
pub fn csrf_ok(caller: &Caller, sent: Option<&str>) -> bool {
    match (&caller.csrf_token, sent) {
        (Some(expected), Some(sent)) => same(expected, sent),
        _ => false,
    }
}

/// Reads one cookie from a `Cookie` header.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let a = new_token("alv_");
        let b = new_token("alv_");
        assert_ne!(a, b);
        assert!(a.len() > 40);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_eq!(hash_token("x").len(), 64);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
