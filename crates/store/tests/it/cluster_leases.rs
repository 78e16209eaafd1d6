//! Partition leases and the fence on a real Redis Cluster (6 processes,
//! 3 masters and 3 replicas): one owner at a time, a newer epoch on every
//! acquisition, and a stale owner's write refused by Redis itself.

use std::time::Duration;

use omnistock_cluster::{Epoch, NodeId, PartitionId, Partitions};
use omnistock_store::cluster::{
    self, Acquired, ClusterStoreError, FENCE_CHECK, epoch_key, lease_key,
};
use omnistock_testkit::RedisCluster;
use redis::Script;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

async fn connect(cluster: &RedisCluster) -> ClusterConnection {
    ClusterClient::new(cluster.urls())
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("connected to the cluster")
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("node id")
}

fn partition(index: u16) -> PartitionId {
    Partitions::DEFAULT.get(index).expect("partition")
}

/// A write of partition `p` as every flush makes it: the fence check, then
/// the write, in one script on the partition's slot.
async fn fenced_write(
    con: &mut ClusterConnection,
    p: PartitionId,
    epoch: Epoch,
    value: &str,
) -> redis::RedisResult<()> {
    let script = format!("{FENCE_CHECK}\nredis.call('SET', KEYS[2], ARGV[2])\nreturn 1");
    let _: i64 = Script::new(&script)
        .key(epoch_key(p))
        .key(format!("{}:probe", p.hash_tag()))
        .arg(epoch.0)
        .arg(value)
        .invoke_async(con)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_at_a_time_and_a_stale_owner_is_fenced_out() {
    let cluster = RedisCluster::start();
    let mut con = connect(&cluster).await;
    let p = partition(17);
    let (a, b) = (node("node-a"), node("node-b"));

    let Acquired::Granted(first) = cluster::acquire(&mut con, p, &a, 400)
        .await
        .expect("acquire")
    else {
        panic!("a free partition is granted");
    };
    assert_eq!(
        cluster::acquire(&mut con, p, &b, 400)
            .await
            .expect("acquire"),
        Acquired::HeldBy("node-a".into())
    );
    fenced_write(&mut con, p, first, "from a")
        .await
        .expect("the owner writes");

    // node-a stops renewing (a pause); its lease lapses and node-b takes it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let Acquired::Granted(second) = cluster::acquire(&mut con, p, &b, 5_000).await.expect("b")
    else {
        panic!("a lapsed lease is granted to the next node");
    };
    assert!(
        second > first,
        "epochs only grow: {first:?} then {second:?}"
    );

    // node-a wakes up: its late write, renewal and release are all refused.
    let late = fenced_write(&mut con, p, first, "late from a").await;
    let error = late.expect_err("a stale epoch's write is refused");
    assert!(cluster::is_fenced(&error), "{error}");
    assert!(
        !cluster::renew(&mut con, p, &a, first, 5_000)
            .await
            .expect("renew")
    );
    assert!(
        !cluster::release(&mut con, p, &a, first)
            .await
            .expect("release")
    );
    let probe: String = redis::cmd("GET")
        .arg(format!("{}:probe", p.hash_tag()))
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(probe, "from a", "the fenced write changed nothing");

    // The owner renews, writes and hands over.
    assert!(
        cluster::renew(&mut con, p, &b, second, 5_000)
            .await
            .expect("renew")
    );
    fenced_write(&mut con, p, second, "from b")
        .await
        .expect("b writes");
    assert!(
        cluster::release(&mut con, p, &b, second)
            .await
            .expect("release")
    );
    assert!(matches!(
        cluster::acquire(&mut con, p, &a, 5_000).await.expect("a again"),
        Acquired::Granted(third) if third > second
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_keys_share_one_slot_and_each_partition_has_its_own() {
    let cluster = RedisCluster::start();
    let port = cluster.ports()[0];
    let slot = |key: &str| {
        cluster
            .cli(port, &["CLUSTER", "KEYSLOT", key])
            .expect("KEYSLOT")
            .trim()
            .to_owned()
    };
    let p = partition(5);
    assert_eq!(slot(&lease_key(p)), slot(&epoch_key(p)));
    assert_eq!(
        slot(&lease_key(p)),
        slot(&format!("{}:positions", p.hash_tag()))
    );
    let slots: std::collections::BTreeSet<String> = Partitions::DEFAULT
        .all()
        .map(|p| slot(&lease_key(p)))
        .collect();
    assert_eq!(slots.len(), 64, "each partition has its own slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_partition_count_is_refused() {
    let cluster = RedisCluster::start();
    let mut con = connect(&cluster).await;
    let p64 = Partitions::DEFAULT;
    let p128 = Partitions::new(128).expect("count");
    cluster::ensure_partitions(&mut con, p64)
        .await
        .expect("the first node sets 64");
    cluster::ensure_partitions(&mut con, p64)
        .await
        .expect("the same count joins");
    let refused = cluster::ensure_partitions(&mut con, p128).await;
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
    let mut con = connect(&cluster).await;
    let (a, b) = (node("node-a"), node("node-b"));
    cluster::heartbeat(&mut con, &a, "http://127.0.0.1:1001", 300)
        .await
        .expect("a beats");
    let seen = cluster::heartbeat(&mut con, &b, "http://127.0.0.1:1002", 10_000)
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = cluster::members(&mut con).await.expect("members");
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].alive && seen[1].alive, "{seen:?}");

    // A graceful leave removes node-b at once.
    cluster::leave(&mut con, &b).await.expect("leave");
    let seen = cluster::members(&mut con).await.expect("members");
    assert_eq!(
        seen.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["node-a"]
    );
}
