//! The Redis store: the only code in omnistock that knows Redis.
//!
//! Key schema (every key carries a hash tag, so the same schema works on
//! Redis Cluster, where the flusher would send one transaction per slot;
//! the values are records of `records.rs` in the format of `codec.rs`):
//!
//! | key                         | type   | holds                                        |
//! |-----------------------------|--------|----------------------------------------------|
//! | `P:{meta}:marker`           | string | random id of this store's current contents   |
//! | `P:{meta}:state`            | hash   | `state`: head sequence, reservation id marks |
//! | `P:{meta}:catalog`          | hash   | `catalog`: locations, groups, policies       |
//! | `P:{meta}:keys`             | hash   | `keys`: API keys (SHA-256 digests only)      |
//! | `P:{pN}:pos`                | hash   | SKU -> its positions, bucket N of 32 by SKU  |
//! | `P:{rN}:res` (+ `:exp`)     | hash   | id -> reservation, bucket N = id mod 16      |
//! | `P:{iN}:idem` (+ `:exp`)    | hash   | key -> idempotency record, bucket N of 16    |
//! | `P:{journal}:movements`     | stream | one entry per movement, id `<seq>-0`         |
//!
//! `:exp` sorted sets index entries that expire (resolved reservations after
//! their retention, idempotency records after their TTL) by expiry time; each
//! write purges what is due, so the store stays bounded like the ledger.
//!
//! Every write is one MULTI/EXEC pipeline of Lua calls that write a field
//! only if its stored version is not newer: a retried or reordered batch can
//! never roll anything back.
//!
//! A partition's store in a cluster ([`RedisStore::for_partition`]) holds
//! the same records under one hash tag, `P:{pN}:TAG:NAME` (so each of its
//! transactions is single-slot), and runs every write behind the
//! partition's fence ([`crate::cluster::FENCE_CHECK`]): a node whose lease
//! passed to another cannot write a byte, and learns it as
//! [`StoreError::Fenced`].

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::StreamExt;
use omnistock_cluster::{Epoch, PartitionId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, Script};
use tokio::sync::Mutex;

use crate::cluster::{ClusterStore, REPLICATION_WAIT_MS, fenced, is_fenced};
use crate::connection::Connection;

use super::KeysRecord;
use super::codec::{self, EngineState};
use super::{Batch, Loaded, Store, StoreError};
use omnistock_ledger::{
    CatalogRecord, Cut, IdempotencyRecord, LedgerConfig, MovementRecord, PositionRecord,
    ReservationRecord, Restore, Sku, TimestampMs,
};

/// Positions are spread over this many hashes by SKU; one field holds all
/// of a SKU's positions (a million positions load as 100k fields, not 1M).
/// Part of the stored format: changing it needs a rewrite.
pub const POSITION_BUCKETS: u64 = 32;
/// Idempotency records are spread over this many hashes (by key).
pub const IDEMPOTENCY_BUCKETS: u64 = 16;
/// Reservations are spread over this many hashes by id. Few buckets keep a
/// flush to few Lua calls (each call costs Redis tens of microseconds,
/// which is what a sync-mode writer waits for); a bucket of a million
/// reservations is still cheap to write and to read back.
pub const RESERVATION_BUCKETS: u64 = 16;
/// The field of every hash holding the version of the newest batch applied.
const VERSION_FIELD: &str = "~v";
/// Buckets read per round trip while loading.
const LOAD_BUCKETS_PER_TRIP: usize = 4;
/// Round trips in flight while loading.
const LOAD_TRIPS_IN_FLIGHT: usize = 4;

/// Hashes as read: key, then its fields and values.
type Fetched = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// A value a load found in the text form written before format 1: hash,
/// field, the value as read, the value in the current format.
type Migration = (String, String, Vec<u8>, Vec<u8>);

/// HGETALL of `keys` in one round trip, each reply with its key.
async fn hgetall_chunk(
    mut connection: Connection,
    keys: Vec<String>,
) -> Result<Fetched, StoreError> {
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("HGETALL").arg(key);
    }
    let replies: Vec<Vec<(String, Vec<u8>)>> = pipe
        .query_async(&mut connection)
        .await
        .map_err(unavailable)?;
    Ok(keys.into_iter().zip(replies).collect())
}

/// Decodes position hashes; location codes are shared, not copied per
/// position. Legacy values are re-encoded into the migrations returned.
fn decode_positions(fetched: Fetched) -> Result<(Vec<PositionRecord>, Vec<Migration>), StoreError> {
    let mut locations = rustc_hash::FxHashMap::default();
    let mut positions = Vec::with_capacity(fetched.iter().map(|(_, e)| e.len()).sum::<usize>() * 4);
    let mut migrations = Vec::new();
    for (key, entries) in fetched {
        for (field, value) in entries {
            if field == VERSION_FIELD {
                continue;
            }
            let decoded = codec::decode_sku_positions_with(&field, &value, &mut locations)
                .map_err(|e| corrupt(&key, &field, e))?;
            if codec::is_legacy(&value) {
                let current = codec::encode_sku_positions(&decoded);
                migrations.push((key.clone(), field, value, current));
            }
            positions.extend(decoded);
        }
    }
    Ok((positions, migrations))
}

/// Decodes the records of `fetched` hashes, keeping those `keep` says are
/// still live; legacy values are re-encoded into `migrations`.
fn decode_records<T>(
    fetched: Fetched,
    decode: fn(&str, &[u8]) -> Result<T, codec::CodecError>,
    encode: fn(&T) -> Vec<u8>,
    keep: impl Fn(&T) -> bool,
    migrations: &mut Vec<Migration>,
) -> Result<Vec<T>, StoreError> {
    let mut records = Vec::new();
    for (key, entries) in fetched {
        for (field, value) in entries {
            if field == VERSION_FIELD {
                continue;
            }
            let record = decode(&field, &value).map_err(|e| corrupt(&key, &field, e))?;
            if codec::is_legacy(&value) {
                let current = encode(&record);
                migrations.push((key.clone(), field, value, current));
            }
            if keep(&record) {
                records.push(record);
            }
        }
    }
    Ok(records)
}

/// Replaces legacy values by their current form, each only if the field
/// still holds the value as read (a store read by a snapshot may be written
/// meanwhile by its engine, whose newer values must stay).
const MIGRATE: &str = r#"
-- KEYS[1]: hash; ARGV: field, value as read, value in the current format,
-- repeated.
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return n
"#;

/// Writes `field -> value` pairs into a hash unless the hash has applied a
/// newer batch (its `~v` field; stored values are opaque to it); indexes
/// entries that expire; purges what is due.
pub(crate) const VERSIONED_WRITE: &str = r#"
-- KEYS[1]: hash, KEYS[2]: expiry index (sorted set)
-- ARGV[1]: the batch's version (decimal), ARGV[2]: "1" to write whatever
-- the hash holds (a full rewrite), ARGV[3]: purge entries expiring at or
-- before this time (ms), "0": none; ARGV[4]: n, the number of fields;
-- then n field, value pairs; then expire_at, field pairs to index.
-- The hash remembers the version of the newest batch applied to it in its
-- field "~v"; an older batch is skipped whole. A flusher whose write failed
-- keeps the items dirty, so a newer batch holds everything an older one did.
-- The pairs go to HSET and ZADD as they are (no per-field Lua work).
local function at_least(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local stored = redis.call('HGET', KEYS[1], '~v')
if ARGV[2] ~= '1' and stored and not at_least(ARGV[1], stored) then
  return -1
end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], '~v', ARGV[1], unpack(ARGV, 5, 4 + 2 * n))
if #ARGV > 4 + 2 * n then
  redis.call('ZADD', KEYS[2], unpack(ARGV, 5 + 2 * n))
end
if ARGV[3] ~= '0' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 1000)
  if #due > 0 then
    redis.call('HDEL', KEYS[1], unpack(due))
    redis.call('ZREM', KEYS[2], unpack(due))
  end
end
return n
"#;

#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key (`omnistock` by default).
    pub key_prefix: String,
    /// A command that takes longer fails (the flusher retries).
    pub timeout_ms: u64,
    /// Approximate bound on the movement stream.
    pub stream_max_len: u64,
    /// Retention of resolved reservations in the store (as in the ledger).
    pub resolved_retention_ms: u64,
    /// After each write, wait until Redis has fsynced its AOF (WAITAOF,
    /// Redis >= 7.2 with appendonly yes).
    pub wait_aof: bool,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            key_prefix: "omnistock".into(),
            timeout_ms: 2_000,
            stream_max_len: 1_000_000,
            resolved_retention_ms: LedgerConfig::default().resolved_retention_ms,
            wait_aof: false,
        }
    }
}

/// What this process last wrote to: the marker it set and Redis's run id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    marker: String,
    run_id: String,
}

/// A partition's store: where its keys live and the epoch it writes under.
struct PartitionScope {
    partition: PartitionId,
    epoch: Epoch,
    epoch_key: String,
    /// After each write, wait until a replica has it (`WAIT 1`); a write
    /// no replica confirmed in time fails.
    wait_replica: bool,
}

impl PartitionScope {
    /// A call of a fenced `script` on `keys`: the epoch key goes last among
    /// the keys and the epoch first among the arguments, where
    /// [`crate::cluster::FENCE_CHECK`] takes them; the caller appends the
    /// script's own arguments.
    fn fenced(&self, script: &Script, keys: &[&str]) -> redis::Cmd {
        let mut call = redis::cmd("EVALSHA");
        call.arg(script.get_hash()).arg(keys.len() + 1);
        for key in keys {
            call.arg(*key);
        }
        call.arg(&self.epoch_key).arg(self.epoch.0);
        call
    }
}

/// Writes a field set behind the fence (a partition's store).
static FENCED_VERSIONED_WRITE_CODE: LazyLock<String> = LazyLock::new(|| fenced(VERSIONED_WRITE));
static FENCED_VERSIONED_WRITE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&FENCED_VERSIONED_WRITE_CODE));

/// One command on `KEYS[1]` behind the fence: `ARGV[1]` is the command,
/// the rest its arguments after the key.
static FENCED_COMMAND_CODE: LazyLock<String> =
    LazyLock::new(|| fenced("return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))"));
static FENCED_COMMAND: LazyLock<Script> = LazyLock::new(|| Script::new(&FENCED_COMMAND_CODE));

/// A partition's store checks Redis's run id (a restart or a failover that
/// may have lost writes: the partition is rewritten in full) at most this
/// often: `INFO` in every flush of every partition cost Redis more than
/// the writes. The marker is checked with every write.
const RUN_ID_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub struct RedisStore {
    config: RedisConfig,
    connection: Connection,
    /// Set for one partition's store in a cluster.
    scope: Option<PartitionScope>,
    versioned_write: Script,
    migrate: Script,
    /// `None` until loaded or first written; a write that finds another
    /// identity fails with `Replaced`.
    identity: Mutex<Option<Identity>>,
    /// When a write last checked Redis's run id.
    run_id_checked: std::sync::Mutex<Option<std::time::Instant>>,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    if is_fenced(&error) {
        return StoreError::Fenced(error.to_string());
    }
    StoreError::Unavailable(error.to_string())
}

fn corrupt(key: &str, field: &str, error: codec::CodecError) -> StoreError {
    StoreError::Corrupt(format!("{key} {field:?}: {error}"))
}

/// FNV-1a: a stable hash (the bucket of a SKU must not change between runs).
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl RedisStore {
    /// Connects lazily: creating the store never fails because Redis is down.
    pub fn new(config: RedisConfig) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StoreError::Config(format!("redis url: {e}")))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| StoreError::Config(format!("redis connection: {e}")))?;
        Ok(RedisStore {
            config,
            connection: Connection::Single(connection),
            scope: None,
            versioned_write: Script::new(VERSIONED_WRITE),
            migrate: Script::new(MIGRATE),
            identity: Mutex::new(None),
            run_id_checked: std::sync::Mutex::new(None),
        })
    }

    /// The store of one partition of a cluster, written under `epoch`, on
    /// `cluster`'s connection; `wait_replica`: each write waits for a
    /// replica (sync durability on a cluster with replicas).
    pub fn for_partition(
        config: RedisConfig,
        cluster: &ClusterStore,
        partition: PartitionId,
        epoch: Epoch,
        wait_replica: bool,
    ) -> RedisStore {
        RedisStore {
            scope: Some(PartitionScope {
                partition,
                epoch,
                epoch_key: cluster.epoch_key(partition),
                wait_replica,
            }),
            config,
            connection: Connection::Cluster(cluster.connection()),
            versioned_write: Script::new(VERSIONED_WRITE),
            migrate: Script::new(MIGRATE),
            identity: Mutex::new(None),
            run_id_checked: std::sync::Mutex::new(None),
        }
    }

    fn key(&self, tag: &str, name: &str) -> String {
        match &self.scope {
            None => format!("{}:{{{tag}}}:{name}", self.config.key_prefix),
            Some(scope) => format!(
                "{}:{}:{tag}:{name}",
                self.config.key_prefix,
                scope.partition.hash_tag()
            ),
        }
    }

    pub fn position_bucket(sku: &Sku) -> u64 {
        stable_hash(sku.as_str()) % POSITION_BUCKETS
    }

    fn position_hash(&self, bucket: u64) -> (String, String) {
        let tag = format!("p{bucket}");
        (self.key(&tag, "pos"), self.key(&tag, "pos:exp"))
    }

    fn reservation_hash(&self, bucket: u64) -> (String, String) {
        let tag = format!("r{bucket}");
        (self.key(&tag, "res"), self.key(&tag, "res:exp"))
    }

    fn idempotency_hash(&self, bucket: u64) -> (String, String) {
        let tag = format!("i{bucket}");
        (self.key(&tag, "idem"), self.key(&tag, "idem:exp"))
    }

    pub fn stream_key(&self) -> String {
        self.key("journal", "movements")
    }

    fn conn(&self) -> Connection {
        self.connection.clone()
    }

    /// `command` on `key`, behind the fence in a partition's store; the
    /// caller appends the arguments after the key.
    fn command_on(&self, command: &str, key: &str) -> redis::Cmd {
        match &self.scope {
            None => {
                let mut call = redis::cmd(command);
                call.arg(key);
                call
            }
            Some(scope) => {
                let mut call = scope.fenced(&FENCED_COMMAND, &[key]);
                call.arg(command);
                call
            }
        }
    }

    /// Redis's run id (changes whenever the server restarts) and the marker,
    /// in one round trip.
    async fn identity_now(&self) -> Result<(String, Option<String>), StoreError> {
        let (info, marker): (String, Option<String>) = redis::pipe()
            .cmd("INFO")
            .arg("server")
            .cmd("GET")
            .arg(self.key("meta", "marker"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| StoreError::Unavailable("INFO server has no run_id".into()))?;
        Ok((run_id, marker))
    }

    /// Loads the write scripts into Redis (on a Redis Cluster, into every
    /// node, replicas included, so a promoted replica has them too).
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let fenced = [
            FENCED_VERSIONED_WRITE_CODE.as_str(),
            FENCED_COMMAND_CODE.as_str(),
        ];
        let codes: &[&str] = match self.scope {
            None => &[VERSIONED_WRITE],
            Some(_) => &fenced,
        };
        for code in codes {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(code)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Checks that WAITAOF is available when asked for (Redis >= 7.2).
    pub async fn check_capabilities(&self) -> Result<(), StoreError> {
        if !self.config.wait_aof {
            return Ok(());
        }
        let docs: redis::Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg("WAITAOF")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match docs {
            redis::Value::Array(items) if items.iter().all(|i| *i != redis::Value::Nil) => Ok(()),
            _ => Err(StoreError::Config(
                "--wait-aof needs WAITAOF (Redis >= 7.2); this Redis does not have it".into(),
            )),
        }
    }

    fn versioned(
        &self,
        (hash, index): &(String, String),
        version: &Version,
        purge_before: i64,
        entries: &[Entry],
    ) -> redis::Cmd {
        let mut call = match &self.scope {
            None => {
                let mut call = redis::cmd("EVALSHA");
                call.arg(self.versioned_write.get_hash())
                    .arg(2)
                    .arg(hash)
                    .arg(index);
                call
            }
            Some(scope) => scope.fenced(&FENCED_VERSIONED_WRITE, &[hash, index]),
        };
        call.arg(&version.0)
            .arg(if version.1 { "1" } else { "0" })
            .arg(purge_before)
            .arg(entries.len());
        for (field, value, _) in entries {
            call.arg(field).arg(value);
        }
        for (field, _, expire_at) in entries {
            if *expire_at != 0 {
                call.arg(*expire_at).arg(field);
            }
        }
        call
    }

    /// One XADD per movement, id `<seq>-0`, trimmed to about MAXLEN. A
    /// retried batch's XADDs fail with "equal or smaller" and are ignored
    /// (see `Transactions::run`), so each movement is in the stream once.
    fn xadd(&self, m: &MovementRecord) -> redis::Cmd {
        let mut call = self.command_on("XADD", &self.stream_key());
        call.arg("MAXLEN")
            .arg("~")
            .arg(self.config.stream_max_len)
            .arg(format!("{}-0", m.seq.0))
            .arg("at")
            .arg(m.at.0)
            .arg("kind")
            .arg(m.kind.as_str())
            .arg("sku")
            .arg(m.sku.as_str())
            .arg("location")
            .arg(m.location.as_str())
            .arg("on_hand_delta")
            .arg(m.on_hand_delta)
            .arg("reserved_delta")
            .arg(m.reserved_delta)
            .arg("on_hand")
            .arg(m.after.on_hand.0)
            .arg("reserved")
            .arg(m.after.reserved.0)
            .arg("safety_stock")
            .arg(m.after.safety_stock.0)
            .arg("non_sellable")
            .arg(m.after.non_sellable.0);
        if let Some(channel) = m.channel {
            call.arg("channel").arg(channel.as_str());
        }
        if let Some(reservation) = m.reservation {
            call.arg("reservation").arg(reservation.0);
        }
        if let Some(reason) = &m.reason {
            call.arg("reason").arg(reason);
        }
        if let Some(reference) = &m.reference {
            call.arg("reference").arg(reference);
        }
        call
    }

    /// Before a write: a full rewrite gets a new identity (and the scripts
    /// are loaded, since Redis may be new); any other write needs the known
    /// one, which the write itself verifies (see `Transactions::run`).
    async fn identity_for_write(&self, full_rewrite: bool) -> Result<WriteIdentity, StoreError> {
        if full_rewrite {
            let (run_id, _) = self.identity_now().await?;
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)
                .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?;
            let marker = bytes.iter().map(|b| format!("{b:02x}")).collect();
            self.load_scripts().await?;
            return Ok(WriteIdentity::New(Identity { marker, run_id }));
        }
        match self.identity.lock().await.clone() {
            Some(known) => Ok(WriteIdentity::Known(known)),
            None => Err(StoreError::Replaced("never written by this process".into())),
        }
    }
}

impl RedisStore {
    /// In a partition's store that waits for a replica: `WAIT 1` on the
    /// master the write went to (same connection, so it covers the write).
    async fn wait_replica(&self) -> Result<(), StoreError> {
        let Some(scope) = self.scope.as_ref().filter(|s| s.wait_replica) else {
            return Ok(());
        };
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(REPLICATION_WAIT_MS);
        let marker = self.key("meta", "marker");
        let acked = self
            .conn()
            .run_on_master_of(&marker, wait)
            .await
            .map_err(unavailable)?;
        match acked {
            redis::Value::Int(n) if n >= 1 => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "partition {}: no replica confirmed the write within {REPLICATION_WAIT_MS} ms",
                scope.partition
            ))),
        }
    }
}

/// The store's single values, as read: engine state, catalog, keys.
struct Meta {
    marker: String,
    run_id: String,
    state: EngineState,
    catalog: Option<CatalogRecord>,
    keys: KeysRecord,
}

/// Loading.
impl RedisStore {
    async fn hgetall_many(&self, keys: &[String]) -> Result<Fetched, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LOAD_BUCKETS_PER_TRIP) {
            out.extend(hgetall_chunk(self.conn(), chunk.to_vec()).await?);
        }
        Ok(out)
    }

    /// The identity, engine state, catalog and keys; `None`: the store is
    /// empty. Legacy values are re-encoded into `migrations`.
    async fn load_meta(&self, migrations: &mut Vec<Migration>) -> Result<Option<Meta>, StoreError> {
        let (run_id, marker) = self.identity_now().await?;
        type Value = Option<Vec<u8>>;
        let (state, catalog, keys): (Value, Value, Value) = redis::pipe()
            .cmd("HGET")
            .arg(self.key("meta", "state"))
            .arg("state")
            .cmd("HGET")
            .arg(self.key("meta", "catalog"))
            .arg("catalog")
            .cmd("HGET")
            .arg(self.key("meta", "keys"))
            .arg("keys")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let marker = match (marker, &catalog) {
            (Some(marker), _) => marker,
            (None, None) => return Ok(None),
            // A full rewrite was interrupted before its last transaction:
            // what is there is newer than nothing.
            (None, Some(_)) => {
                tracing::warn!(
                    "the store has data but no marker (an interrupted full rewrite); loading it"
                );
                String::new()
            }
        };
        Ok(Some(Meta {
            marker,
            run_id,
            state: self
                .decode_meta(
                    "state",
                    state,
                    codec::decode_state,
                    codec::encode_state,
                    migrations,
                )?
                .unwrap_or_default(),
            catalog: self.decode_meta(
                "catalog",
                catalog,
                codec::decode_catalog,
                codec::encode_catalog,
                migrations,
            )?,
            keys: self
                .decode_meta(
                    "keys",
                    keys,
                    codec::decode_keys,
                    codec::encode_keys,
                    migrations,
                )?
                .unwrap_or_default(),
        }))
    }

    /// The single value `name` of the hash `meta:name`.
    fn decode_meta<T>(
        &self,
        name: &str,
        value: Option<Vec<u8>>,
        decode: fn(&[u8]) -> Result<T, codec::CodecError>,
        encode: fn(&T) -> Vec<u8>,
        migrations: &mut Vec<Migration>,
    ) -> Result<Option<T>, StoreError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let record = decode(&value).map_err(|e| corrupt(name, name, e))?;
        if codec::is_legacy(&value) {
            let current = encode(&record);
            migrations.push((self.key("meta", name), name.to_owned(), value, current));
        }
        Ok(Some(record))
    }

    /// Every position. Fetching and decoding overlap: Redis serialises the
    /// next buckets while a blocking thread decodes the ones already here.
    async fn load_positions(
        &self,
        migrations: &mut Vec<Migration>,
    ) -> Result<Vec<PositionRecord>, StoreError> {
        let chunks: Vec<Vec<String>> = (0..POSITION_BUCKETS)
            .map(|b| self.position_hash(b).0)
            .collect::<Vec<_>>()
            .chunks(LOAD_BUCKETS_PER_TRIP)
            .map(<[String]>::to_vec)
            .collect();
        let connection = self.conn();
        let mut fetches = futures_util::stream::iter(chunks)
            .map(move |chunk| hgetall_chunk(connection.clone(), chunk))
            .buffered(LOAD_TRIPS_IN_FLIGHT);
        let mut decodes = Vec::new();
        while let Some(fetched) = fetches.next().await {
            let fetched = fetched?;
            decodes.push(tokio::task::spawn_blocking(move || {
                decode_positions(fetched)
            }));
        }
        let mut positions: Vec<PositionRecord> = Vec::with_capacity(0);
        for decode in decodes {
            let (decoded, migrated) = decode
                .await
                .map_err(|e| StoreError::Corrupt(format!("decoding positions: {e}")))??;
            migrations.extend(migrated);
            if positions.is_empty() {
                positions = decoded;
            } else {
                positions.extend(decoded);
            }
        }
        Ok(positions)
    }

    /// Reservations, less resolved ones past their retention.
    async fn load_reservations(
        &self,
        now: TimestampMs,
        migrations: &mut Vec<Migration>,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        let retention = i64::try_from(self.config.resolved_retention_ms).unwrap_or(i64::MAX);
        let keys: Vec<String> = (0..RESERVATION_BUCKETS)
            .map(|b| self.reservation_hash(b).0)
            .collect();
        decode_records(
            self.hgetall_many(&keys).await?,
            codec::decode_reservation,
            codec::encode_reservation,
            |r: &ReservationRecord| {
                r.resolved_at
                    .is_none_or(|at| at.0.saturating_add(retention) > now.0)
            },
            migrations,
        )
    }

    /// Idempotency records, less expired ones.
    async fn load_idempotency(
        &self,
        now: TimestampMs,
        migrations: &mut Vec<Migration>,
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let keys: Vec<String> = (0..IDEMPOTENCY_BUCKETS)
            .map(|b| self.idempotency_hash(b).0)
            .collect();
        decode_records(
            self.hgetall_many(&keys).await?,
            codec::decode_idempotency,
            codec::encode_idempotency,
            |r: &IdempotencyRecord| r.expires_at > now,
            migrations,
        )
    }

    /// Writes the legacy values a load found back in the current format
    /// (see [`MIGRATE`]), so that the store holds format 1 only.
    async fn migrate(&self, mut migrations: Vec<Migration>) -> Result<(), StoreError> {
        if migrations.is_empty() {
            return Ok(());
        }
        migrations.sort_by(|a, b| a.0.cmp(&b.0));
        let mut migrated = 0u64;
        for hash in migrations.chunk_by(|a, b| a.0 == b.0) {
            for chunk in hash.chunks(MAX_ITEMS_PER_CALL) {
                let mut call = self.migrate.key(&chunk[0].0);
                for (_, field, read, current) in chunk {
                    call.arg(field).arg(read).arg(current);
                }
                let written: u64 = call
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(unavailable)?;
                migrated += written;
            }
        }
        tracing::info!(
            values = migrations.len(),
            migrated,
            format = codec::FORMAT,
            "store values migrated from the legacy text form"
        );
        Ok(())
    }
}

impl Store for RedisStore {
    /// Reads everything; values still in the legacy text form are written
    /// back in the current format before this returns.
    async fn load(&self, now: TimestampMs) -> Result<Option<Loaded>, StoreError> {
        self.check_capabilities().await?;
        let mut migrations = Vec::new();
        let Some(meta) = self.load_meta(&mut migrations).await? else {
            return Ok(None);
        };
        let positions = self.load_positions(&mut migrations).await?;
        let reservations = self.load_reservations(now, &mut migrations).await?;
        let idempotency = self.load_idempotency(now, &mut migrations).await?;
        self.migrate(migrations).await?;
        self.load_scripts().await?;
        let state = meta.state;
        *self.identity.lock().await = Some(Identity {
            marker: meta.marker,
            run_id: meta.run_id,
        });
        Ok(Some(Loaded {
            restore: Restore {
                head: state.head,
                cursor_lineage: state.cursor_lineage,
                cursor_floor: state.cursor_floor,
                clean: state.clean,
                reservation_shards: state.reservation_shards,
                reservation_next_local: state.reservation_next_local,
                catalog: meta.catalog,
                positions,
                reservations,
                idempotency,
            },
            keys: meta.keys,
        }))
    }

    /// Dependency order: the catalog (positions name its locations), the
    /// positions, the reservations (a committed reservation never lands
    /// before its position), idempotency records, then the engine state
    /// and marker. A batch within one transaction is atomic; a larger one
    /// (a full rewrite, a catch-up) is cut into transactions in this order,
    /// and every item is versioned, so a partial write never rolls anything
    /// back.
    async fn write(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let cut = batch.cut;
        let identity = self.identity_for_write(cut.everything).await?;
        let mut txs = Transactions::default();
        let run_id_due = self.run_id_due();
        if let WriteIdentity::Known(known) = &identity {
            self.expect_identity(&mut txs, known, run_id_due);
        }
        let version: Version = (cut.head.0.saturating_sub(1).to_string(), cut.everything);
        self.plan_catalog_and_keys(&mut txs, batch);
        self.plan_positions(&mut txs, cut, &version);
        self.plan_reservations(&mut txs, batch, &version);
        self.plan_idempotency(&mut txs, batch, &version);
        for movement in &cut.movements {
            txs.reserve(1);
            txs.push(self.xadd(movement), Kind::Stream);
        }
        self.plan_state(&mut txs, batch, &version);
        if let WriteIdentity::New(identity) = &identity {
            let mut set = self.command_on("SET", &self.key("meta", "marker"));
            set.arg(&identity.marker);
            txs.push(set, Kind::Plain);
        }
        if let Err(error) = txs.run(&mut self.conn()).await {
            if error.to_string().contains("NOSCRIPT") {
                // A node that never had the scripts (a replica added and
                // promoted since): load them; the flusher retries.
                let _ = self.load_scripts().await;
            }
            return Err(error);
        }
        if run_id_due {
            *self
                .run_id_checked
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        }
        self.wait_replica().await?;
        if self.config.wait_aof {
            let _: redis::Value = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(self.config.timeout_ms)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
        }
        if let WriteIdentity::New(identity) = identity {
            *self.identity.lock().await = Some(identity);
        }
        Ok(())
    }
}

/// Writing: what goes into a batch's transactions.
impl RedisStore {
    /// The marker and Redis's run id, checked in the same round trip as
    /// the first transaction.
    fn expect_identity(&self, txs: &mut Transactions, known: &Identity, run_id: bool) {
        let mut marker = redis::cmd("GET");
        marker.arg(self.key("meta", "marker"));
        txs.push(marker, Kind::Marker);
        if run_id {
            let mut info = redis::cmd("INFO");
            info.arg("server");
            txs.push(info, Kind::RunId);
        }
        txs.expected = Some(known.clone());
    }

    /// Whether this write checks Redis's run id: always on a single
    /// Redis, at most every [`RUN_ID_CHECK_INTERVAL`] in a partition's store.
    fn run_id_due(&self) -> bool {
        self.scope.is_none()
            || self
                .run_id_checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|at| at.elapsed() >= RUN_ID_CHECK_INTERVAL)
    }

    /// The hash `meta:name` and its (unused) expiry index.
    fn meta_hash(&self, name: &str) -> (String, String) {
        (
            self.key("meta", name),
            self.key("meta", &format!("{name}:exp")),
        )
    }

    fn plan_catalog_and_keys(&self, txs: &mut Transactions, batch: &Batch<'_>) {
        let (cut, full) = (batch.cut, batch.cut.everything);
        // The whole catalog is one value: written when it changed, not with
        // every flush (a chain of thousands of stores is a large value).
        if batch.catalog_changed || full {
            txs.versioned(
                self,
                &self.meta_hash("catalog"),
                &(cut.catalog.generation.to_string(), full),
                0,
                vec![("catalog".into(), codec::encode_catalog(&cut.catalog), 0)],
            );
        }
        if let Some(keys) = batch.keys {
            txs.versioned(
                self,
                &self.meta_hash("keys"),
                &(keys.generation.to_string(), full),
                0,
                vec![("keys".into(), codec::encode_keys(keys), 0)],
            );
        }
    }

    fn plan_positions(&self, txs: &mut Transactions, cut: &Cut, version: &Version) {
        let mut by_bucket: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        // The cut groups positions by SKU, all of a SKU's positions together.
        for sku_positions in cut.positions.chunk_by(|a, b| a.sku == b.sku) {
            let sku = &sku_positions[0].sku;
            by_bucket
                .entry(Self::position_bucket(sku))
                .or_default()
                .push((
                    codec::sku_field(sku).into_owned(),
                    codec::encode_sku_positions(sku_positions),
                    0,
                ));
        }
        for (bucket, entries) in by_bucket {
            txs.versioned(self, &self.position_hash(bucket), version, 0, entries);
        }
    }

    fn plan_reservations(&self, txs: &mut Transactions, batch: &Batch<'_>, version: &Version) {
        let retention = i64::try_from(self.config.resolved_retention_ms).unwrap_or(i64::MAX);
        let mut by_bucket: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        for r in &batch.cut.reservations {
            by_bucket
                .entry(r.id.0 % RESERVATION_BUCKETS)
                .or_default()
                .push((
                    r.id.0.to_string(),
                    codec::encode_reservation(r),
                    r.resolved_at
                        .map_or(0, |at| at.0.saturating_add(retention).max(1)),
                ));
        }
        let hashes = (0..RESERVATION_BUCKETS).map(|b| self.reservation_hash(b));
        self.plan_buckets(txs, batch.now, version, hashes, by_bucket);
    }

    fn plan_idempotency(&self, txs: &mut Transactions, batch: &Batch<'_>, version: &Version) {
        let mut by_bucket: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        for r in &batch.cut.idempotency {
            by_bucket
                .entry(stable_hash(r.key.as_str()) % IDEMPOTENCY_BUCKETS)
                .or_default()
                .push((
                    codec::idempotency_field(&r.key).into_owned(),
                    codec::encode_idempotency(r),
                    r.expires_at.0.max(1),
                ));
        }
        let hashes = (0..IDEMPOTENCY_BUCKETS).map(|b| self.idempotency_hash(b));
        self.plan_buckets(txs, batch.now, version, hashes, by_bucket);
    }

    /// Writes the changed buckets of hashes whose entries expire. Buckets
    /// without changes are visited in turn (1 in 16 per second), so what
    /// is past its retention is purged anyway.
    fn plan_buckets(
        &self,
        txs: &mut Transactions,
        now: TimestampMs,
        version: &Version,
        hashes: impl Iterator<Item = (String, String)>,
        mut by_bucket: BTreeMap<u64, Vec<Entry>>,
    ) {
        let purge_turn = (now.0.max(0) as u64 / 1000) % 16;
        for (bucket, hash) in (0u64..).zip(hashes) {
            let entries = by_bucket.remove(&bucket).unwrap_or_default();
            if !entries.is_empty() || bucket % 16 == purge_turn {
                txs.versioned(self, &hash, version, now.0, entries);
            }
        }
    }

    fn plan_state(&self, txs: &mut Transactions, batch: &Batch<'_>, version: &Version) {
        let cut = batch.cut;
        let state = EngineState {
            head: cut.head,
            reservation_shards: batch.reservation_shards,
            reservation_next_local: cut.reservation_next_local.clone(),
            written_at: batch.now,
            cursor_lineage: Some(cut.cursor_lineage),
            cursor_floor: cut.cursor_floor,
            clean: batch.clean,
        };
        txs.versioned(
            self,
            &self.meta_hash("state"),
            version,
            0,
            vec![("state".into(), codec::encode_state(&state), 0)],
        );
    }
}

/// A stored field: name, value, expiry (ms, 0: never).
type Entry = (String, Vec<u8>, i64);

/// A batch's version (decimal) and whether it is a full rewrite.
type Version = (String, bool);

/// Items per MULTI/EXEC transaction: large enough that a normal flush is one
/// transaction, small enough that Redis never blocks long on one.
const MAX_ITEMS_PER_TRANSACTION: usize = 10_000;
/// Items per Lua call.
const MAX_ITEMS_PER_CALL: usize = 1_000;

/// The identity a write goes to.
enum WriteIdentity {
    /// A full rewrite, which sets this new marker.
    New(Identity),
    /// Any other write: the store must still be this one.
    Known(Identity),
}

/// What a command in a transaction is, for checking its reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// A stream append; "equal or smaller" means it is there already.
    Stream,
    /// `GET marker`, compared with the expected identity.
    Marker,
    /// `INFO server`, whose run id is compared with the expected identity.
    RunId,
}

/// Transactions in the order they must run, with the kind of each command.
#[derive(Default)]
struct Transactions {
    done: Vec<(Pipeline, Vec<Kind>)>,
    current: Option<(Pipeline, Vec<Kind>)>,
    items: usize,
    /// The identity the first transaction must find.
    expected: Option<Identity>,
}

impl Transactions {
    fn current_entry(&mut self) -> &mut (Pipeline, Vec<Kind>) {
        self.current.get_or_insert_with(|| {
            let mut pipe = redis::pipe();
            pipe.atomic().ignore_errors();
            (pipe, Vec::new())
        })
    }

    fn push(&mut self, command: redis::Cmd, kind: Kind) {
        let (pipe, kinds) = self.current_entry();
        pipe.add_command(command);
        kinds.push(kind);
    }

    /// Starts a new transaction if `items` more would overfill this one.
    fn reserve(&mut self, items: usize) {
        if self.items > 0 && self.items + items > MAX_ITEMS_PER_TRANSACTION {
            self.done.extend(self.current.take());
            self.items = 0;
        }
        self.items += items;
    }

    /// Runs the transactions in order. Fails with `Replaced` when the first
    /// one finds another store than expected (its writes are versioned and
    /// harmless; a full rewrite follows), and on the first command error
    /// other than a stream entry that is already there.
    async fn run(mut self, connection: &mut Connection) -> Result<(), StoreError> {
        let expected = self.expected.take();
        for (pipe, kinds) in self.finish() {
            let results: Vec<redis::RedisResult<redis::Value>> =
                pipe.query_async(connection).await.map_err(unavailable)?;
            let mut failure = None;
            for (result, kind) in results.into_iter().zip(kinds) {
                match (kind, result) {
                    (Kind::Marker, Ok(value)) => {
                        let marker: Option<String> = redis::from_redis_value(value)
                            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                        if let Some(expected) = &expected
                            && marker.as_deref() != Some(expected.marker.as_str())
                        {
                            return Err(StoreError::Replaced(format!(
                                "marker {}, expected {}",
                                marker.as_deref().unwrap_or("(none)"),
                                expected.marker
                            )));
                        }
                    }
                    (Kind::RunId, Ok(value)) => {
                        let info: String = redis::from_redis_value(value)
                            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                        let run_id = info
                            .lines()
                            .find_map(|line| line.strip_prefix("run_id:"))
                            .map(str::trim);
                        if let Some(expected) = &expected
                            && run_id != Some(expected.run_id.as_str())
                        {
                            return Err(StoreError::Replaced(format!(
                                "Redis run {}, expected {}",
                                run_id.unwrap_or("(none)"),
                                expected.run_id
                            )));
                        }
                    }
                    (_, Ok(_)) => {}
                    (Kind::Stream, Err(error))
                        if error.to_string().contains("equal or smaller") => {}
                    (_, Err(error)) => {
                        failure.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = failure {
                return Err(unavailable(error));
            }
        }
        Ok(())
    }

    fn versioned(
        &mut self,
        store: &RedisStore,
        hash: &(String, String),
        version: &Version,
        purge_before: i64,
        entries: Vec<Entry>,
    ) {
        if entries.is_empty() {
            self.reserve(1);
            self.push(
                store.versioned(hash, version, purge_before, &[]),
                Kind::Plain,
            );
        }
        for chunk in entries.chunks(MAX_ITEMS_PER_CALL) {
            self.reserve(chunk.len());
            self.push(
                store.versioned(hash, version, purge_before, chunk),
                Kind::Plain,
            );
        }
    }

    fn finish(&mut self) -> Vec<(Pipeline, Vec<Kind>)> {
        self.done.extend(self.current.take());
        std::mem::take(&mut self.done)
    }
}
