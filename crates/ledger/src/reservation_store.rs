//! Reservations: holds with a deadline (TigerBeetle's pending transfers).
//! A reservation resolves exactly once: held -> committed | released | expired.
//!
//! Storage: each shard allocates its own ids, densely, under its lock and
//! only when a reservation is granted, so a shard's reservations form a
//! contiguous run of local ids kept in a ring (`slab`, grown in fixed
//! chunks: see `chunked_ring.rs`): lookup is an index, creation a push,
//! forgetting a pop from the front. No hashing, and memory is sequential.
//! Only resolved reservations count against the capacity: held ones are
//! bounded by the stock they hold, and a ring full of live holds (a busy
//! hour with long TTLs) stays a ring. A held reservation that reaches the
//! front while resolved ones behind it must be forgotten is moved to a small
//! side map, so it never blocks them.

use std::collections::VecDeque;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::chunked_ring::ChunkedRing;
use super::deadlines::{DeadlineIndex, Entry};
use super::holder::Holder;
use super::ids::{Channel, PosKey, Qty, ReservationId, TimestampMs};
use super::reservation_state::ReservationState;

/// A held line: units on one position (lines on the same position are merged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldLine {
    pub position: PosKey,
    pub qty: Qty,
    /// Units that left on hand when the reservation was committed.
    pub committed: Qty,
}

#[derive(Clone, Debug)]
pub(crate) struct Reservation {
    pub channel: Channel,
    pub state: ReservationState,
    pub lines: SmallVec<[HeldLine; 2]>,
    pub created_at: TimestampMs,
    pub expires_at: TimestampMs,
    pub resolved_at: Option<TimestampMs>,
    /// The holders this reservation's units are counted against (hold caps);
    /// `None` when no cap applied. Taken when it resolves.
    pub holders: Option<Box<[Holder]>>,
}

impl Reservation {
    /// Units held across every line.
    pub fn units(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.qty.0)).sum()
    }
}

/// Holders and units a resolved reservation gives back to its hold caps.
pub(crate) type ReleasedHold = (Box<[Holder]>, u64);

pub(crate) struct ReservationShard {
    index: u64,
    shard_bits: u32,
    /// Ored into every id of this ledger ([`LedgerConfig::reservation_id_tag`],
    /// already shifted into place).
    tag: u64,
    /// Reservation with local id `base + i` is `slab[i]`.
    slab: ChunkedRing<Reservation>,
    base: u64,
    /// Held reservations moved out of the front of a full slab. They stay
    /// here once resolved, until forgotten through `evicted_resolved`.
    evicted_held: FxHashMap<u64, Reservation>,
    /// Evicted reservations that have since resolved, oldest first.
    evicted_resolved: VecDeque<(TimestampMs, u64)>,
    /// Resolved reservations in `slab` (the capacity counts these and
    /// `evicted_resolved`, not held ones).
    resolved_in_slab: usize,
    /// Held reservations ordered by deadline: expiry pops from the front
    /// instead of scanning. Resolving leaves a stale entry behind
    /// (`deadlines.rs`).
    deadlines: DeadlineIndex,
}

impl ReservationShard {
    fn local(&self, id: ReservationId) -> Option<u64> {
        let untagged = id.0 & !TAG_MASK;
        (id.0 & TAG_MASK == self.tag && untagged & ((1 << self.shard_bits) - 1) == self.index)
            .then_some(untagged >> self.shard_bits)
    }

    fn id_of(&self, local: u64) -> ReservationId {
        ReservationId(self.tag | (local << self.shard_bits) | self.index)
    }

    /// The id the next reservation of this shard will get.
    pub fn next_id(&self) -> ReservationId {
        self.id_of(self.base + self.slab.len() as u64)
    }

    /// Stores a new reservation under `next_id()`.
    pub fn insert(&mut self, reservation: Reservation) -> ReservationId {
        let id = self.next_id();
        let held = reservation.state == ReservationState::Held;
        let (deadline, now) = (reservation.expires_at, reservation.created_at);
        if !held {
            self.resolved_in_slab += 1;
        }
        self.slab.push_back(reservation);
        if held {
            self.deadlines.push(deadline, id, now);
            self.compact_deadlines_if_needed();
        }
        id
    }

    /// Moves a held reservation's deadline to `expires_at` (at `now`). The
    /// old entry goes stale: its deadline no longer matches.
    pub fn set_deadline(&mut self, id: ReservationId, expires_at: TimestampMs, now: TimestampMs) {
        let Some(reservation) = self.get_mut(id) else {
            return;
        };
        debug_assert_eq!(reservation.state, ReservationState::Held);
        let previous = std::mem::replace(&mut reservation.expires_at, expires_at);
        if previous != expires_at {
            self.deadlines.push(expires_at, id, now);
            self.compact_deadlines_if_needed();
        }
    }

    /// Whether a deadline entry still stands for a held reservation.
    fn is_live(&self, (deadline, id): Entry) -> bool {
        self.get(id)
            .is_some_and(|r| r.state == ReservationState::Held && r.expires_at == deadline)
    }

    /// Takes the next held reservation due at `now` off the deadline index,
    /// dropping stale entries on the way.
    pub fn pop_due(&mut self, now: TimestampMs) -> Option<ReservationId> {
        while let Some(entry) = self.deadlines.pop_due(now) {
            if self.is_live(entry) {
                return Some(entry.1);
            }
        }
        None
    }

    /// The earliest deadline indexed. It may belong to a reservation that
    /// has resolved since (a stale entry): then a caller sleeping until it
    /// wakes early once, and `pop_due` drops the entry.
    pub fn first_deadline(&self) -> Option<TimestampMs> {
        self.deadlines.first().map(|(deadline, _)| deadline)
    }

    /// Checks the deadline index against the stored reservations: every held
    /// one has a live entry, and stale entries stay within the bound.
    pub fn check_deadlines(&self) -> Result<(), String> {
        let indexed: rustc_hash::FxHashSet<Entry> = self.deadlines.iter().collect();
        let mut held = 0;
        for (id, reservation) in self.iter() {
            if reservation.state == ReservationState::Held {
                held += 1;
                if !indexed.contains(&(reservation.expires_at, id)) {
                    return Err(format!("held reservation {id}: deadline not indexed"));
                }
            }
        }
        if held != self.held() {
            return Err(format!("{held} held reservations, counted {}", self.held()));
        }
        if self.deadlines.needs_compaction(held) {
            return Err(format!(
                "deadline index: {} entries for {held} held reservations",
                self.deadlines.len()
            ));
        }
        Ok(())
    }

    /// Held reservations in this shard (the deadline index's live entries),
    /// from the counts kept for forgetting: the ring's unresolved ones, and
    /// the side map's entries not queued as resolved.
    fn held(&self) -> usize {
        let in_slab = self.slab.len().saturating_sub(self.resolved_in_slab);
        let evicted = self
            .evicted_held
            .len()
            .saturating_sub(self.evicted_resolved.len());
        in_slab + evicted
    }

    /// Drops stale deadline entries once they outnumber the held ones (plus
    /// slack): the index stays within `2 * held + COMPACT_SLACK` entries.
    fn compact_deadlines_if_needed(&mut self) {
        if self.deadlines.needs_compaction(self.held()) {
            let mut deadlines = std::mem::take(&mut self.deadlines);
            deadlines.compact(|entry| self.is_live(entry));
            self.deadlines = deadlines;
        }
    }

    pub fn get(&self, id: ReservationId) -> Option<&Reservation> {
        let local = self.local(id)?;
        match local.checked_sub(self.base) {
            Some(offset) => self.slab.get(usize::try_from(offset).ok()?),
            None => self.evicted_held.get(&local),
        }
    }

    pub fn get_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        let local = self.local(id)?;
        match local.checked_sub(self.base) {
            Some(offset) => self.slab.get_mut(usize::try_from(offset).ok()?),
            None => self.evicted_held.get_mut(&local),
        }
    }

    /// Every stored reservation with its id (held and still-remembered resolved).
    pub fn iter(&self) -> impl Iterator<Item = (ReservationId, &Reservation)> {
        let id_of = |local: u64| self.id_of(local);
        self.slab
            .iter()
            .enumerate()
            .map(move |(i, r)| (id_of(self.base + i as u64), r))
            .chain(
                self.evicted_held
                    .iter()
                    .map(move |(local, r)| (id_of(*local), r)),
            )
    }

    /// Marks a held reservation resolved.
    /// Resolves a held reservation; returns what it gives back to its hold
    /// caps, if it was counted against any.
    pub fn resolve(
        &mut self,
        id: ReservationId,
        state: ReservationState,
        now: TimestampMs,
    ) -> Option<ReleasedHold> {
        debug_assert_ne!(state, ReservationState::Held);
        let reservation = self.get_mut(id)?;
        debug_assert_eq!(
            reservation.state,
            ReservationState::Held,
            "a reservation resolves once"
        );
        reservation.state = state;
        reservation.resolved_at = Some(now);
        let units = reservation.units();
        let released = reservation.holders.take().map(|holders| (holders, units));
        match self.local(id) {
            Some(local) if local < self.base => self.evicted_resolved.push_back((now, local)),
            _ => self.resolved_in_slab += 1,
        }
        self.compact_deadlines_if_needed();
        released
    }

    /// Forgets resolved reservations once they are older than the retention,
    /// or while more than `capacity` resolved ones are kept (oldest first).
    /// A held reservation at the front of the ring is moved aside only when
    /// resolved ones behind it must go. At most `budget` steps per call
    /// keeps the cost amortised on the write path.
    pub fn forget_resolved(
        &mut self,
        now: TimestampMs,
        retention_ms: u64,
        capacity: usize,
        budget: usize,
    ) {
        for _ in 0..budget {
            match self.evicted_resolved.front() {
                Some(&(resolved_at, local))
                    if resolved_at.plus_ms(retention_ms) <= now
                        || self.evicted_resolved.len() > capacity =>
                {
                    self.evicted_resolved.pop_front();
                    self.evicted_held.remove(&local);
                }
                _ => break,
            }
        }
        for _ in 0..budget {
            let over_capacity = self.resolved_in_slab + self.evicted_resolved.len() > capacity;
            let Some(front) = self.slab.front() else {
                return;
            };
            let forget = match front.resolved_at {
                Some(resolved_at) => over_capacity || resolved_at.plus_ms(retention_ms) <= now,
                None => over_capacity && self.resolved_in_slab > 0,
            };
            if !forget {
                return;
            }
            if let Some(front) = self.slab.pop_front() {
                if front.state == ReservationState::Held {
                    self.evicted_held.insert(self.base, front);
                } else {
                    debug_assert!(self.resolved_in_slab > 0, "resolved count in step");
                    self.resolved_in_slab -= 1;
                }
                self.base += 1;
            }
        }
    }

    /// Puts back a reservation loaded from a store under its original id.
    /// Restored reservations live in the side map (their ids need not be
    /// contiguous); new ids continue above `next_local`.
    pub fn restore(&mut self, id: ReservationId, reservation: Reservation) {
        let Some(local) = self.local(id) else {
            return;
        };
        debug_assert!(self.slab.is_empty(), "restore only into a fresh shard");
        match (reservation.state, reservation.resolved_at) {
            (ReservationState::Held, _) => {
                self.deadlines.push_unordered(reservation.expires_at, id);
            }
            (_, Some(resolved_at)) => self.evicted_resolved.push_back((resolved_at, local)),
            (_, None) => self
                .evicted_resolved
                .push_back((reservation.created_at, local)),
        }
        self.evicted_held.insert(local, reservation);
        self.base = self.base.max(local + 1);
    }

    /// After restoring: orders the forgetting queue and moves the next id
    /// to at least `next_local`.
    pub fn finish_restore(&mut self, next_local: u64) {
        self.evicted_resolved
            .make_contiguous()
            .sort_unstable_by_key(|(at, local)| (*at, *local));
        self.base = self.base.max(next_local);
    }

    /// The local id the next reservation of this shard will get.
    pub fn next_local(&self) -> u64 {
        self.base + self.slab.len() as u64
    }

    pub fn stored(&self) -> usize {
        self.slab.len() + self.evicted_held.len()
    }
}

/// New reservations a thread puts in one shard before moving to the next
/// (`ReservationShards::lock_for_new`).
const NEW_RUN: usize = 32;

pub(crate) struct ReservationShards {
    shards: Box<[CachePadded<Mutex<ReservationShard>>]>,
}

/// The bits of an id that hold the ledger's tag (the top 16).
const TAG_SHIFT: u32 = 48;
const TAG_MASK: u64 = 0xFFFF << TAG_SHIFT;

impl ReservationShards {
    #[cfg(test)]
    pub fn new(count: usize) -> ReservationShards {
        ReservationShards::tagged(count, 0)
    }

    /// Shards whose ids all carry `tag` in their top 16 bits (below them,
    /// 48 bits of local id and shard index: 2^36 reservations per shard
    /// with 4,096 shards).
    pub fn tagged(count: usize, tag: u16) -> ReservationShards {
        let count = count.clamp(1, 1 << 12).next_power_of_two();
        let shard_bits = count.trailing_zeros().max(1);
        let tag = u64::from(tag) << TAG_SHIFT;
        ReservationShards {
            shards: (0..count)
                .map(|index| {
                    CachePadded::new(Mutex::new(ReservationShard {
                        index: index as u64,
                        shard_bits,
                        tag,
                        slab: ChunkedRing::default(),
                        // Local ids start at 1 so no reservation id is 0.
                        base: 1,
                        evicted_held: FxHashMap::default(),
                        evicted_resolved: VecDeque::new(),
                        resolved_in_slab: 0,
                        deadlines: DeadlineIndex::default(),
                    }))
                })
                .collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.shards.len()
    }

    pub fn lock_for(&self, id: ReservationId) -> MutexGuard<'_, ReservationShard> {
        self.shards[self.index_of(id)].lock()
    }

    pub fn index_of(&self, id: ReservationId) -> usize {
        ((id.0 & !TAG_MASK) as usize) & (self.shards.len() - 1)
    }

    /// Locks the shard the calling thread puts its next new reservation in.
    ///
    /// Each thread fills one shard with a run of `NEW_RUN` reservations, then
    /// moves to the next, round-robin: every shard gets an equal share even
    /// when all reservations are for one hot SKU (a flash sale), without a
    /// shared counter bouncing between cores. Why runs rather than a new
    /// shard per reservation: consecutive holds then land next to each
    /// other (ring slots, deadline entries, the shard's own fields stay in
    /// cache), where one shard per reservation touched 64 cold shards in
    /// turn (simulated L1 data misses per steady-state reservation: 26.7
    /// before, 15.6 after, commit 2564aab). A shard another thread is
    /// working in is skipped, so threads do not queue behind each other.
    pub fn lock_for_new(&self) -> MutexGuard<'_, ReservationShard> {
        thread_local! {
            static NEXT_NEW: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        }
        let mask = self.shards.len() - 1;
        NEXT_NEW.with(|next| {
            for _ in 0..self.shards.len() {
                let n = next.get();
                if let Some(shard) = self.shards[(n / NEW_RUN) & mask].try_lock() {
                    next.set(n.wrapping_add(1));
                    return shard;
                }
                next.set((n / NEW_RUN).wrapping_add(1).wrapping_mul(NEW_RUN));
            }
            // Every shard busy (more threads than shards): wait for this one.
            let n = next.get();
            next.set(n.wrapping_add(1));
            self.shards[(n / NEW_RUN) & mask].lock()
        })
    }

    pub fn lock_index(&self, index: usize) -> MutexGuard<'_, ReservationShard> {
        self.shards[index].lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(expires_at: i64) -> Reservation {
        Reservation {
            channel: Channel::Web,
            state: ReservationState::Held,
            lines: SmallVec::new(),
            created_at: TimestampMs(0),
            expires_at: TimestampMs(expires_at),
            resolved_at: None,
            holders: None,
        }
    }

    #[test]
    fn tagged_ids_carry_the_tag_and_refuse_other_tags() {
        let shards = ReservationShards::tagged(4, 17);
        let id = shards.lock_for_new().insert(held(10));
        assert_eq!(id.0 >> 48, 17);
        let index = shards.index_of(id);
        assert!(shards.lock_for(id).get(id).is_some());
        // The same local id and shard under another tag is not this ledger's.
        let foreign = ReservationId((id.0 & !TAG_MASK) | (18 << 48));
        assert_eq!(shards.index_of(foreign), index);
        assert!(shards.lock_for(foreign).get(foreign).is_none());
        let untagged = ReservationId(id.0 & !TAG_MASK);
        assert!(shards.lock_for(untagged).get(untagged).is_none());
    }

    #[test]
    fn ids_are_dense_per_shard_and_route_back() {
        let shards = ReservationShards::new(4);
        let mut shard = shards.lock_index(3);
        let a = shard.insert(held(10));
        let b = shard.insert(held(20));
        assert_ne!(a, b);
        assert_eq!((a.0 & 3, b.0 & 3), (3, 3));
        assert!(shard.get(a).is_some() && shard.get(b).is_some());
        assert!(
            shard.get(ReservationId(a.0 + 1)).is_none(),
            "other shard's id"
        );
        drop(shard);
        assert!(shards.lock_for(b).get(b).is_some());
    }

    #[test]
    fn live_holds_beyond_the_capacity_stay_in_the_ring() {
        let shards = ReservationShards::new(1);
        let mut shard = shards.lock_index(0);
        let ids: Vec<_> = (0..6).map(|_| shard.insert(held(10))).collect();
        // Six held, capacity 2: holds do not count, nothing moves aside.
        shard.forget_resolved(TimestampMs(1), 100, 2, 100);
        assert_eq!((shard.slab.len(), shard.evicted_held.len()), (6, 0));
        // Three resolve at the front: one over the capacity is forgotten,
        // still without moving a hold aside.
        for id in &ids[..3] {
            shard.resolve(*id, ReservationState::Expired, TimestampMs(10));
        }
        shard.forget_resolved(TimestampMs(11), 100, 2, 100);
        assert_eq!((shard.slab.len(), shard.evicted_held.len()), (5, 0));
        assert!(shard.get(ids[0]).is_none() && shard.get(ids[1]).is_some());
        assert_eq!(shard.resolved_in_slab, 2);
        // Past the retention the resolved ones go; the holds stay.
        shard.forget_resolved(TimestampMs(110), 100, 2, 100);
        assert_eq!((shard.slab.len(), shard.resolved_in_slab), (3, 0));
        assert_eq!(shard.evicted_held.len(), 0);
    }

    #[test]
    fn forgetting_respects_retention_capacity_and_held_fronts() {
        let shards = ReservationShards::new(1);
        let mut shard = shards.lock_index(0);
        let long_hold = shard.insert(held(1_000));
        let ids: Vec<_> = (0..4).map(|_| shard.insert(held(10))).collect();
        for id in &ids {
            shard.resolve(*id, ReservationState::Released, TimestampMs(5));
        }
        // Within retention and capacity: nothing forgotten.
        shard.forget_resolved(TimestampMs(6), 100, 10, 100);
        assert_eq!(shard.stored(), 5);
        // Over capacity 2: the held front moves aside, resolved ones go.
        shard.forget_resolved(TimestampMs(6), 100, 2, 100);
        assert_eq!(
            shard.get(long_hold).map(|r| r.state),
            Some(ReservationState::Held)
        );
        assert!(shard.get(ids[0]).is_none());
        assert!(shard.get(ids[3]).is_some());
        // Past retention: all resolved forgotten, the held one stays.
        shard.forget_resolved(TimestampMs(200), 100, 10, 100);
        assert_eq!(shard.stored(), 1);
        shard.resolve(long_hold, ReservationState::Expired, TimestampMs(1_000));
        assert_eq!(
            shard.get(long_hold).map(|r| r.state),
            Some(ReservationState::Expired),
            "a resolved evicted reservation is still readable"
        );
        assert_eq!(shard.pop_due(TimestampMs(i64::MAX)), None, "all resolved");
        assert_eq!(
            shard.first_deadline(),
            None,
            "stale entries dropped when due"
        );
        shard.forget_resolved(TimestampMs(1_050), 100, 10, 100);
        assert_eq!(shard.stored(), 1, "kept for the retention");
        shard.forget_resolved(TimestampMs(1_100), 100, 10, 100);
        assert_eq!(shard.stored(), 0, "then forgotten");
    }

    /// The shard indexes a fresh thread's next `count` new reservations go to.
    fn shards_for_new(shards: &ReservationShards, count: usize) -> Vec<u64> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| (0..count).map(|_| shards.lock_for_new().index).collect())
                .join()
                .expect("thread")
        })
    }

    #[test]
    fn new_reservations_fill_shards_in_runs_round_robin() {
        let shards = ReservationShards::new(4);
        let order = shards_for_new(&shards, 2 * 4 * NEW_RUN);
        let runs: Vec<u64> = order.chunks(NEW_RUN).map(|run| run[0]).collect();
        assert_eq!(runs, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        for run in order.chunks(NEW_RUN) {
            assert!(
                run.iter().all(|&index| index == run[0]),
                "one shard per run"
            );
        }
    }

    #[test]
    fn new_reservations_skip_a_shard_another_thread_holds() {
        let shards = ReservationShards::new(4);
        let busy = shards.lock_index(0);
        let order = shards_for_new(&shards, NEW_RUN + 1);
        drop(busy);
        assert!(
            order[..NEW_RUN].iter().all(|&index| index == 1),
            "{order:?}"
        );
        assert_eq!(order[NEW_RUN], 2, "then on round-robin from there");
    }
}
