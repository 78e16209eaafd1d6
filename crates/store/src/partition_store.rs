//! One partition's data in a Redis Cluster, written under the partition's
//! epoch: every write runs behind [`FENCE_CHECK`](crate::cluster::FENCE_CHECK)
//! in the same script, so Redis itself refuses a write from a node whose
//! lease has passed to another.
//!
//! Today it holds the partition's positions: one hash,
//! `omnistock:{pN}:pos`, a field per SKU with all of that SKU's positions
//! (the values of `codec.rs`), written with the store's versioned write (a
//! batch older than the newest applied is skipped whole). The partition's
//! reservations, idempotency records and movement stream take the same
//! shape next to it.

use std::sync::LazyLock;

use omnistock_cluster::{Epoch, PartitionId, Partitions};
use omnistock_ledger::PositionRecord;
use redis::Script;

use crate::cluster::{ClusterStore, fenced, is_fenced};
use crate::codec;
use crate::redis::VERSIONED_WRITE;

/// Why a partition write did not apply.
#[derive(Debug, thiserror::Error)]
pub enum PartitionWriteError {
    /// The partition's epoch is no longer the writer's: another node owns
    /// it. Nothing was written; stop serving the partition.
    #[error("fenced: the partition's epoch is no longer this node's")]
    Fenced,
    /// A record of another partition: nothing was written.
    #[error("SKU {sku} belongs to partition {belongs}, not {partition}")]
    WrongPartition {
        sku: String,
        belongs: PartitionId,
        partition: PartitionId,
    },
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    #[error("stored data: {0}")]
    Corrupt(String),
}

impl From<redis::RedisError> for PartitionWriteError {
    fn from(error: redis::RedisError) -> Self {
        if is_fenced(&error) {
            PartitionWriteError::Fenced
        } else {
            PartitionWriteError::Redis(error)
        }
    }
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Applied: this many SKU fields written.
    Applied(usize),
    /// A newer batch was applied before: nothing changed.
    Older,
}

/// The store's versioned write behind the fence; its SHA-1 is computed
/// once for every partition store.
static FENCED_VERSIONED_WRITE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&fenced(VERSIONED_WRITE)));

/// One partition's keys, written under an epoch.
pub struct PartitionStore {
    cluster: ClusterStore,
    partitions: Partitions,
    partition: PartitionId,
}

impl PartitionStore {
    pub fn new(cluster: ClusterStore, partitions: Partitions, partition: PartitionId) -> Self {
        PartitionStore {
            cluster,
            partitions,
            partition,
        }
    }

    fn positions_key(&self) -> String {
        self.cluster.partition_key(self.partition, "pos")
    }

    /// Writes `positions` (sorted by SKU, as a ledger cut gives them) as
    /// batch `version`, under `epoch`.
    pub async fn write_positions(
        &self,
        epoch: Epoch,
        version: u64,
        positions: &[PositionRecord],
    ) -> Result<Written, PartitionWriteError> {
        let mut call = FENCED_VERSIONED_WRITE.prepare_invoke();
        call.key(self.positions_key())
            .key(self.cluster.partition_key(self.partition, "pos:exp"))
            .key(self.cluster.epoch_key(self.partition))
            .arg(epoch.0)
            .arg(version)
            .arg("0")
            .arg("0");
        let by_sku: Vec<&[PositionRecord]> = positions.chunk_by(|a, b| a.sku == b.sku).collect();
        call.arg(by_sku.len());
        for sku_positions in by_sku {
            let sku = &sku_positions[0].sku;
            let belongs = self.partitions.of(sku.as_str());
            if belongs != self.partition {
                return Err(PartitionWriteError::WrongPartition {
                    sku: sku.to_string(),
                    belongs,
                    partition: self.partition,
                });
            }
            call.arg(codec::sku_field(sku).as_ref())
                .arg(codec::encode_sku_positions(sku_positions));
        }
        let written: i64 = call.invoke_async(&mut self.cluster.connection()).await?;
        Ok(usize::try_from(written).map_or(Written::Older, Written::Applied))
    }

    /// Every position of the partition, as stored.
    pub async fn load_positions(&self) -> Result<Vec<PositionRecord>, PartitionWriteError> {
        let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.positions_key())
            .query_async(&mut self.cluster.connection())
            .await?;
        let mut positions = Vec::new();
        for (field, value) in fields.iter().filter(|(field, _)| field != "~v") {
            let decoded = codec::decode_sku_positions(field, value)
                .map_err(|e| PartitionWriteError::Corrupt(format!("{field}: {e}")))?;
            positions.extend(decoded);
        }
        Ok(positions)
    }
}
