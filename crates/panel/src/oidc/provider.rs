//! The identity provider as discovered: its metadata (with its end-session endpoint) and its
//! keys. Read and checked when the panel starts, so that a wrong setting stops it with what to
//! set, and read again at each sign-in, so that a key rotation at the provider needs nothing
//! here.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    ClientId, ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, JsonWebKeySet, ProviderMetadataWithLogout, RedirectUrl, StandardErrorResponse,
    StandardTokenResponse,
};

use super::OidcConfig;

/// The claims of a token or a userinfo answer beyond the standard ones (the groups claim,
/// `sid`, `events`), whatever their names.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl openidconnect::AdditionalClaims for OtherClaims {}

pub(super) type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

pub(super) type IdToken = openidconnect::IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

pub(super) type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why the provider could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached, or answered with a server error: it may come back.
    #[error("{0}")]
    Unreachable(String),
    /// A setting is wrong (here or at the provider): the message says what to set.
    #[error("{0}")]
    Misconfigured(String),
}

/// What discovery found.
pub(super) struct Provider {
    pub metadata: ProviderMetadataWithLogout,
    /// What the panel could not use, in words, for the log (none of it stops a sign-in).
    pub warnings: Vec<String>,
}

impl Provider {
    /// The provider's client for this panel.
    pub fn client(&self, config: &OidcConfig) -> Result<Client, ProviderError> {
        let redirect = RedirectUrl::new(config.redirect_url.clone()).map_err(|e| {
            ProviderError::Misconfigured(format!(
                "the redirect address {:?} is not a URL: {e}",
                config.redirect_url
            ))
        })?;
        Ok(Client::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(config.client_id.clone()),
            config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's signing keys.
    pub fn keys(&self) -> &JsonWebKeySet<CoreJsonWebKey> {
        self.metadata.jwks()
    }
}

/// Where the provider describes itself: the issuer, without a trailing slash, followed by
/// `/.well-known/openid-configuration` (OpenID Connect Discovery §4).
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Whether a use of the provider checks its signatures (and so needs its keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keys {
    Fetch,
    /// Sending the browser there (to sign in or out) needs the description only.
    Skip,
}

/// Reads the provider's description (and its keys, when asked), and checks that the panel
/// can use them with `config`.
pub(super) async fn discover(
    http: &openidconnect::reqwest::Client,
    config: &OidcConfig,
    keys: Keys,
) -> Result<Provider, ProviderError> {
    let url = discovery_url(&config.issuer);
    let response = http.get(&url).send().await.map_err(|e| {
        ProviderError::Unreachable(format!(
            "the identity provider at {url} cannot be reached: {e}"
        ))
    })?;
    let status = response.status();
    if status.is_server_error() {
        return Err(ProviderError::Unreachable(format!(
            "the identity provider answered {status} at {url}"
        )));
    }
    if !status.is_success() {
        return Err(ProviderError::Misconfigured(format!(
            "no OpenID Connect discovery document at {url} ({status}): check --oidc-issuer, \
             which must be the issuer the provider names (its address up to, not including, \
             /.well-known/openid-configuration)"
        )));
    }
    let body = response.bytes().await.map_err(|e| {
        ProviderError::Unreachable(format!(
            "the identity provider's answer at {url} was cut: {e}"
        ))
    })?;
    let document: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        ProviderError::Misconfigured(format!(
            "{url} is not an OpenID Connect discovery document (not JSON): check --oidc-issuer"
        ))
    })?;
    check_document(&document, config)?;
    let metadata: ProviderMetadataWithLogout =
        serde_json::from_value(document.clone()).map_err(|e| {
            ProviderError::Misconfigured(format!(
                "the identity provider's discovery document at {url} cannot be read: {e}"
            ))
        })?;
    let jwks = match keys {
        Keys::Skip => JsonWebKeySet::new(Vec::new()),
        Keys::Fetch => JsonWebKeySet::fetch_async(metadata.jwks_uri(), http)
            .await
            .map_err(|e| {
                ProviderError::Unreachable(format!(
                    "the identity provider's keys at {} cannot be read: {e}",
                    metadata.jwks_uri().as_str()
                ))
            })?,
    };
    let mut warnings = Vec::new();
    if metadata
        .additional_metadata()
        .end_session_endpoint
        .is_none()
    {
        warnings.push(
            "the identity provider offers no end_session_endpoint: signing out of the panel \
             will not sign people out of the provider"
                .to_owned(),
        );
    }
    if metadata.userinfo_endpoint().is_none() {
        warnings.push(
            "the identity provider offers no userinfo endpoint: e-mail, email_verified and \
             groups must be in the ID token"
                .to_owned(),
        );
    }
    Ok(Provider {
        metadata: metadata.set_jwks(jwks),
        warnings,
    })
}

/// The settings of the discovery document the panel relies on, each refused with what to set.
fn check_document(document: &serde_json::Value, config: &OidcConfig) -> Result<(), ProviderError> {
    let refuse = |text: String| Err(ProviderError::Misconfigured(text));
    let strings = |key: &str| -> Option<Vec<&str>> {
        document[key]
            .as_array()
            .map(|items| items.iter().filter_map(|i| i.as_str()).collect())
    };
    // The issuer is compared as a string, byte for byte (Discovery §4.3): a missing or an
    // extra trailing slash is a different issuer, and every ID token would be refused.
    match document["issuer"].as_str() {
        Some(issuer) if issuer == config.issuer => {}
        Some(issuer) => {
            return refuse(format!(
                "the identity provider names its issuer {issuer:?}, not {:?}: start the panel \
                 with --oidc-issuer {issuer:?}",
                config.issuer
            ));
        }
        None => {
            return refuse(format!(
                "the discovery document at {} names no issuer: check --oidc-issuer",
                discovery_url(&config.issuer)
            ));
        }
    }
    if let Some(types) = strings("response_types_supported")
        && !types.contains(&"code")
    {
        return refuse(
            "the identity provider does not offer the authorization code flow (response type \
             \"code\"), which the panel uses: enable it for the panel's client"
                .to_owned(),
        );
    }
    if let Some(methods) = strings("code_challenge_methods_supported")
        && !methods.contains(&"S256")
    {
        return refuse(
            "the identity provider does not offer PKCE with S256, which the panel sends: \
             enable it at the provider"
                .to_owned(),
        );
    }
    if let Some(algs) = strings("id_token_signing_alg_values_supported")
        && !algs.is_empty()
        && algs.iter().all(|alg| *alg == "none")
    {
        return refuse(
            "the identity provider signs no ID token (only \"none\"): set a signing algorithm \
             such as RS256 for the panel's client"
                .to_owned(),
        );
    }
    if config.client_secret.is_some()
        && let Some(methods) = strings("token_endpoint_auth_methods_supported")
        && !methods.contains(&"client_secret_basic")
    {
        return refuse(format!(
            "the identity provider does not take the client secret the panel sends \
             (client_secret_basic; it offers {methods:?}): allow it for the panel's client"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(issuer: &str) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            client_id: "alveole".into(),
            client_secret: Some("s".into()),
            scopes: vec![],
            groups_claim: "groups".into(),
            roles: vec![],
            redirect_url: "http://panel.example.org/login/oidc/callback".into(),
        }
    }

    fn refusal(document: serde_json::Value, issuer: &str) -> String {
        match check_document(&document, &config(issuer)) {
            Err(ProviderError::Misconfigured(text)) => text,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_issuer_that_differs_by_its_trailing_slash_names_the_setting() {
        let text = refusal(
            json!({"issuer": "https://auth.example.org/"}),
            "https://auth.example.org",
        );
        assert!(
            text.contains(r#"--oidc-issuer "https://auth.example.org/""#),
            "{text}"
        );
        let text = refusal(json!({}), "https://auth.example.org");
        assert!(text.contains("names no issuer"), "{text}");
    }

    #[test]
    fn settings_the_panel_relies_on_are_checked() {
        let issuer = "https://auth.example.org";
        let base = json!({"issuer": issuer});
        let with = |key: &str, value: serde_json::Value| {
            let mut document = base.clone();
            document[key] = value;
            document
        };
        assert!(check_document(&base, &config(issuer)).is_ok());
        for (key, value, says) in [
            (
                "response_types_supported",
                json!(["id_token"]),
                "authorization code",
            ),
            ("code_challenge_methods_supported", json!(["plain"]), "S256"),
            (
                "id_token_signing_alg_values_supported",
                json!(["none"]),
                "RS256",
            ),
            (
                "token_endpoint_auth_methods_supported",
                json!(["private_key_jwt"]),
                "client_secret_basic",
            ),
        ] {
            let text = refusal(with(key, value), issuer);
            assert!(text.contains(says), "{key}: {text}");
        }
        assert!(
            check_document(
                &with("code_challenge_methods_supported", json!(["plain", "S256"])),
                &config(issuer)
            )
            .is_ok()
        );
    }
}
