//! One SKU at one location: the unit of locking, versioning and publishing.

use std::collections::VecDeque;

use super::ids::{Qty, Seq, TimestampMs};

/// Flag bit of `Position::published_lag`: what the ads channel publishes
/// last changed with a catalog change, at the shard's mark.
pub(crate) const PUBLISHED_BY_CATALOG: u32 = 1 << 31;
/// Largest lag kept; beyond it the lag saturates (the published version is
/// then over-estimated: a row may be listed again, never missed).
pub(crate) const MAX_PUBLISHED_LAG: u32 = PUBLISHED_BY_CATALOG - 1;

/// The stored form, kept small on purpose (48 bytes with its key): a million
/// positions must fit in 128 MB with the hash table's overhead. Rarely used
/// parts live behind `extras`, allocated on first use.
#[derive(Clone, Debug, Default)]
pub(crate) struct Position {
    pub on_hand: u32,
    pub reserved: u32,
    pub safety_stock: u32,
    /// Sequences from the last change of what the ads channel publishes
    /// (its ATF after its policy, the display flag) to `version`, saturating:
    /// `version - published_lag` bounds that change from above, so an
    /// incremental feed lists only rows whose published values changed. A
    /// lag rather than a second `Seq` keeps `Position` at 40 bytes.
    ///
    /// The top bit ([`PUBLISHED_BY_CATALOG`]) says the last change came
    /// after `version`, from a change of the ads policy: it happened at the
    /// shard's catalog mark (`Ledger::publish_marks`), which a lag cannot
    /// express.
    pub published_lag: u32,
    /// Sequence of the latest change.
    pub version: Seq,
    /// `as_of` of the latest absolute count applied (`MIN`: none).
    pub last_count_as_of: TimestampMs,
    pub extras: Option<Box<PositionExtras>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PositionExtras {
    pub incoming: Vec<Incoming>,
    /// On-hand movements (sales, commits, receipts, returns, adjustments),
    /// oldest first, bounded by `LedgerConfig::position_history_len`.
    pub history: VecDeque<OnHandMovement>,
    /// Time of the newest movement dropped from `history` (`MIN`: none).
    pub history_horizon: TimestampMs,
    /// Returned units that cannot be sold again (damaged, opened); rare,
    /// so kept here.
    pub non_sellable: u32,
    /// The units here are display models: shown in the store, not sold off
    /// the shelf (ATF 0 for every channel; feeds say `on_display_to_order`).
    /// Kept in the extras because it is rare and `Position` must stay small.
    pub display_only: bool,
}

/// An expected receipt (purchase order, transfer in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub qty: Qty,
    pub expected_at: TimestampMs,
    /// The document it is expected under; a receipt with the same reference
    /// consumes it.
    pub reference: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct OnHandMovement {
    pub at: TimestampMs,
    pub delta: i64,
}

impl Position {
    pub fn new() -> Position {
        Position {
            last_count_as_of: TimestampMs::MIN,
            ..Position::default()
        }
    }

    /// ATF = max(0, on_hand - reserved - safety_stock); 0 at a display-only
    /// position (its units are not for sale).
    pub fn atf(&self) -> u32 {
        if self.display_only() {
            return 0;
        }
        self.on_hand
            .saturating_sub(self.reserved)
            .saturating_sub(self.safety_stock)
    }

    pub fn non_sellable(&self) -> u32 {
        self.extras.as_ref().map_or(0, |extras| extras.non_sellable)
    }

    /// The newest sequence at which the ads channel's published values
    /// (ATF after its policy, display flag) may have changed. `catalog_mark`
    /// is the position's shard's mark (used only when a catalog change
    /// changed the published values after the last write).
    pub fn published_version(&self, catalog_mark: impl FnOnce() -> Seq) -> Seq {
        if self.published_lag & PUBLISHED_BY_CATALOG != 0 {
            return catalog_mark().max(self.version);
        }
        Seq(self.version.0.saturating_sub(u64::from(self.published_lag)))
    }

    /// Moves the version to `seq`; `published_changed` says whether what
    /// the ads channel publishes changed with it.
    pub fn advance_version(
        &mut self,
        seq: Seq,
        published_changed: bool,
        catalog_mark: impl FnOnce() -> Seq,
    ) {
        self.published_lag = if published_changed {
            0
        } else {
            let gap = seq.0.saturating_sub(self.published_version(catalog_mark).0);
            u32::try_from(gap).map_or(MAX_PUBLISHED_LAG, |gap| gap.min(MAX_PUBLISHED_LAG))
        };
        self.version = seq;
    }

    /// What the ads channel publishes changed with a catalog change, at the
    /// shard's (new) mark.
    pub fn mark_published_by_catalog(&mut self) {
        self.published_lag = PUBLISHED_BY_CATALOG;
    }

    /// The lag to store: a catalog mark is stored as no lag. After a
    /// restart, cursors from before the catalog's last change are answered
    /// in full, so the mark is not needed there; later cursors are above it.
    pub fn stored_published_lag(&self) -> u32 {
        if self.published_lag & PUBLISHED_BY_CATALOG != 0 {
            0
        } else {
            self.published_lag
        }
    }

    pub fn display_only(&self) -> bool {
        self.extras
            .as_ref()
            .is_some_and(|extras| extras.display_only)
    }

    /// Sets the display-only flag; clearing it never allocates extras.
    pub fn set_display_only(&mut self, display_only: bool) {
        if display_only {
            self.extras_mut().display_only = true;
        } else if let Some(extras) = &mut self.extras {
            extras.display_only = false;
        }
    }

    /// Incoming units expected no later than `horizon_end`.
    pub fn incoming_until(&self, horizon_end: TimestampMs) -> u64 {
        self.extras.as_ref().map_or(0, |extras| {
            extras
                .incoming
                .iter()
                .filter(|i| i.expected_at <= horizon_end)
                .map(|i| u64::from(i.qty.0))
                .sum()
        })
    }

    pub fn extras_mut(&mut self) -> &mut PositionExtras {
        self.extras.get_or_insert_with(|| {
            Box::new(PositionExtras {
                history_horizon: TimestampMs::MIN,
                ..PositionExtras::default()
            })
        })
    }

    /// Records an on-hand change for later `as_of` counts, dropping the oldest
    /// beyond `max_len` and remembering how far back the history is complete.
    pub fn remember_on_hand_change(&mut self, at: TimestampMs, delta: i64, max_len: usize) {
        if max_len == 0 || delta == 0 {
            return;
        }
        let extras = self.extras_mut();
        while extras.history.len() >= max_len {
            if let Some(dropped) = extras.history.pop_front() {
                extras.history_horizon = extras.history_horizon.max(dropped.at);
            }
        }
        extras.history.push_back(OnHandMovement { at, delta });
    }

    /// Sum of on-hand movements strictly after `as_of`, or the history horizon
    /// if movements after `as_of` may have been dropped.
    pub fn on_hand_changes_after(&self, as_of: TimestampMs) -> Result<i64, TimestampMs> {
        let Some(extras) = &self.extras else {
            return Ok(0);
        };
        if as_of < extras.history_horizon {
            return Err(extras.history_horizon);
        }
        Ok(extras
            .history
            .iter()
            .filter(|m| m.at > as_of)
            .map(|m| m.delta)
            .sum())
    }

    /// What a change is measured against: quantities plus incoming units.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self.counts(),
            incoming: self.incoming_until(TimestampMs(i64::MAX)),
            atf: self.atf(),
            display_only: self.display_only(),
            existed: self.version != Seq(0),
        }
    }

    pub fn counts(&self) -> PositionCounts {
        PositionCounts {
            on_hand: Qty(self.on_hand),
            reserved: Qty(self.reserved),
            safety_stock: Qty(self.safety_stock),
            non_sellable: Qty(self.non_sellable()),
        }
    }
}

/// A position's quantities before a change, to derive the journal's deltas.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    pub counts: PositionCounts,
    pub incoming: u64,
    /// What publishing depends on.
    pub atf: u32,
    pub display_only: bool,
    pub existed: bool,
}

/// The absolute quantities of a position, as carried in journal entries so a
/// consumer never needs to replay deltas to know the current state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PositionCounts {
    pub on_hand: Qty,
    pub reserved: Qty,
    pub safety_stock: Qty,
    pub non_sellable: Qty,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atf_never_negative() {
        let cases = [
            (10, 3, 2, 5),
            (10, 10, 0, 0),
            (2, 5, 0, 0),
            (5, 0, 9, 0),
            (0, 0, 0, 0),
        ];
        for (on_hand, reserved, safety_stock, atf) in cases {
            let p = Position {
                on_hand,
                reserved,
                safety_stock,
                ..Position::new()
            };
            assert_eq!(p.atf(), atf, "{on_hand} {reserved} {safety_stock}");
        }
    }

    #[test]
    fn history_is_bounded_and_tracks_horizon() {
        let mut p = Position::new();
        for t in 1..=5 {
            p.remember_on_hand_change(TimestampMs(t * 10), -1, 3);
        }
        // Kept 30, 40, 50; dropped 10 and 20.
        assert_eq!(p.on_hand_changes_after(TimestampMs(25)), Ok(-3));
        assert_eq!(p.on_hand_changes_after(TimestampMs(20)), Ok(-3));
        assert_eq!(p.on_hand_changes_after(TimestampMs(45)), Ok(-1));
        assert_eq!(
            p.on_hand_changes_after(TimestampMs(19)),
            Err(TimestampMs(20))
        );
    }

    #[test]
    fn stored_position_is_small() {
        // Memory per position is a product target; this guards the layout.
        assert!(
            std::mem::size_of::<Position>() <= 40,
            "{}",
            std::mem::size_of::<Position>()
        );
    }
}
