//! Stock movements that do not involve a reservation: absolute counts,
//! receipts, expected receipts, adjustments, sales and returns.

use super::fingerprint::Fingerprinted;
use super::idempotency::Fingerprint;
use super::ids::{Channel, IdempotencyKey, LocationCode, PosKey, Qty, Seq, Sku, TimestampMs};
use super::journal::{MovementKind, MovementNote};
use super::position::{Incoming, Position};
use super::refusal::{Invalid, Refusal, Shortfall};
use super::requests::{
    AdjustmentRequest, CountRequest, DisplayRequest, IncomingRequest, PositionView, ReceiptRequest,
    ReturnRequest, SaleRequest, WriteOutput,
};
use super::{Ledger, MergedLine, OpContext, merged_keys};

/// Who is writing and why, for single-position writes.
struct Writer<'a> {
    now: TimestampMs,
    channel: Option<Channel>,
    reason: Option<&'a str>,
    reference: Option<&'a str>,
    key: Option<&'a IdempotencyKey>,
}

impl Ledger {
    /// Changes one position under its shard lock and journals the change.
    /// `create`: whether a missing position (and SKU) may be created.
    /// `change` returns the movement kind.
    /// `write_position` as one idempotent operation (`operation` and the
    /// request make the fingerprint): the frame every single-position write
    /// shares.
    #[allow(clippy::too_many_arguments)]
    fn write_position_once<R: Fingerprinted>(
        &self,
        operation: &'static str,
        request: &R,
        sku: &Sku,
        location: &LocationCode,
        create: bool,
        writer: Writer<'_>,
        change: impl FnOnce(&mut Position) -> Result<MovementKind, Refusal>,
    ) -> Result<PositionView, Refusal> {
        let (key, now) = (writer.key, writer.now);
        self.idempotent(
            key,
            now,
            |version| Fingerprint::of(version, operation, request),
            WriteOutput::Position,
            WriteOutput::as_position,
            || self.write_position(sku, location, create, writer, change),
        )
    }

    fn write_position(
        &self,
        sku: &Sku,
        location: &LocationCode,
        create: bool,
        writer: Writer<'_>,
        change: impl FnOnce(&mut Position) -> Result<MovementKind, Refusal>,
    ) -> Result<PositionView, Refusal> {
        let catalog = self.catalog.load();
        let loc = self.resolve_location(&catalog, location)?;
        let sku_id = if create {
            Some(self.skus.intern(sku)?)
        } else {
            self.skus.get(sku)
        };
        let key = sku_id.map(|s| PosKey::new(s, loc));
        let mut map = key.map(|key| self.positions.lock_one(key));
        let stored = match (&mut map, key) {
            (Some(map), Some(key)) if create => Some(map.entry(key).or_insert_with(Position::new)),
            (Some(map), Some(key)) => map.get_mut(&key),
            _ => None,
        };
        let Some(position) = stored else {
            // Nothing to change and nothing may be created: run the change on
            // an empty position so the refusal is the same as for zero stock.
            change(&mut Position::new())?;
            return Err(Refusal::Invalid(Invalid::Other("position does not exist")));
        };
        let created = position.version == Seq(0);
        let before = position.snapshot();
        let kind = match change(position) {
            Ok(change) => change,
            Err(refusal) => {
                // A refused write changes nothing, not even by creating.
                if let (true, Some(map), Some(key)) = (created, map.as_mut(), key) {
                    map.remove(&key);
                }
                return Err(refusal);
            }
        };
        let key = key.expect("a stored position has a key");
        let ctx = OpContext {
            now: writer.now,
            channel: writer.channel,
            reservation: None,
            note: MovementNote::shared(writer.reason, writer.reference, writer.key),
        };
        let seq = self.journal.allocate(1);
        self.record(&ctx, kind, key, position, before, seq);
        Ok(self.view(&catalog, sku.clone(), loc, Some(position), None, writer.now))
    }

    /// Sets on hand (and optionally safety stock) from a physical count.
    /// Reservations are untouched; if the count leaves fewer units than are
    /// reserved, the view reports the difference as `shortage`.
    pub fn count(
        &self,
        request: &CountRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<PositionView, Refusal> {
        if let Some(as_of) = request.as_of
            && as_of > now.plus_ms(self.config.max_as_of_skew_ms)
        {
            return Err(Refusal::AsOfInFuture { as_of });
        }
        let writer = Writer {
            now,
            channel: None,
            reason: None,
            reference: request.reference.as_deref(),
            key,
        };
        self.write_position_once(
            "count",
            request,
            &request.sku,
            &request.location,
            true,
            writer,
            |p| {
                if let Some(expected) = request.expected_version
                    && expected != p.version
                {
                    return Err(Refusal::StaleVersion {
                        expected,
                        actual: p.version,
                    });
                }
                let as_of = request.as_of.unwrap_or(now);
                if as_of < p.last_count_as_of {
                    return Err(Refusal::CountOlderThanLast {
                        as_of,
                        last_as_of: p.last_count_as_of,
                    });
                }
                let since = p
                    .on_hand_changes_after(as_of)
                    .map_err(|horizon| Refusal::AsOfBeyondHistory { as_of, horizon })?;
                let counted = i64::from(request.on_hand.0) + since;
                p.on_hand = u32::try_from(counted.max(0)).map_err(|_| overflow(request))?;
                if let Some(safety) = request.safety_stock {
                    p.safety_stock = safety.0;
                }
                p.last_count_as_of = as_of;
                Ok(MovementKind::Count)
            },
        )
    }

    /// Marks (or unmarks) a position's units as display models: ATF becomes 0
    /// for every channel (holds already taken stay), and ads publish
    /// `on_display_to_order`. Creates the position if needed, as a count does.
    pub fn set_display(
        &self,
        request: &DisplayRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<PositionView, Refusal> {
        let writer = Writer {
            now,
            channel: None,
            reason: None,
            reference: request.reference.as_deref(),
            key,
        };
        self.write_position_once(
            "display",
            request,
            &request.sku,
            &request.location,
            true,
            writer,
            |p| {
                p.set_display_only(request.display_only);
                Ok(MovementKind::Display)
            },
        )
    }

    /// Goods arrived. Consumes the expected receipt with the same reference.
    pub fn receive(
        &self,
        request: &ReceiptRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<PositionView, Refusal> {
        self.validate_lines(std::slice::from_ref(&request.line), false)?;
        let line = &request.line;
        let writer = Writer {
            now,
            channel: None,
            reason: None,
            reference: request.reference.as_deref(),
            key,
        };
        self.write_position_once(
            "receive",
            request,
            &line.sku,
            &line.location,
            true,
            writer,
            |p| {
                p.on_hand = p
                    .on_hand
                    .checked_add(line.qty.0)
                    .ok_or_else(|| overflow_at(&line.sku, &line.location))?;
                if let (Some(reference), Some(extras)) = (&request.reference, p.extras.as_mut())
                    && let Some(index) = extras
                        .incoming
                        .iter()
                        .position(|i| i.reference.as_ref() == Some(reference))
                {
                    let expected = &mut extras.incoming[index];
                    let consumed = expected.qty.0.min(line.qty.0);
                    expected.qty = Qty(expected.qty.0 - consumed);
                    if expected.qty.0 == 0 {
                        extras.incoming.remove(index);
                    }
                }
                Ok(MovementKind::Receipt)
            },
        )
    }

    /// Registers goods expected at `expected_at` (they count towards ATO).
    pub fn expect_incoming(
        &self,
        request: &IncomingRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<PositionView, Refusal> {
        self.validate_lines(std::slice::from_ref(&request.line), false)?;
        let line = &request.line;
        let writer = Writer {
            now,
            channel: None,
            reason: None,
            reference: request.reference.as_deref(),
            key,
        };
        let max = self.config.max_incoming_per_position;
        self.write_position_once(
            "incoming",
            request,
            &line.sku,
            &line.location,
            true,
            writer,
            |p| {
                let extras = p.extras_mut();
                if extras.incoming.len() >= max {
                    return Err(Refusal::TooManyIncoming {
                        sku: line.sku.clone(),
                        location: line.location.clone(),
                    });
                }
                extras.incoming.push(Incoming {
                    qty: line.qty,
                    expected_at: request.expected_at,
                    reference: request.reference.clone(),
                });
                Ok(MovementKind::IncomingExpected)
            },
        )
    }

    /// A signed correction of on hand with a reason. On hand never goes
    /// below zero: such an adjustment is refused.
    pub fn adjust(
        &self,
        request: &AdjustmentRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<PositionView, Refusal> {
        if request.delta == 0 {
            return Err(Invalid::ZeroDelta.into());
        }
        if request.reason.trim().is_empty() {
            return Err(Invalid::MissingReason.into());
        }
        if request.delta.unsigned_abs() > u64::from(self.config.max_qty_per_line) {
            return Err(Invalid::QuantityTooLarge {
                line: 0,
                max: self.config.max_qty_per_line,
            }
            .into());
        }
        let writer = Writer {
            now,
            channel: None,
            reason: Some(&request.reason),
            reference: request.reference.as_deref(),
            key,
        };
        self.write_position_once(
            "adjust",
            request,
            &request.sku,
            &request.location,
            request.delta > 0,
            writer,
            |p| {
                let next = i64::from(p.on_hand) + request.delta;
                if next < 0 {
                    return Err(Refusal::InsufficientOnHand {
                        shortfalls: vec![Shortfall {
                            sku: request.sku.clone(),
                            location: request.location.clone(),
                            requested: Qty(
                                u32::try_from(request.delta.unsigned_abs()).unwrap_or(u32::MAX)
                            ),
                            available: Qty(p.on_hand),
                        }],
                    });
                }
                p.on_hand = u32::try_from(next)
                    .map_err(|_| overflow_at(&request.sku, &request.location))?;
                Ok(MovementKind::Adjustment)
            },
        )
    }

    /// A customer return: to on hand when sellable, else to the
    /// non-sellable bucket.
    pub fn return_units(
        &self,
        request: &ReturnRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<PositionView, Refusal> {
        self.validate_lines(std::slice::from_ref(&request.line), false)?;
        let line = &request.line;
        let writer = Writer {
            now,
            channel: Some(request.channel),
            reason: request.reason.as_deref(),
            reference: request.reference.as_deref(),
            key,
        };
        self.write_position_once(
            "return",
            request,
            &line.sku,
            &line.location,
            true,
            writer,
            |p| {
                let bucket = if request.sellable {
                    &mut p.on_hand
                } else {
                    &mut p.extras_mut().non_sellable
                };
                *bucket = bucket
                    .checked_add(line.qty.0)
                    .ok_or_else(|| overflow_at(&line.sku, &line.location))?;
                Ok(if request.sellable {
                    MovementKind::Return
                } else {
                    MovementKind::ReturnNonSellable
                })
            },
        )
    }

    /// An immediate sale of every line or none, within what the channel sees
    /// (so a POS sale never takes units held for a web order).
    pub fn sell(
        &self,
        request: &SaleRequest,
        now: TimestampMs,
        key: Option<&IdempotencyKey>,
    ) -> Result<Vec<PositionView>, Refusal> {
        self.validate_lines(&request.lines, false)?;
        self.idempotent(
            key,
            now,
            |version| Fingerprint::of(version, "sale", request),
            WriteOutput::Positions,
            WriteOutput::as_positions,
            || {
                let catalog = self.catalog.load();
                let merged = self.resolve_lines(&catalog, &request.lines)?;
                let mut locked = self.positions.lock_many(merged_keys(&merged));
                self.check_channel_view(
                    &catalog,
                    &mut locked,
                    request.channel,
                    &request.lines,
                    &merged,
                )?;
                let ctx = OpContext {
                    now,
                    channel: Some(request.channel),
                    reservation: None,
                    note: MovementNote::shared(None, request.reference.as_deref(), key),
                };
                let first_seq = self.journal.allocate(merged.len() as u64);
                let mut views = Vec::with_capacity(merged.len());
                for (
                    offset,
                    MergedLine {
                        key: pos_key,
                        loc,
                        first_line: line_index,
                        qty,
                    },
                ) in merged.iter().enumerate()
                {
                    let pos_key = pos_key.expect("checked lines have positions");
                    let position = locked
                        .get_mut(pos_key)
                        .expect("checked lines have positions");
                    let before = position.snapshot();
                    position.on_hand -= qty.0;
                    self.record(
                        &ctx,
                        MovementKind::Sale,
                        pos_key,
                        position,
                        before,
                        Seq(first_seq.0 + offset as u64),
                    );
                    views.push(self.view(
                        &catalog,
                        request.lines[*line_index].sku.clone(),
                        *loc,
                        Some(position),
                        None,
                        now,
                    ));
                }
                Ok(views)
            },
        )
    }
}

fn overflow(request: &CountRequest) -> Refusal {
    overflow_at(&request.sku, &request.location)
}

fn overflow_at(sku: &Sku, location: &LocationCode) -> Refusal {
    Refusal::QuantityOverflow {
        sku: sku.clone(),
        location: location.clone(),
    }
}
