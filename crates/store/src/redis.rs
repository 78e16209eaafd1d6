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

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, Script};
use tokio::sync::Mutex;

use super::codec::{self, EngineState};
use super::{Batch, Loaded, Store, StoreError};
use omnistock_ledger::{
    IdempotencyRecord, LedgerConfig, MovementRecord, PositionRecord, ReservationRecord, Restore,
    Sku, TimestampMs,
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
type Fetched = Vec<(String, Vec<(String, String)>)>;

/// HGETALL of `keys` in one round trip, each reply with its key.
async fn hgetall_chunk(
    mut connection: ConnectionManager,
    keys: Vec<String>,
) -> Result<Fetched, StoreError> {
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("HGETALL").arg(key);
    }
    let replies: Vec<Vec<(String, String)>> = pipe
        .query_async(&mut connection)
        .await
        .map_err(unavailable)?;
    Ok(keys.into_iter().zip(replies).collect())
}

/// Decodes position hashes; location codes are shared, not copied per position.
fn decode_positions(fetched: Fetched) -> Result<Vec<PositionRecord>, StoreError> {
    let mut locations = rustc_hash::FxHashMap::default();
    let mut positions = Vec::with_capacity(fetched.iter().map(|(_, e)| e.len()).sum::<usize>() * 4);
    for (key, entries) in fetched {
        for (field, value) in entries {
            if field == VERSION_FIELD {
                continue;
            }
            positions.extend(
                codec::decode_sku_positions_with(&field, &value, &mut locations)
                    .map_err(|e| corrupt(&key, &field, e))?,
            );
        }
    }
    Ok(positions)
}

/// Writes `field -> value` into a hash unless the stored value's leading
/// version is newer; indexes entries that expire; purges what is due.
const VERSIONED_WRITE: &str = r#"
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

pub struct RedisStore {
    config: RedisConfig,
    connection: ConnectionManager,
    versioned_write: Script,
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
        for code in [VERSIONED_WRITE] {
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
            let fetched = hgetall_chunk(self.conn(), chunk.to_vec()).await?;
            out.extend(fetched.into_iter().map(|(_, entries)| entries));
        }
        Ok(out)
    }

    fn versioned(
        &self,
        (hash, index): &(String, String),
        version: &Version,
        purge_before: i64,
        entries: &[Entry],
    ) -> redis::Cmd {
        let mut call = redis::cmd("EVALSHA");
        call.arg(self.versioned_write.get_hash())
            .arg(2)
            .arg(hash)
            .arg(index)
            .arg(&version.0)
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
        let mut call = redis::cmd("XADD");
        call.arg(self.stream_key())
            .arg("MAXLEN")
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

impl Store for RedisStore {
    async fn load(&self, now: TimestampMs) -> Result<Option<Loaded>, StoreError> {
        self.check_capabilities().await?;
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
        // Fetching and decoding overlap: Redis serialises the next buckets
        // while a blocking thread decodes the ones already here.
        let chunks: Vec<Vec<String>> = position_keys
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
            let decoded = decode
                .await
                .map_err(|e| StoreError::Corrupt(format!("decoding positions: {e}")))??;
            if positions.is_empty() {
                positions = decoded;
            } else {
                positions.extend(decoded);
            }
        }

        let retention = i64::try_from(self.config.resolved_retention_ms).unwrap_or(i64::MAX);
        let reservation_keys: Vec<String> = (0..RESERVATION_BUCKETS)
            .map(|b| self.reservation_hash(b).0)
            .collect();
        let mut reservations: Vec<ReservationRecord> = Vec::new();
        for (key, entries) in reservation_keys
            .iter()
            .zip(self.hgetall_many(&reservation_keys).await?)
        {
            for (field, value) in entries {
                if field == VERSION_FIELD {
                    continue;
                }
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
                if field == VERSION_FIELD {
                    continue;
                }
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
                cursor_lineage: state.cursor_lineage,
                cursor_floor: state.cursor_floor,
                clean: state.clean,
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
        let identity = self.identity_for_write(cut.everything).await?;
        let now = batch.now.0;
        // Dependency order: the catalog (positions name its locations), the
        // positions, the reservations (a committed reservation never lands
        // before its position), idempotency records, then the engine state
        // and marker. A batch within one transaction is atomic; a larger one
        // (a full rewrite, a catch-up) is cut into transactions in this
        // order, and every item is versioned, so a partial write never rolls
        // anything back.
        let mut txs = Transactions::default();
        if let WriteIdentity::Known(known) = &identity {
            // Checked in the same round trip as the first transaction.
            let mut marker = redis::cmd("GET");
            marker.arg(self.key("meta", "marker"));
            txs.push(marker, Kind::Marker);
            let mut info = redis::cmd("INFO");
            info.arg("server");
            txs.push(info, Kind::RunId);
            txs.expected = Some(known.clone());
        }
        let full = cut.everything;
        let batch_version: Version = (cut.head.0.saturating_sub(1).to_string(), full);
        let meta = |name: &str| {
            (
                self.key("meta", name),
                self.key("meta", &format!("{name}:exp")),
            )
        };
        txs.versioned(
            self,
            &meta("catalog"),
            &(cut.catalog.generation.to_string(), full),
            0,
            vec![("catalog".into(), codec::encode_catalog(&cut.catalog), 0)],
        );
        if let Some(keys) = batch.keys {
            txs.versioned(
                self,
                &meta("keys"),
                &(keys.generation.to_string(), full),
                0,
                vec![("keys".into(), codec::encode_keys(keys), 0)],
            );
        }

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
            txs.versioned(
                self,
                &self.position_hash(bucket),
                &batch_version,
                0,
                entries,
            );
        }

        let retention = i64::try_from(self.config.resolved_retention_ms).unwrap_or(i64::MAX);
        let mut by_bucket: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        for r in &cut.reservations {
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
        // Buckets without changes are visited in turn (1 in 16 per second),
        // so resolved reservations past their retention are purged anyway.
        let purge_turn = (now.max(0) as u64 / 1000) % 16;
        for bucket in 0..RESERVATION_BUCKETS {
            let entries = by_bucket.remove(&bucket).unwrap_or_default();
            if !entries.is_empty() || bucket % 16 == purge_turn {
                txs.versioned(
                    self,
                    &self.reservation_hash(bucket),
                    &batch_version,
                    now,
                    entries,
                );
            }
        }

        let mut by_bucket: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        for r in &cut.idempotency {
            by_bucket
                .entry(stable_hash(r.key.as_str()) % IDEMPOTENCY_BUCKETS)
                .or_default()
                .push((
                    codec::escape(r.key.as_str()).into_owned(),
                    codec::encode_idempotency(r),
                    r.expires_at.0.max(1),
                ));
        }
        for bucket in 0..IDEMPOTENCY_BUCKETS {
            let entries = by_bucket.remove(&bucket).unwrap_or_default();
            if !entries.is_empty() || bucket % 16 == purge_turn {
                txs.versioned(
                    self,
                    &self.idempotency_hash(bucket),
                    &batch_version,
                    now,
                    entries,
                );
            }
        }

        for movement in &cut.movements {
            txs.reserve(1);
            txs.push(self.xadd(movement), Kind::Stream);
        }
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
            &meta("state"),
            &batch_version,
            0,
            vec![("state".into(), codec::encode_state(&state), 0)],
        );
        if let WriteIdentity::New(identity) = &identity {
            let mut set = redis::cmd("SET");
            set.arg(self.key("meta", "marker")).arg(&identity.marker);
            txs.push(set, Kind::Plain);
        }
        txs.run(&mut self.conn()).await?;
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

/// A stored field: name, version, value, expiry (ms, 0: never).
type Entry = (String, String, i64);
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
    async fn run(mut self, connection: &mut ConnectionManager) -> Result<(), StoreError> {
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
