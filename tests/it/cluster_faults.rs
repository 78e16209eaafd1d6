//! A cluster of omnistock nodes under load while nodes and Redis fail, in
//! sync durability: whatever happens, no unit is sold twice, every
//! acknowledged reservation survives (replayed with its key, it answers the
//! same), and each SKU's reserved units are exactly its reservations.
//! Graceful moves (a rolling restart, a node joining) fail no request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::cluster::{Attempt, Nodes, Outcome, Rotation, Tally, check, load};

const PARTITIONS: u16 = 16;
const SKUS: usize = 12;
/// Stock of each SKU: enough to sell through most of a fault, little
/// enough that SKUs sell out (so refusals are checked too).
const ON_HAND: u64 = 400;
const CLIENTS: u64 = 6;

fn skus() -> Vec<String> {
    (0..SKUS).map(|i| format!("SKU-{i}")).collect()
}

/// The store and every SKU's stock, through node 0.
async fn stock(nodes: &Nodes) {
    let store = json!({"kind": "store", "name": "Paris"});
    let (status, body) = nodes
        .call(0, Method::PUT, "/v1/locations/PAR-01", Some(&store))
        .await;
    assert!(status.is_success(), "{body}");
    for sku in skus() {
        let count = json!({"on_hand": ON_HAND});
        let path = format!("/v1/stock/PAR-01/{sku}");
        let (status, body) = nodes.call(0, Method::PUT, &path, Some(&count)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Load through `rotation` while `fault` runs; the requests made.
async fn under_load<F: Future<Output = ()>>(rotation: &Rotation, fault: F) -> Vec<Attempt> {
    let (stop, stopped) = watch::channel(false);
    let clients = tokio::spawn(load(rotation.clone(), skus(), CLIENTS, stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    clients.await.expect("load")
}

fn rotation(nodes: &Nodes, indexes: &[usize]) -> Rotation {
    Arc::new(parking_lot::Mutex::new(
        indexes.iter().map(|i| nodes.base(*i)).collect(),
    ))
}

fn report(name: &str, tally: &Tally, attempts: &[Attempt]) {
    let failures: Vec<&String> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Failed(why) => Some(why),
            _ => None,
        })
        .take(3)
        .collect();
    eprintln!("{name}: {tally:?}; first failures: {failures:?}");
}

/// Partitions `view` says `node` owns.
fn owned_by(view: &Value, node: &str) -> Vec<u64> {
    let owners = view["owners"].as_array().expect("owners");
    owners
        .iter()
        .filter(|o| o["node_id"] == json!(node))
        .filter_map(|o| o["partition"].as_u64())
        .collect()
}

/// One SKU of each partition of `partitions` (SKU-n, the first found).
fn sku_in(partition: u64) -> String {
    let count = omnistock_cluster::Partitions::new(u64::from(PARTITIONS)).expect("count");
    (0..)
        .map(|i| format!("PROBE-{i}"))
        .find(|sku| u64::from(count.of(sku).index()) == partition)
        .expect("a SKU")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_node_loses_no_acknowledged_write() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    stock(&nodes).await;
    let victims = owned_by(&nodes.view(0).await, "node-2");
    assert!(!victims.is_empty(), "node-2 owns partitions");
    let clients = rotation(&nodes, &[0, 1]);
    let mut takeover = Duration::ZERO;
    let attempts = under_load(&clients, async {
        nodes.kill9(2);
        let killed = Instant::now();
        // Every partition node-2 had answers again through node 0.
        for partition in &victims {
            let path = format!("/v1/availability/{}", sku_in(*partition));
            loop {
                let (status, _) = nodes.call(0, Method::GET, &path, None).await;
                if status == StatusCode::OK {
                    break;
                }
                assert!(killed.elapsed() < Duration::from_secs(20), "no takeover");
            }
        }
        takeover = killed.elapsed();
    })
    .await;
    let tally = check(&nodes, 0, &attempts, ON_HAND).await;
    report("SIGKILL of a node", &tally, &attempts);
    eprintln!(
        "takeover of {} partitions after SIGKILL: {takeover:?}",
        victims.len()
    );
    assert!(
        takeover <= Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    assert!(tally.granted > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_fenced_out_and_loses_nothing() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    stock(&nodes).await;
    let before = nodes.view(0).await;
    let paused = owned_by(&before, "node-2");
    // Clients keep sending to the paused node too: their requests wait in
    // its socket buffers and run when it resumes, with its leases gone.
    let clients = rotation(&nodes, &[0, 1, 2]);
    let attempts = under_load(&clients, async {
        nodes.process(2).signal("STOP");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let during = nodes.view(0).await;
        for partition in &paused {
            let owner = &during["owners"][*partition as usize];
            assert_ne!(owner["node_id"], json!("node-2"), "{during}");
            assert!(
                owner["epoch"].as_u64() > before["owners"][*partition as usize]["epoch"].as_u64()
            );
        }
        nodes.process(2).signal("CONT");
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    let tally = check(&nodes, 0, &attempts, ON_HAND).await;
    report("SIGSTOP of a node past its leases", &tally, &attempts);
    assert!(tally.granted > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_fails_no_request() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    stock(&nodes).await;
    let clients = rotation(&nodes, &[0, 1, 2]);
    let attempts = under_load(&clients, async {
        for restarted in 0..3 {
            // Out of rotation first, as a load balancer does.
            let others: Vec<String> = (0..3)
                .filter(|i| *i != restarted)
                .map(|i| nodes.base(i))
                .collect();
            *clients.lock() = others;
            nodes.stop(restarted);
            nodes.restart(restarted);
            *clients.lock() = (0..3).map(|i| nodes.base(i)).collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    let tally = check(&nodes, 0, &attempts, ON_HAND).await;
    report("rolling restart (SIGTERM)", &tally, &attempts);
    assert_eq!(tally.failed, 0, "a graceful restart failed requests");
    assert!(tally.granted > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_its_share_without_failing_a_request() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(2, PARTITIONS, &["--durability", "sync"]);
    stock(&nodes).await;
    let clients = rotation(&nodes, &[0, 1]);
    let attempts = under_load(&clients, async {
        let joined = nodes.add();
        clients.lock().push(nodes.base(joined));
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    let tally = check(&nodes, 0, &attempts, ON_HAND).await;
    report("a node joining", &tally, &attempts);
    assert_eq!(tally.failed, 0, "a join failed requests");
    assert!(
        !owned_by(&nodes.view(0).await, "node-2").is_empty(),
        "node-2 took a share"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_master_failover_keeps_every_acknowledged_write() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start(3, PARTITIONS, &["--durability", "sync"]);
    stock(&nodes).await;
    let clients = rotation(&nodes, &[0, 1, 2]);
    // The master of the slot of SKU-0's partition.
    let partitions = omnistock_cluster::Partitions::new(u64::from(PARTITIONS)).expect("count");
    let tag = partitions.of("SKU-0").hash_tag();
    let key = format!("omnistock:{tag}:epoch");
    let master = nodes.redis.master_of(&key);
    let mut failover = Duration::ZERO;
    let attempts = under_load(&clients, async {
        nodes.redis.kill(master);
        failover = nodes.redis.wait_failover(&key, master);
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    nodes.redis.restart(master);
    let tally = check(&nodes, 0, &attempts, ON_HAND).await;
    report("SIGKILL of a Redis master", &tally, &attempts);
    eprintln!("Redis failover: {failover:?}");
    assert!(tally.granted > 0);
}
