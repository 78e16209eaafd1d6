//! Carts across partitions on a cluster of real nodes on a real Redis
//! Cluster: all or nothing, one id and one `Idempotency-Key` whichever
//! node is asked, every operation acting on every part, and the parts of a
//! coordinator that stopped before deciding undone by the partitions'
//! owners.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::ADMIN;
use crate::support::cluster::Nodes;
use crate::support::engine::send;
use omnistock::store::cluster::ClusterStore;
use omnistock::store::cluster_carts::{Begun, CartKind, CartStart, CartState, Decided, Decision};
use omnistock_cluster::{CART_BIT, Partitions};

const PARTITIONS: u16 = 16;
const ON_HAND: u64 = 10;

/// `count` SKUs, each in a partition of its own.
fn skus_of_distinct_partitions(count: usize) -> Vec<String> {
    let partitions = Partitions::new(u64::from(PARTITIONS)).expect("count");
    let mut seen = BTreeSet::new();
    (0..)
        .map(|i| format!("CART-{i}"))
        .filter(|sku| seen.insert(partitions.of(sku)))
        .take(count)
        .collect()
}

fn cart(skus: &[String], qty: u64) -> Value {
    let lines: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "location": "PAR-01", "qty": qty}))
        .collect();
    json!({"channel": "web", "ttl_seconds": 600, "lines": lines})
}

async fn keyed(
    nodes: &Nodes,
    via: usize,
    method: Method,
    path: &str,
    body: Option<&Value>,
    key: &str,
) -> (StatusCode, Value) {
    let headers = [("idempotency-key", key)];
    send(
        &nodes.http,
        &nodes.base(via),
        method,
        path,
        Some(ADMIN),
        body,
        &headers,
    )
    .await
}

/// `POST /v1/reservations` of `body` through node `via`, under `key`.
async fn reserve(nodes: &Nodes, via: usize, body: &Value, key: &str) -> (StatusCode, Value) {
    keyed(
        nodes,
        via,
        Method::POST,
        "/v1/reservations",
        Some(body),
        key,
    )
    .await
}

/// The state of reservation `reservation` (an answer with its `id`), read
/// through node 0.
async fn state_of(nodes: &Nodes, reservation: &Value) -> Value {
    let id = reservation["id"].as_str().expect("id");
    let (status, read) = nodes
        .call(0, Method::GET, &format!("/v1/reservations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    read["state"].clone()
}

/// Each SKU's units available to the web, through node 0.
async fn available(nodes: &Nodes, skus: &[String]) -> Vec<u64> {
    let mut units = Vec::new();
    for sku in skus {
        let (status, body) = nodes
            .call(0, Method::GET, &format!("/v1/availability/{sku}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        units.push(body["total_atf"].as_u64().expect("total_atf"));
    }
    units
}

/// A new API key's secret, made through node 0 (keys apply cluster-wide).
async fn scoped_key(nodes: &Nodes, scopes: &[&str], locations: &[&str]) -> String {
    let body = json!({"name": "test", "scopes": scopes, "locations": locations});
    let (status, made) = nodes.call(0, Method::POST, "/v1/keys", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    // Every node takes the catalog from the shared store within ~250 ms.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    made["key"].as_str().expect("secret").to_owned()
}

async fn stock(nodes: &Nodes, skus: &[String]) {
    nodes.add_store().await;
    for (i, sku) in skus.iter().enumerate() {
        let path = format!("/v1/stock/PAR-01/{sku}");
        let count = json!({"on_hand": ON_HAND});
        let (status, body) = nodes.call(i % 2, Method::PUT, &path, Some(&count)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_across_partitions_is_all_or_nothing_through_any_node() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    let skus = skus_of_distinct_partitions(4);
    stock(&nodes, &skus).await;

    // Granted: one id (a cart's), every line held.
    let three = cart(&skus[..3], 2);
    let (status, held) = reserve(&nodes, 0, &three, "cart-1").await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let id: u64 = held["id"].as_str().expect("id").parse().expect("number");
    assert_ne!(id & CART_BIT, 0, "a cart's id: {held}");
    assert_eq!(held["state"], json!("held"));
    assert_eq!(held["lines"].as_array().map(Vec::len), Some(3), "{held}");
    assert_eq!(available(&nodes, &skus).await, [8, 8, 8, 10]);

    // The same key through other nodes: the same answer, nothing held twice.
    for via in [1, 2] {
        let (status, again) = keyed(
            &nodes,
            via,
            Method::POST,
            "/v1/reservations",
            Some(&three),
            "cart-1",
        )
        .await;
        assert_eq!(
            (status, &again),
            (StatusCode::CREATED, &held),
            "via node {via}"
        );
    }
    assert_eq!(available(&nodes, &skus).await, [8, 8, 8, 10]);
    // The same key with another cart: refused, nothing changes.
    let other = cart(&skus[1..], 1);
    let (status, problem) = reserve(&nodes, 1, &other, "cart-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], json!("idempotency_key_reused"));

    // Read through any node.
    let path = format!("/v1/reservations/{id}");
    let (status, read) = nodes.call(2, Method::GET, &path, None).await;
    assert_eq!(
        (status, &read["state"]),
        (StatusCode::OK, &json!("held")),
        "{read}"
    );
    assert_eq!(read["lines"], held["lines"]);

    // Short on two lines of two partitions: 409 with both, nothing held.
    let mut short = cart(&skus, 1);
    short["lines"][0]["qty"] = json!(9);
    short["lines"][3]["qty"] = json!(11);
    let (status, problem) = reserve(&nodes, 2, &short, "cart-2").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], json!("insufficient_stock"));
    let short_skus: BTreeSet<&str> = problem["shortfalls"]
        .as_array()
        .expect("shortfalls")
        .iter()
        .filter_map(|s| s["sku"].as_str())
        .collect();
    assert_eq!(
        short_skus,
        BTreeSet::from([skus[0].as_str(), skus[3].as_str()]),
        "{problem}"
    );
    assert_eq!(available(&nodes, &skus).await, [8, 8, 8, 10]);
    // Its retry: the same refusal.
    let (status, again) = reserve(&nodes, 0, &short, "cart-2").await;
    assert_eq!((status, again), (StatusCode::CONFLICT, problem));

    // A commit that names a line the cart does not hold: refused before
    // any part changes.
    let stranger = json!({"lines": [
        {"sku": skus[0], "location": "PAR-01", "qty": 2},
        {"sku": skus[3], "location": "PAR-01", "qty": 1}]});
    let (status, problem) = keyed(
        &nodes,
        1,
        Method::POST,
        &format!("{path}/commit"),
        Some(&stranger),
        "commit-0",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], json!("line_not_in_reservation"));
    let (_, read) = nodes.call(0, Method::GET, &path, None).await;
    assert_eq!(read["state"], json!("held"), "{read}");
    assert_eq!(available(&nodes, &skus).await, [8, 8, 8, 10]);

    // Extend, then commit by lines: the listed lines commit, the part with
    // none listed is released.
    let (status, extended) = keyed(
        &nodes,
        1,
        Method::POST,
        &format!("{path}/extend"),
        Some(&json!({"ttl_seconds": 900})),
        "extend-1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{extended}");
    assert!(
        extended["expires_at"].as_str() > held["expires_at"].as_str(),
        "{extended}"
    );
    let commit = json!({"lines": [
        {"sku": skus[0], "location": "PAR-01", "qty": 2},
        {"sku": skus[1], "location": "PAR-01", "qty": 1}]});
    let commit_path = format!("{path}/commit");
    let (status, committed) = keyed(
        &nodes,
        2,
        Method::POST,
        &commit_path,
        Some(&commit),
        "commit-1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    assert_eq!(committed["state"], json!("committed"), "{committed}");
    let (status, again) = keyed(
        &nodes,
        0,
        Method::POST,
        &commit_path,
        Some(&commit),
        "commit-1",
    )
    .await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &committed),
        "the retry replays"
    );
    // Sold: 2 and 1; the rest back on sale.
    assert_eq!(available(&nodes, &skus).await, [8, 9, 10, 10]);

    // Another cart, released through another node: everything back.
    let (status, second) = reserve(&nodes, 1, &cart(&skus[2..], 3), "cart-3").await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(available(&nodes, &skus).await, [8, 9, 7, 7]);
    // A line moves to another store (the part of its SKU's partition).
    nodes.add_location("PAR-02").await;
    let path = format!("/v1/stock/PAR-02/{}", skus[3]);
    let (status, body) = nodes
        .call(1, Method::PUT, &path, Some(&json!({"on_hand": 5})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let transfer = json!({"sku": skus[3], "from": "PAR-01", "to": "PAR-02"});
    let transfer_path = format!(
        "/v1/reservations/{}/transfer",
        second["id"].as_str().expect("id")
    );
    let (status, moved) = nodes
        .call(2, Method::POST, &transfer_path, Some(&transfer))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let at: Vec<(&Value, &Value)> = moved["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (&l["sku"], &l["location"]))
        .collect();
    assert!(at.contains(&(&json!(skus[3]), &json!("PAR-02"))), "{moved}");
    assert!(at.contains(&(&json!(skus[2]), &json!("PAR-01"))), "{moved}");
    assert_eq!(available(&nodes, &skus).await, [8, 9, 7, 12]);
    let release = format!(
        "/v1/reservations/{}/release",
        second["id"].as_str().expect("id")
    );
    let (status, released) = nodes.call(0, Method::POST, &release, None).await;
    assert_eq!(
        (status, &released["state"]),
        (StatusCode::OK, &json!("released")),
        "{released}"
    );
    assert_eq!(available(&nodes, &skus).await, [8, 9, 10, 15]);

    // A sale across partitions: all lines or none, once whatever the retries.
    let sale = json!({"channel": "pos", "lines": [
        {"sku": skus[0], "location": "PAR-01", "qty": 2},
        {"sku": skus[3], "location": "PAR-01", "qty": 1}]});
    let (status, sold) = keyed(&nodes, 2, Method::POST, "/v1/sales", Some(&sale), "sale-1").await;
    assert_eq!(status, StatusCode::OK, "{sold}");
    let on_hand: Vec<&Value> = sold["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| &p["on_hand"])
        .collect();
    assert_eq!(on_hand, [&json!(6), &json!(9)], "{sold}");
    let (status, again) = keyed(&nodes, 0, Method::POST, "/v1/sales", Some(&sale), "sale-1").await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &sold),
        "the retry replays"
    );
    assert_eq!(available(&nodes, &skus).await, [6, 9, 10, 14]);
    let mut short = sale.clone();
    short["lines"][1]["qty"] = json!(10);
    let (status, problem) =
        keyed(&nodes, 1, Method::POST, "/v1/sales", Some(&short), "sale-2").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["shortfalls"][0]["sku"], json!(skus[3]), "{problem}");
    assert_eq!(
        available(&nodes, &skus).await,
        [6, 9, 10, 14],
        "nothing sold"
    );

    // A POS terminal's sale across partitions at its store: sold, and
    // answered the positions (its key may read them there, not elsewhere).
    let pos = scoped_key(&nodes, &["pos"], &["PAR-01"]).await;
    let headers = [("idempotency-key", "pos-sale-1")];
    let one_each = json!({"channel": "pos", "lines": [
        {"sku": skus[0], "location": "PAR-01", "qty": 1},
        {"sku": skus[3], "location": "PAR-01", "qty": 1}]});
    let (status, sold) = send(
        &nodes.http,
        &nodes.base(1),
        Method::POST,
        "/v1/sales",
        Some(&pos),
        Some(&one_each),
        &headers,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sold}");
    assert_eq!(sold["positions"][0]["on_hand"], json!(5), "{sold}");
    assert_eq!(available(&nodes, &skus).await, [5, 9, 10, 13]);
    let elsewhere = format!("/v1/stock/PAR-02/{}", skus[3]);
    let (status, _) = send(
        &nodes.http,
        &nodes.base(0),
        Method::GET,
        &elsewhere,
        Some(&pos),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A key that may only read: refused before anything is written.
    let reader = scoped_key(&nodes, &["read"], &[]).await;
    let (status, problem) = send(
        &nodes.http,
        &nodes.base(2),
        Method::POST,
        "/v1/reservations",
        Some(&reader),
        Some(&cart(&skus, 1)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(available(&nodes, &skus).await, [5, 9, 10, 13]);

    // A cart's parts expire by themselves at its deadline.
    let (status, brief) = reserve(
        &nodes,
        0,
        &json!({"channel": "web", "ttl_seconds": 1, "lines": [
            {"sku": skus[1], "location": "PAR-01", "qty": 1},
            {"sku": skus[2], "location": "PAR-01", "qty": 1}]}),
        "brief",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{brief}");
    let brief_path = format!("/v1/reservations/{}", brief["id"].as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, read) = nodes.call(1, Method::GET, &brief_path, None).await;
        if read["state"] == json!("expired") {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {read}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(available(&nodes, &skus).await[1..3], [9, 10]);

    // A cart never granted is not found; the audit is clean everywhere.
    let missing = CART_BIT | 999;
    let (status, problem) = nodes
        .call(1, Method::GET, &format!("/v1/reservations/{missing}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, audit) = nodes.call(2, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(
        (status, &audit["ok"]),
        (StatusCode::OK, &json!(true)),
        "{audit}"
    );
}

/// A coordinator that stopped after placing one part and before deciding
/// (made here by hand: the record started, both parts listed, one placed
/// under its part key): a retry meanwhile is told the cart is in progress;
/// once the attempt is too old, the partition's owner aborts it and
/// releases the part, and the retry then places the cart afresh. Then an
/// attempt aborted with a part placed: the retry undoes the part first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parts_of_a_stopped_or_aborted_attempt_are_undone() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(2, PARTITIONS, &["--durability", "sync"]);
    let skus = skus_of_distinct_partitions(2);
    stock(&nodes, &skus).await;
    let partitions = Partitions::new(u64::from(PARTITIONS)).expect("count");
    // The admin key's id (`OMNISTOCK_ADMIN_KEY`).
    let caller = "admin".to_owned();

    let request = cart(&skus, 4);
    let store = ClusterStore::connect(&[nodes.redis.urls()[0].clone()], "omnistock")
        .await
        .expect("the cluster store");
    let record = begin_by_hand(&store, &caller, &request, "stopped-cart").await;
    for sku in &skus {
        store
            .list_cart_part(partitions.of(sku), record.id, 1)
            .await
            .expect("listed");
    }
    let part = cart(&skus[..1], 4);
    let part_key = format!("~cart/{}/1", record.id);
    let (status, placed) = keyed(
        &nodes,
        1,
        Method::POST,
        "/v1/reservations",
        Some(&part),
        &part_key,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(available(&nodes, &skus).await, [6, 10]);
    let stopped_at = Instant::now();

    // Meanwhile, the client's retry: in progress.
    let (status, problem) = reserve(&nodes, 0, &request, "stopped-cart").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], json!("idempotency_in_flight"));

    // Undone by the part's owner once the attempt is 20 s old.
    while available(&nodes, &skus).await != [10, 10] {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(40),
            "the part is still held"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let undone_after = stopped_at.elapsed();
    println!("the stopped coordinator's part was released after {undone_after:?}");
    assert_eq!(state_of(&nodes, &placed).await, json!("released"));

    // The retry now runs the next attempt: granted, one cart.
    let (status, held) = reserve(&nodes, 1, &request, "stopped-cart").await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    assert_eq!(held["id"], json!(record.id.to_string()));
    assert_eq!(available(&nodes, &skus).await, [6, 6]);
    let (status, audit) = nodes.call(0, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(
        (status, &audit["reserved"]),
        (StatusCode::OK, &json!(8)),
        "{audit}"
    );

    // An attempt aborted with a part still placed (by hand again: every
    // unit left of the first SKU held under the part key): the retry undoes
    // that part before it places the next attempt, which would otherwise
    // find those units held and answer 409 for good.
    let request = cart(&skus, 6);
    let record = begin_by_hand(&store, &caller, &request, "aborted-cart").await;
    let part_key = format!("~cart/{}/1", record.id);
    let (status, placed) = reserve(&nodes, 0, &cart(&skus[..1], 6), &part_key).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(available(&nodes, &skus).await, [0, 6]);
    let home = partitions.of(&format!("{caller}:aborted-cart"));
    let abort = Decision {
        attempt: 1,
        from: CartState::Pending,
        to: CartState::Aborted,
        status: 0,
        answer: b"",
        parts: &[],
        min_age_ms: 0,
    };
    let decided = store.decide_cart(home, record.id, abort).await;
    assert!(
        matches!(decided, Ok(Decided::Done | Decided::NotReplicated)),
        "{decided:?}"
    );
    let (status, held) = reserve(&nodes, 1, &request, "aborted-cart").await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    assert_eq!(available(&nodes, &skus).await, [0, 0]);
    assert_eq!(state_of(&nodes, &placed).await, json!("released"));
}

/// A cart's record started by hand, as the coordinator starts it for the
/// admin key's request `request` under `key`.
async fn begin_by_hand(
    store: &ClusterStore,
    caller: &str,
    request: &Value,
    key: &str,
) -> omnistock::store::cluster_carts::CartRecord {
    let partitions = Partitions::new(u64::from(PARTITIONS)).expect("count");
    let key = format!("{caller}:{key}");
    // The fingerprint the coordinator computes: the kind and the body,
    // parsed and written again.
    let fingerprint = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("Reservation {request}").as_bytes());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let body = request.to_string();
    let begun = store
        .begin_cart(
            partitions.of(&key),
            Some(&key),
            CartStart {
                kind: CartKind::Reservation,
                fingerprint: &fingerprint,
                caller,
                request: body.as_bytes(),
            },
            3_600_000,
        )
        .await
        .expect("begin");
    match begun {
        Begun::New(record) => record,
        other => panic!("a new cart: {other:?}"),
    }
}
