//! Reserve, commit, release, extend, transfer and expire.
//!
//! A held reservation is valid while `now < expires_at`. Any operation on it
//! at or after its deadline expires it on the spot (units back to ATF at
//! once) and is refused with state `Expired`; the sweep (`expire_due`) does
//! the same for reservations nobody touches.

use smallvec::SmallVec;

use super::acting::Acting;
use super::catalog::Catalog;
use super::holder::{HoldCap, Holder};
use super::idempotency::Fingerprint;
use super::ids::{IdempotencyKey, LocationCode, PosKey, Qty, ReservationId, Seq, TimestampMs};
use super::journal::{MovementKind, MovementNote};
use super::refusal::{Invalid, Refusal, Shortfall};
use super::requests::{
    CommitRequest, Line, ReservationLineView, ReservationView, ReserveRequest, TransferRequest,
    WriteOutput,
};
use super::reservation_state::ReservationState;
use super::reservation_store::{HeldLine, ReleasedHold, Reservation, ReservationShard};
use super::shards::LockedShards;
use super::{Ledger, MergedLine, OpContext, Origin, merged_keys};

/// How many resolved reservations a write may forget on the way (amortised
/// clean-up, so the resolved set stays bounded without a sweeper).
const FORGET_BUDGET_PER_WRITE: usize = 2;

impl Ledger {
    /// Holds every line or none. Lines on the same position are summed
    /// before the check; each position must show the channel at least that
    /// many units after the channel's policy.
    pub fn reserve(
        &self,
        request: &ReserveRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        self.reserve_with_origin(request, now, key).0
    }

    /// [`Ledger::reserve`], saying whether the outcome is new or replayed
    /// from the idempotency key.
    pub fn reserve_with_origin(
        &self,
        request: &ReserveRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> (Result<ReservationView, Refusal>, Origin) {
        if let Err(invalid) = self
            .validate_lines(&request.lines, false)
            .and_then(|()| self.validate_ttl(request.ttl_ms))
        {
            return (Err(invalid), Origin::Ran);
        }
        self.idempotent_with_origin(
            key,
            now,
            // Caps' numbers are left out (see `fingerprint.rs`).
            |version| Fingerprint::of(version, "reserve", request),
            WriteOutput::Reservation,
            WriteOutput::as_reservation,
            || self.reserve_unchecked(request, now, key),
        )
    }

    fn reserve_unchecked(
        &self,
        request: &ReserveRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        self.with_catalog(|catalog| {
            let merged = self.resolve_lines(catalog, &request.lines)?;
            let expires_at = now.plus_ms(request.ttl_ms);
            let mut shard = self.reservations.lock_for_new();
            // Claimed and given back only under a reservation shard lock, so
            // `check_invariants` (which takes them all) sees counts and
            // reservations agree.
            let units: u64 = merged.iter().map(|line| u64::from(line.qty.0)).sum();
            self.held_units.claim(&request.caps, units)?;
            let holders = counted_holders(&request.caps);
            let mut locked = self.positions.lock_many(merged_keys(&merged));

            if let Err(refusal) = self.check_channel_view(
                catalog,
                &mut locked,
                request.channel,
                &request.lines,
                &merged,
            ) {
                drop(locked);
                self.give_back_holds(holders.map(|holders| (holders, units)));
                return Err(refusal);
            }

            let id = shard.next_id();
            let ctx = OpContext {
                now,
                channel: Some(request.channel),
                reservation: Some(id),
                note: MovementNote::shared(None, None, key),
            };
            let held = self.hold_lines(&mut locked, &ctx, &merged);
            drop(locked);

            let view = new_reservation_view(request, id, now, expires_at, &merged);
            self.forget_resolved(&mut shard, now);
            let stored_id = shard.insert(Reservation {
                channel: request.channel,
                state: ReservationState::Held,
                lines: held,
                created_at: now,
                expires_at,
                resolved_at: None,
                holders,
            });
            debug_assert_eq!(stored_id, id);
            Ok(view)
        })
    }

    /// Moves every merged line's units into `reserved` (each line passed the
    /// oversell check, so its position exists) and journals one `Reserve`
    /// movement per line; returns the held lines to store.
    #[inline]
    fn hold_lines(
        &self,
        locked: &mut LockedShards<'_>,
        ctx: &OpContext,
        merged: &[MergedLine],
    ) -> SmallVec<[HeldLine; 2]> {
        let first_seq = self.journal.allocate(merged.len() as u64);
        let mut held: SmallVec<[HeldLine; 2]> = SmallVec::with_capacity(merged.len());
        for (
            offset,
            MergedLine {
                key: pos_key, qty, ..
            },
        ) in merged.iter().enumerate()
        {
            // Every line passed the check, so its position exists.
            let pos_key = pos_key.expect("checked lines have positions");
            let position = locked
                .get_mut(pos_key)
                .expect("checked lines have positions");
            let before = position.snapshot();
            position.reserved += qty.0;
            debug_assert!(
                position.reserved <= position.on_hand,
                "never reserve beyond on hand"
            );
            self.record(
                ctx,
                MovementKind::Reserve,
                pos_key,
                position,
                before,
                Seq(first_seq.0 + offset as u64),
            );
            held.push(HeldLine {
                position: pos_key,
                qty: *qty,
                committed: Qty::ZERO,
            });
        }
        held
    }

    fn slab_capacity_per_shard(&self) -> usize {
        (self.config.max_resolved_reservations / self.reservations.count()).max(1)
    }

    /// Looks up a held reservation for an operation at `now`, expiring it on
    /// the spot if its deadline has passed.
    fn held_reservation(
        &self,
        shard: &mut ReservationShard,
        id: ReservationId,
        now: TimestampMs,
    ) -> Result<(), Refusal> {
        let reservation = shard.get(id).ok_or(Refusal::ReservationNotFound(id))?;
        if reservation.state != ReservationState::Held {
            return Err(Refusal::ReservationNotHeld {
                id,
                state: reservation.state,
            });
        }
        if reservation.expires_at <= now {
            self.unhold(shard, id, now, ReservationState::Expired, None);
            return Err(Refusal::ReservationNotHeld {
                id,
                state: ReservationState::Expired,
            });
        }
        Ok(())
    }

    /// Whether `acting` may act on reservation `id` (every line at one of its
    /// locations) and, for a transfer, at `destination`. Called under the
    /// reservation shard's lock, before anything changes (even an expiry
    /// on the spot), so the reservation checked is the one acted on: a
    /// transfer cannot move a line between the check and the action. A
    /// caller with `Acting::Any` looks nothing up (an unknown id is then
    /// refused by `held_reservation`, as before). Cost: lines x the
    /// caller's locations (a `pos` key has at most 1,000, and usually one).
    fn check_acting(
        &self,
        shard: &ReservationShard,
        id: ReservationId,
        acting: Acting<'_>,
        destination: Option<&LocationCode>,
    ) -> Result<(), Refusal> {
        if acting == Acting::Any {
            return Ok(());
        }
        let reservation = shard.get(id).ok_or(Refusal::ReservationNotFound(id))?;
        self.with_catalog(|catalog| {
            for line in &reservation.lines {
                let location = &catalog
                    .location(line.position.loc())
                    .expect("held lines are at registered locations")
                    .code;
                if !acting.allows(location) {
                    return Err(Refusal::LocationNotAllowed {
                        location: location.clone(),
                    });
                }
            }
            match destination {
                Some(to) if !acting.allows(to) => Err(Refusal::LocationNotAllowed {
                    location: to.clone(),
                }),
                _ => Ok(()),
            }
        })
    }

    /// Returns every held unit to ATF and resolves the reservation as
    /// `Released` or `Expired`.
    fn unhold(
        &self,
        shard: &mut ReservationShard,
        id: ReservationId,
        now: TimestampMs,
        state: ReservationState,
        key: Option<&IdempotencyKey>,
    ) {
        let Some(reservation) = shard.get(id) else {
            return;
        };
        let kind = if state == ReservationState::Expired {
            MovementKind::Expire
        } else {
            MovementKind::Release
        };
        let ctx = OpContext {
            now,
            channel: Some(reservation.channel),
            reservation: Some(id),
            note: MovementNote::shared(None, None, key),
        };
        let mut locked = self
            .positions
            .lock_many(reservation.lines.iter().map(|l| l.position));
        let first_seq = self.journal.allocate(reservation.lines.len() as u64);
        for (offset, line) in reservation.lines.iter().enumerate() {
            self.take_reserved(
                &mut locked,
                &ctx,
                kind,
                line.position,
                line.qty,
                Qty::ZERO,
                Seq(first_seq.0 + offset as u64),
            );
        }
        drop(locked);
        self.forget_resolved(shard, now);
        self.give_back_holds(shard.resolve(id, state, now));
    }

    /// Gives a resolved (or refused) reservation's units back to its caps.
    fn give_back_holds(&self, released: Option<ReleasedHold>) {
        if let Some((holders, units)) = released {
            self.held_units.give_back(holders.iter(), units);
        }
    }

    /// Units a holder holds now, counted against its cap (0 when it was
    /// never counted).
    pub fn held_units(&self, holder: &Holder) -> u64 {
        self.held_units.held(holder)
    }

    /// Forgets a few old resolved reservations; called before resolving one
    /// so the one just resolved is always readable afterwards.
    fn forget_resolved(&self, shard: &mut ReservationShard, now: TimestampMs) {
        shard.forget_resolved(
            now,
            self.config.resolved_retention_ms,
            self.slab_capacity_per_shard(),
            FORGET_BUDGET_PER_WRITE,
        );
    }

    /// Removes `held` units from `reserved` and `shipped` units from on hand.
    #[allow(clippy::too_many_arguments)]
    fn take_reserved(
        &self,
        locked: &mut LockedShards<'_>,
        ctx: &OpContext,
        kind: MovementKind,
        key: PosKey,
        held: Qty,
        shipped: Qty,
        seq: Seq,
    ) {
        let position = locked
            .get_mut(key)
            .expect("a position with held units exists");
        let before = position.snapshot();
        debug_assert!(
            position.reserved >= held.0,
            "reserved covers every held line"
        );
        debug_assert!(
            position.on_hand >= shipped.0,
            "callers check on hand before shipping"
        );
        position.reserved = position.reserved.saturating_sub(held.0);
        position.on_hand = position.on_hand.saturating_sub(shipped.0);
        self.record(ctx, kind, key, position, before, seq);
    }

    /// Cancels a held reservation: its units are available again at once.
    pub fn release(
        &self,
        id: ReservationId,
        acting: Acting<'_>,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        self.idempotent(
            key,
            now,
            |version| Fingerprint::of(version, "release", &id),
            WriteOutput::Reservation,
            WriteOutput::as_reservation,
            || {
                let mut shard = self.reservations.lock_for(id);
                self.check_acting(&shard, id, acting, None)?;
                self.held_reservation(&mut shard, id, now)?;
                self.unhold(&mut shard, id, now, ReservationState::Released, key);
                self.reservation_view(&shard, id)
                    .ok_or(Refusal::ReservationNotFound(id))
            },
        )
    }

    /// Fulfils a reservation: committed units leave on hand, the rest of each
    /// line is released.
    pub fn commit(
        &self,
        request: &CommitRequest,
        acting: Acting<'_>,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        if let Some(lines) = &request.lines {
            self.validate_lines(lines, true)?;
            for (index, line) in lines.iter().enumerate() {
                if lines[..index]
                    .iter()
                    .any(|l| l.sku == line.sku && l.location == line.location)
                {
                    return Err(Invalid::DuplicateLine { line: index }.into());
                }
            }
        }
        self.idempotent(
            key,
            now,
            |version| Fingerprint::of(version, "commit", request),
            WriteOutput::Reservation,
            WriteOutput::as_reservation,
            || self.commit_unchecked(request, acting, now, key),
        )
    }

    fn commit_unchecked(
        &self,
        request: &CommitRequest,
        acting: Acting<'_>,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        let id = request.id;
        let catalog = self.catalog.load();
        let mut shard = self.reservations.lock_for(id);
        self.check_acting(&shard, id, acting, None)?;
        self.held_reservation(&mut shard, id, now)?;
        let reservation = shard.get(id).ok_or(Refusal::ReservationNotFound(id))?;
        let ship = self.units_to_ship(&catalog, &reservation.lines, request)?;

        let mut locked = self
            .positions
            .lock_many(reservation.lines.iter().map(|l| l.position));
        self.check_on_hand(&catalog, &mut locked, &reservation.lines, &ship)?;
        let ctx = OpContext {
            now,
            channel: Some(reservation.channel),
            reservation: Some(id),
            note: MovementNote::shared(None, None, key),
        };
        let first_seq = self.journal.allocate(reservation.lines.len() as u64);
        for (offset, (line, qty)) in reservation.lines.iter().zip(&ship).enumerate() {
            self.take_reserved(
                &mut locked,
                &ctx,
                MovementKind::Commit,
                line.position,
                line.qty,
                *qty,
                Seq(first_seq.0 + offset as u64),
            );
        }
        drop(locked);
        if let Some(reservation) = shard.get_mut(id) {
            for (line, qty) in reservation.lines.iter_mut().zip(&ship) {
                line.committed = *qty;
            }
        }
        self.forget_resolved(&mut shard, now);
        self.give_back_holds(shard.resolve(id, ReservationState::Committed, now));
        self.reservation_view(&shard, id)
            .ok_or(Refusal::ReservationNotFound(id))
    }

    /// What to ship from each held line: all of it, or the request's lines
    /// (each at most what its line holds; unlisted lines ship nothing).
    #[inline]
    fn units_to_ship(
        &self,
        catalog: &Catalog,
        held: &[HeldLine],
        request: &CommitRequest,
    ) -> Result<SmallVec<[Qty; 4]>, Refusal> {
        let mut ship: SmallVec<[Qty; 4]> = held.iter().map(|l| l.qty).collect();
        if let Some(lines) = &request.lines {
            ship.iter_mut().for_each(|q| *q = Qty::ZERO);
            for (index, line) in lines.iter().enumerate() {
                let slot = self.find_line(catalog, held, line)?;
                let held = held[slot].qty;
                if line.qty > held {
                    return Err(Invalid::CommitMoreThanHeld {
                        line: index,
                        requested: line.qty,
                        held,
                    }
                    .into());
                }
                ship[slot] = line.qty;
            }
        }
        Ok(ship)
    }

    /// Refuses a commit with every line whose position has fewer units on
    /// hand than it would ship.
    #[inline]
    fn check_on_hand(
        &self,
        catalog: &Catalog,
        locked: &mut LockedShards<'_>,
        held: &[HeldLine],
        ship: &[Qty],
    ) -> Result<(), Refusal> {
        let mut shortfalls = Vec::new();
        for (line, qty) in held.iter().zip(ship) {
            let on_hand = locked.get(line.position).map_or(0, |p| p.on_hand);
            if on_hand < qty.0 {
                shortfalls.push(self.shortfall(catalog, line.position, *qty, Qty(on_hand)));
            }
        }
        if shortfalls.is_empty() {
            Ok(())
        } else {
            Err(Refusal::InsufficientOnHand { shortfalls })
        }
    }

    /// Pushes a held reservation's deadline to `now + ttl_ms`.
    pub fn extend(
        &self,
        id: ReservationId,
        ttl_ms: u64,
        acting: Acting<'_>,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        self.validate_ttl(ttl_ms)?;
        self.idempotent(
            key,
            now,
            |version| Fingerprint::of(version, "extend", &(id, ttl_ms)),
            WriteOutput::Reservation,
            WriteOutput::as_reservation,
            || {
                let mut shard = self.reservations.lock_for(id);
                self.check_acting(&shard, id, acting, None)?;
                self.held_reservation(&mut shard, id, now)?;
                let expires_at = now.plus_ms(ttl_ms);
                shard.set_deadline(id, expires_at, now);
                let reservation = shard.get(id).ok_or(Refusal::ReservationNotFound(id))?;
                let ctx = OpContext {
                    now,
                    channel: Some(reservation.channel),
                    reservation: Some(id),
                    note: MovementNote::shared(None, None, key),
                };
                let mut locked = self
                    .positions
                    .lock_many(reservation.lines.iter().map(|l| l.position));
                let first_seq = self.journal.allocate(reservation.lines.len() as u64);
                for (offset, line) in reservation.lines.iter().enumerate() {
                    if let Some(position) = locked.get_mut(line.position) {
                        let before = position.snapshot();
                        self.record(
                            &ctx,
                            MovementKind::Extend,
                            line.position,
                            position,
                            before,
                            Seq(first_seq.0 + offset as u64),
                        );
                    }
                }
                drop(locked);
                self.reservation_view(&shard, id)
                    .ok_or(Refusal::ReservationNotFound(id))
            },
        )
    }

    /// Moves a held line (or part of it) to another location, atomically:
    /// the destination must show the channel enough units.
    pub fn transfer(
        &self,
        request: &TransferRequest,
        acting: Acting<'_>,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        if request.from == request.to {
            return Err(Invalid::TransferToSameLocation.into());
        }
        if request.qty == Some(Qty::ZERO) {
            return Err(Invalid::ZeroQuantity { line: 0 }.into());
        }
        self.idempotent(
            key,
            now,
            |version| Fingerprint::of(version, "transfer", request),
            WriteOutput::Reservation,
            WriteOutput::as_reservation,
            || self.transfer_unchecked(request, acting, now, key),
        )
    }

    fn transfer_unchecked(
        &self,
        request: &TransferRequest,
        acting: Acting<'_>,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, Refusal> {
        let id = request.id;
        let catalog = self.catalog.load();
        let to_loc = self.resolve_location(&catalog, &request.to);
        let mut shard = self.reservations.lock_for(id);
        // The source's lines and the destination, before an unknown
        // destination is refused: a restricted caller learns nothing about
        // a location it may not act on.
        self.check_acting(&shard, id, acting, Some(&request.to))?;
        let to_loc = to_loc?;
        self.held_reservation(&mut shard, id, now)?;
        let reservation = shard.get_mut(id).ok_or(Refusal::ReservationNotFound(id))?;
        let (slot, qty) = self.transfer_source(&catalog, &reservation.lines, request)?;
        let source = reservation.lines[slot];
        let destination = PosKey::new(source.position.sku(), to_loc);

        let mut locked = self.positions.lock_many([source.position, destination]);
        // The same oversell check as a new reservation, for the moved units.
        let moved = [Line {
            sku: request.sku.clone(),
            location: request.to.clone(),
            qty,
        }];
        let at_destination = [MergedLine {
            key: Some(destination),
            loc: to_loc,
            first_line: 0,
            qty,
        }];
        self.check_channel_view(
            &catalog,
            &mut locked,
            reservation.channel,
            &moved,
            &at_destination,
        )?;
        let ctx = OpContext {
            now,
            channel: Some(reservation.channel),
            reservation: Some(id),
            note: MovementNote::shared(None, None, key),
        };
        self.move_reserved(&mut locked, &ctx, source.position, destination, qty);
        drop(locked);

        move_held_units(&mut reservation.lines, slot, destination, qty);
        self.reservation_view(&shard, id)
            .ok_or(Refusal::ReservationNotFound(id))
    }

    /// The held line a transfer moves units from (its slot) and how many
    /// units it moves: the request's quantity (at most what the line holds)
    /// or all of them.
    #[inline]
    fn transfer_source(
        &self,
        catalog: &Catalog,
        held: &[HeldLine],
        request: &TransferRequest,
    ) -> Result<(usize, Qty), Refusal> {
        let from_line = Line {
            sku: request.sku.clone(),
            location: request.from.clone(),
            qty: Qty::ZERO,
        };
        let slot = self.find_line(catalog, held, &from_line)?;
        let source = held[slot];
        let qty = request.qty.unwrap_or(source.qty);
        if qty > source.qty {
            return Err(Invalid::CommitMoreThanHeld {
                line: 0,
                requested: qty,
                held: source.qty,
            }
            .into());
        }
        Ok((slot, qty))
    }

    /// Moves `qty` reserved units from `source` to `destination`, journalled
    /// as a `TransferOut` and a `TransferIn` movement.
    #[inline]
    fn move_reserved(
        &self,
        locked: &mut LockedShards<'_>,
        ctx: &OpContext,
        source: PosKey,
        destination: PosKey,
        qty: Qty,
    ) {
        let first_seq = self.journal.allocate(2);
        self.take_reserved(
            locked,
            ctx,
            MovementKind::TransferOut,
            source,
            qty,
            Qty::ZERO,
            first_seq,
        );
        let position = locked.get_mut(destination).expect("checked above");
        let before = position.snapshot();
        position.reserved += qty.0;
        self.record(
            ctx,
            MovementKind::TransferIn,
            destination,
            position,
            before,
            Seq(first_seq.0 + 1),
        );
    }

    /// Expires every held reservation whose deadline is at or before `now`,
    /// at most `max` of them; returns how many expired. Walks each shard's
    /// deadline index from the front: cost is proportional to what expires.
    pub fn expire_due(&self, now: TimestampMs, max: usize) -> usize {
        let mut expired = 0;
        for index in 0..self.reservations.count() {
            if expired >= max {
                break;
            }
            let mut shard = self.reservations.lock_index(index);
            while expired < max {
                let Some(id) = shard.pop_due(now) else {
                    break;
                };
                self.unhold(&mut shard, id, now, ReservationState::Expired, None);
                expired += 1;
            }
            shard.forget_resolved(
                now,
                self.config.resolved_retention_ms,
                self.slab_capacity_per_shard(),
                max,
            );
        }
        expired
    }

    /// The earliest deadline of any held reservation, so a shell can sleep
    /// exactly until the next expiry instead of polling.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        (0..self.reservations.count())
            .filter_map(|index| self.reservations.lock_index(index).first_deadline())
            .min()
    }

    /// A reservation as callers see it (held or recently resolved).
    pub fn reservation(&self, id: ReservationId) -> Option<ReservationView> {
        let shard = self.reservations.lock_for(id);
        self.reservation_view(&shard, id)
    }

    fn reservation_view(
        &self,
        shard: &ReservationShard,
        id: ReservationId,
    ) -> Option<ReservationView> {
        let r = shard.get(id)?;
        self.with_catalog(|catalog| {
            Some(ReservationView {
                id,
                channel: r.channel,
                state: r.state,
                created_at: r.created_at,
                expires_at: r.expires_at,
                resolved_at: r.resolved_at,
                lines: r
                    .lines
                    .iter()
                    .filter_map(|l| {
                        Some(ReservationLineView {
                            sku: self.skus.code(l.position.sku())?,
                            location: catalog.location(l.position.loc())?.code.clone(),
                            qty: l.qty,
                            committed: l.committed,
                        })
                    })
                    .collect(),
            })
        })
    }

    /// The index of the held line matching `line`'s SKU and location.
    fn find_line(
        &self,
        catalog: &Catalog,
        held: &[HeldLine],
        line: &Line,
    ) -> Result<usize, Refusal> {
        let not_found = || Refusal::LineNotInReservation {
            sku: line.sku.clone(),
            location: line.location.clone(),
        };
        let loc = catalog
            .location_id(line.location.as_str())
            .ok_or_else(not_found)?;
        let sku = self.skus.get(&line.sku).ok_or_else(not_found)?;
        let key = PosKey::new(sku, loc);
        held.iter()
            .position(|l| l.position == key)
            .ok_or_else(not_found)
    }

    fn shortfall(
        &self,
        catalog: &Catalog,
        key: PosKey,
        requested: Qty,
        available: Qty,
    ) -> Shortfall {
        Shortfall {
            sku: self
                .skus
                .code(key.sku())
                .expect("positions have interned SKUs"),
            location: catalog
                .location(key.loc())
                .map(|l| l.code.clone())
                .expect("positions have locations"),
            requested,
            available,
        }
    }
}

/// The holders a new reservation's units are counted against: `None` when
/// no cap applies (the common case, which allocates nothing).
#[inline]
fn counted_holders(caps: &[HoldCap]) -> Option<Box<[Holder]>> {
    (!caps.is_empty()).then(|| {
        caps.iter()
            .map(|cap| cap.holder.clone())
            .collect::<Box<[Holder]>>()
    })
}

/// The view of a reservation just granted: held, one line per position.
#[inline]
fn new_reservation_view(
    request: &ReserveRequest,
    id: ReservationId,
    now: TimestampMs,
    expires_at: TimestampMs,
    merged: &[MergedLine],
) -> ReservationView {
    ReservationView {
        id,
        channel: request.channel,
        state: ReservationState::Held,
        created_at: now,
        expires_at,
        resolved_at: None,
        lines: merged
            .iter()
            .map(
                |MergedLine {
                     first_line: line_index,
                     qty,
                     ..
                 }| {
                    let line = &request.lines[*line_index];
                    ReservationLineView {
                        sku: line.sku.clone(),
                        location: line.location.clone(),
                        qty: *qty,
                        committed: Qty::ZERO,
                    }
                },
            )
            .collect(),
    }
}

/// Moves `qty` held units from the line in `slot` to the line on
/// `destination` (added when the reservation held none there); drops a line
/// left empty.
#[inline]
fn move_held_units(
    lines: &mut SmallVec<[HeldLine; 2]>,
    slot: usize,
    destination: PosKey,
    qty: Qty,
) {
    lines[slot].qty = Qty(lines[slot].qty.0 - qty.0);
    match lines.iter_mut().find(|l| l.position == destination) {
        Some(existing) => existing.qty = Qty(existing.qty.0 + qty.0),
        None => lines.push(HeldLine {
            position: destination,
            qty,
            committed: Qty::ZERO,
        }),
    }
    lines.retain(|l| l.qty.0 > 0);
}
