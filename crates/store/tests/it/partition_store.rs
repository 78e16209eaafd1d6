//! One partition's positions on a real Redis Cluster, written under the
//! partition's epoch: the owner's writes apply, a stale owner's are refused
//! by Redis and change nothing, an older batch is skipped, and a record of
//! another partition is refused before anything is sent.

use omnistock_cluster::{NodeId, PartitionId, Partitions};
use omnistock_ledger::{LocationCode, PositionRecord, Qty, Seq, Sku, TimestampMs};
use omnistock_store::cluster::{Acquired, ClusterStore};
use omnistock_store::partition_store::{PartitionStore, PartitionWriteError, Written};
use omnistock_testkit::RedisCluster;

const PARTITIONS: u64 = 16;

/// A SKU of `partition` (the first of SKU-0, SKU-1, ... that hashes there).
fn sku_of(partitions: Partitions, partition: PartitionId, skip: usize) -> Sku {
    let code = (0..)
        .map(|i| format!("SKU-{i}"))
        .filter(|code| partitions.of(code) == partition)
        .nth(skip)
        .expect("a SKU of the partition");
    Sku::new(&code).expect("sku")
}

fn position(sku: &Sku, location: &str, on_hand: u32) -> PositionRecord {
    PositionRecord {
        sku: sku.clone(),
        location: LocationCode::new(location).expect("location"),
        on_hand: Qty(on_hand),
        reserved: Qty(0),
        safety_stock: Qty(0),
        non_sellable: Qty(0),
        version: Seq(1),
        last_count_as_of: TimestampMs::MIN,
        incoming: Vec::new(),
        history: Vec::new(),
        history_horizon: TimestampMs(0),
        display_only: false,
        published_lag: 0,
    }
}

fn on_hand(positions: &[PositionRecord]) -> Vec<(String, String, u32)> {
    let mut rows: Vec<_> = positions
        .iter()
        .map(|p| (p.sku.to_string(), p.location.to_string(), p.on_hand.0))
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_positions_are_written_only_under_its_current_epoch() {
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
    let partition = PartitionStore::new(store.clone(), partitions, p);
    let (one, two) = (sku_of(partitions, p, 0), sku_of(partitions, p, 1));

    let Ok(Acquired::Granted(first)) = store.acquire(p, &a, 1_000).await else {
        panic!("granted");
    };
    let batch = [
        position(&one, "PAR-01", 10),
        position(&one, "WH", 4),
        position(&two, "PAR-01", 7),
    ];
    let written = partition
        .write_positions(first, 1, &batch)
        .await
        .expect("the owner writes");
    assert_eq!(written, Written::Applied(2), "one field per SKU");

    // An older batch, even from the owner, changes nothing.
    let stale = [position(&one, "PAR-01", 99)];
    assert_eq!(
        partition
            .write_positions(first, 0, &stale)
            .await
            .expect("older"),
        Written::Older
    );

    // node-a's lease lapses and node-b takes the partition.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let Ok(Acquired::Granted(second)) = store.acquire(p, &b, 10_000).await else {
        panic!("granted to b");
    };

    // node-a's late write is refused by Redis, whatever its version.
    let late = [position(&one, "PAR-01", 0)];
    let refused = partition.write_positions(first, 5, &late).await;
    assert!(
        matches!(refused, Err(PartitionWriteError::Fenced)),
        "{refused:?}"
    );
    let stored = partition.load_positions().await.expect("load");
    assert_eq!(
        on_hand(&stored),
        [
            (one.to_string(), "PAR-01".into(), 10),
            (one.to_string(), "WH".into(), 4),
            (two.to_string(), "PAR-01".into(), 7)
        ]
    );

    // node-b writes under its epoch.
    let update = [position(&two, "PAR-01", 6)];
    let written = partition
        .write_positions(second, 2, &update)
        .await
        .expect("b writes");
    assert_eq!(written, Written::Applied(1));
    let stored = partition.load_positions().await.expect("load");
    assert!(on_hand(&stored).contains(&(two.to_string(), "PAR-01".into(), 6)));

    // A record of another partition is refused, and nothing is written.
    let elsewhere = sku_of(partitions, partitions.get(4).expect("p4"), 0);
    let mixed = [
        position(&one, "PAR-01", 1),
        position(&elsewhere, "PAR-01", 1),
    ];
    let refused = partition.write_positions(second, 3, &mixed).await;
    assert!(
        matches!(refused, Err(PartitionWriteError::WrongPartition { .. })),
        "{refused:?}"
    );
    let stored = partition.load_positions().await.expect("load");
    assert!(on_hand(&stored).contains(&(one.to_string(), "PAR-01".into(), 10)));
}
