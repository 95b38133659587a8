//! The `alveole` binary: parses the command line and hands over to the library.

use alveole::cli::{AdminCommand, Cli, Command};
use alveole::{agent, audit, client, evacuate, serve};
use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log = match &cli.command {
        Command::Serve(args) => args.log.clone(),
        Command::Agent(_) => "info".to_owned(),
        _ => "warn".to_owned(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&log).context("invalid log filter")?)
        .with_writer(std::io::stderr)
        .init();
    // One TLS provider for every HTTPS client in the process (ring: no cmake or clang needed).
    let _ = rustls::crypto::ring::default_provider().install_default();

    match cli.command {
        Command::Serve(args) => {
            // Listeners bound their connections by the descriptors the process may open.
            alveole_listen::raise_open_files_limit();
            serve::run(*args).await
        }
        Command::Agent(args) => {
            alveole_listen::raise_open_files_limit();
            agent::run(args).await
        }
        Command::Admin(AdminCommand::ResetToken { database }) => {
            let store = alveole_store::connect(&database.database_url).await?;
            let ctx = alveole_store::AuditContext::new("system:admin-cli", "reset-token");
            let token = alveole_panel::auth::reset_bootstrap_token(store.as_ref(), &ctx).await?;
            println!("{token}");
            Ok(())
        }
        Command::Admin(AdminCommand::DisableBootstrap { database }) => {
            let store = alveole_store::connect(&database.database_url).await?;
            let ctx = alveole_store::AuditContext::new("system:admin-cli", "disable-bootstrap");
            alveole_panel::auth::disable_bootstrap_token(store.as_ref(), &ctx).await?;
            println!("The bootstrap token no longer works.");
            Ok(())
        }
        Command::Admin(AdminCommand::RotateSecretsKey { database, key }) => {
            let store = alveole_store::connect(&database.database_url).await?;
            let keyring = alveole_panel::secrets::Keyring::load_or_create(&key.secrets_key_file)
                .with_context(|| {
                    format!("opening the secrets key {}", key.secrets_key_file.display())
                })?;
            let config = alveole_panel::PanelConfig {
                secrets: std::sync::Arc::new(keyring),
                ..Default::default()
            };
            let state = alveole_panel::AppState::new(store, config)?;
            let ctx = alveole_store::AuditContext::new("system:admin-cli", "rotate-secrets-key");
            let sites = state
                .service()
                .rotate_secrets_key(&ctx)
                .await
                .map_err(|error| anyhow::anyhow!("rotating the secrets key: {error}"))?;
            println!(
                "A new secrets key is in {}; the secrets of {sites} site(s) are sealed with it.",
                key.secrets_key_file.display()
            );
            Ok(())
        }
        Command::Admin(AdminCommand::BreakGlass {
            database,
            duration,
            panel_url,
        }) => {
            let store = alveole_store::connect(&database.database_url).await?;
            let link = alveole_panel::auth::issue_break_glass(
                store.as_ref(),
                &panel_url,
                alveole::cli::parse_duration(&duration)?,
                chrono::Utc::now(),
            )
            .await?;
            println!("{link}");
            eprintln!(
                "One use, within 15 minutes; the session lasts {duration}. Both are recorded."
            );
            Ok(())
        }
        Command::Site(args) => client::run(client::SITES, args).await,
        Command::Node(args) => client::run(client::NODES, args).await,
        Command::Provider(args) => client::run(client::PROVIDERS, args).await,
        Command::Member(args) => client::run(client::MEMBERS, args).await,
        Command::BackupTarget(args) => client::run(client::BACKUP_TARGETS, args).await,
        Command::Evacuate(args) => evacuate::evacuate(args).await,
        Command::Recover(args) => evacuate::recover(args).await,
        Command::Audit(command) => audit::run(command).await,
    }
}
