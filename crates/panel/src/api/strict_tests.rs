//! Every body the API reads refuses a field it does not have, at any depth, and names it:
//! a property over every input type of the route table, with random names at random places.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `value` as `T`, strictly: the fields named in its refusal.
type Check = fn(Value) -> Result<(), BTreeSet<String>>;

fn check<T: DeserializeOwned>(value: Value) -> Result<(), BTreeSet<String>> {
    alveole_model::strict::from_value::<T>(value)
        .map(|_| ())
        .map_err(|errors| errors.0.into_iter().map(|e| e.field).collect())
}

const ID: &str = "0192f0c4-7a4b-7c11-8e5e-2d3c4b5a6f70";

/// A valid body of each input type the route table takes, by its schema name.
fn examples() -> Vec<(&'static str, Value, Check)> {
    vec![
        (
            "SiteInput",
            json!({
                "owner_id": ID, "primary_domain": "exemple.org", "aliases": ["www.exemple.org"],
                "image": "registry.example.org/coop/site:1", "command": ["serve"],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2", "secret": true}],
                "http_port": 8080,
                "volume": {"quota_bytes": 1u64 << 30, "mount_path": "/data"},
                "limits": {"cpu_millis": 500, "memory_bytes": 256u64 << 20, "pids": 256,
                           "request_body_bytes": 1u64 << 20},
                "security": {"read_only_root": true, "user": "1000"},
                "exposed_ports": [{"protocol": "tcp", "port": 2222, "container_port": 22}],
                "limit_tier": "standard", "node_id": ID, "phase": "running",
                "backup": {"targets": [ID], "every_minutes": 60,
                           "hook": {"name": "dump", "command": ["pg_dump"], "timeout_seconds": 60},
                           "retention": {"hourly_hours": 48, "daily_days": 30, "weekly_weeks": 12,
                                         "monthly_months": 12},
                           "drill": {"every_days": 7, "health_path": "/health",
                                     "hook": {"name": "rows", "command": ["count"], "timeout_seconds": 30}},
                           "alert_window_hours": 48},
                "https": {"acme": true, "redirect": true, "hsts_seconds": 300},
                "admission": {"enabled": true, "active_visitors": 500, "concurrent_requests": 32,
                              "new_visitors_per_minute": 300, "active_seconds": 300,
                              "refresh_seconds": 20,
                              "classes": [{"name": "teachers", "share_percent": 60}],
                              "rules": [{"path_prefix": "/prof", "network": "192.0.2.0/24",
                                         "class": "teachers"}]}
            }),
            check::<alveole_model::SiteInput>,
        ),
        (
            "CertificateUpload",
            json!({"chain_pem": "-----BEGIN CERTIFICATE-----", "key_pem": "-----BEGIN PRIVATE KEY-----"}),
            check::<crate::service::certificates::CertificateUpload>,
        ),
        (
            "BackupTargetInput",
            json!({"name": "vault-1", "url": "https://backup.example.org/", "provider_id": ID,
                   "node_id": ID}),
            check::<alveole_model::BackupTargetInput>,
        ),
        (
            "RestoreInput",
            json!({"target_id": ID, "snapshot": "latest", "paths": ["/www"], "into_site_id": ID}),
            check::<alveole_model::backup::RestoreInput>,
        ),
        (
            "NodeInput",
            json!({
                "provider_id": ID, "name": "node-1", "public_addresses": ["192.0.2.1"],
                "capacity": {"cpu_millis": 4000, "memory_bytes": 8u64 << 30, "disk_bytes": 100u64 << 30},
                "overcommit": {"cpu": 4.0, "memory": 1.0},
                "input_filter": false, "input_allowed": ["198.51.100.0/24"]
            }),
            check::<alveole_model::NodeInput>,
        ),
        (
            "ProviderInput",
            json!({"name": "Hébergeur", "contact": "ops", "contract_end": "2027-01-01",
                   "country": "FR", "notes": "n"}),
            check::<alveole_model::ProviderInput>,
        ),
        (
            "MemberInput",
            json!({"display_name": "Ana", "email": "ana@exemple.org", "role": "member"}),
            check::<alveole_model::MemberInput>,
        ),
        (
            "NewToken",
            json!({"name": "laptop", "scope": "full", "expires_in_days": 90}),
            check::<crate::service::members::NewToken>,
        ),
        (
            "Disable",
            json!({"hand_sites_to": ID}),
            check::<crate::api::members::Disable>,
        ),
        (
            "NewPool",
            json!({"provider_id": ID, "prefix": "192.0.2.0/24"}),
            check::<crate::api::addresses::NewPool>,
        ),
        (
            "NewAllocation",
            json!({"node_id": ID, "site_id": ID, "address": "192.0.2.7"}),
            check::<crate::api::addresses::NewAllocation>,
        ),
        (
            "MoveRequest",
            json!({"to_node": ID}),
            check::<crate::api::site_moves::MoveRequest>,
        ),
        (
            "MoveRequest2",
            json!({"to_node": ID, "force": true}),
            check::<crate::service::addresses::MoveRequest>,
        ),
        (
            "PlanQuery",
            json!({"node_id": ID, "deadline": "2026-11-29T20:00:00Z", "parallelism": 4}),
            check::<crate::service::evacuations::PlanQuery>,
        ),
        (
            "EnrollRequest",
            json!({"join_token": "t", "csr_pem": "p"}),
            check::<crate::api::agents::EnrollRequest>,
        ),
        (
            "RenewRequest",
            json!({"csr_pem": "p"}),
            check::<crate::api::agents::RenewRequest>,
        ),
    ]
}

/// The path of every object in `value` (`""`, `security`, `env[1]`), as fields are named.
fn objects(value: &Value, path: String, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let inner_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                objects(inner, inner_path, found);
            }
            found.push(path);
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                objects(inner, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn object_at<'a>(
    value: &'a mut Value,
    path: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    let mut here = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        here = here.get_mut(key)?;
        if let Some(index) = index {
            here = here.get_mut(index)?;
        }
    }
    here.as_object_mut()
}

#[test]
fn the_examples_are_valid_and_cover_every_input_the_routes_take() {
    let examples = examples();
    for (name, value, check) in &examples {
        assert_eq!(check(value.clone()), Ok(()), "{name}");
    }
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for route in crate::routes::routes() {
        let Some(request) = route.doc.as_ref().and_then(|doc| doc.request) else {
            continue;
        };
        let schema = request(&mut generator);
        let name = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|reference| reference.rsplit('/').next())
            .unwrap_or("(inline)");
        taken.insert(name.to_owned());
    }
    // Agents' reports and the merge patch document are read by their own handlers.
    for (name, _, _) in &examples {
        taken.remove(*name);
    }
    let untested: Vec<_> = taken
        .into_iter()
        .filter(|name| {
            !["NodeReport", "MoveProgress", "MoveOutcome", "PatchDoc"].contains(&name.as_str())
        })
        .collect();
    assert!(
        untested.is_empty(),
        "input types with no example here: {untested:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_field_no_input_has_is_refused_and_named(
        which in 0usize..13,
        place in any::<prop::sample::Index>(),
        key in "[a-z][a-z_]{0,11}",
        value in prop_oneof![Just(json!(true)), Just(json!(1)), Just(json!("x")), Just(json!({"deep": 1}))],
    ) {
        let examples = examples();
        let (name, mut body, check) = examples[which % examples.len()].clone();
        let mut places = Vec::new();
        objects(&body, String::new(), &mut places);
        let path = places[place.index(places.len())].clone();
        let object = object_at(&mut body, &path).expect("an object");
        prop_assume!(!object.contains_key(&key));
        object.insert(key.clone(), value);
        let field = if path.is_empty() { key } else { format!("{path}.{key}") };
        let refused = check(body);
        prop_assert!(
            refused.as_ref().is_err_and(|fields| fields.contains(&field)),
            "{name}: {field} was not refused by name: {refused:?}"
        );
    }
}
