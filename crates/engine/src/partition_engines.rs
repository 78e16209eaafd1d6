//! A node's partitions as engines: one [`Engine`] per partition it owns,
//! each with its own ledger and its own write-behind store, the
//! partition's keys in the Redis Cluster written behind the partition's
//! fence. It is the [`PartitionHost`] the ownership driver calls: a load
//! starts the partition's engine on its store (the single node's restore,
//! for one partition) and returns once it serves; a flush before a
//! handover closes the partition to new requests, lets those in flight
//! finish and waits until the store has every change; forgetting stops
//! the engine.
//!
//! Transports reach a partition's engine through [`PartitionEngines::enter`],
//! which hands out a [`Serving`] pass: while any pass is held, a handover
//! waits; once a handover has started, no pass is given.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use omnistock_cluster::{Epoch, PartitionId, Partitions};
use omnistock_ledger::{Ledger, LedgerConfig};
use omnistock_store::cluster::ClusterStore;
use omnistock_store::redis::{RedisConfig, RedisStore};
use parking_lot::Mutex;
use tokio::sync::{OwnedRwLockReadGuard, RwLock, watch};

use crate::cluster_shared::{SHARED_POLL_INTERVAL, SharedRecord, SharedState};
use crate::ownership_driver::{FlushError, HANDOVER_FLUSH_TIMEOUT, PartitionHost};
use crate::write_behind::StoreStatus;
use crate::{Engine, EngineConfig, EngineTasks, Stops};

/// How often a load looks whether its engine serves yet.
const READY_POLL: Duration = Duration::from_millis(5);

/// What every partition's engine is made with.
#[derive(Clone, Debug)]
pub struct PartitionEngineConfig {
    pub partitions: Partitions,
    /// Each engine's configuration; it must have a store (the partition's).
    pub engine: EngineConfig,
    /// Each partition's ledger (sized for a share of the stock; its
    /// reservation id tag is set to the partition).
    pub ledger: LedgerConfig,
    /// The partition stores' settings (key prefix, timeouts, retention).
    pub redis: RedisConfig,
}

/// One partition's running engine.
struct Hosted {
    epoch: Epoch,
    engine: Arc<Engine>,
    /// Read-held by every request in flight; a handover takes it for
    /// writing, so it waits for them.
    gate: Arc<RwLock<()>>,
    /// False once a handover started or the partition was forgotten: no
    /// new request enters.
    open: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    flush_stop: watch::Sender<bool>,
    tasks: Option<EngineTasks>,
}

impl Hosted {
    /// Stops the engine in the background: requests in flight finish, the
    /// flusher writes what is left (fenced, if the partition moved on).
    fn stop(mut self) {
        self.open.store(false, Ordering::SeqCst);
        let tasks = self.tasks.take();
        let (gate, stop, flush_stop) = (self.gate, self.stop, self.flush_stop);
        tokio::spawn(async move {
            let _drained = gate.write().await;
            let _ = stop.send(true);
            let _ = flush_stop.send(true);
            if let Some(tasks) = tasks {
                let _ = tasks.finish().await;
            }
        });
    }
}

/// A request's pass into a partition's engine: while it is held, the
/// partition is not handed over.
pub struct Serving {
    pub engine: Arc<Engine>,
    pub epoch: Epoch,
    _pass: OwnedRwLockReadGuard<()>,
}

/// The engines of the partitions this node owns.
pub struct PartitionEngines {
    cluster: ClusterStore,
    config: PartitionEngineConfig,
    /// The catalog every engine adopts and the keys they share.
    shared: Arc<SharedState>,
    hosted: Mutex<HashMap<PartitionId, Hosted>>,
}

impl PartitionEngines {
    pub fn new(
        cluster: ClusterStore,
        config: PartitionEngineConfig,
        shared: Arc<SharedState>,
    ) -> PartitionEngines {
        PartitionEngines {
            cluster,
            config,
            shared,
            hosted: Mutex::default(),
        }
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// Makes every loaded engine's catalog the node's shared one (after
    /// this node or another changed it).
    pub fn adopt_shared_catalog(&self) {
        if self.shared.versions().catalog == 0 {
            return;
        }
        let catalog = self.shared.catalog();
        for (partition, engine) in self.engines() {
            if let Err(error) = engine.ledger().adopt_catalog(&catalog) {
                tracing::error!(%partition, %error, "cannot adopt the shared catalog");
            }
        }
    }

    /// Follows the cluster's shared catalog and keys until `stop`: every
    /// [`SHARED_POLL_INTERVAL`], adopts what other nodes changed.
    pub async fn follow_shared(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SHARED_POLL_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            match self.shared.refresh().await {
                Ok(changed) if changed.contains(&SharedRecord::Catalog) => {
                    self.adopt_shared_catalog();
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot read the cluster's shared catalog and keys");
                }
            }
        }
    }

    pub fn partitions(&self) -> Partitions {
        self.config.partitions
    }

    /// A pass into `partition`'s engine, if this node has it loaded and
    /// open (whether its lease still allows serving is the ownership
    /// driver's call, asked before).
    pub async fn enter(&self, partition: PartitionId) -> Option<Serving> {
        let (engine, epoch, gate, open) = {
            let hosted = self.hosted.lock();
            let h = hosted.get(&partition)?;
            (h.engine.clone(), h.epoch, h.gate.clone(), h.open.clone())
        };
        let pass = gate.read_owned().await;
        // A handover may have started while this request waited.
        open.load(Ordering::SeqCst).then_some(Serving {
            engine,
            epoch,
            _pass: pass,
        })
    }

    /// The engines loaded now (for node-wide views such as metrics).
    pub fn engines(&self) -> Vec<(PartitionId, Arc<Engine>)> {
        let hosted = self.hosted.lock();
        hosted.iter().map(|(p, h)| (*p, h.engine.clone())).collect()
    }

    fn start_engine(&self, partition: PartitionId, epoch: Epoch) -> Result<Hosted, String> {
        let config = &self.config;
        let ledger = LedgerConfig {
            reservation_id_tag: partition.index(),
            ..config.ledger.clone()
        };
        let engine_config = EngineConfig {
            partition: Some((config.partitions, partition)),
            ..config.engine.clone()
        };
        let wait_replica =
            engine_config.store.as_ref().is_some_and(|s| s.sync) && self.cluster.has_replicas();
        let store = RedisStore::for_partition(
            config.redis.clone(),
            &self.cluster,
            partition,
            epoch,
            wait_replica,
        );
        let engine = Engine::with_key_store(
            engine_config,
            Arc::new(Ledger::new(ledger)),
            Arc::new(crate::clock::now),
            self.shared.keys(),
        );
        let (stop, requests) = watch::channel(false);
        let (flush_stop, flusher) = watch::channel(false);
        let tasks = engine.start_with_store(Arc::new(store), Stops { requests, flusher })?;
        Ok(Hosted {
            epoch,
            engine,
            gate: Arc::default(),
            open: Arc::new(AtomicBool::new(true)),
            stop,
            flush_stop,
            tasks: Some(tasks),
        })
    }
}

/// Waits until `hosted`'s engine serves; the store's fatal error otherwise.
async fn until_ready(hosted: &Hosted) -> Result<(), String> {
    let Some(tasks) = hosted.tasks.as_ref() else {
        return Err("the engine has no tasks".into());
    };
    let mut fatal = tasks.fatal.clone();
    while !hosted.engine.is_ready() {
        if let Some(error) = fatal.borrow_and_update().clone() {
            return Err(error);
        }
        if let Some(status) = hosted.engine.write_behind().map(|w| w.health())
            && status.status == StoreStatus::Failed
        {
            return Err(status.last_error.unwrap_or_else(|| "store failed".into()));
        }
        tokio::time::sleep(READY_POLL).await;
    }
    Ok(())
}

impl PartitionHost for PartitionEngines {
    async fn load(&self, partition: PartitionId, epoch: Epoch) -> Result<(), String> {
        let hosted = self.start_engine(partition, epoch)?;
        if let Err(error) = until_ready(&hosted).await {
            hosted.stop();
            return Err(error);
        }
        let engine = Arc::clone(&hosted.engine);
        {
            let mut all = self.hosted.lock();
            // A slow load of an earlier epoch never replaces a later one's.
            match all.get(&partition) {
                Some(current) if current.epoch >= epoch => {
                    hosted.stop();
                    return Ok(());
                }
                _ => {
                    if let Some(previous) = all.insert(partition, hosted) {
                        previous.stop();
                    }
                }
            }
        }
        // The partition's stored catalog may be older than the cluster's.
        // Adopted once the engine is listed, so a change published meanwhile
        // reaches it one way or the other; requests come only after this.
        if self.shared.versions().catalog > 0 {
            engine
                .ledger()
                .adopt_catalog(&self.shared.catalog())
                .map_err(|e| format!("cannot adopt the shared catalog: {e}"))?;
        }
        Ok(())
    }

    async fn flush(&self, partition: PartitionId, epoch: Epoch) -> Result<(), FlushError> {
        let (engine, gate, open) = {
            let hosted = self.hosted.lock();
            let Some(h) = hosted.get(&partition) else {
                return Err(FlushError::Failed(format!("{partition} is not loaded")));
            };
            if h.epoch != epoch {
                return Err(FlushError::Fenced);
            }
            (h.engine.clone(), h.gate.clone(), h.open.clone())
        };
        open.store(false, Ordering::SeqCst);
        let _drained = gate.write().await;
        let Some(write_behind) = engine.write_behind() else {
            return Err(FlushError::Failed("the engine has no store".into()));
        };
        match write_behind.flushed_all(HANDOVER_FLUSH_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // After the first write, only the fence fails a store for good.
                if write_behind.health().status == StoreStatus::Failed {
                    return Err(FlushError::Fenced);
                }
                // Serve on; the handover is retried.
                open.store(true, Ordering::SeqCst);
                Err(FlushError::Failed(error.to_string()))
            }
        }
    }

    fn forget(&self, partition: PartitionId) {
        if let Some(hosted) = self.hosted.lock().remove(&partition) {
            hosted.stop();
        }
    }
}
