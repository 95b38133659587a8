//! `alveole serve`: open the database, make sure an admin can sign in, serve the panel.

use alveole_panel::{AppState, PanelConfig, auth};
use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::local::{self, LocalAgentConfig};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let clock: std::sync::Arc<dyn alveole_model::Clock> =
        std::sync::Arc::new(alveole_model::SystemClock);
    let store = alveole_store::connect_with_clock(&args.database.database_url, clock.clone())
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                redact(&args.database.database_url)
            )
        })?;
    // Agents reach the panel over TLS, with a certificate of the panel's own CA, and present
    // client certificates from that CA. The local agent uses the same listener (on loopback
    // when no --agent-listen is given).
    let agent_listen = match (args.agent_listen, args.local_agent) {
        (Some(listen), _) => Some(listen),
        (None, true) => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        (None, false) => None,
    };
    let agent_tls = match agent_listen {
        Some(listen) => {
            let mut names = args.agent_hostnames.clone();
            if !listen.ip().is_unspecified() {
                names.push(listen.ip().to_string());
            }
            let lifetime =
                std::time::Duration::from_secs(args.agent_certificate_hours.max(1) * 3600);
            Some(
                alveole_panel::tls::load_or_create(&args.tls_dir, &names, lifetime)
                    .context("preparing the agents' TLS")?,
            )
        }
        None => None,
    };
    let agent_url = args.agent_listen.map(|listen| {
        let host = args
            .agent_hostnames
            .first()
            .cloned()
            .unwrap_or_else(|| listen.ip().to_string());
        format!("https://{host}:{}", listen.port())
    });
    // The audit chain's checkpoints are signed with the panel's own key.
    let notary = alveole_panel::notary::Notary::new(
        alveole_audit::SigningKey::load_or_create(&args.audit_key.audit_key_file).with_context(
            || {
                format!(
                    "opening the audit signing key {}",
                    args.audit_key.audit_key_file.display()
                )
            },
        )?,
        args.audit_webhook.clone(),
    );
    notary.publish_key(store.as_ref()).await?;
    let secrets_file = &args.secrets_key.secrets_key_file;
    let secrets = alveole_panel::secrets::Keyring::load_or_create(secrets_file)
        .with_context(|| format!("opening the secrets key {}", secrets_file.display()))?;
    let oidc = match &args.oidc_issuer {
        Some(issuer) => {
            let public = args.public_url.clone().unwrap_or_else(|| {
                let scheme = if args.tls_certificate.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", args.listen)
            });
            let config = alveole_panel::oidc::OidcConfig {
                issuer: issuer.clone(),
                client_id: args.oidc_client_id.clone(),
                client_secret: args.oidc_client_secret.clone(),
                scopes: args.oidc_scopes.clone(),
                groups_claim: args.oidc_groups_claim.clone(),
                roles: alveole_panel::oidc::parse_roles(&args.oidc_roles)
                    .map_err(|e| anyhow::anyhow!("--oidc-roles: {e}"))?,
                redirect_url: format!("{}/login/oidc/callback", public.trim_end_matches('/')),
            };
            let oidc = std::sync::Arc::new(alveole_panel::oidc::Oidc::new(config)?);
            // A setting that cannot work stops the panel here, saying what to set.
            oidc.check_at_start()
                .await
                .map_err(|why| anyhow::anyhow!("cannot use the identity provider: {why}"))?;
            Some(oidc)
        }
        None => None,
    };
    // The panel's own HTTPS, when given a certificate: checked now, before anything listens.
    let members_tls = match (&args.tls_certificate, &args.tls_key) {
        (Some(chain), Some(key)) => {
            let read = |path: &std::path::PathBuf, flag: &str| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("{flag}: reading {}", path.display()))
            };
            Some(
                alveole_panel::serving::members_tls(
                    &read(chain, "--tls-certificate")?,
                    &read(key, "--tls-key")?,
                )
                .map_err(|why| anyhow::anyhow!("--tls-certificate: {why}"))?,
            )
        }
        _ => None,
    };
    let scheme = if members_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let state = AppState::new(
        store.clone(),
        PanelConfig {
            secure_cookies: args.secure_cookies || members_tls.is_some(),
            node_unreachable_after: std::time::Duration::from_secs(args.node_unreachable_after),
            moves: alveole_store::MoveTiming {
                forward_seconds: args.move_forward_seconds,
                freeze_deadline_ms: args.move_freeze_deadline_ms.max(100),
            },
            agent_url,
            agent_tls: agent_tls.clone(),
            notary: Some(notary),
            session_idle: std::time::Duration::from_secs(args.session_idle_minutes.max(1) * 60),
            clock,
            oidc,
            provider_routing: std::sync::Arc::new(alveole_panel::failover::SharedSegment),
            background: alveole_panel::background::BackgroundConfig {
                checkpoints_every: std::time::Duration::from_secs(
                    args.audit_checkpoint_minutes.max(1) * 60,
                ),
                certificates_every: std::time::Duration::from_secs(args.acme.acme_every_seconds),
                ..Default::default()
            },
            exit_notice: std::time::Duration::from_secs(args.exit_notice_hours * 3600),
            max_body_bytes: usize::try_from(args.connections.max_body_bytes).unwrap_or(usize::MAX),
            secrets: std::sync::Arc::new(secrets),
            acme: args.acme.config()?,
            databases: args.database_offers.clone(),
            public_suffixes: std::sync::Arc::new(alveole_panel::suffixes::PublicSuffixes::load(
                &args.public_suffix_list,
            )),
        },
    )?;
    // Secrets stored in clear by an earlier version are sealed before anything else runs
    // (one that cannot be is sealed at the site's next change; the panel serves regardless).
    let sealing = alveole_store::AuditContext::new("system:secrets", "seal-stored-secrets");
    match state.service().seal_stored_secrets(&sealing).await {
        Ok(0) => {}
        Ok(sites) => tracing::info!(sites, "secrets stored in clear are now sealed"),
        Err(error) => tracing::error!(%error, "secrets stored in clear could not all be sealed"),
    }
    // Expired forwardings, durable jobs (those whose lease this process holds), clean-ups,
    // checkpoints and checks of the audit chain.
    let _background =
        alveole_panel::background::start(state.service(), alveole_panel::background::owner_name());
    if let Some(token) = auth::ensure_bootstrap_token(store.as_ref()).await? {
        println!("First start: the bootstrap admin token is\n\n    {token}\n");
        println!(
            "It is shown only this once (stored hashed). Sign in with it at the address below;"
        );
        println!("`alveole admin reset-token` makes a new one.\n");
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("alveole is listening on {scheme}://{address}/");
    tracing::info!(%address, backend = ?store.backend(), "panel started");
    let agents_address = match (agent_listen, &agent_tls) {
        (Some(listen), Some(tls)) => {
            let agents = TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen} for agents"))?;
            let address = agents.local_addr()?;
            if args.agent_listen.is_some() {
                println!(
                    "Agents enrol at https://{address} (CA fingerprint {})",
                    tls.ca.fingerprint
                );
            }
            tokio::spawn(alveole_panel::serving::serve_agents(
                alveole_panel::app(state.clone()),
                agents,
                tls.server.clone(),
                args.connections.limits(),
                shutdown_signal(),
            ));
            Some(address)
        }
        _ => None,
    };
    let service = state.service().clone();
    let panel = tokio::spawn(serve(
        state,
        listener,
        members_tls,
        args.connections.limits(),
    ));
    let _local = match (args.local_agent, agents_address, &agent_tls) {
        (true, Some(agents), Some(tls)) => {
            let config = LocalAgentConfig {
                state_dir: args.local_state_dir.clone(),
                ingress_listen: args.local_ingress_listen,
                peer_listen: args.local_peer_listen.0,
                pass: std::time::Duration::from_secs(2),
            };
            let host = if agents.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                agents.ip()
            };
            let panel_url = format!("https://{}", std::net::SocketAddr::new(host, agents.port()));
            let local = local::start(&service, &panel_url, &tls.ca.ca_pem, config).await?;
            match &local {
                Some(local) => println!(
                    "This machine is node `{}`: its sites are served on http://<site>.localhost:{}/ (--local-agent false turns this off).",
                    local::LOCAL_NODE,
                    local.ingress_address.port()
                ),
                None => println!("No Docker engine here: sites are not run on this machine."),
            }
            local
        }
        _ => None,
    };
    panel.await.context("the panel stopped")?
}

/// Serves the panel on `listener` (over HTTPS with `tls`) until Ctrl-C or SIGTERM.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    limits: alveole_listen::Limits,
) -> anyhow::Result<()> {
    let app = alveole_panel::app(state);
    match tls {
        Some(tls) => {
            alveole_panel::serving::serve_https(app, listener, tls, limits, shutdown_signal())
                .await?;
        }
        None => {
            alveole_panel::serving::serve(app, listener, limits, shutdown_signal()).await?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            super::redact("postgres://a:secret@h/db"),
            "postgres://a:***@h/db"
        );
        assert_eq!(super::redact("sqlite://alveole.db"), "sqlite://alveole.db");
    }
}
