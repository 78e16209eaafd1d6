//! The OpenAPI document against the code. The routes come from the router's
//! own table (`http::route_specs`: the router is built from it, so a route
//! cannot be served without being listed), and what each handler reads
//! comes from its signature: path parameters from the route's pattern (and
//! the handler's path type), query parameters from the serde fields of its
//! `ApiQuery<T>` (required when serde refuses their absence), headers from
//! its header extractors, the body from `ApiJson<T>` / `OptionalApiJson<T>`
//! (schema and fields) or the raw body. The document must declare exactly
//! that: each parameter by name, place (`in`), `required` and type; the
//! body with its schema; the bearer scheme where the handler authenticates.
//! Every route is documented, `/openapi.json` and `/docs` included (no
//! exclusions), and the document lists no route the router does not serve.
//!
//! Handlers that take the whole `HeaderMap` say in their signature only that
//! they read headers: which ones is listed here (`HEADER_MAP_READS`), and
//! `handlers_read_only_the_headers_listed` holds that list to the sources.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use omnistock::http::probe::{Shape, ValueKind};
use omnistock::http::{Extracted, RouteSpec, openapi, route_specs};
use omnistock::server::config::{Durability, ServeConfig};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use support::RedisServer;
use support::engine::{base_url, start_engine};

const ADMIN: &str = "openapi-test-admin-key-0123";

/// How a header read from a `HeaderMap` is documented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderDoc {
    /// A header parameter of the operation.
    Parameter,
    /// HTTP content negotiation (`Accept-Encoding`): not a parameter.
    Negotiation,
    /// The request body's media type: the body's content types say it.
    BodyMediaType,
}

/// The handlers that take the whole `HeaderMap`, and the headers each reads.
const HEADER_MAP_READS: &[(&str, &[(&str, HeaderDoc)])] = &[
    (
        "routes::feeds::google",
        &[("accept-encoding", HeaderDoc::Negotiation)],
    ),
    (
        "routes::feeds::meta",
        &[("accept-encoding", HeaderDoc::Negotiation)],
    ),
    (
        "routes::streams::availability",
        &[("last-event-id", HeaderDoc::Parameter)],
    ),
    (
        "routes::stock::import",
        &[("content-type", HeaderDoc::BodyMediaType)],
    ),
];

fn header_map_reads(handler: &str) -> Option<&'static [(&'static str, HeaderDoc)]> {
    HEADER_MAP_READS
        .iter()
        .find(|(name, _)| handler.ends_with(name))
        .map(|(_, reads)| *reads)
}

fn document() -> Value {
    serde_json::from_str(&openapi::document()).expect("the document is JSON")
}

/// A parameter as the handler reads it or as the document declares it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Param {
    /// `path`, `query` or `header`.
    place: String,
    /// Lower-cased for headers (their names are case-insensitive).
    name: String,
}

#[derive(Clone, Debug)]
struct ParamUse {
    required: bool,
    /// The JSON Schema types allowed (declared), or the one expected.
    types: Vec<String>,
}

fn key(place: &str, name: &str) -> Param {
    Param {
        place: place.into(),
        name: if place == "header" {
            name.to_ascii_lowercase()
        } else {
            name.into()
        },
    }
}

/// `{name}` segments of a route pattern, in order.
fn pattern_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*').to_string())
        .collect()
}

/// The JSON Schema types a schema allows (`type` as a string or a list).
fn schema_types(schema: &Value) -> Vec<String> {
    match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// What the handler of `spec` reads, as parameters and a body, or what is
/// wrong with it.
struct Reads {
    params: BTreeMap<Param, ParamUse>,
    caller: bool,
    body: Option<BodyRead>,
}

enum BodyRead {
    Json {
        schema: String,
        required: bool,
        fields: Option<Vec<&'static str>>,
    },
    Raw,
}

fn reads(spec: &RouteSpec, errors: &mut Vec<String>) -> Reads {
    let mut reads = Reads {
        params: BTreeMap::new(),
        caller: false,
        body: None,
    };
    let path_names = pattern_params(spec.path);
    // Every `{name}` of the pattern is a required path parameter, read or not.
    for name in &path_names {
        reads.params.insert(
            key("path", name),
            ParamUse {
                required: true,
                types: vec!["string".into()],
            },
        );
    }
    let mut path_read = false;
    for extracted in &spec.extracts {
        match extracted {
            Extracted::Caller => reads.caller = true,
            Extracted::Path(shape) => {
                path_read = true;
                let count = match shape {
                    Shape::Scalar(_) => 1,
                    Shape::Tuple(n) => *n,
                    Shape::Struct(fields) => fields.len(),
                    Shape::Other(what) => {
                        errors.push(format!("path type of {}: {what}", spec.handler));
                        continue;
                    }
                };
                if let Shape::Struct(fields) = shape {
                    let named: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
                    if named != path_names {
                        errors.push(format!(
                            "{}: path fields {named:?}, route pattern {path_names:?}",
                            spec.handler
                        ));
                    }
                }
                if count != path_names.len() {
                    errors.push(format!(
                        "{} reads {count} path values, its route {} has {}",
                        spec.handler,
                        spec.path,
                        path_names.len()
                    ));
                }
            }
            Extracted::Query(Ok(fields)) => {
                for field in fields {
                    if let ValueKind::Other(what) = field.kind {
                        errors.push(format!(
                            "{}: query field `{}` is {what}, which a query string cannot carry",
                            spec.handler, field.name
                        ));
                    }
                    reads.params.insert(
                        key("query", field.name),
                        ParamUse {
                            required: field.required,
                            types: vec![field.kind.schema_type().into()],
                        },
                    );
                }
            }
            Extracted::Query(Err(why)) => {
                errors.push(format!("{}: query type not listable: {why}", spec.handler));
            }
            Extracted::Header { name, required } => {
                reads.params.insert(
                    key("header", name),
                    ParamUse {
                        required: *required,
                        types: vec!["string".into()],
                    },
                );
            }
            Extracted::Origin => {
                reads.params.insert(
                    key("header", "Origin"),
                    ParamUse {
                        required: false,
                        types: vec!["string".into()],
                    },
                );
            }
            Extracted::HeaderMap => match header_map_reads(spec.handler) {
                None => errors.push(format!(
                    "{} takes the whole HeaderMap: list the headers it reads in HEADER_MAP_READS",
                    spec.handler
                )),
                Some(headers) => {
                    for (name, doc) in headers {
                        if *doc == HeaderDoc::Parameter {
                            reads.params.insert(
                                key("header", name),
                                ParamUse {
                                    required: false,
                                    types: vec!["string".into()],
                                },
                            );
                        }
                    }
                }
            },
            Extracted::JsonBody {
                schema,
                required,
                fields,
            } => {
                reads.body = Some(BodyRead::Json {
                    schema: schema.to_string(),
                    required: *required,
                    fields: match fields {
                        Shape::Struct(fields) => Some(fields.clone()),
                        _ => None,
                    },
                });
            }
            Extracted::RawBody => reads.body = Some(BodyRead::Raw),
        }
    }
    if !path_read && !path_names.is_empty() {
        errors.push(format!(
            "{} never reads the path parameters of {}",
            spec.handler, spec.path
        ));
    }
    if header_map_reads(spec.handler).is_some()
        && !spec
            .extracts
            .iter()
            .any(|e| matches!(e, Extracted::HeaderMap))
    {
        errors.push(format!(
            "{} is in HEADER_MAP_READS but takes no HeaderMap",
            spec.handler
        ));
    }
    reads
}

/// The parameters an operation declares.
fn declared_params(
    doc: &Value,
    operation: &Value,
    what: &str,
    errors: &mut Vec<String>,
) -> BTreeMap<Param, ParamUse> {
    let mut declared = BTreeMap::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let (Some(name), Some(place)) = (parameter["name"].as_str(), parameter["in"].as_str())
        else {
            errors.push(format!(
                "{what}: a parameter without name or in: {parameter}"
            ));
            continue;
        };
        let use_ = ParamUse {
            required: parameter["required"].as_bool().unwrap_or(false),
            types: schema_types(resolve(doc, &parameter["schema"])),
        };
        if declared.insert(key(place, name), use_).is_some() {
            errors.push(format!(
                "{what}: parameter `{name}` ({place}) declared twice"
            ));
        }
    }
    declared
}

/// The differences between what the handler reads and what the operation
/// documents.
fn compare(spec: &RouteSpec, doc: &Value, errors: &mut Vec<String>) {
    let method = spec.method.as_str().to_ascii_lowercase();
    let what = format!("{} {}", spec.method, spec.path);
    let Some(operation) = doc["paths"][spec.path].get(&method) else {
        errors.push(format!(
            "{what} is served ({}) but not in the document",
            spec.handler
        ));
        return;
    };
    let reads = reads(spec, errors);
    let declared = declared_params(doc, operation, &what, errors);
    for (param, read) in &reads.params {
        let Some(declared_use) = declared.get(param) else {
            let elsewhere: Vec<&str> = declared
                .keys()
                .filter(|p| p.name == param.name)
                .map(|p| p.place.as_str())
                .collect();
            errors.push(format!(
                "{what}: the handler reads {} `{}`; the document {}",
                param.place,
                param.name,
                if elsewhere.is_empty() {
                    "does not declare it".to_string()
                } else {
                    format!("declares it in {}", elsewhere.join(", "))
                }
            ));
            continue;
        };
        if declared_use.required != read.required {
            errors.push(format!(
                "{what}: {} `{}` is {} but documented as {}",
                param.place,
                param.name,
                if read.required {
                    "required"
                } else {
                    "optional"
                },
                if declared_use.required {
                    "required"
                } else {
                    "optional"
                },
            ));
        }
        for expected in &read.types {
            let allowed = declared_use.types.contains(expected)
                || (expected == "integer" && declared_use.types.iter().any(|t| t == "number"));
            if !allowed {
                errors.push(format!(
                    "{what}: {} `{}` is read as {expected}, documented as {:?}",
                    param.place, param.name, declared_use.types
                ));
            }
        }
    }
    for param in declared.keys() {
        if !reads.params.contains_key(param) {
            errors.push(format!(
                "{what}: the document declares {} `{}`, which the handler never reads",
                param.place, param.name
            ));
        }
    }
    // Authentication: the bearer scheme exactly where the handler checks a key.
    let bearer = operation["security"]
        .as_array()
        .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearer").is_some()));
    if bearer != reads.caller {
        errors.push(format!(
            "{what}: the handler {} an API key, the document {} the bearer scheme",
            if reads.caller {
                "requires"
            } else {
                "does not require"
            },
            if bearer {
                "requires"
            } else {
                "does not require"
            },
        ));
    }
    compare_body(&what, spec, operation, doc, reads.body.as_ref(), errors);
}

fn compare_body(
    what: &str,
    spec: &RouteSpec,
    operation: &Value,
    doc: &Value,
    body: Option<&BodyRead>,
    errors: &mut Vec<String>,
) {
    let documented = operation.get("requestBody");
    match (body, documented) {
        (None, None) => {}
        (None, Some(_)) => errors.push(format!(
            "{what}: a request body is documented, the handler reads none"
        )),
        (Some(_), None) => errors.push(format!(
            "{what}: the handler reads a body ({}), the document shows none",
            spec.handler
        )),
        (
            Some(BodyRead::Json {
                schema,
                required,
                fields,
            }),
            Some(documented),
        ) => {
            let content = &documented["content"];
            let Some(json) = content.get("application/json") else {
                errors.push(format!(
                    "{what}: JSON body not documented as application/json: {content}"
                ));
                return;
            };
            let reference = format!("#/components/schemas/{schema}");
            if json["schema"]["$ref"].as_str() != Some(reference.as_str()) {
                errors.push(format!(
                    "{what}: the body is {schema}, documented as {}",
                    json["schema"]
                ));
            }
            let documented_required = documented["required"].as_bool().unwrap_or(false);
            if documented_required != *required {
                errors.push(format!(
                    "{what}: the body is {}, documented as {}",
                    if *required { "required" } else { "optional" },
                    if documented_required {
                        "required"
                    } else {
                        "optional"
                    }
                ));
            }
            if let Some(fields) = fields {
                let read: BTreeSet<&str> = fields.iter().copied().collect();
                let properties: BTreeSet<&str> = doc["components"]["schemas"][schema]["properties"]
                    .as_object()
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if read != properties {
                    errors.push(format!(
                        "{what}: body {schema} reads fields {read:?}, its schema has {properties:?}"
                    ));
                }
            }
        }
        (Some(BodyRead::Raw), Some(documented)) => {
            let types: BTreeSet<&str> = documented["content"]
                .as_object()
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if types.is_empty() || types.contains("application/json") {
                errors.push(format!(
                    "{what}: a raw body must list its media types, found {types:?}"
                ));
            }
        }
    }
}

/// The test itself: every served operation documented as its handler reads
/// it, and nothing documented that is not served.
#[test]
fn the_document_declares_what_every_handler_reads() {
    let doc = document();
    let specs = route_specs();
    assert!(specs.len() >= 30, "the table lists every route");
    let mut errors = Vec::new();
    for spec in &specs {
        compare(spec, &doc, &mut errors);
    }
    let served: BTreeSet<(String, String)> = specs
        .iter()
        .map(|s| (s.path.to_string(), s.method.as_str().to_ascii_lowercase()))
        .collect();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if !served.contains(&(path.clone(), method.clone())) {
                errors.push(format!(
                    "the document lists {} {path}, which the router does not serve",
                    method.to_ascii_uppercase()
                ));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "the OpenAPI document and the handlers disagree:\n  {}",
        errors.join("\n  ")
    );
}

/// The handlers the table records are the real ones (the names come from
/// the handler functions' types).
#[test]
fn the_table_records_handlers_and_what_they_extract() {
    let specs = route_specs();
    let find = |method: &str, path: &str| {
        specs
            .iter()
            .find(|s| s.method.as_str() == method && s.path == path)
            .unwrap_or_else(|| panic!("{method} {path} served"))
    };
    let nearby = find("GET", "/v1/nearby");
    assert!(nearby.handler.ends_with("routes::availability::nearby"));
    let Some(Extracted::Query(Ok(fields))) = nearby
        .extracts
        .iter()
        .find(|e| matches!(e, Extracted::Query(_)))
    else {
        panic!("nearby reads a query: {:?}", nearby.extracts);
    };
    let summary: Vec<_> = fields
        .iter()
        .map(|f| (f.name, f.required, f.kind))
        .collect();
    assert_eq!(
        summary[..3],
        [
            ("sku", true, ValueKind::String),
            ("lat", true, ValueKind::Number),
            ("lon", true, ValueKind::Number),
        ]
    );
    let count = find("PUT", "/v1/stock/{location}/{sku}");
    assert!(count.handler.ends_with("routes::stock::count"));
    assert!(count.extracts.iter().any(|e| matches!(
        e,
        Extracted::Header {
            name: "Idempotency-Key",
            ..
        }
    )));
    assert!(count.extracts.iter().any(|e| matches!(
        e,
        Extracted::JsonBody { schema, required: true, .. } if schema == "CountBody"
    )));
    let commit = find("POST", "/v1/reservations/{id}/commit");
    assert!(commit.extracts.iter().any(|e| matches!(
        e,
        Extracted::JsonBody {
            required: false,
            ..
        }
    )));
    let healthz = find("GET", "/healthz");
    assert!(healthz.extracts.is_empty(), "{:?}", healthz.extracts);
}

/// Header names read in a file of `src/http/routes`, by
/// `headers.get(...)` / `headers.get_all(...)`: a string literal, or a
/// constant such as `header::ACCEPT_ENCODING`.
fn header_reads_in(source: &str) -> BTreeSet<String> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut names = BTreeSet::new();
    for call in ["headers.get(", "headers.get_all(", "headers().get("] {
        let mut rest = compact.as_str();
        while let Some(at) = rest.find(call) {
            rest = &rest[at + call.len()..];
            let argument = rest.split(')').next().unwrap_or_default();
            let name = match argument.strip_prefix('"') {
                Some(literal) => literal.trim_end_matches('"').to_ascii_lowercase(),
                None => argument
                    .rsplit("::")
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
                    .replace('_', "-"),
            };
            names.insert(name);
        }
    }
    names
}

#[test]
fn handlers_read_only_the_headers_listed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/routes");
    let mut found = 0;
    let mut errors = Vec::new();
    for entry in std::fs::read_dir(dir).expect("routes dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_string();
        let source = std::fs::read_to_string(&path).expect("source");
        let read = header_reads_in(&source);
        found += read.len();
        let listed: BTreeSet<String> = HEADER_MAP_READS
            .iter()
            .filter(|(handler, _)| handler.starts_with(&format!("routes::{module}::")))
            .flat_map(|(_, headers)| headers.iter().map(|(name, _)| name.to_string()))
            .collect();
        for name in read.difference(&listed) {
            errors.push(format!(
                "src/http/routes/{module}.rs reads header `{name}`, not in HEADER_MAP_READS"
            ));
        }
        for name in listed.difference(&read) {
            errors.push(format!(
                "HEADER_MAP_READS lists `{name}` for {module}.rs, which does not read it"
            ));
        }
    }
    assert!(found >= 3, "the scan finds the known header reads");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The scanner itself, on the shapes the sources use.
    assert_eq!(
        header_reads_in(
            "let v = headers\n  .get_all(header::ACCEPT_ENCODING);\n headers.get(\"Last-Event-ID\")"
        ),
        BTreeSet::from(["accept-encoding".to_string(), "last-event-id".to_string()])
    );
}

/// Parameters read from a `HeaderMap` and documented as parameters are in
/// the document, and the raw import body lists both media types it takes.
#[test]
fn hand_read_headers_and_media_types_are_documented() {
    let doc = document();
    let stream = &doc["paths"]["/v1/streams/availability"]["get"];
    assert!(
        stream["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["in"] == "header" && p["name"] == "Last-Event-ID"),
        "{stream}"
    );
    let import = &doc["paths"]["/v1/stock/import"]["post"]["requestBody"]["content"];
    for media_type in ["application/x-ndjson", "text/csv"] {
        assert!(import.get(media_type).is_some(), "{media_type}: {import}");
    }
}

/// Every error an operation can answer is documented with the problem body:
/// the key's (401, 403, 429) where the handler authenticates, the body's
/// where it reads one, 503 (with Retry-After) under `/v1`.
#[test]
fn error_responses_follow_what_handlers_extract() {
    let doc = document();
    let mut errors = Vec::new();
    for spec in route_specs() {
        let method = spec.method.as_str().to_ascii_lowercase();
        let responses = &doc["paths"][spec.path][&method]["responses"];
        let what = format!("{} {}", spec.method, spec.path);
        let mut expected: Vec<&str> = Vec::new();
        if spec.path.starts_with("/v1/") {
            expected.push("503");
        }
        for extracted in &spec.extracts {
            expected.extend(match extracted {
                Extracted::Caller => &["401", "403", "429"][..],
                Extracted::Path(_) | Extracted::Query(_) => &["422"][..],
                Extracted::Header { .. } => &["409", "422"][..],
                Extracted::JsonBody { .. } => &["400", "408", "413", "415", "422"][..],
                Extracted::RawBody => &["400", "415", "422"][..],
                Extracted::HeaderMap => &[][..],
                Extracted::Origin => &["403"][..],
            });
        }
        for status in expected {
            if responses.get(status).is_none() {
                errors.push(format!("{what}: {status} not documented"));
            }
        }
        for (status, response) in responses.as_object().into_iter().flatten() {
            let problem = response["content"].get("application/problem+json");
            if status.starts_with(['4', '5']) && spec.path.starts_with("/v1/") {
                if problem.map(|c| &c["schema"]["$ref"])
                    != Some(&"#/components/schemas/Problem".into())
                {
                    errors.push(format!("{what}: {status} without the problem body"));
                }
                if matches!(status.as_str(), "429" | "503")
                    && response["headers"].get("Retry-After").is_none()
                {
                    errors.push(format!("{what}: {status} without Retry-After"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The values the document gives what the code defines elsewhere: channel
/// names, id lengths, the largest quantity of a line.
#[test]
fn documented_values_follow_the_code() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let channels: Vec<&str> = omnistock::ledger::Channel::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    let documented: Vec<&str> = schemas["ChannelName"]["enum"]
        .as_array()
        .expect("channel names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(documented, channels);
    for id in ["Sku", "LocationCode", "GroupName"] {
        assert_eq!(
            schemas[id]["maxLength"].as_u64(),
            u64::try_from(omnistock::ledger::MAX_ID_CHARS).ok(),
            "{id}"
        );
    }
    // Unsigned integers: their real range, not int32's or int64's.
    let text = openapi::document();
    assert!(
        !text.contains("\"u-int"),
        "utoipa's unsigned format names are replaced"
    );
    let line_qty = &schemas["LineBody"]["properties"]["qty"];
    assert_eq!(line_qty["format"], "uint32");
    assert_eq!(line_qty["maximum"].as_u64(), Some(u64::from(u32::MAX)));
    let since = doc["paths"]["/v1/journal"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "since")
        .expect("since");
    assert_eq!(since["schema"]["maximum"].as_u64(), Some(u64::MAX));
    let qty = doc["paths"]["/v1/nearby"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "qty")
        .expect("qty");
    assert_eq!(
        qty["schema"]["maximum"].as_f64(),
        Some(f64::from(
            omnistock::ledger::LedgerConfig::default().max_qty_per_line
        ))
    );
}

/// The id schema (pattern and lengths) accepts exactly what the ledger's
/// validation accepts, on the edge cases: the pattern is run by Python's
/// `re` (what schemathesis generates with; Python 3 is needed by the test
/// command anyway).
#[test]
fn the_id_schema_matches_the_ledgers_validation() {
    let max = omnistock::ledger::MAX_ID_CHARS;
    let cases: Vec<String> = [
        "SKU-1",
        "a",
        "a b",
        "é/ü,x",
        " a",
        "a ",
        "a\tb",
        "\u{7f}",
        "\u{85}x",
        "x\u{9f}",
        "",
        "\u{a0}a",
        "a\u{3000}",
        "日本",
        "\u{feff}a",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["x".repeat(max), "x".repeat(max + 1), "é".repeat(max)])
    .collect();
    let matched = python_matches(openapi::ID_PATTERN, &cases, max);
    for (case, matched) in cases.iter().zip(matched) {
        assert_eq!(
            matched,
            omnistock::ledger::Sku::new(case).is_ok(),
            "{case:?}: the schema and the ledger disagree"
        );
    }
    // `locations` of /v1/availability/{sku}: comma-separated codes, empty
    // items skipped (the handler's split and filter).
    let doc = document();
    let parameters = doc["paths"]["/v1/availability/{sku}"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let list_pattern = parameters
        .iter()
        .find(|p| p["name"] == "locations")
        .and_then(|p| p["schema"]["pattern"].as_str())
        .expect("locations has a pattern");
    let lists: Vec<String> = [
        "",
        "A",
        "A,B",
        "A,,B,",
        ",A",
        "A, B",
        "A ,B",
        "A,\u{1}",
        "Paris 1,Lyon",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("{},B", "x".repeat(max)),
        format!("B,{}", "x".repeat(max + 1)),
    ])
    .collect();
    let matched = python_matches(list_pattern, &lists, usize::MAX);
    for (list, matched) in lists.iter().zip(matched) {
        let valid = list
            .split(',')
            .filter(|s| !s.is_empty())
            .all(|code| omnistock::ledger::LocationCode::new(code).is_ok());
        assert_eq!(
            matched, valid,
            "{list:?}: the schema and the handler disagree"
        );
    }
}

/// Whether each case matches `pattern` (JSON Schema: `re.search`) and has
/// at most `max_chars` characters, by Python 3's `re`.
fn python_matches(pattern: &str, cases: &[String], max_chars: usize) -> Vec<bool> {
    let script = "import json,re,sys\n\
        p,cases,hi=json.load(sys.stdin)\n\
        print(json.dumps([bool(re.search(p,c)) and (hi is None or len(c)<=hi) for c in cases]))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the test command needs Python 3)");
    let limit = (max_chars != usize::MAX).then_some(max_chars);
    let input = serde_json::json!([pattern, cases, limit]).to_string();
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("python3 answers");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Resolves `#/components/schemas/...`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .expect("a local schema reference");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Whether `value` conforms to `schema` (the subset utoipa writes: `$ref`,
/// `type`, `enum`, `properties`, `required`, `items`, `oneOf`/`anyOf`/
/// `allOf`). Strict about objects: a property the schema does not declare
/// is a difference, so the document cannot lag behind the responses.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for (keyword, any) in [("oneOf", true), ("anyOf", true), ("allOf", false)] {
        if let Some(branches) = schema[keyword].as_array() {
            let outcomes: Vec<Vec<String>> = branches
                .iter()
                .map(|branch| {
                    let mut branch_errors = Vec::new();
                    conforms(doc, branch, value, at, &mut branch_errors);
                    branch_errors
                })
                .collect();
            let ok = if any {
                outcomes.iter().any(Vec::is_empty)
            } else {
                outcomes.iter().all(Vec::is_empty)
            };
            if !ok {
                errors.push(format!(
                    "{at}: {value} matches no {keyword} branch: {outcomes:?}"
                ));
            }
        }
    }
    let types = schema_types(schema);
    if !types.is_empty() {
        let matches = types.iter().any(|t| match t.as_str() {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !matches {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(object) = value.as_object()
        && let Some(properties) = schema["properties"].as_object()
    {
        for (name, field) in object {
            match properties.get(name) {
                Some(field_schema) => {
                    conforms(doc, field_schema, field, &format!("{at}.{name}"), errors);
                }
                None => errors.push(format!("{at}: `{name}` is not in the schema")),
            }
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = required.as_str()
                && !object.contains_key(name)
            {
                errors.push(format!("{at}: required `{name}` is missing"));
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            conforms(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Fetches `path` and checks status, content type and body against the
/// document's response for that status.
async fn check_response(doc: &Value, http: &Client, base: &str, path: &str) -> (StatusCode, Value) {
    let response = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("body");
    let documented = &doc["paths"][path]["get"]["responses"][status.as_str()];
    assert!(
        documented.is_object(),
        "GET {path}: status {status} not documented"
    );
    let content = documented["content"].as_object().expect("content");
    let (media_type, media) = content
        .iter()
        .find(|(media_type, _)| {
            content_type.split(';').next() == media_type.split(';').next().map(str::trim)
        })
        .unwrap_or_else(|| panic!("GET {path}: {content_type} not documented: {content:?}"));
    assert!(
        content_type.contains(media_type.as_str()) || !media_type.contains(';'),
        "GET {path}: {content_type} vs {media_type}"
    );
    let value = if content_type.starts_with("application/json")
        || content_type.starts_with("application/problem+json")
    {
        serde_json::from_str(&text).expect("JSON")
    } else {
        Value::String(text)
    };
    let mut errors = Vec::new();
    conforms(doc, &media["schema"], &value, path, &mut errors);
    assert!(
        errors.is_empty(),
        "GET {path} ({status}) does not match its documented schema:\n{}",
        errors.join("\n")
    );
    (status, value)
}

/// The operational routes answer what the document says, in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_routes_answer_as_documented() {
    let doc = document();
    let running = start_engine(ServeConfig::default(), ADMIN).await;
    let base = base_url(&running);
    let http = Client::new();
    let (_, health) = check_response(&doc, &http, &base, "/healthz").await;
    assert_eq!(health["status"], "ok");
    let (status, ready) = check_response(&doc, &http, &base, "/readyz").await;
    assert_eq!(
        (status, &ready["store"]),
        (StatusCode::OK, &"memory".into())
    );
    let (_, metrics) = check_response(&doc, &http, &base, "/metrics").await;
    assert!(metrics.as_str().is_some_and(|m| m.contains("# TYPE")));
    let (_, spec) = check_response(&doc, &http, &base, "/openapi.json").await;
    assert_eq!(spec, doc);
    let (_, page) = check_response(&doc, &http, &base, "/docs").await;
    assert!(page.as_str().is_some_and(|p| p.contains("/openapi.json")));
    // Every operation of the table is served by the app (the router the
    // server runs): no request to one falls through to `no_route` or 405.
    for spec in route_specs() {
        let path = spec
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "1"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let response = http
            .request(spec.method.clone(), format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        // A problem body whose `code` is `no_route` (not the text: the
        // document lists every code, `no_route` too).
        let fell_through =
            serde_json::from_str::<Value>(&text).is_ok_and(|body| body["code"] == "no_route");
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !fell_through,
            "{} {}: {status} {text}",
            spec.method,
            spec.path
        );
    }
    // An error: the documented problem body.
    let (status, problem) = check_response(&doc, &http, &base, "/v1/locations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["code"], "unauthorized");
    running.shutdown().await.expect("shutdown");
}

/// `/readyz` with the Redis store, in every state it reports: loading
/// (Redis down at start, 503), ready, degraded (Redis gone, async: 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_with_a_store_answers_as_documented() {
    let doc = document();
    let mut redis = RedisServer::start();
    redis.kill();
    let config = ServeConfig {
        redis_url: Some(redis.url()),
        durability: Durability::Async,
        rate_limit_per_second: 0,
        ..ServeConfig::default()
    };
    let mut running = start_engine(config, ADMIN).await;
    let base = base_url(&running);
    let http = Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, loading) = check_response(&doc, &http, &base, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{loading}");
    assert_eq!(loading["status"], "loading", "{loading}");

    redis.restart();
    running
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("ready once Redis is up");
    let (status, ready) = check_response(&doc, &http, &base, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["write_behind"]["state"], "healthy", "{ready}");
    let location = http
        .put(format!("{base}/v1/locations/W1"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"kind": "warehouse", "name": "Nord"}))
        .send()
        .await
        .expect("location");
    assert_eq!(location.status(), StatusCode::OK);

    redis.kill();
    let mut degraded = Value::Null;
    for attempt in 0..100 {
        let count = http
            .put(format!("{base}/v1/stock/W1/SKU-{attempt}"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"on_hand": 1}))
            .send()
            .await
            .expect("count");
        assert_eq!(
            count.status(),
            StatusCode::OK,
            "a count is applied in memory"
        );
        let (_, now) = check_response(&doc, &http, &base, "/readyz").await;
        if now["status"] == "degraded" {
            degraded = now;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(degraded["status"], "degraded", "Redis down: degraded");
    assert!(
        degraded["write_behind"]["last_error"].is_string(),
        "{degraded}"
    );
    running.shutdown().await.expect("shutdown");
}

/// `/docs` renders request bodies with their schemas' fields (the page's
/// script resolves `$ref`s into `components.schemas`), run under Node with
/// the real document when Node is installed.
#[test]
fn the_docs_page_shows_request_body_fields() {
    let page = openapi::DOCS_PAGE;
    assert!(
        !page.contains("https://") && !page.contains("http://"),
        "the page loads nothing from elsewhere"
    );
    assert!(
        page.contains("components.schemas") || page.contains("'#/components/schemas/'"),
        "the page resolves schema references"
    );
    // The page's script runs under Node (scripts/test.sh installs it when
    // missing): a missing Node fails here, it does not skip the rendering.
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is needed to run the docs page's script (Debian package nodejs)"
    );
    let script = page
        .split("<script>")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .expect("the page's script");
    let dir = std::env::temp_dir().join(format!("omnistock-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let harness = dir.join("render.js");
    let document_file = dir.join("openapi.json");
    std::fs::write(&document_file, openapi::document()).expect("document");
    std::fs::write(
        &harness,
        format!(
            "const fs=require('fs');\n\
             const doc=JSON.parse(fs.readFileSync(process.argv[2],'utf8'));\n\
             const el={{innerHTML:''}};\n\
             globalThis.document={{getElementById:()=>el}};\n\
             globalThis.fetch=()=>Promise.resolve({{json:()=>Promise.resolve(doc)}});\n\
             {script}\n\
             setTimeout(()=>process.stdout.write(el.innerHTML),50);\n"
        ),
    )
    .expect("harness");
    let output = std::process::Command::new("node")
        .arg(&harness)
        .arg(&document_file)
        .output()
        .expect("node runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = String::from_utf8_lossy(&output.stdout);
    // The reservation's section: its body's fields, and the fields of the
    // lines inside it (a second level of $ref).
    let section = html
        .split("class=\"op\"")
        .find(|op| op.contains("<code>/v1/reservations</code>"))
        .expect("POST /v1/reservations rendered");
    for field in [
        "channel",
        "lines",
        "ttl_seconds",
        "customer_id",
        "sku",
        "location",
        "qty",
    ] {
        assert!(
            section.contains(&format!("<code>{field}</code>")),
            "field {field} shown in {section}"
        );
    }
    assert!(section.contains("Idempotency-Key"), "{section}");
    let nearby = html
        .split("class=\"op\"")
        .find(|op| op.contains("<code>/v1/nearby</code>"))
        .expect("GET /v1/nearby rendered");
    assert!(nearby.contains("query"), "{nearby}");
    assert!(!html.contains("$ref"), "no reference left unresolved");
}
