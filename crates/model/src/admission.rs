//! Overload protection of a site: how many visitors its node's ingress admits at once, the
//! waiting room above that, and the priority classes that share the admissions.
//!
//! The member sets a policy (`AdmissionPolicy`); limits left out follow the site's CPU limit.
//! Its node gets the limits worked out (`SiteAdmission`), with the site's key, which signs its
//! visitors' passes wherever the site runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::addresses::Prefix;
use crate::backup::WireSecret;
use crate::error::{FieldError, ValidationErrors};

/// A site's admission settings. Protection is on by default, with limits from the site's
/// CPU limit that a site that is not overloaded does not reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AdmissionPolicy {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Visitors admitted at once (each active until `active_seconds` after their last
    /// request); more wait in line. Absent: 1,000 per core of the CPU limit, at least 200.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub active_visitors: Option<u32>,
    /// Requests the site's container is given at once; more wait briefly, then get 503.
    /// Absent: 64 per core, at least 16.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100_000))]
    pub concurrent_requests: Option<u32>,
    /// New visitors admitted per minute. Absent: 600 per core, at least 120.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub new_visitors_per_minute: Option<u32>,
    /// How long an admitted visitor stays active after their last request.
    #[serde(default = "five_minutes")]
    #[schemars(range(min = 30, max = 86_400))]
    pub active_seconds: u32,
    /// How often the waiting room's page refreshes itself.
    #[serde(default = "twenty")]
    #[schemars(range(min = 2, max = 300))]
    pub refresh_seconds: u32,
    /// Classes of visitors with a share of the admissions reserved; everyone else shares
    /// what is left (at least a tenth).
    #[serde(default)]
    pub classes: Vec<PriorityClass>,
    /// Visitors a rule matches (by path or network) join the rule's class.
    #[serde(default)]
    pub rules: Vec<ClassRule>,
}

fn yes() -> bool {
    true
}

fn five_minutes() -> u32 {
    300
}

fn twenty() -> u32 {
    20
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            active_visitors: None,
            concurrent_requests: None,
            new_visitors_per_minute: None,
            active_seconds: five_minutes(),
            refresh_seconds: twenty(),
            classes: vec![],
            rules: vec![],
        }
    }
}

/// A class of visitors (say, `teachers`) and the share of admissions kept for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PriorityClass {
    /// Lowercase letters, digits and `-`, as the site names it in `Alveole-Priority`.
    pub name: String,
    #[schemars(range(min = 1, max = 90))]
    pub share_percent: u8,
}

/// Sets the class of visitors whose first request matches: by path prefix or by network
/// (one of the two).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ClassRule {
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// A network such as `192.0.2.0/24`.
    #[serde(default)]
    pub network: Option<String>,
    pub class: String,
}

/// The most classes and rules a site has.
pub const MAX_CLASSES: usize = 8;
pub const MAX_RULES: usize = 64;
/// What the classes may reserve together: the rest stays for everyone else.
pub const MAX_RESERVED_PERCENT: u32 = 90;

/// Field paths under `admission.`.
pub fn validate_admission(errors: &mut ValidationErrors, policy: &AdmissionPolicy) {
    let mut range = |field: &str, value: Option<u32>, low: u32, high: u32, what: &str| {
        if value.is_some_and(|v| !(low..=high).contains(&v)) {
            errors.push(FieldError::new(
                format!("admission.{field}"),
                "range",
                format!("between {low} and {high} {what}"),
            ));
        }
    };
    range(
        "active_visitors",
        policy.active_visitors,
        1,
        1_000_000,
        "visitors",
    );
    range(
        "concurrent_requests",
        policy.concurrent_requests,
        1,
        100_000,
        "requests",
    );
    range(
        "new_visitors_per_minute",
        policy.new_visitors_per_minute,
        1,
        1_000_000,
        "visitors per minute",
    );
    range(
        "active_seconds",
        Some(policy.active_seconds),
        30,
        86_400,
        "seconds",
    );
    range(
        "refresh_seconds",
        Some(policy.refresh_seconds),
        2,
        300,
        "seconds",
    );
    if policy.classes.len() > MAX_CLASSES {
        errors.push(FieldError::new(
            "admission.classes",
            "admission.too_many",
            format!("at most {MAX_CLASSES} classes"),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut reserved = 0;
    for (i, class) in policy.classes.iter().enumerate() {
        if !is_class_name(&class.name) {
            errors.push(FieldError::new(
                format!("admission.classes[{i}].name"),
                "admission.class_name",
                "1 to 32 lowercase letters, digits and '-', such as teachers",
            ));
        } else if !names.insert(class.name.as_str()) {
            errors.push(FieldError::new(
                format!("admission.classes[{i}].name"),
                "admission.duplicate",
                format!("{} is listed twice", class.name),
            ));
        }
        if !(1..=90).contains(&class.share_percent) {
            errors.push(FieldError::new(
                format!("admission.classes[{i}].share_percent"),
                "range",
                "between 1 and 90 percent",
            ));
        }
        reserved += u32::from(class.share_percent);
    }
    if reserved > MAX_RESERVED_PERCENT {
        errors.push(FieldError::new(
            "admission.classes",
            "admission.overbooked",
            format!(
                "the classes reserve {reserved}% together; at most {MAX_RESERVED_PERCENT}%, so \
                 that everyone else still gets in"
            ),
        ));
    }
    if policy.rules.len() > MAX_RULES {
        errors.push(FieldError::new(
            "admission.rules",
            "admission.too_many",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let field = |name: &str| format!("admission.rules[{i}].{name}");
        match (&rule.path_prefix, &rule.network) {
            (Some(_), Some(_)) | (None, None) => errors.push(FieldError::new(
                field("path_prefix"),
                "admission.rule",
                "a rule matches a path prefix or a network: give one of the two",
            )),
            (Some(prefix), None) => {
                if !is_path_prefix(prefix) {
                    errors.push(FieldError::new(
                        field("path_prefix"),
                        "path.invalid",
                        "a path starting with '/', at most 256 visible characters",
                    ));
                }
            }
            (None, Some(network)) => {
                if let Err(error) = Prefix::parse_or_host(network) {
                    errors.push(error.at(field("network")));
                }
            }
        }
        if !names.contains(rule.class.as_str()) {
            errors.push(FieldError::new(
                field("class"),
                "admission.unknown_class",
                format!("{} is not one of the site's classes", rule.class),
            ));
        }
    }
}

fn is_class_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_path_prefix(prefix: &str) -> bool {
    prefix.starts_with('/') && prefix.len() <= 256 && prefix.bytes().all(|b| b.is_ascii_graphic())
}

/// Admission as a site's node applies it: the limits worked out, and the key that signs
/// the site's visitors' passes (the same on every node the site runs on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SiteAdmission {
    pub active_visitors: u32,
    pub concurrent_requests: u32,
    pub new_visitors_per_minute: u32,
    pub active_seconds: u32,
    pub refresh_seconds: u32,
    #[serde(default)]
    pub classes: Vec<PriorityClass>,
    #[serde(default)]
    pub rules: Vec<WireClassRule>,
    /// 32 random bytes, hex: for the node only.
    pub key: WireSecret,
}

/// A class rule as nodes read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WireClassRule {
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub network: Option<Prefix>,
    pub class: String,
}

impl AdmissionPolicy {
    /// The limits a node applies for a site with this CPU limit (millicores), with its key;
    /// `None` when protection is off.
    pub fn for_node(&self, cpu_millis: u32, key: WireSecret) -> Option<SiteAdmission> {
        if !self.enabled {
            return None;
        }
        let per_core = |per_core: u64, floor: u64, ceiling: u64| {
            let scaled = u64::from(cpu_millis) * per_core / 1000;
            u32::try_from(scaled.clamp(floor, ceiling)).unwrap_or(u32::MAX)
        };
        Some(SiteAdmission {
            active_visitors: self
                .active_visitors
                .unwrap_or_else(|| per_core(1000, 200, 1_000_000)),
            concurrent_requests: self
                .concurrent_requests
                .unwrap_or_else(|| per_core(64, 16, 100_000)),
            new_visitors_per_minute: self
                .new_visitors_per_minute
                .unwrap_or_else(|| per_core(600, 120, 1_000_000)),
            active_seconds: self.active_seconds,
            refresh_seconds: self.refresh_seconds,
            classes: self.classes.clone(),
            rules: self
                .rules
                .iter()
                .map(|rule| WireClassRule {
                    path_prefix: rule.path_prefix.clone(),
                    network: rule
                        .network
                        .as_deref()
                        .and_then(|n| Prefix::parse_or_host(n).ok()),
                    class: rule.class.clone(),
                })
                .collect(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(policy: &AdmissionPolicy) -> Vec<String> {
        let mut errors = ValidationErrors::default();
        validate_admission(&mut errors, policy);
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn limits_left_out_follow_the_cpu_limit() {
        let key = || WireSecret("k".into());
        let half = AdmissionPolicy::default().for_node(500, key()).unwrap();
        assert_eq!(
            (
                half.active_visitors,
                half.concurrent_requests,
                half.new_visitors_per_minute
            ),
            (500, 32, 300)
        );
        let tiny = AdmissionPolicy::default().for_node(10, key()).unwrap();
        assert_eq!(
            (
                tiny.active_visitors,
                tiny.concurrent_requests,
                tiny.new_visitors_per_minute
            ),
            (200, 16, 120)
        );
        let set = AdmissionPolicy {
            concurrent_requests: Some(3),
            ..AdmissionPolicy::default()
        };
        assert_eq!(set.for_node(4000, key()).unwrap().concurrent_requests, 3);
        let off = AdmissionPolicy {
            enabled: false,
            ..AdmissionPolicy::default()
        };
        assert!(off.for_node(1000, key()).is_none());
    }

    #[test]
    fn each_bad_setting_is_named() {
        assert!(fields(&AdmissionPolicy::default()).is_empty());
        let policy = AdmissionPolicy {
            active_visitors: Some(0),
            refresh_seconds: 1,
            classes: vec![
                PriorityClass {
                    name: "Teachers".into(),
                    share_percent: 60,
                },
                PriorityClass {
                    name: "staff".into(),
                    share_percent: 40,
                },
            ],
            rules: vec![
                ClassRule {
                    path_prefix: Some("/prof".into()),
                    network: None,
                    class: "pupils".into(),
                },
                ClassRule {
                    path_prefix: None,
                    network: Some("192.0.2.1/24".into()),
                    class: "staff".into(),
                },
                ClassRule {
                    path_prefix: None,
                    network: None,
                    class: "staff".into(),
                },
            ],
            ..AdmissionPolicy::default()
        };
        assert_eq!(
            fields(&policy),
            [
                "admission.active_visitors",
                "admission.refresh_seconds",
                "admission.classes[0].name",
                "admission.classes",
                "admission.rules[0].class",
                "admission.rules[1].network",
                "admission.rules[2].path_prefix",
            ]
        );
    }
}
