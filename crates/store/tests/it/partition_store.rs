//! One partition's store on a real Redis Cluster: a partition's whole state
//! (catalog, positions, reservations, engine state, movements) is written
//! under its hash tag and its epoch, loads back into a fresh ledger, and a
//! stale owner's write is refused by the fence and changes nothing.

use std::time::Duration;

use omnistock_cluster::{Epoch, NodeId, PartitionId, Partitions};
use omnistock_ledger::{
    Changes, Channel, CountRequest, Ledger, LedgerConfig, Line, Location, LocationCode,
    LocationKind, Qty, ReserveRequest, Seq, Sku, TimestampMs,
};
use omnistock_store::cluster::{Acquired, ClusterStore};
use omnistock_store::redis::{RedisConfig, RedisStore};
use omnistock_store::{Batch, Store, StoreError};
use omnistock_testkit::RedisCluster;

const PARTITIONS: u64 = 16;
const NOW: TimestampMs = TimestampMs(1_800_000_000_000);

/// A SKU of `partition` (the first of SKU-0, SKU-1, ... that hashes there).
fn sku_of(partitions: Partitions, partition: PartitionId) -> Sku {
    let code = (0..)
        .map(|i| format!("SKU-{i}"))
        .find(|code| partitions.of(code) == partition)
        .expect("a SKU of the partition");
    Sku::new(&code).expect("sku")
}

fn store_code() -> LocationCode {
    LocationCode::new("PAR-01").expect("location")
}

fn ledger(partition: PartitionId) -> Ledger {
    Ledger::new(LedgerConfig {
        position_shards: 4,
        reservation_shards: 4,
        journal_capacity: 1_024,
        reservation_id_tag: partition.index(),
        ..LedgerConfig::default()
    })
}

fn count(ledger: &Ledger, sku: &Sku, on_hand: u32) {
    let request = CountRequest {
        sku: sku.clone(),
        location: store_code(),
        on_hand: Qty(on_hand),
        safety_stock: None,
        expected_version: None,
        as_of: None,
        reference: None,
    };
    ledger.count(&request, NOW, None).expect("count");
}

/// Writes what changed in `ledger` since `changes` was last written.
async fn write(
    store: &RedisStore,
    ledger: &Ledger,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    let cut = ledger.cut(changes, NOW);
    let batch = Batch {
        cut: &cut,
        keys: None,
        now: NOW,
        reservation_shards: 4,
        clean: false,
        catalog_changed: true,
    };
    let written = store.write(&batch).await;
    match &written {
        Ok(()) => changes.written(&cut),
        Err(_) => changes.unwritten(cut),
    }
    written
}

/// The on hand of every position a load found.
fn on_hand(loaded: &omnistock_store::Loaded) -> Vec<u32> {
    let positions = &loaded.restore.positions;
    positions.iter().map(|p| p.on_hand.0).collect()
}

fn partition_store(cluster: &ClusterStore, p: PartitionId, epoch: Epoch) -> RedisStore {
    // The URL is unused: a partition's store talks through `cluster`.
    let config = RedisConfig::new("redis://unused");
    RedisStore::for_partition(config, cluster, p, epoch, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_state_is_written_only_under_its_current_epoch() {
    let cluster = RedisCluster::start();
    let store = ClusterStore::connect(&cluster.urls(), "omnistock")
        .await
        .expect("connect");
    let partitions = Partitions::new(PARTITIONS).expect("count");
    let p = partitions.get(3).expect("p3");
    let (a, b) = (
        NodeId::new("node-a").expect("id"),
        NodeId::new("node-b").expect("id"),
    );
    let Ok(Acquired::Granted(first)) = store.acquire(p, &a, 1_000).await else {
        panic!("granted");
    };

    // node-a's ledger of p3: a store, a SKU, a reservation.
    let ledger = ledger(p);
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
    let sku = sku_of(partitions, p);
    count(&ledger, &sku, 10);
    let reserve = ReserveRequest {
        channel: Channel::Web,
        lines: vec![Line {
            sku: sku.clone(),
            location: store_code(),
            qty: Qty(2),
        }],
        ttl_ms: 600_000,
        caps: Vec::new(),
    };
    let held = ledger.reserve(&reserve, NOW, None).expect("reserve");
    assert_eq!(held.id.0 >> 48, 3, "the id carries the partition");

    let mut changes = Changes::new(&ledger, 1_000);
    changes.everything = true;
    let a_store = partition_store(&store, p, first);
    write(&a_store, &ledger, &mut changes)
        .await
        .expect("the owner writes, and a replica confirms it");

    // Every key written carries the partition's hash tag.
    let mut keys = Vec::new();
    for port in cluster.ports() {
        let found = cluster.cli(port, &["--scan", "--pattern", "omnistock:*"]);
        keys.extend(found.unwrap_or_default().lines().map(str::to_owned));
    }
    keys.sort();
    keys.dedup();
    assert!(
        keys.iter().all(|k| k.starts_with("omnistock:{p3}:")),
        "{keys:?}"
    );
    for name in [
        ":meta:state",
        ":meta:catalog",
        ":meta:marker",
        ":pos",
        ":res",
    ] {
        assert!(
            keys.iter().any(|k| k.ends_with(name)),
            "no {name}: {keys:?}"
        );
    }

    // Loaded into a fresh ledger of p3: the same stock and reservation.
    let loaded = partition_store(&store, p, first)
        .load(NOW)
        .await
        .expect("load")
        .expect("not empty");
    let head = loaded.restore.head;
    let restored = self::ledger(p);
    restored.restore(loaded.restore, NOW).expect("restore");
    let view = restored
        .position(&sku, &store_code(), None, NOW)
        .expect("position");
    assert_eq!((view.on_hand.0, view.reserved.0), (10, 2));
    let reservation = restored.reservation(held.id).expect("the reservation");
    assert_eq!(reservation.lines.len(), 1);

    // node-a's lease lapses and node-b takes the partition.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let Ok(Acquired::Granted(second)) = store.acquire(p, &b, 10_000).await else {
        panic!("granted to b");
    };
    assert!(second > first);

    // node-a's late change is refused by Redis, and nothing of it lands.
    count(&ledger, &sku, 0);
    let refused = write(&a_store, &ledger, &mut changes).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    let stored = partition_store(&store, p, second)
        .load(NOW)
        .await
        .expect("load")
        .expect("not empty");
    assert_eq!(on_hand(&stored), [10]);
    assert_eq!(
        stored.restore.head, head,
        "the refused batch left the state alone"
    );

    // node-b writes under its epoch (its first write after a load).
    let b_store = partition_store(&store, p, second);
    let b_loaded = b_store.load(NOW).await.expect("load").expect("not empty");
    let b_ledger = self::ledger(p);
    b_ledger.restore(b_loaded.restore, NOW).expect("restore");
    let mut b_changes = Changes::new(&b_ledger, 1_000);
    count(&b_ledger, &sku, 7);
    write(&b_store, &b_ledger, &mut b_changes)
        .await
        .expect("b writes");
    let stored = b_store.load(NOW).await.expect("load").expect("not empty");
    assert_eq!(on_hand(&stored), [7]);
    assert!(stored.restore.positions[0].version > Seq(0));
}
