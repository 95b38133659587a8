//! Sites' certificates, every minute and when poked (a site's names or HTTPS settings
//! changed, a certificate was removed): what is due ordered from the co-op's ACME CA under
//! its rate limits, renewal windows asked again where the CA gives them.

use async_trait::async_trait;

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

pub(super) struct OrderCertificates;

#[async_trait]
impl Activity for OrderCertificates {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let run = service.run_certificates().await?;
        Ok(if run.is_empty() {
            String::new()
        } else {
            run.to_string()
        })
    }
}
