//! `/metrics` means what it says: it passes `promtool check metrics` (HELP
//! on every family, Prometheus naming rules), an idempotent replay is counted
//! as `replayed` and not as a new grant or refusal, counters that may stay at
//! zero are there from the start, and a streamed response (a feed, a live
//! stream) is recorded with all of its bytes and its whole duration, not
//! what it had when its head was sent.
//!
//! The recorder is process-wide, and every test of this binary runs in this
//! one process, in parallel. The test that compares exact counter deltas
//! has the recorder to itself (`support::metrics_gate`): no other test's
//! in-process engine runs while it does (engines in child processes have
//! recorders of their own). It still compares figures before and after, on
//! routes and keys of its own.

use crate::support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistock::server::metrics_catalog::CATALOG;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::engine::{Api, start_engine_alone, unlimited};
use support::metrics_gate::MetricsAlone;

const ADMIN: &str = "metrics-test-admin-key-0123";
const FEED_ROUTE: &str = "/v1/feeds/google/local-inventory";
const STREAM_ROUTE: &str = "/v1/streams/availability";

/// The sum of every sample of `name` whose labels include `labels` (0 when
/// there is none), from Prometheus text exposition.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all_match = labels
                .iter()
                .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")));
            all_match.then(|| sample.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().any(|line| {
        !line.starts_with('#')
            && (line.starts_with(&format!("{name} ")) || line.starts_with(&format!("{name}{{")))
            && labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
    })
}

/// `promtool check metrics` on `text`: its exit status and what it said.
/// Fails loudly when promtool is missing: this check may not be skipped.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}). This test needs it: install the Debian package \
                 `prometheus` (apt-get install prometheus) or run `bash scripts/test.sh`, \
                 which installs it"
            )
        });
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

async fn scrape(api: &Api) -> String {
    let response = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_count_replays_apart_and_cover_whole_streams() {
    let alone = MetricsAlone::take();
    let running = start_engine_alone(unlimited(), ADMIN, &alone).await;
    let state = Arc::clone(&running.state);
    let server = Api::of(&running, ADMIN);
    // Counters that may stay at zero are exported before their first event.
    let fresh = scrape(&server).await;
    for (name, labels) in [
        (
            "omnistock_reservations_total",
            vec![("outcome", "replayed")],
        ),
        ("omnistock_reservations_total", vec![("outcome", "granted")]),
        ("omnistock_reservations_expired_total", vec![]),
        ("omnistock_write_behind_flush_errors_total", vec![]),
        ("omnistock_writes_not_durable_total", vec![]),
        ("omnistock_import_rows_total", vec![("outcome", "failed")]),
    ] {
        assert!(
            has_series(&fresh, name, &labels),
            "{name} {labels:?} is missing before its first event"
        );
    }

    // A store with enough SKUs for a feed of some size.
    server
        .ok(
            Method::PUT,
            "/v1/locations/MS1",
            json!({"kind": "store", "name": "Metrics store"}),
        )
        .await;
    for i in 0..200 {
        server
            .ok(
                Method::PUT,
                &format!("/v1/stock/MS1/MET-{i:04}"),
                json!({"on_hand": 40 + i % 7}),
            )
            .await;
    }

    // A grant, then its replay; a refusal, then its replay.
    let outcomes = |text: &str| {
        [
            value(
                text,
                "omnistock_reservations_total",
                &[("outcome", "granted")],
            ),
            value(
                text,
                "omnistock_reservations_total",
                &[("outcome", "refused")],
            ),
            value(
                text,
                "omnistock_reservations_total",
                &[("outcome", "replayed")],
            ),
            value(text, "omnistock_oversell_refused_total", &[]),
        ]
    };
    let before = outcomes(&scrape(&server).await);
    let hold = json!({"channel": "web", "lines": [{"sku": "MET-0001", "location": "MS1", "qty": 2}], "ttl_seconds": 600});
    let (status, first) = server
        .call(
            Method::POST,
            "/v1/reservations",
            Some(hold.clone()),
            Some("metrics-cart-1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, replay) = server
        .call(
            Method::POST,
            "/v1/reservations",
            Some(hold),
            Some("metrics-cart-1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{replay}");
    assert_eq!(
        first["id"], replay["id"],
        "the replay is the same reservation"
    );
    let too_many = json!({"channel": "web", "lines": [{"sku": "MET-0002", "location": "MS1", "qty": 5000}], "ttl_seconds": 600});
    for _ in 0..2 {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/reservations",
                Some(too_many.clone()),
                Some("metrics-cart-2"),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    let after = outcomes(&scrape(&server).await);
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        delta,
        [1.0, 1.0, 2.0, 1.0],
        "granted, refused, replayed, oversell_refused: each replay counted once as replayed, \
         never as a new grant or refusal"
    );

    // A streamed feed: the bytes recorded are the whole body.
    let route = [("route", FEED_ROUTE)];
    let feed_before = scrape(&server).await;
    let response = server
        .http
        .get(format!("{}{FEED_ROUTE}", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("feed");
    assert_eq!(response.status(), StatusCode::OK);
    let feed = response.bytes().await.expect("feed body");
    assert!(
        feed.len() > 5_000,
        "a feed of 200 rows: {} bytes",
        feed.len()
    );
    let feed_after = scrape(&server).await;
    let bytes = value(
        &feed_after,
        "omnistock_http_response_body_bytes_total",
        &route,
    ) - value(
        &feed_before,
        "omnistock_http_response_body_bytes_total",
        &route,
    );
    assert!(
        bytes >= feed.len() as f64,
        "recorded {bytes} bytes for a feed of {} bytes",
        feed.len()
    );
    let requests = value(&feed_after, "omnistock_http_requests_total", &route)
        - value(&feed_before, "omnistock_http_requests_total", &route);
    assert_eq!(requests, 1.0, "the feed is counted once");

    // promtool passes on the scrape (every family has HELP, names are valid).
    let (passed, said) = promtool_check(&feed_after);
    println!(
        "promtool check metrics on {} lines: {}",
        feed_after.lines().count(),
        if said.trim().is_empty() {
            "no findings"
        } else {
            said.trim()
        }
    );
    assert!(passed, "promtool check metrics failed:\n{said}");
    for metric in CATALOG {
        if has_series(&feed_after, metric.name, &[])
            || has_series(&feed_after, &format!("{}_count", metric.name), &[])
        {
            assert!(
                feed_after.contains(&format!("# HELP {} ", metric.name)),
                "{} has no HELP",
                metric.name
            );
        }
    }

    // A live stream open for a known time: its recorded duration covers it
    // all, and its bytes are what the client got.
    let stream_before = scrape(&server).await;
    let opened = Instant::now();
    let mut stream = server
        .http
        .get(format!(
            "{}{STREAM_ROUTE}?sku=MET-0003&location=MS1&coalesce_ms=10",
            server.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    server
        .ok(Method::PUT, "/v1/stock/MS1/MET-0003", json!({"on_hand": 3}))
        .await;
    let mut received = 0usize;
    let first_event = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("an event in time")
        .expect("stream chunk")
        .expect("an event before the end");
    received += first_event.len();
    // Shutting down ends every live stream; the client reads it to its end.
    let shutdown = tokio::spawn(running.shutdown());
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the stream ends on shutdown")
        .expect("stream chunk")
    {
        received += chunk.len();
    }
    let open_s = opened.elapsed().as_secs_f64();
    shutdown.await.expect("join").expect("shutdown");
    let handle = state.metrics.as_ref().expect("a recorder");
    let stream_route = [("route", STREAM_ROUTE)];
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream_after = loop {
        let text = handle.render();
        let counted = value(&text, "omnistock_http_requests_total", &stream_route)
            - value(
                &stream_before,
                "omnistock_http_requests_total",
                &stream_route,
            );
        if counted >= 1.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let counted = value(
        &stream_after,
        "omnistock_http_requests_total",
        &stream_route,
    ) - value(
        &stream_before,
        "omnistock_http_requests_total",
        &stream_route,
    );
    assert_eq!(counted, 1.0, "the stream is counted once, when it ends");
    let seconds = value(
        &stream_after,
        "omnistock_http_request_duration_seconds_sum",
        &stream_route,
    ) - value(
        &stream_before,
        "omnistock_http_request_duration_seconds_sum",
        &stream_route,
    );
    assert!(
        seconds >= 0.6 && seconds <= open_s + 0.5,
        "recorded {seconds:.3} s for a stream open {open_s:.3} s (at least 0.6 s)"
    );
    let stream_bytes = value(
        &stream_after,
        "omnistock_http_response_body_bytes_total",
        &stream_route,
    ) - value(
        &stream_before,
        "omnistock_http_response_body_bytes_total",
        &stream_route,
    );
    assert!(
        stream_bytes >= received as f64 && received > 0,
        "recorded {stream_bytes} bytes, the client got {received}"
    );
    println!(
        "feed: {} bytes, recorded {bytes}; stream: open {open_s:.3} s, recorded {seconds:.3} s, \
         {received} bytes received, {stream_bytes} recorded",
        feed.len()
    );
}

/// Every metric name used in `src/` or `crates/*/src/` has its row (and
/// HELP) in the catalog, and the catalog names nothing that is not used.
#[test]
fn the_catalog_lists_every_metric_the_source_records() {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    // This crate's `src/` and every workspace crate's (the engine records
    // the reservation and write-behind metrics).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    for entry in std::fs::read_dir(root.join("crates")).expect("read crates") {
        let src = entry.expect("entry").path().join("src");
        if src.is_dir() {
            walk(&src, &mut files);
        }
    }
    let mut used = BTreeSet::new();
    for file in files {
        if file.ends_with("metrics_catalog.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for (at, _) in text.match_indices("\"omnistock_") {
            let name: String = text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    let catalog: BTreeSet<String> = CATALOG.iter().map(|m| m.name.to_owned()).collect();
    assert!(used.len() >= 20, "found only {used:?}");
    assert_eq!(
        used, catalog,
        "metric names in src/ and crates/*/src/ vs server::metrics_catalog"
    );
    for metric in CATALOG {
        assert!(metric.help.len() > 10, "{}: HELP too short", metric.name);
        assert!(
            metric.name.ends_with("_total")
                == (metric.kind == omnistock::server::metrics_catalog::Kind::Counter),
            "{}: counters, and only counters, end in _total",
            metric.name
        );
    }
}
