//! The local-inventory feeds over real sockets, checked by a validator that
//! applies every rule of Google's local product inventory feed (header,
//! required columns, allowed values, quantity an integer >= 0, pickup_sla
//! present exactly when required, id length) to full and incremental feeds,
//! TSV and XML; and the Meta CSV.

use std::collections::BTreeMap;

use crate::support;

use omnistock::server::config::ServeConfig;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::engine::{Running, base_url, send, start_engine};

const ADMIN: &str = "feeds-test-admin-key-0123";
const THRESHOLD: u32 = 3;

struct Server {
    running: Running,
    base: String,
    http: Client,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(ServeConfig::default()).await
    }

    /// `config` with the feeds' low-stock threshold set to `THRESHOLD` and
    /// no per-key rate limit.
    async fn start_with(config: ServeConfig) -> Server {
        let config = ServeConfig {
            feed_low_stock_threshold: THRESHOLD,
            rate_limit_per_second: 0,
            ..config
        };
        let running = start_engine(config, ADMIN).await;
        Server {
            base: base_url(&running),
            running,
            http: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (base, body) = (&self.base, body.as_ref());
        send(&self.http, base, method, path, Some(ADMIN), body, &[]).await
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, body) = self.call(method, path, Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// The feed's body and its `X-Next-Cursor`.
    async fn feed(&self, path: &str, key: &str) -> (StatusCode, String, Option<String>) {
        let (status, body, cursor, _) = self.feed_with_snapshot(path, key).await;
        (status, body, cursor)
    }

    /// As `feed`, with `X-Feed-Snapshot` (`full` or `incremental`).
    async fn feed_with_snapshot(
        &self,
        path: &str,
        key: &str,
    ) -> (StatusCode, String, Option<String>, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("feed");
        let status = response.status();
        let cursor = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let snapshot = response
            .headers()
            .get("x-feed-snapshot")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            response.text().await.expect("body"),
            cursor,
            snapshot,
        )
    }
}

/// The journal sequence inside a cursor. Clients treat cursors as opaque;
/// the tests look inside to check their order.
fn cursor_seq(cursor: &str) -> u64 {
    let hex = cursor.rsplit('.').next().expect("a cursor");
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("cursor {cursor:?}"))
}

/// A validated row: (store_code, id) -> (availability, quantity).
type Rows = BTreeMap<(String, String), (String, u32)>;

const AVAILABILITY: [&str; 4] = [
    "in_stock",
    "limited_availability",
    "out_of_stock",
    "on_display_to_order",
];
const PICKUP_METHODS: [&str; 4] = ["buy", "reserve", "ship to store", "not supported"];

fn valid_sla(sla: &str) -> bool {
    matches!(sla, "same day" | "next day" | "multi-week")
        || sla
            .strip_suffix("-day")
            .and_then(|d| d.parse::<u8>().ok())
            .is_some_and(|d| (2..=7).contains(&d))
}

/// An expected row: ((store, id), (availability, quantity)).
type ExpectedRow<'a> = ((&'a str, &'a str), (&'a str, u32));

fn expected_rows(items: &[ExpectedRow<'_>]) -> Rows {
    items
        .iter()
        .map(|((s, i), (a, q))| (((*s).into(), (*i).into()), ((*a).into(), *q)))
        .collect()
}

/// Every rule of one row; returns the row.
fn check_row(fields: &BTreeMap<&str, &str>, rows: &mut Rows) {
    let store = fields.get("store_code").copied().unwrap_or_default();
    let id = fields.get("id").copied().unwrap_or_default();
    assert!(!store.is_empty(), "store_code is required: {fields:?}");
    assert!(!id.is_empty() && id.chars().count() <= 50, "id: {fields:?}");
    let availability = fields.get("availability").copied().unwrap_or_default();
    assert!(
        AVAILABILITY.contains(&availability),
        "availability: {fields:?}"
    );
    let quantity: u32 = fields
        .get("quantity")
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("quantity must be an integer >= 0: {fields:?}"));
    match availability {
        "out_of_stock" => assert_eq!(quantity, 0, "{fields:?}"),
        "limited_availability" => assert!((1..=THRESHOLD).contains(&quantity), "{fields:?}"),
        "in_stock" => assert!(quantity > THRESHOLD, "{fields:?}"),
        _ => {}
    }
    let method = fields.get("pickup_method").copied().unwrap_or_default();
    let sla = fields.get("pickup_sla").copied().unwrap_or_default();
    assert!(
        method.is_empty() || PICKUP_METHODS.contains(&method),
        "pickup_method: {fields:?}"
    );
    let needs_sla = !method.is_empty() && method != "not supported";
    assert_eq!(
        needs_sla,
        !sla.is_empty(),
        "pickup_sla exactly when required: {fields:?}"
    );
    assert!(sla.is_empty() || valid_sla(sla), "pickup_sla: {fields:?}");
    let previous = rows.insert(
        (store.to_owned(), id.to_owned()),
        (availability.to_owned(), quantity),
    );
    assert!(previous.is_none(), "each position once: {fields:?}");
}

fn validate_tsv(text: &str) -> Rows {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header row").split('\t').collect();
    for required in ["store_code", "id", "availability"] {
        assert!(
            header.contains(&required),
            "header lacks {required}: {header:?}"
        );
    }
    let mut rows = Rows::new();
    for line in lines {
        let values: Vec<&str> = line.split('\t').collect();
        assert_eq!(values.len(), header.len(), "line {line:?}");
        let fields: BTreeMap<&str, &str> = header.iter().copied().zip(values).collect();
        check_row(&fields, &mut rows);
    }
    rows
}

fn validate_xml(text: &str) -> Rows {
    assert!(text.starts_with("<?xml version=\"1.0\""), "XML declaration");
    assert!(text.contains("<rss xmlns:g=\"http://base.google.com/ns/1.0\" version=\"2.0\">"));
    assert!(text.trim_end().ends_with("</channel>\n</rss>") || text.trim_end().ends_with("</rss>"));
    let mut rows = Rows::new();
    for item in text.split("<item>").skip(1) {
        let item = item.split("</item>").next().expect("closed item");
        let mut fields = BTreeMap::new();
        for element in item.split("<g:").skip(1) {
            let (name, rest) = element.split_once('>').expect("element");
            let value = rest
                .strip_suffix(&format!("</g:{name}"))
                .or_else(|| rest.split_once(&format!("</g:{name}")).map(|(v, _)| v))
                .expect("closing tag");
            assert!(!value.contains('<') && !value.contains('&') || value.contains("&amp;"));
            fields.insert(name, value);
        }
        check_row(&fields, &mut rows);
    }
    rows
}

async fn seed(server: &Server) {
    for (code, method, sla) in [
        ("S1", "buy", Some("same day")),
        ("S2", "ship to store", Some("3-day")),
        ("S3", "not supported", None),
    ] {
        let mut pickup = json!({"method": method});
        if let Some(sla) = sla {
            pickup["sla"] = json!(sla);
        }
        server
            .ok(
                Method::PUT,
                &format!("/v1/locations/{code}"),
                json!({"kind": "store", "name": code, "pickup": pickup}),
            )
            .await;
    }
    server
        .ok(
            Method::PUT,
            "/v1/locations/S4",
            json!({"kind": "store", "name": "no pickup"}),
        )
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/locations/WH",
            json!({"kind": "warehouse", "name": "DC"}),
        )
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/groups/north",
            json!({"locations": ["S1", "S2"]}),
        )
        .await;
    for store in ["S1", "S2", "S3", "S4", "WH"] {
        for (sku, units) in [("A", 10), ("B", 10), ("C", 2), ("D", 5), ("E", 0)] {
            server
                .ok(
                    Method::PUT,
                    &format!("/v1/stock/{store}/{sku}"),
                    json!({"on_hand": units}),
                )
                .await;
        }
    }
}

fn reserve(sku: &str, store: &str, qty: u32) -> Value {
    json!({"channel": "web", "lines": [{"sku": sku, "location": store, "qty": qty}], "ttl_seconds": 600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_incremental_feeds_pass_the_validator() {
    let server = Server::start().await;
    seed(&server).await;

    let (status, tsv, cursor) = server.feed("/v1/feeds/google/local-inventory", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    let cursor = cursor.expect("X-Next-Cursor");
    let full = validate_tsv(&tsv);
    assert_eq!(full.len(), 4 * 5, "every SKU at every store, no warehouse");
    assert_eq!(full[&("S1".into(), "A".into())], ("in_stock".into(), 10));
    assert_eq!(
        full[&("S1".into(), "C".into())],
        ("limited_availability".into(), 2)
    );
    assert_eq!(full[&("S1".into(), "E".into())], ("out_of_stock".into(), 0));
    let (_, xml, xml_cursor) = server
        .feed("/v1/feeds/google/local-inventory?format=xml", ADMIN)
        .await;
    assert_eq!(validate_xml(&xml), full, "XML says what TSV says");
    assert_eq!(xml_cursor.as_ref(), Some(&cursor));

    // Changes: a hold, a sale, a count, a position that goes out of stock
    // and comes back, and a warehouse count (not published).
    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 4))
        .await;
    server
        .ok(
            Method::POST,
            "/v1/sales",
            json!({"channel": "pos", "lines": [{"sku": "B", "location": "S2", "qty": 8}]}),
        )
        .await;
    server
        .ok(Method::PUT, "/v1/stock/S3/C", json!({"on_hand": 50}))
        .await;
    let out = server
        .ok(Method::POST, "/v1/reservations", reserve("D", "S4", 5))
        .await;
    let (_, between, between_cursor) = server
        .feed(
            &format!("/v1/feeds/google/local-inventory?since={cursor}"),
            ADMIN,
        )
        .await;
    assert_eq!(
        validate_tsv(&between)[&("S4".into(), "D".into())],
        ("out_of_stock".into(), 0)
    );
    server
        .ok(
            Method::POST,
            &format!(
                "/v1/reservations/{}/release",
                out["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    server
        .ok(Method::PUT, "/v1/stock/WH/A", json!({"on_hand": 99}))
        .await;

    let (_, incremental, next) = server
        .feed(
            &format!("/v1/feeds/google/local-inventory?since={cursor}"),
            ADMIN,
        )
        .await;
    let changed = validate_tsv(&incremental);
    let expected = expected_rows(&[
        (("S1", "A"), ("in_stock", 6)),
        (("S2", "B"), ("limited_availability", 2)),
        (("S3", "C"), ("in_stock", 50)),
        (("S4", "D"), ("in_stock", 5)),
    ]);
    assert_eq!(
        changed, expected,
        "exactly the changed positions, latest state"
    );
    let next = next.expect("cursor");
    assert!(cursor_seq(&next) > cursor_seq(&cursor));
    assert!(between_cursor.is_some_and(|c| cursor_seq(&c) < cursor_seq(&next)));
    let (_, xml_incremental, _) = server
        .feed(
            &format!("/v1/feeds/google/local-inventory?since={cursor}&format=xml"),
            ADMIN,
        )
        .await;
    assert_eq!(validate_xml(&xml_incremental), expected);
    let (_, nothing, same) = server
        .feed(
            &format!("/v1/feeds/google/local-inventory?since={next}"),
            ADMIN,
        )
        .await;
    assert!(validate_tsv(&nothing).is_empty(), "{nothing}");
    assert_eq!(same, Some(next));
    server.running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_policy_filters_meta_format_and_errors() {
    let server = Server::start().await;
    seed(&server).await;
    // The ads channel keeps 2 units back in the north group, sees at most 6 at S3.
    server
        .ok(
            Method::PUT,
            "/v1/policies",
            json!({"channel": "ads", "group": "north", "held_back": 2}),
        )
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/policies",
            json!({"channel": "ads", "location": "S3", "cap": 6}),
        )
        .await;
    let (_, tsv, _) = server.feed("/v1/feeds/google/local-inventory", ADMIN).await;
    let rows = validate_tsv(&tsv);
    assert_eq!(rows[&("S1".into(), "A".into())], ("in_stock".into(), 8));
    assert_eq!(
        rows[&("S1".into(), "D".into())],
        ("limited_availability".into(), 3)
    );
    assert_eq!(rows[&("S2".into(), "C".into())], ("out_of_stock".into(), 0));
    assert_eq!(rows[&("S3".into(), "A".into())], ("in_stock".into(), 6));
    assert_eq!(rows[&("S4".into(), "A".into())], ("in_stock".into(), 10));

    // Filters.
    let (_, one, _) = server
        .feed("/v1/feeds/google/local-inventory?store=S2", ADMIN)
        .await;
    assert!(validate_tsv(&one).keys().all(|(store, _)| store == "S2"));
    assert_eq!(validate_tsv(&one).len(), 5);
    let (_, group, _) = server
        .feed("/v1/feeds/google/local-inventory?group=north", ADMIN)
        .await;
    assert!(
        validate_tsv(&group)
            .keys()
            .all(|(store, _)| store == "S1" || store == "S2")
    );

    // Meta: the same data, its field names and values.
    let (status, csv, cursor) = server.feed("/v1/feeds/meta/local-inventory", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cursor.is_some());
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,store_code,availability,quantity"));
    let meta: BTreeMap<(String, String), (String, u32)> = lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 4, "{line}");
            assert!(["in stock", "out of stock"].contains(&f[2]), "{line}");
            let quantity: u32 = f[3].parse().expect("quantity");
            assert_eq!(f[2] == "out of stock", quantity == 0, "{line}");
            (
                (f[1].to_owned(), f[0].to_owned()),
                (f[2].to_owned(), quantity),
            )
        })
        .collect();
    assert_eq!(meta.len(), rows.len());
    for (key, (_, quantity)) in &rows {
        assert_eq!(meta[key].1, *quantity, "{key:?}");
    }

    // Incremental feeds list what the ads channel's view changed, not every
    // write: a hold at S3/A leaves 8 units, still above the cap of 6.
    let (_, _, cursor, snapshot) = server
        .feed_with_snapshot("/v1/feeds/google/local-inventory", ADMIN)
        .await;
    assert_eq!(snapshot, "full");
    let cursor = cursor.expect("cursor");
    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S3", 2))
        .await;
    server
        .ok(Method::POST, "/v1/reservations", reserve("B", "S3", 5))
        .await;
    // A display model: shown in the store, ordered, not sold off the shelf.
    let flagged = server
        .ok(
            Method::PUT,
            "/v1/stock/S4/D/display",
            json!({"display_only": true}),
        )
        .await;
    assert_eq!(
        (flagged["display_only"].clone(), flagged["atf"].clone()),
        (json!(true), json!(0))
    );
    let since = format!("/v1/feeds/google/local-inventory?since={cursor}");
    let (_, tsv, next, snapshot) = server.feed_with_snapshot(&since, ADMIN).await;
    assert_eq!(snapshot, "incremental");
    let expected = expected_rows(&[
        (("S3", "B"), ("in_stock", 5)),
        (("S4", "D"), ("on_display_to_order", 0)),
    ]);
    assert_eq!(
        validate_tsv(&tsv),
        expected,
        "S3/A: published value unchanged"
    );
    let (_, csv, _) = server
        .feed(
            &format!("/v1/feeds/meta/local-inventory?since={cursor}"),
            ADMIN,
        )
        .await;
    assert!(csv.contains("D,S4,available for order,0\n"), "{csv}");
    // A policy change lists exactly the rows whose published quantity it
    // moved: at S3, A (8 units: 6 under the old cap, 7 under the new) and
    // D (5 units: 5 under both) -- only A.
    server
        .ok(
            Method::PUT,
            "/v1/policies",
            json!({"channel": "ads", "location": "S3", "cap": 7}),
        )
        .await;
    let (_, tsv, after_policy, snapshot) = server
        .feed_with_snapshot(
            &format!(
                "/v1/feeds/google/local-inventory?since={}",
                next.expect("cursor")
            ),
            ADMIN,
        )
        .await;
    assert_eq!(snapshot, "incremental");
    assert_eq!(
        validate_tsv(&tsv),
        expected_rows(&[(("S3", "A"), ("in_stock", 7))])
    );
    // Its cursor gives increments again at once: nothing changed since.
    let (_, tsv, _, snapshot) = server
        .feed_with_snapshot(
            &format!(
                "/v1/feeds/google/local-inventory?since={}",
                after_policy.expect("cursor")
            ),
            ADMIN,
        )
        .await;
    assert_eq!(
        (snapshot.as_str(), validate_tsv(&tsv).len()),
        ("incremental", 0)
    );

    // Errors: problem bodies, nothing streamed.
    for (path, status, code) in [
        (
            "/v1/feeds/google/local-inventory?since=x",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cursor",
        ),
        (
            "/v1/feeds/google/local-inventory?format=json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_format",
        ),
        (
            "/v1/feeds/google/local-inventory?store=NOPE",
            StatusCode::NOT_FOUND,
            "unknown_location",
        ),
        (
            "/v1/feeds/google/local-inventory?group=nope",
            StatusCode::NOT_FOUND,
            "unknown_group",
        ),
        (
            "/v1/feeds/meta/local-inventory?format=xml",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_format",
        ),
    ] {
        let (got, body) = server.call(Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["code"], code, "{path}: {body}");
    }
    // The feed scope: a read-only key is refused, a feed key is served.
    let read = server
        .ok(
            Method::POST,
            "/v1/keys",
            json!({"name": "r", "scopes": ["read"]}),
        )
        .await;
    let feed = server
        .ok(
            Method::POST,
            "/v1/keys",
            json!({"name": "f", "scopes": ["feed"]}),
        )
        .await;
    let (status, _, _) = server
        .feed(
            "/v1/feeds/google/local-inventory",
            read["key"].as_str().expect("key"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = server
        .feed(
            "/v1/feeds/google/local-inventory",
            feed["key"].as_str().expect("key"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_when_the_client_accepts_it() {
    use std::io::Read;
    let server = Server::start().await;
    seed(&server).await;
    let (_, plain, _) = server.feed("/v1/feeds/google/local-inventory", ADMIN).await;
    for (accept, gzipped) in [
        ("gzip", true),
        ("br, gzip;q=0.5", true),
        ("gzip;q=0", false),
        ("identity", false),
    ] {
        let response = server
            .http
            .get(format!("{}/v1/feeds/google/local-inventory", server.base))
            .bearer_auth(ADMIN)
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("feed");
        let encoding = response
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let bytes = response.bytes().await.expect("body");
        if gzipped {
            assert_eq!(encoding.as_deref(), Some("gzip"), "{accept}");
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("valid gzip");
            assert_eq!(text, plain, "{accept}");
        } else {
            assert_eq!(encoding, None, "{accept}");
            assert_eq!(std::str::from_utf8(&bytes).expect("utf-8"), plain);
        }
    }
    server.running.shutdown().await.expect("stop");
}

/// Reads named SSE events until `count` have arrived or `timeout` passes:
/// (event name, data JSON, id).
async fn read_events(
    response: &mut reqwest::Response,
    buffer: &mut String,
    count: usize,
    timeout: std::time::Duration,
) -> Vec<(String, Value, Option<String>)> {
    let named =
        |events: &[support::sse::SseEvent]| events.iter().filter(|e| !e.0.is_empty()).count();
    let events = support::sse::read(response, buffer, timeout, |e| named(e) >= count).await;
    events.into_iter().filter(|e| !e.0.is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_sends_coalesced_updates_and_resumes_without_loss() {
    use std::time::Duration;
    let server = Server::start().await;
    seed(&server).await;
    let subscribe = |last_event_id: Option<String>| {
        let mut request = server
            .http
            .get(format!(
                "{}/v1/streams/availability?sku=A&location=S1&channel=web&coalesce_ms=200",
                server.base
            ))
            .bearer_auth(ADMIN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };
    let mut stream = subscribe(None).await.expect("subscribe");
    assert_eq!(stream.status(), StatusCode::OK);
    let mut buffer = String::new();
    // First the position as it is (one SKU's stream starts with its state).
    let now = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        (now[0].1["atf"].clone(), now[0].1["crossing"].clone()),
        (json!(10), Value::Null)
    );
    // A hold on another SKU and another store: not for this subscriber.
    server
        .ok(Method::POST, "/v1/reservations", reserve("B", "S1", 1))
        .await;
    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S2", 1))
        .await;
    // One hold: one update, quickly.
    tokio::time::sleep(Duration::from_millis(250)).await;
    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 1))
        .await;
    let first = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, "availability");
    assert_eq!(first[0].1["sku"], "A");
    assert_eq!(first[0].1["location"], "S1");
    assert_eq!(first[0].1["atf"], 9);
    let first_id = first[0].2.clone().expect("an id");
    // Five quick holds are coalesced; the last state wins; crossing marked.
    for _ in 0..5 {
        server
            .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 1))
            .await;
    }
    let burst = read_events(&mut stream, &mut buffer, 5, Duration::from_millis(900)).await;
    assert!(!burst.is_empty() && burst.len() < 5, "coalesced: {burst:?}");
    let last = burst.last().expect("an update");
    assert_eq!(last.1["atf"], 4);
    drop(stream);

    // While disconnected: the position goes out of stock and comes back.
    let out = server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 4))
        .await;
    server
        .ok(
            Method::POST,
            &format!(
                "/v1/reservations/{}/release",
                out["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    server
        .ok(Method::PUT, "/v1/stock/S1/A", json!({"on_hand": 12}))
        .await;
    let resumed_from = last.2.clone().unwrap_or(first_id);
    let mut stream = subscribe(Some(resumed_from)).await.expect("resume");
    let mut buffer = String::new();
    let resumed = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].1["atf"], 6, "12 on hand, 6 held: nothing lost");

    // Threshold crossings: out of stock, then back.
    let gone = server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 6))
        .await;
    let events = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(events[0].1["crossing"], "out_of_stock", "{events:?}");
    assert_eq!(events[0].1["availability"], "out_of_stock");
    tokio::time::sleep(Duration::from_millis(250)).await;
    server
        .ok(
            Method::POST,
            &format!(
                "/v1/reservations/{}/release",
                gone["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    let events = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(events[0].1["crossing"], "back_in_stock", "{events:?}");

    // Bad parameters are problems, not streams.
    for (path, code) in [
        (
            "/v1/streams/availability?coalesce_ms=999999",
            "invalid_coalesce",
        ),
        ("/v1/streams/availability?location=NOPE", "unknown_location"),
        ("/v1/streams/availability?channel=fax", "unknown_channel"),
    ] {
        let (_, body) = server.call(Method::GET, path, None).await;
        assert_eq!(body["code"], code, "{path}: {body}");
    }
    // A graceful shutdown ends open streams instead of waiting for them.
    tokio::time::timeout(Duration::from_secs(10), server.running.shutdown())
        .await
        .expect("shutdown does not wait for the stream")
        .expect("stop");
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped() {
    let server = Server::start_with(ServeConfig {
        max_stream_subscribers: 2,
        ..ServeConfig::default()
    })
    .await;
    let open = || {
        server
            .http
            .get(format!("{}/v1/streams/availability", server.base))
            .bearer_auth(ADMIN)
            .send()
    };
    let first = open().await.expect("first");
    let second = open().await.expect("second");
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let refused = open().await.expect("third");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("problem");
    assert_eq!(body["code"], "too_many_subscribers", "{body}");
    // A closed stream gives its slot back.
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        let response = open().await.expect("retry");
        if response.status() == StatusCode::OK {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "the slot of a closed stream is reused");
    drop((second, reopened));
    server.running.shutdown().await.expect("stop");
}

/// `omnistock feed ... --from URL`: the file holds what the route serves,
/// `--since` with the printed cursor gives the incremental feed, and a
/// refused export leaves no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_export_from_a_running_server() {
    let server = Server::start().await;
    seed(&server).await;
    let dir = std::env::temp_dir().join(format!("omnistock-feed-from-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let export = |kind: &str, extra: &[&str], out: &std::path::Path, key: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_omnistock"))
            .args(["feed", kind, "--from", &server.base, "--key", key, "--out"])
            .arg(out)
            .args(extra)
            .output()
            .expect("the binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let full = dir.join("full.tsv");
    let (ok, summary) = export("google", &[], &full, ADMIN);
    assert!(ok, "{summary}");
    let (_, served, _) = server.feed("/v1/feeds/google/local-inventory", ADMIN).await;
    assert_eq!(
        validate_tsv(&std::fs::read_to_string(&full).expect("file")),
        validate_tsv(&served)
    );
    let cursor = summary
        .rsplit("--since ")
        .next()
        .map(|c| c.trim().to_owned())
        .filter(|c| c.starts_with("c1."))
        .unwrap_or_else(|| panic!("a cursor in {summary:?}"));

    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S2", 3))
        .await;
    let xml = dir.join("incremental.xml");
    let since = cursor;
    let (ok, summary) = export(
        "google",
        &["--format", "xml", "--since", &since],
        &xml,
        ADMIN,
    );
    assert!(ok, "{summary}");
    assert!(summary.contains("incremental feed"), "{summary}");
    let rows = validate_xml(&std::fs::read_to_string(&xml).expect("file"));
    assert_eq!(
        rows.into_iter().collect::<Vec<_>>(),
        vec![(("S2".into(), "A".into()), ("in_stock".into(), 7))]
    );
    let meta = dir.join("meta.csv");
    let (ok, summary) = export("meta", &["--store", "S1"], &meta, ADMIN);
    assert!(ok, "{summary}");
    let csv = std::fs::read_to_string(&meta).expect("file");
    assert_eq!(csv.lines().count(), 1 + 5, "{csv}");

    let refused = dir.join("refused.tsv");
    let (ok, summary) = export("google", &[], &refused, "wrong-key-wrong-key-0000");
    assert!(!ok && summary.contains("401"), "{summary}");
    assert!(!refused.exists(), "a refused export leaves no file");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
    server.running.shutdown().await.expect("stop");
}

/// Opens the live stream for A at S1, resuming after `last_event_id`.
async fn stream_of_a_at_s1(server: &Server, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = server
        .http
        .get(format!(
            "{}/v1/streams/availability?sku=A&location=S1&coalesce_ms=10",
            server.base
        ))
        .bearer_auth(ADMIN);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("subscribe");
    assert_eq!(response.status(), StatusCode::OK);
    response
}

/// The cursor `omnistock feed ... --from` prints.
fn exported_cursor(server: &Server, kind: &str) -> String {
    let out = std::env::temp_dir().join(format!(
        "omnistock-cursor-{kind}-{}.feed",
        std::process::id()
    ));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_omnistock"))
        .args([
            "feed",
            kind,
            "--from",
            &server.base,
            "--key",
            ADMIN,
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("the binary runs");
    let _ = std::fs::remove_file(&out);
    let summary = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{summary}");
    summary
        .rsplit("--since ")
        .next()
        .map(|c| c.trim().to_owned())
        .filter(|c| c.starts_with("c1."))
        .unwrap_or_else(|| panic!("a cursor in {summary:?}"))
}

/// Every way a client obtains a cursor from a live server -- the
/// `X-Next-Cursor` of the Google TSV and XML feeds, of the Meta feed and of
/// an incremental answer, the cursor `omnistock feed --from` prints, and
/// the id of a live-stream event -- lists exactly the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cursor_a_client_can_obtain_lists_the_next_change() {
    use std::time::Duration;
    const GOOGLE: &str = "/v1/feeds/google/local-inventory";
    const META: &str = "/v1/feeds/meta/local-inventory";
    let server = Server::start().await;
    seed(&server).await;
    let (_, _, before) = server.feed(GOOGLE, ADMIN).await;
    let mut stream = stream_of_a_at_s1(&server, None).await;
    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 1))
        .await;
    let mut buffer = String::new();
    // The position as it was (the stream's first event), then the change.
    let events = read_events(&mut stream, &mut buffer, 2, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let event_id = events[1].2.clone().expect("the change's event id");
    drop(stream);

    let mut google = Vec::new();
    let (_, _, tsv) = server.feed(GOOGLE, ADMIN).await;
    google.push(("tsv", tsv.expect("cursor")));
    let (_, _, xml) = server.feed(&format!("{GOOGLE}?format=xml"), ADMIN).await;
    google.push(("xml", xml.expect("cursor")));
    let since = format!("{GOOGLE}?since={}", before.expect("cursor"));
    let (_, _, incremental, snapshot) = server.feed_with_snapshot(&since, ADMIN).await;
    assert_eq!(snapshot, "incremental");
    google.push(("incremental", incremental.expect("cursor")));
    google.push(("feed --from", exported_cursor(&server, "google")));
    let (_, _, meta) = server.feed(META, ADMIN).await;
    let meta = [
        ("meta", meta.expect("cursor")),
        ("meta feed --from", exported_cursor(&server, "meta")),
    ];

    server
        .ok(Method::POST, "/v1/reservations", reserve("A", "S1", 2))
        .await;
    for (source, cursor) in &google {
        let (_, tsv, _, snapshot) = server
            .feed_with_snapshot(&format!("{GOOGLE}?since={cursor}"), ADMIN)
            .await;
        assert_eq!(snapshot, "incremental", "{source}");
        assert_eq!(
            validate_tsv(&tsv),
            expected_rows(&[(("S1", "A"), ("in_stock", 7))]),
            "{source}"
        );
    }
    for (source, cursor) in &meta {
        let (_, csv, _, snapshot) = server
            .feed_with_snapshot(&format!("{META}?since={cursor}"), ADMIN)
            .await;
        assert_eq!(snapshot, "incremental", "{source}");
        assert_eq!(
            csv.lines().skip(1).collect::<Vec<_>>(),
            ["A,S1,in stock,7"],
            "{source}"
        );
    }
    let mut resumed = stream_of_a_at_s1(&server, Some(&event_id)).await;
    let mut buffer = String::new();
    let events = read_events(&mut resumed, &mut buffer, 1, Duration::from_secs(5)).await;
    assert_eq!(
        (events[0].0.as_str(), events[0].1["atf"].clone()),
        ("availability", json!(7)),
        "{events:?}"
    );
    drop(resumed);
    server.running.shutdown().await.expect("stop");
}

/// A cursor this server never handed out -- another server's (or an
/// in-memory run's before a restart), one from the future, a bare number
/// of the old form -- gets the full feed and the reason, and a live stream
/// resumed from such an id starts with a `resync`; never a silently empty
/// increment. Text that is no cursor is a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_this_server_cannot_answer_get_everything_and_the_reason() {
    use std::time::Duration;
    const GOOGLE: &str = "/v1/feeds/google/local-inventory";
    let server = Server::start().await;
    let other = Server::start().await;
    seed(&server).await;
    seed(&other).await;
    let (_, _, theirs) = other.feed(GOOGLE, ADMIN).await;
    let theirs = theirs.expect("cursor");
    let (_, _, ours) = server.feed(GOOGLE, ADMIN).await;
    let ours = ours.expect("cursor");
    let (prefix, _) = ours.rsplit_once('.').expect("a cursor");
    let ahead = format!("{prefix}.{:x}", cursor_seq(&ours) + 1_000);
    for (cursor, reason) in [
        (theirs.as_str(), "other_lineage"),
        (ahead.as_str(), "ahead_of_head"),
        ("99999999", "legacy_cursor"),
    ] {
        let response = server
            .http
            .get(format!("{}{GOOGLE}?since={cursor}", server.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("feed");
        let header = |name: &str| crate::support::header(&response, name);
        assert_eq!(
            (header("x-feed-snapshot"), header("x-feed-snapshot-reason")),
            (Some("full".into()), Some(reason.into())),
            "{cursor}"
        );
        let rows = validate_tsv(&response.text().await.expect("body"));
        assert_eq!(rows.len(), 4 * 5, "{cursor}: every row");

        let mut stream = stream_of_a_at_s1(&server, Some(cursor)).await;
        let mut buffer = String::new();
        let events = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(5)).await;
        assert_eq!(events[0].0, "resync", "{cursor}: {events:?}");
        assert_eq!(events[0].1["reason"], reason, "{cursor}");
        // The resync's id resumes from here on.
        let resume = events[0].2.clone().expect("id");
        assert_eq!(events[0].1["cursor"], json!(resume));
        drop(stream);
    }
    let (status, body) = server
        .call(Method::GET, &format!("{GOOGLE}?since=c1.zz.1"), None)
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("invalid_cursor"))
    );
    let response = server
        .http
        .get(format!("{}/v1/streams/availability", server.base))
        .bearer_auth(ADMIN)
        .header("last-event-id", "not-an-id")
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The journal: a `since` beyond its head is refused, not answered empty.
    let (_, journal) = server.call(Method::GET, "/v1/journal?limit=1", None).await;
    let beyond = journal["next"].as_u64().expect("next") + 1_000_000;
    let (status, body) = server
        .call(Method::GET, &format!("/v1/journal?since={beyond}"), None)
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::CONFLICT, json!("cursor_ahead")),
        "{body}"
    );
    server.running.shutdown().await.expect("stop");
    other.running.shutdown().await.expect("stop");
}
