//! Durability: the write-behind store.
//!
//! - [`Store`] is the narrow interface: load everything, write a batch.
//!   [`redis::RedisStore`] is its implementation and the only code in
//!   omnistock that knows Redis.
//! - [`write_behind`] is the shell that feeds it: it collects changed items
//!   from the ledger, writes their latest absolute state in batches, retries
//!   with backoff while the store is down, and tells sync-mode writers when
//!   their change is durable.
//! - [`codec`] is the form of stored values: [`records`], serde mirrors of
//!   the ledger's records, in postcard behind a format byte; `legacy` reads
//!   the text form stores held before it (a load migrates them).
//! - [`cluster`] keeps partition ownership in a Redis Cluster: the
//!   partition count, each partition's lease and epoch, and the fence
//!   every write of a partition checks; [`cluster_shared`] the catalog and
//!   API keys every node of a cluster follows.
//! - [`redis::RedisStore::for_partition`] writes one partition's data behind that fence.

pub mod cluster;
pub mod cluster_carts;
pub mod cluster_shared;
pub mod codec;
pub mod connection;
mod legacy;
pub mod records;
pub mod redis;

use std::future::Future;

use omnistock_ledger::{Cut, Restore, TimestampMs};

/// An API key as persisted: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub locations: Vec<String>,
    pub digest_hex: String,
    /// The key's own hold cap (units held at once), when it has one.
    pub max_held_units: Option<u64>,
    /// What a publishable key may see; `None` for a secret key.
    pub publishable: Option<PublishableRecord>,
}

/// A publishable key's limits, as text the engine parses back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishableRecord {
    pub channel: String,
    pub origins: Vec<String>,
    pub quantities: String,
    pub quantity_threshold: u32,
    pub cache_control: Option<String>,
}

/// Every created (not revoked) key, ordered by `generation`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeysRecord {
    pub generation: u64,
    pub keys: Vec<KeyRecord>,
}

/// Where the keys live (the HTTP layer's key store), seen from the flusher.
pub trait KeySource: Send + Sync {
    /// Changes whenever a key is created or revoked.
    fn generation(&self) -> u64;
    fn export(&self) -> KeysRecord;
}

/// One write: a consistent cut of the ledger plus the keys if they changed.
pub struct Batch<'a> {
    pub cut: &'a Cut,
    pub keys: Option<&'a KeysRecord>,
    /// Resolved reservations and idempotency records older than their
    /// retention are purged from the store as of this time.
    pub now: TimestampMs,
    pub reservation_shards: usize,
    /// The last write of a graceful stop: nothing changes after it, so
    /// the next run may honour this run's feed cursors.
    pub clean: bool,
    /// Whether the cut's catalog may differ from the one the store holds;
    /// false lets the write skip it (a full rewrite writes it anyway).
    pub catalog_changed: bool,
}

/// Everything a store holds.
pub struct Loaded {
    pub restore: Restore,
    pub keys: KeysRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, timed out, or refused the write: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store is not the one last written (restarted empty, restarted
    /// from an older snapshot, or replaced): the whole state must be rewritten.
    #[error("store replaced or restarted: {0}")]
    Replaced(String),
    /// A stored value cannot be decoded: refuse to start rather than guess.
    #[error("store holds invalid data: {0}")]
    Corrupt(String),
    /// The store cannot do what the configuration asks.
    #[error("store misconfigured: {0}")]
    Config(String),
    /// A partition's store refused the write: the partition's epoch is no
    /// longer the writer's (another node owns it). Nothing was written, and
    /// nothing this writer sends later will be: stop serving the partition.
    #[error("fenced: {0}")]
    Fenced(String),
}

/// The narrow interface between the write-behind shell and a backend.
pub trait Store: Send + Sync + 'static {
    /// Reads everything back; `None` when the store is empty (never written).
    fn load(
        &self,
        now: TimestampMs,
    ) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;

    /// Writes one batch: atomically when it is of ordinary size; a very
    /// large one (a full rewrite, a catch-up) in several transactions in
    /// dependency order (catalog, positions, reservations, idempotency
    /// records, engine state last). Writes are idempotent and ordered by
    /// version: writing an older batch after a newer one changes nothing.
    /// Unless `batch.cut.everything`, fails with `Replaced` when the store
    /// is not the one last written.
    fn write(&self, batch: &Batch<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;
}
