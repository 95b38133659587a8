//! Who may act: the panel's own tokens, members' API tokens, page sessions, sign-ins through
//! the identity provider, break-glass links, members' roles and offboarding.

use alveole_model::{Member, MemberId, Site, SiteId, SitePhase};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::super::lock_site_writes;
use super::records::fetch;
use super::{SqlStore, bump_generation};
use crate::rows::SessionRow;
use crate::{
    ApiToken, AuditContext, Change, Expired, IdentityStore, Records, Session, StoreError,
    StoreResult, TokenScope,
};

/// An API token as stored.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    member_id: Uuid,
    name: String,
    scope: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> StoreResult<Self> {
        let scope = match row.scope.as_str() {
            "read" => TokenScope::Read,
            "full" => TokenScope::Full,
            other => {
                return Err(StoreError::Corrupt {
                    kind: "api token",
                    id: row.id.to_string(),
                    reason: format!("unknown scope {other:?}"),
                });
            }
        };
        Ok(ApiToken {
            id: row.id,
            member_id: MemberId(row.member_id),
            name: row.name,
            scope,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn set_admin_token(
        &self,
        ctx: &AuditContext,
        name: &str,
        token_hash: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM admin_tokens WHERE name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        sqlx::query("INSERT INTO admin_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(token_hash)
            .bind(tx.now)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "admin_token.set",
            target_kind: "admin_token",
            target_id: name.to_owned(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn admin_token_hash(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT token_hash FROM admin_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn create_api_token(
        &self,
        ctx: &AuditContext,
        token: &ApiToken,
        token_hash: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let member = fetch::<Member>(&mut tx, token.member_id).await?;
        if member.disabled_at.is_some() {
            return Err(StoreError::Conflict {
                message: "the member is disabled".into(),
                errors: vec![alveole_model::FieldError::new(
                    "member",
                    "member.disabled",
                    "this member is disabled: a token for them would never work",
                )],
            });
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, member_id, name, scope, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id)
        .bind(token.member_id.0)
        .bind(&token.name)
        .bind(token.scope.as_str())
        .bind(token_hash)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(tx.conn())
        .await?;
        let change = Change::of("api_token.create", "api_token", token.id, None, Some(token));
        tx.commit(ctx, change).await
    }

    async fn api_tokens_of(&self, member: MemberId) -> StoreResult<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, member_id, name, scope, created_at, expires_at, revoked_at \
             FROM api_tokens WHERE member_id = $1 ORDER BY created_at",
        )
        .bind(member.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn revoke_api_token(&self, ctx: &AuditContext, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, member_id, name, scope, created_at, expires_at, revoked_at \
             FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        let before: ApiToken = row
            .ok_or(StoreError::NotFound { kind: "token" })?
            .try_into()?;
        let now = tx.now;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(tx.conn())
            .await?;
        let after = ApiToken {
            revoked_at: Some(now),
            ..before.clone()
        };
        let change = Change::of(
            "api_token.revoke",
            "api_token",
            id,
            Some(&before),
            Some(&after),
        );
        tx.commit(ctx, change).await
    }

    async fn api_token_holder(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(ApiToken, Member)>> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, member_id, name, scope, created_at, expires_at, revoked_at FROM api_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token: ApiToken = row.try_into()?;
        let disabled: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT disabled_at FROM members WHERE id = $1")
                .bind(token.member_id.0)
                .fetch_one(&self.pool)
                .await?;
        if disabled.is_some() {
            return Ok(None);
        }
        let member = Records::<Member>::get(self, token.member_id).await?;
        Ok(Some((token, member)))
    }

    async fn create_session(&self, ctx: &AuditContext, session: &Session) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, actor, csrf_token, created_at, expires_at, member_id, \
             oidc_issuer, oidc_subject, oidc_sid, oidc_id_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&session.token_hash)
        .bind(&session.actor)
        .bind(&session.csrf_token)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.member_id.map(|m| m.0))
        .bind(session.provider.as_ref().map(|p| &p.issuer))
        .bind(session.provider.as_ref().map(|p| &p.subject))
        .bind(session.provider.as_ref().and_then(|p| p.sid.as_ref()))
        .bind(
            session
                .provider
                .as_ref()
                .and_then(|p| p.sealed_id_token.as_ref()),
        )
        .execute(tx.conn())
        .await?;
        // The event names the session by a prefix of its hash: enough to follow it, useless to replay.
        let change = Change {
            action: "session.create",
            target_kind: "session",
            target_id: session.token_hash.chars().take(12).collect(),
            before: None,
            after: Some(
                serde_json::json!({"actor": session.actor, "expires_at": session.expires_at}),
            ),
        };
        tx.commit(ctx, change).await
    }

    async fn find_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        idle: chrono::Duration,
    ) -> StoreResult<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT token_hash, actor, csrf_token, created_at, expires_at, last_seen_at, member_id, \
             oidc_issuer, oidc_subject, oidc_sid, oidc_id_token \
             FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let last_seen = row.last_seen_at.unwrap_or(row.created_at);
        if now - last_seen >= idle {
            return Ok(None);
        }
        if now - last_seen >= chrono::Duration::minutes(1) {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(tx.conn())
                .await?;
            tx.commit_all(&AuditContext::new(row.actor.clone(), "-"), Vec::new())
                .await?;
        }
        Ok(Some(row.into()))
    }

    async fn delete_session(&self, ctx: &AuditContext, token_hash: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "session.delete",
            target_kind: "session",
            target_id: token_hash.chars().take(12).collect(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn end_provider_sessions(
        &self,
        ctx: &AuditContext,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let ended: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM sessions WHERE oidc_issuer = $1 \
             AND ($2 IS NULL OR oidc_subject = $2) AND ($3 IS NULL OR oidc_sid = $3) \
             RETURNING token_hash",
        )
        .bind(issuer)
        .bind(subject)
        .bind(sid)
        .fetch_all(tx.conn())
        .await?;
        let changes = ended
            .iter()
            .map(|(hash,)| Change {
                action: "session.delete",
                target_kind: "session",
                target_id: hash.chars().take(12).collect(),
                before: None,
                after: Some(serde_json::json!({"ended_by": "identity provider"})),
            })
            .collect();
        tx.commit_all(ctx, changes).await?;
        Ok(ended.len() as u64)
    }

    async fn sealed_id_tokens(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT token_hash, oidc_id_token FROM sessions WHERE oidc_id_token IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn reseal_id_token(&self, token_hash: &str, sealed: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE sessions SET oidc_id_token = $1 WHERE token_hash = $2")
            .bind(sealed)
            .bind(token_hash)
            .execute(tx.conn())
            .await?;
        tx.commit_all(&AuditContext::new("system:secrets", "-"), Vec::new())
            .await
    }

    async fn create_break_glass(
        &self,
        ctx: &AuditContext,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        session_seconds: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO break_glass_tokens (token_hash, session_seconds, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(session_seconds)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "break_glass.issue",
            target_kind: "break_glass",
            target_id: token_hash.chars().take(12).collect(),
            before: None,
            after: Some(serde_json::json!({
                "link_expires_at": expires_at, "session_seconds": session_seconds
            })),
        };
        tx.commit(ctx, change).await
    }

    async fn use_break_glass(
        &self,
        ctx: &AuditContext,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let found: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT session_seconds, expires_at FROM break_glass_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(tx.conn())
        .await?;
        // An unknown or expired link changes nothing (the transaction rolls back).
        let Some((seconds, _)) = found.filter(|(_, expires_at)| *expires_at > now) else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM break_glass_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "break_glass.use",
            target_kind: "break_glass",
            target_id: token_hash.chars().take(12).collect(),
            before: None,
            after: Some(serde_json::json!({"session_seconds": seconds})),
        };
        tx.commit(ctx, change).await?;
        Ok(Some(seconds))
    }

    async fn start_oidc_login(
        &self,
        state_hash: &str,
        nonce: &str,
        pkce_verifier: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, nonce, pkce_verifier, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(state_hash)
        .bind(nonce)
        .bind(pkce_verifier)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit_bookkeeping().await
    }

    async fn take_oidc_login(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(String, String)>> {
        let mut tx = self.begin_write().await?;
        let found: Option<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT nonce, pkce_verifier, expires_at FROM oidc_logins WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(tx.conn())
        .await?;
        let Some((nonce, verifier, expires_at)) = found else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM oidc_logins WHERE state_hash = $1")
            .bind(state_hash)
            .execute(tx.conn())
            .await?;
        tx.commit_bookkeeping().await?;
        Ok((expires_at > now).then_some((nonce, verifier)))
    }

    async fn member_for_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<MemberId>> {
        let member: Option<Uuid> = sqlx::query_scalar(
            "SELECT member_id FROM identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(member.map(MemberId))
    }

    async fn link_identity(
        &self,
        ctx: &AuditContext,
        issuer: &str,
        subject: &str,
        member: MemberId,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch::<Member>(&mut tx, member).await?;
        sqlx::query(
            "INSERT INTO identities (issuer, subject, member_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(member.0)
        .bind(tx.now)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "member.link_identity",
            target_kind: "member",
            target_id: member.to_string(),
            before: None,
            after: Some(serde_json::json!({"issuer": issuer, "subject": subject})),
        };
        tx.commit(ctx, change).await
    }

    async fn member_by_email(&self, email: &str) -> StoreResult<Option<MemberId>> {
        let member: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM members WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        Ok(member.map(MemberId))
    }

    async fn set_member_role(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        role: alveole_model::Role,
    ) -> StoreResult<()> {
        self.rewrite_member(ctx, member, "member.update", |m| {
            m.role = role;
            true
        })
        .await
        .map(|_| ())
    }

    async fn active_member(&self, member: MemberId) -> StoreResult<Option<Member>> {
        let disabled: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT disabled_at FROM members WHERE id = $1")
                .bind(member.0)
                .fetch_optional(&self.pool)
                .await?;
        match disabled {
            None => Err(StoreError::NotFound { kind: "member" }),
            Some(Some(_)) => Ok(None),
            Some(None) => Records::<Member>::get(self, member).await.map(Some),
        }
    }

    async fn disable_member(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        hand_to: Option<MemberId>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch::<Member>(&mut tx, member).await?;
        if let Some(heir) = hand_to {
            fetch::<Member>(&mut tx, heir).await?;
        }
        let at = tx.now;
        let meta = tx.next_meta(&before.meta);
        sqlx::query(
            "UPDATE members SET disabled_at = $1, version = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(at)
        .bind(meta.version)
        .bind(meta.updated_at)
        .bind(member.0)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE member_id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(member.0)
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM sessions WHERE member_id = $1")
            .bind(member.0)
            .execute(tx.conn())
            .await?;
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM sites WHERE owner_id = $1")
            .bind(member.0)
            .fetch_all(tx.conn())
            .await?;
        let mut changes = vec![Change {
            action: "member.disable",
            target_kind: "member",
            target_id: member.to_string(),
            before: serde_json::to_value(&before).ok(),
            after: Some(serde_json::json!({
                "disabled_at": at,
                "sites": ids.len(),
                "handed_to": hand_to,
            })),
        }];
        for id in ids {
            let site = fetch::<Site>(&mut tx, SiteId(id)).await?;
            let mut after = site.clone();
            after.meta = tx.next_meta(&site.meta);
            match hand_to {
                Some(heir) => after.owner_id = heir,
                None => after.phase = SitePhase::Stopped,
            }
            sqlx::query(
                "UPDATE sites SET owner_id = $1, phase = $2, version = $3, updated_at = $4 \
                 WHERE id = $5",
            )
            .bind(after.owner_id.0)
            .bind(after.phase.as_str())
            .bind(after.meta.version)
            .bind(after.meta.updated_at)
            .bind(id)
            .execute(tx.conn())
            .await?;
            bump_generation(&mut tx, site.node_id).await?;
            changes.push(Change::of(
                "site.update",
                "site",
                id,
                Some(&site),
                Some(&after),
            ));
        }
        tx.commit_all(ctx, changes).await
    }

    async fn enable_member(&self, ctx: &AuditContext, member: MemberId) -> StoreResult<Member> {
        // Enabling an enabled member changes and records nothing.
        self.rewrite_member(ctx, member, "member.enable", |m| {
            m.disabled_at.take().is_some()
        })
        .await
    }

    async fn remove_expired(&self, now: DateTime<Utc>, idle: Duration) -> StoreResult<Expired> {
        let mut tx = self.begin_write().await?;
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE expires_at <= $1 \
             OR COALESCE(last_seen_at, created_at) <= $2",
        )
        .bind(now)
        .bind(now - idle)
        .execute(tx.conn())
        .await?
        .rows_affected();
        let sign_ins = sqlx::query("DELETE FROM oidc_logins WHERE expires_at <= $1")
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
        let break_glass = sqlx::query("DELETE FROM break_glass_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit_bookkeeping().await?;
        Ok(Expired {
            sessions,
            sign_ins,
            break_glass,
        })
    }
}

impl SqlStore {
    /// Changes what a member's record says beyond its input (its role, whether it is
    /// disabled) in one audited transaction; `edit` says whether it changed anything (if not,
    /// nothing is written or recorded).
    async fn rewrite_member(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        action: &'static str,
        edit: impl FnOnce(&mut Member) -> bool + Send,
    ) -> StoreResult<Member> {
        let mut tx = self.begin_write().await?;
        let before = fetch::<Member>(&mut tx, member).await?;
        let mut after = before.clone();
        if !edit(&mut after) {
            return Ok(before);
        }
        after.meta = tx.next_meta(&before.meta);
        sqlx::query(
            "UPDATE members SET role = $1, disabled_at = $2, version = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(after.role.as_str())
        .bind(after.disabled_at)
        .bind(after.meta.version)
        .bind(after.meta.updated_at)
        .bind(member.0)
        .execute(tx.conn())
        .await?;
        let change = Change::of(action, "member", member, Some(&before), Some(&after));
        tx.commit(ctx, change).await?;
        Ok(after)
    }
}
