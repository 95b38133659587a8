//! Checking the provider's tokens, and saying in words why one does not check out: an
//! unsigned token, an algorithm the panel cannot check, a token for another client, clocks
//! that differ by more than the leeway.

use base64::Engine;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreErrorResponseType, CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{
    ClaimsVerificationError, JsonWebKey, JsonWebKeySet, RequestTokenError,
    SignatureVerificationError, StandardErrorResponse,
};

/// How far the provider's clock and the panel's may differ.
pub const LEEWAY_SECONDS: i64 = 60;

/// The signing algorithms the panel checks, for messages.
const CHECKED: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, or \
                       HS256, HS384, HS512 with the client secret";

/// A JWT's header and payload, decoded without checking anything (to explain a refusal).
pub(super) fn parts(jwt: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    let mut parts = jwt.split('.');
    let decode = |part: Option<&str>| {
        part.and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    Some((decode(parts.next())?, decode(parts.next())?))
}

/// Why a token signed with `alg` cannot be checked, if it cannot.
pub(super) fn unusable_algorithm(alg: &str) -> Option<String> {
    if alg.eq_ignore_ascii_case("none") {
        return Some(format!(
            "the token is unsigned (alg \"none\"): set the provider to sign the panel's tokens \
             ({CHECKED})"
        ));
    }
    let known: Result<CoreJwsSigningAlgorithm, _> =
        serde_json::from_value(serde_json::Value::String(alg.to_owned()));
    match known {
        // ring checks no P-521 signature.
        Ok(_) if alg != "ES512" => None,
        _ => Some(format!(
            "the token is signed with {alg:?}, which the panel cannot check: set the provider \
             to sign the panel's tokens with one of {CHECKED}"
        )),
    }
}

type TokenError<RE> = RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>;

/// Why the token endpoint's answer was refused, in words.
pub(super) fn explain_exchange<RE: std::error::Error>(error: &TokenError<RE>) -> String {
    match error {
        RequestTokenError::ServerResponse(answer) => format!(
            "the identity provider refused the sign-in's code: {}{}",
            answer.error().as_ref(),
            answer
                .error_description()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        RequestTokenError::Request(e) => {
            format!("the identity provider's token endpoint cannot be reached: {e}")
        }
        RequestTokenError::Parse(e, body) => {
            // The crate refuses unsigned tokens and unknown algorithms while reading the
            // answer: look at the token to say which.
            let alg = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|answer| answer["id_token"].as_str().map(str::to_owned))
                .and_then(|token| parts(&token))
                .and_then(|(header, _)| header["alg"].as_str().map(str::to_owned));
            match alg.as_deref().and_then(unusable_algorithm) {
                Some(why) => why.replacen("the token", "the ID token", 1),
                None => format!("the token endpoint's answer cannot be read: {e}"),
            }
        }
        RequestTokenError::Other(e) => format!("the token endpoint's answer is refused: {e}"),
    }
}

/// Why the ID token's claims were refused, in words. `payload` is the token's payload, read
/// without checking, to name the values.
pub(super) fn explain_claims(
    error: &ClaimsVerificationError,
    payload: &serde_json::Value,
    client_id: &str,
    now: DateTime<Utc>,
) -> String {
    match error {
        ClaimsVerificationError::InvalidAudience(_) => format!(
            "the ID token is for another client (aud {}), not {client_id:?}: check \
             --oidc-client-id and the client the provider signs for",
            payload["aud"]
        ),
        ClaimsVerificationError::Expired(why) if why.starts_with("the ID token") => why.clone(),
        ClaimsVerificationError::Expired(_) => {
            let exp = payload["exp"].as_i64().unwrap_or_default();
            format!(
                "the ID token expired {} s ago by the panel's clock (exp {exp}, now {}), more \
                 than the {LEEWAY_SECONDS} s the clocks may differ: check the clocks of the \
                 panel and the provider (NTP)",
                now.timestamp() - exp,
                now.timestamp()
            )
        }
        ClaimsVerificationError::InvalidIssuer(_) => format!(
            "the ID token was issued by {}, not by the configured issuer",
            payload["iss"]
        ),
        ClaimsVerificationError::InvalidNonce(_) => {
            "the ID token does not answer this sign-in (its nonce differs): sign in again"
                .to_owned()
        }
        ClaimsVerificationError::SignatureVerification(e) => explain_signature(e),
        other => format!("the ID token is refused: {other}"),
    }
}

fn explain_signature(error: &SignatureVerificationError) -> String {
    match error {
        SignatureVerificationError::NoSignature => unusable_algorithm("none").unwrap_or_default(),
        SignatureVerificationError::DisallowedAlg(alg)
        | SignatureVerificationError::UnsupportedAlg(alg) => {
            unusable_algorithm(alg.trim_matches('"')).unwrap_or_else(|| {
                format!(
                    "the ID token is signed with {alg}, which the provider's discovery \
                     document does not list for ID tokens"
                )
            })
        }
        SignatureVerificationError::NoMatchingKey => {
            "no key of the identity provider matches the token's signature (key id or type): \
             check the provider's keys (jwks_uri)"
                .to_owned()
        }
        other => format!("the token's signature does not check out: {other}"),
    }
}

/// The clock checks of an ID token with the leeway: `exp` may be up to the leeway in the
/// past, `iat` up to the leeway in the future.
pub(super) fn issued_in_time(
    now: DateTime<Utc>,
) -> impl Fn(DateTime<Utc>) -> Result<(), String> + Send + Sync + 'static {
    move |iat: DateTime<Utc>| {
        let ahead = (iat - now).num_seconds();
        if ahead > LEEWAY_SECONDS {
            Err(format!(
                "the ID token was issued {ahead} s in the future by the panel's clock, more \
                 than the {LEEWAY_SECONDS} s the clocks may differ: check the clocks of the \
                 panel and the provider (NTP)"
            ))
        } else {
            Ok(())
        }
    }
}

/// Checks a compact JWS's signature with the provider's keys (or, for HMAC, the client
/// secret): its header and payload, or why not.
pub(super) fn verify_jws(
    jwt: &str,
    keys: &JsonWebKeySet<CoreJsonWebKey>,
    client_secret: Option<&str>,
) -> Result<serde_json::Value, String> {
    let (header, payload) =
        parts(jwt).ok_or_else(|| "the token is not a signed JWT (three parts)".to_owned())?;
    let alg_name = header["alg"].as_str().unwrap_or("none");
    if let Some(why) = unusable_algorithm(alg_name) {
        return Err(why);
    }
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(header["alg"].clone()).map_err(|e| e.to_string())?;
    let (signed, signature) = jwt
        .rsplit_once('.')
        .ok_or_else(|| "the token has no signature".to_owned())?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "the token's signature is not base64url".to_owned())?;
    let kid = header["kid"].as_str();
    let symmetric;
    let candidates: Vec<&CoreJsonWebKey> = if alg_name.starts_with("HS") {
        let secret = client_secret
            .ok_or("the token is signed with the client secret, and the panel has none")?;
        symmetric = CoreJsonWebKey::new_symmetric(secret.as_bytes().to_vec());
        vec![&symmetric]
    } else {
        keys.keys()
            .iter()
            .filter(|key| match (kid, key.key_id()) {
                (Some(kid), Some(id)) => id.as_str() == kid,
                _ => true,
            })
            .collect()
    };
    if candidates.is_empty() {
        return Err(explain_signature(
            &SignatureVerificationError::NoMatchingKey,
        ));
    }
    let mut last = SignatureVerificationError::NoMatchingKey;
    for key in candidates {
        match key.verify_signature(&alg, signed.as_bytes(), &signature) {
            Ok(()) => return Ok(payload),
            Err(e) => last = e,
        }
    }
    Err(explain_signature(&last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_algorithms_are_named() {
        assert!(unusable_algorithm("RS256").is_none());
        assert!(unusable_algorithm("ES256").is_none());
        assert!(unusable_algorithm("none").unwrap().contains("unsigned"));
        let why = unusable_algorithm("ES512K").unwrap();
        assert!(why.contains("\"ES512K\"") && why.contains("RS256"), "{why}");
    }

    #[test]
    fn a_token_issued_beyond_the_leeway_is_refused_with_the_clocks_named() {
        let now = chrono::Utc::now();
        let check = issued_in_time(now);
        assert!(check(now + chrono::Duration::seconds(LEEWAY_SECONDS)).is_ok());
        let why = check(now + chrono::Duration::seconds(LEEWAY_SECONDS + 30)).unwrap_err();
        assert!(
            why.contains("in the future") && why.contains("NTP"),
            "{why}"
        );
    }

    #[test]
    fn an_unsigned_jws_is_refused_before_any_key_is_looked_for() {
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"iss":"x"}"#));
        let keys = JsonWebKeySet::new(vec![]);
        let why = verify_jws(&jwt, &keys, None).unwrap_err();
        assert!(why.contains("unsigned"), "{why}");
        assert!(verify_jws("garbage", &keys, None).is_err());
    }
}
