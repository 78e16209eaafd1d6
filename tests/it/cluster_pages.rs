//! Pages through a cluster: a publishable key created through one node
//! reads availability, preflights and streams through any node, with the
//! same CORS answers as a single engine; a secret key from another site's
//! page is refused wherever the request is served, and the console's own
//! origin is told apart even when its request is forwarded.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::cluster::Nodes;
use crate::support::{ADMIN, header, sse};

const PARTITIONS: u16 = 16;
const SHOP: &str = "https://shop.example";

/// Waits until node `index` knows the publishable `key` (nodes poll the
/// shared keys).
async fn until_known(nodes: &Nodes, index: usize, key: &str) {
    let url = format!("{}/v1/availability/SKU-1?key={key}", nodes.base(index));
    for _ in 0..100 {
        let status = nodes.http.get(&url).send().await.expect("read").status();
        if status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {index} never learnt the publishable key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_and_stream_through_any_node() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    nodes.add_store().await;
    let count = json!({"on_hand": 4});
    let (status, _) = nodes
        .call(1, Method::PUT, "/v1/stock/PAR-01/SKU-1", Some(&count))
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = json!({"name": "shop", "kind": "publishable", "channel": "web",
        "origins": [SHOP], "quantities": "threshold"});
    let (status, created) = nodes.call(0, Method::POST, "/v1/keys", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    for index in 0..3 {
        until_known(&nodes, index, &key).await;
        reads_through(&nodes, index, &key).await;
    }
    stream_follows_a_hold(&nodes, &key).await;
}

/// Through node `index`: a page's read (CORS for its origin, refused for
/// another), its preflight, the console's own origin told apart from
/// another site's, the console itself.
async fn reads_through(nodes: &Nodes, index: usize, key: &str) {
    let url = format!("{}/v1/availability/SKU-1?key={key}", nodes.base(index));
    let answer = nodes
        .http
        .get(&url)
        .header("Origin", SHOP)
        .send()
        .await
        .expect("read");
    assert_eq!(answer.status(), StatusCode::OK, "via node {index}");
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(SHOP)
    );
    let page: Value = answer.json().await.expect("JSON");
    assert_eq!(page["availability"], "limited", "{page}");
    assert_eq!(page["total_atf"], 4, "{page}");
    let foreign = nodes
        .http
        .get(&url)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("read");
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN, "via node {index}");
    let preflight = nodes
        .http
        .request(Method::OPTIONS, &url)
        .header("Origin", SHOP)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        preflight.status(),
        StatusCode::NO_CONTENT,
        "via node {index}"
    );
    // The console's own origin may send the admin key, another's not,
    // whichever node serves the partition.
    let admin_read = |origin: String| {
        let url = format!("{}/v1/stock/PAR-01/SKU-1", nodes.base(index));
        let request = nodes
            .http
            .get(url)
            .bearer_auth(ADMIN)
            .header("Origin", origin);
        async move { request.send().await.expect("read").status() }
    };
    assert_eq!(
        admin_read(nodes.base(index)).await,
        StatusCode::OK,
        "via node {index}"
    );
    assert_eq!(
        admin_read(SHOP.to_owned()).await,
        StatusCode::FORBIDDEN,
        "via node {index}"
    );
    let console = nodes
        .http
        .get(format!("{}/console", nodes.base(index)))
        .send()
        .await
        .expect("console");
    assert_eq!(console.status(), StatusCode::OK);
}

/// A page's stream through one node follows a hold made through another.
async fn stream_follows_a_hold(nodes: &Nodes, key: &str) {
    // A page's stream through one node follows a reservation through another.
    let url = format!(
        "{}/v1/streams/availability?sku=SKU-1&coalesce_ms=10&key={key}",
        nodes.base(2)
    );
    let mut stream = nodes
        .http
        .get(&url)
        .header("Origin", SHOP)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        header(&stream, "access-control-allow-origin").as_deref(),
        Some(SHOP)
    );
    let mut buffer = String::new();
    let within = Duration::from_secs(10);
    let first = sse::next_availability(&mut stream, &mut buffer, within, "the current state").await;
    assert_eq!(first["atf"], 4, "{first}");
    let hold = json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "PAR-01", "qty": 2}], "ttl_seconds": 60});
    let (status, body) = crate::support::engine::send(
        &nodes.http,
        &nodes.base(0),
        Method::POST,
        "/v1/reservations",
        Some(ADMIN),
        Some(&hold),
        &[("Idempotency-Key", "page-hold")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let changed = sse::next_availability(&mut stream, &mut buffer, within, "the change").await;
    assert_eq!(changed["atf"], 2, "{changed}");
    assert_eq!(changed["availability"], "limited");
}
