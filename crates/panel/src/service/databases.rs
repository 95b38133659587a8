//! A site's databases: the versions the co-op offers, credentials made and sealed when a
//! database is created (no default password, never shown), opened only for the site's node,
//! and what the node runs (`DatabaseSpec`, the site's connection variables).

use std::collections::BTreeMap;

use alveole_model::{
    Database, DatabaseCredentials, DatabaseOffer, DatabaseSpec, FieldError, NewSite, Secret, Site,
    SiteId, SiteSpec, ValidationErrors, WireEnv, backup::WireSecret,
};
use rand::RngCore;

use super::Service;
use super::secrets::unavailable;
use crate::error::ApiResult;

/// A new password: 32 letters and digits (safe in a URL, a shell and a configuration file).
pub(crate) fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

impl Service {
    /// Every database of `new` is in a version the co-op offers.
    pub(crate) fn check_database_offers(&self, new: &NewSite, errors: &mut ValidationErrors) {
        let offers = &self.config().databases;
        for (i, db) in new.databases.iter().enumerate() {
            if offer_for(offers, db).is_some() {
                continue;
            }
            let offered: Vec<&str> = offers
                .iter()
                .filter(|o| o.engine == db.engine)
                .map(|o| o.version.as_str())
                .collect();
            let message = if offered.is_empty() {
                format!("the co-op offers no {} databases", db.engine.as_str())
            } else {
                format!(
                    "the co-op offers {} {}",
                    db.engine.as_str(),
                    offered.join(", ")
                )
            };
            errors.push(FieldError::new(
                format!("databases[{i}].version"),
                "database.version_not_offered",
                message,
            ));
        }
    }

    /// Makes the passwords of each new database, sealed; seals any sent in clear.
    pub(crate) fn seal_database_credentials(&self, databases: &mut [Database]) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        let seal = |plain: &str| {
            if keyring.is_sealed(plain) {
                Ok(Secret::new(plain.to_owned()))
            } else {
                keyring.seal(plain).map(Secret::new).map_err(unavailable)
            }
        };
        for db in databases {
            let credentials = match &db.credentials {
                Some(c) => DatabaseCredentials {
                    password: seal(c.password.expose())?,
                    admin_password: seal(c.admin_password.expose())?,
                },
                None => DatabaseCredentials {
                    password: seal(&new_password())?,
                    admin_password: seal(&new_password())?,
                },
            };
            db.credentials = Some(credentials);
        }
        Ok(())
    }

    /// Opens each database's passwords, for its node's agent only.
    pub(crate) fn open_databases(&self, site: &mut Site) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        for db in &mut site.databases {
            let Some(credentials) = &mut db.credentials else {
                continue;
            };
            for secret in [&mut credentials.password, &mut credentials.admin_password] {
                if !keyring.is_sealed(secret.expose()) {
                    continue;
                }
                let plain = keyring.open(secret.expose()).map_err(|error| {
                    tracing::error!(site = %site.id, database = %db.name, %error,
                        "a database's password does not open");
                    unavailable(error)
                })?;
                *secret = Secret::new(plain);
            }
        }
        Ok(())
    }
}

fn offer_for<'a>(offers: &'a [DatabaseOffer], db: &Database) -> Option<&'a DatabaseOffer> {
    offers
        .iter()
        .find(|o| o.engine == db.engine && o.version == db.version)
}

/// Each site's databases as its node runs them (passwords opened before), and the variables
/// that tell the site's container where they are. A database whose version the co-op no
/// longer offers is left out (said in the log): its node stops its server and keeps its data.
pub(crate) fn with_databases(
    specs: &mut [SiteSpec],
    served: &BTreeMap<SiteId, &Site>,
    offers: &[DatabaseOffer],
) {
    for spec in specs {
        let Some(site) = served.get(&spec.site_id) else {
            continue;
        };
        spec.databases = site
            .databases
            .iter()
            .filter_map(|db| {
                let Some(offer) = offer_for(offers, db) else {
                    tracing::error!(site = %site.id, database = %db.name, engine = db.engine.as_str(),
                        version = %db.version, "no image for this database: the co-op no longer offers its version");
                    return None;
                };
                let credentials = db.credentials.as_ref()?;
                Some(DatabaseSpec {
                    name: db.name.clone(),
                    engine: db.engine,
                    image: offer.image.clone(),
                    limits: db.limits,
                    quota_bytes: db.quota_bytes,
                    password: WireSecret(credentials.password.expose().to_owned()),
                    admin_password: WireSecret(credentials.admin_password.expose().to_owned()),
                })
            })
            .collect();
        spec.env.extend(
            alveole_model::database::site_env(&spec.databases)
                .into_iter()
                .map(|(name, value)| WireEnv { name, value }),
        );
    }
}

/// A site's database as its owner sees it: where the site reaches it, under which variables,
/// and how much it holds. Never its password.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SiteDatabase {
    pub name: String,
    pub engine: alveole_model::DatabaseEngine,
    pub version: String,
    /// Where the site's container reaches it (its own loopback: nothing else can).
    pub host: String,
    pub port: u16,
    /// The database's name, and its user's.
    pub database: String,
    pub user: String,
    /// The variables of the site's container that hold these settings and the password.
    pub variables: Vec<String>,
    pub quota_bytes: u64,
    /// What its volume held at its node's last measurement.
    pub used_bytes: Option<u64>,
}

impl Service {
    /// The databases of `site`, with their sizes as its node last measured them.
    pub async fn site_databases(
        &self,
        limited_to: Option<alveole_model::MemberId>,
        site: SiteId,
    ) -> ApiResult<Vec<SiteDatabase>> {
        let site = self.get::<Site>(limited_to, site).await?;
        let measured = match site.node_id {
            Some(node) => self
                .store()
                .node_status(node)
                .await?
                .and_then(|status| {
                    status
                        .report
                        .sites
                        .into_iter()
                        .find(|s| s.site_id == site.id)
                })
                .map(|report| report.database_bytes)
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        Ok(site
            .databases
            .iter()
            .map(|db| {
                let prefix = format!("ALVEOLE_DB_{}_", db.name.to_ascii_uppercase());
                SiteDatabase {
                    name: db.name.clone(),
                    engine: db.engine,
                    version: db.version.clone(),
                    host: "127.0.0.1".into(),
                    port: db.engine.port(),
                    database: db.name.clone(),
                    user: db.name.clone(),
                    variables: ["HOST", "PORT", "NAME", "USER", "PASSWORD", "URL"]
                        .iter()
                        .map(|part| format!("{prefix}{part}"))
                        .collect(),
                    quota_bytes: db.quota_bytes,
                    used_bytes: measured.get(&db.name).copied(),
                }
            })
            .collect())
    }

    /// Gives the database `name` of `site` a new password: its node sets it in the server,
    /// then restarts the site's container with it. Audited as `database.password_rotate`
    /// (without the password).
    pub async fn rotate_database_password(
        &self,
        ctx: &alveole_store::AuditContext,
        limited_to: Option<alveole_model::MemberId>,
        site_id: SiteId,
        name: &str,
    ) -> ApiResult<Vec<SiteDatabase>> {
        let site = self.get::<Site>(limited_to, site_id).await?;
        let mut databases = site.databases.clone();
        let Some(db) = databases.iter_mut().find(|db| db.name == name) else {
            return Err(crate::error::ApiError::NotFound("database"));
        };
        let keyring = &self.config().secrets;
        let admin_password = match &db.credentials {
            Some(c) => c.admin_password.clone(),
            None => Secret::new(keyring.seal(&new_password()).map_err(unavailable)?),
        };
        db.credentials = Some(DatabaseCredentials {
            password: Secret::new(keyring.seal(&new_password()).map_err(unavailable)?),
            admin_password,
        });
        self.store()
            .rewrite_site_secrets(
                ctx,
                "database.password_rotate",
                site.id,
                site.meta.version,
                site.env.clone(),
                databases,
            )
            .await?;
        self.tell_nodes();
        self.site_databases(limited_to, site_id).await
    }
}

impl Service {
    /// The site and its database `name`, with the node it runs on, for a request to its agent.
    async fn served_database(
        &self,
        limited_to: Option<alveole_model::MemberId>,
        site_id: SiteId,
        name: &str,
    ) -> ApiResult<(Site, alveole_model::NodeId)> {
        let site = self.get::<Site>(limited_to, site_id).await?;
        if !site.databases.iter().any(|db| db.name == name) {
            return Err(crate::error::ApiError::NotFound("database"));
        }
        let node = site
            .node_id
            .ok_or_else(|| crate::error::ApiError::Conflict {
                message: "the site runs on no node yet".into(),
                errors: vec![],
            })?;
        Ok((site, node))
    }

    /// A consistent dump of the database (plain SQL), streamed from its node's agent as it
    /// comes. Audited as `database.dump`: the member's data left the node.
    pub async fn dump_database(
        &self,
        ctx: &alveole_store::AuditContext,
        limited_to: Option<alveole_model::MemberId>,
        site_id: SiteId,
        name: &str,
    ) -> ApiResult<reqwest::Response> {
        let (site, node) = self.served_database(limited_to, site_id, name).await?;
        let path = alveole_model::database::dump_path(site.id, name);
        let request = self
            .agent_request(node, reqwest::Method::GET, &path)
            .await?;
        let response = super::agent_requests::answered(request).await?;
        self.record_database_action(ctx, "database.dump", &site, name)
            .await?;
        Ok(response)
    }

    /// Replaces the database's content with the dump `body` (plain SQL, at most its quota):
    /// loaded into a scratch database first, so a dump that fails to load changes nothing.
    /// Audited as `database.import`.
    pub async fn import_database(
        &self,
        ctx: &alveole_store::AuditContext,
        limited_to: Option<alveole_model::MemberId>,
        site_id: SiteId,
        name: &str,
        body: reqwest::Body,
    ) -> ApiResult<Vec<SiteDatabase>> {
        let (site, node) = self.served_database(limited_to, site_id, name).await?;
        let path = alveole_model::database::dump_path(site.id, name);
        let request = self
            .agent_request(node, reqwest::Method::PUT, &path)
            .await?
            .body(body);
        super::agent_requests::answered(request).await?;
        self.record_database_action(ctx, "database.import", &site, name)
            .await?;
        self.site_databases(limited_to, site_id).await
    }

    async fn record_database_action(
        &self,
        ctx: &alveole_store::AuditContext,
        action: &'static str,
        site: &Site,
        name: &str,
    ) -> ApiResult<()> {
        let change = alveole_store::Change {
            action,
            target_kind: "site",
            target_id: site.id.to_string(),
            before: None,
            after: Some(serde_json::json!({"database": name})),
        };
        self.store().record_action(ctx, change).await?;
        Ok(())
    }
}
