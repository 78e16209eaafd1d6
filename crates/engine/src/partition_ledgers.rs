//! A node's partitions as ledgers: one [`Ledger`] per partition it owns,
//! built from the partition's store when the ownership driver loads it,
//! written back before a handover, dropped when forgotten. It is the
//! [`PartitionHost`] the ownership driver calls.
//!
//! What a partition's store holds today is its positions
//! ([`PartitionStore`]), so that is what a load restores and a flush
//! writes; every ledger shares the catalog it is given.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use omnistock_cluster::{Epoch, PartitionId, Partitions};
use omnistock_ledger::{CatalogRecord, Ledger, LedgerConfig, Restore, Seq};
use omnistock_store::cluster::ClusterStore;
use omnistock_store::partition_store::{PartitionStore, PartitionWriteError};
use parking_lot::Mutex;

use crate::Clock;
use crate::ownership_driver::{FlushError, PartitionHost};

/// One owned partition.
struct Owned {
    epoch: Epoch,
    ledger: Arc<Ledger>,
}

/// The ledgers of the partitions this node owns.
pub struct PartitionLedgers {
    store: ClusterStore,
    partitions: Partitions,
    config: LedgerConfig,
    catalog: CatalogRecord,
    clock: Clock,
    owned: Mutex<HashMap<PartitionId, Owned>>,
    /// Batches written by this process, so that its versions grow.
    batches: AtomicU64,
}

impl PartitionLedgers {
    pub fn new(
        store: ClusterStore,
        partitions: Partitions,
        config: LedgerConfig,
        catalog: CatalogRecord,
        clock: Clock,
    ) -> PartitionLedgers {
        PartitionLedgers {
            store,
            partitions,
            config,
            catalog,
            clock,
            owned: Mutex::default(),
            batches: AtomicU64::new(0),
        }
    }

    /// The ledger of `partition` and the epoch it was loaded under, if this
    /// node has it (whether it may serve it is the ownership driver's call).
    pub fn ledger(&self, partition: PartitionId) -> Option<(Epoch, Arc<Ledger>)> {
        let owned = self.owned.lock();
        owned.get(&partition).map(|o| (o.epoch, o.ledger.clone()))
    }

    fn partition_store(&self, partition: PartitionId) -> PartitionStore {
        PartitionStore::new(self.store.clone(), self.partitions, partition)
    }

    /// A batch version above every one written under an earlier epoch (by
    /// any node) and every earlier one of this process under this epoch.
    fn next_version(&self, epoch: Epoch) -> u64 {
        let local = self.batches.fetch_add(1, Ordering::Relaxed) & 0xFFFF_FFFF;
        (epoch.0 << 32) | local
    }
}

impl PartitionHost for PartitionLedgers {
    async fn load(&self, partition: PartitionId, epoch: Epoch) -> Result<(), String> {
        let positions = self
            .partition_store(partition)
            .load_positions()
            .await
            .map_err(|e| e.to_string())?;
        let ledger = Ledger::new(self.config.clone());
        let restore = Restore {
            head: Seq(0),
            cursor_lineage: None,
            cursor_floor: Seq(0),
            clean: false,
            reservation_shards: 0,
            reservation_next_local: Vec::new(),
            catalog: Some(self.catalog.clone()),
            positions,
            reservations: Vec::new(),
            idempotency: Vec::new(),
        };
        ledger
            .restore(restore, (self.clock)())
            .map_err(|e| e.to_string())?;
        let mut owned = self.owned.lock();
        // A slow load of an earlier epoch never replaces a later one's.
        if owned.get(&partition).is_none_or(|o| o.epoch < epoch) {
            let ledger = Arc::new(ledger);
            owned.insert(partition, Owned { epoch, ledger });
        }
        Ok(())
    }

    async fn flush(&self, partition: PartitionId, epoch: Epoch) -> Result<(), FlushError> {
        let Some((loaded, ledger)) = self.ledger(partition) else {
            return Err(FlushError::Failed(format!("{partition} is not loaded")));
        };
        if loaded != epoch {
            return Err(FlushError::Fenced);
        }
        let cut = ledger.export_all((self.clock)());
        let version = self.next_version(epoch);
        let written = self
            .partition_store(partition)
            .write_positions(epoch, version, &cut.positions)
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(PartitionWriteError::Fenced) => Err(FlushError::Fenced),
            Err(other) => Err(FlushError::Failed(other.to_string())),
        }
    }

    fn forget(&self, partition: PartitionId) {
        self.owned.lock().remove(&partition);
    }
}
