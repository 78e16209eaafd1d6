//! Partitions that move between nodes keep their whole state: each node
//! runs one engine per partition it owns on the partition's store; a
//! partition is loaded before it is served, and flushed, fenced, before it
//! is handed over; a node that joins later adopts the cluster's shared
//! catalog (on a real Redis Cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistock_cluster::{NodeId, Partitions};
use omnistock_engine::cluster_shared::{SharedRecord, SharedState};
use omnistock_engine::ownership_driver::{NodeConfig, OwnershipDriver, monotonic_ms};
use omnistock_engine::partition_engines::{PartitionEngineConfig, PartitionEngines};
use omnistock_engine::{EngineConfig, WriteBehindConfig};
use omnistock_ledger::{
    Channel, CountRequest, LedgerConfig, Line, Location, LocationCode, LocationKind, Qty,
    ReservationId, ReserveRequest, Sku,
};
use omnistock_store::cluster::ClusterStore;
use omnistock_store::cluster_shared::Published;
use omnistock_store::redis::RedisConfig;
use omnistock_testkit::RedisCluster;

const PARTITIONS: u64 = 8;
const SKUS: usize = 24;

type Node = (OwnershipDriver, Arc<PartitionEngines>);

fn store_code() -> LocationCode {
    LocationCode::new("PAR-01").expect("code")
}

fn sku(i: usize) -> Sku {
    Sku::new(&format!("SKU-{i}")).expect("sku")
}

async fn node(cluster: &RedisCluster, name: &str) -> Node {
    let store = ClusterStore::connect(&cluster.urls(), "omnistock")
        .await
        .expect("connect");
    let partitions = Partitions::new(PARTITIONS).expect("count");
    let engine = EngineConfig {
        store: Some(WriteBehindConfig::default()),
        ..EngineConfig::default()
    };
    let shared = SharedState::start(store.clone(), &engine)
        .await
        .expect("shared state");
    let config = PartitionEngineConfig {
        partitions,
        engine,
        ledger: LedgerConfig {
            position_shards: 4,
            reservation_shards: 4,
            journal_capacity: 1_024,
            ..LedgerConfig::default()
        },
        redis: RedisConfig::new("redis://unused"),
    };
    let engines = Arc::new(PartitionEngines::new(store.clone(), config, shared));
    let id = NodeId::new(name).expect("id");
    let driver_config = NodeConfig::new(id, format!("http://{name}.invalid"), partitions);
    let driver = OwnershipDriver::start(driver_config, store, engines.clone(), monotonic_ms())
        .await
        .expect("joins");
    (driver, engines)
}

async fn until(within: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every SKU's (on hand, reserved) and whether its reservation is still
/// held, read from whichever of `nodes` serves its partition (None:
/// nobody does).
async fn state(nodes: &[&Node], held: &[ReservationId]) -> Vec<Option<(u32, u32, bool)>> {
    let partitions = Partitions::new(PARTITIONS).expect("count");
    let mut rows = Vec::new();
    for (i, id) in held.iter().enumerate() {
        let p = partitions.of(sku(i).as_str());
        let mut row = None;
        for (driver, engines) in nodes {
            if driver.serving(p).is_none() {
                continue;
            }
            let Some(serving) = engines.enter(p).await else {
                continue;
            };
            let ledger = serving.engine.ledger();
            let now = serving.engine.now();
            let view = ledger.position(&sku(i), &store_code(), None, now);
            let view = view.expect("position");
            let held = ledger
                .reservation(*id)
                .is_some_and(|r| r.lines[0].qty == Qty(1));
            row = Some((view.on_hand.0, view.reserved.0, held));
        }
        rows.push(row);
    }
    rows
}

/// Adds the store to the cluster's shared catalog, counts SKU i at
/// 100 + i and holds one unit of it; the reservations' ids.
async fn fill(node: &Node) -> Vec<ReservationId> {
    let partitions = Partitions::new(PARTITIONS).expect("count");
    let shared = node.1.shared();
    {
        let _writing = shared.writing().await;
        let location = Location {
            code: store_code(),
            kind: LocationKind::Store,
            name: "Paris".into(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        };
        shared
            .engine()
            .ledger()
            .put_location(location)
            .expect("location");
        let published = shared
            .publish(SharedRecord::Catalog)
            .await
            .expect("publish");
        assert_eq!(published, Published::Version(1));
        node.1.adopt_shared_catalog();
    }
    let mut ids = Vec::new();
    for i in 0..SKUS {
        let p = partitions.of(sku(i).as_str());
        let serving = node.1.enter(p).await.expect("served");
        let (ledger, now) = (serving.engine.ledger(), serving.engine.now());
        let count = CountRequest {
            sku: sku(i),
            location: store_code(),
            on_hand: Qty(100 + i as u32),
            safety_stock: None,
            expected_version: None,
            as_of: None,
            reference: None,
        };
        ledger.count(&count, now, None).expect("count");
        let reserve = ReserveRequest {
            channel: Channel::Web,
            lines: vec![Line {
                sku: sku(i),
                location: store_code(),
                qty: Qty(1),
            }],
            ttl_ms: 600_000,
            caps: Vec::new(),
        };
        let held = ledger.reserve(&reserve, now, None).expect("reserve");
        assert_eq!(
            u64::from(p.index()),
            held.id.0 >> 48,
            "the id names the partition"
        );
        ids.push(held.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_and_reservations_move_with_their_partitions_between_nodes() {
    let cluster = RedisCluster::start();
    let a = node(&cluster, "node-a").await;
    until(Duration::from_secs(10), || {
        a.0.served().len() == PARTITIONS as usize
    })
    .await;
    let held = fill(&a).await;
    let expected: Vec<_> = (0..SKUS).map(|i| Some((100 + i as u32, 1, true))).collect();
    assert_eq!(state(&[&a], &held).await, expected);

    // node-b joins: node-a flushes and hands its share over, node-b loads
    // it before serving it; every SKU reads the same wherever it is served.
    let b = node(&cluster, "node-b").await;
    let moved = || {
        let served = b.0.served().len();
        served > 0
            && served < PARTITIONS as usize
            && a.0.served().len() + served == PARTITIONS as usize
    };
    until(Duration::from_secs(10), moved).await;
    assert_eq!(state(&[&a, &b], &held).await, expected);

    // node-a leaves: node-b takes everything, with the stock and the holds.
    assert!(a.0.leave().await, "handed over");
    until(Duration::from_secs(10), || {
        b.0.served().len() == PARTITIONS as usize
    })
    .await;
    assert_eq!(state(&[&b], &held).await, expected);
}
