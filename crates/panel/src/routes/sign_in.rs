//! Signing in and out, the language, the stylesheet and the dashboard.

use super::{Access, Get, Post, Table};
use crate::pages::{dashboard, sign_in};

pub(super) fn pages(t: &mut Table) {
    t.page(Get, "/", dashboard::dashboard)
        .named("page_dashboard", "")
        .access(Access::Owner);
    t.page(Get, "/login", sign_in::login_form)
        .named("page_login", "")
        .access(Access::Public);
    t.page(Post, "/login", sign_in::login)
        .named("page_login_submit", "")
        .access(Access::Public);
    t.page(Get, "/login/oidc", sign_in::oidc_start)
        .named("page_login_oidc", "")
        .access(Access::Public);
    t.page(Get, "/login/oidc/callback", sign_in::oidc_callback)
        .named("page_login_oidc_callback", "")
        .access(Access::Public);
    // The identity provider's own call (Back-Channel Logout 1.0): a signed token, no session.
    t.page(
        Post,
        "/login/oidc/back-channel-logout",
        sign_in::oidc_back_channel_logout,
    )
    .named("page_login_oidc_back_channel_logout", "")
    .access(Access::Public);
    t.page(Get, "/break-glass", sign_in::break_glass_form)
        .named("page_break_glass", "")
        .access(Access::Public);
    t.page(Post, "/break-glass", sign_in::break_glass)
        .named("page_break_glass_use", "")
        .access(Access::Public);
    t.page(Post, "/logout", sign_in::logout)
        .named("page_logout", "")
        .access(Access::SignedIn);
    t.page(Get, "/language/{lang}", sign_in::language)
        .named("page_language", "")
        .access(Access::Public);
    t.page(Get, "/static/alveole.css", crate::pages::stylesheet)
        .named("static_css", "")
        .access(Access::Public);
}
