//! Partitions that move between nodes keep their stock: a node loads a
//! partition's positions from Redis before serving it, and flushes them,
//! fenced, before handing it over (on a real Redis Cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistock_cluster::{NodeId, Partitions};
use omnistock_engine::Clock;
use omnistock_engine::ownership_driver::{NodeConfig, OwnershipDriver, monotonic_ms};
use omnistock_engine::partition_ledgers::PartitionLedgers;
use omnistock_ledger::{
    CatalogRecord, CountRequest, Ledger, LedgerConfig, Location, LocationCode, LocationKind, Qty,
    Seq, Sku, TimestampMs,
};
use omnistock_store::cluster::ClusterStore;
use omnistock_testkit::RedisCluster;

const PARTITIONS: u64 = 8;
const SKUS: usize = 40;

fn store_code() -> LocationCode {
    LocationCode::new("PAR-01").expect("code")
}

/// The catalog every ledger shares: one store.
fn catalog() -> CatalogRecord {
    let ledger = Ledger::new(LedgerConfig::default());
    ledger
        .put_location(Location {
            code: store_code(),
            kind: LocationKind::Store,
            name: "Paris".into(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        })
        .expect("location");
    CatalogRecord::of(&ledger.catalog())
}

fn clock() -> Clock {
    Arc::new(|| TimestampMs(1_800_000_000_000))
}

async fn node(cluster: &RedisCluster, name: &str) -> (OwnershipDriver, Arc<PartitionLedgers>) {
    let store = ClusterStore::connect(&cluster.urls(), "omnistock")
        .await
        .expect("connect");
    let partitions = Partitions::new(PARTITIONS).expect("count");
    let config = LedgerConfig {
        position_shards: 4,
        reservation_shards: 4,
        journal_capacity: 1_024,
        ..LedgerConfig::default()
    };
    let ledgers = Arc::new(PartitionLedgers::new(
        store.clone(),
        partitions,
        config,
        catalog(),
        clock(),
    ));
    let id = NodeId::new(name).expect("id");
    let driver_config = NodeConfig::new(id, format!("http://{name}.invalid"), partitions);
    let driver = OwnershipDriver::start(driver_config, store, ledgers.clone(), monotonic_ms())
        .await
        .expect("joins");
    (driver, ledgers)
}

async fn until(within: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The on hand of every SKU, read from whichever of `nodes` serves its
/// partition (None: nobody serves it).
fn on_hand(nodes: &[&(OwnershipDriver, Arc<PartitionLedgers>)]) -> Vec<Option<u32>> {
    let partitions = Partitions::new(PARTITIONS).expect("count");
    (0..SKUS)
        .map(|i| {
            let sku = Sku::new(&format!("SKU-{i}")).expect("sku");
            let p = partitions.of(sku.as_str());
            nodes.iter().find_map(|(driver, ledgers)| {
                let epoch = driver.serving(p)?;
                let (loaded, ledger) = ledgers.ledger(p)?;
                (loaded == epoch).then(|| {
                    let view = ledger.position(&sku, &store_code(), None, clock()());
                    view.expect("position").on_hand.0
                })
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_moves_with_its_partitions_between_nodes() {
    let cluster = RedisCluster::start();
    let a = node(&cluster, "node-a").await;
    let all_served = |nodes: &[&(OwnershipDriver, Arc<PartitionLedgers>)]| {
        on_hand(nodes).iter().all(Option::is_some)
    };
    until(Duration::from_secs(10), || all_served(&[&a])).await;

    // node-a counts every SKU into the ledger of its partition.
    let partitions = Partitions::new(PARTITIONS).expect("count");
    for i in 0..SKUS {
        let sku = Sku::new(&format!("SKU-{i}")).expect("sku");
        let (_, ledger) = a.1.ledger(partitions.of(sku.as_str())).expect("loaded");
        let count = CountRequest {
            sku,
            location: store_code(),
            on_hand: Qty(100 + i as u32),
            safety_stock: None,
            expected_version: Some(Seq(0)),
            as_of: None,
            reference: None,
        };
        ledger.count(&count, clock()(), None).expect("count");
    }
    let expected: Vec<Option<u32>> = (0..SKUS).map(|i| Some(100 + i as u32)).collect();
    assert_eq!(on_hand(&[&a]), expected);

    // node-b joins: node-a flushes and hands its share over, node-b loads
    // it before serving it; every SKU reads the same wherever it is served.
    let b = node(&cluster, "node-b").await;
    until(Duration::from_secs(10), || {
        all_served(&[&a, &b])
            && !b.0.served().is_empty()
            && b.0.served().len() < PARTITIONS as usize
    })
    .await;
    assert_eq!(on_hand(&[&a, &b]), expected);

    // node-a leaves: node-b takes everything, with the stock.
    assert!(a.0.leave().await, "handed over");
    until(Duration::from_secs(10), || all_served(&[&b])).await;
    assert_eq!(on_hand(&[&b]), expected);
}
