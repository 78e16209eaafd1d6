//! Partitions: the unit of ownership. A cluster divides its stock into a
//! fixed number of partitions, chosen when its store is created; a SKU's
//! partition is a stable hash of its code, so every location of a SKU (and
//! so every per-SKU check: a group, nearby stores, a one-SKU cart) lives in
//! one partition.

use std::fmt;

/// Most partitions a cluster may have. Each partition costs a lease, a
/// renewal every few seconds and a share of every node's memory; past a few
/// thousand that overhead buys nothing on any cluster size we serve.
pub const MAX_PARTITIONS: u16 = 4_096;

/// How many partitions a cluster has (1 to [`MAX_PARTITIONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partitions(u16);

/// A partition count outside 1..=[`MAX_PARTITIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("partitions must be between 1 and {MAX_PARTITIONS}, got {0}")]
pub struct PartitionsOutOfRange(pub u64);

impl Partitions {
    /// What a new cluster gets: enough that adding a node moves a small
    /// share (1/64 per partition) and few enough that leases stay cheap.
    pub const DEFAULT: Partitions = Partitions(64);

    pub fn new(count: u64) -> Result<Self, PartitionsOutOfRange> {
        match u16::try_from(count) {
            Ok(n) if (1..=MAX_PARTITIONS).contains(&n) => Ok(Partitions(n)),
            _ => Err(PartitionsOutOfRange(count)),
        }
    }

    pub fn count(self) -> u16 {
        self.0
    }

    /// The partition of a SKU code. Stable across builds, platforms and
    /// versions: XXH3-64 of the code's UTF-8 bytes (a published algorithm,
    /// pinned by golden vectors in the tests), mapped onto the partitions by
    /// multiply-shift, which uses the hash's high bits.
    pub fn of(self, sku: &str) -> PartitionId {
        let hash = xxhash_rust::xxh3::xxh3_64(sku.as_bytes());
        let index = (u128::from(hash) * u128::from(self.0)) >> 64;
        PartitionId(index as u16)
    }

    /// Every partition, in order.
    pub fn all(self) -> impl Iterator<Item = PartitionId> {
        (0..self.0).map(PartitionId)
    }

    /// The partition with this index, if the cluster has it.
    pub fn get(self, index: u16) -> Option<PartitionId> {
        (index < self.0).then_some(PartitionId(index))
    }
}

/// One partition of a cluster, `0..Partitions::count()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(u16);

impl PartitionId {
    pub fn index(self) -> u16 {
        self.0
    }

    /// The Redis Cluster hash tag every key of this partition carries, so
    /// that one partition's keys share a slot and its flush is one
    /// single-slot script: `{p17}`.
    pub fn hash_tag(self) -> String {
        format!("{{p{}}}", self.0)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_bounded() {
        assert_eq!(Partitions::new(0), Err(PartitionsOutOfRange(0)));
        assert_eq!(Partitions::new(4_097), Err(PartitionsOutOfRange(4_097)));
        assert_eq!(Partitions::new(70_000), Err(PartitionsOutOfRange(70_000)));
        assert_eq!(Partitions::new(1).map(Partitions::count), Ok(1));
        assert_eq!(Partitions::new(4_096).map(Partitions::count), Ok(4_096));
    }

    /// Golden vectors: a SKU's partition decides which keys hold it in
    /// Redis, so a change here would strand every stored position. If this
    /// test fails, the hash or the mapping changed: that needs a migration,
    /// not a new vector.
    #[test]
    fn a_skus_partition_never_changes() {
        let p64 = Partitions::DEFAULT;
        let p256 = Partitions::new(256).expect("count");
        let seen: Vec<(u16, u16)> = ["SKU-00042", "HOT", "SNEAKER-42", "ÉTÉ-2026", "x"]
            .iter()
            .map(|sku| (p64.of(sku).index(), p256.of(sku).index()))
            .collect();
        assert_eq!(seen, GOLDEN);
    }

    /// Cross-checked against the reference C implementation (Python's
    /// `xxhash.xxh3_64_intdigest`, then `(hash * count) >> 64`).
    const GOLDEN: [(u16, u16); 5] = [(14, 59), (61, 247), (38, 154), (4, 17), (58, 234)];

    #[test]
    fn skus_spread_evenly() {
        let partitions = Partitions::DEFAULT;
        let mut counts = vec![0u32; 64];
        for i in 0..64_000 {
            counts[usize::from(partitions.of(&format!("SKU-{i:06}")).index())] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        // 1,000 expected per partition; a fair hash stays within +-15 %.
        assert!(min >= Some(&850) && max <= Some(&1_150), "{counts:?}");
    }

    #[test]
    fn one_partition_takes_everything() {
        let one = Partitions::new(1).expect("count");
        assert_eq!(one.of("anything").index(), 0);
        assert_eq!(one.all().count(), 1);
    }

    #[test]
    fn hash_tags_name_the_partition() {
        let p = Partitions::DEFAULT.get(17).expect("p17");
        assert_eq!(p.hash_tag(), "{p17}");
        assert_eq!(p.to_string(), "p17");
        assert_eq!(Partitions::DEFAULT.get(64), None);
    }
}
