//! Starting and stopping an engine: loading the store, the first write that
//! claims it, readiness, the expiry sweeper and the flusher, and the order
//! they stop in (requests and expiry first, then the flusher, whose last
//! write must hold every change).

use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistock_feeds::cursor::Cursor;
use omnistock_ledger::{Changes, Ledger, LedgerConfig, Seq};
use omnistock_store::{Loaded, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::write_behind::{self, FlusherParts, StoreStatus, WriteBehind};
use crate::{Engine, EngineConfig, NoRandomness, demo};

/// The two stops of an engine: `requests` (the transports stop taking
/// requests; expiry and loading end) first, then `flusher`, sent once
/// requests have drained, after which the flusher writes its last batch.
pub struct Stops {
    pub requests: watch::Receiver<bool>,
    pub flusher: watch::Receiver<bool>,
}

/// The engine's background work; [`EngineTasks::finish`] waits for it to
/// end after the stops were sent.
pub struct EngineTasks {
    /// The expiry sweeper of an engine without a store (with one, the
    /// store task owns it).
    expiry: Option<JoinHandle<()>>,
    /// Loads the store, then runs the flusher until stopped.
    store: Option<JoinHandle<()>>,
    /// Set when the engine cannot go on (e.g. the store holds invalid data).
    pub fatal: watch::Receiver<Option<String>>,
}

impl EngineTasks {
    pub async fn finish(self) -> Result<(), tokio::task::JoinError> {
        if let Some(expiry) = self.expiry {
            expiry.await?;
        }
        if let Some(store) = self.store {
            store.await?;
        }
        Ok(())
    }
}

/// A random lineage for a fresh ledger's feed cursors.
fn random_lineage() -> Result<u64, NoRandomness> {
    let mut bytes = [0_u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

/// What a store holds, in a fresh engine that never writes back: what
/// `omnistock feed --redis-url` renders from.
pub struct StoreSnapshot {
    pub engine: Arc<Engine>,
    /// The cursor of the store's last write: every change up to it is in
    /// the snapshot (`None`: written by an omnistock without cursors).
    pub cursor: Option<Cursor>,
}

impl Engine {
    /// Loads what `store` holds into a fresh engine (`ledger` sizes it)
    /// that is ready for reads and never writes to the store. `None`: the
    /// store is empty.
    pub async fn snapshot<S: Store>(
        store: &S,
        ledger: LedgerConfig,
    ) -> Result<Option<StoreSnapshot>, String> {
        let engine = Engine::new(EngineConfig::default(), Arc::new(Ledger::new(ledger)));
        let Some(loaded) = store.load(engine.now()).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        // The store's cursor, not the fresh ledger's (which restarts its
        // sequences far above the store's).
        let cursor = loaded.restore.cursor_lineage.map(|lineage| Cursor {
            lineage,
            seq: Seq(loaded.restore.head.0.saturating_sub(1)),
        });
        engine.fill_ledger(Some(loaded))?;
        engine.set_ready();
        Ok(Some(StoreSnapshot { engine, cursor }))
    }

    /// Starts an engine without a store: the demo data when asked for, the
    /// expiry sweeper; ready at once. Fails when the demo data set does not
    /// load (an engine that was asked for it does not serve without it).
    pub fn start_in_memory(self: &Arc<Self>, stops: Stops) -> Result<EngineTasks, String> {
        self.ledger
            .set_cursor_lineage(random_lineage().map_err(|e| e.to_string())?);
        if self.config.demo {
            let positions = self.load_demo()?;
            tracing::info!(
                positions,
                skus = demo::DEMO_SKUS,
                locations = self.ledger.catalog().location_count(),
                "demo data loaded"
            );
        }
        let expiry = tokio::spawn(Arc::clone(self).run_expiry(stops.requests));
        self.set_ready();
        let (_, fatal) = watch::channel(None);
        Ok(EngineTasks {
            expiry: Some(expiry),
            store: None,
            fatal,
        })
    }

    /// Starts an engine on a store: loads it (retrying while it is
    /// unreachable), claims it with a first write, then serves (ready) and
    /// runs the flusher until stopped.
    pub fn start_with_store<S: Store>(
        self: &Arc<Self>,
        store: Arc<S>,
        stops: Stops,
    ) -> Result<EngineTasks, String> {
        // This run's feed cursors are its own until the store's lineage
        // replaces this one (restore).
        self.ledger
            .set_cursor_lineage(random_lineage().map_err(|e| e.to_string())?);
        let (fatal_sender, fatal) = watch::channel(None);
        let task = tokio::spawn(Arc::clone(self).run_store(store, stops, fatal_sender));
        Ok(EngineTasks {
            expiry: None,
            store: Some(task),
            fatal,
        })
    }

    async fn run_store<S: Store>(
        self: Arc<Self>,
        store: Arc<S>,
        stops: Stops,
        fatal: watch::Sender<Option<String>>,
    ) {
        let Stops {
            requests: mut stopped,
            flusher: mut flush_stopped,
        } = stops;
        let Some(write_behind) = self.write_behind.clone() else {
            return;
        };
        let fail = |error: String| {
            tracing::error!(%error, "cannot use the store");
            write_behind.set_status(StoreStatus::Failed, Some(error.clone()));
            let _ = fatal.send(Some(error));
        };
        let loaded = match self.load_store(&*store, &write_behind, &mut stopped).await {
            None => return,
            Some(Err(error)) => return fail(error),
            Some(Ok(loaded)) => loaded,
        };
        let fresh = loaded.is_none();
        if let Err(error) = self.fill_ledger(loaded) {
            return fail(error);
        }
        let mut changes = Changes::new(&self.ledger, write_behind.config().max_stream_backlog);
        // A fresh store gets everything in its first write.
        changes.everything = fresh;
        // Holds whose deadline passed while the engine was down expire now
        // (after `Changes::new`, so the expiries are written too).
        let expired = self.expire_due();
        if expired > 0 {
            tracing::info!(expired, "reservations expired while the engine was down");
        }
        let first = write_behind::first_write(
            &write_behind,
            &*store,
            &self.ledger,
            &*self,
            &mut changes,
            &mut stopped,
        );
        if !first.await {
            return;
        }
        let sweeper = tokio::spawn(Arc::clone(&self).run_expiry(stopped.clone()));
        write_behind.set_status(StoreStatus::Healthy, None);
        self.set_ready();
        // The flusher stops after the requests have drained and the expiry
        // sweeper has ended, so its last write holds every change.
        let (final_stop, final_stopped) = watch::channel(false);
        tokio::spawn(async move {
            let _ = flush_stopped.wait_for(|stop| *stop).await;
            let _ = sweeper.await;
            let _ = final_stop.send(true);
        });
        let parts = FlusherParts {
            ledger: Arc::clone(&self.ledger),
            keys: Arc::clone(&self) as Arc<dyn omnistock_store::KeySource>,
            changes,
            clock: crate::clock::now,
        };
        write_behind::run(write_behind, store, parts, final_stopped).await;
    }

    /// Reads the store, retrying (50 ms doubling to 2 s) while it is
    /// unreachable. `None`: stopped meanwhile; `Some(Err)`: it cannot be used.
    async fn load_store<S: Store>(
        &self,
        store: &S,
        write_behind: &WriteBehind,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<Result<Option<Loaded>, String>> {
        let mut delay = Duration::from_millis(50);
        loop {
            match store.load(self.now()).await {
                Ok(loaded) => return Some(Ok(loaded)),
                Err(error @ StoreError::Unavailable(_)) => {
                    tracing::warn!(%error, retry_ms = delay.as_millis() as u64,
                        "store unreachable at start; not ready until it is loaded");
                    write_behind.set_status(StoreStatus::Loading, Some(error.to_string()));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped.changed() => return None,
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(error) => return Some(Err(error.to_string())),
            }
        }
    }

    /// The demo data set, at the engine's time; how many positions it made.
    fn load_demo(&self) -> Result<usize, String> {
        match self.config.partition {
            None => demo::load(&self.ledger, self.now()),
            Some((partitions, partition)) => demo::load_where(&self.ledger, self.now(), &|sku| {
                partitions.of(sku.as_str()) == partition
            }),
        }
    }

    /// Restores what the store held into the fresh ledger and key store; an
    /// empty store gets the demo data set when asked for.
    fn fill_ledger(&self, loaded: Option<Loaded>) -> Result<(), String> {
        let started = Instant::now();
        let Some(loaded) = loaded else {
            if self.config.demo {
                let positions = self.load_demo()?;
                tracing::info!(positions, "store is empty: demo data loaded");
            } else {
                tracing::info!("store is empty: starting with an empty ledger");
            }
            return Ok(());
        };
        if self.config.demo {
            tracing::info!("the store holds data: --demo ignored");
        }
        let report = self
            .ledger
            .restore(loaded.restore, self.now())
            .map_err(|e| e.to_string())?;
        // A partition's engine authenticates with its node's keys, which
        // follow the cluster's shared record, not the partition's store.
        let keys = match self.config.partition {
            None => self.keys.restore(loaded.keys)?,
            Some(_) => 0,
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            positions = report.positions,
            reservations_held = report.reservations_held,
            reservations_resolved = report.reservations_resolved,
            idempotency_keys = report.idempotency_keys,
            api_keys = keys,
            reserved_recomputed = report.reserved_recomputed,
            seconds,
            positions_per_second = (report.positions as f64 / seconds.max(1e-9)) as u64,
            "state loaded from the store"
        );
        Ok(())
    }
}
