//! A flash sale through every node of a cluster at once: one hot SKU
//! (one partition, so one node serves it and the others forward), 1,000
//! units and 20,000 buyers each asking for one: exactly 1,000 granted,
//! every other buyer told it is sold out, nothing failed, and the audit
//! of the whole cluster agrees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::json;

use crate::support::cluster::{Nodes, Outcome, reserve};

const UNITS: u64 = 1_000;
const BUYERS: usize = 20_000;
const CONNECTIONS: usize = 96;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_through_every_node_grants_exactly_the_stock() {
    let _serial = crate::support::serial().await;
    let nodes = Nodes::start(
        3,
        16,
        &["--durability", "sync", "--rate-limit-per-second", "0"],
    );
    nodes.add_store().await;
    let (status, body) = nodes
        .call(
            1,
            Method::PUT,
            "/v1/stock/PAR-01/HOT-1",
            Some(&json!({"on_hand": UNITS})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let bases: Arc<Vec<String>> = Arc::new((0..3).map(|i| nodes.base(i)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let (bases, next) = (bases.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let http = Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let base = &bases[connection % bases.len()];
            let (mut granted, mut sold_out, mut failed) = (0_u64, 0_u64, Vec::new());
            loop {
                let buyer = next.fetch_add(1, Ordering::Relaxed);
                if buyer >= BUYERS {
                    break;
                }
                match reserve(&http, base, &format!("buyer-{buyer}"), "HOT-1").await {
                    Outcome::Granted(_) => granted += 1,
                    Outcome::SoldOut => sold_out += 1,
                    Outcome::Failed(error) => failed.push(error),
                }
            }
            (granted, sold_out, failed)
        }));
    }
    let (mut granted, mut sold_out, mut failed) = (0, 0, Vec::new());
    for task in tasks {
        let (g, s, f) = task.await.expect("buyers");
        (granted, sold_out) = (granted + g, sold_out + s);
        failed.extend(f);
    }
    println!(
        "flash sale through 3 nodes: {BUYERS} buyers in {:?}: {granted} granted, {sold_out} sold out, {} failed",
        started.elapsed(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(granted, UNITS);
    assert_eq!(sold_out, (BUYERS as u64) - UNITS);

    for index in 0..3 {
        let (status, sku) = nodes
            .call(index, Method::GET, "/v1/availability/HOT-1", None)
            .await;
        assert_eq!(
            (status, &sku["total_atf"]),
            (StatusCode::OK, &json!(0)),
            "{sku}"
        );
    }
    let (status, audit) = nodes.call(2, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert_eq!(
        (&audit["ok"], &audit["reserved"]),
        (&json!(true), &json!(UNITS)),
        "{audit}"
    );
}
