//! HTML forms as declarative field lists. A form's flat text fields become the same JSON input
//! the API takes (so pages and API share one validator), and a stored input becomes form text.

use std::collections::BTreeMap;

use alveole_model::quantity::{format_bytes, parse_bytes, parse_millicores};
use alveole_model::{FieldError, ValidationErrors};
use serde_json::{Map, Value, json};

/// Where a select's options come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Options {
    Roles,
    Phases,
    Members,
    Providers,
    /// Nodes, with "chosen by the panel" as the empty choice.
    NodesOrAutomatic,
    /// The limit tiers of the node's packet filter.
    LimitTiers,
    /// Backup targets, with "none" as the empty choice.
    BackupTargets,
    /// Nodes that can keep other nodes' backups (any node).
    Nodes,
    /// Providers, with "none" as the empty choice (a vault's is its node's).
    ProvidersOrNone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Email,
    Date,
    Textarea,
    /// One item per line, as an array.
    Lines,
    /// A size such as `512M`, as bytes.
    Bytes,
    /// Cores such as `0.5` or `500m`, as millicores.
    Cpu,
    Integer,
    /// A whole number that may be left empty: then not given (the default, or what is
    /// stored, applies).
    OptionalInteger,
    Ratio,
    /// A checkbox: `true` when the browser sends the field, `false` when it does not.
    Checkbox,
    /// Exposed ports, one per line: `tcp 2222` (the same port in the container) or
    /// `udp 5353:53` (public port, then the container's).
    Ports,
    /// `NAME=value` lines into the `env` array; secret ones keep their value when left empty.
    Env {
        secret: bool,
    },
    Select(Options),
    /// The `n`th target of a backup policy (`backup.targets[n]`), chosen among the targets.
    TargetSlot(u8),
    /// Priority classes, one per line: `teachers 60` (a name, then its share in percent).
    Classes,
    /// Class rules, one per line: `/prof teachers` (a path prefix) or `192.0.2.0/24 teachers`
    /// (a network), then the class.
    ClassRules,
    /// A site's databases, one per line: `wordpress mariadb 10.11`, then optionally
    /// `quota=2G memory=512M cpu=0.5`.
    Databases,
}

impl Kind {
    /// Where a select's choices come from.
    pub fn options(self) -> Option<Options> {
        match self {
            Kind::Select(source) => Some(source),
            Kind::TargetSlot(_) => Some(Options::BackupTargets),
            _ => None,
        }
    }
}

/// One input of a form. `name` is the dotted JSON path it fills (`limits.cpu_millis`), which
/// is also how API errors name their field, so each error lands next to its input.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

impl Field {
    /// The HTML name of the input (two inputs may fill one JSON path).
    pub fn input_name(&self) -> &'static str {
        match self.kind {
            Kind::Env { secret: true } => "secret_env",
            Kind::TargetSlot(1) => "backup.second_target",
            _ => self.name,
        }
    }
}

/// Turns submitted text into the input JSON, or the field errors of the text itself.
pub fn to_json(
    fields: &[Field],
    form: &BTreeMap<String, String>,
) -> Result<Value, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let mut root = Value::Object(Map::new());
    for field in fields {
        let text = form
            .get(field.input_name())
            .map(String::as_str)
            .unwrap_or("");
        let value = match field.kind {
            Kind::Text | Kind::Email | Kind::Date | Kind::Textarea => Some(json!(text.trim())),
            Kind::Lines => Some(json!(lines(text).collect::<Vec<_>>())),
            Kind::Bytes => errors
                .check(field.name, parse_bytes(text))
                .map(|n| json!(n)),
            Kind::Cpu => errors
                .check(field.name, parse_millicores(text))
                .map(|n| json!(n)),
            Kind::Integer => errors
                .check(
                    field.name,
                    text.trim()
                        .parse::<u64>()
                        .map_err(|_| FieldError::new("", "number.invalid", "a whole number")),
                )
                .map(|n| json!(n)),
            Kind::OptionalInteger if text.trim().is_empty() => None,
            Kind::OptionalInteger => errors
                .check(
                    field.name,
                    text.trim()
                        .parse::<u64>()
                        .map_err(|_| FieldError::new("", "number.invalid", "a whole number")),
                )
                .map(|n| json!(n)),
            Kind::Ratio => errors
                .check(
                    field.name,
                    text.trim()
                        .parse::<f64>()
                        .map_err(|_| FieldError::new("", "number.invalid", "a number such as 1.5")),
                )
                .map(|n| json!(n)),
            Kind::Env { secret } => {
                let vars = env_lines(text, secret)
                    .map_err(|e| errors.push(e.at(field.input_name())))
                    .ok();
                if let Some(vars) = vars {
                    let env = path_entry(&mut root, field.name);
                    if !env.is_array() {
                        *env = json!([]);
                    }
                    if let Some(array) = env.as_array_mut() {
                        array.extend(vars);
                    }
                }
                None
            }
            // Left empty, a tier is not given (the default, or what is stored, applies).
            Kind::Select(Options::LimitTiers) if text.is_empty() => None,
            Kind::Select(_) => Some(if text.is_empty() {
                Value::Null
            } else {
                json!(text)
            }),
            Kind::Checkbox => Some(json!(form.contains_key(field.input_name()))),
            Kind::TargetSlot(_) => {
                let targets = path_entry(&mut root, field.name);
                if !targets.is_array() {
                    *targets = json!([]);
                }
                if let (Some(array), false) = (targets.as_array_mut(), text.is_empty()) {
                    array.push(json!(text));
                }
                None
            }
            Kind::Ports => port_lines(text)
                .map_err(|e| errors.push(e.at(field.name)))
                .ok(),
            Kind::Classes => class_lines(text)
                .map_err(|e| errors.push(e.at(field.name)))
                .ok(),
            Kind::ClassRules => Some(rule_lines(text)),
            Kind::Databases => database_lines(text)
                .map_err(|e| errors.push(e.at(field.name)))
                .ok(),
        };
        if let Some(value) = value {
            *path_entry(&mut root, field.name) = value;
        }
    }
    if errors.is_empty() {
        Ok(root)
    } else {
        Err(errors)
    }
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

fn env_lines(text: &str, secret: bool) -> Result<Vec<Value>, FieldError> {
    lines(text)
        .map(|line| match line.split_once('=') {
            Some((name, value)) if secret && value.is_empty() => {
                Ok(json!({"name": name.trim(), "value": null, "secret": true}))
            }
            Some((name, value)) => {
                Ok(json!({"name": name.trim(), "value": value, "secret": secret}))
            }
            None if secret => Ok(json!({"name": line, "value": null, "secret": true})),
            None => Err(FieldError::new(
                "",
                "env.line",
                format!("{line:?}: write NAME=value"),
            )),
        })
        .collect()
}

/// `tcp 2222` or `udp 5353:53` lines as exposed ports.
fn port_lines(text: &str) -> Result<Value, FieldError> {
    let bad = |line: &str| {
        FieldError::new(
            "",
            "ports.line",
            format!("{line:?}: write a protocol and a port, such as tcp 2222 or udp 5353:53"),
        )
    };
    let port = |text: &str, line: &str| text.trim().parse::<u16>().map_err(|_| bad(line));
    lines(text)
        .map(|line| {
            let (protocol, ports) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(line))?;
            let protocol = protocol.to_ascii_lowercase();
            if protocol != "tcp" && protocol != "udp" {
                return Err(bad(line));
            }
            let (public, container) = match ports.trim().split_once(':') {
                Some((public, container)) => (port(public, line)?, port(container, line)?),
                None => {
                    let both = port(ports, line)?;
                    (both, both)
                }
            };
            Ok(json!({
                "protocol": protocol,
                "port": public,
                "container_port": container,
            }))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn class_lines(text: &str) -> Result<Value, FieldError> {
    lines(text)
        .map(|line| {
            let share = line
                .rsplit_once(char::is_whitespace)
                .and_then(|(name, share)| {
                    let share = share.trim_end_matches('%').parse::<u8>().ok()?;
                    Some(json!({"name": name.trim(), "share_percent": share}))
                });
            share.ok_or_else(|| {
                FieldError::new(
                    "",
                    "classes.line",
                    format!(
                        "{line:?}: write a class and its share in percent, such as teachers 60"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `name engine version [quota=SIZE] [memory=SIZE] [cpu=CORES]`: a database; what a line
/// leaves out takes its default.
fn database_lines(text: &str) -> Result<Value, FieldError> {
    let wrong = |line: &str, why: String| {
        FieldError::new(
            "",
            "databases.line",
            format!(
                "{line:?}: {why}; write a name, an engine and a version, such as wordpress mariadb 10.11 quota=2G"
            ),
        )
    };
    lines(text)
        .map(|line| {
            let mut words = line.split_whitespace();
            let (Some(name), Some(engine), Some(version)) =
                (words.next(), words.next(), words.next())
            else {
                return Err(wrong(line, "a word is missing".into()));
            };
            let mut db = json!({"name": name, "engine": engine, "version": version});
            for option in words {
                let (key, value) = option
                    .split_once('=')
                    .ok_or_else(|| wrong(line, format!("{option:?} is not key=value")))?;
                let parsed = match key {
                    "quota" => parse_bytes(value).map(|n| ("quota_bytes", json!(n))),
                    "memory" => parse_bytes(value).map(|n| ("limits.memory_bytes", json!(n))),
                    "cpu" => parse_millicores(value).map(|n| ("limits.cpu_millis", json!(n))),
                    _ => return Err(wrong(line, format!("{key:?} is not quota, memory or cpu"))),
                };
                let (path, value) = parsed.map_err(|e| wrong(line, e.message))?;
                match path.split_once('.') {
                    Some((outer, inner)) => {
                        if !db[outer].is_object() {
                            db[outer] = json!({});
                        }
                        db[outer][inner] = value;
                    }
                    None => db[path] = value,
                }
            }
            // Limits given in part keep the others' defaults.
            if let Some(limits) = db.get_mut("limits").and_then(Value::as_object_mut) {
                let defaults = alveole_model::DatabaseLimits::default();
                limits
                    .entry("cpu_millis")
                    .or_insert(json!(defaults.cpu_millis));
                limits
                    .entry("memory_bytes")
                    .or_insert(json!(defaults.memory_bytes));
                limits.entry("pids").or_insert(json!(defaults.pids));
            }
            Ok(db)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A site's databases as the lines `database_lines` reads.
fn database_text(value: &Value) -> String {
    let lines: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|db| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let mut line = format!(
                "{} {} {}",
                text(&db["name"]),
                text(&db["engine"]),
                text(&db["version"])
            );
            if let Some(quota) = db["quota_bytes"].as_u64() {
                line.push_str(&format!(" quota={}", format_bytes(quota)));
            }
            if let Some(memory) = db["limits"]["memory_bytes"].as_u64() {
                line.push_str(&format!(" memory={}", format_bytes(memory)));
            }
            if let Some(cpu) = db["limits"]["cpu_millis"].as_u64() {
                line.push_str(&format!(" cpu={}m", cpu));
            }
            line
        })
        .collect();
    lines.join("\n")
}

/// `/path class` or `network class`; a line without a class names no class (refused by the
/// site's validation, which names the field).
fn rule_lines(text: &str) -> Value {
    Value::Array(
        lines(text)
            .map(|line| {
                let (what, class) = line
                    .split_once(char::is_whitespace)
                    .map_or((line, ""), |(w, c)| (w, c.trim()));
                if what.starts_with('/') {
                    json!({"path_prefix": what, "class": class})
                } else {
                    json!({"network": what, "class": class})
                }
            })
            .collect(),
    )
}

/// The slot at a dotted path, created as needed.
fn path_entry<'a>(root: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('.').fold(root, |node, key| {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        match node {
            Value::Object(map) => map.entry(key.to_owned()).or_insert(Value::Null),
            // Just made an object above.
            other => other,
        }
    })
}

fn path_get<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |node, key| node.get(key))
}

/// The text each input shows for a stored input (secret values are never in it).
pub fn to_text(fields: &[Field], input: &Value) -> BTreeMap<String, String> {
    fields
        .iter()
        .map(|field| {
            let value = path_get(input, field.name).unwrap_or(&Value::Null);
            let text = match field.kind {
                Kind::Lines => value
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default(),
                Kind::Bytes => value.as_u64().map(format_bytes).unwrap_or_default(),
                Kind::TargetSlot(n) => value
                    .get(usize::from(n))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                Kind::Checkbox => {
                    if value.as_bool() == Some(true) {
                        "on".to_owned()
                    } else {
                        String::new()
                    }
                }
                Kind::Classes => value
                    .as_array()
                    .map(|classes| {
                        classes
                            .iter()
                            .map(|c| {
                                format!(
                                    "{} {}",
                                    c["name"].as_str().unwrap_or(""),
                                    c["share_percent"]
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default(),
                Kind::Databases => database_text(value),
                Kind::ClassRules => value
                    .as_array()
                    .map(|rules| {
                        rules
                            .iter()
                            .map(|r| {
                                let what = r["path_prefix"]
                                    .as_str()
                                    .or_else(|| r["network"].as_str())
                                    .unwrap_or("");
                                format!("{what} {}", r["class"].as_str().unwrap_or(""))
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default(),
                Kind::Ports => value
                    .as_array()
                    .map(|ports| {
                        ports
                            .iter()
                            .map(|p| {
                                let (public, container) = (&p["port"], &p["container_port"]);
                                let protocol = p["protocol"].as_str().unwrap_or("");
                                if public == container {
                                    format!("{protocol} {public}")
                                } else {
                                    format!("{protocol} {public}:{container}")
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default(),
                Kind::Cpu => value
                    .as_u64()
                    .map(|m| format!("{}", m as f64 / 1000.0))
                    .unwrap_or_default(),
                Kind::Env { secret } => value
                    .as_array()
                    .map(|vars| {
                        vars.iter()
                            .filter(|v| v["secret"].as_bool() == Some(secret))
                            .filter_map(|v| {
                                let name = v["name"].as_str()?;
                                Some(if secret {
                                    name.to_owned()
                                } else {
                                    format!("{name}={}", v["value"].as_str().unwrap_or(""))
                                })
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default(),
                _ => match value {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                },
            };
            (field.input_name().to_owned(), text)
        })
        .collect()
}

/// The input a field error belongs to: `aliases[2]` → `aliases`, `env[0].name` → `env`.
pub fn input_for_error<'a>(fields: &'a [Field], error_field: &str) -> Option<&'a str> {
    let base = error_field.split('[').next().unwrap_or(error_field);
    fields
        .iter()
        .find(|f| f.name == base || f.input_name() == base)
        .map(Field::input_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        Field {
            name: "primary_domain",
            kind: Kind::Text,
        },
        Field {
            name: "aliases",
            kind: Kind::Lines,
        },
        Field {
            name: "limits.memory_bytes",
            kind: Kind::Bytes,
        },
        Field {
            name: "limits.cpu_millis",
            kind: Kind::Cpu,
        },
        Field {
            name: "env",
            kind: Kind::Env { secret: false },
        },
        Field {
            name: "env",
            kind: Kind::Env { secret: true },
        },
        Field {
            name: "node_id",
            kind: Kind::Select(Options::NodesOrAutomatic),
        },
    ];

    #[test]
    fn form_text_becomes_input_json_and_back() {
        let form: BTreeMap<String, String> = [
            ("primary_domain", " a.org "),
            ("aliases", "www.a.org\n\n b.org \n"),
            ("limits.memory_bytes", "256M"),
            ("limits.cpu_millis", "0.5"),
            ("env", "MODE=prod\nEMPTY="),
            ("secret_env", "DB_PASSWORD=hunter2\nKEPT"),
            ("node_id", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let json = to_json(FIELDS, &form).unwrap();
        assert_eq!(json["primary_domain"], "a.org");
        assert_eq!(json["aliases"], json!(["www.a.org", "b.org"]));
        assert_eq!(
            json["limits"],
            json!({"memory_bytes": 268435456u64, "cpu_millis": 500})
        );
        assert_eq!(
            json["env"][3],
            json!({"name": "KEPT", "value": null, "secret": true})
        );
        assert_eq!(json["node_id"], Value::Null);

        let text = to_text(FIELDS, &json);
        assert_eq!(text["aliases"], "www.a.org\nb.org");
        assert_eq!(text["limits.memory_bytes"], "256M");
        assert_eq!(text["limits.cpu_millis"], "0.5");
        assert_eq!(text["env"], "MODE=prod\nEMPTY=");
        assert_eq!(
            text["secret_env"], "DB_PASSWORD\nKEPT",
            "secret values are never shown"
        );
    }

    #[test]
    fn exposed_ports_are_lines_of_protocol_and_ports_and_back() {
        let fields = [Field {
            name: "exposed_ports",
            kind: Kind::Ports,
        }];
        let form = BTreeMap::from([(
            "exposed_ports".to_owned(),
            "tcp 2222:22\n\n  UDP 5353 \n".to_owned(),
        )]);
        let input = to_json(&fields, &form).unwrap();
        assert_eq!(
            input["exposed_ports"],
            json!([{"protocol": "tcp", "port": 2222, "container_port": 22},
                   {"protocol": "udp", "port": 5353, "container_port": 5353}])
        );
        assert_eq!(
            to_text(&fields, &input)["exposed_ports"],
            "tcp 2222:22\nudp 5353"
        );
        for bad in [
            "tcp",
            "tcp x",
            "tcp 70000",
            "sctp 1",
            "tcp 1:",
            "tcp; drop 1",
            "tcp 22:x",
        ] {
            let form = BTreeMap::from([("exposed_ports".to_owned(), bad.to_owned())]);
            let errors = to_json(&fields, &form).unwrap_err();
            assert_eq!(errors.0[0].field, "exposed_ports", "{bad}");
            assert_eq!(errors.0[0].code, "ports.line", "{bad}");
        }
    }

    #[test]
    fn bad_text_is_reported_against_its_input() {
        let form: BTreeMap<String, String> = [("limits.memory_bytes", "lots"), ("env", "NOEQUALS")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let errors = to_json(FIELDS, &form).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limits.memory_bytes", "limits.cpu_millis", "env"]);
        assert_eq!(input_for_error(FIELDS, "aliases[3]"), Some("aliases"));
        assert_eq!(input_for_error(FIELDS, "env[0].name"), Some("env"));
    }

    #[test]
    fn databases_read_one_per_line_and_are_written_back_the_same_way() {
        let read = database_lines(
            "wordpress mariadb 10.11 quota=2G memory=512M cpu=0.5\n\nshop postgresql 15",
        )
        .unwrap();
        assert_eq!(
            read,
            json!([
                {"name": "wordpress", "engine": "mariadb", "version": "10.11",
                 "quota_bytes": 2u64 << 30,
                 "limits": {"memory_bytes": 512u64 << 20, "cpu_millis": 500, "pids": 128}},
                {"name": "shop", "engine": "postgresql", "version": "15"}
            ])
        );
        let written = database_text(&read);
        assert_eq!(database_lines(&written).unwrap(), read, "{written}");
        for bad in [
            "wordpress mariadb",
            "shop postgresql 15 size=2G",
            "shop postgresql 15 quota=lots",
        ] {
            let error = database_lines(bad).unwrap_err();
            assert!(
                error.message.contains(bad.split(' ').next().unwrap()),
                "{bad}: {error:?}"
            );
        }
    }
}
