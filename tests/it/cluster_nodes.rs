//! A cluster of omnistock nodes (the real binary, `serve --cluster`) on a
//! real Redis Cluster: any node answers any single-partition request the
//! same way, the catalog is shared, requests across partitions are refused
//! clearly, and `GET /v1/cluster` shows who owns what.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::ADMIN;
use crate::support::cluster::Nodes;
use crate::support::engine::send;

const PARTITIONS: u16 = 16;

/// A GET through node `index`, with `If-None-Match` if given: its status
/// and `ETag`.
async fn conditional_get(
    nodes: &Nodes,
    index: usize,
    path: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut request = nodes
        .http
        .get(format!("{}{path}", nodes.base(index)))
        .bearer_auth(ADMIN);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.expect("read");
    let tag = response.headers().get("etag").and_then(|v| v.to_str().ok());
    (response.status(), tag.map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_for_every_partition() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);

    // A location added through one node reaches every node's catalog.
    nodes.add_store().await;

    // Counts through every node, each SKU through another one.
    for i in 0..24 {
        let path = format!("/v1/stock/PAR-01/SKU-{i}");
        let count = json!({"on_hand": 10 + i});
        let (status, body) = nodes.call(i % 3, Method::PUT, &path, Some(&count)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Every node gives the same answer for every SKU.
    for i in 0..24 {
        let path = format!("/v1/availability/SKU-{i}");
        let mut answers = BTreeSet::new();
        for index in 0..3 {
            let (status, body) = nodes.call(index, Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{path} via node {index}: {body}");
            assert_eq!(body["total_atf"], json!(10 + i), "{path}: {body}");
            answers.insert(body.to_string());
        }
        assert_eq!(answers.len(), 1, "{path}: {answers:?}");
    }
    // Every node gives the same ETag, and a 304 for it.
    let mut tags = BTreeSet::new();
    for index in 0..3 {
        let (status, tag) = conditional_get(&nodes, index, "/v1/availability/SKU-5", None).await;
        assert_eq!(status, StatusCode::OK);
        tags.insert(tag.expect("an ETag"));
    }
    assert_eq!(tags.len(), 1, "{tags:?}");
    let tag = tags.first().expect("a tag");
    for index in 0..3 {
        let (status, _) = conditional_get(&nodes, index, "/v1/availability/SKU-5", Some(tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "via node {index}");
    }

    // A reservation made through one node is read, extended and committed
    // through the others (its id names its partition).
    let cart = json!({"channel": "web", "ttl_seconds": 600,
        "lines": [{"sku": "SKU-3", "location": "PAR-01", "qty": 2}]});
    let (status, held) = nodes
        .call(1, Method::POST, "/v1/reservations", Some(&cart))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let id = held["id"].as_str().expect("id").to_owned();
    let (status, read) = nodes
        .call(2, Method::GET, &format!("/v1/reservations/{id}"), None)
        .await;
    assert_eq!(
        (status, &read["state"]),
        (StatusCode::OK, &json!("held")),
        "{read}"
    );
    let path = format!("/v1/reservations/{id}/commit");
    let (status, committed) = nodes.call(0, Method::POST, &path, Some(&json!({}))).await;
    assert_eq!(
        (status, &committed["state"]),
        (StatusCode::OK, &json!("committed")),
        "{committed}"
    );
    let (_, sku3) = nodes
        .call(2, Method::GET, "/v1/availability/SKU-3", None)
        .await;
    assert_eq!(sku3["total_atf"], json!(11), "{sku3}");

    batches_and_the_audit_span_partitions(&nodes).await;

    // The journal of every SKU, paged through any node: every movement
    // once (24 counts, a hold and its commit, 6 sales), in time order.
    let mut seen = Vec::new();
    let mut path = "/v1/journal?limit=7".to_owned();
    for page in 0.. {
        assert!(page < 20, "the journal never ends: {seen:?}");
        let (status, body) = nodes.call(page % 3, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let movements = body["movements"].as_array().expect("movements");
        if movements.is_empty() {
            break;
        }
        assert!(movements.len() <= 7, "{body}");
        seen.extend(movements.iter().map(|m| {
            (
                m["at"].clone(),
                m["sku"].clone(),
                m["kind"].clone(),
                m["seq"].clone(),
            )
        }));
        let cursor = body["next_cursor"].as_str().expect("next_cursor");
        path = format!("/v1/journal?limit=7&cursor={cursor}");
    }
    assert_eq!(seen.len(), 32, "{seen:?}");
    let distinct: BTreeSet<String> = seen.iter().map(|m| format!("{m:?}")).collect();
    assert_eq!(distinct.len(), 32, "each once: {seen:?}");
    let times: Vec<&str> = seen.iter().filter_map(|m| m.0.as_str()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );
    // `since` is one partition's sequence: a cluster says what to send.
    let (status, problem) = nodes
        .call(1, Method::GET, "/v1/journal?since=3", None)
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (
            StatusCode::NOT_IMPLEMENTED,
            &json!("cross_partition_not_supported")
        ),
        "{problem}"
    );
    // Without a key: 401 first, as on every route.
    let url = format!("{}/v1/journal", nodes.base(1));
    let anonymous = nodes.http.get(url).send().await.expect("answer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The cluster view: three live nodes, every partition owned.
    let view = nodes.view(2).await;
    assert_eq!(view["node_id"], json!("node-2"));
    assert_eq!(view["partitions"], json!(PARTITIONS));
    let alive = view["nodes"].as_array().expect("nodes");
    assert_eq!(
        alive.iter().filter(|n| n["alive"] == json!(true)).count(),
        3,
        "{view}"
    );
    let owners = view["owners"].as_array().expect("owners");
    assert_eq!(owners.len(), usize::from(PARTITIONS));
    assert!(
        owners
            .iter()
            .all(|o| o["node_id"].is_string() && o["epoch"].as_u64() > Some(0)),
        "{view}"
    );
    let owned: u64 = alive.iter().map(|n| n["owned"].as_u64().unwrap_or(0)).sum();
    assert_eq!(owned, u64::from(PARTITIONS));
}

/// Batches are split over the partitions of their items and put back in
/// order; the audit covers every partition; one SKU's journal is its
/// partition's. Expects SKU-i at PAR-01 with 10 + i units (SKU-3: 11).
async fn batches_and_the_audit_span_partitions(nodes: &Nodes) {
    let partitions = omnistock_cluster::Partitions::new(u64::from(PARTITIONS)).expect("count");
    let skus: Vec<String> = (0..24).map(|i| format!("SKU-{i}")).collect();
    let spread: BTreeSet<_> = skus.iter().map(|s| partitions.of(s)).collect();
    assert!(spread.len() > 4, "the batch spans partitions: {spread:?}");

    let mut items: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "location": "PAR-01"}))
        .collect();
    items.insert(5, json!({"sku": "SKU-1", "location": "NOWHERE"}));
    let (status, batch) = nodes
        .call(
            1,
            Method::POST,
            "/v1/availability/batch",
            Some(&json!({ "items": items })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results.len(), 25, "{batch}");
    for (index, result) in results.iter().enumerate() {
        if index == 5 {
            assert_eq!(result["code"], json!("unknown_location"), "{result}");
            assert_eq!(result["location"], json!("NOWHERE"), "{result}");
            continue;
        }
        let i = if index < 5 { index } else { index - 1 };
        assert_eq!(
            result["sku"],
            json!(format!("SKU-{i}")),
            "item {index}: {result}"
        );
        let units = if i == 3 { 11 } else { 10 + i };
        assert_eq!(result["on_hand"], json!(units), "item {index}: {result}");
    }

    // Sales of several partitions in one batch, retried with its key:
    // every item replays, nothing is sold twice.
    let sales: Vec<Value> = (10..16)
        .map(|i| {
            json!({"kind": "sale", "channel": "pos", "sku": format!("SKU-{i}"),
                        "location": "PAR-01", "qty": 1})
        })
        .collect();
    let batch = json!({ "items": sales });
    let mut answers = BTreeSet::new();
    for via in [0, 2] {
        let (status, report) = send(
            &nodes.http,
            &nodes.base(via),
            Method::POST,
            "/v1/movements/batch",
            Some(ADMIN),
            Some(&batch),
            &[("idempotency-key", "cluster-batch-1")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(
            (report["applied"].clone(), report["failed"].clone()),
            (json!(6), json!(0)),
            "{report}"
        );
        answers.insert(report.to_string());
    }
    assert_eq!(answers.len(), 1, "the retry replays: {answers:?}");
    for i in 10..16 {
        let (_, sku) = nodes
            .call(0, Method::GET, &format!("/v1/availability/SKU-{i}"), None)
            .await;
        assert_eq!(sku["total_atf"], json!(10 + i - 1), "{sku}");
    }

    // The whole cluster's audit: every position, each once.
    let (status, audit) = nodes.call(2, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert_eq!(audit["ok"], json!(true), "{audit}");
    assert_eq!(audit["positions"], json!(24), "{audit}");
    let on_hand: u64 = (0..24)
        .map(|i| if i == 3 { 11 } else { 10 + i })
        .sum::<u64>()
        - 6;
    assert_eq!(audit["on_hand"], json!(on_hand), "{audit}");

    // One SKU's journal, through any node.
    let (status, journal) = nodes
        .call(0, Method::GET, "/v1/journal?sku=SKU-12", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{journal}");
    let kinds: Vec<&Value> = journal["movements"]
        .as_array()
        .expect("movements")
        .iter()
        .map(|m| &m["kind"])
        .collect();
    assert_eq!(kinds.len(), 2, "a count and a sale: {journal}");
}

/// A feed through a node: its status, body, `X-Next-Cursor` and
/// `X-Feed-Snapshot`.
async fn feed(nodes: &Nodes, via: usize, path: &str) -> (StatusCode, String, String, String) {
    let response = nodes
        .http
        .get(format!("{}{path}", nodes.base(via)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("feed");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (cursor, snapshot) = (header("x-next-cursor"), header("x-feed-snapshot"));
    let status = response.status();
    (
        status,
        response.text().await.expect("body"),
        cursor,
        snapshot,
    )
}

/// The rows of a TSV feed (its header line left out), sorted.
fn rows(body: &str) -> Vec<String> {
    let mut rows: Vec<String> = body.lines().skip(1).map(str::to_owned).collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_cover_every_partition_and_their_cursors_survive_a_move() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    nodes.add_store().await;
    for i in 0..30 {
        let path = format!("/v1/stock/PAR-01/FEED-{i}");
        let (status, body) = nodes
            .call(i % 3, Method::PUT, &path, Some(&json!({"on_hand": 20})))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }

    // The full feed through any node: one header, every SKU once.
    let google = "/v1/feeds/google/local-inventory";
    let (status, full, cursor, snapshot) = feed(&nodes, 1, google).await;
    assert_eq!(
        (status, snapshot.as_str()),
        (StatusCode::OK, "full"),
        "{full}"
    );
    assert_eq!(
        full.lines().filter(|l| l.starts_with("store_code")).count(),
        1,
        "{full}"
    );
    assert_eq!(rows(&full).len(), 30, "{full}");
    assert!(cursor.starts_with("k1."), "{cursor}");
    let (_, again, _, _) = feed(&nodes, 2, google).await;
    assert_eq!(rows(&again), rows(&full));
    // XML: one document.
    let (status, xml, _, _) = feed(&nodes, 0, &format!("{google}?format=xml")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(xml.matches("<?xml").count(), 1, "{xml}");
    assert_eq!(xml.matches("</rss>").count(), 1, "{xml}");
    assert_eq!(xml.matches("<item>").count(), 30, "{xml}");
    let (status, csv, _, _) = feed(&nodes, 2, "/v1/feeds/meta/local-inventory").await;
    assert_eq!((status, rows(&csv).len()), (StatusCode::OK, 30), "{csv}");

    // An increment lists exactly what changed, wherever it lives.
    let cart = json!({"channel": "web", "ttl_seconds": 600,
        "lines": [{"sku": "FEED-4", "location": "PAR-01", "qty": 3}]});
    let (status, held) = nodes
        .call(2, Method::POST, "/v1/reservations", Some(&cart))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let (status, increment, next, snapshot) =
        feed(&nodes, 0, &format!("{google}?since={cursor}")).await;
    assert_eq!(
        (status, snapshot.as_str()),
        (StatusCode::OK, "incremental"),
        "{increment}"
    );
    let changed = rows(&increment);
    assert_eq!(changed.len(), 1, "{increment}");
    assert!(changed[0].contains("FEED-4"), "{increment}");

    // A node leaves: its partitions move, and the cursor still answers
    // exactly.
    nodes.stop(2);
    let (status, body) = nodes
        .call(
            0,
            Method::PUT,
            "/v1/stock/PAR-01/FEED-7",
            Some(&json!({"on_hand": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, increment, _, snapshot) = feed(&nodes, 1, &format!("{google}?since={next}")).await;
    assert_eq!(
        (status, snapshot.as_str()),
        (StatusCode::OK, "incremental"),
        "{increment}"
    );
    let changed = rows(&increment);
    assert_eq!(changed.len(), 1, "{increment}");
    assert!(changed[0].contains("FEED-7"), "{increment}");

    // Not a cursor: 422; a single node's: answered in full.
    let (status, _, _, _) = feed(&nodes, 0, &format!("{google}?since=nonsense")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body, _, snapshot) =
        feed(&nodes, 0, &format!("{google}?since=c1.0000000000000001.5")).await;
    assert_eq!(
        (status, snapshot.as_str(), rows(&body).len()),
        (StatusCode::OK, "full", 30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_follow_every_partition_through_any_node() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    nodes.add_store().await;
    let skus: Vec<String> = (0..12).map(|i| format!("LIVE-{i}")).collect();
    for sku in &skus {
        let path = format!("/v1/stock/PAR-01/{sku}");
        let (status, body) = nodes
            .call(1, Method::PUT, &path, Some(&json!({"on_hand": 50})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let open = |via: usize, query: &str, last_event_id: Option<String>| {
        let mut request = nodes
            .http
            .get(format!(
                "{}/v1/streams/availability{query}",
                nodes.base(via)
            ))
            .bearer_auth(ADMIN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };
    let mut stream = open(0, "?coalesce_ms=10", None).await.expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    // It opens with an id (every partition's position).
    let mut text = String::new();
    let opening = crate::support::sse::read(&mut stream, &mut text, Duration::from_secs(5), |e| {
        !e.is_empty()
    })
    .await;
    let opened_at = opening[0].2.clone().expect("an opening id");
    assert!(opened_at.starts_with("k1."), "{opening:?}");

    // A change in every SKU's partition, made through the other nodes.
    for (i, sku) in skus.iter().enumerate() {
        let cart = json!({"channel": "web", "ttl_seconds": 600,
            "lines": [{"sku": sku, "location": "PAR-01", "qty": 1}]});
        let (status, body) = nodes
            .call(1 + i % 2, Method::POST, "/v1/reservations", Some(&cart))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let seen = |events: &[(String, Value, Option<String>)]| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e.0 == "availability")
            .filter_map(|e| e.1["sku"].as_str().map(str::to_owned))
            .collect()
    };
    let all: BTreeSet<String> = skus.iter().cloned().collect();
    let events = crate::support::sse::read(&mut stream, &mut text, Duration::from_secs(10), |e| {
        seen(e) == all
    })
    .await;
    assert_eq!(seen(&events), all, "{events:?}");
    let last_id = events
        .iter()
        .rev()
        .find_map(|e| e.2.clone())
        .expect("an id");
    drop(stream);

    // While disconnected, two SKUs change; resumed through another node,
    // exactly those come.
    for sku in &skus[3..5] {
        let path = format!("/v1/stock/PAR-01/{sku}");
        let (status, body) = nodes
            .call(2, Method::PUT, &path, Some(&json!({"on_hand": 40})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut stream = open(1, "?coalesce_ms=10", Some(last_id))
        .await
        .expect("resume");
    assert_eq!(stream.status(), StatusCode::OK);
    let wanted: BTreeSet<String> = skus[3..5].iter().cloned().collect();
    let events = crate::support::sse::read(
        &mut stream,
        &mut String::new(),
        Duration::from_secs(10),
        |e| seen(e) == wanted,
    )
    .await;
    assert_eq!(seen(&events), wanted, "{events:?}");
    assert!(events.iter().all(|e| e.0 != "resync"), "{events:?}");
    let atf: Vec<&Value> = events
        .iter()
        .filter(|e| e.0 == "availability")
        .map(|e| &e.1["atf"])
        .collect();
    assert!(atf.iter().all(|a| **a == json!(39)), "{events:?}");

    // One SKU's stream, through any node: its partition's.
    let mut one = open(2, &format!("?sku={}&coalesce_ms=10", skus[7]), None)
        .await
        .expect("stream");
    assert_eq!(one.status(), StatusCode::OK);
    // It starts with the position as it is, then follows the change.
    let mut buffer = String::new();
    let state = crate::support::sse::next_availability(
        &mut one,
        &mut buffer,
        Duration::from_secs(10),
        "the state",
    )
    .await;
    assert_eq!(
        (&state["sku"], &state["atf"]),
        (&json!(skus[7]), &json!(49)),
        "{state}"
    );
    let path = format!("/v1/stock/PAR-01/{}", skus[7]);
    let (status, _) = nodes
        .call(0, Method::PUT, &path, Some(&json!({"on_hand": 30})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let update = crate::support::sse::next_availability(
        &mut one,
        &mut buffer,
        Duration::from_secs(10),
        "an update",
    )
    .await;
    assert_eq!(
        (&update["sku"], &update["atf"]),
        (&json!(skus[7]), &json!(29)),
        "{update}"
    );

    // A stream whose key is revoked, when a partition moves and its stream
    // is refused on the new owner (401): the whole stream ends (the
    // client's reconnection is told why), it does not retry forever.
    let body = json!({"name": "reader", "scopes": ["read"]});
    let (status, made) = nodes.call(0, Method::POST, "/v1/keys", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["key"].as_str().expect("secret");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut revoked = nodes
        .http
        .get(format!("{}/v1/streams/availability", nodes.base(0)))
        .bearer_auth(secret)
        .send()
        .await
        .expect("stream");
    assert_eq!(revoked.status(), StatusCode::OK);
    let path = format!("/v1/keys/{}", made["id"].as_str().expect("id"));
    let (status, _) = nodes.call(1, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes.stop(2);
    // (Within the client's own 30 s timeout, which would cut it with an error.)
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match revoked.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream of a revoked key went on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_route_every_row_to_its_partition() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(2, PARTITIONS, &["--durability", "sync"]);
    nodes.add_store().await;
    let import = async |via: usize, content_type: &str, body: String| -> (StatusCode, Value) {
        let response = nodes
            .http
            .post(format!("{}/v1/stock/import", nodes.base(via)))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("import");
        let status = response.status();
        (status, response.json().await.expect("a report"))
    };

    // 40 rows over every partition, two of them bad (rows 7 and 31).
    let mut ndjson = String::new();
    for i in 1..=40 {
        let row = match i {
            7 => "{not json".to_owned(),
            31 => json!({"sku": "IMP-31", "location": "NOWHERE", "on_hand": 1}).to_string(),
            _ => json!({"sku": format!("IMP-{i}"), "location": "PAR-01", "on_hand": i}).to_string(),
        };
        ndjson.push_str(&row);
        ndjson.push('\n');
    }
    let (status, report) = import(1, "application/x-ndjson", ndjson).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["rows"].clone(),
            report["applied"].clone(),
            report["failed"].clone()
        ),
        (json!(40), json!(38), json!(2)),
        "{report}"
    );
    let failed: Vec<(u64, &str)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap_or(0),
                e["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [(7, "invalid_row"), (31, "unknown_location")],
        "{report}"
    );
    for i in [1, 12, 40] {
        let (_, sku) = nodes
            .call(0, Method::GET, &format!("/v1/availability/IMP-{i}"), None)
            .await;
        assert_eq!(sku["total_atf"], json!(i), "{sku}");
    }

    // CSV, through the other node; counts are absolute: run again, same stock.
    let csv: String = std::iter::once("sku,location,on_hand\n".to_owned())
        .chain((1..=20).map(|i| format!("IMP-{i},PAR-01,{}\n", 100 + i)))
        .collect();
    for _ in 0..2 {
        let (status, report) = import(0, "text/csv", csv.clone()).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(
            (report["applied"].clone(), report["failed"].clone()),
            (json!(20), json!(0)),
            "{report}"
        );
    }
    let (_, sku) = nodes
        .call(1, Method::GET, "/v1/availability/IMP-12", None)
        .await;
    assert_eq!(sku["total_atf"], json!(112), "{sku}");

    // One position counted 2,500 times: its partition takes the rows in
    // several batches, one after the other, so the last count stands.
    let recounts: String = (1..=2_500)
        .map(|n| json!({"sku": "IMP-1", "location": "PAR-01", "on_hand": n}).to_string() + "\n")
        .collect();
    let (status, report) = import(1, "application/x-ndjson", recounts).await;
    assert_eq!(
        (status, &report["applied"]),
        (StatusCode::OK, &json!(2_500)),
        "{report}"
    );
    let (_, sku) = nodes
        .call(0, Method::GET, "/v1/availability/IMP-1", None)
        .await;
    assert_eq!(
        sku["total_atf"],
        json!(2_500),
        "the last row's count: {sku}"
    );
    let (_, audit) = nodes.call(1, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(audit["positions"], json!(39), "{audit}");
}
