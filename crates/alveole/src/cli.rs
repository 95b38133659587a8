//! Every subcommand, flag and `ALVEOLE_*` variable of the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::cli_agent::listen_or_off;
pub use crate::cli_agent::{AgentArgs, Listen};

#[derive(Debug, Parser)]
#[command(
    name = "alveole",
    version,
    about = "A libre hosting control panel for cooperatives"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the panel (JSON API, pages, metrics).
    Serve(Box<ServeArgs>),
    /// Run a node's agent: keep this node's containers as the panel wants them, and serve
    /// their sites through the node's ingress.
    Agent(AgentArgs),
    /// Commands for the panel's host.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage sites through the API.
    Site(ResourceArgs),
    /// Manage nodes through the API.
    Node(ResourceArgs),
    /// Manage providers through the API.
    Provider(ResourceArgs),
    /// Manage members through the API.
    Member(ResourceArgs),
    /// Manage backup targets (vault nodes, restic REST servers) through the API.
    BackupTarget(ResourceArgs),
    /// Empty a node or a whole provider: where each site would go, how long it would take,
    /// and whether a deadline holds (`--dry-run`).
    Evacuate(EvacuateArgs),
    /// A node or a whole provider is lost: fence its nodes, and restore each of their sites
    /// elsewhere from its newest backup, following the recovery to its end.
    Recover(RecoverArgs),
    /// The audit record: check it, sign a checkpoint, rotate the signing key, export it.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Where the panel keeps its state: sqlite://FILE or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "ALVEOLE_DATABASE_URL",
        default_value = "sqlite://alveole.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct AuditKeyArgs {
    /// The panel's Ed25519 key that signs audit checkpoints (made at first start, mode 0600).
    #[arg(
        long,
        env = "ALVEOLE_AUDIT_KEY_FILE",
        default_value = ".alveole/audit/signing.key"
    )]
    pub audit_key_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain, its columns and its checkpoints, in the database or in an export;
    /// names the first broken event. Exits with 1 when the record is not intact.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Check this JSON Lines export (from `alveole audit export`) instead of the database.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Checkpoints kept outside the panel (JSON files of one checkpoint or a list).
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// Public keys kept outside the panel (JSON from GET /api/v1/audit/keys); without it,
        /// the keys the database or the export publishes.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Sign a checkpoint of the chain now and print it (JSON).
    Checkpoint {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        key: AuditKeyArgs,
    },
    /// Replace the signing key (the old public key stays published), then sign a checkpoint
    /// with the new one.
    RotateKey {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        key: AuditKeyArgs,
    },
    /// Export the record through the API, filtered (JSON Lines by default, or CSV).
    Export {
        #[command(flatten)]
        client: ClientArgs,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// From this day (2026-11-01) or RFC 3339 instant, included.
        #[arg(long)]
        from: Option<String>,
        /// Up to this day or instant, excluded.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        target_kind: Option<String>,
        #[arg(long)]
        target_id: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub audit_key: AuditKeyArgs,
    #[command(flatten)]
    pub secrets_key: SecretsKeyArgs,
    /// Minutes between signed checkpoints of the audit chain (when it has grown).
    #[arg(long, env = "ALVEOLE_AUDIT_CHECKPOINT_MINUTES", default_value_t = 60)]
    pub audit_checkpoint_minutes: u64,
    /// Where each new checkpoint is POSTed as JSON, to keep copies outside the panel.
    #[arg(long, env = "ALVEOLE_AUDIT_WEBHOOK")]
    pub audit_webhook: Option<String>,
    /// Address and port the panel listens on.
    #[arg(long, env = "ALVEOLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub connections: PanelConnectionArgs,
    #[command(flatten)]
    pub acme: crate::cli_acme::AcmeArgs,
    /// The Public Suffix List (Debian's `publicsuffix` package; it is updated with the
    /// package): no site may take a wildcard directly under a public suffix.
    #[arg(
        long,
        env = "ALVEOLE_PUBLIC_SUFFIX_LIST",
        default_value = "/usr/share/publicsuffix/public_suffix_list.dat"
    )]
    pub public_suffix_list: PathBuf,
    /// Mark session cookies Secure and name them `__Host-…` (set this when the panel is served
    /// over HTTPS; on with --tls-certificate).
    #[arg(long, env = "ALVEOLE_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,
    /// Serve the panel over HTTPS with this certificate (PEM: the panel's, then its chain),
    /// without a proxy in front. Read at start.
    #[arg(long, env = "ALVEOLE_TLS_CERTIFICATE", requires = "tls_key")]
    pub tls_certificate: Option<PathBuf>,
    /// The private key of --tls-certificate (PEM).
    #[arg(long, env = "ALVEOLE_TLS_KEY", requires = "tls_certificate")]
    pub tls_key: Option<PathBuf>,
    /// The panel's address as browsers reach it (for the identity provider's redirect);
    /// unset: http://<listen>.
    #[arg(long, env = "ALVEOLE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The co-op's OpenID Connect provider (issuer URL); unset: no sign-in through one.
    #[arg(long, env = "ALVEOLE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// This panel's client id at the provider.
    #[arg(long, env = "ALVEOLE_OIDC_CLIENT_ID", default_value = "alveole")]
    pub oidc_client_id: String,
    /// This panel's client secret at the provider, if it has one.
    #[arg(long, env = "ALVEOLE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Scopes asked for besides openid.
    #[arg(
        long,
        env = "ALVEOLE_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "email,profile"
    )]
    pub oidc_scopes: Vec<String>,
    /// The claim (in the ID token or from userinfo) that lists the user's groups.
    #[arg(long, env = "ALVEOLE_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Group → role (`coop-admins=admin,board=auditor`); set, it decides roles at each sign-in.
    #[arg(long, env = "ALVEOLE_OIDC_ROLES", default_value = "")]
    pub oidc_roles: String,
    /// Minutes without use after which a session ends (it ends 12 hours after sign-in anyway).
    #[arg(long, env = "ALVEOLE_SESSION_IDLE_MINUTES", default_value_t = 120)]
    pub session_idle_minutes: u64,
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "ALVEOLE_LOG", default_value = "info")]
    pub log: String,
    /// Serve nodes' agents here, over mutual TLS with the panel's own CA (e.g. 0.0.0.0:8443).
    /// Unset: only the local agent is served, on loopback.
    #[arg(long, env = "ALVEOLE_AGENT_LISTEN")]
    pub agent_listen: Option<SocketAddr>,
    /// Names and addresses agents use for the panel (the TLS certificate names them).
    #[arg(
        long,
        env = "ALVEOLE_AGENT_HOSTNAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub agent_hostnames: Vec<String>,
    /// Where the panel keeps its CA and TLS certificate for agents (keys mode 0600).
    #[arg(long, env = "ALVEOLE_TLS_DIR", default_value = ".alveole/tls")]
    pub tls_dir: PathBuf,
    /// Hours an agent's client certificate is valid (renewed at half life; an agent offline
    /// for longer must enrol again).
    #[arg(long, env = "ALVEOLE_AGENT_CERTIFICATE_HOURS", default_value_t = 24)]
    pub agent_certificate_hours: u64,
    /// Seconds without a report after which a node is shown unreachable (and receives no
    /// moved site).
    #[arg(long, env = "ALVEOLE_NODE_UNREACHABLE_AFTER", default_value_t = 60)]
    pub node_unreachable_after: u64,
    /// Hours of notice a provider is assumed to give before it stops: the dashboard shows,
    /// for each provider, whether leaving it fits in that time.
    #[arg(long, env = "ALVEOLE_EXIT_NOTICE_HOURS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub exit_notice_hours: u64,
    /// A database engine and version members may choose, and the image that runs it
    /// (`ENGINE:VERSION=IMAGE`, repeated, or comma-separated in the variable). The official
    /// images by default; images built elsewhere must honour their MARIADB_* and POSTGRES_*
    /// variables.
    #[arg(
        long = "database-offer",
        env = "ALVEOLE_DATABASE_OFFERS",
        value_delimiter = ',',
        default_values = ["mariadb:10.11=mariadb:10.11", "postgresql:15=postgres:15"],
        value_parser = alveole_model::DatabaseOffer::parse
    )]
    pub database_offers: Vec<alveole_model::DatabaseOffer>,
    /// Seconds a moved site's old node forwards its requests to the new one (at least twice
    /// the DNS TTL of the site's names; an admin can end it earlier).
    #[arg(long, env = "ALVEOLE_MOVE_FORWARD_SECONDS", default_value_t = 600)]
    pub move_forward_seconds: u64,
    /// Milliseconds a move may keep a site frozen before its old node rolls back and serves it
    /// again by itself.
    #[arg(
        long,
        env = "ALVEOLE_MOVE_FREEZE_DEADLINE_MS",
        default_value_t = 10_000
    )]
    pub move_freeze_deadline_ms: u64,
    /// Also run an agent for this machine when it has a Docker engine (all-in-one).
    #[arg(long, env = "ALVEOLE_LOCAL_AGENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_agent: bool,
    /// Where the local agent serves sites (`http://<site>.localhost:8081/`).
    #[arg(
        long,
        env = "ALVEOLE_LOCAL_INGRESS_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub local_ingress_listen: SocketAddr,
    /// Where the local agent listens for other agents on this machine, so that sites move
    /// to and from it (port 0: any free port; `off`: it takes no part in moves).
    #[arg(
        long,
        env = "ALVEOLE_LOCAL_PEER_LISTEN",
        default_value = "127.0.0.1:0",
        value_parser = listen_or_off
    )]
    pub local_peer_listen: Listen,
    /// Where the local agent keeps its credential and desired state.
    #[arg(
        long,
        env = "ALVEOLE_LOCAL_STATE_DIR",
        default_value = ".alveole/agent"
    )]
    pub local_state_dir: PathBuf,
}

/// How the panel's listeners (members' and agents') bound connections and bodies.
#[derive(Debug, Args)]
pub struct PanelConnectionArgs {
    /// Connections the panel keeps open at once, per listener; near it, the longest idle
    /// is closed (also bounded by the process's limit on open files).
    #[arg(long, env = "ALVEOLE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Connections one client address may have open that have not sent a whole request
    /// head yet (only those: many users behind one address are fine).
    #[arg(long, env = "ALVEOLE_MAX_UNFINISHED_PER_CLIENT", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_unfinished_per_client: u64,
    /// Seconds a client has to send a request's head (TLS handshake included).
    #[arg(long, env = "ALVEOLE_HEADER_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_seconds: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "ALVEOLE_IDLE_TIMEOUT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_seconds: u64,
    /// The largest request body the panel reads (413 beyond).
    #[arg(long, env = "ALVEOLE_MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub max_body_bytes: u64,
}

impl PanelConnectionArgs {
    pub fn limits(&self) -> alveole_listen::Limits {
        limits(
            self.max_connections,
            self.max_unfinished_per_client,
            self.header_timeout_seconds,
            self.idle_timeout_seconds,
        )
    }
}

/// How a node's ingress bounds connections (request bodies are bounded per site).
#[derive(Debug, Args)]
pub struct IngressConnectionArgs {
    /// Connections the ingress keeps open at once; near it, the longest idle is closed (also
    /// bounded by the process's limit on open files, two per proxied connection).
    #[arg(long, env = "ALVEOLE_INGRESS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ingress_max_connections: u64,
    /// Connections one client address may have open that have not sent a whole request
    /// head yet (a school behind one address is many clients, not one).
    #[arg(long, env = "ALVEOLE_INGRESS_MAX_UNFINISHED_PER_CLIENT", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ingress_max_unfinished_per_client: u64,
    /// Seconds a client has to send a request's head.
    #[arg(long, env = "ALVEOLE_INGRESS_HEADER_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ingress_header_timeout_seconds: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "ALVEOLE_INGRESS_IDLE_TIMEOUT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ingress_idle_timeout_seconds: u64,
}

impl IngressConnectionArgs {
    pub fn limits(&self) -> alveole_listen::Limits {
        limits(
            self.ingress_max_connections,
            self.ingress_max_unfinished_per_client,
            self.ingress_header_timeout_seconds,
            self.ingress_idle_timeout_seconds,
        )
    }
}

/// Limits from settings clap has already bounded (so the conversions cannot fail).
fn limits(
    max_connections: u64,
    max_unfinished_per_client: u64,
    header_timeout_seconds: u64,
    idle_timeout_seconds: u64,
) -> alveole_listen::Limits {
    alveole_listen::Limits {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_unfinished_per_client: usize::try_from(max_unfinished_per_client).unwrap_or(usize::MAX),
        header_timeout: std::time::Duration::from_secs(header_timeout_seconds),
        idle_timeout: std::time::Duration::from_secs(idle_timeout_seconds),
    }
}

/// The panel's secrets key file.
#[derive(Debug, Args)]
pub struct SecretsKeyArgs {
    /// The key that seals every secret the panel stores (sites' secret variables), outside
    /// the database: made at first start, mode 0600. Keep a copy apart from the database's
    /// backups: without it, the secrets in them cannot be read.
    #[arg(
        long,
        env = "ALVEOLE_SECRETS_KEY_FILE",
        default_value = ".alveole/secrets.key"
    )]
    pub secrets_key_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Seal every stored secret again with a new secrets key, then drop the old key (each
    /// site's change and the rotation are recorded). Safe to run while the panel serves.
    RotateSecretsKey {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        key: SecretsKeyArgs,
    },
    /// Replace the bootstrap admin token and print the new one (the old one stops working).
    ResetToken {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Disable the bootstrap admin token, once admins sign in through the identity provider
    /// (`reset-token` makes a new one if ever needed).
    DisableBootstrap {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// When the identity provider is down: print a one-time link (valid 15 minutes) that
    /// opens an admin session of limited life. Its issue and its use are recorded.
    BreakGlass {
        #[command(flatten)]
        database: DatabaseArgs,
        /// How long the session lasts: 90s, 30m, 1h (at most 12h).
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        /// The panel's address, as the browser reaches it.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        panel_url: String,
    },
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The panel's address.
    #[arg(
        long,
        env = "ALVEOLE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An API token (the bootstrap admin token for now).
    #[arg(long, env = "ALVEOLE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["node", "provider"])))]
pub struct EvacuateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The node to empty (id or name).
    #[arg(long)]
    pub node: Option<String>,
    /// Or every node of this provider (id or name).
    #[arg(long)]
    pub provider: Option<String>,
    /// By when: RFC 3339 (2026-11-29T20:00:00Z) or from now (+60h, +90m).
    #[arg(long)]
    pub deadline: Option<String>,
    /// Moves at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: u32,
    /// Show the plan without moving anything (without it: run it, with a progress bar).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["node", "provider"])))]
pub struct RecoverArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The lost node (id or name).
    #[arg(long)]
    pub node: Option<String>,
    /// Or every node of this lost provider (id or name).
    #[arg(long)]
    pub provider: Option<String>,
    /// Restores at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: u32,
    /// Says that the nodes are lost: they are fenced (they run nothing from now on, even if
    /// they come back) and their sites restored from backups, losing what they wrote since.
    #[arg(long, required = true)]
    pub confirm_lost: bool,
}

/// A deadline as people type it: RFC 3339, or `+60h` / `+90m` from `now`.
pub fn parse_deadline(
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Some(relative) = text.strip_prefix('+') {
        let (number, unit) = relative.split_at(relative.len().saturating_sub(1));
        let amount: i64 = number
            .parse()
            .map_err(|_| anyhow::anyhow!("{text}: a number of hours or minutes, like +60h"))?;
        return match unit {
            "h" => Ok(now + chrono::Duration::hours(amount)),
            "m" => Ok(now + chrono::Duration::minutes(amount)),
            _ => anyhow::bail!("{text}: hours (h) or minutes (m), like +60h or +90m"),
        };
    }
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| {
            anyhow::anyhow!("{text}: not a date and time like 2026-11-29T20:00:00Z ({e})")
        })?
        .with_timezone(&chrono::Utc))
}

#[derive(Debug, Args)]
pub struct ResourceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: ResourceAction,
}

#[derive(Debug, Subcommand)]
pub enum ResourceAction {
    /// List, optionally filtered: --filter owner_id=... (the API's query parameters).
    List {
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Follow pages up to this many items.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
    /// Show one, by id (sites also by host name).
    Show { id: String },
    /// Create from --set fields (dotted paths, JSON values or text) and/or a JSON file.
    Create {
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Change fields (--set, as for create) of one, by id.
    Update {
        id: String,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Delete one, by id (sites also by host name). A site's volume is kept unless `--purge`.
    Delete {
        id: String,
        /// Sites: remove the site's volume too (its data is then gone for good).
        #[arg(long)]
        purge: bool,
    },
    /// Nodes: a one-time join token, and the command that enrols the node's agent with it.
    JoinToken { id: String },
    /// Sites: move one (by id or host name) to another node, with a progress bar until its
    /// switch. Its requests are held, not failed, during the freeze.
    Move {
        id: String,
        /// The node (id or name) the site moves to.
        #[arg(long)]
        to: String,
        /// Return once the move started, without following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Sites: the site's moves, newest first.
    Moves { id: String },
    /// Sites: back one up now, to each target of its policy.
    Backup { id: String },
    /// Sites: its backups (data-loss window, restore time, alerts, newest snapshot at each
    /// target).
    Backups { id: String },
    /// Sites: drill its backups now (its newest snapshot restored, compared, started and
    /// probed on a node of another provider, then removed), following the drill to its end.
    Drill {
        id: String,
        /// Return once the drill started, without following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Sites: its latest restore drills, newest first.
    Drills { id: String },
    /// Sites: its HTTPS (certificate, renewal, last error); with --chain and --key, your own
    /// certificate instead of ACME's; --remove, --revoke.
    Certificate(CertificateArgs),
    /// Sites: its databases (where the site reaches each, the variables, size and quota);
    /// --rotate a password, --dump one to a file, --import a dump into one.
    Database(SiteDatabaseArgs),
    /// Sites: restore a snapshot (the newest by default), whole or some paths, into the site
    /// or another one, with a progress bar until it ends.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// The site (id or host name).
    pub id: String,
    /// Your own certificate (PEM: the site's first, then its chain) to serve the site with.
    #[arg(long, requires = "key")]
    pub chain: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "chain")]
    pub key: Option<PathBuf>,
    /// Stop serving the site's certificate (with ACME on, a new one is ordered).
    #[arg(long, conflicts_with_all = ["chain", "revoke"])]
    pub remove: bool,
    /// Revoke the site's ACME certificate at its CA (its key leaked); a new one is ordered.
    #[arg(long, conflicts_with_all = ["chain", "remove"])]
    pub revoke: bool,
}

#[derive(Debug, Args)]
pub struct SiteDatabaseArgs {
    /// The site (id or host name).
    pub id: String,
    /// Give this database a new password (the site restarts with it).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["dump", "import"])]
    pub rotate: Option<String>,
    /// Write a dump of this database (plain SQL) to --file, or to standard output.
    #[arg(long, value_name = "NAME", conflicts_with = "import")]
    pub dump: Option<String>,
    /// Replace this database's content with the dump in --file (a dump that does not load
    /// changes nothing).
    #[arg(long, value_name = "NAME", requires = "file")]
    pub import: Option<String>,
    /// The dump's file.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The site (id or host name) whose backups to restore from.
    pub id: String,
    /// A snapshot id (or its first 8 digits); the newest when absent.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// A file or folder to restore (`/www/index.html`), again for more; the whole site when
    /// absent (it is stopped meanwhile, and then holds exactly the snapshot).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Restore into this site (id or host name) instead, on whatever node it is.
    #[arg(long)]
    pub into: Option<String>,
    /// The target (id or name) to restore from; the site's first when absent.
    #[arg(long)]
    pub target: Option<String>,
    /// Return once the restore started, without following it.
    #[arg(long)]
    pub no_wait: bool,
}

/// The README's configuration table, generated from the definitions above.
pub fn config_table() -> String {
    // (variable, flag, subcommands, default, meaning)
    let mut rows: Vec<(String, String, Vec<String>, String, String)> = Vec::new();
    let mut visit = |cmd: &clap::Command, path: &str| {
        for arg in cmd.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy().into_owned();
            if let Some(row) = rows.iter_mut().find(|r| r.0 == env) {
                row.2.push(path.to_owned());
                continue;
            }
            let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            rows.push((env, flag, vec![path.to_owned()], default, help));
        }
    };
    let root = Cli::command();
    for sub in root.get_subcommands() {
        visit(sub, sub.get_name());
        for nested in sub.get_subcommands() {
            visit(nested, &format!("{} {}", sub.get_name(), nested.get_name()));
        }
    }
    rows.sort();
    let mut table = String::from("| Variable | Flag | Default | Meaning |\n|---|---|---|---|\n");
    for (env, flag, commands, default, help) in rows {
        let default = if default.is_empty() {
            "—".to_owned()
        } else {
            format!("`{default}`")
        };
        let commands = commands.join(", ");
        table.push_str(&format!(
            "| `{env}` | `{flag}` ({commands}) | {default} | {help} |\n"
        ));
    }
    table
}

/// `90s`, `30m`, `1h`: a duration of at most 12 hours.
pub fn parse_duration(text: &str) -> anyhow::Result<chrono::Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration such as 90s, 30m or 1h"))?;
    let duration = match unit {
        "s" => chrono::Duration::seconds(number),
        "m" => chrono::Duration::minutes(number),
        "h" => chrono::Duration::hours(number),
        _ => anyhow::bail!("{text:?} is not a duration such as 90s, 30m or 1h"),
    };
    anyhow::ensure!(
        duration > chrono::Duration::zero() && duration <= chrono::Duration::hours(12),
        "{text:?}: a break-glass session lasts between 1 second and 12 hours"
    );
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::parse_deadline;

    #[test]
    fn deadlines_are_dates_or_hours_and_minutes_from_now() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_deadline("+60h", now).unwrap(),
            now + chrono::Duration::hours(60)
        );
        assert_eq!(
            parse_deadline("+90m", now).unwrap(),
            now + chrono::Duration::minutes(90)
        );
        assert_eq!(
            parse_deadline("2026-11-29T20:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-29T19:00:00+00:00"
        );
        for bad in ["+60", "+h", "+3d", "sunday", ""] {
            assert!(parse_deadline(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_as_an_admin_writes_them() {
        assert_eq!(
            super::parse_duration("90s").unwrap(),
            chrono::Duration::seconds(90)
        );
        assert_eq!(
            super::parse_duration("1h").unwrap(),
            chrono::Duration::hours(1)
        );
        for bad in ["", "h", "1d", "13h", "0m", "-5m", "one hour"] {
            assert!(super::parse_duration(bad).is_err(), "{bad}");
        }
    }
}
