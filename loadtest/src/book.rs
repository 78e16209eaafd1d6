//! The tool's own accounting of what it did to the stock, kept apart from the
//! engine so the end-of-run audit compares two independent records: per
//! position, the on-hand movements the tool saw acknowledged (receipts,
//! returns, sales, commits), whether an ERP count landed, the latest deadline
//! of a hold it left to expire, and the flash-sale grants.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::dataset::DataSet;

#[derive(Default)]
pub struct FlashRound {
    /// Buyers that got an answer.
    pub answered: AtomicU64,
    /// Units granted (every buyer asks for one).
    pub granted: AtomicU64,
}

pub struct Book {
    on_hand_delta: Vec<AtomicI64>,
    counted: Vec<AtomicBool>,
    /// Unix ms of the latest deadline of a hold the tool did not resolve.
    latest_hold_deadline_ms: AtomicU64,
    /// Flash-sale buyers handed out so far (round = buyer / buyers per round).
    flash_buyers_issued: AtomicU64,
    pub flash: Vec<FlashRound>,
    /// Next position the ERP import counts.
    import_cursor: AtomicU64,
    /// `as_of` of every count the run sends: after seeding, before any movement.
    pub as_of_ms: u64,
}

impl Book {
    pub fn new(data: &DataSet, as_of_ms: u64) -> Book {
        Book {
            on_hand_delta: (0..data.positions()).map(|_| AtomicI64::new(0)).collect(),
            counted: (0..data.positions())
                .map(|_| AtomicBool::new(false))
                .collect(),
            latest_hold_deadline_ms: AtomicU64::new(0),
            flash_buyers_issued: AtomicU64::new(0),
            flash: (0..data.flash_rounds())
                .map(|_| FlashRound::default())
                .collect(),
            import_cursor: AtomicU64::new(0),
            as_of_ms,
        }
    }

    /// An acknowledged on-hand movement (+ receipts and returns, - sales and commits).
    pub fn moved(&self, position: usize, delta: i64) {
        if let Some(slot) = self.on_hand_delta.get(position) {
            slot.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub fn counted(&self, position: usize) {
        if let Some(slot) = self.counted.get(position) {
            slot.store(true, Ordering::Relaxed);
        }
    }

    pub fn hold_left(&self, deadline_unix_ms: u64) {
        self.latest_hold_deadline_ms
            .fetch_max(deadline_unix_ms, Ordering::Relaxed);
    }

    pub fn latest_hold_deadline_ms(&self) -> u64 {
        self.latest_hold_deadline_ms.load(Ordering::Relaxed)
    }

    /// What on hand must be now: the count's value if one landed, else the
    /// initial count, plus every movement after it.
    pub fn expected_on_hand(&self, data: &DataSet, position: usize) -> i64 {
        let base = if self.counted[position].load(Ordering::Relaxed) {
            data.count_value(position)
        } else {
            data.initial[position]
        };
        base as i64 + self.on_hand_delta[position].load(Ordering::Relaxed)
    }

    pub fn was_counted(&self, position: usize) -> bool {
        self.counted[position].load(Ordering::Relaxed)
    }

    /// The next flash-sale buyer's round, or `None` once every round's buyers were handed out.
    pub fn next_flash_buyer(&self, data: &DataSet) -> Option<usize> {
        if data.flash_buyers == 0 {
            return None;
        }
        let buyer = self.flash_buyers_issued.fetch_add(1, Ordering::Relaxed);
        let round = (buyer / data.flash_buyers) as usize;
        (round < self.flash.len()).then_some(round)
    }

    /// The next `rows` positions for the ERP count (wrapping around).
    pub fn next_import_range(&self, data: &DataSet, rows: usize) -> Vec<usize> {
        // Regular positions only: a count at a flash-sale position would add units to the sale.
        let regular = (data.regular_skus * data.locations.len()).max(1);
        let start = self.import_cursor.fetch_add(rows as u64, Ordering::Relaxed) as usize;
        (start..start + rows.min(regular))
            .map(|i| i % regular)
            .collect()
    }
}
