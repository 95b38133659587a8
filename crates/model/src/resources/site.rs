//! Sites: a member's web site, its image, limits, volume, names and where it runs.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Meta;
use crate::admission::AdmissionPolicy;
use crate::backup::BackupPolicy;
use crate::database::{Database, DatabaseInput, validate_databases};
use crate::env::{EnvName, EnvVar, EnvVarInput};
use crate::error::{FieldError, ValidationErrors};
use crate::exposure::{ExposedPort, LimitTier, validate_exposed_ports};
use crate::hostname::{Hostname, Wildcard};
use crate::https::HttpsPolicy;
use crate::ids::{MemberId, NodeId, SiteId};
use crate::image::ImageRef;
use crate::phase::SitePhase;

/// What a site may use at most; also what it reserves on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Refused by the API (`strict`), not by serde: agents read these in documents too.
#[schemars(deny_unknown_fields)]
pub struct Limits {
    #[schemars(range(min = 10, max = 256_000))]
    pub cpu_millis: u32,
    /// 16 MiB to 1 TiB.
    #[schemars(range(min = 16_777_216, max = 1_099_511_627_776_u64))]
    pub memory_bytes: u64,
    /// Most processes the container may run (stops fork bombs).
    #[schemars(range(min = 16, max = 65_536))]
    pub pids: u32,
    /// The largest request body the node's ingress passes to the site (413 beyond): uploads
    /// are legitimate, so each site says how large.
    #[serde(default = "default_request_body_bytes")]
    #[schemars(range(min = 1024, max = 17_179_869_184_u64))]
    pub request_body_bytes: u64,
}

/// 64 MiB: the uploads of a typical site (a WordPress media library, a Nextcloud chunk).
pub const DEFAULT_REQUEST_BODY_BYTES: u64 = 64 << 20;
/// At most 16 GiB through the ingress in one request.
pub const MAX_REQUEST_BODY_BYTES: u64 = 16 << 30;

fn default_request_body_bytes() -> u64 {
    DEFAULT_REQUEST_BODY_BYTES
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_millis: 500,
            memory_bytes: 256 << 20,
            pids: 256,
            request_body_bytes: DEFAULT_REQUEST_BODY_BYTES,
        }
    }
}

/// Hardening a site's image may allow beyond the defaults (all capabilities dropped,
/// no-new-privileges, limits), which every site gets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Refused by the API (`strict`), not by serde: agents read these in documents too.
#[schemars(deny_unknown_fields)]
pub struct Security {
    /// Mount the image's file system read-only (the volume and /tmp stay writable).
    #[serde(default)]
    pub read_only_root: bool,
    /// Run as this user instead of the image's (`1000`, `1000:1000`, `www-data`).
    #[serde(default)]
    pub user: Option<String>,
}

fn validate_security(errors: &mut ValidationErrors, security: &Security) {
    let Some(user) = &security.user else { return };
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 32
            && (part.bytes().all(|b| b.is_ascii_digit())
                || (part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })))
    };
    let ok = match user.split_once(':') {
        Some((name, group)) => part_ok(name) && part_ok(group),
        None => part_ok(user),
    };
    if !ok {
        errors.push(FieldError::new(
            "security.user",
            "user.invalid",
            "a user name or number, optionally with a group: www-data, 1000 or 1000:1000",
        ));
    }
}

/// The site's persistent volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Refused by the API (`strict`), not by serde: agents read these in documents too.
#[schemars(deny_unknown_fields)]
pub struct Volume {
    /// At most 16 TiB.
    #[schemars(range(max = 17_592_186_044_416_u64))]
    pub quota_bytes: u64,
    /// Absolute path inside the container.
    pub mount_path: String,
}

impl Default for Volume {
    fn default() -> Self {
        Self {
            quota_bytes: 1 << 30,
            mount_path: "/data".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteInput {
    pub owner_id: MemberId,
    pub primary_domain: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// OCI image reference, e.g. `registry.example.org/coop/wordpress:6.6`.
    pub image: String,
    /// Replaces the image's command when not empty.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVarInput>,
    /// The port the container serves HTTP on (the node's ingress sends requests there).
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1))]
    pub http_port: u16,
    #[serde(default)]
    pub volume: Volume,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub security: Security,
    /// Extra ports of the site's dedicated address forwarded to its container (TCP or UDP).
    /// They are routed once the site has a dedicated address.
    #[serde(default)]
    pub exposed_ports: Vec<ExposedPort>,
    /// Bounds new and open connections to the site's dedicated address.
    #[serde(default)]
    pub limit_tier: LimitTier,
    /// Where the site runs; chosen by the panel (the node with the most room) when absent.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    /// `running` or `stopped`; new sites start `pending` until their node runs them.
    #[serde(default)]
    pub phase: Option<SitePhase>,
    /// Where the site's backups go and how often (none by default).
    #[serde(default)]
    pub backup: BackupPolicy,
    /// Certificates from the co-op's CA, the redirect to HTTPS, HSTS.
    #[serde(default)]
    pub https: HttpsPolicy,
    /// Overload protection: admission limits, the waiting room, priority classes.
    #[serde(default)]
    pub admission: AdmissionPolicy,
    /// Its databases, each a server of its own beside the site (MariaDB or PostgreSQL).
    #[serde(default)]
    pub databases: Vec<DatabaseInput>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewSite {
    pub owner_id: MemberId,
    pub primary_domain: Hostname,
    pub aliases: Vec<Hostname>,
    pub image: ImageRef,
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
    pub http_port: u16,
    pub volume: Volume,
    pub limits: Limits,
    pub security: Security,
    pub exposed_ports: Vec<ExposedPort>,
    pub limit_tier: LimitTier,
    pub node_id: Option<NodeId>,
    pub phase: SitePhase,
    pub backup: BackupPolicy,
    pub https: HttpsPolicy,
    pub admission: AdmissionPolicy,
    pub databases: Vec<Database>,
}

impl NewSite {
    /// Whether `other` says the same, whatever the order of its variables and aliases (which
    /// a form may change without meaning anything by it).
    pub fn same_as(&self, other: &NewSite) -> bool {
        fn sorted<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
            let mut items = items.to_vec();
            items.sort_by_key(key);
            items
        }
        let env = |site: &NewSite| sorted(&site.env, |var| var.name.clone());
        let aliases = |site: &NewSite| sorted(&site.aliases, Clone::clone);
        let unordered = |site: &NewSite| NewSite {
            env: vec![],
            aliases: vec![],
            ..site.clone()
        };
        env(self) == env(other)
            && aliases(self) == aliases(other)
            && unordered(self) == unordered(other)
    }

    /// Every host name of the site, primary first.
    pub fn hostnames(&self) -> impl Iterator<Item = &Hostname> {
        std::iter::once(&self.primary_domain).chain(&self.aliases)
    }

    pub fn reservation(&self) -> Reservation {
        Reservation::of(&self.limits, &self.volume).with_databases(&self.databases)
    }
}

const MAX_ALIASES: usize = 100;

impl SiteInput {
    /// Validates a new site, or a changed one when `previous` is given: a secret variable sent
    /// without a value then keeps its previous value.
    pub fn validate(self, previous: Option<&Site>) -> Result<NewSite, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let primary = errors.check(
            "primary_domain",
            Hostname::parse(&self.primary_domain, Wildcard::Refused),
        );
        let mut names: BTreeSet<Hostname> = primary.iter().cloned().collect();
        let mut aliases = Vec::new();
        if self.aliases.len() > MAX_ALIASES {
            errors.push(FieldError::new(
                "aliases",
                "aliases.too_many",
                format!("at most {MAX_ALIASES} aliases"),
            ));
        }
        for (i, raw) in self.aliases.iter().enumerate() {
            let field = format!("aliases[{i}]");
            if let Some(alias) = errors.check(&field, Hostname::parse(raw, Wildcard::Allowed)) {
                if names.insert(alias.clone()) {
                    aliases.push(alias);
                } else {
                    errors.push(FieldError::new(
                        field,
                        "aliases.duplicate",
                        format!("{alias} is listed twice"),
                    ));
                }
            }
        }
        let image = errors.check("image", ImageRef::parse(self.image.trim()));
        if self.command.len() > 64 {
            errors.push(FieldError::new(
                "command",
                "command.too_long",
                "at most 64 arguments",
            ));
        }
        for (i, arg) in self.command.iter().enumerate() {
            if arg.contains('\0') || arg.len() > 4096 {
                errors.push(FieldError::new(
                    format!("command[{i}]"),
                    "command.invalid",
                    "at most 4 KiB and no NUL",
                ));
            }
        }
        let env = validate_env(&mut errors, self.env, previous);
        let databases = validate_databases(
            &mut errors,
            self.databases,
            previous.map_or(&[], |site| &site.databases),
        );
        crate::database::refuse_reserved_env(&mut errors, &env, &databases);
        if self.http_port == 0 {
            errors.push(FieldError::new(
                "http_port",
                "range",
                "a port between 1 and 65535",
            ));
        }
        validate_volume(&mut errors, &self.volume);
        validate_limits(&mut errors, &self.limits);
        // An empty user (a cleared form field) means the image's own.
        let mut security = self.security;
        security.user = security
            .user
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        validate_security(&mut errors, &security);
        let exposed_ports = validate_exposed_ports(&self.exposed_ports)
            .map_err(|e| errors.0.extend(e.0))
            .unwrap_or_default();
        let current = previous.map(|site| site.phase);
        let phase = match self.phase {
            None => current.unwrap_or(SitePhase::Pending),
            Some(asked) if Some(asked) == current => asked,
            // Running is what the node reports; asking for it means "start it", so pending.
            Some(SitePhase::Running) => SitePhase::Pending,
            Some(SitePhase::Stopped) => SitePhase::Stopped,
            Some(asked) => {
                errors.push(FieldError::new(
                    "phase",
                    "phase.not_requestable",
                    format!(
                        "a site can be asked to be running or stopped, not {}",
                        asked.as_str()
                    ),
                ));
                asked
            }
        };
        crate::backup::validate_policy(&mut errors, &self.backup);
        crate::https::validate_https(&mut errors, &self.https);
        crate::admission::validate_admission(&mut errors, &self.admission);
        if previous.is_some_and(|site| self.node_id != site.node_id) {
            errors.push(FieldError::new(
                "node_id",
                "site.node_immutable",
                "a site changes node by a move, not by an edit",
            ));
        }
        errors.finish(|| {
            Some(NewSite {
                owner_id: self.owner_id,
                primary_domain: primary?,
                aliases,
                image: image?,
                command: self.command,
                env,
                http_port: self.http_port,
                volume: self.volume,
                limits: self.limits,
                security,
                exposed_ports,
                limit_tier: self.limit_tier,
                node_id: self.node_id,
                phase,
                backup: self.backup,
                https: self.https,
                admission: self.admission,
                databases,
            })
        })
    }
}

fn validate_env(
    errors: &mut ValidationErrors,
    input: Vec<EnvVarInput>,
    previous: Option<&Site>,
) -> Vec<EnvVar> {
    let mut seen = BTreeSet::new();
    let mut env = Vec::new();
    if input.len() > 256 {
        errors.push(FieldError::new(
            "env",
            "env.too_many",
            "at most 256 variables",
        ));
    }
    for (i, var) in input.into_iter().enumerate() {
        let Some(name) = errors.check(&format!("env[{i}].name"), EnvName::parse(var.name.trim()))
        else {
            continue;
        };
        if !seen.insert(name.clone()) {
            errors.push(FieldError::new(
                format!("env[{i}].name"),
                "env.duplicate",
                format!("{} is set twice", name.as_str()),
            ));
            continue;
        }
        let kept = || {
            previous?
                .env
                .iter()
                .find(|old| old.name == name && old.is_secret())
                .map(|old| old.expose().to_owned())
        };
        let value = match var.value {
            Some(value) => value,
            None if var.secret => match kept() {
                Some(value) => {
                    // As stored (sealed, so longer than a client may send): kept as it is.
                    env.push(EnvVar::kept_secret(name, value));
                    continue;
                }
                None => {
                    errors.push(FieldError::new(
                        format!("env[{i}].value"),
                        "env.value_required",
                        "a new secret needs a value",
                    ));
                    continue;
                }
            },
            None => String::new(),
        };
        if let Some(var) = errors.check(
            &format!("env[{i}].value"),
            EnvVar::new(name, value, var.secret),
        ) {
            env.push(var);
        }
    }
    env
}

fn validate_volume(errors: &mut ValidationErrors, volume: &Volume) {
    if volume.quota_bytes > 16 << 40 {
        errors.push(FieldError::new(
            "volume.quota_bytes",
            "range",
            "at most 16 TiB",
        ));
    }
    let path = &volume.mount_path;
    let safe = path.starts_with('/')
        && path.len() <= 256
        && path.split('/').skip(1).all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !safe {
        errors.push(FieldError::new(
            "volume.mount_path",
            "path.invalid",
            "an absolute path of letters, digits, '.', '_' and '-', such as /data",
        ));
    } else if let Some(system) = SYSTEM_PATHS
        .iter()
        .find(|system| path == *system || path.starts_with(&format!("{system}/")))
    {
        errors.push(FieldError::new(
            "volume.mount_path",
            "path.system",
            format!("{system} belongs to the container's system: mount the volume elsewhere, such as /data"),
        ));
    }
}

/// Where the kernel's and the runtime's own file systems are mounted in a container: a
/// volume there would hide them.
const SYSTEM_PATHS: [&str; 3] = ["/proc", "/sys", "/dev"];

fn validate_limits(errors: &mut ValidationErrors, limits: &Limits) {
    if !(10..=256_000).contains(&limits.cpu_millis) {
        errors.push(FieldError::new(
            "limits.cpu_millis",
            "range",
            "between 10 and 256,000 millicores",
        ));
    }
    if !((16 << 20)..=(1 << 40)).contains(&limits.memory_bytes) {
        errors.push(FieldError::new(
            "limits.memory_bytes",
            "range",
            "between 16 MiB and 1 TiB",
        ));
    }
    if !(16..=65_536).contains(&limits.pids) {
        errors.push(FieldError::new(
            "limits.pids",
            "range",
            "between 16 and 65,536 processes",
        ));
    }
    if !(1024..=MAX_REQUEST_BODY_BYTES).contains(&limits.request_body_bytes) {
        errors.push(FieldError::new(
            "limits.request_body_bytes",
            "range",
            "between 1 KiB and 16 GiB",
        ));
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Site {
    pub id: SiteId,
    pub owner_id: MemberId,
    pub primary_domain: Hostname,
    pub aliases: Vec<Hostname>,
    pub image: ImageRef,
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
    pub http_port: u16,
    pub volume: Volume,
    pub limits: Limits,
    pub security: Security,
    #[serde(default)]
    pub exposed_ports: Vec<ExposedPort>,
    #[serde(default)]
    pub limit_tier: LimitTier,
    pub node_id: Option<NodeId>,
    pub phase: SitePhase,
    #[serde(default)]
    pub backup: BackupPolicy,
    #[serde(default)]
    pub https: HttpsPolicy,
    #[serde(default)]
    pub admission: AdmissionPolicy,
    #[serde(default)]
    pub databases: Vec<Database>,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Site {
    /// The stored form of a validated site.
    pub fn from_new(id: SiteId, new: NewSite, meta: Meta) -> Self {
        Site {
            id,
            owner_id: new.owner_id,
            primary_domain: new.primary_domain,
            aliases: new.aliases,
            image: new.image,
            command: new.command,
            env: new.env,
            http_port: new.http_port,
            volume: new.volume,
            limits: new.limits,
            security: new.security,
            exposed_ports: new.exposed_ports,
            limit_tier: new.limit_tier,
            node_id: new.node_id,
            phase: new.phase,
            backup: new.backup,
            https: new.https,
            admission: new.admission,
            databases: new.databases,
            meta,
        }
    }

    pub fn reservation(&self) -> Reservation {
        Reservation::of(&self.limits, &self.volume).with_databases(&self.databases)
    }

    /// The site as its node runs it (secret values included: for the node's agent only).
    pub fn to_spec(&self) -> crate::SiteSpec {
        crate::SiteSpec {
            site_id: self.id,
            hostnames: std::iter::once(&self.primary_domain)
                .chain(&self.aliases)
                .cloned()
                .collect(),
            image: self.image.clone(),
            command: self.command.clone(),
            env: self
                .env
                .iter()
                .map(|v| crate::WireEnv {
                    name: v.name.as_str().to_owned(),
                    value: v.expose().to_owned(),
                })
                .collect(),
            http_port: self.http_port,
            volume: self.volume.clone(),
            limits: self.limits,
            security: self.security.clone(),
            run: self.phase != SitePhase::Stopped,
            // The panel fills them in from the address allocations.
            dedicated_addresses: vec![],
            exposed_ports: self.exposed_ports.clone(),
            limit_tier: self.limit_tier,
            // The panel fills it in with the repository's key and the targets' endpoints.
            backup: None,
            tls: None,
            // The panel fills it in with the site's key.
            admission: None,
            // The panel fills them in with their images and opened passwords.
            databases: vec![],
            databases_stay_up: false,
        }
    }

    pub fn to_input(&self) -> SiteInput {
        SiteInput {
            owner_id: self.owner_id,
            primary_domain: self.primary_domain.to_string(),
            aliases: self.aliases.iter().map(ToString::to_string).collect(),
            image: self.image.to_string(),
            command: self.command.clone(),
            env: self
                .env
                .iter()
                .map(|v| EnvVarInput {
                    name: v.name.as_str().to_owned(),
                    value: (!v.is_secret()).then(|| v.expose().to_owned()),
                    secret: v.is_secret(),
                })
                .collect(),
            http_port: self.http_port,
            volume: self.volume.clone(),
            limits: self.limits,
            security: self.security.clone(),
            exposed_ports: self.exposed_ports.clone(),
            limit_tier: self.limit_tier,
            node_id: self.node_id,
            phase: Some(self.phase),
            backup: self.backup.clone(),
            https: self.https.clone(),
            admission: self.admission.clone(),
            databases: self.databases.iter().map(Database::to_input).collect(),
        }
    }
}

/// What a site holds on its node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Reservation {
    /// What a site with these limits and this volume holds on its node.
    pub fn of(limits: &Limits, volume: &Volume) -> Reservation {
        Reservation {
            cpu_millis: u64::from(limits.cpu_millis),
            memory_bytes: limits.memory_bytes,
            disk_bytes: volume.quota_bytes,
        }
    }

    /// With what the site's databases hold besides (each its container and volume).
    pub fn with_databases(self, databases: &[Database]) -> Reservation {
        databases.iter().fold(self, |total, db| Reservation {
            cpu_millis: total.cpu_millis + u64::from(db.limits.cpu_millis),
            memory_bytes: total.memory_bytes + db.limits.memory_bytes,
            disk_bytes: total.disk_bytes + db.quota_bytes,
        })
    }
}

impl std::ops::Add for Reservation {
    type Output = Reservation;
    fn add(self, o: Reservation) -> Reservation {
        Reservation {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
            disk_bytes: self.disk_bytes + o.disk_bytes,
        }
    }
}

fn default_http_port() -> u16 {
    8080
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::merge_patch;
    use chrono::Utc;
    use serde_json::json;

    fn site_input() -> SiteInput {
        SiteInput {
            owner_id: MemberId::generate(),
            primary_domain: "Exemple.ORG.".into(),
            aliases: vec!["www.exemple.org".into(), "*.exemple.net".into()],
            image: "registry.example.org/coop/site:1".into(),
            command: vec![],
            http_port: 8080,
            env: vec![
                EnvVarInput {
                    name: "MODE".into(),
                    value: Some("prod".into()),
                    secret: false,
                },
                EnvVarInput {
                    name: "DB_PASSWORD".into(),
                    value: Some("hunter2".into()),
                    secret: true,
                },
            ],
            volume: Volume::default(),
            limits: Limits::default(),
            security: Security::default(),
            exposed_ports: vec![],
            limit_tier: LimitTier::Standard,
            node_id: None,
            phase: None,
            backup: BackupPolicy::default(),
            https: HttpsPolicy::default(),
            admission: AdmissionPolicy::default(),
            databases: vec![],
        }
    }

    #[test]
    fn a_valid_site_is_normalised() {
        let site = site_input().validate(None).unwrap();
        assert_eq!(site.primary_domain.as_str(), "exemple.org");
        assert_eq!(site.phase, SitePhase::Pending);
        assert_eq!(site.hostnames().count(), 3);
    }

    #[test]
    fn every_field_error_is_reported_at_once() {
        let mut input = site_input();
        input.primary_domain = "bad;name".into();
        input.aliases = vec!["exemple.org".into(), "exemple.org".into()];
        input.image = "Not An Image".into();
        input.limits.pids = 1;
        input.volume.mount_path = "../etc".into();
        input.phase = Some(SitePhase::Failed);
        let fields: Vec<String> = input
            .validate(None)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "primary_domain",
                "aliases[1]",
                "image",
                "volume.mount_path",
                "limits.pids",
                "phase"
            ]
        );
    }

    #[test]
    fn an_edit_keeps_unsent_secrets_and_refuses_a_node_change() {
        let new = site_input().validate(None).unwrap();
        let meta = Meta {
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let mut site = Site::from_new(SiteId::generate(), new, meta);
        site.phase = SitePhase::Running;
        let mut value = serde_json::to_value(site.to_input()).unwrap();
        merge_patch(
            &mut value,
            &json!({"image": "registry.example.org/coop/site:2"}),
        );
        let input: SiteInput = serde_json::from_value(value.clone()).unwrap();
        let edited = input.validate(Some(&site)).unwrap();
        assert_eq!(edited.env[1].expose(), "hunter2");
        assert_eq!(edited.image.as_str(), "registry.example.org/coop/site:2");
        assert_eq!(edited.phase, SitePhase::Running);

        merge_patch(&mut value, &json!({"node_id": NodeId::generate()}));
        let input: SiteInput = serde_json::from_value(value).unwrap();
        let errors = input.validate(Some(&site)).unwrap_err();
        assert_eq!(errors.0[0].code, "site.node_immutable");
    }

    #[test]
    fn the_user_to_run_as_is_a_name_or_number_with_an_optional_group() {
        for ok in ["1000", "1000:1000", "www-data", "_app:www-data"] {
            let mut input = site_input();
            input.security.user = Some(ok.into());
            assert!(input.validate(None).is_ok(), "{ok}");
        }
        let mut input = site_input();
        input.security.user = Some(" ".into());
        assert_eq!(
            input.validate(None).unwrap().security.user,
            None,
            "empty means the image's user"
        );
        for bad in [
            "root;rm",
            "Root",
            "1000:",
            ":1000",
            "a b",
            "$(id)",
            &"a".repeat(33),
        ] {
            let mut input = site_input();
            input.security.user = Some(bad.into());
            let errors = input.validate(None).unwrap_err();
            assert_eq!(errors.0[0].field, "security.user", "{bad:?}");
        }
    }
}
