//! Members' API tokens (for the command line and automation: scoped, expiring, revocable,
//! shown once and stored hashed) and offboarding.

use alveole_model::MemberId;
use alveole_store::{ApiToken, AuditContext, TokenScope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Service;
use crate::auth;
use crate::error::{ApiError, ApiResult};

const DEFAULT_DAYS: u32 = 90;
const MAX_DAYS: u32 = 366;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (`laptop`, `deploy from CI`).
    pub name: String,
    pub scope: TokenScope,
    /// Days until it expires: 1 to 366 (90 by default).
    #[schemars(range(min = 1, max = 366))]
    pub expires_in_days: Option<u32>,
}

/// A new token: `token` is shown here only, never again.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub details: ApiToken,
}

impl Service {
    /// A new API token for `member`, acting with the member's role (read-only or not).
    pub async fn create_api_token(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        request: &NewToken,
    ) -> ApiResult<CreatedToken> {
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::field(
                "name",
                "name.length",
                "a name of 1 to 100 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::field(
                "name",
                "text.control",
                "control characters are not allowed",
            ));
        }
        let days = request.expires_in_days.unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(ApiError::field(
                "expires_in_days",
                "days.range",
                "from 1 to 366 days",
            ));
        }
        let now = self.now();
        let details = ApiToken {
            id: uuid::Uuid::now_v7(),
            member_id: member,
            name: name.to_owned(),
            scope: request.scope,
            created_at: now,
            expires_at: now + chrono::Duration::days(i64::from(days)),
            revoked_at: None,
        };
        let token = auth::new_token("alt_");
        self.store()
            .create_api_token(ctx, &details, &auth::hash_token(&token))
            .await?;
        Ok(CreatedToken { token, details })
    }

    /// The member's tokens (never their secrets).
    pub async fn api_tokens(&self, member: MemberId) -> ApiResult<Vec<ApiToken>> {
        self.store().members().get(member).await?;
        Ok(self.store().api_tokens_of(member).await?)
    }

    /// Offboards a member: disabled (their tokens stop at once), their sites handed to
    /// `hand_to` or else stopped (their data kept), in one audited step.
    pub async fn disable_member(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        hand_to: Option<MemberId>,
    ) -> ApiResult<()> {
        if hand_to == Some(member) {
            return Err(ApiError::field(
                "hand_sites_to",
                "member.same",
                "hand the sites to another member",
            ));
        }
        self.store().disable_member(ctx, member, hand_to).await?;
        self.tell_nodes();
        Ok(())
    }

    /// Enables a disabled member again (audited); their old tokens stay revoked.
    pub async fn enable_member(
        &self,
        ctx: &AuditContext,
        member: MemberId,
    ) -> ApiResult<alveole_model::Member> {
        Ok(self.store().enable_member(ctx, member).await?)
    }
}
