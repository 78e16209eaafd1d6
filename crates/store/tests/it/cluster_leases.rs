//! Partition leases, heartbeats and the fence on a real Redis Cluster (6
//! processes, 3 masters and 3 replicas): one owner at a time, a newer epoch
//! on every acquisition, and a stale owner's write refused by Redis itself.

use std::time::Duration;

use omnistock_cluster::{Epoch, NodeId, PartitionId, Partitions};
use omnistock_store::cluster::{self, Acquired, ClusterStore, ClusterStoreError, Renewed};
use omnistock_testkit::RedisCluster;
use redis::Script;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// A raw connection, for what a test writes and reads around the store.
async fn connect(cluster: &RedisCluster) -> ClusterConnection {
    ClusterClient::new(cluster.urls())
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("connected to the cluster")
}

async fn store(cluster: &RedisCluster) -> ClusterStore {
    ClusterStore::connect(&cluster.urls(), "omnistock")
        .await
        .expect("connected to the cluster")
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("node id")
}

fn partition(index: u16) -> PartitionId {
    Partitions::DEFAULT.get(index).expect("partition")
}

/// A write of partition `p` as a partition's writes are made: the fence
/// check, then the write, in one script on the partition's slot.
async fn fenced_write(
    con: &mut ClusterConnection,
    store: &ClusterStore,
    p: PartitionId,
    epoch: Epoch,
    value: &str,
) -> redis::RedisResult<()> {
    let script = cluster::fenced("redis.call('SET', KEYS[1], ARGV[1])\nreturn 1");
    let _: i64 = Script::new(&script)
        .key(store.partition_key(p, "probe"))
        .key(store.epoch_key(p))
        .arg(epoch.0)
        .arg(value)
        .invoke_async(con)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_at_a_time_and_a_stale_owner_is_fenced_out() {
    let cluster = RedisCluster::start();
    let (mut con, store) = (connect(&cluster).await, store(&cluster).await);
    let p = partition(17);
    let (a, b) = (node("node-a"), node("node-b"));

    let Ok(Acquired::Granted(first)) = store.acquire(p, &a, 1_500).await else {
        panic!("a free partition is granted");
    };
    let refused = store.acquire(p, &b, 1_500).await.expect("acquire");
    assert_eq!(refused, Acquired::HeldBy("node-a".into()));
    fenced_write(&mut con, &store, p, first, "from a")
        .await
        .expect("the owner writes");

    // node-a stops renewing (a pause); its lease lapses and node-b takes it.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let Ok(Acquired::Granted(second)) = store.acquire(p, &b, 5_000).await else {
        panic!("a lapsed lease is granted to the next node");
    };
    assert!(
        second > first,
        "epochs only grow: {first:?} then {second:?}"
    );

    // node-a wakes up: its late write, renewal and release are all refused.
    let late = fenced_write(&mut con, &store, p, first, "late from a").await;
    let error = late.expect_err("a stale epoch's write is refused");
    assert!(cluster::is_fenced(&error), "{error}");
    let renewed = store.renew(p, &a, first, 5_000).await.expect("renew");
    assert_eq!(renewed, Renewed::Lost);
    assert!(!store.release(p, &a, first).await.expect("release"));
    let probe: String = redis::cmd("GET")
        .arg(store.partition_key(p, "probe"))
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(probe, "from a", "the fenced write changed nothing");

    // The owner renews, writes and hands over; the next owner gets a newer epoch.
    let renewed = store.renew(p, &b, second, 5_000).await.expect("renew");
    assert_eq!(renewed, Renewed::Yes, "confirmed by a replica");
    fenced_write(&mut con, &store, p, second, "from b")
        .await
        .expect("b writes");
    assert!(store.release(p, &b, second).await.expect("release"));
    let again = store.acquire(p, &a, 5_000).await.expect("a again");
    assert!(
        matches!(again, Acquired::Granted(third) if third > second),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_keys_share_one_slot_and_each_partition_has_its_own() {
    let cluster = RedisCluster::start();
    let store = store(&cluster).await;
    let port = cluster.ports()[0];
    let slot = |key: &str| {
        let answer = cluster.cli(port, &["CLUSTER", "KEYSLOT", key]);
        answer.expect("KEYSLOT").trim().to_owned()
    };
    let p = partition(5);
    assert_eq!(slot(&store.lease_key(p)), slot(&store.epoch_key(p)));
    assert_eq!(
        slot(&store.lease_key(p)),
        slot(&store.partition_key(p, "pos"))
    );
    let slots: std::collections::BTreeSet<String> = Partitions::DEFAULT
        .all()
        .map(|p| slot(&store.lease_key(p)))
        .collect();
    assert_eq!(slots.len(), 64, "each partition has its own slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_partition_count_is_refused() {
    let cluster = RedisCluster::start();
    let store = store(&cluster).await;
    let p64 = Partitions::DEFAULT;
    let p128 = Partitions::new(128).expect("count");
    store
        .ensure_partitions(p64)
        .await
        .expect("the first node sets 64");
    store
        .ensure_partitions(p64)
        .await
        .expect("the same count joins");
    let refused = store.ensure_partitions(p128).await;
    let Err(
        error @ ClusterStoreError::PartitionsMismatch {
            stored: 64,
            requested: 128,
        },
    ) = refused
    else {
        panic!("another count is refused: {refused:?}");
    };
    assert!(error.to_string().contains("--partitions 64"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_show_who_is_alive_on_redis_clock() {
    let cluster = RedisCluster::start();
    let store = store(&cluster).await;
    let (a, b) = (node("node-a"), node("node-b"));
    store
        .heartbeat(&a, "http://127.0.0.1:1001", 1_500)
        .await
        .expect("a beats");
    let seen = store
        .heartbeat(&b, "http://127.0.0.1:1002", 10_000)
        .await
        .expect("b beats");
    let alive: Vec<(&str, &str, bool)> = seen
        .iter()
        .map(|m| (m.id.as_str(), m.url.as_str(), m.alive))
        .collect();
    assert_eq!(
        alive,
        [
            ("node-a", "http://127.0.0.1:1001", true),
            ("node-b", "http://127.0.0.1:1002", true)
        ]
    );

    // node-a stops beating: past its TTL it is shown dead, not yet forgotten.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let seen = store.members().await.expect("members");
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].alive && seen[1].alive, "{seen:?}");

    // A graceful leave removes node-b at once.
    store.leave(&b).await.expect("leave");
    let seen = store.members().await.expect("members");
    let ids: Vec<&str> = seen.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["node-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_no_replica_confirmed_is_not_granted() {
    let mut cluster = RedisCluster::start();
    let store = store(&cluster).await;
    let p = partition(9);
    let master = cluster.master_of(&store.lease_key(p));
    for replica in cluster.replicas_of(master) {
        cluster.kill(replica);
    }
    // The master alone: a grant it cannot replicate could be lost with it.
    let answer = store
        .acquire(p, &node("node-a"), 5_000)
        .await
        .expect("acquire");
    assert_eq!(answer, Acquired::NotReplicated);
    // Another partition, on a master with its replica, is granted.
    let other = Partitions::DEFAULT
        .all()
        .find(|q| cluster.master_of(&store.lease_key(*q)) != master)
        .expect("a partition on another master");
    let answer = store
        .acquire(other, &node("node-a"), 5_000)
        .await
        .expect("acquire");
    assert!(matches!(answer, Acquired::Granted(_)), "{answer:?}");
}
