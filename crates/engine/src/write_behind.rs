//! The write-behind shell: moves the ledger's changes into a [`Store`].
//!
//! One task (the flusher) owns a [`Changes`] set. Every poll it moves new
//! journal entries into the set; when a flush is due (the oldest change is
//! `flush_interval_ms` old, or `flush_max_items` items wait, or a sync-mode
//! writer asks) it takes a consistent cut and writes it as one batch. While
//! the store is down it keeps collecting (the set is bounded by the number
//! of items, since it holds each position, reservation and key once) and
//! retries with exponential backoff.
//!
//! Group commit (sync mode): flush rounds are numbered. A writer, after its
//! change is applied in memory, reads the current round number and waits
//! until that round is written. Every writer that arrives while a round is
//! being written waits for the next one, so one write to the store
//! acknowledges all of them.
//!
//! Architecture invariant: a round's number is taken *before* its cut, and
//! a writer reads the number *after* its change, so the round a writer
//! waits for always contains its change.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use omnistock_ledger::{Changes, Ledger, TimestampMs};
use omnistock_store::{Batch, KeySource, Store, StoreError};

#[derive(Clone, Debug)]
pub struct WriteBehindConfig {
    /// Acknowledge writes only once they are in the store.
    pub sync: bool,
    /// Longest a change waits before it is written (async mode): the loss
    /// window on a crash, plus Redis's own persistence.
    pub flush_interval_ms: u64,
    /// Flush early once this many items wait.
    pub flush_max_items: usize,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Movements kept for the store's stream while it is down (oldest dropped).
    pub max_stream_backlog: usize,
    /// Longest a sync-mode writer waits for its round before a 503.
    pub sync_wait_timeout_ms: u64,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        WriteBehindConfig {
            sync: false,
            flush_interval_ms: 10,
            flush_max_items: 50_000,
            retry_min_ms: 50,
            retry_max_ms: 2_000,
            max_stream_backlog: 100_000,
            sync_wait_timeout_ms: 5_000,
        }
    }
}

/// Where the store stands, for `/readyz` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreStatus {
    /// Reading the store back into memory; not serving yet.
    Loading,
    /// Writes reach the store.
    Healthy,
    /// The last write failed: serving from memory, retrying.
    Degraded,
    /// The store cannot be used (corrupt data, bad configuration).
    Failed,
}

impl StoreStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreStatus::Loading => "loading",
            StoreStatus::Healthy => "healthy",
            StoreStatus::Degraded => "degraded",
            StoreStatus::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Health {
    pub status: StoreStatus,
    /// Items waiting to be written.
    pub backlog_items: usize,
    /// Age of the oldest change not yet written.
    pub flush_lag_ms: u64,
    pub consecutive_failures: u64,
    /// What failed while the store is not healthy; cleared once a write (or
    /// the load) succeeds, so a recovered store shows no stale error (the
    /// failures stay counted in `flush_errors`).
    pub last_error: Option<String>,
    /// When `last_error` happened.
    pub last_error_at: Option<TimestampMs>,
    pub flushes: u64,
    pub flush_errors: u64,
    pub full_rewrites: u64,
    pub stream_dropped: u64,
}

/// Why a sync-mode write could not be acknowledged (the change is applied in
/// memory and will be written when the store is back; retry with the same
/// idempotency key to get the outcome).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotDurable {
    /// The store's last error, which already says what failed (e.g. "store
    /// unavailable: ..."): not wrapped in another "unavailable".
    #[error("{0}")]
    StoreDown(String),
    /// With the store's error (recorded before the failed round is published).
    #[error("the flush holding this write failed: {0}")]
    FlushFailed(String),
    #[error("the store did not confirm the write within {0} ms")]
    Timeout(u64),
}

#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// Every round up to this one is written.
    flushed: u64,
    /// The latest round that failed.
    failed: u64,
}

/// The handle shared with the HTTP layer.
pub struct WriteBehind {
    config: WriteBehindConfig,
    /// The number of the round that will next be written.
    round: AtomicU64,
    progress: watch::Sender<Progress>,
    wake: Notify,
    /// Set by [`WriteBehind::flushed_all`]: a round is due even in async
    /// mode and with nothing changed; cleared by the round that is written.
    flush_requested: AtomicBool,
    health: Mutex<Health>,
}

impl WriteBehind {
    pub fn new(config: WriteBehindConfig) -> Arc<WriteBehind> {
        Arc::new(WriteBehind {
            config,
            round: AtomicU64::new(1),
            progress: watch::Sender::new(Progress::default()),
            wake: Notify::new(),
            flush_requested: AtomicBool::new(false),
            health: Mutex::new(Health {
                status: StoreStatus::Loading,
                backlog_items: 0,
                flush_lag_ms: 0,
                consecutive_failures: 0,
                last_error: None,
                last_error_at: None,
                flushes: 0,
                flush_errors: 0,
                full_rewrites: 0,
                stream_dropped: 0,
            }),
        })
    }

    pub fn config(&self) -> &WriteBehindConfig {
        &self.config
    }

    pub fn health(&self) -> Health {
        self.health.lock().clone()
    }

    /// Sets the store's state; `error` (what went wrong) is kept until the
    /// store is healthy again, which clears it.
    pub fn set_status(&self, status: StoreStatus, error: Option<String>) {
        let mut health = self.health.lock();
        if status == StoreStatus::Healthy {
            health.last_error = None;
            health.last_error_at = None;
        } else if error.is_some() {
            health.last_error = error;
            health.last_error_at = Some(crate::clock::now());
        }
        health.status = status;
    }

    /// Sync mode: returns once every change made before the call is in the
    /// store. Async mode: returns at once.
    pub async fn durable(&self) -> Result<(), NotDurable> {
        if !self.config.sync {
            return Ok(());
        }
        let target = self.round.load(Ordering::SeqCst);
        {
            let health = self.health.lock();
            if health.consecutive_failures > 0 {
                return Err(NotDurable::StoreDown(
                    health
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "store unavailable".into()),
                ));
            }
        }
        self.wait_flushed(
            target,
            Duration::from_millis(self.config.sync_wait_timeout_ms),
        )
        .await
    }

    /// Returns once every change made before the call is in the store, in
    /// either mode (a handover waits for it), or with the store's error;
    /// gives up after `timeout`.
    pub async fn flushed_all(&self, timeout: Duration) -> Result<(), NotDurable> {
        let target = self.round.load(Ordering::SeqCst);
        self.flush_requested.store(true, Ordering::SeqCst);
        self.wait_flushed(target, timeout).await
    }

    /// Wakes the flusher and waits until round `target` is written.
    async fn wait_flushed(&self, target: u64, timeout: Duration) -> Result<(), NotDurable> {
        let mut progress = self.progress.subscribe();
        self.wake.notify_one();
        let waited = tokio::time::timeout(
            timeout,
            progress.wait_for(|p| p.flushed >= target || p.failed >= target),
        )
        .await;
        let outcome = waited.map(|progress| progress.is_ok_and(|p| p.flushed >= target));
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotDurable::FlushFailed(
                self.health
                    .lock()
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "store unavailable".into()),
            )),
            Err(_) => Err(NotDurable::Timeout(
                u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }

    fn record_success(&self, changes: &Changes, full: bool, items: usize, elapsed: Duration) {
        let mut health = self.health.lock();
        health.status = StoreStatus::Healthy;
        health.consecutive_failures = 0;
        health.last_error = None;
        health.last_error_at = None;
        health.flushes += 1;
        health.full_rewrites += u64::from(full);
        health.backlog_items = changes.backlog();
        health.flush_lag_ms = 0;
        health.stream_dropped = changes.movements_dropped;
        metrics::counter!("omnistock_write_behind_flushes_total").increment(1);
        metrics::counter!("omnistock_write_behind_items_written_total").increment(items as u64);
        metrics::histogram!("omnistock_write_behind_flush_seconds").record(elapsed.as_secs_f64());
        if full {
            metrics::counter!("omnistock_write_behind_full_rewrites_total").increment(1);
        }
    }

    fn record_failure(&self, error: &StoreError, now: TimestampMs) -> u64 {
        let mut health = self.health.lock();
        health.status = StoreStatus::Degraded;
        health.consecutive_failures += 1;
        health.flush_errors += 1;
        health.last_error = Some(error.to_string());
        health.last_error_at = Some(now);
        metrics::counter!("omnistock_write_behind_flush_errors_total").increment(1);
        health.consecutive_failures
    }

    fn record_backlog(&self, changes: &Changes, now: TimestampMs) {
        let lag_ms = changes
            .oldest_unwritten
            .map_or(0, |(_, at)| u64::try_from(now.0 - at.0).unwrap_or(0));
        let mut health = self.health.lock();
        health.backlog_items = changes.backlog();
        health.flush_lag_ms = lag_ms;
        health.stream_dropped = changes.movements_dropped;
        metrics::gauge!("omnistock_write_behind_backlog_items").set(changes.backlog() as f64);
        metrics::gauge!("omnistock_write_behind_flush_lag_seconds").set(lag_ms as f64 / 1000.0);
        metrics::gauge!("omnistock_write_behind_stream_backlog")
            .set(changes.movements.len() as f64);
        metrics::gauge!("omnistock_write_behind_stream_dropped")
            .set(changes.movements_dropped as f64);
        metrics::gauge!("omnistock_store_degraded")
            .set(f64::from(u8::from(health.status == StoreStatus::Degraded)));
    }
}

/// The reservation shard count a store records (the ledger rounds its
/// configuration the same way).
pub fn reservation_shards(ledger: &Ledger) -> usize {
    ledger
        .config()
        .reservation_shards
        .clamp(1, 1 << 12)
        .next_power_of_two()
}

/// The first write of a run, before it serves: a fresh store gets the
/// whole state (so "ready" means stored, and the store has its lineage); a
/// loaded one learns that this run started (its sequences and ids lie
/// above everything stored) and was not stopped cleanly, so a crash of this
/// run can neither have its sequences reused nor its cursors honoured by
/// the next. Retries (50 ms doubling to 2 s) while the store fails; false
/// when `stopped` turns meanwhile.
pub async fn first_write<S: Store>(
    handle: &WriteBehind,
    store: &S,
    ledger: &Ledger,
    keys: &dyn KeySource,
    changes: &mut Changes,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let mut delay = Duration::from_millis(50);
    loop {
        let now = crate::clock::now();
        let cut = ledger.cut(changes, now);
        let keys_record = cut.everything.then(|| keys.export());
        let batch = Batch {
            cut: &cut,
            keys: keys_record.as_ref(),
            now,
            reservation_shards: reservation_shards(ledger),
            clean: false,
            catalog_changed: true,
        };
        let items = cut.positions.len() + cut.reservations.len() + cut.idempotency.len();
        let started = Instant::now();
        match store.write(&batch).await {
            Ok(()) => {
                changes.written(&cut);
                handle.record_success(changes, cut.everything, items, started.elapsed());
                return true;
            }
            Err(error @ StoreError::Fenced(_)) => {
                handle.record_failure(&error, now);
                handle.set_status(StoreStatus::Failed, Some(error.to_string()));
                tracing::warn!(%error, "the partition's store is fenced before its first write");
                return false;
            }
            Err(error) => {
                changes.unwritten(cut);
                handle.record_failure(&error, now);
                // Not serving yet: loading, not degraded.
                handle.set_status(StoreStatus::Loading, Some(error.to_string()));
                tracing::warn!(%error, retry_ms = delay.as_millis() as u64,
                    "cannot write the store yet; not ready until it is written");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped.changed() => return false,
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// What the flusher needs besides the store.
pub struct FlusherParts {
    pub ledger: Arc<Ledger>,
    pub keys: Arc<dyn KeySource>,
    pub changes: Changes,
    /// Wall clock (ms); injected so tests can control time.
    pub clock: fn() -> TimestampMs,
}

/// Runs the flusher until `stop` turns true, then makes a last attempt to
/// write what is left (a graceful shutdown loses nothing when the store is
/// up). Send `stop` only once nothing writes to the ledger any more (requests
/// drained, expiry stopped): the writes after it are marked clean, which lets
/// the next run honour this run's feed cursors. At least one is made, so the
/// mark is written even when nothing else is left.
pub async fn run<S: Store>(
    handle: Arc<WriteBehind>,
    store: Arc<S>,
    parts: FlusherParts,
    mut stop: watch::Receiver<bool>,
) {
    let mut flusher = Flusher::new(handle, store, parts);
    loop {
        let woken = flusher.wait(&mut stop).await;
        let now = (flusher.clock)();
        match flusher.next_step(now, woken) {
            Step::Wait => continue,
            Step::Stop => return,
            Step::Flush { keys_changed } => {
                if flusher.flush(now, keys_changed).await.is_break() {
                    return;
                }
            }
        }
    }
}

/// What the flusher does after waking.
enum Step {
    /// Nothing due (or backing off): wait again.
    Wait,
    /// Stopping, and nothing is left to write.
    Stop,
    Flush {
        keys_changed: bool,
    },
}

/// The flusher's state between rounds.
struct Flusher<S> {
    handle: Arc<WriteBehind>,
    store: Arc<S>,
    ledger: Arc<Ledger>,
    keys: Arc<dyn KeySource>,
    changes: Changes,
    clock: fn() -> TimestampMs,
    config: WriteBehindConfig,
    poll: Duration,
    reservation_shards: usize,
    /// Catalog and key generations the store has (`u64::MAX`: unknown).
    written_catalog: u64,
    written_keys: u64,
    retry_at: Option<Instant>,
    stopping: bool,
    clean_written: bool,
    final_attempts: u32,
}

impl<S: Store> Flusher<S> {
    fn new(handle: Arc<WriteBehind>, store: Arc<S>, parts: FlusherParts) -> Flusher<S> {
        let FlusherParts {
            ledger,
            keys,
            changes,
            clock,
        } = parts;
        let config = handle.config.clone();
        let poll = Duration::from_millis(config.flush_interval_ms.clamp(1, 5));
        let reservation_shards = reservation_shards(&ledger);
        let written_catalog = if changes.everything {
            u64::MAX
        } else {
            ledger.catalog().generation()
        };
        let written_keys = if changes.everything {
            u64::MAX
        } else {
            keys.generation()
        };
        Flusher {
            handle,
            store,
            ledger,
            keys,
            changes,
            clock,
            config,
            poll,
            reservation_shards,
            written_catalog,
            written_keys,
            retry_at: None,
            stopping: false,
            clean_written: false,
            final_attempts: 0,
        }
    }

    /// Waits for a wake-up, the poll interval or `stop` (not at all once
    /// stopping); true when woken by a writer.
    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        if self.stopping {
            return false;
        }
        tokio::select! {
            _ = self.handle.wake.notified() => true,
            _ = tokio::time::sleep(self.poll) => false,
            _ = stop.changed() => { self.stopping = true; false }
        }
    }

    /// Collects the changes up to `now` and says whether a write is due.
    fn next_step(&mut self, now: TimestampMs, woken: bool) -> Step {
        self.ledger.collect_changes(&mut self.changes, now);
        let catalog_changed = self.ledger.catalog().generation() != self.written_catalog;
        let keys_changed = self.keys.generation() != self.written_keys;
        self.handle.record_backlog(&self.changes, now);

        let (config, changes, stopping) = (&self.config, &self.changes, self.stopping);
        let oldest_due = changes.oldest_unwritten.is_some_and(|(_, at)| {
            now.0.saturating_sub(at.0) >= i64::try_from(config.flush_interval_ms).unwrap_or(0)
        });
        let pending = !changes.is_empty()
            || catalog_changed
            || keys_changed
            || (stopping && !self.clean_written);
        let due = changes.everything
            || catalog_changed
            || keys_changed
            || oldest_due
            || changes.backlog() >= config.flush_max_items
            || (woken && config.sync)
            || self.handle.flush_requested.load(Ordering::SeqCst)
            || (stopping && pending);
        let backing_off = self.retry_at.is_some_and(|at| Instant::now() < at) && !stopping;
        if !due || backing_off {
            return if stopping && !pending {
                Step::Stop
            } else {
                Step::Wait
            };
        }
        Step::Flush { keys_changed }
    }

    /// Writes one round; breaks when stopping and the last attempts failed.
    async fn flush(&mut self, now: TimestampMs, keys_changed: bool) -> ControlFlow<()> {
        // A requested round is this one (cleared here, not where the step is
        // decided: a request that arrives while backing off waits for it).
        self.handle.flush_requested.store(false, Ordering::SeqCst);
        // The round number is taken before the cut (see the module docs).
        let round = self.handle.round.fetch_add(1, Ordering::SeqCst);
        let keys_generation = self.keys.generation();
        let catalog_generation_before = self.ledger.catalog().generation();
        let cut = self.ledger.cut(&mut self.changes, now);
        let keys_record = (keys_changed || cut.everything).then(|| self.keys.export());
        let batch = Batch {
            cut: &cut,
            keys: keys_record.as_ref(),
            now,
            reservation_shards: self.reservation_shards,
            clean: self.stopping,
            catalog_changed: cut.catalog.generation != self.written_catalog,
        };
        let items = cut.positions.len() + cut.reservations.len() + cut.idempotency.len();
        let started = Instant::now();
        let result = self.store.write(&batch).await;
        match result {
            Ok(()) => {
                self.clean_written = self.stopping;
                let full = cut.everything;
                self.changes.written(&cut);
                self.written_catalog = cut.catalog.generation.max(catalog_generation_before);
                if let Some(record) = &keys_record {
                    self.written_keys = record.generation.max(keys_generation);
                }
                self.retry_at = None;
                self.handle
                    .record_success(&self.changes, full, items, started.elapsed());
                self.handle
                    .progress
                    .send_modify(|p| p.flushed = p.flushed.max(round));
                if full {
                    tracing::info!(items, head = cut.head.0, "store rewritten in full");
                }
                ControlFlow::Continue(())
            }
            Err(StoreError::Replaced(reason)) => {
                tracing::warn!(%reason, "store restarted or replaced: rewriting the full state");
                self.changes.unwritten(cut);
                self.changes.everything = true;
                // No backoff: the full rewrite follows at once.
                ControlFlow::Continue(())
            }
            Err(error @ StoreError::Fenced(_)) => {
                // Another node owns the partition now: nothing this flusher
                // writes can land, so it stops (and the engine with it).
                self.changes.unwritten(cut);
                self.handle.record_failure(&error, now);
                self.handle
                    .progress
                    .send_modify(|p| p.failed = p.failed.max(round));
                self.handle
                    .set_status(StoreStatus::Failed, Some(error.to_string()));
                tracing::warn!(%error, backlog = self.changes.backlog(),
                    "the partition's store is fenced: this node no longer owns it");
                ControlFlow::Break(())
            }
            Err(error) => {
                self.changes.unwritten(cut);
                self.failed(&error, now, round).await
            }
        }
    }

    /// After a failed write: backs off (doubling), and when stopping gives
    /// up after the third attempt.
    async fn failed(
        &mut self,
        error: &StoreError,
        now: TimestampMs,
        round: u64,
    ) -> ControlFlow<()> {
        let failures = self.handle.record_failure(error, now);
        self.handle
            .progress
            .send_modify(|p| p.failed = p.failed.max(round));
        let backoff_ms = self
            .config
            .retry_min_ms
            .saturating_mul(1 << failures.min(16).saturating_sub(1))
            .min(self.config.retry_max_ms);
        self.retry_at = Some(Instant::now() + Duration::from_millis(backoff_ms));
        if failures == 1 || failures.is_multiple_of(20) {
            tracing::warn!(%error, failures, backoff_ms, backlog = self.changes.backlog(),
                "write-behind flush failed; serving from memory and retrying");
        }
        if self.stopping {
            self.final_attempts += 1;
            if self.final_attempts >= 3 {
                tracing::error!(
                    backlog = self.changes.backlog(),
                    "stopping with changes not written to the store"
                );
                return ControlFlow::Break(());
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        }
        ControlFlow::Continue(())
    }
}
