//! Lock-sharded position storage.
//!
//! Why not `DashMap` here: a multi-line reservation must lock every shard it
//! touches at once, always in ascending shard order so two carts can never
//! deadlock. DashMap's safe API locks one key at a time. Each shard is a
//! cache-padded `parking_lot` mutex around an Fx hash map: uncontended
//! lock + lookup costs a few tens of nanoseconds.

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::ids::PosKey;
use super::position::Position;

pub(crate) type PositionMap = FxHashMap<PosKey, Position>;

pub(crate) struct PositionShards {
    shards: Box<[CachePadded<Mutex<PositionMap>>]>,
    shift: u32,
}

impl PositionShards {
    pub fn new(count: usize) -> PositionShards {
        let count = count.clamp(1, 1 << 16).next_power_of_two();
        PositionShards {
            shards: (0..count)
                .map(|_| CachePadded::new(Mutex::new(PositionMap::default())))
                .collect(),
            shift: 64 - count.trailing_zeros(),
        }
    }

    pub fn count(&self) -> usize {
        self.shards.len()
    }

    /// The shard of a key: top bits of a multiplicative hash, so the shard
    /// choice is independent of the low bits the inner map buckets by.
    pub fn shard_of(&self, key: PosKey) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        (key.raw().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    pub fn lock_one(&self, key: PosKey) -> MutexGuard<'_, PositionMap> {
        self.shards[self.shard_of(key)].lock()
    }

    pub fn lock_index(&self, index: usize) -> MutexGuard<'_, PositionMap> {
        self.shards[index].lock()
    }

    /// Every shard, in ascending order: nothing else writes a position (nor
    /// takes a journal sequence) until the guards drop.
    pub fn lock_all(&self) -> Vec<MutexGuard<'_, PositionMap>> {
        self.shards.iter().map(|shard| shard.lock()).collect()
    }

    /// Locks every shard holding one of `keys`, in ascending shard order.
    pub fn lock_many(&self, keys: impl IntoIterator<Item = PosKey>) -> LockedShards<'_> {
        let mut indexes: SmallVec<[usize; 8]> =
            keys.into_iter().map(|k| self.shard_of(k)).collect();
        if indexes.len() > 1 {
            indexes.sort_unstable();
            indexes.dedup();
        }
        LockedShards {
            owner: self,
            guards: indexes
                .into_iter()
                .map(|i| (i, self.shards[i].lock()))
                .collect(),
        }
    }
}

/// Guards over a set of shards; positions in them can be read and changed.
pub(crate) struct LockedShards<'a> {
    owner: &'a PositionShards,
    guards: SmallVec<[(usize, MutexGuard<'a, PositionMap>); 4]>,
}

impl LockedShards<'_> {
    fn map_mut(&mut self, key: PosKey) -> &mut PositionMap {
        let shard = self.owner.shard_of(key);
        let slot = self
            .guards
            .iter()
            .position(|(index, _)| *index == shard)
            .expect("callers lock the shard of every key they touch");
        &mut self.guards[slot].1
    }

    pub fn get(&mut self, key: PosKey) -> Option<&Position> {
        self.map_mut(key).get(&key)
    }

    pub fn get_mut(&mut self, key: PosKey) -> Option<&mut Position> {
        self.map_mut(key).get_mut(&key)
    }
}
