//! The four resources of the control plane. Each has an `Input` (what a client sends: raw
//! values, so every problem can be reported against its field), a `validate` that turns it
//! into a typed `New*` value or the full list of errors, and the stored resource.
//!
//! PATCH is a JSON Merge Patch (RFC 7396) applied to the stored resource's input form and
//! validated like a create: one validator per resource, whatever the verb.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::env::{EnvName, EnvVar, EnvVarInput};
use crate::error::{FieldError, ValidationErrors};
use crate::exposure::{ExposedPort, LimitTier, validate_exposed_ports};
use crate::hostname::{Hostname, Wildcard};
use crate::ids::{MemberId, NodeId, ProviderId, SiteId};
use crate::image::ImageRef;
use crate::phase::SitePhase;
use crate::text::{CountryCode, DisplayName, Email, Notes, Slug};

/// Bookkeeping every stored resource carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Meta {
    /// Incremented by every change; send it back in PATCH to detect concurrent edits.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn optional_text<T>(
    errors: &mut ValidationErrors,
    field: &str,
    value: Option<String>,
    parse: fn(&str) -> Result<T, FieldError>,
) -> Option<Option<T>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Some(None),
        Some(text) => errors.check(field, parse(text)).map(Some),
    }
}

// ---------------------------------------------------------------------------------------------
// Providers

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub name: String,
    /// Who to call at the provider (free text).
    #[serde(default)]
    pub contact: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub contract_end: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewProvider {
    pub name: DisplayName,
    pub contact: Option<DisplayName>,
    pub contract_end: Option<NaiveDate>,
    pub country: Option<CountryCode>,
    pub notes: Notes,
}

impl ProviderInput {
    pub fn validate(self) -> Result<NewProvider, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", DisplayName::parse(&self.name));
        let contact = optional_text(&mut errors, "contact", self.contact, DisplayName::parse);
        let contract_end =
            optional_text(&mut errors, "contract_end", self.contract_end, parse_date);
        let country = optional_text(&mut errors, "country", self.country, CountryCode::parse);
        let notes = errors.check("notes", Notes::parse(self.notes.as_deref().unwrap_or("")));
        errors.finish(|| {
            Some(NewProvider {
                name: name?,
                contact: contact?,
                contract_end: contract_end?,
                country: country?,
                notes: notes?,
            })
        })
    }
}

fn parse_date(input: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(input, "%Y-%m-%d")
        .map_err(|_| FieldError::new("", "date.invalid", "use a date such as 2027-06-30"))
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Provider {
    pub id: ProviderId,
    pub name: DisplayName,
    pub contact: Option<DisplayName>,
    pub contract_end: Option<NaiveDate>,
    pub country: Option<CountryCode>,
    pub notes: Notes,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Provider {
    pub fn to_input(&self) -> ProviderInput {
        ProviderInput {
            name: self.name.to_string(),
            contact: self.contact.as_ref().map(ToString::to_string),
            contract_end: self.contract_end.map(|d| d.to_string()),
            country: self.country.as_ref().map(ToString::to_string),
            notes: Some(self.notes.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// What a node offers. Reservations of its sites must stay within capacity × overcommit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

/// How far CPU and memory may be promised beyond the hardware (disk never is: quotas are hard).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Overcommit {
    pub cpu: f64,
    pub memory: f64,
}

impl Default for Overcommit {
    fn default() -> Self {
        Self {
            cpu: 4.0,
            memory: 1.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    pub provider_id: ProviderId,
    /// Lowercase letters, digits and hyphens; unique.
    pub name: String,
    #[serde(default)]
    pub public_addresses: Vec<String>,
    pub capacity: Capacity,
    #[serde(default)]
    pub overcommit: Overcommit,
    /// Opt in to the node's input filter: the host's own services (SSH, the agent's ports)
    /// answer only `input_allowed` and the co-op's other nodes; the ingress stays public.
    #[serde(default)]
    pub input_filter: bool,
    /// Networks or addresses admins reach the node from (`198.51.100.0/24`, `2001:db8::7`).
    #[serde(default)]
    pub input_allowed: Vec<String>,
}

/// The most networks an input filter's allow list holds.
pub const MAX_INPUT_ALLOWED: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub struct NewNode {
    pub provider_id: ProviderId,
    pub name: Slug,
    pub public_addresses: Vec<IpAddr>,
    pub capacity: Capacity,
    pub overcommit: Overcommit,
    pub input_filter: bool,
    pub input_allowed: Vec<crate::Prefix>,
}

impl NodeInput {
    pub fn validate(self) -> Result<NewNode, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", Slug::parse(&self.name));
        let mut addresses = BTreeSet::new();
        for (i, raw) in self.public_addresses.iter().enumerate() {
            if let Some(address) =
                errors.check(&format!("public_addresses[{i}]"), parse_address(raw))
            {
                addresses.insert(address);
            }
        }
        let cap = self.capacity;
        if cap.cpu_millis == 0 || cap.cpu_millis > 1_024_000 {
            errors.push(FieldError::new(
                "capacity.cpu_millis",
                "range",
                "between 1 and 1,024,000 millicores",
            ));
        }
        if cap.memory_bytes < 64 << 20 {
            errors.push(FieldError::new(
                "capacity.memory_bytes",
                "range",
                "at least 64 MiB",
            ));
        }
        if cap.disk_bytes < 1 << 30 {
            errors.push(FieldError::new(
                "capacity.disk_bytes",
                "range",
                "at least 1 GiB",
            ));
        }
        for (field, ratio) in [
            ("overcommit.cpu", self.overcommit.cpu),
            ("overcommit.memory", self.overcommit.memory),
        ] {
            if !(1.0..=16.0).contains(&ratio) {
                errors.push(FieldError::new(field, "range", "a ratio between 1 and 16"));
            }
        }
        let mut allowed = BTreeSet::new();
        for (i, raw) in self.input_allowed.iter().enumerate() {
            if let Some(prefix) = errors.check(
                &format!("input_allowed[{i}]"),
                crate::Prefix::parse_or_host(raw),
            ) {
                allowed.insert(prefix);
            }
        }
        if self.input_allowed.len() > MAX_INPUT_ALLOWED {
            errors.push(FieldError::new(
                "input_allowed",
                "input_allowed.too_many",
                format!("at most {MAX_INPUT_ALLOWED} networks"),
            ));
        }
        if self.input_filter && self.input_allowed.is_empty() {
            errors.push(FieldError::new(
                "input_allowed",
                "input_allowed.empty",
                "list the networks admins reach the node from, or the filter shuts them out",
            ));
        }
        errors.finish(|| {
            Some(NewNode {
                provider_id: self.provider_id,
                name: name?,
                public_addresses: addresses.into_iter().collect(),
                capacity: cap,
                overcommit: self.overcommit,
                input_filter: self.input_filter,
                input_allowed: allowed.into_iter().collect(),
            })
        })
    }
}

fn parse_address(raw: &str) -> Result<IpAddr, FieldError> {
    let address: IpAddr = raw.trim().parse().map_err(|_| {
        FieldError::new(
            "",
            "ip.invalid",
            "an IPv4 or IPv6 address such as 203.0.113.7",
        )
    })?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(FieldError::new(
            "",
            "ip.unusable",
            "this address cannot be a node's address",
        ));
    }
    Ok(address)
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Node {
    pub id: NodeId,
    pub provider_id: ProviderId,
    pub name: Slug,
    pub public_addresses: Vec<IpAddr>,
    pub capacity: Capacity,
    pub overcommit: Overcommit,
    #[serde(default)]
    pub input_filter: bool,
    #[serde(default)]
    pub input_allowed: Vec<crate::Prefix>,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Node {
    pub fn to_input(&self) -> NodeInput {
        NodeInput {
            provider_id: self.provider_id,
            name: self.name.to_string(),
            public_addresses: self
                .public_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            capacity: self.capacity,
            overcommit: self.overcommit,
            input_filter: self.input_filter,
            input_allowed: self.input_allowed.iter().map(ToString::to_string).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Members

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages their own sites.
    Member,
    /// Manages everything.
    Admin,
    /// Reads everything and exports the audit log; changes nothing; never sees secrets.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Member, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(input: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == input)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    pub display_name: String,
    pub email: String,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_http_port() -> u16 {
    8080
}

fn default_role() -> Role {
    Role::Member
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewMember {
    pub display_name: DisplayName,
    pub email: Email,
    pub role: Role,
}

impl MemberInput {
    pub fn validate(self) -> Result<NewMember, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let display_name = errors.check("display_name", DisplayName::parse(&self.display_name));
        let email = errors.check("email", Email::parse(&self.email));
        errors.finish(|| {
            Some(NewMember {
                display_name: display_name?,
                email: email?,
                role: self.role,
            })
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Member {
    pub id: MemberId,
    pub display_name: DisplayName,
    pub email: Email,
    pub role: Role,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Member {
    pub fn to_input(&self) -> MemberInput {
        MemberInput {
            display_name: self.display_name.to_string(),
            email: self.email.to_string(),
            role: self.role,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sites

/// What a site may use at most; also what it reserves on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    /// Most processes the container may run (stops fork bombs).
    pub pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_millis: 500,
            memory_bytes: 256 << 20,
            pids: 256,
        }
    }
}

/// Hardening a site's image may allow beyond the defaults (all capabilities dropped,
/// no-new-privileges, limits), which every site gets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
pub struct Volume {
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
}

impl NewSite {
    /// Every host name of the site, primary first.
    pub fn hostnames(&self) -> impl Iterator<Item = &Hostname> {
        std::iter::once(&self.primary_domain).chain(&self.aliases)
    }

    pub fn reservation(&self) -> Reservation {
        Reservation::of(&self.limits, &self.volume)
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
                Some(value) => value,
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
    }
}

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
            meta,
        }
    }

    pub fn reservation(&self) -> Reservation {
        Reservation::of(&self.limits, &self.volume)
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

/// Applies an RFC 7396 JSON Merge Patch to `target`.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(
                        target.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    }
}
