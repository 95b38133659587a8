//! The licences of what the `alveole` binary is built from, kept in `licenses.json` (the
//! platform inventory shows them) and checked here against the dependency tree as cargo
//! resolves it. `ALVEOLE_UPDATE_LICENSES=1 cargo test -p alveole-panel --test licenses`
//! writes the file anew.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Every package the binary links (normal dependencies, for Linux on x86-64), with its
/// licence, sorted by name and version.
fn components() -> Vec<Value> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "{output:?}");
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages: BTreeMap<&str, &Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let binary = packages
        .values()
        .find(|p| p["name"] == "alveole")
        .expect("the alveole package")["id"]
        .as_str()
        .unwrap();
    // Walk normal dependencies only: build and dev dependencies do not ship.
    let mut seen = BTreeSet::new();
    let mut todo = vec![binary];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let mut components: Vec<Value> = seen
        .into_iter()
        .map(|id| {
            let package = packages[id];
            serde_json::json!({
                "name": package["name"],
                "version": package["version"],
                "license": package["license"].as_str().unwrap_or("(no licence declared)"),
            })
        })
        .collect();
    components.sort_by_key(|c| (c["name"].to_string(), c["version"].to_string()));
    components
}

#[test]
fn the_licence_list_matches_the_dependency_tree() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/licenses.json");
    let wanted = serde_json::to_string_pretty(&components()).unwrap() + "\n";
    if std::env::var_os("ALVEOLE_UPDATE_LICENSES").is_some() {
        std::fs::write(path, &wanted).unwrap();
    }
    let kept = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        kept == wanted,
        "crates/panel/licenses.json is out of date: ALVEOLE_UPDATE_LICENSES=1 cargo test -p alveole-panel --test licenses"
    );
    // Everything alveole ships is free software with a declared licence.
    let list: Vec<Value> = serde_json::from_str(&kept).unwrap();
    assert!(list.len() > 100);
    for component in &list {
        let expression = component["license"].as_str().unwrap();
        for id in expression
            .split(|c: char| c == '(' || c == ')' || c == '/' || c.is_whitespace())
            .filter(|t| !t.is_empty() && !["OR", "AND", "WITH"].contains(t))
        {
            assert!(
                FREE.contains(&id),
                "{component}: {id} is not a known free licence"
            );
        }
    }
}

/// Free software licences (FSF and OSI approved) met in the tree, one exception, and one open
/// data licence: CDLA-Permissive-2.0, for webpki-roots (Mozilla's root certificates as data,
/// through the OpenID Connect client's HTTP client).
const FREE: &[&str] = &[
    "AGPL-3.0-or-later",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "ISC",
    "LLVM-exception",
    "MIT",
    "MIT-0",
    "MPL-2.0",
    "Unicode-3.0",
    "Unlicense",
    "Zlib",
];
