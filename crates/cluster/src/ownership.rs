//! One node's ownership of partitions, as a deterministic state machine in
//! the shape of quinn-proto: inputs arrive through `handle_*` (membership
//! read from Redis, answers to lease requests, the clock), outputs leave
//! through [`Ownership::poll_action`] (the lease requests to send, the
//! partitions to load or drop) and [`Ownership::poll_timeout`] says when to
//! call again. It performs no I/O and reads no clock, so every interleaving
//! of answers and timeouts can be tested exactly.
//!
//! Per partition: a node acquires the lease of every partition the
//! assignment gives it, loads the partition, then serves it until its local
//! deadline, renewing well before; it releases a partition the assignment
//! gives to another node (after the caller flushed it), and drops one whose
//! lease it lost or let lapse. At most one request per partition is in
//! flight at a time.

use crate::assignment::{NodeId, owner_of};
use crate::lease::{Epoch, Lease, LeaseTiming};
use crate::partition::{PartitionId, Partitions};

/// How long to wait before trying again: an acquisition of a lease another
/// node holds (it is releasing it, or it will lapse), a renewal or a
/// handover that failed. Short against the lease's 1 s renewal interval,
/// long enough that an error answered at once does not become a busy loop.
pub const RETRY_MS: u64 = 200;

/// What the node should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask Redis for the lease (`acquire`); answer with
    /// [`Ownership::handle_acquired`] or [`Ownership::handle_refused`],
    /// passing `sent_at_ms` back.
    Acquire {
        partition: PartitionId,
        sent_at_ms: u64,
    },
    /// Extend the lease (`renew`); answer with [`Ownership::handle_renewed`]
    /// or [`Ownership::handle_lost`].
    Renew {
        partition: PartitionId,
        epoch: Epoch,
        sent_at_ms: u64,
    },
    /// Load the partition from the store under `epoch`, then call
    /// [`Ownership::handle_loaded`]; it is not served before.
    Load {
        partition: PartitionId,
        epoch: Epoch,
    },
    /// Another node should own it: flush it, stop serving it, then release
    /// the lease (`release`) and call [`Ownership::handle_released`].
    HandOver {
        partition: PartitionId,
        epoch: Epoch,
    },
    /// The lease is gone (lost, lapsed or released): forget the partition's
    /// state in memory; a later owner loads it from the store.
    Drop { partition: PartitionId },
}

/// Where one partition stands on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not ours. `retry_at_ms`: when an acquisition may be tried again.
    Free { retry_at_ms: u64 },
    /// An acquisition is in flight.
    Acquiring,
    /// Leased; the load is yet to be asked for.
    Granted(Lease),
    /// Leased, being loaded: not served yet.
    Loading(Lease),
    /// Leased and loaded: served while the lease allows.
    Serving(Lease),
    /// Being handed over (flush, then release, in flight): not served.
    HandingOver(Lease),
    /// The lease is gone; the caller must drop the partition's state.
    MustDrop,
}

impl Slot {
    fn lease(self) -> Option<Lease> {
        match self {
            Slot::Granted(l) | Slot::Loading(l) | Slot::Serving(l) | Slot::HandingOver(l) => {
                Some(l)
            }
            Slot::Free { .. } | Slot::Acquiring | Slot::MustDrop => None,
        }
    }

    fn epoch(self) -> Option<Epoch> {
        match self.lease()? {
            Lease::Held { epoch, .. } => Some(epoch),
            Lease::Free => None,
        }
    }
}

/// One node's partitions and leases.
pub struct Ownership {
    me: NodeId,
    partitions: Partitions,
    timing: LeaseTiming,
    slots: Vec<Slot>,
    /// Whether a renewal is in flight, per partition: one at a time.
    renewing: Vec<bool>,
    /// Per partition: no renewal or handover before this (after a failure).
    retry_after_ms: Vec<u64>,
    live: Vec<NodeId>,
    leaving: bool,
}

impl Ownership {
    pub fn new(me: NodeId, partitions: Partitions, timing: LeaseTiming) -> Ownership {
        let count = usize::from(partitions.count());
        Ownership {
            // Nothing is wanted before the first membership arrives: a
            // joining node must not grab partitions it is not assigned.
            live: Vec::new(),
            me,
            partitions,
            timing,
            slots: vec![Slot::Free { retry_at_ms: 0 }; count],
            renewing: vec![false; count],
            retry_after_ms: vec![0; count],
            leaving: false,
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// The live nodes, as the heartbeats in Redis last said.
    pub fn handle_members(&mut self, mut live: Vec<NodeId>) {
        live.sort();
        live.dedup();
        self.live = live;
    }

    /// Graceful shutdown: hand every partition over, acquire nothing more.
    pub fn handle_leaving(&mut self) {
        self.leaving = true;
    }

    /// The epoch to serve `partition` under at `now_ms`, or `None` (not
    /// ours, not loaded yet, being handed over, or past the local deadline).
    pub fn serving(&self, partition: PartitionId, now_ms: u64) -> Option<Epoch> {
        match self.slots[usize::from(partition.index())] {
            Slot::Serving(lease) => lease.serving(now_ms),
            _ => None,
        }
    }

    /// The partitions this node serves at `now_ms`.
    pub fn served(&self, now_ms: u64) -> Vec<PartitionId> {
        self.partitions
            .all()
            .filter(|p| self.serving(*p, now_ms).is_some())
            .collect()
    }

    /// Whether this node holds nothing (after [`Self::handle_leaving`]:
    /// every partition handed over or dropped).
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| matches!(s, Slot::Free { .. }))
    }

    fn wanted(&self, partition: PartitionId) -> bool {
        !self.leaving && owner_of(partition, &self.live) == Some(&self.me)
    }

    fn slot(&mut self, partition: PartitionId) -> &mut Slot {
        &mut self.slots[usize::from(partition.index())]
    }

    pub fn handle_acquired(&mut self, partition: PartitionId, epoch: Epoch, sent_at_ms: u64) {
        let timing = self.timing;
        let slot = self.slot(partition);
        if *slot == Slot::Acquiring {
            *slot = Slot::Granted(Lease::acquired(timing, epoch, sent_at_ms));
        }
    }

    /// Another node holds the lease, or the request failed: ask again later.
    pub fn handle_refused(&mut self, partition: PartitionId, now_ms: u64) {
        let slot = self.slot(partition);
        if *slot == Slot::Acquiring {
            *slot = Slot::Free {
                retry_at_ms: now_ms + RETRY_MS,
            };
        }
    }

    /// The partition was loaded under `epoch`: serve it. A load that
    /// finishes after its lease was lost is ignored.
    pub fn handle_loaded(&mut self, partition: PartitionId, epoch: Epoch) {
        let slot = self.slot(partition);
        if let Slot::Loading(lease) = *slot
            && slot.epoch() == Some(epoch)
        {
            *slot = Slot::Serving(lease);
        }
    }

    /// A renewal sent at `sent_at_ms` under `epoch` succeeded.
    pub fn handle_renewed(&mut self, partition: PartitionId, epoch: Epoch, sent_at_ms: u64) {
        let timing = self.timing;
        self.renewing[usize::from(partition.index())] = false;
        let slot = self.slot(partition);
        if slot.epoch() != Some(epoch) {
            return;
        }
        if let Slot::Granted(lease)
        | Slot::Loading(lease)
        | Slot::Serving(lease)
        | Slot::HandingOver(lease) = slot
        {
            lease.handle_renewed(timing, sent_at_ms);
        }
    }

    /// Redis refused a renewal under `epoch`: the lease or the epoch is
    /// another's now. Stop serving at once.
    pub fn handle_lost(&mut self, partition: PartitionId, epoch: Epoch) {
        self.renewing[usize::from(partition.index())] = false;
        let slot = self.slot(partition);
        if slot.epoch() == Some(epoch) {
            *slot = Slot::MustDrop;
        }
    }

    /// A renewal got no answer, or one no replica confirmed: nothing is
    /// known. The next one goes after [`RETRY_MS`]; the local deadline ends
    /// the lease if none gets through.
    pub fn handle_renew_failed(&mut self, partition: PartitionId, now_ms: u64) {
        let index = usize::from(partition.index());
        self.renewing[index] = false;
        self.retry_after_ms[index] = now_ms + RETRY_MS;
    }

    /// Loading the partition failed: give the lease up (it is taken again,
    /// under a new epoch, after [`RETRY_MS`]).
    pub fn handle_load_failed(&mut self, partition: PartitionId, epoch: Epoch) {
        let slot = self.slot(partition);
        if matches!(slot, Slot::Loading(_)) && slot.epoch() == Some(epoch) {
            *slot = Slot::MustDrop;
        }
    }

    /// The flush before a handover failed (not fenced: a fenced flush is
    /// [`Self::handle_lost`]): the node is still the owner and serves the
    /// partition again; the handover is tried again after [`RETRY_MS`].
    pub fn handle_handover_failed(&mut self, partition: PartitionId, epoch: Epoch, now_ms: u64) {
        let index = usize::from(partition.index());
        let slot = self.slot(partition);
        if let Slot::HandingOver(lease) = *slot
            && slot.epoch() == Some(epoch)
        {
            *slot = Slot::Serving(lease);
            self.retry_after_ms[index] = now_ms + RETRY_MS;
        }
    }

    /// The partition was flushed and its lease under `epoch` released (or
    /// found gone already).
    pub fn handle_released(&mut self, partition: PartitionId, epoch: Epoch) {
        let slot = self.slot(partition);
        if matches!(slot, Slot::HandingOver(_)) && slot.epoch() == Some(epoch) {
            *slot = Slot::MustDrop;
        }
    }

    /// The next thing to do at `now_ms`, if any. Call until `None`, then
    /// again at [`Self::poll_timeout`] or after any `handle_*`.
    pub fn poll_action(&mut self, now_ms: u64) -> Option<Action> {
        (0..self.slots.len()).find_map(|index| self.next_for(index, now_ms))
    }

    fn next_for(&mut self, index: usize, now_ms: u64) -> Option<Action> {
        let partition = self.partitions.get(u16::try_from(index).ok()?)?;
        let slot = self.slots[index];
        let lapsed = slot.lease().is_some_and(|l| l.serving(now_ms).is_none());
        if lapsed || slot == Slot::MustDrop {
            // Lapsed locally (Redis may hand it on soon), lost, released or
            // failed to load.
            self.slots[index] = Slot::Free {
                retry_at_ms: now_ms + RETRY_MS,
            };
            return Some(Action::Drop { partition });
        }
        let epoch = slot.epoch();
        let may_retry = now_ms >= self.retry_after_ms[index];
        match (slot, epoch) {
            (Slot::Free { retry_at_ms }, _) if self.wanted(partition) && now_ms >= retry_at_ms => {
                self.slots[index] = Slot::Acquiring;
                Some(Action::Acquire {
                    partition,
                    sent_at_ms: now_ms,
                })
            }
            (Slot::Granted(lease), Some(epoch)) => {
                self.slots[index] = Slot::Loading(lease);
                Some(Action::Load { partition, epoch })
            }
            (Slot::Serving(lease), Some(epoch)) if may_retry && !self.wanted(partition) => {
                self.slots[index] = Slot::HandingOver(lease);
                Some(Action::HandOver { partition, epoch })
            }
            (
                Slot::Loading(lease) | Slot::Serving(lease) | Slot::HandingOver(lease),
                Some(epoch),
            ) if may_retry && !self.renewing[index] && lease.renew_due(now_ms) => {
                self.renewing[index] = true;
                Some(Action::Renew {
                    partition,
                    epoch,
                    sent_at_ms: now_ms,
                })
            }
            _ => None,
        }
    }

    /// When [`Self::poll_action`] may next have something to do: the
    /// earliest renewal, handover, local deadline or acquisition retry.
    pub fn poll_timeout(&self) -> Option<u64> {
        (0..self.slots.len())
            .filter_map(|index| self.timeout_of(index))
            .min()
    }

    fn timeout_of(&self, index: usize) -> Option<u64> {
        let partition = self.partitions.get(u16::try_from(index).ok()?)?;
        let lease = match self.slots[index] {
            Slot::Free { retry_at_ms } => return self.wanted(partition).then_some(retry_at_ms),
            Slot::Acquiring => return None,
            Slot::MustDrop | Slot::Granted(_) => return Some(0),
            Slot::Loading(lease) | Slot::Serving(lease) | Slot::HandingOver(lease) => lease,
        };
        let Lease::Held {
            serve_until_ms,
            renew_at_ms,
            ..
        } = lease
        else {
            return None;
        };
        let retry_after = self.retry_after_ms[index];
        // A renewal in flight: only its answer or the deadline is awaited.
        let renew = (!self.renewing[index]).then_some(renew_at_ms.max(retry_after));
        let handover = (matches!(self.slots[index], Slot::Serving(_)) && !self.wanted(partition))
            .then_some(retry_after);
        [Some(serve_until_ms), renew, handover]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
#[path = "ownership_tests.rs"]
mod tests;
