//! The identity provider checked when the panel starts: a setting that cannot work stops the
//! panel with what to set; a provider that cannot be reached yet is only a warning, and is
//! tried again in the background until it answers.

use std::sync::Arc;
use std::time::Duration;

use super::{Oidc, ProviderError};

/// The longest wait between two tries at a provider that does not answer.
const MAX_RETRY: Duration = Duration::from_secs(300);

impl Oidc {
    /// Checks the provider once; on a provider that cannot be reached, keeps trying in the
    /// background (logging each failure) and answers `Ok`. `Err` says what to set.
    pub async fn check_at_start(self: &Arc<Self>) -> Result<(), String> {
        match self.check().await {
            Ok(warnings) => {
                log_checked(&self.config.issuer, &warnings);
                // What to register at the provider, for the admin reading the log.
                tracing::info!(
                    redirect = %self.config.redirect_url,
                    post_logout_redirect = %self.config.post_logout_url(),
                    back_channel_logout = %self.config.back_channel_logout_url(),
                    "addresses of this panel to register at the identity provider"
                );
                Ok(())
            }
            Err(ProviderError::Misconfigured(why)) => Err(why),
            Err(ProviderError::Unreachable(why)) => {
                tracing::warn!(
                    issuer = %self.config.issuer,
                    "{why}: the panel starts, sign-ins will fail until the identity provider \
                     answers (trying again in the background)"
                );
                let oidc = self.clone();
                tokio::spawn(async move { oidc.retry_check().await });
                Ok(())
            }
        }
    }

    async fn retry_check(&self) {
        let mut wait = Duration::from_secs(5);
        loop {
            tokio::time::sleep(wait).await;
            match self.check().await {
                Ok(warnings) => {
                    log_checked(&self.config.issuer, &warnings);
                    return;
                }
                Err(ProviderError::Misconfigured(why)) => {
                    tracing::error!(
                        issuer = %self.config.issuer,
                        "{why}: every sign-in through the identity provider will fail until \
                         this is set and the panel restarted"
                    );
                    return;
                }
                Err(ProviderError::Unreachable(why)) => {
                    tracing::warn!(issuer = %self.config.issuer, "{why}: trying again");
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

fn log_checked(issuer: &str, warnings: &[String]) {
    for warning in warnings {
        tracing::warn!(%issuer, "{warning}");
    }
    tracing::info!(%issuer, "identity provider checked");
}
