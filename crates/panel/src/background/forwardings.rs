//! Ends the forwarding of site moves whose period is over (poked by every agent report too).

use async_trait::async_trait;

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

pub(super) struct EndForwardings;

#[async_trait]
impl Activity for EndForwardings {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let ended = service.finish_expired_forwardings().await?;
        Ok(if ended > 0 {
            format!("{ended} forwardings ended")
        } else {
            String::new()
        })
    }
}
