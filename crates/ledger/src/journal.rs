//! The movement journal: every change to a position gets a global sequence
//! number and a record. It is the audit trail and the one interface through
//! which shells (write-behind store, feeds, live streams) learn about changes.
//!
//! Architecture invariant: the journal never blocks a writer. It is a ring of
//! `journal_capacity` slots; a reader that falls more than that far behind is
//! told [`JournalRead::Lagged`] and must resynchronise from a snapshot of the
//! positions (their `version` says how recent each one is). Memory is bounded
//! whatever the readers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::ids::{Channel, IdempotencyKey, PosKey, ReservationId, Seq, TimestampMs};
use super::position::PositionCounts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MovementKind {
    /// Absolute count (ERP/WMS/cycle count).
    Count,
    Receipt,
    /// Expected receipt registered (changes ATO, not on hand).
    IncomingExpected,
    Adjustment,
    Sale,
    /// Customer return to sellable stock.
    Return,
    /// Customer return to the non-sellable bucket.
    ReturnNonSellable,
    Reserve,
    Commit,
    Release,
    Expire,
    /// A held line moved away from / to this position.
    TransferOut,
    TransferIn,
    /// A reservation's deadline moved; quantities unchanged.
    Extend,
    /// The position's display-only flag changed (what ads publish).
    Display,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Count => "count",
            MovementKind::Receipt => "receipt",
            MovementKind::IncomingExpected => "incoming_expected",
            MovementKind::Adjustment => "adjustment",
            MovementKind::Sale => "sale",
            MovementKind::Return => "return",
            MovementKind::ReturnNonSellable => "return_non_sellable",
            MovementKind::Reserve => "reserve",
            MovementKind::Commit => "commit",
            MovementKind::Release => "release",
            MovementKind::Expire => "expire",
            MovementKind::TransferOut => "transfer_out",
            MovementKind::TransferIn => "transfer_in",
            MovementKind::Extend => "extend",
            MovementKind::Display => "display",
        }
    }
}

/// Free text that travels with a movement, shared by all movements of one
/// operation (one allocation per operation, none when absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MovementNote {
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl MovementNote {
    pub(crate) fn shared(
        reason: Option<&str>,
        reference: Option<&str>,
        key: Option<&IdempotencyKey>,
    ) -> Option<Arc<MovementNote>> {
        if reason.is_none() && reference.is_none() && key.is_none() {
            return None;
        }
        Some(Arc::new(MovementNote {
            reason: reason.map(str::to_owned),
            reference: reference.map(str::to_owned),
            idempotency_key: key.cloned(),
        }))
    }
}

/// One change to one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub seq: Seq,
    pub at: TimestampMs,
    pub kind: MovementKind,
    pub position: PosKey,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub safety_stock_delta: i64,
    pub non_sellable_delta: i64,
    pub incoming_delta: i64,
    /// The position's quantities after the change.
    pub after: PositionCounts,
    pub channel: Option<Channel>,
    pub reservation: Option<ReservationId>,
    pub note: Option<Arc<MovementNote>>,
}

/// What a reader gets from [`Journal::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum JournalRead {
    /// Movements in sequence order starting at the requested sequence
    /// (possibly none yet). Continue from `next`.
    Movements { movements: Vec<Movement>, next: Seq },
    /// The requested sequence was overwritten; the oldest still held is
    /// `oldest`. Resynchronise from a snapshot, then read from `resume_at`.
    Lagged { oldest: Seq, resume_at: Seq },
}

/// One ring slot: a movement, or a marker for a sequence that belongs to no
/// position (a catalog change takes one, so a feed cursor can be placed
/// after it). Readers skip markers; they exist so a reader never waits on a
/// sequence that no movement will fill.
enum Slot {
    Empty,
    Movement(Movement),
    Marker(Seq),
}

impl Slot {
    fn seq(&self) -> Option<Seq> {
        match self {
            Slot::Empty => None,
            Slot::Movement(movement) => Some(movement.seq),
            Slot::Marker(seq) => Some(*seq),
        }
    }
}

pub(crate) struct Journal {
    slots: Box<[CachePadded<Mutex<Slot>>]>,
    /// The next sequence to hand out; sequences start at 1.
    next_seq: CachePadded<AtomicU64>,
    /// The first sequence this journal was asked to hold: 1, or where a
    /// restore continued numbering. A reader from below it missed movements
    /// of an earlier run and is told it lagged.
    first_seq: AtomicU64,
}

impl Journal {
    pub fn new(capacity: usize) -> Journal {
        let capacity = capacity.max(2).next_power_of_two();
        Journal {
            slots: (0..capacity)
                .map(|_| CachePadded::new(Mutex::new(Slot::Empty)))
                .collect(),
            next_seq: CachePadded::new(AtomicU64::new(1)),
            first_seq: AtomicU64::new(1),
        }
    }

    /// Reserves `count` consecutive sequence numbers. Callers hold the locks
    /// of the positions they change, so per position, sequence order is
    /// application order.
    pub fn allocate(&self, count: u64) -> Seq {
        Seq(self.next_seq.fetch_add(count, Ordering::Relaxed))
    }

    /// Takes one sequence for a change that is not a movement and fills its
    /// slot with a marker readers skip. Release ordering: a reader that sees
    /// the head past it also sees what the caller published before (the
    /// catalog change uses it so, see `Ledger::update_catalog`).
    pub fn append_marker(&self) -> Seq {
        let seq = Seq(self.next_seq.fetch_add(1, Ordering::AcqRel));
        let mut slot = self.slot(seq).lock();
        if slot.seq().is_none_or(|old| old < seq) {
            *slot = Slot::Marker(seq);
        }
        seq
    }

    /// Continues numbering at `next` (after a restore, on an unused journal),
    /// so sequences never repeat across restarts.
    pub fn restart_at(&self, next: Seq) {
        let next = next.0.max(1);
        self.next_seq.fetch_max(next, Ordering::AcqRel);
        self.first_seq.fetch_max(next, Ordering::AcqRel);
    }

    /// The oldest sequence this run can have: older ones belong to a run
    /// before the last restore.
    pub fn first(&self) -> Seq {
        Seq(self.first_seq.load(Ordering::Acquire))
    }

    /// The sequence the next change will get; everything below it was handed out.
    pub fn head(&self) -> Seq {
        Seq(self.next_seq.load(Ordering::Acquire))
    }

    fn slot(&self, seq: Seq) -> &Mutex<Slot> {
        &self.slots[(seq.0 as usize) & (self.slots.len() - 1)]
    }

    pub fn append(&self, movement: Movement) {
        let mut slot = self.slot(movement.seq).lock();
        // A writer delayed by a full lap must not overwrite newer data.
        if slot.seq().is_none_or(|old| old < movement.seq) {
            *slot = Slot::Movement(movement);
        }
    }

    /// Up to `max` movements from `from` on. Stops at the first sequence not
    /// yet written (a writer still in flight), so readers never skip one.
    /// From below [`Journal::first`] (a cursor of an earlier run) the
    /// reader is told it lagged: those movements are not here.
    pub fn read(&self, from: Seq, max: usize) -> JournalRead {
        let from = Seq(from.0.max(1));
        let head = self.head();
        let capacity = self.slots.len() as u64;
        let lagged = || JournalRead::Lagged {
            oldest: Seq(head.0.saturating_sub(capacity).max(self.first().0)),
            resume_at: head,
        };
        if from < self.first() {
            return lagged();
        }
        let mut movements = Vec::with_capacity(max.min((head.0.saturating_sub(from.0)) as usize));
        let mut seq = from;
        while seq < head && movements.len() < max {
            let slot = self.slot(seq).lock();
            match &*slot {
                Slot::Movement(m) if m.seq == seq => movements.push(m.clone()),
                Slot::Marker(marker) if *marker == seq => {}
                written if written.seq().is_some_and(|s| s > seq) => return lagged(),
                // Handed out but not yet written (or an older lap): stop here.
                _ => break,
            }
            drop(slot);
            seq = Seq(seq.0 + 1);
        }
        JournalRead::Movements {
            movements,
            next: seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LocId, SkuId};

    fn movement(seq: u64) -> Movement {
        Movement {
            seq: Seq(seq),
            at: TimestampMs(seq as i64),
            kind: MovementKind::Receipt,
            position: PosKey::new(SkuId(1), LocId(0)),
            on_hand_delta: 1,
            reserved_delta: 0,
            safety_stock_delta: 0,
            non_sellable_delta: 0,
            incoming_delta: 0,
            after: PositionCounts::default(),
            channel: None,
            reservation: None,
            note: None,
        }
    }

    fn seqs(read: &JournalRead) -> Vec<u64> {
        match read {
            JournalRead::Movements { movements, .. } => movements.iter().map(|m| m.seq.0).collect(),
            JournalRead::Lagged { .. } => panic!("unexpected lag: {read:?}"),
        }
    }

    #[test]
    fn reads_in_order_and_stops_at_unwritten() {
        let journal = Journal::new(8);
        let first = journal.allocate(3);
        assert_eq!(first, Seq(1));
        journal.append(movement(1));
        journal.append(movement(3));
        // 2 is handed out but not written: the reader must not skip it.
        assert_eq!(seqs(&journal.read(Seq(1), 10)), vec![1]);
        journal.append(movement(2));
        assert_eq!(seqs(&journal.read(Seq(1), 10)), vec![1, 2, 3]);
        assert_eq!(seqs(&journal.read(Seq(2), 1)), vec![2]);
    }

    #[test]
    fn slow_reader_is_told_it_lagged() {
        let journal = Journal::new(4);
        journal.allocate(10);
        for seq in 1..=10 {
            journal.append(movement(seq));
        }
        assert_eq!(
            journal.read(Seq(2), 10),
            JournalRead::Lagged {
                oldest: Seq(7),
                resume_at: Seq(11)
            }
        );
        assert_eq!(seqs(&journal.read(Seq(7), 10)), vec![7, 8, 9, 10]);
    }

    #[test]
    fn markers_are_skipped_and_a_reader_from_an_earlier_run_lagged() {
        let journal = Journal::new(8);
        journal.allocate(1);
        journal.append(movement(1));
        assert_eq!(journal.append_marker(), Seq(2));
        journal.allocate(1);
        journal.append(movement(3));
        let JournalRead::Movements { movements, next } = journal.read(Seq(1), 10) else {
            panic!("lagged");
        };
        assert_eq!(
            (movements.iter().map(|m| m.seq.0).collect::<Vec<_>>(), next),
            (vec![1, 3], Seq(4))
        );
        // A trailing marker is passed even though it yields no movement.
        journal.append_marker();
        assert_eq!(
            journal.read(Seq(4), 10),
            JournalRead::Movements {
                movements: Vec::new(),
                next: Seq(5)
            }
        );
        // After a restore numbering continues far above; a cursor of the
        // earlier run is told it lagged instead of waiting on empty slots.
        let restored = Journal::new(8);
        restored.restart_at(Seq(1_000));
        assert_eq!(
            restored.read(Seq(5), 10),
            JournalRead::Lagged {
                oldest: Seq(1_000),
                resume_at: Seq(1_000)
            }
        );
    }

    #[test]
    fn late_writer_does_not_overwrite_newer_lap() {
        let journal = Journal::new(2);
        journal.allocate(3);
        journal.append(movement(3));
        journal.append(movement(1)); // same slot as 3, older
        assert_eq!(seqs(&journal.read(Seq(3), 10)), vec![3]);
    }
}
