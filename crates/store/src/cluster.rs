//! Partition ownership in a Redis Cluster: the partition count a cluster
//! was created with, the nodes' heartbeats, and each partition's lease and
//! epoch (the fencing token), kept next to the partition's data.
//!
//! Key schema (`omnistock` is the default prefix):
//!
//! | key                              | type   | holds                                         |
//! |----------------------------------|--------|-----------------------------------------------|
//! | `omnistock:{cluster}:partitions` | string | the partition count, set once                 |
//! | `omnistock:{cluster}:nodes`      | hash   | node id -> "EXPIRES_AT_MS URL" (Redis's clock) |
//! | `omnistock:{pN}:lease`           | string | partition N's owner (`NODE/PROCESS`), a TTL   |
//! | `omnistock:{pN}:epoch`           | string | partition N's epoch, +1 per acquisition       |
//! | `omnistock:{cluster}:shared`     | hash   | the catalog and the API keys, each versioned (`cluster_shared.rs`) |
//!
//! Every key of partition N carries the hash tag `{pN}`, so its lease, its
//! epoch and its data share one slot and one script may check the epoch and
//! write in the same atomic step (a script across slots fails with
//! CROSSSLOT).
//!
//! The scripts are safe to run twice: the client may re-send one after an
//! I/O error. Acquiring twice gives a newer epoch (the first is then fenced
//! out, which fails closed); renewing or releasing twice changes nothing.

use std::sync::LazyLock;
use std::time::Duration;

use omnistock_cluster::{Epoch, NodeId, PartitionId, Partitions};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Script, Value};

/// How long a lease or heartbeat request may take before it counts as
/// failed: well under a lease's renewal interval, so one slow answer never
/// costs a lease.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// How long an acquisition or renewal waits for a replica to confirm it.
/// Replication is asynchronous: a lease or epoch only the master has would
/// be lost if the master failed, and a promoted replica could then grant the
/// partition again under an epoch already handed out.
pub const REPLICATION_WAIT_MS: u64 = 200;

/// How long a departed node's entry stays (for operators to see it dead)
/// before a heartbeat prunes it.
pub const DEAD_NODE_KEPT_MS: u64 = 60_000;

/// Why a node may not use this cluster's store.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStoreError {
    #[error(
        "this cluster's store was created with {stored} partitions; a node started with --partitions {requested} cannot join it (start it with --partitions {stored})"
    )]
    PartitionsMismatch { stored: u64, requested: u16 },
    #[error("the cluster's store holds {0:?} where a number belongs")]
    Corrupt(String),
    #[error("an unexpected answer from Redis: {0}")]
    Unexpected(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0} is on the Redis master, but no replica confirmed it in time")]
    NotReplicated(&'static str),
}

/// What an acquisition attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is this node's, under a new epoch, and a replica has it.
    Granted(Epoch),
    /// Another node holds it.
    HeldBy(String),
    /// Taken on the master, but no replica confirmed it in time: not to be
    /// used (a failover could lose it). Asking again gives a newer epoch.
    NotReplicated,
}

/// What a renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewed {
    /// Extended, and a replica has the new expiry.
    Yes,
    /// The lease or the epoch is another's now: stop serving.
    Lost,
    /// Extended on the master only: the node may not count on it (its local
    /// deadline stays where the last confirmed renewal put it).
    Unconfirmed,
}

/// A node as the heartbeats show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub url: String,
    /// Whether its last heartbeat is younger than its TTL.
    pub alive: bool,
}

// KEYS: lease, epoch. ARGV: holder (NODE/PROCESS), ttl_ms. A lease this
// process already holds is taken again under a new epoch: a process that
// asks again has lost track of it (a lost answer), so whatever it wrote
// before is fenced out. Another process, even with the same node id, waits
// for the lease to lapse.
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, holder} end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, tostring(epoch)}
";

// KEYS: lease, epoch. ARGV: holder, epoch, ttl_ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
";

// KEYS: lease, epoch. ARGV: holder, epoch.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

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

// Each script's SHA-1 is computed once; Redis runs it by EVALSHA. ACQUIRE
// and RENEW go by EVAL instead, in a pipeline with their WAIT.
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
static HEARTBEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HEARTBEAT));

/// The Lua preamble of every fenced write of a partition. The script's last
/// key is the partition's epoch key ([`ClusterStore::epoch_key`]) and its
/// first argument the epoch the writer holds; the preamble takes both off,
/// so the body after it sees its own keys and arguments from index 1. A
/// writer whose epoch is not the current one (its lease passed to another
/// node) gets the error `FENCED` and writes nothing.
pub const FENCE_CHECK: &str = r"
local epoch_key = table.remove(KEYS)
local epoch = table.remove(ARGV, 1)
if redis.call('GET', epoch_key) ~= epoch then
  return redis.error_reply('FENCED stale epoch ' .. epoch)
end
";

/// `body` behind [`FENCE_CHECK`].
pub fn fenced(body: &str) -> String {
    format!("{FENCE_CHECK}{body}")
}

/// Whether a Redis error is the fence refusing a stale owner's write.
pub fn is_fenced(error: &redis::RedisError) -> bool {
    error.to_string().contains("FENCED")
}

/// A connection to the Redis Cluster that holds the leases and heartbeats:
/// what the engine's ownership driver talks to. Cheap to clone (one
/// multiplexed connection per Redis node, shared).
#[derive(Clone)]
pub struct ClusterStore {
    con: ClusterConnection,
    prefix: String,
    /// Whether the cluster has replicas, so that lease changes must be
    /// confirmed by one (a cluster of masters alone has nothing to wait for).
    has_replicas: bool,
    /// Random per connection: a lease names the node *and* this process, so
    /// a restarted process with the same node id cannot take its old lease
    /// while the old process may still be serving under it.
    process: u64,
}

impl ClusterStore {
    /// Connects through any of `seeds` (`redis://HOST:PORT`); every key
    /// starts with `prefix` (`omnistock` unless several stores share one
    /// Redis Cluster).
    pub async fn connect(
        seeds: &[String],
        prefix: &str,
    ) -> Result<ClusterStore, ClusterStoreError> {
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(REQUEST_TIMEOUT)
            .response_timeout(REQUEST_TIMEOUT)
            // Few, quick retries: a lease request is repeated by the driver
            // anyway, and the client's default (16 retries, backing off to
            // seconds) kept requests failing for up to 17 s after a master
            // failover here, against 4-7 s with these.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()?;
        let mut con = client.get_async_connection().await?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut con)
            .await?;
        // Read once: a cluster that gains replicas later is not waited for
        // until the node reconnects.
        let has_replicas = nodes.lines().any(|line| line.contains("slave"));
        let mut token = [0u8; 8];
        getrandom::fill(&mut token).map_err(|e| ClusterStoreError::Unexpected(e.to_string()))?;
        Ok(ClusterStore {
            con,
            prefix: prefix.to_owned(),
            has_replicas,
            process: u64::from_le_bytes(token),
        })
    }

    /// Runs a lease script on partition `p`'s master, then (when the
    /// cluster has replicas) `WAIT 1` on the same connection, in one
    /// pipeline: the WAIT covers exactly this script's write. The script's
    /// answer, and whether a replica confirmed it. Fails closed: a master
    /// without a replica confirms nothing, since a replica that lost its
    /// link only moments ago may still be promoted without the write; so a
    /// shard whose master serves alone (after a failover, until its peer is
    /// back) grants and renews no lease.
    async fn run_confirmed<T: redis::FromRedisValue>(
        &self,
        script: &str,
        p: PartitionId,
        args: &[String],
    ) -> Result<(T, bool), ClusterStoreError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(script)
            .arg(2)
            .arg(self.lease_key(p))
            .arg(self.epoch_key(p))
            .arg(args);
        let (answer, confirmed) = self.eval_replicated(eval).await?;
        let answer = redis::from_redis_value(answer)
            .map_err(|e| ClusterStoreError::Unexpected(e.to_string()))?;
        Ok((answer, confirmed))
    }

    /// Whether the cluster had replicas when this connection was made.
    pub fn has_replicas(&self) -> bool {
        self.has_replicas
    }

    /// Runs `script` (an `EVAL`) and, when the cluster has replicas, `WAIT 1`
    /// on the same connection: its answer, and whether a replica has what
    /// it wrote.
    pub(crate) async fn eval_replicated(
        &self,
        script: redis::Cmd,
    ) -> Result<(Value, bool), ClusterStoreError> {
        let mut pipe = redis::pipe();
        pipe.add_command(script);
        if self.has_replicas() {
            pipe.cmd("WAIT").arg(1).arg(REPLICATION_WAIT_MS);
        }
        let mut replies: Vec<Value> = pipe.query_async(&mut self.connection()).await?;
        let confirmed =
            !self.has_replicas() || matches!(replies.pop(), Some(Value::Int(acked)) if acked >= 1);
        let answer = replies
            .pop()
            .ok_or_else(|| ClusterStoreError::Unexpected("no answer".into()))?;
        Ok((answer, confirmed))
    }

    /// The shared connection, for the partition stores built on this one.
    pub(crate) fn connection(&self) -> ClusterConnection {
        self.con.clone()
    }

    /// The key `name` of partition `p`: `PREFIX:{pN}:name`.
    pub fn partition_key(&self, p: PartitionId, name: &str) -> String {
        format!("{}:{}:{name}", self.prefix, p.hash_tag())
    }

    pub fn lease_key(&self, p: PartitionId) -> String {
        self.partition_key(p, "lease")
    }

    pub fn epoch_key(&self, p: PartitionId) -> String {
        self.partition_key(p, "epoch")
    }

    /// What a lease held by this process holds: `NODE/PROCESS`.
    fn holder(&self, node: &NodeId) -> String {
        format!("{node}/{:016x}", self.process)
    }

    pub(crate) fn cluster_key(&self, name: &str) -> String {
        format!("{}:{{cluster}}:{name}", self.prefix)
    }

    /// Records `partitions` as the cluster's count if it has none yet, and
    /// refuses a node whose count differs from the stored one.
    pub async fn ensure_partitions(&self, partitions: Partitions) -> Result<(), ClusterStoreError> {
        let (mut con, key, requested) = (
            self.con.clone(),
            self.cluster_key("partitions"),
            partitions.count(),
        );
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(requested)
            .arg("NX")
            .query_async(&mut con)
            .await?;
        let stored: String = redis::cmd("GET").arg(&key).query_async(&mut con).await?;
        let stored: u64 = stored
            .parse()
            .map_err(|_| ClusterStoreError::Corrupt(stored.clone()))?;
        if stored != u64::from(requested) {
            return Err(ClusterStoreError::PartitionsMismatch { stored, requested });
        }
        Ok(())
    }

    /// Tries to take partition `p`'s lease for `ttl_ms`.
    pub async fn acquire(
        &self,
        p: PartitionId,
        node: &NodeId,
        ttl_ms: u64,
    ) -> Result<Acquired, ClusterStoreError> {
        let args = [self.holder(node), ttl_ms.to_string()];
        let ((granted, value), confirmed): ((i64, String), bool) =
            self.run_confirmed(ACQUIRE, p, &args).await?;
        if granted != 1 {
            let node = value.split('/').next().unwrap_or_default().to_owned();
            return Ok(Acquired::HeldBy(node));
        }
        let epoch = value
            .parse()
            .map_err(|_| ClusterStoreError::Corrupt(value.clone()))?;
        if !confirmed {
            return Ok(Acquired::NotReplicated);
        }
        Ok(Acquired::Granted(Epoch(epoch)))
    }

    /// Extends this node's lease on `p` by `ttl_ms` from now.
    pub async fn renew(
        &self,
        p: PartitionId,
        node: &NodeId,
        epoch: Epoch,
        ttl_ms: u64,
    ) -> Result<Renewed, ClusterStoreError> {
        let args = [self.holder(node), epoch.0.to_string(), ttl_ms.to_string()];
        let (renewed, confirmed): (i64, bool) = self.run_confirmed(RENEW, p, &args).await?;
        if renewed != 1 {
            return Ok(Renewed::Lost);
        }
        if !confirmed {
            return Ok(Renewed::Unconfirmed);
        }
        Ok(Renewed::Yes)
    }

    /// Gives `p` up at once (a graceful handover), if it is still this node's.
    pub async fn release(
        &self,
        p: PartitionId,
        node: &NodeId,
        epoch: Epoch,
    ) -> Result<bool, ClusterStoreError> {
        let released: i64 = RELEASE_SCRIPT
            .key(self.lease_key(p))
            .key(self.epoch_key(p))
            .arg(self.holder(node))
            .arg(epoch.0)
            .invoke_async(&mut self.con.clone())
            .await?;
        Ok(released == 1)
    }

    /// Announces `node` (reachable at `url`) as alive for `ttl_ms`, and
    /// returns every node the heartbeats know, alive or recently dead.
    pub async fn heartbeat(
        &self,
        node: &NodeId,
        url: &str,
        ttl_ms: u64,
    ) -> Result<Vec<Member>, ClusterStoreError> {
        self.members_after(node.as_str(), url, ttl_ms).await
    }

    /// The nodes the heartbeats know, without announcing anyone.
    pub async fn members(&self) -> Result<Vec<Member>, ClusterStoreError> {
        self.members_after("", "", 0).await
    }

    /// Who holds partition `p`'s lease (the node id, `None` when nobody
    /// does) and its epoch (the last one granted).
    pub async fn owner(
        &self,
        p: PartitionId,
    ) -> Result<(Option<String>, Epoch), ClusterStoreError> {
        let (lease, epoch): (Option<String>, Option<String>) = redis::pipe()
            .cmd("GET")
            .arg(self.lease_key(p))
            .cmd("GET")
            .arg(self.epoch_key(p))
            .query_async(&mut self.con.clone())
            .await?;
        let epoch = match epoch {
            None => 0,
            Some(text) => text.parse().map_err(|_| ClusterStoreError::Corrupt(text))?,
        };
        let node = lease.map(|holder| holder.split('/').next().unwrap_or_default().to_owned());
        Ok((node, Epoch(epoch)))
    }

    /// Removes `node` from the heartbeats at once (a graceful leave), so the
    /// others rebalance without waiting for its entry to expire.
    pub async fn leave(&self, node: &NodeId) -> Result<(), ClusterStoreError> {
        let _: i64 = redis::cmd("HDEL")
            .arg(self.cluster_key("nodes"))
            .arg(node.as_str())
            .query_async(&mut self.con.clone())
            .await?;
        Ok(())
    }

    async fn members_after(
        &self,
        node: &str,
        url: &str,
        ttl_ms: u64,
    ) -> Result<Vec<Member>, ClusterStoreError> {
        let rows: Vec<(String, String, i64)> = HEARTBEAT_SCRIPT
            .key(self.cluster_key("nodes"))
            .arg(node)
            .arg(url)
            .arg(ttl_ms)
            .arg(DEAD_NODE_KEPT_MS)
            .invoke_async(&mut self.con.clone())
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
}
