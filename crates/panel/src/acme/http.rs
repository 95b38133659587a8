//! instant-acme's HTTP client, on the panel's own reqwest (rustls with ring, the CA roots the
//! co-op gives): it also keeps the Retry-After of the CA's refusals (429, 503), which
//! instant-acme's errors do not carry, so that the panel waits as long as the CA asked.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::AcmeError;

/// Each call to the CA is bounded.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The client, and the latest "come back then" the CA said.
#[derive(Clone, Debug)]
pub struct AcmeHttp {
    client: reqwest::Client,
    retry_after: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl AcmeHttp {
    /// Trusting `ca_roots` (PEM) alone when given (a test CA), else the system's roots.
    pub fn new(ca_roots: Option<&Path>) -> Result<Self, AcmeError> {
        let mut builder = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(10));
        if let Some(path) = ca_roots {
            let pem = std::fs::read(path).map_err(|e| AcmeError::Setting {
                setting: "--acme-ca-roots",
                reason: format!("{}: {e}", path.display()),
            })?;
            let roots =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| AcmeError::Setting {
                    setting: "--acme-ca-roots",
                    reason: format!("{}: {e}", path.display()),
                })?;
            builder = builder.tls_certs_only(roots);
        }
        let client = builder.build().map_err(|e| AcmeError::Setting {
            setting: "--acme-directory",
            reason: format!("no HTTP client: {e}"),
        })?;
        Ok(Self {
            client,
            retry_after: Arc::default(),
        })
    }

    /// Until when the CA last asked to be left alone, forgetting it.
    pub fn take_retry_after(&self) -> Option<DateTime<Utc>> {
        self.retry_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn note_retry_after(&self, until: DateTime<Utc>) {
        let mut kept = self
            .retry_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *kept = Some(kept.map_or(until, |known| known.max(until)));
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(now + chrono::Duration::seconds(i64::from(seconds)));
    }
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|date| date.with_timezone(&Utc))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let response = this
                .client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let status = response.status().as_u16();
            if status == 429 || status == 503 {
                let until = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                // Without a date, a minute: never straight back at a CA that refused.
                this.note_retry_after(
                    until.unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(1)),
                );
            }
            let response: http::Response<reqwest::Body> = response.into();
            Ok(BytesResponse::from(response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + chrono::Duration::seconds(120))
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 2027 23:59:59 GMT", now).map(|d| d.to_rfc3339()),
            Some("2027-12-31T23:59:59+00:00".to_owned())
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
