//! Every limit of the ledger in one place (TigerBeetle style: a limit on everything).

/// Limits and sizes of a [`crate::Ledger`]. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Position shards (rounded up to a power of two). More shards, less
    /// contention between unrelated SKUs; each costs one cache-padded lock.
    pub position_shards: usize,
    /// Reservation shards (rounded up to a power of two).
    pub reservation_shards: usize,
    /// Carried in the top 16 bits of every reservation id this ledger
    /// makes, and required of every id it looks up: in a cluster, the
    /// partition, so any node can tell where a reservation lives from its
    /// id alone. 0 for a single node (ids as before).
    pub reservation_id_tag: u16,
    /// Most lines in one reservation or sale.
    pub max_lines_per_request: usize,
    /// Most units on one line.
    pub max_qty_per_line: u32,
    /// Shortest and longest hold a reservation may ask for.
    pub min_ttl_ms: u64,
    pub max_ttl_ms: u64,
    /// How far ahead incoming receipts count towards ATO.
    pub ato_horizon_ms: u64,
    /// Journal entries kept in memory; a consumer further behind is told it lagged.
    pub journal_capacity: usize,
    /// Per position, how many on-hand movements are kept to re-apply after an
    /// `as_of` count. Older movements are dropped and a count older than the
    /// oldest dropped one is refused (`Refusal::AsOfBeyondHistory`).
    pub position_history_len: usize,
    /// Expected receipts kept per position; one more is refused.
    pub max_incoming_per_position: usize,
    /// How long a resolved reservation stays readable.
    pub resolved_retention_ms: u64,
    /// How many resolved reservations are kept at most, over all shards;
    /// beyond it the oldest are forgotten before their retention ends (a
    /// held reservation in front of them moves to a side map). Held
    /// reservations do not count: they are bounded by the stock they hold.
    pub max_resolved_reservations: usize,
    /// How long an idempotency key and its outcome are remembered.
    pub idempotency_ttl_ms: u64,
    /// Most idempotency keys remembered at once; a new keyed write beyond it
    /// is refused (`Refusal::IdempotencyStoreFull`) rather than evicting a live key.
    pub max_idempotency_keys: usize,
    /// A count's `as_of` may be at most this far in the future (clock skew).
    pub max_as_of_skew_ms: u64,
    /// Catalog versions kept for incremental feeds: a cursor from before
    /// the oldest kept is answered in full (each version is one copy of
    /// the locations, groups and policies).
    pub catalog_history_len: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            position_shards: 64,
            reservation_shards: 64,
            reservation_id_tag: 0,
            max_lines_per_request: 100,
            max_qty_per_line: 1_000_000,
            min_ttl_ms: 1_000,
            max_ttl_ms: 7 * 24 * 3_600_000,
            ato_horizon_ms: 14 * 24 * 3_600_000,
            journal_capacity: 1 << 16,
            position_history_len: 32,
            max_incoming_per_position: 16,
            resolved_retention_ms: 24 * 3_600_000,
            max_resolved_reservations: 1_000_000,
            idempotency_ttl_ms: 24 * 3_600_000,
            max_idempotency_keys: 2_000_000,
            max_as_of_skew_ms: 60_000,
            catalog_history_len: 16,
        }
    }
}
