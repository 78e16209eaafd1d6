//! Input robustness, property-based: arbitrary bytes and arbitrary
//! structured values sent to every write route (JSON bodies, NDJSON and CSV
//! imports), arbitrary path segments, query strings and headers. The server
//! must never answer 5xx (a panic would be a 500 or a dropped connection),
//! every 4xx must be a problem body with a `code`, and a refused request
//! must change nothing (the journal head stays where it was).
//!
//! `PROPTEST_CASES` sets the number of cases (default 300; the scheduled
//! long run in RELIABILITY.md uses 20,000).

use crate::support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::engine::Running;

const ADMIN: &str = "fuzz-test-admin-key-0123456";

/// Routes that take a body, with the method.
const WRITES: [(&str, &str); 14] = [
    ("POST", "/v1/reservations"),
    ("POST", "/v1/reservations/1/commit"),
    ("POST", "/v1/reservations/1/extend"),
    ("POST", "/v1/reservations/1/transfer"),
    ("POST", "/v1/sales"),
    ("POST", "/v1/returns"),
    ("POST", "/v1/receipts"),
    ("POST", "/v1/adjustments"),
    ("POST", "/v1/movements/batch"),
    ("POST", "/v1/availability/batch"),
    ("PUT", "/v1/stock/S1/SKU-1"),
    ("PUT", "/v1/stock/S1/SKU-1/display"),
    ("PUT", "/v1/locations/S9"),
    ("PUT", "/v1/policies"),
];

/// JSON values shaped like the API's, with wrong types, sizes and names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("web"),
            Just("S1"),
            Just("SKU-1"),
            Just("store"),
            Just("-1"),
            Just("")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("channel".to_owned()),
                    Just("lines".to_owned()),
                    Just("sku".to_owned()),
                    Just("location".to_owned()),
                    Just("qty".to_owned()),
                    Just("ttl_seconds".to_owned()),
                    Just("on_hand".to_owned()),
                    Just("kind".to_owned()),
                    Just("name".to_owned()),
                    Just("display_only".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(Vec<u8>),
    Json(Value),
}

#[derive(Clone, Debug)]
struct Case {
    route: usize,
    body: Body,
    content_type: &'static str,
    idempotency_key: Option<String>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..WRITES.len(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
            json_value().prop_map(Body::Json),
        ],
        prop_oneof![
            Just("application/json"),
            Just("text/plain"),
            Just("application/x-ndjson")
        ],
        proptest::option::of("\\PC{0,80}"),
    )
        .prop_map(|(route, body, content_type, idempotency_key)| Case {
            route,
            body,
            content_type,
            idempotency_key,
        })
}

async fn server() -> Running {
    support::engine::start_engine(support::engine::unlimited(), ADMIN).await
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300)
}

/// Sends one request; checks the answer; returns whether it was refused.
async fn check(
    http: &Client,
    base: &str,
    running: &Running,
    method: Method,
    path: &str,
    build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Result<u16, String> {
    let head = running.state.ledger().journal_head();
    let request = build(
        http.request(method.clone(), format!("{base}{path}"))
            .bearer_auth(ADMIN),
    );
    let response = request
        .send()
        .await
        .map_err(|e| format!("{method} {path}: no answer: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_server_error() {
        return Err(format!("{method} {path}: {status}: {text}"));
    }
    if status.is_client_error() {
        let problem: Value = serde_json::from_str(&text)
            .map_err(|_| format!("{method} {path}: {status} without a problem body: {text}"))?;
        if !problem["code"].is_string() {
            return Err(format!("{method} {path}: {status} without a code: {text}"));
        }
        let after = running.state.ledger().journal_head();
        if after != head {
            return Err(format!(
                "{method} {path}: refused ({status}) but the journal moved"
            ));
        }
    }
    Ok(status.as_u16())
}

/// Counts answers by status, so a run shows it reached the parsers.
fn tally(
    statuses: &mut std::collections::BTreeMap<u16, usize>,
    result: Result<u16, String>,
    context: &str,
) {
    match result {
        Ok(status) => *statuses.entry(status).or_default() += 1,
        Err(failure) => panic!("{failure}\n{context}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bodies_never_500_and_refusals_change_nothing() {
    let running = server().await;
    let base = format!("http://{}", running.addr);
    let http = Client::new();
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let mut statuses = std::collections::BTreeMap::new();
    let strategy = proptest::collection::vec(case(), 1..8);
    let mut generated = Vec::new();
    // Generate on the runner (it shrinks nothing here: a failure prints the
    // exact request, which is enough to reproduce it with curl).
    for _ in 0..cases() {
        let tree = strategy.new_tree(&mut runner).expect("generate");
        generated.push(proptest::strategy::ValueTree::current(&tree));
    }
    for batch in generated {
        for case in batch {
            let (method, path) = WRITES[case.route];
            let method: Method = method.parse().expect("method");
            let bytes = match &case.body {
                Body::Bytes(bytes) => bytes.clone(),
                Body::Json(value) => value.to_string().into_bytes(),
            };
            let result = check(&http, &base, &running, method, path, |request| {
                let request = request
                    .header("content-type", case.content_type)
                    .body(bytes);
                match &case.idempotency_key {
                    Some(key) => match reqwest::header::HeaderValue::from_str(key) {
                        Ok(value) => request.header("idempotency-key", value),
                        Err(_) => request,
                    },
                    None => request,
                }
            })
            .await;
            tally(&mut statuses, result, &format!("case: {case:?}"));
        }
    }
    eprintln!("answers by status: {statuses:?}");
    let refused: usize = statuses.range(400..500).map(|(_, n)| n).sum();
    assert!(refused > 0, "the bodies reached the parsers: {statuses:?}");
    running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_paths_queries_and_imports_never_500() {
    let running = server().await;
    let base = format!("http://{}", running.addr);
    let http = Client::new();
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let mut statuses = std::collections::BTreeMap::new();
    let segment = "[A-Za-z0-9%._~!$&'()*+,;=:@-]{0,40}";
    let strategy = (
        segment,
        segment,
        "[ -~]{0,60}",
        proptest::collection::vec(any::<u8>(), 0..512),
        prop_oneof![Just("text/csv"), Just("application/x-ndjson")],
    );
    for _ in 0..cases() {
        let tree = strategy.new_tree(&mut runner).expect("generate");
        let (a, b, query, import, import_type) = proptest::strategy::ValueTree::current(&tree);
        let query = query.replace(['#', ' '], "");
        let gets = [
            format!("/v1/stock/{a}/{b}?{query}"),
            format!("/v1/availability/{a}?{query}"),
            format!("/v1/nearby?{query}"),
            format!("/v1/reservations/{a}"),
            format!("/v1/journal?{query}"),
            format!("/v1/feeds/google/local-inventory?{query}"),
            format!("/v1/feeds/meta/local-inventory?{query}"),
        ];
        for path in &gets {
            let result = check(&http, &base, &running, Method::GET, path, |request| request).await;
            tally(&mut statuses, result, path);
        }
        let result = check(
            &http,
            &base,
            &running,
            Method::POST,
            "/v1/stock/import",
            |request| {
                request
                    .header("content-type", import_type)
                    .body(import.clone())
            },
        )
        .await;
        tally(
            &mut statuses,
            result,
            &format!("import: {:?}", String::from_utf8_lossy(&import)),
        );
    }
    eprintln!("answers by status: {statuses:?}");
    assert!(statuses.range(400..500).count() > 0, "{statuses:?}");
    running.shutdown().await.expect("stop");
}

/// One answer to a request sent without the admin key's header added.
async fn answer_of(request: reqwest::RequestBuilder, what: &str) -> Result<(u16, String), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: no answer: {e}"))?;
    let status = response.status();
    // A live stream that was accepted never ends: its head is the answer.
    let text = if status.is_success() && what.contains("/v1/streams/") {
        String::new()
    } else {
        response.text().await.unwrap_or_default()
    };
    if status.is_server_error() {
        return Err(format!("{what}: {status}: {text}"));
    }
    if status.is_client_error() {
        let problem: Value = serde_json::from_str(&text)
            .map_err(|_| format!("{what}: {status} without a problem body: {text}"))?;
        if !problem["code"].is_string() {
            return Err(format!("{what}: {status} without a code: {text}"));
        }
    }
    Ok((status.as_u16(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_header_values_never_500_and_change_nothing_when_refused() {
    let running = server().await;
    let base = format!("http://{}", running.addr);
    let http = Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let mut statuses = std::collections::BTreeMap::new();
    // Header values as bytes: visible ASCII, spaces, tabs and bytes >= 0x80
    // (what HTTP/1.1 lets through; control bytes are refused by the client).
    let value = proptest::collection::vec(
        prop_oneof![0x20_u8..0x7f, Just(b'\t'), 0x80_u8..=0xff],
        0..80,
    );
    let strategy = (
        0_usize..7,
        value,
        prop_oneof![Just("Bearer "), Just("bearer "), Just(""), Just("Basic ")],
    );
    let body = json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "S1", "qty": 1}], "ttl_seconds": 60});
    for _ in 0..cases() {
        let tree = strategy.new_tree(&mut runner).expect("generate");
        let (which, bytes, scheme) = proptest::strategy::ValueTree::current(&tree);
        let Ok(fuzzed) = reqwest::header::HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let head = running.state.ledger().journal_head();
        let post = || {
            http.post(format!("{base}/v1/reservations"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(body.to_string())
        };
        let (what, request) = match which {
            0 => {
                let mut auth = scheme.as_bytes().to_vec();
                auth.extend_from_slice(&bytes);
                let Ok(auth) = reqwest::header::HeaderValue::from_bytes(&auth) else {
                    continue;
                };
                (
                    "authorization on POST /v1/reservations",
                    http.post(format!("{base}/v1/reservations"))
                        .header("authorization", auth)
                        .header("content-type", "application/json")
                        .body(body.to_string()),
                )
            }
            1 => (
                "idempotency-key on POST /v1/reservations",
                post().header("idempotency-key", fuzzed),
            ),
            2 => (
                "content-type on POST /v1/reservations",
                http.post(format!("{base}/v1/reservations"))
                    .bearer_auth(ADMIN)
                    .header("content-type", fuzzed)
                    .body(body.to_string()),
            ),
            3 => (
                "content-encoding on POST /v1/reservations",
                post().header("content-encoding", fuzzed),
            ),
            4 => (
                "accept-encoding on GET /v1/feeds/google/local-inventory",
                http.get(format!("{base}/v1/feeds/google/local-inventory"))
                    .bearer_auth(ADMIN)
                    .header("accept-encoding", fuzzed),
            ),
            5 => (
                "last-event-id on GET /v1/streams/availability",
                http.get(format!("{base}/v1/streams/availability"))
                    .bearer_auth(ADMIN)
                    .header("last-event-id", fuzzed),
            ),
            _ => (
                "cache-control and accept on GET /v1/stock/S1/SKU-1",
                http.get(format!("{base}/v1/stock/S1/SKU-1"))
                    .bearer_auth(ADMIN)
                    .header("cache-control", fuzzed.clone())
                    .header("accept", fuzzed),
            ),
        };
        let context = format!("{what}: {:?}", String::from_utf8_lossy(&bytes));
        let result = answer_of(request, &context).await;
        if let Ok((status, _)) = &result
            && (400..500).contains(status)
        {
            assert_eq!(
                running.state.ledger().journal_head(),
                head,
                "a refused request changed the journal: {context}"
            );
        }
        tally(&mut statuses, result.map(|(status, _)| status), &context);
    }
    eprintln!("answers by status: {statuses:?}");
    assert!(statuses.range(400..500).count() > 0, "{statuses:?}");
    running.shutdown().await.expect("stop");
}
