//! The crate boundaries (ARCHITECTURE.md, "Crates"), checked on the
//! resolved dependency graph. The manifests already make a forbidden import
//! fail to compile; this test also catches what a manifest does not show: a
//! forbidden crate pulled in through another dependency, or a new direct
//! dependency that crosses a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The product crates and what each may never link, directly or through
/// another dependency.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "omnistock-ledger",
        &[
            "tokio",
            "axum",
            "hyper",
            "redis",
            "serde",
            "serde_json",
            "metrics",
            "omnistock-feeds",
            "omnistock-store",
            "omnistock-engine",
        ],
    ),
    (
        "omnistock-feeds",
        &[
            "tokio",
            "axum",
            "hyper",
            "redis",
            "serde",
            "serde_json",
            "omnistock-store",
            "omnistock-engine",
        ],
    ),
    (
        "omnistock-store",
        &["axum", "hyper", "utoipa", "omnistock-engine", "omnistock"],
    ),
    (
        "omnistock-engine",
        &["axum", "hyper", "utoipa", "serde_json", "omnistock"],
    ),
];

/// The only product crate that may name `redis` as a dependency of its own.
const REDIS_OWNER: &str = "omnistock-store";
const PRODUCT: &[&str] = &[
    "omnistock",
    "omnistock-ledger",
    "omnistock-feeds",
    "omnistock-store",
    "omnistock-engine",
];

struct Graph {
    /// Package id -> name.
    names: BTreeMap<String, String>,
    /// Package id -> the ids it links (normal dependencies only: what ends
    /// up in the crate, not its build scripts or tests).
    normal: BTreeMap<String, Vec<String>>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let names = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (text(&p["id"]), text(&p["name"])))
        .collect();
    let normal = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .any(|kind| kind["kind"].is_null())
                })
                .map(|dep| text(&dep["pkg"]))
                .collect();
            (text(&node["id"]), deps)
        })
        .collect();
    Graph { names, normal }
}

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

impl Graph {
    fn id(&self, name: &str) -> &str {
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.as_str())
            .unwrap_or_else(|| panic!("no package {name} in the workspace"))
    }

    /// The names of everything `name` links, itself excluded.
    fn linked(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.id(name).to_owned()];
        while let Some(id) = stack.pop() {
            for dep in self.normal.get(&id).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }

    fn direct(&self, name: &str) -> BTreeSet<String> {
        self.normal[self.id(name)]
            .iter()
            .map(|id| self.names[id].clone())
            .collect()
    }
}

#[test]
fn no_layer_links_what_its_rules_forbid() {
    let graph = graph();
    for (krate, forbidden) in FORBIDDEN {
        let linked = graph.linked(krate);
        let crossing: Vec<_> = forbidden.iter().filter(|f| linked.contains(**f)).collect();
        assert!(
            crossing.is_empty(),
            "{krate} links {crossing:?}, which its layer must not (ARCHITECTURE.md, Crates)"
        );
    }
}

#[test]
fn only_the_store_names_redis() {
    let graph = graph();
    for krate in PRODUCT {
        let names_redis = graph.direct(krate).contains("redis");
        assert_eq!(
            names_redis,
            *krate == REDIS_OWNER,
            "{krate}: only {REDIS_OWNER} may depend on redis"
        );
    }
}

#[test]
fn the_layers_stack_in_one_direction() {
    let graph = graph();
    // Each layer's workspace dependencies, as the architecture draws them.
    let expected: &[(&str, &[&str])] = &[
        ("omnistock-ledger", &[]),
        ("omnistock-feeds", &["omnistock-ledger"]),
        ("omnistock-store", &["omnistock-ledger"]),
        (
            "omnistock-engine",
            &["omnistock-feeds", "omnistock-ledger", "omnistock-store"],
        ),
    ];
    for (krate, layers) in expected {
        let own: Vec<String> = graph
            .direct(krate)
            .into_iter()
            .filter(|name| PRODUCT.contains(&name.as_str()))
            .collect();
        assert_eq!(own, *layers, "{krate} depends on the wrong layers");
    }
}
