//! The architecture rules that a compiler cannot see on its own, checked:
//! the crate boundaries (ARCHITECTURE.md, "Crates") on the resolved
//! dependency graph; transports writing to the ledger only through the
//! engine; the code map naming every source file and only files that
//! exist; no tracker references in the docs and the code.
//!
//! The crate boundaries are checked on the resolved dependency graph. The manifests already make a forbidden import
//! fail to compile; this test also catches what a manifest does not show: a
//! forbidden crate pulled in through another dependency, or a new direct
//! dependency that crosses a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
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
        "omnistock-cluster",
        &[
            "tokio",
            "axum",
            "hyper",
            "redis",
            "serde",
            "serde_json",
            "metrics",
            "omnistock-ledger",
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
        &[
            "axum",
            "hyper",
            "http",
            "utoipa",
            "omnistock-engine",
            "omnistock",
        ],
    ),
    // `http` is where status codes live: no engine type can name one.
    (
        "omnistock-engine",
        &["axum", "hyper", "http", "utoipa", "serde_json", "omnistock"],
    ),
];

/// The only product crate that may name `redis` as a dependency of its own.
const REDIS_OWNER: &str = "omnistock-store";
const PRODUCT: &[&str] = &[
    "omnistock",
    "omnistock-ledger",
    "omnistock-cluster",
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
fn the_test_harness_is_never_linked_into_the_product() {
    let graph = graph();
    for krate in PRODUCT {
        assert!(
            !graph.linked(krate).contains("omnistock-testkit"),
            "{krate} links omnistock-testkit: it is a dev-dependency only"
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
        ("omnistock-cluster", &[]),
        (
            "omnistock-store",
            &["omnistock-cluster", "omnistock-ledger"],
        ),
        (
            "omnistock-engine",
            &[
                "omnistock-cluster",
                "omnistock-feeds",
                "omnistock-ledger",
                "omnistock-store",
            ],
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

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, as a path relative to the repository root.
fn rust_sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root()).expect("under the root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The product's source files: `src/` and every crate's `src/`.
fn product_sources() -> Vec<String> {
    let mut files = Vec::new();
    rust_sources(&root().join("src"), &mut files);
    for krate in std::fs::read_dir(root().join("crates")).expect("crates/") {
        rust_sources(&krate.expect("a crate").path().join("src"), &mut files);
    }
    files.sort();
    files
}

/// The paths the code map names: every backticked path in the first cell of
/// a table row of ARCHITECTURE.md's "Code map" section (a path ending in
/// `/` names a directory and covers what is under it).
fn code_map_paths() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("## Code map").expect("a Code map section");
    let section = &text[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut paths = Vec::new();
    for line in section[..end].lines() {
        let Some(first_cell) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
            continue;
        };
        paths.extend(
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|p| p.contains('/'))
                .map(str::to_owned),
        );
    }
    paths
}

#[test]
fn the_code_map_names_every_source_file_and_only_files_that_exist() {
    let named = code_map_paths();
    assert!(
        named.len() > 40,
        "the code map names only {} paths",
        named.len()
    );
    let missing: Vec<_> = named.iter().filter(|p| !root().join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map names files that do not exist: {missing:?}"
    );
    let unmapped: Vec<_> = product_sources()
        .into_iter()
        .filter(|file| {
            !named
                .iter()
                .any(|p| p == file || (p.ends_with('/') && file.starts_with(p.as_str())))
        })
        .collect();
    assert!(
        unmapped.is_empty(),
        "source files missing from ARCHITECTURE.md's code map: {unmapped:?}"
    );
}

/// The ledger's writes: a transport calls them only through the engine,
/// which carries the durability promise.
const LEDGER_WRITES: &[&str] = &[
    "reserve",
    "reserve_with_origin",
    "commit",
    "release",
    "extend",
    "transfer",
    "sell",
    "count",
    "set_display",
    "receive",
    "expect_incoming",
    "adjust",
    "return_units",
    "put_location",
    "put_group",
    "put_policy",
    "tick",
    "expire_due",
    "restore",
    "set_change_listener",
    "set_cursor_lineage",
];

/// The ledger writes `source` calls directly (whitespace ignored, so a call
/// split over lines is found): `ledger.write(` or `ledger().write(`.
fn ledger_writes(source: &str) -> Vec<&'static str> {
    let compact: String = source.split_whitespace().collect();
    LEDGER_WRITES
        .iter()
        .filter(|write| {
            ["ledger.", "ledger()."]
                .iter()
                .any(|via| compact.contains(&format!("{via}{write}(")))
        })
        .copied()
        .collect()
}

#[test]
fn the_scan_finds_a_ledger_write() {
    assert_eq!(
        ledger_writes("state\n    .ledger()\n    .count(&request, now, None)"),
        ["count"]
    );
    assert_eq!(ledger_writes("ledger.reserve(&r, now, None)"), ["reserve"]);
    assert!(ledger_writes("state.ledger().position_count()").is_empty());
    assert!(ledger_writes("engine.write(|w| w.count(&r, None))").is_empty());
}

#[test]
fn transports_write_to_the_ledger_only_through_the_engine() {
    let mut files = Vec::new();
    rust_sources(&root().join("src"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let faults: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let source = std::fs::read_to_string(root().join(file)).expect("source");
            let writes = ledger_writes(&source);
            (!writes.is_empty()).then(|| format!("{file} writes to the ledger: {writes:?}"))
        })
        .collect();
    assert!(
        faults.is_empty(),
        "go through the engine (Engine::write, its operations): {faults:#?}"
    );
}

#[test]
fn docs_and_code_name_no_tracker_issue() {
    let mut files: Vec<String> = [
        "README.md",
        "ARCHITECTURE.md",
        "RELIABILITY.md",
        "BENCHMARKS.md",
    ]
    .map(str::to_owned)
    .into();
    files.extend(product_sources());
    let faults: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(root().join(file)).expect("a file");
            text.lines()
                .enumerate()
                .filter(|(_, line)| names_an_issue(line))
                .map(|(n, line)| format!("{file}:{}: {}", n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(faults.is_empty(), "tracker references: {faults:#?}");
}

/// "issue 12", "Issue #3", "(#45)": how a tracker item is named.
fn names_an_issue(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let after_issue = lower.split("issue").skip(1).any(|rest| {
        let rest = rest.trim_start_matches([' ', '#']);
        rest.starts_with(|c: char| c.is_ascii_digit())
    });
    let hash_number = lower
        .split("(#")
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    after_issue || hash_number
}

#[test]
fn the_issue_scan_finds_tracker_references() {
    assert!(names_an_issue("see issue 12"));
    assert!(names_an_issue("Issue #3 says"));
    assert!(names_an_issue("fixed (#45)"));
    assert!(!names_an_issue("an issue with 2 parts"));
}

/// Longest a production function may be, from its `fn` line to its closing
/// brace: a function a reader takes in at once.
const MAX_FUNCTION_LINES: usize = 70;

/// The functions of `source` longer than `max` lines, as (name, first line,
/// lines). Stops at the first `#[cfg(test)]` (unit tests may be longer).
/// Braces are counted as text: a brace inside a string literal that is not
/// balanced within it would mislead it (none is, today).
fn long_functions(source: &str, max: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = source
        .lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect();
    let mut long = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let Some(name) = function_name(lines[index]) else {
            index += 1;
            continue;
        };
        let (mut depth, mut opened, mut end) = (0_i64, false, index);
        for (offset, line) in lines[index..].iter().enumerate() {
            for c in line.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            end = index + offset;
            let declaration_only = !opened && line.trim_end().ends_with(';');
            if (opened && depth <= 0) || declaration_only {
                break;
            }
        }
        let length = end - index + 1;
        if opened && length > max {
            long.push((name, index + 1, length));
        }
        index = if opened { end + 1 } else { index + 1 };
    }
    long
}

/// `Some(name)` when `line` starts a function (`pub`, `async`, `const`
/// qualifiers allowed).
fn function_name(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    for qualifier in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[test]
fn the_length_scan_measures_functions() {
    let source = "fn short() {\n    1;\n}\n\npub async fn long(x: u8) {\n    if x > 0 {\n        2;\n    }\n    3;\n}\nfn declared();\n#[cfg(test)]\nfn in_tests() {\n\n\n\n\n\n}\n";
    assert_eq!(long_functions(source, 5), [("long".to_owned(), 5, 6)]);
    assert!(long_functions(source, 6).is_empty());
    assert_eq!(
        function_name("    pub(crate) const fn as_str(self)"),
        Some("as_str".into())
    );
    assert_eq!(function_name("let f = 1;"), None);
}

#[test]
fn no_production_function_is_longer_than_a_reader_takes_in_at_once() {
    let mut files = product_sources();
    rust_sources(&root().join("loadtest").join("src"), &mut files);
    assert!(files.len() > 60, "found only {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter(|file| !file.contains("/tests/") && !file.ends_with("tests.rs"))
        .flat_map(|file| {
            let source = std::fs::read_to_string(root().join(file)).expect("source");
            long_functions(&source, MAX_FUNCTION_LINES)
                .into_iter()
                .map(move |(name, line, length)| format!("{file}:{line} {name}: {length} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them): {long:#?}"
    );
}
