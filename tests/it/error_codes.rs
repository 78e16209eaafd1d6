//! The one table of error codes (`src/http/error_codes.rs`) against the
//! rules it exists for: every code has one status (4xx or 5xx), title,
//! `type` and description; no code twice; every code published in the
//! OpenAPI document, and every response that names a code documented
//! under that code's status; the codes clients already see keep their
//! spelling and status (`PUBLISHED`); every code is one some path of
//! `src/` answers with; and no code string is written in `src/` (or a
//! workspace crate's `crates/*/src/`) outside the table. `ApiError` takes a `Code`, not a string, so
//! the type system keeps codes out of its constructors; the source scan
//! covers what it cannot see (a code written into JSON by hand, a `type`
//! URI built elsewhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use omnistock::http::error_codes::{Code, TYPE_URI_PREFIX};
use omnistock::http::openapi;
use serde_json::Value;

/// The file that holds the table: the one place a code is written.
const TABLE_FILE: &str = "src/http/error_codes.rs";

/// The codes clients see, with their status: the Stable contract. A code
/// here must stay in the table with this spelling and this status; a new
/// code is added here when it ships (and then stays).
const PUBLISHED: &[(&str, u16)] = &[
    ("unauthorized", 401),
    ("forbidden", 403),
    ("rate_limited", 429),
    ("address_rate_limited", 429),
    ("key_in_url", 401),
    ("secret_key_from_browser", 403),
    ("publishable_key_not_allowed", 403),
    ("origin_not_allowed", 403),
    ("channel_not_allowed", 403),
    ("too_many_streams", 429),
    ("invalid_publishable_key", 422),
    ("invalid_origin", 422),
    ("invalid_cache_control", 422),
    ("no_route", 404),
    ("method_not_allowed", 405),
    ("malformed_json", 400),
    ("unreadable_body", 400),
    ("body_timeout", 408),
    ("body_too_large", 413),
    ("unsupported_media_type", 415),
    ("invalid_body", 422),
    ("invalid_path", 422),
    ("invalid_query", 422),
    ("invalid_idempotency_key", 422),
    ("invalid_id", 422),
    ("invalid_timestamp", 422),
    ("invalid_text", 422),
    ("unknown_channel", 422),
    ("too_many_items", 422),
    ("no_lines", 422),
    ("too_many_lines", 422),
    ("zero_quantity", 422),
    ("quantity_too_large", 422),
    ("ttl_out_of_range", 422),
    ("more_than_held", 422),
    ("duplicate_line", 422),
    ("transfer_to_same_location", 422),
    ("missing_reason", 422),
    ("zero_delta", 422),
    ("invalid_value", 422),
    ("unknown_location", 404),
    ("unknown_group", 404),
    ("reservation_not_found", 404),
    ("reservation_not_held", 409),
    ("line_not_in_reservation", 422),
    ("insufficient_stock", 409),
    ("insufficient_on_hand", 409),
    ("hold_cap_exceeded", 409),
    ("quantity_overflow", 422),
    ("too_many_incoming", 409),
    ("stale_version", 412),
    ("stale_count", 409),
    ("as_of_beyond_history", 409),
    ("as_of_in_future", 422),
    ("idempotency_key_reused", 422),
    ("idempotency_in_flight", 409),
    ("idempotency_store_full", 503),
    ("invalid_coordinates", 422),
    ("invalid_radius", 422),
    ("invalid_quantity", 422),
    ("invalid_limit", 422),
    ("invalid_row", 422),
    ("row_too_long", 422),
    ("invalid_kind", 422),
    ("invalid_pickup", 422),
    ("invalid_scope", 422),
    ("no_scopes", 422),
    ("pos_needs_locations", 422),
    ("too_many_keys", 422),
    ("key_not_found", 404),
    ("cursor_ahead", 409),
    ("invalid_format", 422),
    ("invalid_cursor", 422),
    ("invalid_coalesce", 422),
    ("invalid_last_event_id", 422),
    ("too_many_subscribers", 503),
    ("not_ready", 503),
    ("not_durable", 503),
    ("not_a_cluster", 404),
    ("cross_partition_not_supported", 501),
    ("partition_unavailable", 503),
    ("cluster_store_unavailable", 503),
    ("internal", 500),
];

/// What is wrong with a table, one line per fault (empty: nothing).
fn table_faults(table: &[Code]) -> Vec<String> {
    let mut faults = Vec::new();
    let mut strings = BTreeSet::new();
    let mut variants = BTreeSet::new();
    for &code in table {
        let text = code.as_str();
        if !variants.insert(code) {
            faults.push(format!("{code:?}: listed twice"));
        }
        if !strings.insert(text) {
            faults.push(format!("`{text}`: two rows have this code"));
        }
        let snake = text.starts_with(|c: char| c.is_ascii_lowercase())
            && text.ends_with(|c: char| c.is_ascii_lowercase())
            && text.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !text.contains("__");
        if !snake {
            faults.push(format!("`{text}`: not snake_case"));
        }
        let status = code.status().as_u16();
        if !(400..=599).contains(&status) {
            faults.push(format!("`{text}`: status {status} is not an error"));
        }
        if code.type_uri() != format!("{TYPE_URI_PREFIX}{text}") {
            faults.push(format!("`{text}`: type {}", code.type_uri()));
        }
        if code.title().trim().is_empty() {
            faults.push(format!("`{text}`: no title"));
        }
        if code.description().trim().len() < 10 {
            faults.push(format!("`{text}`: no description"));
        }
        // The document promises Retry-After on every 429 and 503.
        if matches!(status, 429 | 503) && code.retry_after_seconds().is_none() {
            faults.push(format!("`{text}`: {status} without Retry-After"));
        }
    }
    faults
}

#[test]
fn the_table_is_well_formed() {
    assert!(Code::ALL.len() >= 60, "{} codes", Code::ALL.len());
    let faults = table_faults(Code::ALL);
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The checks see a fault: here, a row listed twice (the same variant and
/// the same code string).
#[test]
fn the_table_check_finds_duplicates() {
    let mut doubled = Code::ALL.to_vec();
    doubled.push(Code::ReservationNotFound);
    let faults = table_faults(&doubled);
    assert!(
        faults
            .iter()
            .any(|f| f.contains("ReservationNotFound: listed twice"))
            && faults
                .iter()
                .any(|f| f.contains("`reservation_not_found`: two rows")),
        "{faults:?}"
    );
}

#[test]
fn published_codes_keep_their_spelling_and_status() {
    let table: BTreeMap<&str, u16> = Code::ALL
        .iter()
        .map(|code| (code.as_str(), code.status().as_u16()))
        .collect();
    let published: BTreeMap<&str, u16> = PUBLISHED.iter().copied().collect();
    assert_eq!(
        published.len(),
        PUBLISHED.len(),
        "PUBLISHED lists a code twice"
    );
    let mut faults = Vec::new();
    for (code, status) in &published {
        match table.get(code) {
            None => faults.push(format!("`{code}` is published but no longer in the table")),
            Some(now) if now != status => faults.push(format!(
                "`{code}` is published as {status}, the table says {now}"
            )),
            Some(_) => {}
        }
    }
    for code in table.keys() {
        if !published.contains_key(code) {
            faults.push(format!("`{code}` is new: add it to PUBLISHED"));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The document's `ProblemCode`: every code of the table, in table order,
/// each with its status and description; the problem body's `code` and
/// every other problem-like object (`code` with `detail`: batch results,
/// import rows) refer to it.
#[test]
fn every_code_is_documented_in_the_openapi_document() {
    let doc: Value = serde_json::from_str(&openapi::document()).expect("document");
    let schemas = &doc["components"]["schemas"];
    let schema = &schemas["ProblemCode"];
    assert_eq!(schema["type"], "string", "{schema}");
    let documented: Vec<&str> = schema["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let table: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(documented, table);
    let descriptions = schema["x-enum-descriptions"]
        .as_array()
        .expect("x-enum-descriptions");
    assert_eq!(descriptions.len(), Code::ALL.len());
    let text = schema["description"].as_str().expect("description");
    for (code, described) in Code::ALL.iter().zip(descriptions) {
        let status = code.status().as_u16();
        assert_eq!(
            described.as_str(),
            Some(format!("{status} {}", code.description()).as_str())
        );
        let line = format!("- `{code}` ({status}): {}", code.description());
        assert!(text.contains(&line), "{line} not in {text}");
    }

    fn problem_like<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Object(map) => {
                if let Some(properties) = map.get("properties").and_then(Value::as_object)
                    && properties.contains_key("detail")
                    && let Some(code) = properties.get("code")
                {
                    out.push((at.clone(), code));
                }
                for (key, inner) in map {
                    problem_like(inner, format!("{at}.{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    problem_like(inner, format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    problem_like(schemas, "schemas".into(), &mut found);
    let named: BTreeSet<&str> = found
        .iter()
        .filter_map(|(at, _)| at.split('.').nth(1))
        .collect();
    for expected in ["Problem", "BatchResult", "ImportRowError", "MovementResult"] {
        assert!(
            named.contains(expected),
            "{expected} not found in {named:?}"
        );
    }
    for (at, code) in found {
        assert_eq!(
            code["$ref"], "#/components/schemas/ProblemCode",
            "{at}.code: {code}"
        );
    }
}

/// A response whose description names a code (`` `code` ``) is documented
/// under that code's status: the annotations cannot drift from the table.
#[test]
fn responses_that_name_a_code_have_its_status() {
    let doc: Value = serde_json::from_str(&openapi::document()).expect("document");
    let mut named = 0;
    let mut faults = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for (status, response) in responses {
                let description = response["description"].as_str().unwrap_or_default();
                for code in Code::ALL {
                    if description.contains(&format!("`{code}`")) {
                        named += 1;
                        if code.status().as_str() != status {
                            faults.push(format!(
                                "{method} {path}: {status} names `{code}` ({})",
                                code.status().as_u16()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(named > 50, "only {named} responses name a code");
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// Every string literal of a Rust source, with its line: the text between
/// the quotes as written (escapes not decoded). Comments, char literals and
/// lifetimes are skipped; raw strings (`r#"…"#`) and byte or C strings
/// are literals too.
fn string_literals(source: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut literals = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}', '\''), or a lifetime.
            if at(i + 1) == '\\' {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            if raw && matches!(at(i), '"' | '#') {
                let mut hashes = 0;
                while at(i) == '#' {
                    hashes += 1;
                    i += 1;
                }
                if at(i) != '"' {
                    continue; // a raw identifier (`r#type`)
                }
                i += 1;
                let start_line = line;
                let begin = i;
                while i < chars.len() {
                    if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                literals.push((
                    start_line,
                    chars[begin..i.min(chars.len())].iter().collect(),
                ));
                i += 1 + hashes;
            }
            // `b"…"` and `c"…"`: the quote is read next, as any string.
        } else if c == '"' {
            i += 1;
            let start_line = line;
            let begin = i;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    if at(i + 1) == '\n' {
                        line += 1;
                    }
                    i += 1;
                } else if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            literals.push((
                start_line,
                chars[begin..i.min(chars.len())].iter().collect(),
            ));
            i += 1;
        } else {
            i += 1;
        }
    }
    literals
}

#[test]
fn the_literal_scanner_reads_rust() {
    let source = r####"
        // "in_a_comment"
        /* "in /* a nested */ block" */
        fn f<'a>(x: &'a str) -> char {
            let _ = ('"', '\'', '\\', b'"', '\u{22}');
            let _ = "plain \" quote";
            let _ = r#"raw "quoted" text"#;
            let _ = br"bytes";
            let r#type = b"byte string";
            "two
lines"; 'x'
        }
        const LAST: &str = "last";
    "####;
    let literals = string_literals(source);
    let texts: Vec<&str> = literals.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            r#"plain \" quote"#,
            r#"raw "quoted" text"#,
            "bytes",
            "byte string",
            "two\nlines",
            "last",
        ]
    );
    let lines: Vec<usize> = literals.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [6, 7, 8, 9, 10, 13]);
}

/// The faults of one source file: a literal that is a code, holds a quoted
/// code (JSON written by hand), or builds a problem `type` URI.
fn minted(file: &str, source: &str) -> Vec<String> {
    let mut faults = Vec::new();
    for (line, text) in string_literals(source) {
        for code in Code::ALL {
            let quoted = format!("\"{code}\"");
            let escaped = format!("\\\"{code}\\\"");
            if text == code.as_str() || text.contains(&quoted) || text.contains(&escaped) {
                faults.push(format!(
                    "{file}:{line}: {text:?} writes the code `{code}`: use Code::{code:?}"
                ));
            }
        }
        if text.contains("urn:omnistock:problem") {
            faults.push(format!(
                "{file}:{line}: {text:?} builds a problem type: use Code::type_uri"
            ));
        }
    }
    faults
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The product's sources: this crate's `src/` and every workspace crate's
/// (`crates/*/src`: the engine, ledger, store and feeds layers).
fn product_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for entry in std::fs::read_dir(root.join("crates")).expect("read crates") {
        let src = entry.expect("entry").path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    files
}

#[test]
fn no_code_is_written_outside_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = product_files(root);
    assert!(files.len() > 40, "found only {} files", files.len());
    let mut faults = Vec::new();
    let mut table_seen = false;
    for file in files {
        let name = file
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(&file).expect("source");
        if name == TABLE_FILE {
            // The scan sees codes where they are written: every code, in
            // the table's own file.
            table_seen = true;
            let faults = minted(&name, &source);
            for code in Code::ALL {
                assert!(
                    faults.iter().any(|f| f.contains(&format!("`{code}`"))),
                    "the scan does not see `{code}` in {TABLE_FILE}"
                );
            }
            continue;
        }
        faults.extend(minted(&name, &source));
    }
    assert!(table_seen, "{TABLE_FILE} not found");
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The `Code::Variant` paths of one source file, comments left out.
fn code_paths(source: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("Code::") {
            rest = &rest[at + "Code::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                paths.insert(name);
            }
        }
    }
    paths
}

/// Every code of the table is one some code path answers with: the
/// document lists no code a client can never see.
#[test]
fn every_code_is_answered_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut used = BTreeSet::new();
    for file in files {
        if file.ends_with(TABLE_FILE) {
            continue;
        }
        used.extend(code_paths(&std::fs::read_to_string(&file).expect("source")));
    }
    let unused: Vec<String> = Code::ALL
        .iter()
        .map(|code| format!("{code:?}"))
        .filter(|name| !used.contains(name))
        .collect();
    assert!(unused.is_empty(), "no code in src/ answers with {unused:?}");
    // The reader sees what it should: not a longer name, not a comment.
    let seen = code_paths("ApiError::new(Code::InvalidBody, x) // Code::Internal");
    assert_eq!(seen, BTreeSet::from(["InvalidBody".to_owned()]));
}

/// The scan finds each way of writing a code by hand.
#[test]
fn the_scan_finds_a_code_written_by_hand() {
    let cases = [
        r#"fn f() -> &'static str { "reservation_not_found" }"#,
        r#"const BODY: &[u8] = b"{\"code\":\"internal\"}";"#,
        r##"const BODY: &str = r#"{"code": "stale_version"}"#;"##,
        r#"fn t(c: &str) -> String { format!("urn:omnistock:problem:{c}") }"#,
    ];
    for case in cases {
        assert_eq!(minted("case.rs", case).len(), 1, "{case}");
    }
    let fine = [
        r#"fn f() -> Code { Code::ReservationNotFound }"#,
        r#"// "reservation_not_found" in a comment"#,
        r#"const DOC: &str = "the reservation was not found";"#,
    ];
    for case in fine {
        assert!(minted("case.rs", case).is_empty(), "{case}");
    }
}
