//! Forgets what can no longer be used: sessions past their end or idle time, sign-ins
//! abandoned at the identity provider, break-glass links and join tokens past their use-by
//! time; and the time series, whose old minutes roll into hours.

use async_trait::async_trait;

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

pub(super) struct RemoveExpired;

#[async_trait]
impl Activity for RemoveExpired {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let now = service.now();
        let idle = chrono::Duration::from_std(service.config().session_idle)
            .unwrap_or(chrono::Duration::hours(2));
        let store = service.store();
        let expired = store.remove_expired(now, idle).await?;
        let join_tokens = store.remove_expired_join_tokens(now).await?;
        // The time series: old minutes into hours, old hours gone.
        let hours = store.compact_series(now).await?;
        let removed = expired.sessions + expired.sign_ins + expired.break_glass + join_tokens;
        Ok(if removed + hours > 0 {
            format!(
                "removed {} sessions, {} sign-ins, {} break-glass links, {join_tokens} join \
                 tokens; rolled {hours} hours of time series",
                expired.sessions, expired.sign_ins, expired.break_glass
            )
        } else {
            String::new()
        })
    }
}
