//! The caller, members' API tokens and offboarding.

use alveole_store::ApiToken;

use super::{Access, Delete, Get, Post, Table};
use crate::api::members::{self, Disable, Me};
use crate::service::members::{CreatedToken, NewToken};

pub(super) fn api(t: &mut Table) {
    t.api(Get, "/api/v1/me", members::me)
        .named("get_me", "Who the caller is, and with which role")
        .access(Access::SignedIn)
        .returns::<Me>(200)
        .errors(&[401]);
    t.api(Post, "/api/v1/members/{id}/disable", members::disable)
        .named(
            "disable_member",
            "Offboards a member: their tokens stop, their sites are handed over or stopped",
        )
        .takes::<Disable>()
        .status(204)
        .errors(&[400, 401, 403, 404]);
    t.api(Post, "/api/v1/members/{id}/enable", members::enable)
        .named(
            "enable_member",
            "Enables a disabled member again: they may sign in and be given sites and tokens (their old tokens stay revoked)",
        )
        .returns::<alveole_model::Member>(200)
        .errors(&[400, 401, 403, 404]);
    t.api(Post, "/api/v1/members/{id}/tokens", members::create_token)
        .named(
            "create_api_token",
            "A new API token for the member (shown once), read-only or full, expiring",
        )
        .takes::<NewToken>()
        .returns::<CreatedToken>(201)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Get, "/api/v1/members/{id}/tokens", members::tokens)
        .named(
            "list_api_tokens",
            "The member's API tokens (never their secrets)",
        )
        .returns::<Vec<ApiToken>>(200)
        .errors(&[400, 401, 403, 404]);
    t.api(Delete, "/api/v1/tokens/{id}", members::revoke_token)
        .named(
            "revoke_api_token",
            "Revokes an API token: it stops working at once",
        )
        .status(204)
        .errors(&[400, 401, 403, 404]);
}
