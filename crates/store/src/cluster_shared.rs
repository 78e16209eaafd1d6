//! What every node of a cluster shares: the catalog (locations, groups,
//! channel policies) and the API keys, each one record with a version in
//! the hash `PREFIX:{cluster}:shared` (fields `catalog`, `catalog:v`,
//! `keys`, `keys:v`; values in the format of `codec.rs`).
//!
//! A node changes one by compare-and-set on the version it last read: two
//! nodes changing the catalog at once cannot overwrite each other, the
//! second learns of the first and tries again on top of it. A change
//! counts once a replica has it (as leases do): the versions never go back
//! after a failover, so no node misses a change by having seen its version.
//! Nodes follow the versions by polling them (one `HMGET`).

use omnistock_ledger::CatalogRecord;

use crate::KeysRecord;
use crate::cluster::{ClusterStore, ClusterStoreError};
use crate::codec;

/// The versions of the shared records (0: never written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedVersions {
    pub catalog: u64,
    pub keys: u64,
}

/// What a compare-and-set found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Written as this version, and a replica has it.
    Version(u64),
    /// Another node wrote this version first: nothing was written.
    Conflict(u64),
    /// Written as this version on the master, but no replica confirmed it
    /// in time: a failover may lose it.
    NotReplicated(u64),
}

/// KEYS[1]: the shared hash; ARGV[1]: the record's name, ARGV[2]: the
/// version the writer read, ARGV[3]: the new value. Returns {1, new
/// version} or {0, the current version}. Running it twice after a lost
/// answer finds the version moved and reports a conflict: the writer then
/// reads the record and sees its own change there.
const COMPARE_AND_SET: &str = r"
local version = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':v') or '0')
if version ~= tonumber(ARGV[2]) then
  return {0, version}
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':v', version + 1, ARGV[1], ARGV[3])
return {1, version + 1}
";

fn version(value: Option<String>) -> Result<u64, ClusterStoreError> {
    match value {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| ClusterStoreError::Corrupt(text)),
    }
}

impl ClusterStore {
    fn shared_key(&self) -> String {
        self.cluster_key("shared")
    }

    /// The versions of the catalog and the keys, in one round trip.
    pub async fn shared_versions(&self) -> Result<SharedVersions, ClusterStoreError> {
        let (catalog, keys): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.shared_key())
            .arg("catalog:v")
            .arg("keys:v")
            .query_async(&mut self.connection())
            .await?;
        Ok(SharedVersions {
            catalog: version(catalog)?,
            keys: version(keys)?,
        })
    }

    async fn shared(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, ClusterStoreError> {
        let (stored, value): (Option<String>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.shared_key())
            .arg(format!("{name}:v"))
            .arg(name)
            .query_async(&mut self.connection())
            .await?;
        Ok(match value {
            None => None,
            Some(value) => Some((version(stored)?, value)),
        })
    }

    /// The shared catalog and its version; `None` before the first write.
    pub async fn shared_catalog(&self) -> Result<Option<(u64, CatalogRecord)>, ClusterStoreError> {
        self.shared_record("catalog", codec::decode_catalog).await
    }

    /// The shared API keys and their version; `None` before the first write.
    pub async fn shared_keys(&self) -> Result<Option<(u64, KeysRecord)>, ClusterStoreError> {
        self.shared_record("keys", codec::decode_keys).await
    }

    async fn shared_record<T>(
        &self,
        name: &str,
        decode: fn(&[u8]) -> Result<T, codec::CodecError>,
    ) -> Result<Option<(u64, T)>, ClusterStoreError> {
        let Some((version, value)) = self.shared(name).await? else {
            return Ok(None);
        };
        let record = decode(&value)
            .map_err(|e| ClusterStoreError::Corrupt(format!("shared {name}: {e}")))?;
        Ok(Some((version, record)))
    }

    /// Writes the catalog if its version is still `read`.
    pub async fn publish_catalog(
        &self,
        read: u64,
        record: &CatalogRecord,
    ) -> Result<Published, ClusterStoreError> {
        self.publish("catalog", read, codec::encode_catalog(record))
            .await
    }

    /// Writes the keys if their version is still `read`.
    pub async fn publish_keys(
        &self,
        read: u64,
        record: &KeysRecord,
    ) -> Result<Published, ClusterStoreError> {
        self.publish("keys", read, codec::encode_keys(record)).await
    }

    async fn publish(
        &self,
        name: &str,
        read: u64,
        value: Vec<u8>,
    ) -> Result<Published, ClusterStoreError> {
        let mut script = redis::cmd("EVAL");
        script
            .arg(COMPARE_AND_SET)
            .arg(1)
            .arg(self.shared_key())
            .arg(name)
            .arg(read)
            .arg(value);
        let (answer, confirmed) = self.eval_replicated(script).await?;
        let (written, version): (i64, u64) = redis::from_redis_value(answer)
            .map_err(|e| ClusterStoreError::Unexpected(e.to_string()))?;
        Ok(match (written == 1, confirmed) {
            (false, _) => Published::Conflict(version),
            (true, true) => Published::Version(version),
            (true, false) => Published::NotReplicated(version),
        })
    }
}
