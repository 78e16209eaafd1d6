//! Latency from a reservation's 201 to a live-stream subscriber seeing it
//! (BENCHMARKS.md). Start a server first:
//! `OMNISTOCK_ADMIN_KEY=bench-admin-key-0123456789 cargo run --release -- serve --listen 127.0.0.1:18555`
//! then `cargo run --release --example sse_latency -- http://127.0.0.1:18555 [count]`.
//! Measured from sending the reservation (so it includes the request) to the
//! event's arrival, with `coalesce_ms=0`.

use std::time::{Duration, Instant};

use serde_json::json;

const KEY: &str = "bench-admin-key-0123456789";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18555".into());
    let count: usize = args.next().map_or(2_000, |c| c.parse().expect("count"));
    let http = reqwest::Client::new();
    let put = |path: &str, body: serde_json::Value| {
        let request = http
            .put(format!("{base}{path}"))
            .bearer_auth(KEY)
            .json(&body);
        async move {
            let status = request.send().await.expect("seed").status();
            assert!(status.is_success(), "{status}");
        }
    };
    put(
        "/v1/locations/LAT-1",
        json!({"kind": "store", "name": "latency"}),
    )
    .await;
    put("/v1/stock/LAT-1/LAT-SKU", json!({"on_hand": 4_000_000})).await;
    let mut stream = http
        .get(format!(
            "{base}/v1/streams/availability?sku=LAT-SKU&location=LAT-1&coalesce_ms=0"
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("subscribe");
    let body = json!({"channel": "web", "lines": [{"sku": "LAT-SKU", "location": "LAT-1", "qty": 1}], "ttl_seconds": 3600});
    let mut latencies = Vec::with_capacity(count);
    let mut buffer = String::new();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..count {
        let sent = Instant::now();
        let status = http
            .post(format!("{base}/v1/reservations"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("reserve")
            .status();
        assert!(status.is_success());
        // Wait for the next availability event.
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.contains("event: availability") {
                    break;
                }
                continue;
            }
            let chunk = stream.chunk().await.expect("stream").expect("open");
            buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{count} reservations: reservation sent -> event received p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}
