//! What a write-behind store needs from the core, still without any I/O.
//!
//! A store's flusher keeps a [`Changes`] set: it moves journal entries into
//! it every flush interval (so the set is bounded by the number of items, not
//! of operations, even while the backend is down), then takes a [`Cut`]: the
//! current state of every changed item, copied under every shard lock at
//! once, so each batch is the ledger as of one instant (`Cut::head`).
//! At start, [`Ledger::restore`] rebuilds a fresh ledger from records.
//!
//! Architecture invariant: a cut holds every reservation shard, then every
//! position shard, in ascending order (the global lock order), and reads the
//! journal up to its head while holding them. Every operation allocates its
//! sequences and appends its movements under the locks of the positions it
//! changes, so a cut sees each operation entirely or not at all.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::MutexGuard;
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use super::Ledger;
use super::catalog::{Catalog, ChannelPolicy, Location, PolicyScope};
use super::holder::Holder;
use super::idempotency::IdempotencyRecord as GenericIdempotencyRecord;
use super::ids::{
    Channel, GroupName, IdempotencyKey, LocId, LocationCode, PosKey, Qty, ReservationId, Seq, Sku,
    SkuId, TimestampMs,
};
use super::journal::{JournalRead, Movement, MovementKind};
use super::position::{Incoming, MAX_PUBLISHED_LAG, OnHandMovement, Position, PositionCounts};
use super::requests::WriteOutput;
use super::reservation_state::ReservationState;
use super::reservation_store::{HeldLine, Reservation, ReservationShard};
use super::shards::PositionMap;

pub type IdempotencyRecord = GenericIdempotencyRecord<WriteOutput>;

/// After a restart, sequences continue this far above the last persisted
/// head, so no sequence (position version, feed cursor, stream id) handed
/// out by a previous run that did not reach the store is ever reused.
pub const RESTART_SEQ_GAP: u64 = 1 << 32;
/// The same for reservation ids, per reservation shard.
pub const RESTART_RESERVATION_GAP: u64 = 1 << 24;

/// One position, absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionRecord {
    pub sku: Sku,
    pub location: LocationCode,
    pub on_hand: Qty,
    /// Informational: recomputed from held reservations on restore.
    pub reserved: Qty,
    pub safety_stock: Qty,
    pub non_sellable: Qty,
    pub version: Seq,
    /// `TimestampMs::MIN`: no count applied yet.
    pub last_count_as_of: TimestampMs,
    pub incoming: Vec<Incoming>,
    /// On-hand movements kept for `as_of` counts: (time, delta), oldest first.
    pub history: Vec<(TimestampMs, i64)>,
    pub history_horizon: TimestampMs,
    /// Display models only (ATF 0; ads say `on_display_to_order`).
    pub display_only: bool,
    /// `version` minus the sequence at which what the ads channel publishes
    /// last changed (saturating at 2^31 - 1), so incremental feeds stay
    /// exact across a restart.
    pub published_lag: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationLineRecord {
    pub sku: Sku,
    pub location: LocationCode,
    pub qty: Qty,
    pub committed: Qty,
}

/// One reservation, absolute. `version` is the head of the cut it was
/// copied in, minus one: later states always carry a greater version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRecord {
    pub id: ReservationId,
    pub version: Seq,
    pub channel: Channel,
    pub state: ReservationState,
    pub created_at: TimestampMs,
    pub expires_at: TimestampMs,
    pub resolved_at: Option<TimestampMs>,
    pub lines: Vec<ReservationLineRecord>,
    /// The hold caps a held reservation counts against (empty when none, and
    /// once resolved).
    pub holders: Vec<Holder>,
}

/// Locations, groups and policies, ordered by `generation`.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogRecord {
    pub generation: u64,
    /// The journal head when the catalog last changed (see
    /// [`Catalog::changed_at`]).
    pub changed_at: Seq,
    pub locations: Vec<Location>,
    pub groups: Vec<(GroupName, Vec<LocationCode>)>,
    pub policies: Vec<(Channel, PolicyScope, ChannelPolicy)>,
}

impl CatalogRecord {
    pub fn of(catalog: &Catalog) -> CatalogRecord {
        let code = |loc: &super::ids::LocId| catalog.location(*loc).map(|l| l.code.clone());
        let mut groups: Vec<_> = catalog
            .groups()
            .map(|(name, members)| (name.clone(), members.iter().filter_map(code).collect()))
            .collect();
        groups.sort_by(|a: &(GroupName, Vec<_>), b| a.0.cmp(&b.0));
        let mut policies: Vec<_> = catalog
            .policies()
            .map(|((channel, scope), policy)| (*channel, scope.clone(), *policy))
            .collect();
        policies.sort_by_key(|(channel, scope, _)| {
            let (kind, name) = match scope {
                PolicyScope::Location(code) => (0, code.as_str().to_owned()),
                PolicyScope::Group(group) => (1, group.as_str().to_owned()),
            };
            (channel.index(), kind, name)
        });
        CatalogRecord {
            generation: catalog.generation(),
            changed_at: catalog.changed_at(),
            locations: catalog.locations().map(|(_, l)| l.clone()).collect(),
            groups,
            policies,
        }
    }
}

/// A movement with names instead of interned ids, for external consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovementRecord {
    pub seq: Seq,
    pub at: TimestampMs,
    pub kind: MovementKind,
    pub sku: Sku,
    pub location: LocationCode,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub after: PositionCounts,
    pub channel: Option<Channel>,
    pub reservation: Option<ReservationId>,
    pub reason: Option<String>,
    pub reference: Option<String>,
}

/// What changed since the last successful write, as a set of items.
pub struct Changes {
    /// Next journal sequence to read.
    cursor: Seq,
    pub positions: FxHashSet<PosKey>,
    pub reservations: FxHashSet<ReservationId>,
    pub idempotency: FxHashSet<IdempotencyKey>,
    /// Everything must be rewritten (first write, journal overrun, store
    /// found empty or replaced).
    pub everything: bool,
    /// Movements not yet appended to the store's stream, oldest first.
    /// Bounded by `max_movements`: when full the oldest are dropped (and
    /// counted) — the stream is for consumers, the state is exact anyway.
    pub movements: VecDeque<MovementRecord>,
    max_movements: usize,
    pub movements_dropped: u64,
    /// Sequence of the oldest change not yet written (for the flush lag).
    pub oldest_unwritten: Option<(Seq, TimestampMs)>,
}

impl Changes {
    /// Tracks changes from the ledger's current head on.
    pub fn new(ledger: &Ledger, max_movements: usize) -> Changes {
        Changes {
            cursor: ledger.journal.head(),
            positions: FxHashSet::default(),
            reservations: FxHashSet::default(),
            idempotency: FxHashSet::default(),
            everything: false,
            movements: VecDeque::new(),
            max_movements,
            movements_dropped: 0,
            oldest_unwritten: None,
        }
    }

    /// Items waiting to be written.
    pub fn backlog(&self) -> usize {
        self.positions.len() + self.reservations.len() + self.idempotency.len()
    }

    pub fn is_empty(&self) -> bool {
        !self.everything && self.backlog() == 0 && self.movements.is_empty()
    }

    /// After a successful write of `cut`: forgets what it covered.
    pub fn written(&mut self, cut: &Cut) {
        debug_assert!(cut.head <= self.cursor);
        self.positions.clear();
        self.reservations.clear();
        self.idempotency.clear();
        self.everything = false;
        self.oldest_unwritten = None;
    }

    /// After a failed write: keeps the cut's movements for the next attempt.
    pub fn unwritten(&mut self, cut: Cut) {
        for movement in cut.movements.into_iter().rev() {
            if self.movements.len() >= self.max_movements {
                self.movements_dropped += 1;
                break;
            }
            self.movements.push_front(movement);
        }
    }

    fn push_movement(&mut self, movement: MovementRecord) {
        if self.movements.len() >= self.max_movements {
            self.movements.pop_front();
            self.movements_dropped += 1;
        }
        self.movements.push_back(movement);
    }
}

/// The state of every changed item as of one instant.
#[derive(Debug)]
pub struct Cut {
    /// Every change with a sequence below `head` is included, none above.
    pub head: Seq,
    pub everything: bool,
    /// Grouped by SKU: when one position of a SKU is here, all of that
    /// SKU's positions are, next to each other.
    pub positions: Vec<PositionRecord>,
    pub reservations: Vec<ReservationRecord>,
    /// Per reservation shard, the next local id it will hand out.
    pub reservation_next_local: Vec<u64>,
    pub idempotency: Vec<IdempotencyRecord>,
    pub catalog: CatalogRecord,
    pub movements: Vec<MovementRecord>,
    /// The ledger's cursor lineage and floor (see `Ledger::cursor_lineage`).
    pub cursor_lineage: u64,
    pub cursor_floor: Seq,
}

/// Everything a store holds, to rebuild a ledger from.
#[derive(Debug, Default)]
pub struct Restore {
    pub head: Seq,
    /// The lineage of the stored positions (`None`: a store written before
    /// lineages existed; the ledger keeps its own and the store gets it).
    pub cursor_lineage: Option<u64>,
    /// The oldest cursor the previous run honoured.
    pub cursor_floor: Seq,
    /// The previous run stopped gracefully: its last write holds everything
    /// any client saw, so its cursors stay good. Otherwise (a crash, a
    /// store written before this flag existed) cursors from before the
    /// restart are answered in full.
    pub clean: bool,
    pub reservation_shards: usize,
    pub reservation_next_local: Vec<u64>,
    pub catalog: Option<CatalogRecord>,
    pub positions: Vec<PositionRecord>,
    pub reservations: Vec<ReservationRecord>,
    pub idempotency: Vec<IdempotencyRecord>,
}

/// What a restore did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub positions: usize,
    pub reservations_held: usize,
    pub reservations_resolved: usize,
    pub idempotency_keys: usize,
    /// Positions whose stored `reserved` differed from their held lines
    /// (recomputed from the reservations).
    pub reserved_recomputed: usize,
    /// The head the ledger continues at.
    pub next_seq: Seq,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error("restore needs a fresh ledger (this one already has changes)")]
    NotFresh,
    #[error(
        "the store was written with {stored} reservation shards, this ledger has {configured}; \
         reservation ids would not route (set reservation shards back to {stored})"
    )]
    ReservationShardsChanged { stored: usize, configured: usize },
    #[error("stored catalog is invalid: {0}")]
    Catalog(String),
    #[error("position {sku} at {location}: unknown location")]
    UnknownLocation { sku: Sku, location: LocationCode },
    #[error("stored SKU {0} could not be interned: {1}")]
    Sku(Sku, String),
}

impl Ledger {
    /// Moves journal entries since the last call into `changes`. Cheap; a
    /// flusher calls it every interval, even while its backend is down.
    pub fn collect_changes(&self, changes: &mut Changes, now: TimestampMs) {
        loop {
            match self.journal.read(changes.cursor, 4096) {
                JournalRead::Movements { movements, next } => {
                    if movements.is_empty() {
                        // Past catalog markers, if any: they change no item.
                        changes.cursor = next;
                        return;
                    }
                    if changes.oldest_unwritten.is_none() {
                        changes.oldest_unwritten = Some((movements[0].seq, movements[0].at));
                    }
                    for movement in movements {
                        changes.positions.insert(movement.position);
                        if let Some(id) = movement.reservation {
                            changes.reservations.insert(id);
                        }
                        if let Some(key) = movement
                            .note
                            .as_deref()
                            .and_then(|n| n.idempotency_key.as_ref())
                        {
                            changes.idempotency.insert(key.clone());
                        }
                        if let Some(record) = self.movement_record(movement) {
                            changes.push_movement(record);
                        }
                    }
                    changes.cursor = next;
                }
                JournalRead::Lagged { resume_at, .. } => {
                    // Overrun: the items changed are unknown, so all are.
                    changes.everything = true;
                    changes.cursor = resume_at;
                    changes.oldest_unwritten.get_or_insert((resume_at, now));
                    return;
                }
            }
        }
    }

    fn movement_record(&self, movement: Movement) -> Option<MovementRecord> {
        let sku = self.skus.code(movement.position.sku())?;
        let location = self
            .catalog
            .load()
            .location(movement.position.loc())?
            .code
            .clone();
        let (reason, reference) = movement
            .note
            .as_deref()
            .map_or((None, None), |n| (n.reason.clone(), n.reference.clone()));
        Some(MovementRecord {
            seq: movement.seq,
            at: movement.at,
            kind: movement.kind,
            sku,
            location,
            on_hand_delta: movement.on_hand_delta,
            reserved_delta: movement.reserved_delta,
            after: movement.after,
            channel: movement.channel,
            reservation: movement.reservation,
            reason,
            reference,
        })
    }

    /// Copies the current state of every changed item, as of one instant.
    /// Does not clear `changes`: call [`Changes::written`] once the cut is
    /// safely stored, [`Changes::unwritten`] if it was not.
    pub fn cut(&self, changes: &mut Changes, now: TimestampMs) -> Cut {
        let Copied {
            head,
            positions,
            reservations,
            next_local,
            catalog,
        } = self.copy_changed(changes, now);

        // The keys named by the cut's movements, after the locks: an
        // operation completes its key just after releasing them. Records go
        // in the same batch as the effects, so after a crash a retry never
        // applies an operation twice.
        let idempotency_keys: Vec<IdempotencyKey> = if changes.everything {
            self.idempotency.all_keys()
        } else {
            changes.idempotency.iter().cloned().collect()
        };
        let idempotency = self.idempotency.records(idempotency_keys);

        let version = Seq(head.0.saturating_sub(1));
        let positions = positions
            .into_iter()
            .filter_map(|(key, position)| self.position_record(&catalog, key, &position))
            .collect();
        let reservations = reservations
            .into_iter()
            .filter_map(|(id, r)| self.reservation_record(&catalog, id, &r, version))
            .collect();
        Cut {
            head,
            everything: changes.everything,
            positions,
            reservations,
            reservation_next_local: next_local,
            idempotency,
            catalog: CatalogRecord::of(&catalog),
            movements: changes.movements.drain(..).collect(),
            cursor_lineage: self.cursor_lineage(),
            cursor_floor: self.cursor_floor(),
        }
    }

    /// Under every reservation and position shard lock (so no writer runs):
    /// brings `changes` up to the journal head and copies what changed.
    fn copy_changed(&self, changes: &mut Changes, now: TimestampMs) -> Copied {
        let reservation_guards: Vec<_> = (0..self.reservations.count())
            .map(|i| self.reservations.lock_index(i))
            .collect();
        let position_guards = self.positions.lock_all();
        self.collect_changes(changes, now);
        let head = changes.cursor;
        debug_assert_eq!(head, self.journal.head(), "no writer runs during a cut");
        let catalog = self.catalog.load_full();
        let positions = self.changed_positions(changes, &position_guards, &catalog);
        let reservations = self.changed_reservations(changes, &reservation_guards);
        let next_local = reservation_guards.iter().map(|s| s.next_local()).collect();
        Copied {
            head,
            positions,
            reservations,
            next_local,
            catalog,
        }
    }

    /// Whole SKUs: every position of each SKU that changed (a store may keep
    /// a SKU's positions together, as the Redis store does), sorted.
    fn changed_positions(
        &self,
        changes: &Changes,
        position_guards: &[MutexGuard<'_, PositionMap>],
        catalog: &Catalog,
    ) -> Vec<(PosKey, Position)> {
        let mut positions: Vec<(PosKey, Position)> = if changes.everything {
            position_guards
                .iter()
                .flat_map(|map| map.iter().map(|(k, p)| (*k, p.clone())))
                .collect()
        } else {
            let skus: FxHashSet<SkuId> = changes.positions.iter().map(|k| k.sku()).collect();
            let locations = catalog.location_count() as u32;
            skus.into_iter()
                .flat_map(|sku| (0..locations).map(move |loc| PosKey::new(sku, LocId(loc))))
                .filter_map(|key| {
                    let map = &position_guards[self.positions.shard_of(key)];
                    map.get(&key).map(|p| (key, p.clone()))
                })
                .collect()
        };
        positions.sort_unstable_by_key(|(key, _)| (key.sku(), key.loc()));
        positions
    }

    fn changed_reservations(
        &self,
        changes: &Changes,
        reservation_guards: &[MutexGuard<'_, ReservationShard>],
    ) -> Vec<(ReservationId, Reservation)> {
        if changes.everything {
            reservation_guards
                .iter()
                .flat_map(|shard| shard.iter().map(|(id, r)| (id, r.clone())))
                .collect()
        } else {
            changes
                .reservations
                .iter()
                .filter_map(|id| {
                    let shard = &reservation_guards[self.reservations.index_of(*id)];
                    shard.get(*id).map(|r| (*id, r.clone()))
                })
                .collect()
        }
    }

    /// Every item, as of one instant (a full rewrite, or a comparison).
    pub fn export_all(&self, now: TimestampMs) -> Cut {
        let mut changes = Changes {
            everything: true,
            ..Changes::new(self, 0)
        };
        self.cut(&mut changes, now)
    }

    fn position_record(
        &self,
        catalog: &Catalog,
        key: PosKey,
        p: &Position,
    ) -> Option<PositionRecord> {
        let (incoming, history, history_horizon) = match &p.extras {
            Some(extras) => (
                extras.incoming.clone(),
                extras.history.iter().map(|m| (m.at, m.delta)).collect(),
                extras.history_horizon,
            ),
            None => (Vec::new(), Vec::new(), TimestampMs::MIN),
        };
        Some(PositionRecord {
            sku: self.skus.code(key.sku())?,
            location: catalog.location(key.loc())?.code.clone(),
            on_hand: Qty(p.on_hand),
            reserved: Qty(p.reserved),
            safety_stock: Qty(p.safety_stock),
            non_sellable: Qty(p.non_sellable()),
            published_lag: p.stored_published_lag(),
            version: p.version,
            last_count_as_of: p.last_count_as_of,
            incoming,
            history,
            history_horizon,
            display_only: p.display_only(),
        })
    }

    fn reservation_record(
        &self,
        catalog: &Catalog,
        id: ReservationId,
        r: &Reservation,
        version: Seq,
    ) -> Option<ReservationRecord> {
        let lines = r
            .lines
            .iter()
            .map(|line| {
                Some(ReservationLineRecord {
                    sku: self.skus.code(line.position.sku())?,
                    location: catalog.location(line.position.loc())?.code.clone(),
                    qty: line.qty,
                    committed: line.committed,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ReservationRecord {
            id,
            version,
            channel: r.channel,
            state: r.state,
            created_at: r.created_at,
            expires_at: r.expires_at,
            resolved_at: r.resolved_at,
            lines,
            holders: r
                .holders
                .as_deref()
                .map(<[Holder]>::to_vec)
                .unwrap_or_default(),
        })
    }

    /// Rebuilds a fresh ledger from a store's records. `reserved` is
    /// recomputed from the held reservations; sequences and reservation ids
    /// continue well above anything the previous run handed out. Reservations
    /// whose deadline passed stay held here: the next `tick` expires them.
    pub fn restore(
        &self,
        mut state: Restore,
        now: TimestampMs,
    ) -> Result<RestoreReport, RestoreError> {
        self.check_restorable(&state)?;
        let mut report = RestoreReport::default();
        if let Some(catalog) = state.catalog.take() {
            self.restore_catalog(catalog)?;
        }
        // The versions of the previous run are gone: a cursor from before
        // its last catalog change is answered in full.
        self.reset_catalog_history();
        let catalog = self.catalog.load_full();

        // Held units per position, from the reservations.
        let mut held: FxHashMap<PosKey, u64> = FxHashMap::default();
        let reservations = std::mem::take(&mut state.reservations);
        let by_shard =
            self.reservations_by_shard(&catalog, reservations, &mut held, &mut report)?;
        let positions = std::mem::take(&mut state.positions);
        self.restore_positions(&catalog, positions, &mut held, &mut report)?;
        self.restore_held_without_position(held, &mut report);
        self.fill_reservation_shards(by_shard, &state.reservation_next_local);
        let idempotency = std::mem::take(&mut state.idempotency);
        self.restore_idempotency(idempotency, now, &mut report);
        self.restart_journal(&state, &mut report);
        Ok(report)
    }

    /// Restores only into a fresh ledger, with as many reservation shards as
    /// the store was written with (ids name their shard).
    fn check_restorable(&self, state: &Restore) -> Result<(), RestoreError> {
        if self.journal.head() != Seq(1)
            || self.position_count() != 0
            || self.reservation_count() != 0
        {
            return Err(RestoreError::NotFresh);
        }
        if state.reservation_shards != 0 && state.reservation_shards != self.reservations.count() {
            return Err(RestoreError::ReservationShardsChanged {
                stored: state.reservation_shards,
                configured: self.reservations.count(),
            });
        }
        Ok(())
    }

    /// The reservations rebuilt from their records, grouped by shard; adds
    /// held units to `held` and to the hold caps' counts.
    fn reservations_by_shard(
        &self,
        catalog: &Catalog,
        records: Vec<ReservationRecord>,
        held: &mut FxHashMap<PosKey, u64>,
        report: &mut RestoreReport,
    ) -> Result<Vec<Vec<(ReservationId, Reservation)>>, RestoreError> {
        let mut by_shard: Vec<Vec<(ReservationId, Reservation)>> =
            (0..self.reservations.count()).map(|_| Vec::new()).collect();
        for record in records {
            let lines = self.restored_lines(catalog, &record, held)?;
            let is_held = record.state == ReservationState::Held;
            let reservation = Reservation {
                channel: record.channel,
                state: record.state,
                lines,
                created_at: record.created_at,
                expires_at: record.expires_at,
                resolved_at: record.resolved_at,
                holders: (is_held && !record.holders.is_empty())
                    .then(|| record.holders.into_boxed_slice()),
            };
            if is_held {
                report.reservations_held += 1;
                for holder in reservation.holders.iter().flatten() {
                    self.held_units.restore(holder, reservation.units());
                }
            } else {
                report.reservations_resolved += 1;
            }
            by_shard[self.reservations.index_of(record.id)].push((record.id, reservation));
        }
        Ok(by_shard)
    }

    /// A reservation record's lines on interned positions; a held
    /// reservation's units are added to `held`.
    fn restored_lines(
        &self,
        catalog: &Catalog,
        record: &ReservationRecord,
        held: &mut FxHashMap<PosKey, u64>,
    ) -> Result<SmallVec<[HeldLine; 2]>, RestoreError> {
        let mut lines: SmallVec<[HeldLine; 2]> = SmallVec::new();
        for line in &record.lines {
            let loc = catalog.location_id(line.location.as_str()).ok_or_else(|| {
                RestoreError::UnknownLocation {
                    sku: line.sku.clone(),
                    location: line.location.clone(),
                }
            })?;
            let sku = self
                .skus
                .intern(&line.sku)
                .map_err(|e| RestoreError::Sku(line.sku.clone(), e.to_string()))?;
            let key = PosKey::new(sku, loc);
            if record.state == ReservationState::Held {
                *held.entry(key).or_default() += u64::from(line.qty.0);
            }
            lines.push(HeldLine {
                position: key,
                qty: line.qty,
                committed: line.committed,
            });
        }
        Ok(lines)
    }

    /// Stores the positions, `reserved` taken from `held` (and removed from
    /// it). Positions come grouped by SKU: each SKU is interned once, and
    /// each shard filled under one lock.
    fn restore_positions(
        &self,
        catalog: &Catalog,
        records: Vec<PositionRecord>,
        held: &mut FxHashMap<PosKey, u64>,
        report: &mut RestoreReport,
    ) -> Result<(), RestoreError> {
        let mut last_sku: Option<(Sku, SkuId)> = None;
        let mut by_position_shard: Vec<Vec<(PosKey, Position)>> =
            (0..self.positions.count()).map(|_| Vec::new()).collect();
        for record in records {
            let loc = catalog
                .location_id(record.location.as_str())
                .ok_or_else(|| RestoreError::UnknownLocation {
                    sku: record.sku.clone(),
                    location: record.location.clone(),
                })?;
            let sku = match &last_sku {
                Some((code, id)) if *code == record.sku => *id,
                _ => {
                    let id = self
                        .skus
                        .intern(&record.sku)
                        .map_err(|e| RestoreError::Sku(record.sku.clone(), e.to_string()))?;
                    last_sku = Some((record.sku.clone(), id));
                    id
                }
            };
            let key = PosKey::new(sku, loc);
            let reserved = if held.is_empty() {
                0
            } else {
                held.remove(&key).unwrap_or(0)
            };
            let reserved = u32::try_from(reserved).unwrap_or(u32::MAX);
            if reserved != record.reserved.0 {
                report.reserved_recomputed += 1;
            }
            by_position_shard[self.positions.shard_of(key)]
                .push((key, restored_position(record, reserved)));
            report.positions += 1;
        }
        for (index, positions) in by_position_shard.into_iter().enumerate() {
            let mut map = self.positions.lock_index(index);
            map.reserve(positions.len());
            map.extend(positions);
        }
        Ok(())
    }

    /// Held lines on positions the store did not have (a store written by
    /// hand, or damaged): the units are held, on hand is unknown (0).
    fn restore_held_without_position(
        &self,
        held: FxHashMap<PosKey, u64>,
        report: &mut RestoreReport,
    ) {
        for (key, units) in held {
            report.reserved_recomputed += 1;
            let mut position = Position::new();
            position.reserved = u32::try_from(units).unwrap_or(u32::MAX);
            self.positions.lock_one(key).insert(key, position);
        }
    }

    /// Stores each shard's reservations; its next id continues a gap above
    /// both them and the stored next id.
    fn fill_reservation_shards(
        &self,
        by_shard: Vec<Vec<(ReservationId, Reservation)>>,
        stored_next_local: &[u64],
    ) {
        for (index, reservations) in by_shard.into_iter().enumerate() {
            let mut shard = self.reservations.lock_index(index);
            for (id, reservation) in reservations {
                shard.restore(id, reservation);
            }
            let stored_next = stored_next_local.get(index).copied().unwrap_or(1);
            let next = shard.next_local().max(stored_next);
            shard.finish_restore(next.saturating_add(RESTART_RESERVATION_GAP));
        }
    }

    /// Restores the idempotency keys still alive at `now`, soonest to
    /// expire first.
    fn restore_idempotency(
        &self,
        mut records: Vec<IdempotencyRecord>,
        now: TimestampMs,
        report: &mut RestoreReport,
    ) {
        records.sort_by_key(|r| r.expires_at);
        for record in records {
            if self.idempotency.restore(record, now) {
                report.idempotency_keys += 1;
            }
        }
    }

    /// Continues the journal a gap above the stored head, with the stored
    /// cursor lineage; the cursor floor is kept only after a clean stop.
    fn restart_journal(&self, state: &Restore, report: &mut RestoreReport) {
        let next_seq = Seq(state.head.0.max(1).saturating_add(RESTART_SEQ_GAP));
        self.journal.restart_at(next_seq);
        report.next_seq = self.journal.head();
        if let Some(lineage) = state.cursor_lineage {
            self.set_cursor_lineage(lineage);
        }
        let floor = if state.clean && state.cursor_lineage.is_some() {
            state.cursor_floor
        } else {
            Seq(report.next_seq.0 - 1)
        };
        self.set_cursor_floor(floor);
    }

    fn restore_catalog(&self, record: CatalogRecord) -> Result<(), RestoreError> {
        for location in record.locations {
            self.put_location(location)
                .map_err(|e| RestoreError::Catalog(e.to_string()))?;
        }
        for (name, members) in record.groups {
            self.put_group(name, &members)
                .map_err(|e| RestoreError::Catalog(e.to_string()))?;
        }
        for (channel, scope, policy) in record.policies {
            self.put_policy(channel, scope, Some(policy))
                .map_err(|e| RestoreError::Catalog(e.to_string()))?;
        }
        let _writer = self.catalog_writer.lock();
        let mut catalog = Catalog::clone(&self.catalog.load());
        catalog.set_generation(record.generation);
        catalog.set_changed_at(record.changed_at);
        self.catalog.store(Arc::new(catalog));
        Ok(())
    }
}

/// What a cut copies under the locks.
struct Copied {
    head: Seq,
    positions: Vec<(PosKey, Position)>,
    reservations: Vec<(ReservationId, Reservation)>,
    next_local: Vec<u64>,
    catalog: Arc<Catalog>,
}

/// A stored position rebuilt from its record, with `reserved` recomputed
/// from the held reservations.
fn restored_position(record: PositionRecord, reserved: u32) -> Position {
    let mut position = Position {
        on_hand: record.on_hand.0,
        reserved,
        safety_stock: record.safety_stock.0,
        // Stores written before the flag bit saturated at u32::MAX.
        published_lag: record.published_lag.min(MAX_PUBLISHED_LAG),
        version: record.version,
        last_count_as_of: record.last_count_as_of,
        extras: None,
    };
    if !record.incoming.is_empty()
        || !record.history.is_empty()
        || record.history_horizon != TimestampMs::MIN
        || record.non_sellable.0 > 0
    {
        let extras = position.extras_mut();
        extras.incoming = record.incoming;
        extras.history = record
            .history
            .into_iter()
            .map(|(at, delta)| OnHandMovement { at, delta })
            .collect();
        extras.history_horizon = record.history_horizon;
        extras.non_sellable = record.non_sellable.0;
    }
    position.set_display_only(record.display_only);
    position
}
