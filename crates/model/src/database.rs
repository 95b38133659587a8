//! A site's databases: each a MariaDB or PostgreSQL server of its own, in a container beside the
//! site's, sharing its network namespace (the servers listen on 127.0.0.1 only). What a member
//! asks for, its validation, its credentials (made and sealed by the panel, never shown), what a
//! node runs, and the variables that tell the site's container how to connect.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::WireSecret;
use crate::env::Secret;
use crate::error::{FieldError, ValidationErrors};
use crate::image::ImageRef;

/// At most this many databases per site.
pub const MAX_DATABASES: usize = 4;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    Mariadb,
    Postgresql,
}

impl DatabaseEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseEngine::Mariadb => "mariadb",
            DatabaseEngine::Postgresql => "postgresql",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "mariadb" => Some(DatabaseEngine::Mariadb),
            "postgresql" => Some(DatabaseEngine::Postgresql),
            _ => None,
        }
    }

    /// The port the server listens on, on 127.0.0.1 of the site's network namespace.
    pub fn port(self) -> u16 {
        match self {
            DatabaseEngine::Mariadb => 3306,
            DatabaseEngine::Postgresql => 5432,
        }
    }

    /// Where the official image keeps its data (the database's volume is mounted there).
    pub fn data_path(self) -> &'static str {
        match self {
            DatabaseEngine::Mariadb => "/var/lib/mysql",
            DatabaseEngine::Postgresql => "/var/lib/postgresql/data",
        }
    }

    /// The user the server runs as, in the official image and in alveole's test image.
    pub fn system_user(self) -> &'static str {
        match self {
            DatabaseEngine::Mariadb => "mysql",
            DatabaseEngine::Postgresql => "postgres",
        }
    }

    fn url_scheme(self) -> &'static str {
        match self {
            DatabaseEngine::Mariadb => "mysql",
            DatabaseEngine::Postgresql => "postgres",
        }
    }
}

/// A database's limits: its container's CPU, memory and processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DatabaseLimits {
    #[schemars(range(min = 10, max = 64_000))]
    pub cpu_millis: u32,
    /// 64 MiB to 256 GiB.
    #[schemars(range(min = 67_108_864, max = 274_877_906_944_u64))]
    pub memory_bytes: u64,
    #[schemars(range(min = 32, max = 4096))]
    pub pids: u32,
}

impl Default for DatabaseLimits {
    fn default() -> Self {
        Self {
            cpu_millis: 250,
            memory_bytes: 256 << 20,
            pids: 128,
        }
    }
}

fn default_quota() -> u64 {
    1 << 30
}

/// A database as a member asks for it. Its credentials are the panel's to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DatabaseInput {
    /// Its name, also the database's and its user's: a lowercase letter, then up to 31
    /// lowercase letters, digits and underscores (`wordpress`, `app_data`).
    pub name: String,
    pub engine: DatabaseEngine,
    /// A version the co-op offers for this engine (`10.11`, `15`).
    pub version: String,
    #[serde(default)]
    pub limits: DatabaseLimits,
    /// The most its volume may hold (it counts in the site's quota alert); 16 MiB to 16 TiB.
    #[serde(default = "default_quota")]
    #[schemars(range(min = 16_777_216, max = 17_592_186_044_416_u64))]
    pub quota_bytes: u64,
}

/// The passwords of one database: its user's (given to the site) and its administrator's (for
/// the node's own work: dumps, imports, rotations). Made by the panel, sealed at rest, shown to
/// nobody; they serialise as `null`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseCredentials {
    pub password: Secret,
    pub admin_password: Secret,
}

/// A site's database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Database {
    pub name: String,
    pub engine: DatabaseEngine,
    pub version: String,
    pub limits: DatabaseLimits,
    pub quota_bytes: u64,
    /// `None` only between validation and the panel making them (a new database).
    #[serde(skip)]
    pub credentials: Option<DatabaseCredentials>,
}

impl Database {
    pub fn to_input(&self) -> DatabaseInput {
        DatabaseInput {
            name: self.name.clone(),
            engine: self.engine,
            version: self.version.clone(),
            limits: self.limits,
            quota_bytes: self.quota_bytes,
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 32
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a site's databases; an edit keeps the credentials of the databases it keeps (by
/// name, same engine), and a database whose engine changes is refused (its data would not
/// follow).
pub fn validate_databases(
    errors: &mut ValidationErrors,
    input: Vec<DatabaseInput>,
    previous: &[Database],
) -> Vec<Database> {
    if input.len() > MAX_DATABASES {
        errors.push(FieldError::new(
            "databases",
            "databases.too_many",
            format!("at most {MAX_DATABASES} databases per site"),
        ));
    }
    let mut names = BTreeSet::new();
    let mut databases = Vec::new();
    for (i, db) in input.into_iter().enumerate() {
        let field = |part: &str| format!("databases[{i}].{part}");
        let before = previous.iter().find(|p| p.name == db.name);
        let mut ok = true;
        if !valid_name(&db.name) {
            errors.push(FieldError::new(
                field("name"),
                "database.name_invalid",
                "a lowercase letter, then up to 31 lowercase letters, digits and underscores",
            ));
            ok = false;
        } else if !names.insert(db.name.clone()) {
            errors.push(FieldError::new(
                field("name"),
                "database.duplicate",
                format!("{} is listed twice", db.name),
            ));
            ok = false;
        }
        if let Some(before) = before.filter(|b| b.engine != db.engine) {
            errors.push(FieldError::new(
                field("engine"),
                "database.engine_immutable",
                format!(
                    "{} is a {} database: remove it and add a new one to change engine",
                    db.name,
                    before.engine.as_str()
                ),
            ));
            ok = false;
        }
        let version_ok = !db.version.is_empty()
            && db.version.len() <= 16
            && db.version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !version_ok {
            errors.push(FieldError::new(
                field("version"),
                "database.version_invalid",
                "a version such as 10.11 or 15",
            ));
            ok = false;
        }
        let limits = &db.limits;
        let mut range = |part: &str, good: bool, message: &str| {
            if !good {
                errors.push(FieldError::new(field(part), "range", message));
                ok = false;
            }
        };
        range(
            "limits.cpu_millis",
            (10..=64_000).contains(&limits.cpu_millis),
            "between 10 and 64,000 millicores",
        );
        range(
            "limits.memory_bytes",
            ((64 << 20)..=(256 << 30)).contains(&limits.memory_bytes),
            "between 64 MiB and 256 GiB",
        );
        range(
            "limits.pids",
            (32..=4096).contains(&limits.pids),
            "between 32 and 4,096 processes",
        );
        range(
            "quota_bytes",
            ((16 << 20)..=(16 << 40)).contains(&db.quota_bytes),
            "between 16 MiB and 16 TiB",
        );
        if ok {
            databases.push(Database {
                credentials: before.and_then(|b| b.credentials.clone()),
                name: db.name,
                engine: db.engine,
                version: db.version,
                limits: db.limits,
                quota_bytes: db.quota_bytes,
            });
        }
    }
    databases
}

/// One engine version the co-op offers, and the image that runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseOffer {
    pub engine: DatabaseEngine,
    pub version: String,
    pub image: ImageRef,
}

impl DatabaseOffer {
    /// Reads `ENGINE:VERSION=IMAGE` (`mariadb:10.11=mariadb:10.11`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (offer, image) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected ENGINE:VERSION=IMAGE"))?;
        let (engine, version) = offer
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected ENGINE:VERSION=IMAGE"))?;
        let engine = DatabaseEngine::parse(engine)
            .ok_or_else(|| format!("{engine:?}: the engine is mariadb or postgresql"))?;
        let image = ImageRef::parse(image).map_err(|e| format!("{image:?}: {}", e.message))?;
        Ok(DatabaseOffer {
            engine,
            version: version.to_owned(),
            image,
        })
    }

    /// The official images: what a co-op runs unless it says otherwise.
    pub fn official() -> Vec<DatabaseOffer> {
        ["mariadb:10.11=mariadb:10.11", "postgresql:15=postgres:15"]
            .into_iter()
            .filter_map(|text| Self::parse(text).ok())
            .collect()
    }
}

/// One database as its node runs it, with its passwords (for the node only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseSpec {
    pub name: String,
    pub engine: DatabaseEngine,
    pub image: ImageRef,
    pub limits: DatabaseLimits,
    pub quota_bytes: u64,
    pub password: WireSecret,
    pub admin_password: WireSecret,
}

impl DatabaseSpec {
    /// The server's environment, in the official images' terms: the database and user named
    /// after the database, its passwords. Read by the image at its first start only.
    pub fn server_env(&self) -> Vec<(String, String)> {
        let pairs: [(&str, &str); 4] = match self.engine {
            DatabaseEngine::Mariadb => [
                ("MARIADB_DATABASE", &self.name),
                ("MARIADB_USER", &self.name),
                ("MARIADB_PASSWORD", &self.password.0),
                ("MARIADB_ROOT_PASSWORD", &self.admin_password.0),
            ],
            DatabaseEngine::Postgresql => [
                ("POSTGRES_DB", &self.name),
                ("POSTGRES_USER", &self.name),
                ("POSTGRES_PASSWORD", &self.password.0),
                ("PGDATA", self.engine.data_path()),
            ],
        };
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// A digest of what shapes the server's container (not its passwords, which the image
    /// reads at its first start only: a new one is set in the running server).
    pub fn container_digest(&self) -> String {
        crate::desired::short_digest(&serde_json::json!({
            "name": self.name,
            "engine": self.engine,
            "image": self.image,
            "limits": self.limits,
            "args": self.server_args(),
        }))
    }

    /// The server's arguments: listen on the namespace's loopback only.
    pub fn server_args(&self) -> Vec<String> {
        match self.engine {
            DatabaseEngine::Mariadb => vec!["--bind-address=127.0.0.1".into()],
            DatabaseEngine::Postgresql => vec!["-c".into(), "listen_addresses=127.0.0.1".into()],
        }
    }

    /// The variables the site's container gets for this database (documented in the README):
    /// `ALVEOLE_DB_<NAME>_HOST`, `_PORT`, `_NAME`, `_USER`, `_PASSWORD` and `_URL`.
    pub fn site_env(&self) -> Vec<(String, String)> {
        let prefix = format!("ALVEOLE_DB_{}_", self.name.to_ascii_uppercase());
        let port = self.engine.port();
        let url = format!(
            "{}://{}:{}@127.0.0.1:{port}/{}",
            self.engine.url_scheme(),
            self.name,
            self.password.0,
            self.name
        );
        [
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("NAME", self.name.clone()),
            ("USER", self.name.clone()),
            ("PASSWORD", self.password.0.clone()),
            ("URL", url),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }
}

/// The variables a site with these databases gets: each one's, and `DATABASE_URL` for the
/// first (the name most frameworks read).
pub fn site_env(databases: &[DatabaseSpec]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = databases.iter().flat_map(|d| d.site_env()).collect();
    if let Some(first) = databases.first() {
        let url = first
            .site_env()
            .pop()
            .map(|(_, url)| url)
            .unwrap_or_default();
        env.push(("DATABASE_URL".into(), url));
    }
    env
}

/// Where the panel asks a node's agent for a database's dump (`GET`) or to import one (`PUT`),
/// over mutual TLS.
pub fn dump_path(site: crate::ids::SiteId, database: &str) -> String {
    format!("/panel/sites/{site}/databases/{database}/dump")
}

/// Whether a member's variable would be hidden by one alveole sets for the site's databases.
pub fn is_reserved_env(name: &str) -> bool {
    name == "DATABASE_URL" || name.starts_with("ALVEOLE_DB_")
}

/// Refuses, on its field, each of a site's variables named like one alveole sets for its
/// databases (when it has some).
pub fn refuse_reserved_env(
    errors: &mut ValidationErrors,
    env: &[crate::env::EnvVar],
    databases: &[Database],
) {
    if databases.is_empty() {
        return;
    }
    for (i, var) in env.iter().enumerate() {
        if is_reserved_env(var.name.as_str()) {
            errors.push(FieldError::new(
                format!("env[{i}].name"),
                "env.reserved",
                format!(
                    "{} is set by alveole for the site's databases",
                    var.name.as_str()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str) -> DatabaseInput {
        DatabaseInput {
            name: name.into(),
            engine: DatabaseEngine::Mariadb,
            version: "10.11".into(),
            limits: DatabaseLimits::default(),
            quota_bytes: 1 << 30,
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = input("Bad-Name");
        bad.version = "latest".into();
        bad.limits.memory_bytes = 1;
        bad.quota_bytes = 0;
        let mut errors = ValidationErrors::default();
        let kept = validate_databases(&mut errors, vec![input("app"), input("app"), bad], &[]);
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "databases[1].name",
                "databases[2].name",
                "databases[2].version",
                "databases[2].limits.memory_bytes",
                "databases[2].quota_bytes"
            ]
        );
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn an_edit_keeps_credentials_and_refuses_an_engine_change() {
        let mut errors = ValidationErrors::default();
        let mut before = validate_databases(&mut errors, vec![input("app")], &[]);
        before[0].credentials = Some(DatabaseCredentials {
            password: Secret::new("p".into()),
            admin_password: Secret::new("a".into()),
        });
        let kept = validate_databases(&mut errors, vec![input("app")], &before);
        assert_eq!(kept[0].credentials, before[0].credentials);
        assert!(errors.0.is_empty());
        let mut changed = input("app");
        changed.engine = DatabaseEngine::Postgresql;
        validate_databases(&mut errors, vec![changed], &before);
        assert_eq!(errors.0[0].code, "database.engine_immutable");
        let json = serde_json::to_string(&before[0]).unwrap();
        assert!(
            !json.contains("\"p\"") && !json.contains("credentials"),
            "{json}"
        );
    }

    #[test]
    fn the_site_learns_where_each_database_is() {
        let spec = DatabaseSpec {
            name: "shop".into(),
            engine: DatabaseEngine::Postgresql,
            image: ImageRef::parse("postgres:15").unwrap(),
            limits: DatabaseLimits::default(),
            quota_bytes: 1 << 30,
            password: WireSecret("s3cret".into()),
            admin_password: WireSecret("admin".into()),
        };
        let env = site_env(std::slice::from_ref(&spec));
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("ALVEOLE_DB_SHOP_PORT"), Some("5432"));
        assert_eq!(
            get("DATABASE_URL"),
            Some("postgres://shop:s3cret@127.0.0.1:5432/shop")
        );
        assert!(is_reserved_env("ALVEOLE_DB_SHOP_URL") && !is_reserved_env("DB"));
        assert_eq!(spec.server_args(), ["-c", "listen_addresses=127.0.0.1"]);
    }

    #[test]
    fn offers_read_engine_version_and_image() {
        let offer = DatabaseOffer::parse("mariadb:10.11=alveole-test/mariadb:10.11").unwrap();
        assert_eq!(offer.engine, DatabaseEngine::Mariadb);
        assert_eq!(offer.version, "10.11");
        assert!(DatabaseOffer::parse("mysql:8=mysql:8").is_err());
        assert!(DatabaseOffer::parse("mariadb=x").is_err());
        assert_eq!(DatabaseOffer::official().len(), 2);
    }
}
