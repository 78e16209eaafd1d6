//! Partition ownership in a Redis Cluster: the partition count a cluster
//! was created with, and each partition's lease and epoch (the fencing
//! token), kept next to the partition's data.
//!
//! Every key of partition N carries the hash tag `{pN}`, so its lease, its
//! epoch and its data share one slot and one script may check the epoch and
//! write in the same atomic step (a script across slots fails with
//! CROSSSLOT). Cluster-wide keys carry `{cluster}`.
//!
//! The scripts are safe to run twice: the client may re-send one after an
//! I/O error. Acquiring twice gives a newer epoch (the first is then fenced
//! out, which fails closed); renewing or releasing twice changes nothing.

use std::time::Duration;

use omnistock_cluster::{Epoch, NodeId, PartitionId, Partitions};
use redis::Script;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

/// How long a lease or heartbeat request may take before it counts as
/// failed: well under a lease's renewal interval, so one slow answer never
/// costs a lease.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to the Redis Cluster that holds the leases and heartbeats:
/// what the engine's ownership driver talks to. Cheap to clone (one
/// multiplexed connection per Redis node, shared).
#[derive(Clone)]
pub struct ClusterStore {
    con: ClusterConnection,
}

impl ClusterStore {
    /// Connects through any of `seeds` (`redis://HOST:PORT`).
    pub async fn connect(seeds: &[String]) -> Result<ClusterStore, ClusterStoreError> {
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(REQUEST_TIMEOUT)
            .response_timeout(REQUEST_TIMEOUT)
            .build()?;
        let con = client.get_async_connection().await?;
        Ok(ClusterStore { con })
    }

    pub async fn ensure_partitions(&self, partitions: Partitions) -> Result<(), ClusterStoreError> {
        ensure_partitions(&mut self.con.clone(), partitions).await
    }

    pub async fn acquire(
        &self,
        p: PartitionId,
        node: &NodeId,
        ttl_ms: u64,
    ) -> Result<Acquired, ClusterStoreError> {
        acquire(&mut self.con.clone(), p, node, ttl_ms).await
    }

    pub async fn renew(
        &self,
        p: PartitionId,
        node: &NodeId,
        epoch: Epoch,
        ttl_ms: u64,
    ) -> Result<bool, ClusterStoreError> {
        renew(&mut self.con.clone(), p, node, epoch, ttl_ms).await
    }

    pub async fn release(
        &self,
        p: PartitionId,
        node: &NodeId,
        epoch: Epoch,
    ) -> Result<bool, ClusterStoreError> {
        release(&mut self.con.clone(), p, node, epoch).await
    }

    pub async fn heartbeat(
        &self,
        node: &NodeId,
        url: &str,
        ttl_ms: u64,
    ) -> Result<Vec<Member>, ClusterStoreError> {
        heartbeat(&mut self.con.clone(), node, url, ttl_ms).await
    }

    pub async fn members(&self) -> Result<Vec<Member>, ClusterStoreError> {
        members(&mut self.con.clone()).await
    }

    pub async fn leave(&self, node: &NodeId) -> Result<(), ClusterStoreError> {
        leave(&mut self.con.clone(), node).await
    }
}

/// The key holding partition `p`'s lease: the owner's node id, with a TTL.
pub fn lease_key(p: PartitionId) -> String {
    format!("{}:lease", p.hash_tag())
}

/// The key holding partition `p`'s epoch, incremented on every acquisition.
pub fn epoch_key(p: PartitionId) -> String {
    format!("{}:epoch", p.hash_tag())
}

/// The key holding the partition count the cluster's store was created with.
pub const PARTITIONS_KEY: &str = "{cluster}:partitions";

/// Why a node may not use this cluster's store.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStoreError {
    #[error(
        "this cluster's store was created with {stored} partitions; a node started with --partitions {requested} cannot join it (start it with --partitions {stored})"
    )]
    PartitionsMismatch { stored: u64, requested: u16 },
    #[error("the stored partition count {0:?} is not a number")]
    PartitionsCorrupt(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Records `partitions` as the cluster's count if it has none yet, and
/// refuses a node whose count differs from the stored one.
pub async fn ensure_partitions(
    con: &mut impl ConnectionLike,
    partitions: Partitions,
) -> Result<(), ClusterStoreError> {
    let requested = partitions.count();
    let _: Option<String> = redis::cmd("SET")
        .arg(PARTITIONS_KEY)
        .arg(requested)
        .arg("NX")
        .query_async(con)
        .await?;
    let stored: String = redis::cmd("GET")
        .arg(PARTITIONS_KEY)
        .query_async(con)
        .await?;
    let stored: u64 = stored
        .parse()
        .map_err(|_| ClusterStoreError::PartitionsCorrupt(stored.clone()))?;
    if stored != u64::from(requested) {
        return Err(ClusterStoreError::PartitionsMismatch { stored, requested });
    }
    Ok(())
}

/// What an acquisition attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is this node's, under a new epoch.
    Granted(Epoch),
    /// Another node holds it.
    HeldBy(String),
}

// KEYS: lease, epoch. ARGV: node, ttl_ms. A lease this node already holds
// is taken again under a new epoch: a node that asks again has lost track of
// it (a restart, a lost answer), so whatever it wrote before is fenced out.
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, holder} end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, tostring(epoch)}
";

// KEYS: lease, epoch. ARGV: node, epoch, ttl_ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
";

// KEYS: lease, epoch. ARGV: node, epoch.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Tries to take partition `p`'s lease for `ttl_ms`.
pub async fn acquire(
    con: &mut impl ConnectionLike,
    p: PartitionId,
    node: &NodeId,
    ttl_ms: u64,
) -> Result<Acquired, ClusterStoreError> {
    let (granted, value): (i64, String) = Script::new(ACQUIRE)
        .key(lease_key(p))
        .key(epoch_key(p))
        .arg(node.as_str())
        .arg(ttl_ms)
        .invoke_async(con)
        .await?;
    if granted != 1 {
        return Ok(Acquired::HeldBy(value));
    }
    let epoch = value
        .parse()
        .map_err(|_| ClusterStoreError::PartitionsCorrupt(value.clone()))?;
    Ok(Acquired::Granted(Epoch(epoch)))
}

/// Extends this node's lease on `p` by `ttl_ms` from now; false if the
/// lease or the epoch is no longer this node's (stop serving `p`).
pub async fn renew(
    con: &mut impl ConnectionLike,
    p: PartitionId,
    node: &NodeId,
    epoch: Epoch,
    ttl_ms: u64,
) -> Result<bool, ClusterStoreError> {
    let renewed: i64 = Script::new(RENEW)
        .key(lease_key(p))
        .key(epoch_key(p))
        .arg(node.as_str())
        .arg(epoch.0)
        .arg(ttl_ms)
        .invoke_async(con)
        .await?;
    Ok(renewed == 1)
}

/// Gives `p` up at once (a graceful handover), if it is still this node's.
pub async fn release(
    con: &mut impl ConnectionLike,
    p: PartitionId,
    node: &NodeId,
    epoch: Epoch,
) -> Result<bool, ClusterStoreError> {
    let released: i64 = Script::new(RELEASE)
        .key(lease_key(p))
        .key(epoch_key(p))
        .arg(node.as_str())
        .arg(epoch.0)
        .invoke_async(con)
        .await?;
    Ok(released == 1)
}

/// The Lua preamble of every fenced write of partition N: KEYS[1] is the
/// partition's epoch key and ARGV[1] the epoch the writer holds. A writer
/// whose epoch is not the current one (its lease passed to another node)
/// gets the error `FENCED` and writes nothing.
pub const FENCE_CHECK: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED stale epoch ' .. ARGV[1])
end
";

/// Whether a Redis error is the fence refusing a stale owner's write.
pub fn is_fenced(error: &redis::RedisError) -> bool {
    error.to_string().contains("FENCED")
}

/// The hash of live nodes: node id -> "EXPIRES_AT_MS URL", on Redis's clock.
pub const NODES_KEY: &str = "{cluster}:nodes";

/// How long a departed node's entry stays (for `GET /v1/cluster` to show it
/// dead) before a heartbeat prunes it.
pub const DEAD_NODE_KEPT_MS: u64 = 60_000;

// KEYS: nodes. ARGV: node ('' to only read), url, ttl_ms, kept_ms. Liveness
// is judged on Redis's clock, so the nodes' clocks need not agree.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. ' ' .. ARGV[2])
end
local all = redis.call('HGETALL', KEYS[1])
local nodes = {}
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], ' ', 1, true)
  local expires = tonumber(string.sub(all[i + 1], 1, sep - 1))
  if expires + tonumber(ARGV[4]) < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(nodes, {all[i], string.sub(all[i + 1], sep + 1), expires > now and 1 or 0})
  end
end
return nodes
";

/// A node as the heartbeats show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub url: String,
    /// Whether its last heartbeat is younger than its TTL.
    pub alive: bool,
}

/// Announces `node` (reachable at `url`) as alive for `ttl_ms`, and returns
/// every node the heartbeats know, alive or recently dead.
pub async fn heartbeat(
    con: &mut impl ConnectionLike,
    node: &NodeId,
    url: &str,
    ttl_ms: u64,
) -> Result<Vec<Member>, ClusterStoreError> {
    members_after(con, node.as_str(), url, ttl_ms).await
}

/// The nodes the heartbeats know, without announcing anyone.
pub async fn members(con: &mut impl ConnectionLike) -> Result<Vec<Member>, ClusterStoreError> {
    members_after(con, "", "", 0).await
}

/// Removes `node` from the heartbeats at once (a graceful shutdown), so the
/// others rebalance without waiting for its entry to expire.
pub async fn leave(con: &mut impl ConnectionLike, node: &NodeId) -> Result<(), ClusterStoreError> {
    let _: i64 = redis::cmd("HDEL")
        .arg(NODES_KEY)
        .arg(node.as_str())
        .query_async(con)
        .await?;
    Ok(())
}

async fn members_after(
    con: &mut impl ConnectionLike,
    node: &str,
    url: &str,
    ttl_ms: u64,
) -> Result<Vec<Member>, ClusterStoreError> {
    let rows: Vec<(String, String, i64)> = Script::new(HEARTBEAT)
        .key(NODES_KEY)
        .arg(node)
        .arg(url)
        .arg(ttl_ms)
        .arg(DEAD_NODE_KEPT_MS)
        .invoke_async(con)
        .await?;
    let mut members: Vec<Member> = rows
        .into_iter()
        .map(|(id, url, alive)| Member {
            id,
            url,
            alive: alive == 1,
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(members)
}
