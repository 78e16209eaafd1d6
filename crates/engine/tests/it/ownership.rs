//! Partition ownership driven against a real Redis Cluster (6 processes):
//! nodes split the partitions, a crashed node's partitions are taken over
//! once its leases lapse, a leaving node hands its partitions over at once,
//! and no partition is ever served by two nodes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistock_cluster::{Epoch, NodeId, PartitionId, Partitions};
use omnistock_engine::ownership_driver::{
    FlushError, NodeConfig, OwnershipDriver, PartitionHost, monotonic_ms,
};
use omnistock_store::cluster::ClusterStore;
use omnistock_testkit::RedisCluster;
use parking_lot::Mutex;

const PARTITIONS: u64 = 16;

/// Every load of every node of a test: (partition, epoch, node).
type Loads = Arc<Mutex<Vec<(u16, u64, String)>>>;

/// Records what the driver asked of it.
struct Recorder {
    node: String,
    events: Mutex<Vec<String>>,
    loads: Loads,
}

impl PartitionHost for Recorder {
    async fn load(&self, partition: PartitionId, epoch: Epoch) -> Result<(), String> {
        self.events
            .lock()
            .push(format!("load {partition} {}", epoch.0));
        self.loads
            .lock()
            .push((partition.index(), epoch.0, self.node.clone()));
        Ok(())
    }

    async fn flush(&self, partition: PartitionId, epoch: Epoch) -> Result<(), FlushError> {
        self.events
            .lock()
            .push(format!("flush {partition} {}", epoch.0));
        Ok(())
    }

    fn forget(&self, partition: PartitionId) {
        self.events.lock().push(format!("forget {partition}"));
    }
}

async fn start_node(
    cluster: &RedisCluster,
    name: &str,
    loads: &Loads,
) -> (OwnershipDriver, Arc<Recorder>) {
    let store = ClusterStore::connect(&cluster.urls(), "omnistock")
        .await
        .expect("connect");
    let partitions = Partitions::new(PARTITIONS).expect("count");
    let config = NodeConfig::new(
        NodeId::new(name).expect("id"),
        format!("http://{name}.invalid"),
        partitions,
    );
    let host = Arc::new(Recorder {
        node: name.to_owned(),
        events: Mutex::default(),
        loads: loads.clone(),
    });
    let driver = OwnershipDriver::start(config, store, host.clone(), monotonic_ms())
        .await
        .expect("joins");
    (driver, host)
}

/// No epoch of a partition was ever granted twice: each load's
/// (partition, epoch) is unique across every node.
fn epochs_were_never_reused(loads: &Loads) {
    let loads = loads.lock();
    let distinct: BTreeSet<(u16, u64)> = loads.iter().map(|(p, e, _)| (*p, *e)).collect();
    assert_eq!(
        distinct.len(),
        loads.len(),
        "an epoch granted twice: {loads:?}"
    );
    assert!(!loads.is_empty());
}

fn served(nodes: &[&OwnershipDriver]) -> Vec<BTreeSet<u16>> {
    nodes
        .iter()
        .map(|n| n.served().into_iter().map(PartitionId::index).collect())
        .collect()
}

/// Waits until `done` holds, checking on every step that no partition is
/// served twice; how long it took.
async fn until(
    nodes: &[&OwnershipDriver],
    within: Duration,
    done: impl Fn(&[BTreeSet<u16>]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = served(nodes);
        let total: usize = now.iter().map(BTreeSet::len).sum();
        let distinct: BTreeSet<u16> = now.iter().flatten().copied().collect();
        assert_eq!(total, distinct.len(), "a partition served twice: {now:?}");
        if done(&now) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not settled within {within:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// node-a and node-b, once they serve every partition between them and
/// each serves some.
async fn two_nodes_sharing(
    cluster: &RedisCluster,
    loads: &Loads,
) -> (
    (OwnershipDriver, Arc<Recorder>),
    (OwnershipDriver, Arc<Recorder>),
) {
    let a = start_node(cluster, "node-a", loads).await;
    let b = start_node(cluster, "node-b", loads).await;
    until(&[&a.0, &b.0], Duration::from_secs(10), |s| {
        all_served(s) && s.iter().all(|n| !n.is_empty())
    })
    .await;
    (a, b)
}

fn all_served(sets: &[BTreeSet<u16>]) -> bool {
    sets.iter().map(BTreeSet::len).sum::<usize>() == PARTITIONS as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_split_partitions_take_over_a_crashed_one_and_hand_over_on_leave() {
    let cluster = RedisCluster::start();
    let loads = Loads::default();
    let ((a, host_a), (b, host_b)) = two_nodes_sharing(&cluster, &loads).await;
    assert!(host_a.events.lock().iter().any(|e| e.starts_with("load")));

    // A third node joins: it gets its share, handed over by the others
    // (flushed first), with nothing served twice on the way.
    let (c, _host_c) = start_node(&cluster, "node-c", &loads).await;
    until(&[&a, &b, &c], Duration::from_secs(10), |s| {
        all_served(s) && s.iter().all(|n| !n.is_empty())
    })
    .await;
    let flushed = host_a
        .events
        .lock()
        .iter()
        .chain(host_b.events.lock().iter())
        .filter(|e| e.starts_with("flush"))
        .count();
    assert!(flushed > 0, "handovers flush first");

    // node-c crashes (dropped: no handover, its leases lapse).
    let c_had = c.served().len();
    drop(c);
    let takeover = until(&[&a, &b], Duration::from_secs(10), all_served).await;
    eprintln!("takeover of {c_had} partitions after a crash: {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(5),
        "takeover took {takeover:?}"
    );

    // node-b leaves gracefully: node-a serves everything soon after.
    let b_had = b.served().len();
    let leave_started = Instant::now();
    assert!(b.leave().await, "every partition handed over");
    until(&[&a], Duration::from_secs(5), all_served).await;
    let handover = leave_started.elapsed();
    eprintln!("handover of {b_had} partitions on leave: {handover:?}");
    assert!(host_b.events.lock().iter().any(|e| e.starts_with("flush")));
    // Leases are released, not left to lapse (3 s).
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}"
    );
    epochs_were_never_reused(&loads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_survives_a_redis_master_failover() {
    let mut cluster = RedisCluster::start();
    let loads = Loads::default();
    let ((a, host_a), (b, host_b)) = two_nodes_sharing(&cluster, &loads).await;
    let forgotten = || {
        let count = |h: &Recorder| {
            let events = h.events.lock();
            events.iter().filter(|e| e.starts_with("forget")).count()
        };
        count(&host_a) + count(&host_b)
    };
    let forgotten_before = forgotten();

    // Kill the master holding partition 0's lease: renewals of its
    // partitions fail until a replica is promoted. Nothing is served twice
    // meanwhile.
    let store = ClusterStore::connect(&cluster.urls(), "omnistock")
        .await
        .expect("connect");
    let p0 = Partitions::new(PARTITIONS)
        .expect("count")
        .get(0)
        .expect("p0");
    let lease_key = store.lease_key(p0);
    let master = cluster.master_of(&lease_key);
    cluster.kill(master);
    let killed_at = Instant::now();
    let failover = until(&[&a, &b], Duration::from_secs(30), |_| {
        cluster.has_failed_over(&lease_key, master)
    })
    .await;

    // The promoted master serves alone: it confirms no lease change until
    // it has a replica again (fail closed). The killed node comes back as
    // its replica; past a lease TTL and more (so that every lease must have
    // been renewed or taken again through the promoted master) all are
    // served, and no epoch was ever granted twice.
    tokio::task::block_in_place(|| cluster.restart(master));
    let restarted = killed_at.elapsed();
    until(&[&a, &b], Duration::from_secs(30), all_served).await;
    let served_again = killed_at.elapsed();
    until(&[&a, &b], Duration::from_secs(30), |s| {
        killed_at.elapsed() > restarted + Duration::from_secs(4) && all_served(s)
    })
    .await;
    epochs_were_never_reused(&loads);
    eprintln!(
        "master killed: failover after {failover:?}, the old master back as a replica after {restarted:?}, every partition served again after {served_again:?}; {} partitions dropped and taken again on the way",
        forgotten() - forgotten_before
    );
}
