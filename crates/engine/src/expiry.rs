//! The expiry sweeper: expired holds go back to ATF within one sweep
//! interval of their deadline (and at once when anything touches them), and
//! idempotency records past their retention are purged. The ledger never
//! reads a clock; the sweeper reads the engine's and passes it in.

use std::sync::Arc;
use std::time::Duration;

use omnistock_ledger::{Ledger, TimestampMs};
use tokio::sync::watch;

use crate::Engine;

/// Most expiries (and idempotency purges) one sweep does; more wait for
/// the next one, so a sweep never holds the ledger's shards for long.
pub const EXPIRIES_PER_SWEEP: usize = 10_000;

impl Engine {
    /// Expires every hold due by the engine's time now (the sweeper does
    /// this in bounded steps; a start, or a demo that moved its clock, does
    /// it at once). Returns how many expired.
    pub fn expire_due(&self) -> usize {
        let expired = self.ledger.tick(self.now(), usize::MAX);
        count_expired(expired);
        expired
    }

    /// Sweeps every `expiry_sweep_interval_ms` until `stop` turns true.
    pub async fn run_expiry(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.config.expiry_sweep_interval_ms.max(1));
        let ledger = Arc::clone(&self.ledger);
        sweep(ledger, interval, stop, move || self.now()).await;
    }
}

/// Sweeps `ledger` every `interval` at the time `clock` says (tests jump it
/// forwards and backwards) until `stop` turns true.
pub async fn sweep(
    ledger: Arc<Ledger>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    clock: impl Fn() -> TimestampMs,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        count_expired(ledger.tick(clock(), EXPIRIES_PER_SWEEP));
    }
}

pub(crate) fn count_expired(expired: usize) {
    if expired > 0 {
        metrics::counter!("omnistock_reservations_expired_total").increment(expired as u64);
    }
}
