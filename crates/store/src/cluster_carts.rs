//! The decision records of carts across partitions, in Redis.
//!
//! A cart's record is a hash `PREFIX:{pH}:carts:record:ID` in its home
//! partition `H` (fields `state`, `attempt`, `fingerprint`, `caller`,
//! `request`, `started_ms`, `status`, `answer`, `parts`); its
//! `Idempotency-Key`, namespaced by the caller's key, points at it from
//! `PREFIX:{pH}:carts:key:KEY`. Its state only moves forward by
//! compare-and-set on (state, attempt): `pending` to `granted`, `refused`
//! or `aborted`; an `aborted` attempt may start again as the next attempt;
//! a granted sale gets its answer once its parts are committed.
//!
//! Every partition a cart places a part on lists it first in its sorted set
//! `PREFIX:{pP}:carts:parts` (member `ID/ATTEMPT`, scored with Redis's
//! time): the partition's owner finds there the parts a coordinator that
//! crashed left behind, and undoes them once the record says so.
//!
//! Ages are measured on Redis's clock (`TIME`), never a node's.

use omnistock_cluster::{PartitionId, cart_id};

use crate::cluster::{ClusterStore, ClusterStoreError};

/// Where a cart's decision stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartState {
    /// Its parts are being placed; no answer yet.
    Pending,
    /// Every part was placed: the answer is the cart.
    Granted,
    /// A part was refused (stock, a cap, a location): the answer is that
    /// refusal, for good; the placed parts are released.
    Refused,
    /// This attempt could not finish (a partition was unreachable, or it
    /// took too long); its parts are released, and a retry starts the
    /// next attempt.
    Aborted,
}

impl CartState {
    fn as_str(self) -> &'static str {
        match self {
            CartState::Pending => "pending",
            CartState::Granted => "granted",
            CartState::Refused => "refused",
            CartState::Aborted => "aborted",
        }
    }

    fn parse(text: &str) -> Result<CartState, ClusterStoreError> {
        Ok(match text {
            "pending" => CartState::Pending,
            "granted" => CartState::Granted,
            "refused" => CartState::Refused,
            "aborted" => CartState::Aborted,
            other => return Err(ClusterStoreError::Corrupt(format!("cart state {other:?}"))),
        })
    }
}

/// What a cart is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartKind {
    /// A reservation: its parts are held until the client acts.
    Reservation,
    /// A sale: its parts are held, then committed once granted.
    Sale,
}

impl CartKind {
    fn as_str(self) -> &'static str {
        match self {
            CartKind::Reservation => "reservation",
            CartKind::Sale => "sale",
        }
    }
}

/// A cart's decision record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartRecord {
    pub id: u64,
    pub kind: CartKind,
    pub state: CartState,
    pub attempt: u32,
    /// The request's fingerprint: a retry with the same key and another
    /// request is refused.
    pub fingerprint: String,
    /// The id of the API key that made it (the parts' idempotency keys and
    /// hold caps are that key's).
    pub caller: String,
    /// The request as received, so whoever finishes the cart can redo it.
    pub request: Vec<u8>,
    /// The answer once decided (`Granted`, `Refused`): status and body.
    pub status: u16,
    pub answer: Vec<u8>,
    /// Once granted: each part's partition and reservation id.
    pub parts: Vec<(u16, u64)>,
}

/// What starting a cart found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begun {
    /// A new record, pending, attempt 1.
    New(CartRecord),
    /// The record this idempotency key already names.
    Existing(CartRecord),
    /// A new record (this id), on the Redis master, but no replica
    /// confirmed it in time: nothing may be placed under its id (a
    /// failover could lose the record and hand the id out again).
    NotReplicated(u64),
}

/// What a compare-and-set of a cart's state found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Moved, and a replica has it.
    Done,
    /// Moved on the master, but no replica confirmed it in time.
    NotReplicated,
    /// Not moved: the record is not this attempt's pending one any more
    /// (or not old enough); what it is now, if it still exists.
    Lost(Option<CartState>),
}

/// A cart's first attempt. KEYS[1]: the record, KEYS[2] (optional): the
/// idempotency key's pointer. ARGV: id, fingerprint, caller, request,
/// retention ms, kind. Returns {1, id} or {0, the id the key names}.
const BEGIN: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if KEYS[2] then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempt', 1, 'fingerprint', ARGV[2],
  'caller', ARGV[3], 'request', ARGV[4], 'started_ms', now, 'kind', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, ARGV[1]}
";

/// KEYS[1]: the record. ARGV: attempt, expected state, new state, status,
/// answer, parts, minimum age ms of the attempt (0: any), next attempt
/// (1: start `attempt + 1` as pending instead). Returns {1, state} or
/// {0, the state found ('' when gone, 'young' when not old enough)}.
const DECIDE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= ARGV[2] or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then
  return {0, state}
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if tonumber(ARGV[7]) > 0 and
   now - tonumber(redis.call('HGET', KEYS[1], 'started_ms')) < tonumber(ARGV[7]) then
  return {0, 'young'}
end
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'attempt', tonumber(ARGV[1]) + 1,
    'started_ms', now)
  return {1, 'pending'}
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'status', ARGV[4], 'answer', ARGV[5],
  'parts', ARGV[6])
return {1, ARGV[3]}
";

/// KEYS[1]: a partition's list of parts; ARGV[1]: the member.
const LIST_PART: &str = r"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
return 1
";

/// KEYS[1]: a partition's list of parts; ARGV[1]: minimum age ms, ARGV[2]:
/// most members. The members listed at least that long ago.
const DUE_PARTS: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, ARGV[2])
";

/// What a cart starts with, as [`ClusterStore::begin_cart`] takes it.
pub struct CartStart<'a> {
    pub kind: CartKind,
    /// A retry with the same key and another request is refused.
    pub fingerprint: &'a str,
    /// The id of the API key that makes it.
    pub caller: &'a str,
    /// The request as received.
    pub request: &'a [u8],
}

/// A cart's change of state, as [`ClusterStore::decide_cart`] takes it.
pub struct Decision<'a> {
    pub attempt: u32,
    pub from: CartState,
    pub to: CartState,
    pub status: u16,
    pub answer: &'a [u8],
    pub parts: &'a [(u16, u64)],
    /// Only if the attempt started at least this long ago (0: any age).
    pub min_age_ms: u64,
}

impl ClusterStore {
    fn cart_record_key(&self, home: PartitionId, id: u64) -> String {
        self.partition_key(home, &format!("carts:record:{id}"))
    }

    fn cart_parts_key(&self, partition: PartitionId) -> String {
        self.partition_key(partition, "carts:parts")
    }

    /// Starts a cart homed in `home`, or finds the one `key` (the
    /// caller's idempotency key, namespaced) started. Kept `retain_ms`.
    pub async fn begin_cart(
        &self,
        home: PartitionId,
        key: Option<&str>,
        start: CartStart<'_>,
        retain_ms: u64,
    ) -> Result<Begun, ClusterStoreError> {
        let CartStart {
            kind,
            fingerprint,
            caller,
            request,
        } = start;
        let seq: u64 = redis::cmd("INCR")
            .arg(self.partition_key(home, "carts:seq"))
            .query_async(&mut self.connection())
            .await?;
        let id = cart_id(home, seq);
        let mut script = redis::cmd("EVAL");
        script.arg(BEGIN).arg(if key.is_some() { 2 } else { 1 });
        script.arg(self.cart_record_key(home, id));
        if let Some(key) = key {
            script.arg(self.partition_key(home, &format!("carts:key:{key}")));
        }
        script
            .arg(id)
            .arg(fingerprint)
            .arg(caller)
            .arg(request)
            .arg(retain_ms)
            .arg(kind.as_str());
        // The WAIT covers the INCR too: same slot, same connection, before.
        let (answer, confirmed) = self.eval_replicated(script).await?;
        let (created, named): (i64, u64) = redis::from_redis_value(answer)
            .map_err(|e| ClusterStoreError::Unexpected(e.to_string()))?;
        if created == 1 && !confirmed {
            return Ok(Begun::NotReplicated(id));
        }
        if created == 1 {
            return Ok(Begun::New(CartRecord {
                id,
                kind,
                state: CartState::Pending,
                attempt: 1,
                fingerprint: fingerprint.to_owned(),
                caller: caller.to_owned(),
                request: request.to_vec(),
                status: 0,
                answer: Vec::new(),
                parts: Vec::new(),
            }));
        }
        match self.cart(home, named).await? {
            Some(record) => Ok(Begun::Existing(record)),
            None => Err(ClusterStoreError::Corrupt(format!(
                "cart {named} is named by its key but has no record"
            ))),
        }
    }

    /// The record of cart `id` (homed in `home`), if it still exists.
    pub async fn cart(
        &self,
        home: PartitionId,
        id: u64,
    ) -> Result<Option<CartRecord>, ClusterStoreError> {
        let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.cart_record_key(home, id))
            .arg(&[
                "state",
                "attempt",
                "fingerprint",
                "caller",
                "request",
                "status",
                "answer",
                "parts",
                "kind",
            ])
            .query_async(&mut self.connection())
            .await?;
        let text = |i: usize| -> String {
            String::from_utf8_lossy(fields.get(i).and_then(Option::as_deref).unwrap_or(b""))
                .into_owned()
        };
        if fields.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        let bytes = |i: usize| fields.get(i).cloned().flatten().unwrap_or_default();
        let number = |i: usize| text(i).parse::<u64>().unwrap_or(0);
        let kind = match text(8).as_str() {
            "sale" => CartKind::Sale,
            _ => CartKind::Reservation,
        };
        Ok(Some(CartRecord {
            id,
            kind,
            state: CartState::parse(&text(0))?,
            attempt: u32::try_from(number(1)).unwrap_or(u32::MAX),
            fingerprint: text(2),
            caller: text(3),
            request: bytes(4),
            status: u16::try_from(number(5)).unwrap_or(0),
            answer: bytes(6),
            parts: parse_parts(&text(7))?,
        }))
    }

    /// Moves cart `id` from `decision.from` (at `decision.attempt`) to
    /// `decision.to`, recording the answer; with `to: Pending`, from
    /// `Aborted` to the next attempt; from `Granted` to `Granted`, the
    /// answer of a sale once its parts are committed. Confirmed by a replica when the
    /// cluster has replicas.
    pub async fn decide_cart(
        &self,
        home: PartitionId,
        id: u64,
        decision: Decision<'_>,
    ) -> Result<Decided, ClusterStoreError> {
        let parts = decision
            .parts
            .iter()
            .map(|(partition, id)| format!("{partition}:{id}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut script = redis::cmd("EVAL");
        script
            .arg(DECIDE)
            .arg(1)
            .arg(self.cart_record_key(home, id))
            .arg(decision.attempt)
            .arg(decision.from.as_str())
            .arg(decision.to.as_str())
            .arg(decision.status)
            .arg(decision.answer)
            .arg(parts)
            .arg(decision.min_age_ms)
            .arg(u8::from(decision.to == CartState::Pending));
        let (answer, confirmed) = self.eval_replicated(script).await?;
        let (moved, state): (i64, String) = redis::from_redis_value(answer)
            .map_err(|e| ClusterStoreError::Unexpected(e.to_string()))?;
        Ok(match (moved == 1, confirmed) {
            (true, true) => Decided::Done,
            (true, false) => Decided::NotReplicated,
            (false, _) if state.is_empty() || state == "young" => Decided::Lost(None),
            (false, _) => Decided::Lost(Some(CartState::parse(&state)?)),
        })
    }

    /// Keeps cart `id`'s record at least `retain_ms` from now (an extended
    /// cart is kept beyond its new deadline as it was beyond its first).
    pub async fn retain_cart(
        &self,
        home: PartitionId,
        id: u64,
        retain_ms: u64,
    ) -> Result<(), ClusterStoreError> {
        redis::cmd("PEXPIRE")
            .arg(self.cart_record_key(home, id))
            .arg(retain_ms)
            .arg("GT")
            .query_async::<i64>(&mut self.connection())
            .await?;
        Ok(())
    }

    /// Lists a part of cart `id`'s `attempt` in `partition`, before it is
    /// placed there; an error unless a replica has the listing (else a
    /// failover could lose it, and with it the part's undoing).
    pub async fn list_cart_part(
        &self,
        partition: PartitionId,
        id: u64,
        attempt: u32,
    ) -> Result<(), ClusterStoreError> {
        let mut script = redis::cmd("EVAL");
        script
            .arg(LIST_PART)
            .arg(1)
            .arg(self.cart_parts_key(partition))
            .arg(format!("{id}/{attempt}"));
        match self.eval_replicated(script).await? {
            (_, true) => Ok(()),
            (_, false) => Err(ClusterStoreError::NotReplicated("a cart's part listing")),
        }
    }

    /// Up to `most` parts listed in `partition` at least `min_age_ms` ago:
    /// (cart id, attempt).
    pub async fn due_cart_parts(
        &self,
        partition: PartitionId,
        min_age_ms: u64,
        most: usize,
    ) -> Result<Vec<(u64, u32)>, ClusterStoreError> {
        let members: Vec<String> = redis::cmd("EVAL")
            .arg(DUE_PARTS)
            .arg(1)
            .arg(self.cart_parts_key(partition))
            .arg(min_age_ms)
            .arg(most)
            .query_async(&mut self.connection())
            .await?;
        members
            .iter()
            .map(|member| {
                let parsed = member
                    .split_once('/')
                    .and_then(|(id, attempt)| Some((id.parse().ok()?, attempt.parse().ok()?)));
                parsed.ok_or_else(|| ClusterStoreError::Corrupt(format!("cart part {member:?}")))
            })
            .collect()
    }

    /// Drops a listed part: its cart is decided and the part is as the
    /// decision wants it.
    pub async fn forget_cart_part(
        &self,
        partition: PartitionId,
        id: u64,
        attempt: u32,
    ) -> Result<(), ClusterStoreError> {
        let _: i64 = redis::cmd("ZREM")
            .arg(self.cart_parts_key(partition))
            .arg(format!("{id}/{attempt}"))
            .query_async(&mut self.connection())
            .await?;
        Ok(())
    }
}

/// `P:ID,P:ID` into (partition, part id) pairs.
fn parse_parts(text: &str) -> Result<Vec<(u16, u64)>, ClusterStoreError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let parsed = pair
                .split_once(':')
                .and_then(|(p, id)| Some((p.parse().ok()?, id.parse().ok()?)));
            parsed.ok_or_else(|| ClusterStoreError::Corrupt(format!("cart parts {text:?}")))
        })
        .collect()
}
