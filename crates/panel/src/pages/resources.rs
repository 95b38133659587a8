//! What the pages show of each resource: list columns, form fields, a title.

use std::collections::BTreeMap;

use alveole_model::quantity::format_bytes;
use alveole_model::{Member, Node, Provider, Role, Site, SitePhase};
use alveole_store::{MemberFilter, NodeFilter, PageRequest, ProviderFilter};
use serde_json::{Value, json};

use super::form::{Field, Kind, Options};
use crate::AppState;
use crate::api::BoxFuture;
use crate::error::ApiError;
use crate::service::Resource;

/// A resource with pages.
pub trait PageResource: Resource {
    /// Label keys of the list's columns (`field.<name>` in the catalogues).
    const COLUMNS: &'static [&'static str];
    const FIELDS: &'static [Field];
    fn cells(item: &Self) -> Vec<String>;
    fn title(item: &Self) -> String;
    /// What a new form starts with.
    fn blank_input() -> Value;
    /// Rows of live status for the detail page (label key, text), from the nodes' reports.
    fn status_rows<'a>(
        _state: &'a AppState,
        _item: &'a Self,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ApiError>> {
        Box::pin(async { Ok(vec![]) })
    }
    /// Extra buttons of the detail page: (form action, label key).
    fn actions(_item: &Self) -> Vec<(String, &'static str)> {
        vec![]
    }
    /// The detail page's moves section (sites): history, progress, and for admins the forms.
    fn moves<'a>(
        _state: &'a AppState,
        _caller: &'a crate::auth::Caller,
        _item: &'a Self,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
    /// The detail page's backups section (sites): targets, plots, runs, restores.
    fn backups<'a>(
        _state: &'a AppState,
        _caller: &'a crate::auth::Caller,
        _item: &'a Self,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
    /// The detail page's traffic section (sites): requests and the waiting room, plotted.
    fn traffic<'a>(
        _state: &'a AppState,
        _item: &'a Self,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
    /// The detail page's HTTPS section (sites): the certificate, its renewal, its errors.
    fn https<'a>(
        _state: &'a AppState,
        _caller: &'a crate::auth::Caller,
        _item: &'a Self,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
    /// The detail page's databases section (sites): where the site reaches them, their size.
    fn databases<'a>(
        _state: &'a AppState,
        _caller: &'a crate::auth::Caller,
        _item: &'a Self,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
}

fn bytes_of(used: Option<u64>, quota: u64) -> String {
    match used {
        Some(used) => format!("{} / {}", format_bytes(used), format_bytes(quota)),
        None => format!("? / {}", format_bytes(quota)),
    }
}

const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

impl PageResource for Provider {
    const COLUMNS: &'static [&'static str] = &["name", "country", "contract_end"];
    const FIELDS: &'static [Field] = &[
        field("name", Kind::Text),
        field("contact", Kind::Text),
        field("contract_end", Kind::Date),
        field("country", Kind::Text),
        field("notes", Kind::Textarea),
    ];
    fn cells(p: &Provider) -> Vec<String> {
        vec![
            p.name.to_string(),
            p.country
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            p.contract_end.map(|d| d.to_string()).unwrap_or_default(),
        ]
    }
    fn title(p: &Provider) -> String {
        p.name.to_string()
    }
    fn blank_input() -> Value {
        json!({})
    }
}

impl PageResource for Node {
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "public_addresses",
        "capacity.cpu_millis",
        "capacity.memory_bytes",
    ];
    const FIELDS: &'static [Field] = &[
        field("name", Kind::Text),
        field("provider_id", Kind::Select(Options::Providers)),
        field("public_addresses", Kind::Lines),
        field("capacity.cpu_millis", Kind::Cpu),
        field("capacity.memory_bytes", Kind::Bytes),
        field("capacity.disk_bytes", Kind::Bytes),
        field("overcommit.cpu", Kind::Ratio),
        field("overcommit.memory", Kind::Ratio),
        field("input_filter", Kind::Checkbox),
        field("input_allowed", Kind::Lines),
    ];
    fn cells(n: &Node) -> Vec<String> {
        vec![
            n.name.to_string(),
            n.public_addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            format!("{}", f64::from(n.capacity.cpu_millis) / 1000.0),
            format_bytes(n.capacity.memory_bytes),
        ]
    }
    fn title(n: &Node) -> String {
        n.name.to_string()
    }
    fn blank_input() -> Value {
        json!({"overcommit": alveole_model::Overcommit::default()})
    }
    fn status_rows<'a>(
        state: &'a AppState,
        node: &'a Node,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ApiError>> {
        Box::pin(async move {
            let statuses = state.store().node_statuses().await?;
            let Some(status) = statuses.into_iter().find(|s| s.node_id == node.id) else {
                return Ok(vec![("status.agent".to_owned(), "—".to_owned())]);
            };
            let r = &status.report.resources;
            let reachable = crate::service::agents::reachable(
                Some(status.reported_at),
                state.service().now(),
                state.config().node_unreachable_after,
            );
            let mut rows = vec![
                (
                    "status.agent".to_owned(),
                    if reachable {
                        "✓".to_owned()
                    } else {
                        "✗".to_owned()
                    },
                ),
                (
                    "status.last_seen".to_owned(),
                    status
                        .reported_at
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string(),
                ),
                (
                    "status.load".to_owned(),
                    format!("{:.2} ({} CPUs)", r.load_1m, r.cpus),
                ),
                (
                    "status.memory".to_owned(),
                    format!(
                        "{} / {}",
                        format_bytes(r.memory_available_bytes),
                        format_bytes(r.memory_total_bytes)
                    ),
                ),
                (
                    "status.disk".to_owned(),
                    format!(
                        "{} / {}",
                        format_bytes(r.disk_available_bytes),
                        format_bytes(r.disk_total_bytes)
                    ),
                ),
            ];
            rows.extend(
                status
                    .report
                    .warnings
                    .iter()
                    .map(|w| ("status.warning".to_owned(), w.clone())),
            );
            Ok(rows)
        })
    }
    fn actions(node: &Node) -> Vec<(String, &'static str)> {
        vec![(
            format!("/nodes/{}/join-token", node.id),
            "action.join_token",
        )]
    }
}

impl PageResource for Member {
    const COLUMNS: &'static [&'static str] = &["display_name", "email", "role"];
    const FIELDS: &'static [Field] = &[
        field("display_name", Kind::Text),
        field("email", Kind::Email),
        field("role", Kind::Select(Options::Roles)),
    ];
    fn cells(m: &Member) -> Vec<String> {
        vec![
            m.display_name.to_string(),
            m.email.to_string(),
            match m.disabled_at {
                Some(at) => format!("{} (disabled {})", m.role.as_str(), at.format("%Y-%m-%d")),
                None => m.role.as_str().to_owned(),
            },
        ]
    }
    fn title(m: &Member) -> String {
        m.display_name.to_string()
    }
    fn blank_input() -> Value {
        json!({"role": "member"})
    }
}

impl PageResource for Site {
    const COLUMNS: &'static [&'static str] = &["primary_domain", "image", "phase"];
    const FIELDS: &'static [Field] = &[
        field("primary_domain", Kind::Text),
        field("aliases", Kind::Lines),
        field("owner_id", Kind::Select(Options::Members)),
        field("image", Kind::Text),
        field("command", Kind::Lines),
        field("http_port", Kind::Integer),
        field("env", Kind::Env { secret: false }),
        field("env", Kind::Env { secret: true }),
        field("limits.cpu_millis", Kind::Cpu),
        field("limits.memory_bytes", Kind::Bytes),
        field("limits.pids", Kind::Integer),
        field("limits.request_body_bytes", Kind::Bytes),
        field("volume.quota_bytes", Kind::Bytes),
        field("volume.mount_path", Kind::Text),
        field("security.read_only_root", Kind::Checkbox),
        field("security.user", Kind::Text),
        field("exposed_ports", Kind::Ports),
        field("limit_tier", Kind::Select(Options::LimitTiers)),
        field("node_id", Kind::Select(Options::NodesOrAutomatic)),
        field("phase", Kind::Select(Options::Phases)),
        field("backup.targets", Kind::TargetSlot(0)),
        field("backup.targets", Kind::TargetSlot(1)),
        field("backup.every_minutes", Kind::OptionalInteger),
        field("backup.drill.every_days", Kind::OptionalInteger),
        field("backup.alert_window_hours", Kind::OptionalInteger),
        field("https.acme", Kind::Checkbox),
        field("https.redirect", Kind::Checkbox),
        field("https.hsts_seconds", Kind::OptionalInteger),
        field("admission.enabled", Kind::Checkbox),
        field("admission.active_visitors", Kind::OptionalInteger),
        field("admission.concurrent_requests", Kind::OptionalInteger),
        field("admission.new_visitors_per_minute", Kind::OptionalInteger),
        field("admission.active_seconds", Kind::OptionalInteger),
        field("admission.refresh_seconds", Kind::OptionalInteger),
        field("admission.classes", Kind::Classes),
        field("admission.rules", Kind::ClassRules),
        field("databases", Kind::Databases),
    ];
    fn cells(s: &Site) -> Vec<String> {
        vec![
            s.primary_domain.to_unicode(),
            s.image.to_string(),
            s.phase.as_str().to_owned(),
        ]
    }
    fn title(s: &Site) -> String {
        s.primary_domain.to_unicode()
    }
    fn status_rows<'a>(
        state: &'a AppState,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ApiError>> {
        Box::pin(async move {
            let statuses = state.store().node_statuses().await?;
            let report = statuses
                .iter()
                .filter(|s| Some(s.node_id) == site.node_id)
                .flat_map(|s| s.report.sites.iter())
                .find(|r| r.site_id == site.id);
            let Some(report) = report else {
                return Ok(vec![("status.state".to_owned(), "—".to_owned())]);
            };
            let state_text = format!("{:?}", report.state).to_lowercase();
            let mut rows = vec![("status.state".to_owned(), state_text)];
            if let Some(reason) = &report.reason {
                rows.push(("status.reason".to_owned(), reason.clone()));
            }
            rows.push((
                "status.volume".to_owned(),
                bytes_of(report.volume_bytes, site.volume.quota_bytes),
            ));
            Ok(rows)
        })
    }
    fn backups<'a>(
        state: &'a AppState,
        caller: &'a crate::auth::Caller,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(super::backups::section(state, caller, site))
    }
    fn https<'a>(
        state: &'a AppState,
        caller: &'a crate::auth::Caller,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(super::certificates::section(state, caller, site))
    }
    fn traffic<'a>(
        state: &'a AppState,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(super::traffic::section(state, site))
    }
    fn databases<'a>(
        state: &'a AppState,
        caller: &'a crate::auth::Caller,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(super::databases::section(state, caller, site))
    }
    fn moves<'a>(
        state: &'a AppState,
        caller: &'a crate::auth::Caller,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let nodes = state
                .store()
                .nodes()
                .list(
                    &Default::default(),
                    &PageRequest {
                        after: None,
                        limit: 500,
                    },
                )
                .await?
                .items;
            let name_of = |id: alveole_model::NodeId| {
                nodes
                    .iter()
                    .find(|n| n.id == id)
                    .map_or_else(|| id.to_string(), |n| n.name.to_string())
            };
            let history = state.store().site_moves(Some(site.id)).await?;
            let rows: Vec<Value> = history
                .iter()
                .map(|m| {
                    let p = &m.progress;
                    let sent = p.bytes_sent + p.bytes_already_there;
                    let percent = match m.phase {
                        alveole_model::MovePhase::Copying if p.volume_bytes > 0 => {
                            (sent as f64 / p.volume_bytes as f64 * 100.0).min(99.0) as u64
                        }
                        alveole_model::MovePhase::Copying => 0,
                        _ => 100,
                    };
                    json!({
                        "id": m.id,
                        "phase": m.phase.as_str(),
                        "from": name_of(m.from_node),
                        "to": name_of(m.to_node),
                        "started_at": m.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        "percent": percent,
                        "step": serde_json::to_value(p.step).ok().and_then(|v| v.as_str().map(str::to_owned)),
                        "passes": p.passes,
                        "sent": format_bytes(p.bytes_sent),
                        "freeze": p.freeze_ms.map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms")),
                        "error": m.error.clone().or_else(|| p.last_error.clone()),
                    })
                })
                .collect();
            let targets: Vec<Value> = nodes
                .iter()
                .filter(|n| Some(n.id) != site.node_id)
                .map(|n| json!({"id": n.id, "name": n.name.to_string()}))
                .collect();
            Ok(Some(json!({
                "history": rows,
                "nodes": targets,
                "active": history.iter().any(|m| m.phase == alveole_model::MovePhase::Copying),
                "can_move": caller.role == alveole_model::Role::Admin && !caller.read_only
                    && site.node_id.is_some() && !targets.is_empty(),
            })))
        })
    }
    fn blank_input() -> Value {
        json!({
            "http_port": 8080,
            "limits": alveole_model::Limits::default(),
            "volume": alveole_model::Volume::default(),
            "phase": "running",
            "backup": alveole_model::BackupPolicy::default(),
            "https": alveole_model::HttpsPolicy::default(),
            "admission": alveole_model::AdmissionPolicy::default(),
        })
    }
}

/// "—" (nothing chosen, or the panel's choice), then `choices`.
fn none_then(choices: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    std::iter::once((String::new(), "—".to_owned()))
        .chain(choices)
        .collect()
}

/// (value, label) choices of every select among `fields`.
/// The choices of a form's select fields; `limited_to` a member, only what they may see:
/// themselves as owner, and automatic placement.
pub async fn select_options(
    state: &AppState,
    fields: &[Field],
    limited_to: Option<alveole_model::MemberId>,
) -> Result<BTreeMap<Options, Vec<(String, String)>>, ApiError> {
    let store = state.store();
    // Forms list the first 500 choices; larger co-ops will want a search box here.
    let all = PageRequest {
        after: None,
        limit: 500,
    };
    let mut out = BTreeMap::new();
    for field in fields {
        let Some(source) = field.kind.options() else {
            continue;
        };
        let choices: Vec<(String, String)> = match source {
            Options::Roles => Role::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), r.as_str().to_owned()))
                .collect(),
            Options::LimitTiers => alveole_model::LimitTier::ALL
                .iter()
                .map(|t| {
                    let label = format!(
                        "{} — {}/s, {}",
                        t.as_str(),
                        t.new_connections_per_second(),
                        t.max_connections()
                    );
                    (t.as_str().to_owned(), label)
                })
                .collect(),
            Options::Phases => [SitePhase::Running, SitePhase::Stopped]
                .iter()
                .map(|p| (p.as_str().to_owned(), p.as_str().to_owned()))
                .collect(),
            Options::Members => store
                .members()
                .list(&MemberFilter::default(), &all)
                .await?
                .items
                .into_iter()
                .filter(|m| limited_to.is_none_or(|me| m.id == me))
                .map(|m| {
                    let disabled = if m.disabled_at.is_some() {
                        " (disabled)"
                    } else {
                        ""
                    };
                    (
                        m.id.to_string(),
                        format!("{} <{}>{disabled}", m.display_name, m.email),
                    )
                })
                .collect(),
            Options::Providers | Options::ProvidersOrNone => {
                let providers = store
                    .providers()
                    .list(&ProviderFilter::default(), &all)
                    .await?
                    .items
                    .into_iter()
                    .map(|p| (p.id.to_string(), p.name.to_string()));
                if source == Options::ProvidersOrNone {
                    none_then(providers)
                } else {
                    providers.collect()
                }
            }
            Options::NodesOrAutomatic if limited_to.is_some() => none_then([]),
            Options::Nodes | Options::NodesOrAutomatic => none_then(
                store
                    .nodes()
                    .list(&NodeFilter::default(), &all)
                    .await?
                    .items
                    .into_iter()
                    .map(|n| (n.id.to_string(), n.name.to_string())),
            ),
            // Members choose among them too: their names say nothing of other members.
            Options::BackupTargets => none_then(
                store
                    .backup_targets()
                    .list(&Default::default(), &all)
                    .await?
                    .items
                    .into_iter()
                    .map(|t| (t.id.to_string(), t.name.to_string())),
            ),
        };
        out.insert(source, choices);
    }
    Ok(out)
}
