//! The Redis store: the only code in omnistock that knows Redis.
//!
//! Key schema (every key carries a hash tag, so the same schema works on
//! Redis Cluster, where the flusher would send one transaction per slot;
//! `ARCHITECTURE.md` has the value layouts):
//!
//! | key                         | type   | holds                                        |
//! |-----------------------------|--------|----------------------------------------------|
//! | `P:{meta}:marker`           | string | random id of this store's current contents   |
//! | `P:{meta}:state`            | hash   | `state`: head sequence, reservation id marks |
//! | `P:{meta}:catalog`          | hash   | `catalog`: locations, groups, policies       |
//! | `P:{meta}:keys`             | hash   | `keys`: API keys (SHA-256 digests only)      |
//! | `P:{pN}:pos`                | hash   | `SKU\|LOC` -> position, bucket N of 1024 by SKU |
//! | `P:{rN}:res` (+ `:exp`)     | hash   | id -> reservation, reservation shard N       |
//! | `P:{iN}:idem` (+ `:exp`)    | hash   | key -> idempotency record, bucket N of 256   |
//! | `P:{journal}:movements`     | stream | one entry per movement, id `<seq>-0`         |
//!
//! `:exp` sorted sets index entries that expire (resolved reservations after
//! their retention, idempotency records after their TTL) by expiry time; each
//! write purges what is due, so the store stays bounded like the ledger.
//!
//! Every write is one MULTI/EXEC pipeline of Lua calls that write a field
//! only if its stored version is not newer: a retried or reordered batch can
//! never roll anything back.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, Script};
use tokio::sync::Mutex;

use super::codec::{self, EngineState};
use super::{Batch, Loaded, Store, StoreError};
use crate::ledger::{
    IdempotencyRecord, LedgerConfig, MovementRecord, PositionRecord, ReservationRecord, Restore,
    Seq, Sku, TimestampMs,
};

/// Positions are spread over this many hashes (by SKU, so a SKU's positions
/// share a slot). Part of the stored format: changing it needs a rewrite.
pub const POSITION_BUCKETS: u64 = 1024;
/// Idempotency records are spread over this many hashes (by key).
pub const IDEMPOTENCY_BUCKETS: u64 = 256;
/// Buckets read per round trip while loading.
const LOAD_BUCKETS_PER_TRIP: usize = 64;

/// Writes `field -> value` into a hash unless the stored value's leading
/// version is newer; indexes entries that expire; purges what is due.
const VERSIONED_WRITE: &str = r#"
-- KEYS[1]: hash, KEYS[2]: expiry index (sorted set)
-- ARGV[1]: purge entries expiring at or before this time (ms), "0": none
-- ARGV[2..]: groups of field, version, value, expire_at ("0": never)
local function at_least(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local written = 0
for i = 2, #ARGV, 4 do
  local field, version, value, expire_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local current = redis.call('HGET', KEYS[1], field)
  local stored = current and string.match(current, '^(%d+)')
  if not stored or at_least(version, stored) then
    redis.call('HSET', KEYS[1], field, value)
    if expire_at ~= '0' then
      redis.call('ZADD', KEYS[2], expire_at, field)
    end
    written = written + 1
  end
end
if ARGV[1] ~= '0' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
  for _, field in ipairs(due) do
    redis.call('HDEL', KEYS[1], field)
  end
  if #due > 0 then
    redis.call('ZREM', KEYS[2], unpack(due))
  end
end
return written
"#;

/// Appends movements to the stream with id `<seq>-0`, skipping those at or
/// below the newest entry (a retried batch), trimming to about MAXLEN.
const STREAM_APPEND: &str = r#"
-- KEYS[1]: stream; ARGV[1]: maxlen; ARGV[2]: fields per entry;
-- ARGV[3 .. 2 + n]: field names; then groups of n values, the first is seq
local n = tonumber(ARGV[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_seq = -1
if #last > 0 then
  last_seq = tonumber(string.match(last[1][1], '^(%d+)'))
end
local added = 0
for i = 3 + n, #ARGV, n do
  local seq = tonumber(ARGV[i])
  if seq > last_seq then
    local args = {KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-0'}
    for j = 0, n - 1 do
      args[#args + 1] = ARGV[3 + j]
      args[#args + 1] = ARGV[i + j]
    end
    redis.call('XADD', unpack(args))
    last_seq = seq
    added = added + 1
  end
end
return added
"#;

const STREAM_FIELDS: [&str; 15] = [
    "seq",
    "at",
    "kind",
    "sku",
    "location",
    "on_hand_delta",
    "reserved_delta",
    "on_hand",
    "reserved",
    "safety_stock",
    "non_sellable",
    "channel",
    "reservation",
    "reason",
    "reference",
];

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

pub struct RedisStore {
    config: RedisConfig,
    connection: ConnectionManager,
    versioned_write: Script,
    stream_append: Script,
    /// `None` until loaded or first written; a write that finds another
    /// identity fails with `Replaced`.
    identity: Mutex<Option<Identity>>,
}

fn unavailable(error: redis::RedisError) -> StoreError {
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
            connection,
            versioned_write: Script::new(VERSIONED_WRITE),
            stream_append: Script::new(STREAM_APPEND),
            identity: Mutex::new(None),
        })
    }

    fn key(&self, tag: &str, name: &str) -> String {
        format!("{}:{{{tag}}}:{name}", self.config.key_prefix)
    }

    pub fn position_bucket(sku: &Sku) -> u64 {
        stable_hash(sku.as_str()) % POSITION_BUCKETS
    }

    fn position_hash(&self, bucket: u64) -> (String, String) {
        let tag = format!("p{bucket}");
        (self.key(&tag, "pos"), self.key(&tag, "pos:exp"))
    }

    fn reservation_hash(&self, shard: usize) -> (String, String) {
        let tag = format!("r{shard}");
        (self.key(&tag, "res"), self.key(&tag, "res:exp"))
    }

    fn idempotency_hash(&self, bucket: u64) -> (String, String) {
        let tag = format!("i{bucket}");
        (self.key(&tag, "idem"), self.key(&tag, "idem:exp"))
    }

    pub fn stream_key(&self) -> String {
        self.key("journal", "movements")
    }

    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
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

    async fn load_scripts(&self) -> Result<(), StoreError> {
        for code in [VERSIONED_WRITE, STREAM_APPEND] {
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

    async fn hgetall_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Vec<(String, String)>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LOAD_BUCKETS_PER_TRIP) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HGETALL").arg(key);
            }
            let replies: Vec<Vec<(String, String)>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            out.extend(replies);
        }
        Ok(out)
    }

    fn versioned(
        &self,
        pipe: &mut Pipeline,
        (hash, index): &(String, String),
        purge_before: i64,
        entries: &[(String, String, String, i64)],
    ) {
        let mut call = redis::cmd("EVALSHA");
        call.arg(self.versioned_write.get_hash())
            .arg(2)
            .arg(hash)
            .arg(index)
            .arg(purge_before);
        for (field, version, value, expire_at) in entries {
            call.arg(field).arg(version).arg(value).arg(*expire_at);
        }
        pipe.add_command(call).ignore();
    }

    fn append_stream(&self, pipe: &mut Pipeline, movements: &[MovementRecord]) {
        if movements.is_empty() {
            return;
        }
        let mut call = redis::cmd("EVALSHA");
        call.arg(self.stream_append.get_hash())
            .arg(1)
            .arg(self.stream_key())
            .arg(self.config.stream_max_len)
            .arg(STREAM_FIELDS.len());
        for name in STREAM_FIELDS {
            call.arg(name);
        }
        for m in movements {
            call.arg(m.seq.0)
                .arg(m.at.0)
                .arg(m.kind.as_str())
                .arg(m.sku.as_str())
                .arg(m.location.as_str())
                .arg(m.on_hand_delta)
                .arg(m.reserved_delta)
                .arg(m.after.on_hand.0)
                .arg(m.after.reserved.0)
                .arg(m.after.safety_stock.0)
                .arg(m.after.non_sellable.0)
                .arg(m.channel.map_or("", |c| c.as_str()))
                .arg(m.reservation.map_or(String::new(), |r| r.0.to_string()))
                .arg(m.reason.as_deref().unwrap_or(""))
                .arg(m.reference.as_deref().unwrap_or(""));
        }
        pipe.add_command(call).ignore();
    }

    /// Compares the store's identity with the one this process knows.
    async fn check_identity(&self, full_rewrite: bool) -> Result<Option<Identity>, StoreError> {
        let (run_id, marker) = self.identity_now().await?;
        let known = self.identity.lock().await.clone();
        if full_rewrite {
            // A new marker: anything that still holds the old one is stale.
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)
                .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?;
            let marker = bytes.iter().map(|b| format!("{b:02x}")).collect();
            self.load_scripts().await?;
            return Ok(Some(Identity { marker, run_id }));
        }
        match known {
            Some(known) if known.run_id == run_id && marker.as_deref() == Some(&known.marker) => {
                Ok(None)
            }
            Some(known) => Err(StoreError::Replaced(format!(
                "expected marker {} on run {}, found {:?} on run {run_id}",
                known.marker, known.run_id, marker
            ))),
            None => Err(StoreError::Replaced("never written by this process".into())),
        }
    }

    /// Counts of stored items, for tests and diagnostics.
    pub async fn position_count(&self) -> Result<usize, StoreError> {
        let mut pipe = redis::pipe();
        for bucket in 0..POSITION_BUCKETS {
            pipe.cmd("HLEN").arg(self.position_hash(bucket).0);
        }
        let counts: Vec<usize> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(counts.into_iter().sum())
    }
}

impl Store for RedisStore {
    async fn load(&self, now: TimestampMs) -> Result<Option<Loaded>, StoreError> {
        let (run_id, marker) = self.identity_now().await?;
        let (state, catalog, keys): (Option<String>, Option<String>, Option<String>) =
            redis::pipe()
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
        let Some(marker) = marker else {
            return Ok(None);
        };
        let state = match state {
            Some(text) => codec::decode_state(&text).map_err(|e| corrupt("state", "state", e))?,
            None => EngineState::default(),
        };
        let catalog = catalog
            .map(|text| codec::decode_catalog(&text))
            .transpose()
            .map_err(|e| corrupt("catalog", "catalog", e))?;
        let keys = keys
            .map(|text| codec::decode_keys(&text))
            .transpose()
            .map_err(|e| corrupt("keys", "keys", e))?
            .unwrap_or_default();

        let position_keys: Vec<String> = (0..POSITION_BUCKETS)
            .map(|b| self.position_hash(b).0)
            .collect();
        let mut positions: Vec<PositionRecord> = Vec::new();
        for (key, entries) in position_keys
            .iter()
            .zip(self.hgetall_many(&position_keys).await?)
        {
            positions.reserve(entries.len());
            for (field, value) in entries {
                positions.push(
                    codec::decode_position(&field, &value).map_err(|e| corrupt(key, &field, e))?,
                );
            }
        }

        let retention = i64::try_from(self.config.resolved_retention_ms).unwrap_or(i64::MAX);
        let reservation_keys: Vec<String> = (0..state.reservation_shards)
            .map(|s| self.reservation_hash(s).0)
            .collect();
        let mut reservations: Vec<ReservationRecord> = Vec::new();
        for (key, entries) in reservation_keys
            .iter()
            .zip(self.hgetall_many(&reservation_keys).await?)
        {
            for (field, value) in entries {
                let record = codec::decode_reservation(&field, &value)
                    .map_err(|e| corrupt(key, &field, e))?;
                let forgotten = record
                    .resolved_at
                    .is_some_and(|at| at.0.saturating_add(retention) <= now.0);
                if !forgotten {
                    reservations.push(record);
                }
            }
        }

        let idempotency_keys: Vec<String> = (0..IDEMPOTENCY_BUCKETS)
            .map(|b| self.idempotency_hash(b).0)
            .collect();
        let mut idempotency: Vec<IdempotencyRecord> = Vec::new();
        for (key, entries) in idempotency_keys
            .iter()
            .zip(self.hgetall_many(&idempotency_keys).await?)
        {
            for (field, value) in entries {
                let record = codec::decode_idempotency(&field, &value)
                    .map_err(|e| corrupt(key, &field, e))?;
                if record.expires_at > now {
                    idempotency.push(record);
                }
            }
        }

        self.load_scripts().await?;
        *self.identity.lock().await = Some(Identity { marker, run_id });
        Ok(Some(Loaded {
            restore: Restore {
                head: state.head,
                reservation_shards: state.reservation_shards,
                reservation_next_local: state.reservation_next_local,
                catalog,
                positions,
                reservations,
                idempotency,
            },
            keys,
        }))
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let cut = batch.cut;
        let new_identity = self.check_identity(cut.everything).await?;
        let now = batch.now.0;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if cut.everything {
            // A full rewrite replaces the store's contents.
            // The movement stream stays: it is history for its consumers.
            let mut old: Vec<String> = vec![
                self.key("meta", "state"),
                self.key("meta", "catalog"),
                self.key("meta", "keys"),
            ];
            for bucket in 0..POSITION_BUCKETS {
                let (hash, index) = self.position_hash(bucket);
                old.extend([hash, index]);
            }
            for shard in 0..batch.reservation_shards {
                let (hash, index) = self.reservation_hash(shard);
                old.extend([hash, index]);
            }
            for bucket in 0..IDEMPOTENCY_BUCKETS {
                let (hash, index) = self.idempotency_hash(bucket);
                old.extend([hash, index]);
            }
            for chunk in old.chunks(256) {
                pipe.cmd("UNLINK").arg(chunk).ignore();
            }
        }

        let mut by_bucket: BTreeMap<u64, Vec<(String, String, String, i64)>> = BTreeMap::new();
        for p in &cut.positions {
            by_bucket
                .entry(Self::position_bucket(&p.sku))
                .or_default()
                .push((
                    codec::position_field(&p.sku, &p.location),
                    p.version.0.to_string(),
                    codec::encode_position(p),
                    0,
                ));
        }
        for (bucket, entries) in &by_bucket {
            self.versioned(&mut pipe, &self.position_hash(*bucket), 0, entries);
        }

        let retention = i64::try_from(self.config.resolved_retention_ms).unwrap_or(i64::MAX);
        let mut by_shard: BTreeMap<usize, Vec<(String, String, String, i64)>> = BTreeMap::new();
        for r in &cut.reservations {
            let shard = (r.id.0 as usize) & (batch.reservation_shards.max(1) - 1);
            by_shard.entry(shard).or_default().push((
                r.id.0.to_string(),
                r.version.0.to_string(),
                codec::encode_reservation(r),
                r.resolved_at
                    .map_or(0, |at| at.0.saturating_add(retention).max(1)),
            ));
        }
        // Shards without changes are visited round-robin (1/16 per second),
        // so resolved reservations past their retention are purged anyway.
        let purge_turn = (now.max(0) as u64 / 1000) % 16;
        for shard in 0..batch.reservation_shards {
            let entries = by_shard.remove(&shard).unwrap_or_default();
            if !entries.is_empty() || shard as u64 % 16 == purge_turn {
                self.versioned(&mut pipe, &self.reservation_hash(shard), now, &entries);
            }
        }

        let mut by_bucket: BTreeMap<u64, Vec<(String, String, String, i64)>> = BTreeMap::new();
        for r in &cut.idempotency {
            by_bucket
                .entry(stable_hash(r.key.as_str()) % IDEMPOTENCY_BUCKETS)
                .or_default()
                .push((
                    codec::escape(r.key.as_str()).into_owned(),
                    "1".into(),
                    codec::encode_idempotency(r),
                    r.expires_at.0.max(1),
                ));
        }
        for bucket in 0..IDEMPOTENCY_BUCKETS {
            let entries = by_bucket.remove(&bucket).unwrap_or_default();
            if !entries.is_empty() || bucket % 16 == purge_turn {
                self.versioned(&mut pipe, &self.idempotency_hash(bucket), now, &entries);
            }
        }

        let meta = |name: &str| {
            (
                self.key("meta", name),
                self.key("meta", &format!("{name}:exp")),
            )
        };
        self.versioned(
            &mut pipe,
            &meta("catalog"),
            0,
            &[(
                "catalog".into(),
                cut.catalog.generation.to_string(),
                codec::encode_catalog(&cut.catalog),
                0,
            )],
        );
        if let Some(keys) = batch.keys {
            self.versioned(
                &mut pipe,
                &meta("keys"),
                0,
                &[(
                    "keys".into(),
                    keys.generation.to_string(),
                    codec::encode_keys(keys),
                    0,
                )],
            );
        }
        let state = EngineState {
            head: cut.head,
            reservation_shards: batch.reservation_shards,
            reservation_next_local: cut.reservation_next_local.clone(),
            written_at: batch.now,
        };
        self.versioned(
            &mut pipe,
            &meta("state"),
            0,
            &[(
                "state".into(),
                Seq(cut.head.0.saturating_sub(1)).0.to_string(),
                codec::encode_state(&state),
                0,
            )],
        );
        self.append_stream(&mut pipe, &cut.movements);
        if let Some(identity) = &new_identity {
            pipe.cmd("SET")
                .arg(self.key("meta", "marker"))
                .arg(&identity.marker)
                .ignore();
        }
        let () = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if self.config.wait_aof {
            let _: redis::Value = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(self.config.timeout_ms)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
        }
        if let Some(identity) = new_identity {
            *self.identity.lock().await = Some(identity);
        }
        Ok(())
    }
}
