//! Rows as both databases return them, and their conversion into domain values. Stored text
//! is validated again on the way out: a row edited by hand is reported as corrupt, not trusted.

use alveole_model::{
    Capacity, CountryCode, DisplayName, Email, EnvName, EnvVar, Hostname, ImageRef, Limits, Member,
    MemberId, Meta, Node, NodeId, Notes, Overcommit, Provider, ProviderId, Role, Site, SiteId,
    SitePhase, Slug, Volume, Wildcard,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use crate::StoreError;

fn corrupt(kind: &'static str, id: Uuid, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        kind,
        id: id.to_string(),
        reason: reason.to_string(),
    }
}

fn unsigned<T: TryFrom<i64>>(kind: &'static str, id: Uuid, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| corrupt(kind, id, format!("{value} is out of range")))
}

fn meta(version: i64, created_at: DateTime<Utc>, updated_at: DateTime<Utc>) -> Meta {
    Meta {
        version,
        created_at,
        updated_at,
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProviderRow {
    id: Uuid,
    name: String,
    contact: Option<String>,
    contract_end: Option<NaiveDate>,
    country: Option<String>,
    notes: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ProviderRow> for Provider {
    type Error = StoreError;
    fn try_from(r: ProviderRow) -> Result<Self, StoreError> {
        let bad = |e: alveole_model::FieldError| corrupt("provider", r.id, e);
        Ok(Provider {
            id: ProviderId(r.id),
            name: DisplayName::parse(&r.name).map_err(bad)?,
            contact: r
                .contact
                .as_deref()
                .map(DisplayName::parse)
                .transpose()
                .map_err(bad)?,
            contract_end: r.contract_end,
            country: r
                .country
                .as_deref()
                .map(CountryCode::parse)
                .transpose()
                .map_err(bad)?,
            notes: Notes::parse(&r.notes).map_err(bad)?,
            meta: meta(r.version, r.created_at, r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct NodeRow {
    id: Uuid,
    provider_id: Uuid,
    name: String,
    public_addresses: Json<Vec<String>>,
    cpu_millis: i64,
    memory_bytes: i64,
    disk_bytes: i64,
    overcommit_cpu: f64,
    overcommit_memory: f64,
    input_filter: bool,
    input_allowed: Json<Vec<String>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<NodeRow> for Node {
    type Error = StoreError;
    fn try_from(r: NodeRow) -> Result<Self, StoreError> {
        let addresses = r
            .public_addresses
            .0
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|_| corrupt("node", r.id, format!("bad address {a:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Node {
            id: NodeId(r.id),
            provider_id: ProviderId(r.provider_id),
            name: Slug::parse(&r.name).map_err(|e| corrupt("node", r.id, e))?,
            public_addresses: addresses,
            capacity: Capacity {
                cpu_millis: unsigned("node", r.id, r.cpu_millis)?,
                memory_bytes: unsigned("node", r.id, r.memory_bytes)?,
                disk_bytes: unsigned("node", r.id, r.disk_bytes)?,
            },
            overcommit: Overcommit {
                cpu: r.overcommit_cpu,
                memory: r.overcommit_memory,
            },
            input_filter: r.input_filter,
            input_allowed: r
                .input_allowed
                .0
                .iter()
                .map(|p| {
                    alveole_model::Prefix::parse(p)
                        .map_err(|_| corrupt("node", r.id, format!("bad network {p:?}")))
                })
                .collect::<Result<_, _>>()?,
            meta: meta(r.version, r.created_at, r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    id: Uuid,
    display_name: String,
    email: String,
    role: String,
    disabled_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Self, StoreError> {
        let bad = |e: alveole_model::FieldError| corrupt("member", r.id, e);
        Ok(Member {
            id: MemberId(r.id),
            display_name: DisplayName::parse(&r.display_name).map_err(bad)?,
            email: Email::parse(&r.email).map_err(bad)?,
            role: Role::parse(&r.role).ok_or_else(|| corrupt("member", r.id, "unknown role"))?,
            disabled_at: r.disabled_at,
            meta: meta(r.version, r.created_at, r.updated_at),
        })
    }
}

/// How an environment variable is persisted: the one place a secret's value is written out.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEnvVar {
    name: String,
    value: String,
    secret: bool,
}

impl StoredEnvVar {
    pub(crate) fn from_var(var: &EnvVar) -> Self {
        Self {
            name: var.name.as_str().to_owned(),
            value: var.expose().to_owned(),
            secret: var.is_secret(),
        }
    }
}

/// How a site's database is persisted: its passwords as the panel sealed them.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredDatabase {
    name: String,
    engine: alveole_model::DatabaseEngine,
    version: String,
    limits: alveole_model::DatabaseLimits,
    quota_bytes: u64,
    password: String,
    admin_password: String,
}

impl StoredDatabase {
    pub(crate) fn from_database(db: &alveole_model::Database) -> Self {
        let (password, admin_password) =
            db.credentials.as_ref().map_or_else(Default::default, |c| {
                (
                    c.password.expose().to_owned(),
                    c.admin_password.expose().to_owned(),
                )
            });
        Self {
            name: db.name.clone(),
            engine: db.engine,
            version: db.version.clone(),
            limits: db.limits,
            quota_bytes: db.quota_bytes,
            password,
            admin_password,
        }
    }

    fn into_database(self) -> alveole_model::Database {
        use alveole_model::Secret;
        let credentials = (!self.password.is_empty()).then(|| alveole_model::DatabaseCredentials {
            password: Secret::new(self.password),
            admin_password: Secret::new(self.admin_password),
        });
        alveole_model::Database {
            name: self.name,
            engine: self.engine,
            version: self.version,
            limits: self.limits,
            quota_bytes: self.quota_bytes,
            credentials,
        }
    }
}

/// Every column of `sites`, in the order its writes bind them.
pub(crate) const SITE_COLUMNS: &str = "id, owner_id, primary_domain, aliases, image, command, \
     env, http_port, volume_quota, volume_mount_path, cpu_millis, memory_bytes, pids, \
     request_body_bytes, read_only_root, run_as_user, exposed_ports, limit_tier, node_id, \
     phase, backup_policy, https_policy, admission_policy, databases, version, created_at, \
     updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct SiteRow {
    id: Uuid,
    owner_id: Uuid,
    primary_domain: String,
    aliases: Json<Vec<String>>,
    image: String,
    command: Json<Vec<String>>,
    env: Json<Vec<StoredEnvVar>>,
    http_port: i64,
    volume_quota: i64,
    volume_mount_path: String,
    cpu_millis: i64,
    memory_bytes: i64,
    pids: i64,
    request_body_bytes: i64,
    read_only_root: bool,
    run_as_user: Option<String>,
    exposed_ports: Json<Vec<alveole_model::ExposedPort>>,
    limit_tier: String,
    node_id: Option<Uuid>,
    phase: String,
    backup_policy: Json<alveole_model::BackupPolicy>,
    https_policy: Json<alveole_model::HttpsPolicy>,
    admission_policy: Json<alveole_model::AdmissionPolicy>,
    databases: Json<Vec<StoredDatabase>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SiteRow> for Site {
    type Error = StoreError;
    fn try_from(r: SiteRow) -> Result<Self, StoreError> {
        let id = r.id;
        let bad = |e: alveole_model::FieldError| corrupt("site", id, e);
        let env = r
            .env
            .0
            .into_iter()
            .map(|v| {
                let name = EnvName::parse(&v.name)?;
                if v.secret {
                    // Sealed by the panel: longer than the value it holds.
                    Ok(EnvVar::kept_secret(name, v.value))
                } else {
                    EnvVar::new(name, v.value, false)
                }
            })
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        Ok(Site {
            id: SiteId(id),
            owner_id: MemberId(r.owner_id),
            primary_domain: Hostname::parse(&r.primary_domain, Wildcard::Refused).map_err(bad)?,
            aliases: r
                .aliases
                .0
                .iter()
                .map(|a| Hostname::parse(a, Wildcard::Allowed))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
            image: ImageRef::parse(&r.image).map_err(bad)?,
            command: r.command.0,
            env,
            http_port: unsigned("site", id, r.http_port)?,
            volume: Volume {
                quota_bytes: unsigned("site", id, r.volume_quota)?,
                mount_path: r.volume_mount_path,
            },
            limits: Limits {
                cpu_millis: unsigned("site", id, r.cpu_millis)?,
                memory_bytes: unsigned("site", id, r.memory_bytes)?,
                pids: unsigned("site", id, r.pids)?,
                request_body_bytes: unsigned("site", id, r.request_body_bytes)?,
            },
            security: alveole_model::Security {
                read_only_root: r.read_only_root,
                user: r.run_as_user,
            },
            exposed_ports: alveole_model::validate_exposed_ports(&r.exposed_ports.0).map_err(
                |e| {
                    corrupt(
                        "site",
                        id,
                        e.0.first().map_or_else(String::new, ToString::to_string),
                    )
                },
            )?,
            limit_tier: alveole_model::LimitTier::parse(&r.limit_tier).map_err(bad)?,
            node_id: r.node_id.map(NodeId),
            phase: SitePhase::parse(&r.phase)
                .ok_or_else(|| corrupt("site", id, "unknown phase"))?,
            backup: r.backup_policy.0,
            https: r.https_policy.0,
            admission: r.admission_policy.0,
            databases: r
                .databases
                .0
                .into_iter()
                .map(StoredDatabase::into_database)
                .collect(),
            meta: meta(r.version, r.created_at, r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct NodeUsageRow {
    pub id: Uuid,
    pub name: String,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub disk_bytes: i64,
    pub overcommit_cpu: f64,
    pub overcommit_memory: f64,
    pub reserved_cpu: i64,
    pub reserved_memory: i64,
    pub reserved_disk: i64,
    pub sites: i64,
}

impl TryFrom<NodeUsageRow> for crate::NodeUsage {
    type Error = StoreError;
    fn try_from(r: NodeUsageRow) -> Result<Self, StoreError> {
        let id = r.id;
        Ok(crate::NodeUsage {
            name: Slug::parse(&r.name).map_err(|e| corrupt("node", id, e))?,
            load: alveole_model::NodeLoad {
                node_id: NodeId(id),
                capacity: Capacity {
                    cpu_millis: unsigned("node", id, r.cpu_millis)?,
                    memory_bytes: unsigned("node", id, r.memory_bytes)?,
                    disk_bytes: unsigned("node", id, r.disk_bytes)?,
                },
                overcommit: Overcommit {
                    cpu: r.overcommit_cpu,
                    memory: r.overcommit_memory,
                },
                reserved: alveole_model::Reservation {
                    cpu_millis: unsigned("node", id, r.reserved_cpu)?,
                    memory_bytes: unsigned("node", id, r.reserved_memory)?,
                    disk_bytes: unsigned("node", id, r.reserved_disk)?,
                },
            },
            sites: r.sites,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub before: Option<Json<serde_json::Value>>,
    pub after: Option<Json<serde_json::Value>>,
    pub request_id: String,
    pub chain_index: Option<i64>,
    pub canonical: Option<String>,
    pub hash: Option<String>,
}

impl From<AuditRow> for crate::AuditRecord {
    fn from(r: AuditRow) -> Self {
        let link = match (r.chain_index, &r.canonical, &r.hash) {
            (Some(index), Some(canonical), Some(hash)) => Some(alveole_audit::Link {
                index: u64::try_from(index).unwrap_or(0),
                canonical: canonical.clone(),
                hash: hash.clone(),
            }),
            _ => None,
        };
        crate::AuditRecord {
            event: r.into(),
            link,
        }
    }
}

impl From<AuditRow> for crate::AuditEvent {
    fn from(r: AuditRow) -> Self {
        crate::AuditEvent {
            seq: r.seq,
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target_kind: r.target_kind,
            target_id: r.target_id,
            before: r.before.map(|j| j.0),
            after: r.after.map(|j| j.0),
            request_id: r.request_id,
            chain_index: r.chain_index.and_then(|i| u64::try_from(i).ok()),
            hash: r.hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub token_hash: String,
    pub actor: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub member_id: Option<Uuid>,
    pub oidc_issuer: Option<String>,
    pub oidc_subject: Option<String>,
    pub oidc_sid: Option<String>,
    pub oidc_id_token: Option<String>,
}

impl From<SessionRow> for crate::Session {
    fn from(r: SessionRow) -> Self {
        crate::Session {
            token_hash: r.token_hash,
            actor: r.actor,
            member_id: r.member_id.map(alveole_model::MemberId),
            csrf_token: r.csrf_token,
            created_at: r.created_at,
            expires_at: r.expires_at,
            provider: r.oidc_issuer.zip(r.oidc_subject).map(|(issuer, subject)| {
                crate::ProviderSession {
                    issuer,
                    subject,
                    sid: r.oidc_sid,
                    sealed_id_token: r.oidc_id_token,
                }
            }),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SiteMoveRow {
    id: Uuid,
    site_id: Uuid,
    from_node: Uuid,
    to_node: Uuid,
    phase: String,
    started_at: DateTime<Utc>,
    switched_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    forward_until: Option<DateTime<Utc>>,
    forward_seconds: i64,
    freeze_deadline_ms: i64,
    progress: Json<alveole_model::MoveProgress>,
    error: Option<String>,
}

/// The columns of `site_moves` in [`SiteMoveRow`]'s order, as a literal for `concat!` (sqlx
/// takes only static SQL text).
macro_rules! site_move_columns {
    () => {
        "id, site_id, from_node, to_node, phase, started_at, switched_at, finished_at, \
         forward_until, forward_seconds, freeze_deadline_ms, progress, error"
    };
}
pub(crate) use site_move_columns;

impl TryFrom<SiteMoveRow> for alveole_model::SiteMove {
    type Error = StoreError;
    fn try_from(row: SiteMoveRow) -> Result<Self, StoreError> {
        let kind = "site move";
        Ok(alveole_model::SiteMove {
            id: alveole_model::SiteMoveId(row.id),
            site_id: SiteId(row.site_id),
            from_node: NodeId(row.from_node),
            to_node: NodeId(row.to_node),
            phase: alveole_model::MovePhase::parse(&row.phase)
                .ok_or_else(|| corrupt(kind, row.id, format!("unknown phase {}", row.phase)))?,
            started_at: row.started_at,
            switched_at: row.switched_at,
            finished_at: row.finished_at,
            forward_until: row.forward_until,
            forward_seconds: unsigned(kind, row.id, row.forward_seconds)?,
            freeze_deadline_ms: unsigned(kind, row.id, row.freeze_deadline_ms)?,
            progress: row.progress.0,
            error: row.error,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct BackupTargetRow {
    id: Uuid,
    name: String,
    node_id: Option<Uuid>,
    url: Option<String>,
    provider_id: Option<Uuid>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<BackupTargetRow> for alveole_model::BackupTarget {
    type Error = StoreError;
    fn try_from(r: BackupTargetRow) -> Result<Self, StoreError> {
        use alveole_model::TargetKind;
        let kind = match (r.node_id, r.url, r.provider_id) {
            (Some(node), None, None) => TargetKind::Vault {
                node_id: NodeId(node),
            },
            (None, Some(url), Some(provider)) => TargetKind::Rest {
                url,
                provider_id: ProviderId(provider),
            },
            _ => {
                return Err(corrupt(
                    "backup target",
                    r.id,
                    "neither a vault nor a REST server",
                ));
            }
        };
        Ok(alveole_model::BackupTarget {
            id: alveole_model::BackupTargetId(r.id),
            name: Slug::parse(&r.name).map_err(|e| corrupt("backup target", r.id, e))?,
            kind,
            meta: meta(r.version, r.created_at, r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct BackupRunRow {
    site_id: Uuid,
    target_id: Uuid,
    node_id: Uuid,
    started_at: DateTime<Utc>,
    duration_ms: i64,
    snapshot_id: Option<String>,
    files: i64,
    bytes_added: i64,
    bytes_total: i64,
    error: Option<String>,
}

impl TryFrom<BackupRunRow> for alveole_model::backup::BackupRun {
    type Error = StoreError;
    fn try_from(r: BackupRunRow) -> Result<Self, StoreError> {
        let id = r.site_id;
        Ok(alveole_model::backup::BackupRun {
            site_id: SiteId(r.site_id),
            target_id: alveole_model::BackupTargetId(r.target_id),
            node_id: NodeId(r.node_id),
            started_at: r.started_at,
            duration_ms: unsigned("backup run", id, r.duration_ms)?,
            snapshot_id: r.snapshot_id,
            files: unsigned("backup run", id, r.files)?,
            bytes_added: unsigned("backup run", id, r.bytes_added)?,
            bytes_total: unsigned("backup run", id, r.bytes_total)?,
            error: r.error,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RestoreRow {
    id: Uuid,
    site_id: Uuid,
    source_site_id: Uuid,
    target_id: Uuid,
    node_id: Uuid,
    snapshot: Option<String>,
    paths: Json<Vec<String>>,
    state: String,
    bytes_done: i64,
    bytes_total: i64,
    snapshot_id: Option<String>,
    error: Option<String>,
    requested_by: String,
    requested_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<RestoreRow> for alveole_model::backup::Restore {
    type Error = StoreError;
    fn try_from(r: RestoreRow) -> Result<Self, StoreError> {
        Ok(alveole_model::backup::Restore {
            id: alveole_model::RestoreId(r.id),
            site_id: SiteId(r.site_id),
            source_site_id: SiteId(r.source_site_id),
            target_id: alveole_model::BackupTargetId(r.target_id),
            node_id: NodeId(r.node_id),
            snapshot: r.snapshot,
            paths: r.paths.0,
            state: alveole_model::backup::RestoreState::parse(&r.state)
                .ok_or_else(|| corrupt("restore", r.id, "unknown state"))?,
            bytes_done: unsigned("restore", r.id, r.bytes_done)?,
            bytes_total: unsigned("restore", r.id, r.bytes_total)?,
            snapshot_id: r.snapshot_id,
            error: r.error,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            finished_at: r.finished_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DrillRow {
    id: Uuid,
    site_id: Uuid,
    target_id: Uuid,
    node_id: Option<Uuid>,
    state: String,
    phase: String,
    bytes_done: i64,
    bytes_total: i64,
    snapshot_id: Option<String>,
    snapshot_time: Option<DateTime<Utc>>,
    files_verified: i64,
    restore_ms: Option<i64>,
    answer_status: Option<i64>,
    error: Option<String>,
    requested_by: String,
    requested_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<DrillRow> for alveole_model::backup::Drill {
    type Error = StoreError;
    fn try_from(r: DrillRow) -> Result<Self, StoreError> {
        use alveole_model::backup::{DrillPhase, DrillState};
        Ok(alveole_model::backup::Drill {
            id: alveole_model::DrillId(r.id),
            site_id: SiteId(r.site_id),
            target_id: alveole_model::BackupTargetId(r.target_id),
            node_id: r.node_id.map(NodeId),
            state: DrillState::parse(&r.state)
                .ok_or_else(|| corrupt("drill", r.id, "unknown state"))?,
            phase: DrillPhase::parse(&r.phase)
                .ok_or_else(|| corrupt("drill", r.id, "unknown phase"))?,
            bytes_done: unsigned("drill", r.id, r.bytes_done)?,
            bytes_total: unsigned("drill", r.id, r.bytes_total)?,
            snapshot_id: r.snapshot_id,
            snapshot_time: r.snapshot_time,
            files_verified: unsigned("drill", r.id, r.files_verified)?,
            restore_ms: r
                .restore_ms
                .map(|ms| unsigned("drill", r.id, ms))
                .transpose()?,
            answer_status: r
                .answer_status
                .map(|s| unsigned("drill", r.id, s))
                .transpose()?,
            error: r.error,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            finished_at: r.finished_at,
        })
    }
}
