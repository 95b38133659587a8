//! Signing in through the co-op's identity provider (OpenID Connect): the authorization code
//! flow with PKCE, state and nonce, the ID token checked by the openidconnect crate
//! (signature, issuer, audience, expiry with a leeway, nonce), the claims it lacks read from
//! userinfo. Accounts are linked to members by (issuer, subject); the first sign-in links by
//! e-mail only when the provider says the address is verified. A groups mapping, when
//! configured, sets the member's role at each sign-in. Signing out leaves the provider's
//! session too, and the provider may end the panel's sessions (back-channel logout).

mod claims;
mod logout;
mod provider;
mod start;
mod tokens;

use alveole_model::{MemberId, Role};
use alveole_store::{AuditContext, Store};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    Scope, TokenResponse,
};

pub use claims::parse_roles;
use claims::{Person, group_names, role_of};
pub use provider::ProviderError;
use provider::{Keys, Provider, discover};

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
    /// The claim that lists the user's groups (in the ID token or from userinfo).
    pub groups_claim: String,
    /// Group → role; when not empty it decides the role at each sign-in.
    pub roles: Vec<(String, Role)>,
    /// Where the provider sends the browser back (`https://panel.example.org/login/oidc/callback`).
    pub redirect_url: String,
}

impl OidcConfig {
    /// Where the provider sends the browser after signing out: the panel's sign-in page.
    pub fn post_logout_url(&self) -> String {
        self.redirect_url
            .trim_end_matches("/login/oidc/callback")
            .to_owned()
            + "/login"
    }

    /// Where the provider posts its back-channel logout tokens.
    pub fn back_channel_logout_url(&self) -> String {
        self.redirect_url.trim_end_matches("/callback").to_owned() + "/back-channel-logout"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider cannot be used: {0}")]
    Provider(#[from] ProviderError),
    #[error("the sign-in did not come back complete: sign in again")]
    Incomplete,
    #[error("this sign-in is unknown, used or expired: sign in again")]
    UnknownLogin,
    #[error("the identity provider's answer does not check out: {0}")]
    Rejected(String),
    /// The provider did not send what the panel needs (the message names the claim).
    #[error("{0}")]
    MissingClaim(String),
    #[error(
        "no member of the co-op has this account: ask an admin to add you with your verified e-mail address"
    )]
    NoMember,
    #[error("this member is disabled")]
    Disabled,
    #[error("the panel could not record the sign-in")]
    Store(#[from] alveole_store::StoreError),
}

/// A finished sign-in: the member, and what the panel keeps of the provider's session.
#[derive(Debug)]
pub struct SignedIn {
    pub member: MemberId,
    pub issuer: String,
    pub subject: String,
    /// The provider's session id (`sid`), when the ID token carries one.
    pub sid: Option<String>,
    /// The ID token as received, for `id_token_hint` at sign-out.
    pub id_token: String,
}

/// The identity provider as the panel uses it.
#[derive(Debug)]
pub struct Oidc {
    config: OidcConfig,
    http: openidconnect::reqwest::Client,
    /// Logout tokens already used (`jti` → when), against replays.
    seen_logout_tokens: logout::SeenTokens,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // The flow's own redirects are the browser's, never the server's (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        Ok(Self {
            config,
            http,
            seen_logout_tokens: logout::SeenTokens::default(),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider as it describes itself now, checked against this panel's settings.
    async fn provider(&self, keys: Keys) -> Result<Provider, ProviderError> {
        discover(&self.http, &self.config, keys).await
    }

    /// Reads and checks the provider's description: what the panel could not use (warnings,
    /// for the log), or why it cannot work at all. `Unreachable` may pass; `Misconfigured`
    /// will not.
    pub async fn check(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self.provider(Keys::Fetch).await?.warnings)
    }

    /// Starts a sign-in: the provider's URL to send the browser to.
    pub async fn start(
        &self,
        store: &dyn Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, OidcError> {
        let client = self.provider(Keys::Skip).await?.client(&self.config)?;
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
    ) -> Result<SignedIn, OidcError> {
        let (Some(code), Some(state)) = (code, state) else {
            return Err(OidcError::Incomplete);
        };
        // The state is one-time: a replayed or forged answer finds nothing.
        let (nonce, verifier) = store
            .take_oidc_login(&auth::hash_token(state), now)
            .await?
            .ok_or(OidcError::UnknownLogin)?;
        let client = self.provider(Keys::Fetch).await?.client(&self.config)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Rejected(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Rejected(tokens::explain_exchange(&e)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::Rejected("the provider sent no ID token".into()))?;
        let raw_token = id_token.to_string();
        let leeway = chrono::Duration::seconds(tokens::LEEWAY_SECONDS);
        let verifier = client
            .id_token_verifier()
            .set_time_fn(move || now - leeway)
            .set_issue_time_verifier_fn(tokens::issued_in_time(now));
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce))
            .map_err(|e| {
                let payload = tokens::parts(&raw_token)
                    .map(|(_, payload)| payload)
                    .unwrap_or_default();
                OidcError::Rejected(tokens::explain_claims(
                    &e,
                    &payload,
                    &self.config.client_id,
                    now,
                ))
            })?;
        let issuer = claims.issuer().as_str().to_owned();
        let subject = claims.subject().as_str().to_owned();
        let other = &claims.additional_claims().claims;
        let sid = other
            .get("sid")
            .and_then(|sid| sid.as_str())
            .map(str::to_owned);
        let mut person = Person {
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified(),
            groups: other.get(&self.config.groups_claim).cloned(),
        };
        let want_groups = !self.config.roles.is_empty();
        let missing = person.missing(&self.config.groups_claim, want_groups);
        if !missing.is_empty() {
            tracing::info!(
                ?missing,
                "the ID token lacks claims the panel reads: asking the userinfo endpoint"
            );
            person.complete_from(
                self.userinfo(&client, tokens.access_token(), &subject)
                    .await?,
            );
            let still = person.missing(&self.config.groups_claim, want_groups);
            if !still.is_empty() {
                tracing::warn!(
                    missing = ?still,
                    "claims in neither the ID token nor the userinfo answer: map them at the \
                     identity provider for the panel's client"
                );
            }
        }
        let ctx = AuditContext::new(format!("oidc:{subject}"), ctx_request_id);

        let member = match store.member_for_identity(&issuer, &subject).await? {
            Some(member) => member,
            None => {
                let member = store.member_by_email(&linkable_email(&person)?).await?;
                let member = member.ok_or(OidcError::NoMember)?;
                store.link_identity(&ctx, &issuer, &subject, member).await?;
                member
            }
        };
        let current = store
            .active_member(member)
            .await?
            .ok_or(OidcError::Disabled)?;
        if want_groups {
            let groups = match &person.groups {
                Some(value) => group_names(value).map_err(|shape| {
                    tracing::warn!(
                        claim = %self.config.groups_claim,
                        "the groups claim is {shape}: the member's role is left as it is"
                    );
                }),
                None => Ok(Vec::new()),
            };
            if let Ok(groups) = groups {
                let role = role_of(&groups, &self.config.roles);
                if role != current.role {
                    store.set_member_role(&ctx, member, role).await?;
                }
            }
        }
        Ok(SignedIn {
            member,
            issuer,
            subject,
            sid,
            id_token: raw_token,
        })
    }

    /// The claims of the userinfo endpoint, for the account the ID token names.
    async fn userinfo(
        &self,
        client: &provider::Client,
        access_token: &openidconnect::AccessToken,
        subject: &str,
    ) -> Result<Person, OidcError> {
        let request = match client.user_info(access_token.clone(), None) {
            Ok(request) => request,
            // No userinfo endpoint: the ID token is all there is.
            Err(_) => return Ok(Person::default()),
        };
        let answer: openidconnect::UserInfoClaims<
            provider::OtherClaims,
            openidconnect::core::CoreGenderClaim,
        > = request.request_async(&self.http).await.map_err(|e| {
            OidcError::Rejected(format!("the userinfo endpoint's answer is refused: {e}"))
        })?;
        // Userinfo must describe the account the ID token names (Core §5.3.2).
        if answer.subject().as_str() != subject {
            return Err(OidcError::Rejected(format!(
                "the userinfo endpoint describes another account (sub {:?}, the ID token's \
                 {subject:?})",
                answer.subject().as_str()
            )));
        }
        Ok(Person {
            email: answer.email().map(|e| e.as_str().to_owned()),
            email_verified: answer.email_verified(),
            groups: answer
                .additional_claims()
                .claims
                .get(&self.config.groups_claim)
                .cloned(),
        })
    }
}

/// The address a first sign-in links by: present, and vouched for by the provider.
fn linkable_email(person: &Person) -> Result<String, OidcError> {
    let email = person.email.clone().ok_or_else(|| {
        OidcError::MissingClaim(
            "the identity provider sent no e-mail address (claim email, in the ID token or \
             from userinfo), which a first sign-in links by: map it at the provider"
                .into(),
        )
    })?;
    match person.email_verified {
        Some(true) => Ok(email),
        Some(false) => Err(OidcError::MissingClaim(format!(
            "the identity provider does not vouch for {email} (email_verified is false): a \
             first sign-in links only a verified address"
        ))),
        None => Err(OidcError::MissingClaim(format!(
            "the identity provider did not say whether {email} is verified (no \
             email_verified claim, in the ID token or from userinfo): map it at the provider"
        ))),
    }
}
