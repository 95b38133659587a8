//! Leaving the provider's session at sign-out (RP-Initiated Logout 1.0, with `id_token_hint`
//! so that the provider need not ask), and the provider ending the panel's sessions
//! (Back-Channel Logout 1.0: a signed logout token, checked like an ID token, used once).

use std::collections::HashMap;
use std::sync::Mutex;

use alveole_store::{AuditContext, Store};
use chrono::{DateTime, Duration, Utc};
use openidconnect::{ClientId, LogoutRequest, PostLogoutRedirectUrl};

use super::tokens::{LEEWAY_SECONDS, verify_jws};
use super::{Oidc, OidcError};

/// The event a logout token carries.
const BACK_CHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be (its `iat`).
const LOGOUT_TOKEN_MINUTES: i64 = 5;

/// The `jti` of logout tokens already used, until they are too old to be taken anyway.
#[derive(Debug, Default)]
pub(super) struct SeenTokens(Mutex<HashMap<String, DateTime<Utc>>>);

impl SeenTokens {
    /// Notes `jti` as used at `now`; false when it was used already.
    fn first_use(&self, jti: &str, now: DateTime<Utc>) -> bool {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let horizon = now - Duration::minutes(LOGOUT_TOKEN_MINUTES) - Duration::seconds(60);
        seen.retain(|_, at| *at > horizon);
        seen.insert(jti.to_owned(), now).is_none()
    }
}

impl Oidc {
    /// Where to send the browser after a member signs out, so that they leave the provider's
    /// session too, when the provider offers it; back to the panel's sign-in page afterwards.
    /// `id_token` is the token of the session's sign-in, sent as `id_token_hint`.
    pub async fn logout_url(&self, id_token: Option<&str>) -> Option<String> {
        let provider = match self.provider(super::provider::Keys::Skip).await {
            Ok(provider) => provider,
            Err(error) => {
                tracing::warn!(%error, "signing out of the panel only");
                return None;
            }
        };
        let endpoint = provider
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let back = PostLogoutRedirectUrl::new(self.config.post_logout_url()).ok()?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.config.client_id.clone()))
            .set_post_logout_redirect_uri(back);
        if let Some(token) = id_token.and_then(|t| t.parse::<super::provider::IdToken>().ok()) {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url().to_string())
    }

    /// Ends the sessions a back-channel logout token names: how many ended, or why the token
    /// is refused (nothing ended).
    pub async fn back_channel_logout(
        &self,
        store: &dyn Store,
        request_id: &str,
        logout_token: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, OidcError> {
        let provider = self.provider(super::provider::Keys::Fetch).await?;
        let claims = verify_jws(
            logout_token,
            provider.keys(),
            self.config.client_secret.as_deref(),
        )
        .map_err(OidcError::Rejected)?;
        let refuse = |why: &str| Err(OidcError::Rejected(format!("the logout token {why}")));
        if claims["iss"].as_str() != Some(self.config.issuer.as_str()) {
            return refuse(&format!(
                "was issued by {}, not the configured issuer",
                claims["iss"]
            ));
        }
        let audience_ok = match &claims["aud"] {
            serde_json::Value::String(aud) => *aud == self.config.client_id,
            serde_json::Value::Array(auds) => auds
                .iter()
                .any(|a| a.as_str() == Some(&self.config.client_id)),
            _ => false,
        };
        if !audience_ok {
            return refuse(&format!("is for another client (aud {})", claims["aud"]));
        }
        let Some(iat) = claims["iat"].as_i64() else {
            return refuse("has no iat");
        };
        let age = now.timestamp() - iat;
        if !(-LEEWAY_SECONDS..=LOGOUT_TOKEN_MINUTES * 60 + LEEWAY_SECONDS).contains(&age) {
            return refuse(&format!(
                "was issued {age} s ago by the panel's clock: too old, or the clocks differ \
                 by more than {LEEWAY_SECONDS} s"
            ));
        }
        if let Some(exp) = claims["exp"].as_i64()
            && now.timestamp() - exp > LEEWAY_SECONDS
        {
            return refuse("has expired");
        }
        if claims["events"].get(BACK_CHANNEL_EVENT).is_none() {
            return refuse(&format!("carries no {BACK_CHANNEL_EVENT} event"));
        }
        // A nonce would make it an ID token passed off as a logout token.
        if claims.get("nonce").is_some() {
            return refuse("carries a nonce (it is not a logout token)");
        }
        let subject = claims["sub"].as_str();
        let sid = claims["sid"].as_str();
        if subject.is_none() && sid.is_none() {
            return refuse("names neither an account (sub) nor a session (sid)");
        }
        let Some(jti) = claims["jti"].as_str() else {
            return refuse("has no jti");
        };
        if !self.seen_logout_tokens.first_use(jti, now) {
            return refuse("was used already");
        }
        let actor = format!("oidc:{}", subject.unwrap_or("back-channel"));
        let ctx = AuditContext::new(actor, request_id);
        let ended = store
            .end_provider_sessions(&ctx, &self.config.issuer, subject, sid)
            .await?;
        tracing::info!(
            ended,
            ?subject,
            ?sid,
            "back-channel logout from the identity provider"
        );
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logout_token_is_taken_once() {
        let seen = SeenTokens::default();
        let now = Utc::now();
        assert!(seen.first_use("a", now));
        assert!(!seen.first_use("a", now + Duration::seconds(30)));
        assert!(seen.first_use("b", now));
        // Long after, the record is gone (the token's age refuses it by then).
        assert!(seen.first_use("a", now + Duration::minutes(LOGOUT_TOKEN_MINUTES + 2)));
    }
}
