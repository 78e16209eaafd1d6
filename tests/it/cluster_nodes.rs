//! A cluster of omnistock nodes (the real binary, `serve --cluster`) on a
//! real Redis Cluster: any node answers any single-partition request the
//! same way, the catalog is shared, requests across partitions are refused
//! clearly, and `GET /v1/cluster` shows who owns what.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::cluster::Nodes;

const PARTITIONS: u16 = 16;

/// Waits until `done` holds, checking every 50 ms.
async fn until<F: AsyncFn() -> bool>(within: Duration, what: &str, done: F) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn store() -> Value {
    json!({"kind": "store", "name": "Paris Rivoli", "lat": 48.86, "lon": 2.34})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_for_every_partition() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);

    // A location added through one node reaches every node's catalog.
    let (status, body) = nodes
        .call(0, Method::PUT, "/v1/locations/PAR-01", Some(&store()))
        .await;
    assert!(status.is_success(), "{status} {body}");
    for index in 0..3 {
        until(Duration::from_secs(5), "the shared catalog", async || {
            let (_, locations) = nodes.call(index, Method::GET, "/v1/locations", None).await;
            locations.to_string().contains("PAR-01")
        })
        .await;
    }

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

    // A cart across partitions, and the whole-stock routes: refused clearly.
    let (a, b) = two_partitions();
    let cart = json!({"channel": "web", "ttl_seconds": 600, "lines": [
        {"sku": a, "location": "PAR-01", "qty": 1}, {"sku": b, "location": "PAR-01", "qty": 1}]});
    let (status, problem) = nodes
        .call(0, Method::POST, "/v1/reservations", Some(&cart))
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{problem}");
    assert_eq!(problem["code"], json!("cross_partition_not_supported"));
    let (status, problem) = nodes.call(1, Method::GET, "/v1/journal", None).await;
    assert_eq!(
        problem["code"],
        json!("cross_partition_not_supported"),
        "{status}"
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

/// Two SKUs of different partitions.
pub fn two_partitions() -> (String, String) {
    let partitions = omnistock_cluster::Partitions::new(u64::from(PARTITIONS)).expect("count");
    let a = "SKU-0".to_owned();
    let b = (1..)
        .map(|i| format!("SKU-{i}"))
        .find(|s| partitions.of(s) != partitions.of(&a))
        .expect("another partition");
    (a, b)
}
