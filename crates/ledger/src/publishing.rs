//! What incremental feeds need from the core to never miss a row: which
//! run of positions a cursor belongs to (its lineage and the oldest cursor
//! still honoured), the catalog versions a cursor may have been taken
//! under, and the catalog's own changes to what the ads channel publishes.
//!
//! A feed cursor is a journal sequence `c` of one lineage: every change
//! with a sequence up to `c` is in what the client holds. Quantity changes
//! mark a position's published version as they happen (`Ledger::record`).
//! A catalog change takes one journal sequence of its own (a marker), under
//! every position shard's lock at once, so nothing is written while it
//! happens: positions whose ads quantity changes with a new ads policy are
//! marked at that sequence, and the catalog version is kept, so a later
//! poll can list the locations a change added to its filter or whose store
//! columns changed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Ledger;
use super::catalog::Catalog;
use super::ids::{Channel, LocId, Seq};
use super::refusal::Refusal;

/// The lineage of a ledger's positions and the oldest cursor it honours.
pub(crate) struct CursorScope {
    /// Random identity of the positions' history: one in-memory run, or one
    /// store (kept across restarts by the store). Cursors of another
    /// lineage are not honoured.
    lineage: AtomicU64,
    /// The oldest cursor honoured: after an unclean restart, what clients
    /// saw may include changes the store never got, so older cursors are
    /// answered in full.
    floor: AtomicU64,
}

impl CursorScope {
    pub fn new() -> CursorScope {
        CursorScope {
            lineage: AtomicU64::new(0),
            floor: AtomicU64::new(0),
        }
    }
}

/// The catalog versions kept for feeds, oldest first (bounded by
/// `LedgerConfig::catalog_history_len`; the oldest is dropped).
pub(crate) struct CatalogHistory {
    versions: Mutex<VecDeque<Arc<Catalog>>>,
    capacity: usize,
}

impl CatalogHistory {
    pub fn new(first: Arc<Catalog>, capacity: usize) -> CatalogHistory {
        CatalogHistory {
            versions: Mutex::new(VecDeque::from([first])),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, catalog: Arc<Catalog>) {
        let mut versions = self.versions.lock();
        if versions.len() >= self.capacity {
            versions.pop_front();
        }
        versions.push_back(catalog);
    }

    fn reset(&self, catalog: Arc<Catalog>) {
        *self.versions.lock() = VecDeque::from([catalog]);
    }

    /// The version in force at `seq`: the newest changed at or before it.
    fn at(&self, seq: Seq) -> Option<Arc<Catalog>> {
        self.versions
            .lock()
            .iter()
            .rev()
            .find(|catalog| catalog.changed_at() <= seq)
            .cloned()
    }
}

/// Per position shard, the sequence of the latest catalog change that
/// changed a published row in it (see `Position::published_version`).
pub(crate) struct PublishMarks(Box<[AtomicU64]>);

impl PublishMarks {
    pub fn new(shards: usize) -> PublishMarks {
        PublishMarks((0..shards).map(|_| AtomicU64::new(0)).collect())
    }

    /// Read under the shard's lock; written only while every shard is
    /// locked, so relaxed ordering is enough.
    pub fn get(&self, shard: usize) -> Seq {
        Seq(self.0.get(shard).map_or(0, |m| m.load(Ordering::Relaxed)))
    }

    fn set(&self, shard: usize, seq: Seq) {
        if let Some(mark) = self.0.get(shard) {
            mark.store(seq.0, Ordering::Relaxed);
        }
    }
}

impl Ledger {
    /// The lineage cursors of this ledger carry.
    pub fn cursor_lineage(&self) -> u64 {
        self.cursor_scope.lineage.load(Ordering::Acquire)
    }

    /// Sets the lineage of a fresh ledger (a shell draws it at random; a
    /// restore takes the store's).
    pub fn set_cursor_lineage(&self, lineage: u64) {
        self.cursor_scope.lineage.store(lineage, Ordering::Release);
    }

    /// The oldest cursor honoured (see [`CursorScope`]).
    pub fn cursor_floor(&self) -> Seq {
        Seq(self.cursor_scope.floor.load(Ordering::Acquire))
    }

    pub(crate) fn set_cursor_floor(&self, floor: Seq) {
        self.cursor_scope.floor.store(floor.0, Ordering::Release);
    }

    /// The catalog version in force at journal sequence `seq`, or `None`
    /// when it is older than the versions kept.
    pub fn catalog_at(&self, seq: Seq) -> Option<Arc<Catalog>> {
        self.catalog_history.at(seq)
    }

    /// Starts the catalog history over at the current catalog (a restore:
    /// versions of an earlier run are not known).
    pub(crate) fn reset_catalog_history(&self) {
        self.catalog_history.reset(self.catalog.load_full());
    }

    /// Applies one catalog change: serialised with other catalog writers,
    /// and published with every position shard locked, so no write runs
    /// meanwhile. It takes one journal sequence (a marker) that the new
    /// version carries as `changed_at`; positions whose ads quantity the
    /// change moves are marked at it.
    pub(crate) fn update_catalog<T>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let _writer = self.catalog_writer.lock();
        let current = self.catalog.load_full();
        let mut next = Catalog::clone(&current);
        let result = change(&mut next)?;
        next.set_generation(next.generation() + 1);
        let repriced = ads_policy_changes(&current, &next);

        let mut shards = self.positions.lock_all();
        // Every sequence is taken under a position shard's lock, so the
        // head stands still while all are held: the marker gets it.
        let seq = self.journal.head();
        next.set_changed_at(seq);
        let next = Arc::new(next);
        // Published before the marker moves the head: a feed that reads a
        // head past the marker loads this catalog or a newer one.
        self.catalog.store(Arc::clone(&next));
        self.catalog_history.push(Arc::clone(&next));
        if let Some(repriced) = repriced {
            for (index, map) in shards.iter_mut().enumerate() {
                let mut marked = false;
                for (key, position) in map.iter_mut() {
                    let loc = key.loc();
                    if !repriced.get(loc.0 as usize).copied().unwrap_or(false) {
                        continue;
                    }
                    let atf = position.atf();
                    let (before, after) = (
                        current.policy(Channel::Ads, loc),
                        next.policy(Channel::Ads, loc),
                    );
                    if before.apply(atf) != after.apply(atf) {
                        position.mark_published_by_catalog();
                        marked = true;
                    }
                }
                if marked {
                    self.publish_marks.set(index, seq);
                }
            }
        }
        let marker = self.journal.append_marker();
        debug_assert_eq!(marker, seq, "no sequence is taken during a catalog change");
        drop(shards);
        Ok(result)
    }

    /// The published version of a position of `shard` (see
    /// `Position::published_version`).
    pub(crate) fn publish_mark(&self, shard: usize) -> Seq {
        self.publish_marks.get(shard)
    }
}

/// Per location id, whether the ads channel's effective policy differs
/// between two catalog versions; `None` when it differs nowhere (most
/// changes: a store, a group, another channel's policy).
fn ads_policy_changes(before: &Catalog, after: &Catalog) -> Option<Vec<bool>> {
    let changed: Vec<bool> = (0..before.location_count().min(after.location_count()))
        .map(|index| {
            let loc = LocId(index as u32);
            before.policy(Channel::Ads, loc) != after.policy(Channel::Ads, loc)
        })
        .collect();
    changed.contains(&true).then_some(changed)
}
