//! What a cluster node shares with every other node: the catalog and the
//! API keys. The node keeps them in one engine of its own (its ledger holds
//! the catalog and no stock; its key store is the one every partition
//! engine of the node authenticates with), follows the cluster's shared
//! records ([`omnistock_store::cluster_shared`]) by polling their versions,
//! and publishes its own changes by compare-and-set.
//!
//! How fresh a node's copy is: a change is adopted by the node that made it
//! before it is acknowledged (in its shared engine and in every partition
//! it serves), and by every other node within one poll
//! ([`SHARED_POLL_INTERVAL`]) plus a round trip, unless Redis is
//! unreachable meanwhile. So a reservation sent to another node within that
//! time may still run against the previous catalog (a location just added
//! is unknown there for that long), and a revoked key may still be accepted
//! there for that long.

use std::sync::Arc;
use std::time::Duration;

use omnistock_ledger::{CatalogRecord, Ledger, LedgerConfig};
use omnistock_store::KeySource;
use omnistock_store::cluster::{ClusterStore, ClusterStoreError};
use omnistock_store::cluster_shared::{Published, SharedVersions};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{Engine, EngineConfig, EngineTasks, KeyStore, Stops, demo};

/// How often a node looks whether another node changed the catalog or the
/// keys (one `HMGET` each time).
pub const SHARED_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What a node shares; see the module docs.
pub struct SharedState {
    store: ClusterStore,
    engine: Arc<Engine>,
    /// The versions this node has adopted.
    known: Mutex<SharedVersions>,
    /// One change at a time from this node: a change is applied to the
    /// shared engine and published before the next starts.
    writer: tokio::sync::Mutex<()>,
    _tasks: EngineTasks,
    _stop: (watch::Sender<bool>, watch::Sender<bool>),
}

/// Which shared record a change touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedRecord {
    Catalog,
    Keys,
}

impl SharedState {
    /// The node's shared engine, with the cluster's current catalog and
    /// keys. With `demo` and no shared catalog yet, the demo data set's
    /// catalog becomes the cluster's.
    pub async fn start(store: ClusterStore, config: &EngineConfig) -> Result<Arc<Self>, String> {
        let engine_config = EngineConfig {
            store: None,
            demo: false,
            partition: None,
            ..config.clone()
        };
        // The catalog only: no stock, so the smallest ledger.
        let ledger = LedgerConfig {
            position_shards: 1,
            reservation_shards: 1,
            journal_capacity: 1_024,
            ..LedgerConfig::default()
        };
        let engine = Engine::new(engine_config, Arc::new(Ledger::new(ledger)));
        let (stop, requests) = watch::channel(false);
        let (flush_stop, flusher) = watch::channel(false);
        let tasks = engine.start_in_memory(Stops { requests, flusher })?;
        let shared = Arc::new(SharedState {
            store,
            engine,
            known: Mutex::default(),
            writer: tokio::sync::Mutex::new(()),
            _tasks: tasks,
            _stop: (stop, flush_stop),
        });
        shared.refresh().await.map_err(|e| e.to_string())?;
        if config.demo && shared.known.lock().catalog == 0 {
            shared.seed_demo_catalog().await?;
        }
        Ok(shared)
    }

    async fn seed_demo_catalog(&self) -> Result<(), String> {
        let _writing = self.writer.lock().await;
        demo::load_where(self.engine.ledger(), self.engine.now(), &|_| false)?;
        match self.publish(SharedRecord::Catalog).await {
            Ok(Published::Version(_)) | Ok(Published::Conflict(_)) => {}
            Ok(Published::NotReplicated(version)) => {
                tracing::warn!(version, "the demo catalog is not confirmed by a replica");
            }
            Err(error) => return Err(error.to_string()),
        }
        // Another node may have seeded it first: theirs is the cluster's.
        self.refresh().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The node's shared engine: catalog reads and changes, key changes.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The key store every partition engine of the node shares.
    pub fn keys(&self) -> Arc<KeyStore> {
        Arc::clone(self.engine.key_store())
    }

    /// The catalog as this node has it.
    pub fn catalog(&self) -> CatalogRecord {
        CatalogRecord::of(&self.engine.ledger().catalog())
    }

    /// The versions this node has adopted.
    pub fn versions(&self) -> SharedVersions {
        *self.known.lock()
    }

    /// Taken by a change for its whole course (apply, publish, retry).
    pub async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// Adopts what other nodes published since this node last looked;
    /// which records changed.
    pub async fn refresh(&self) -> Result<Vec<SharedRecord>, ClusterStoreError> {
        let stored = self.store.shared_versions().await?;
        let known = self.versions();
        let mut changed = Vec::new();
        if stored.catalog > known.catalog
            && let Some((version, record)) = self.store.shared_catalog().await?
        {
            self.engine
                .ledger()
                .adopt_catalog(&record)
                .map_err(|e| ClusterStoreError::Corrupt(format!("shared catalog: {e}")))?;
            self.known.lock().catalog = version;
            changed.push(SharedRecord::Catalog);
        }
        if stored.keys > known.keys
            && let Some((version, record)) = self.store.shared_keys().await?
        {
            self.engine
                .keys()
                .adopt(record)
                .map_err(|e| ClusterStoreError::Corrupt(format!("shared keys: {e}")))?;
            self.known.lock().keys = version;
            changed.push(SharedRecord::Keys);
        }
        Ok(changed)
    }

    /// Publishes this node's copy of `record` over the version it last
    /// adopted. On [`Published::Conflict`] nothing was written: refresh,
    /// apply the change again, publish again.
    pub async fn publish(&self, record: SharedRecord) -> Result<Published, ClusterStoreError> {
        let known = self.versions();
        let published = match record {
            SharedRecord::Catalog => {
                self.store
                    .publish_catalog(known.catalog, &self.catalog())
                    .await?
            }
            SharedRecord::Keys => {
                let keys = self.engine.keys().export();
                self.store.publish_keys(known.keys, &keys).await?
            }
        };
        if let Published::Version(version) | Published::NotReplicated(version) = published {
            let mut known = self.known.lock();
            match record {
                SharedRecord::Catalog => known.catalog = version,
                SharedRecord::Keys => known.keys = version,
            }
        }
        Ok(published)
    }
}
