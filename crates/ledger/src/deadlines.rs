//! The deadline index of one reservation shard: its held reservations in
//! deadline order, so expiry takes them from the front instead of scanning.
//!
//! Why not a `BTreeSet<(deadline, id)>`: every hold paid a tree insert and
//! every resolve a tree remove, on a tree of tens of thousands of entries
//! per shard under load (about 1 µs per reservation in the steady-state
//! profile before commit f9ba60c). Here the common case is a push and a pop:
//!
//! - **Lanes.** Entries are grouped by TTL (`deadline - now` when indexed).
//!   Time only moves forward, so within one TTL deadlines arrive in order
//!   and a lane is a FIFO ([`ChunkedRing`]). Most holds share a handful of
//!   TTLs (the default, a channel's policy), so `MAX_LANES` lanes cover
//!   them; any other deadline (a ninth TTL, a clock step back, a restored
//!   hold) goes to the ordered `others` set.
//! - **Tombstones.** A resolve removes nothing: the entry stays until its
//!   deadline and is recognised as stale then (its reservation is no longer
//!   held, or no longer due at that deadline). The owner says which entries
//!   are live through the `is_live` callbacks; the index only counts.
//! - **Bounded.** The owner tells the index how many reservations are held
//!   (`held`). Whenever the entries exceed `2 * held + COMPACT_SLACK`, the
//!   index drops every stale entry (`compact`), so it never holds more than
//!   that, and each compaction removes at least half of what it scans:
//!   amortised O(1) per hold.
//!
//! Architecture invariant: every held reservation has exactly one live entry
//! `(expires_at, id)`; an entry is live iff its reservation is held with
//! that deadline.

use std::collections::BTreeSet;

use smallvec::SmallVec;

use super::chunked_ring::ChunkedRing;
use super::ids::{ReservationId, TimestampMs};

/// Distinct TTLs indexed as FIFO lanes; more go to the ordered set.
const MAX_LANES: usize = 8;

/// Stale entries tolerated beyond the held count before compacting, so a
/// shard with few holds does not compact on every resolve.
pub(crate) const COMPACT_SLACK: usize = 1_024;

pub(crate) type Entry = (TimestampMs, ReservationId);

struct Lane {
    ttl_ms: i64,
    entries: ChunkedRing<Entry>,
}

#[derive(Default)]
pub(crate) struct DeadlineIndex {
    lanes: SmallVec<[Lane; MAX_LANES]>,
    others: BTreeSet<Entry>,
}

impl DeadlineIndex {
    /// Entries, live and stale.
    pub fn len(&self) -> usize {
        let in_lanes: usize = self.lanes.iter().map(|lane| lane.entries.len()).sum();
        in_lanes + self.others.len()
    }

    /// Indexes a hold that, at `now`, is due at `deadline`.
    pub fn push(&mut self, deadline: TimestampMs, id: ReservationId, now: TimestampMs) {
        let ttl_ms = deadline.0.saturating_sub(now.0);
        let lane = match self.lanes.iter().position(|l| l.ttl_ms == ttl_ms) {
            Some(found) => Some(found),
            None => match self.lanes.iter().position(|l| l.entries.is_empty()) {
                Some(empty) => {
                    self.lanes[empty].ttl_ms = ttl_ms;
                    Some(empty)
                }
                None if self.lanes.len() < MAX_LANES => {
                    self.lanes.push(Lane {
                        ttl_ms,
                        entries: ChunkedRing::default(),
                    });
                    Some(self.lanes.len() - 1)
                }
                None => None,
            },
        };
        match lane.map(|i| &mut self.lanes[i].entries) {
            // In order within its lane (the usual case): a FIFO push.
            Some(entries) if entries.back().is_none_or(|back| back.0 <= deadline) => {
                entries.push_back((deadline, id));
            }
            _ => self.push_unordered(deadline, id),
        }
    }

    /// Indexes a hold whose TTL is unknown (restored from a store): its
    /// deadline may be out of order with anything indexed so far.
    pub fn push_unordered(&mut self, deadline: TimestampMs, id: ReservationId) {
        self.others.insert((deadline, id));
    }

    /// The earliest entry (live or stale).
    pub fn first(&self) -> Option<Entry> {
        self.earliest().map(|(entry, _)| entry)
    }

    /// The earliest entry and the lane holding it (`None`: the ordered set).
    fn earliest(&self) -> Option<(Entry, Option<usize>)> {
        let in_lanes = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(index, lane)| Some((*lane.entries.front()?, Some(index))));
        let in_others = self.others.first().map(|entry| (*entry, None));
        in_lanes.chain(in_others).min_by_key(|(entry, _)| *entry)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: TimestampMs) -> Option<Entry> {
        let (first, lane) = self
            .earliest()
            .filter(|((deadline, _), _)| *deadline <= now)?;
        match lane {
            Some(index) => self.lanes[index].entries.pop_front(),
            None => self.others.pop_first(),
        };
        Some(first)
    }

    /// Whether the index has outgrown `held` live entries enough to compact.
    pub fn needs_compaction(&self, held: usize) -> bool {
        self.len() > held.saturating_mul(2).saturating_add(COMPACT_SLACK)
    }

    /// Drops every entry `is_live` rejects.
    pub fn compact(&mut self, mut is_live: impl FnMut(Entry) -> bool) {
        for lane in &mut self.lanes {
            lane.entries.retain(|entry| is_live(*entry));
        }
        self.others.retain(|entry| is_live(*entry));
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.lanes
            .iter()
            .flat_map(|lane| lane.entries.iter().copied())
            .chain(self.others.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> TimestampMs {
        TimestampMs(ms)
    }

    fn drain(index: &mut DeadlineIndex, now: i64) -> Vec<i64> {
        std::iter::from_fn(|| index.pop_due(at(now)))
            .map(|(deadline, _)| deadline.0)
            .collect()
    }

    #[test]
    fn mixed_ttls_come_out_in_deadline_order() {
        let mut index = DeadlineIndex::default();
        // Twelve TTLs (more than MAX_LANES), a step back in time, and a
        // restored hold: every path into the index.
        let mut expected = Vec::new();
        for now in (0..200).step_by(7) {
            for ttl in [5, 90, 30, 1_000, 12, 61, 7, 44, 300, 2, 19, 77] {
                let now = if now == 98 { 50 } else { now };
                index.push(
                    at(now + ttl),
                    ReservationId(expected.len() as u64 + 1),
                    at(now),
                );
                expected.push(now + ttl);
            }
        }
        index.push_unordered(at(3), ReservationId(10_000));
        expected.push(3);
        expected.sort_unstable();
        assert_eq!(index.len(), expected.len());
        assert!(index.lanes.len() == MAX_LANES && !index.others.is_empty());
        assert_eq!(index.first().map(|(d, _)| d.0), expected.first().copied());
        assert_eq!(
            drain(&mut index, 100),
            expected
                .iter()
                .copied()
                .filter(|d| *d <= 100)
                .collect::<Vec<_>>()
        );
        assert!(
            index.first().is_some_and(|(d, _)| d.0 > 100),
            "nothing due is taken"
        );
        assert_eq!(
            drain(&mut index, i64::MAX),
            expected
                .iter()
                .copied()
                .filter(|d| *d > 100)
                .collect::<Vec<_>>()
        );
        assert_eq!((index.len(), index.first()), (0, None));
    }

    #[test]
    fn the_count_matches_the_entries() {
        let mut index = DeadlineIndex::default();
        // Nine TTLs fill the lanes; the same out-of-order entry twice is
        // stored (and counted) once.
        for ttl in 0..9 {
            index.push(at(100 + ttl), ReservationId(1), at(0));
        }
        index.push(at(50), ReservationId(2), at(0));
        index.push(at(50), ReservationId(2), at(0));
        index.push_unordered(at(50), ReservationId(2));
        assert_eq!(index.len(), 10);
        assert_eq!(index.len(), index.iter().count());
        assert_eq!(drain(&mut index, i64::MAX).len(), 10);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn emptied_lanes_take_new_ttls() {
        let mut index = DeadlineIndex::default();
        for ttl in 0..MAX_LANES as i64 {
            index.push(at(ttl), ReservationId(1), at(0));
        }
        assert_eq!(drain(&mut index, MAX_LANES as i64).len(), MAX_LANES);
        index.push(at(1_000), ReservationId(2), at(0));
        assert!(index.others.is_empty(), "an empty lane was reused");
        assert_eq!(index.lanes.len(), MAX_LANES);
    }

    #[test]
    fn compaction_keeps_only_live_entries_in_order() {
        let mut index = DeadlineIndex::default();
        for id in 1..=3_000_u64 {
            index.push(at(id as i64 + 100), ReservationId(id), at(id as i64 % 5));
        }
        let held = 600;
        assert!(index.needs_compaction(held));
        index.compact(|(_, id)| id.0 % 5 == 0);
        assert_eq!(index.len(), held);
        assert!(!index.needs_compaction(held));
        let due: Vec<_> = std::iter::from_fn(|| index.pop_due(at(i64::MAX)))
            .map(|(_, id)| id.0)
            .collect();
        assert_eq!(
            due,
            (1..=3_000).filter(|id| id % 5 == 0).collect::<Vec<_>>()
        );
    }
}
