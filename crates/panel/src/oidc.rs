//! Signing in through the co-op's identity provider (OpenID Connect): the authorization code
//! flow with PKCE, state and nonce, the ID token checked by the openidconnect crate (signature,
//! issuer, audience, expiry, nonce). Accounts are linked to members by (issuer, subject); the
//! first sign-in links by e-mail only when the provider says the address is verified. A groups
//! mapping, when configured, sets the member's role at each sign-in.

use alveole_model::{MemberId, Role};
use alveole_store::{AuditContext, Store};
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::auth;

/// How long a sign-in may stay at the provider.
const LOGIN_MINUTES: i64 = 10;

/// What the panel needs to know of the identity provider.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Besides `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim that lists the user's groups.
    pub groups_claim: String,
    /// Group → role; when not empty it decides the role at each sign-in.
    pub roles: Vec<(String, Role)>,
    /// Where the provider sends the browser back (`https://panel.example.org/login/oidc/callback`).
    pub redirect_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider cannot be reached or described: {0}")]
    Provider(String),
    #[error("the sign-in did not come back complete: sign in again")]
    Incomplete,
    #[error("this sign-in is unknown, used or expired: sign in again")]
    UnknownLogin,
    #[error("the identity provider's answer does not check out: {0}")]
    Rejected(String),
    #[error(
        "no member of the co-op has this account: ask an admin to add you with your verified e-mail address"
    )]
    NoMember,
    #[error("this member is disabled")]
    Disabled,
    #[error("the panel could not record the sign-in")]
    Store(#[from] alveole_store::StoreError),
}

/// The identity provider as the panel uses it.
#[derive(Debug)]
pub struct Oidc {
    config: OidcConfig,
    http: openidconnect::reqwest::Client,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // The flow's own redirects are the browser's, never the server's (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(Self { config, http })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's client for this panel, from its discovery document (read at each
    /// sign-in, so that a key rotation at the provider needs nothing here).
    async fn client(
        &self,
    ) -> Result<
        openidconnect::Client<
            openidconnect::EmptyAdditionalClaims,
            openidconnect::core::CoreAuthDisplay,
            openidconnect::core::CoreGenderClaim,
            openidconnect::core::CoreJweContentEncryptionAlgorithm,
            openidconnect::core::CoreJsonWebKey,
            openidconnect::core::CoreAuthPrompt,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
            openidconnect::core::CoreTokenResponse,
            openidconnect::core::CoreTokenIntrospectionResponse,
            openidconnect::core::CoreRevocableToken,
            openidconnect::core::CoreRevocationErrorResponse,
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let provider = |e: &dyn std::fmt::Display| OidcError::Provider(e.to_string());
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| provider(&e))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| provider(&e))?;
        let redirect =
            RedirectUrl::new(self.config.redirect_url.clone()).map_err(|e| provider(&e))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send the browser after a member signs out, so that they leave the provider's
    /// session too (RP-initiated logout), when the provider offers it; back to the panel's
    /// sign-in page afterwards.
    pub async fn logout_url(&self) -> Option<String> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self
            .http
            .get(&discovery)
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let document: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let endpoint = document["end_session_endpoint"].as_str()?;
        let back = self
            .config
            .redirect_url
            .trim_end_matches("/login/oidc/callback")
            .to_owned()
            + "/login";
        let mut url = openidconnect::url::Url::parse(endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", &back);
        Some(url.to_string())
    }

    /// Starts a sign-in: the provider's URL to send the browser to.
    pub async fn start(
        &self,
        store: &dyn Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        store
            .start_oidc_login(
                &auth::hash_token(state.secret()),
                nonce.secret(),
                verifier.secret(),
                now + chrono::Duration::minutes(LOGIN_MINUTES),
            )
            .await?;
        Ok(url.to_string())
    }

    /// Finishes a sign-in from the provider's answer: the member it signs in (linked, with
    /// their role as the groups say when a mapping is configured).
    pub async fn finish(
        &self,
        store: &dyn Store,
        ctx_request_id: &str,
        code: Option<&str>,
        state: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<MemberId, OidcError> {
        let (Some(code), Some(state)) = (code, state) else {
            return Err(OidcError::Incomplete);
        };
        // The state is one-time: a replayed or forged answer finds nothing.
        let (nonce, verifier) = store
            .take_oidc_login(&auth::hash_token(state), now)
            .await?
            .ok_or(OidcError::UnknownLogin)?;
        let client = self.client().await?;
        let rejected = |e: &dyn std::fmt::Display| OidcError::Rejected(e.to_string());
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| rejected(&e))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| rejected(&e))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::Rejected("no ID token".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce))
            .map_err(|e| rejected(&e))?;
        let issuer = claims.issuer().as_str().to_owned();
        let subject = claims.subject().as_str().to_owned();
        let ctx = AuditContext::new(format!("oidc:{subject}"), ctx_request_id);

        let member = match store.member_for_identity(&issuer, &subject).await? {
            Some(member) => member,
            None => {
                // First sign-in: an invitation matches by e-mail, only if the provider says
                // the address is verified.
                let email = claims
                    .email()
                    .filter(|_| claims.email_verified() == Some(true))
                    .ok_or(OidcError::NoMember)?;
                let member = store
                    .member_by_email(email.as_str())
                    .await?
                    .ok_or(OidcError::NoMember)?;
                store.link_identity(&ctx, &issuer, &subject, member).await?;
                member
            }
        };
        let current = store
            .active_member(member)
            .await?
            .ok_or(OidcError::Disabled)?;
        if !self.config.roles.is_empty() {
            // The ID token's signature was checked above; its groups are read from the same
            // token (the crate's claims type has no field for a provider's own claim name).
            let groups = groups_of(&id_token.to_string(), &self.config.groups_claim);
            let role = role_of(&groups, &self.config.roles);
            if role != current.role {
                store.set_member_role(&ctx, member, role).await?;
            }
        }
        Ok(member)
    }
}

/// The strings of `claim` in a JWT's payload (`groups`: `["a", "b"]`, or one string).
fn groups_of(jwt: &str, claim: &str) -> Vec<String> {
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    match payload.as_ref().map(|p| &p[claim]) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The highest role any of the groups maps to (admin, then auditor); member otherwise.
fn role_of(groups: &[String], roles: &[(String, Role)]) -> Role {
    let mapped: Vec<Role> = roles
        .iter()
        .filter(|(group, _)| groups.contains(group))
        .map(|(_, role)| *role)
        .collect();
    [Role::Admin, Role::Auditor]
        .into_iter()
        .find(|r| mapped.contains(r))
        .unwrap_or(Role::Member)
}

/// `group=role,group=role` as the command line takes it.
pub fn parse_roles(text: &str) -> Result<Vec<(String, Role)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (group, role) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: write group=role"))?;
            let role = match role.trim() {
                "admin" => Role::Admin,
                "auditor" => Role::Auditor,
                "member" => Role::Member,
                other => return Err(format!("{other:?} is not a role (admin, auditor, member)")),
            };
            Ok((group.trim().to_owned(), role))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_the_highest_role() {
        let roles = parse_roles("coop-admins=admin, board=auditor").unwrap();
        let role = |groups: &[&str]| {
            role_of(
                &groups.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>(),
                &roles,
            )
        };
        assert_eq!(role(&["board", "coop-admins"]), Role::Admin);
        assert_eq!(role(&["board"]), Role::Auditor);
        assert_eq!(role(&["members"]), Role::Member);
        assert!(parse_roles("admins").is_err());
        assert!(parse_roles("admins=root").is_err());
    }

    #[test]
    fn groups_are_read_from_the_token_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"ana","groups":["board","x"],"role":"one"}"#);
        let jwt = format!("header.{payload}.signature");
        assert_eq!(groups_of(&jwt, "groups"), ["board", "x"]);
        assert_eq!(groups_of(&jwt, "role"), ["one"]);
        assert!(groups_of(&jwt, "absent").is_empty());
        assert!(groups_of("not a jwt", "groups").is_empty());
    }
}
