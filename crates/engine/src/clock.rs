//! The wall clock: the one place the process reads the time of day. The
//! ledger never reads a clock (time is an argument of every operation); the
//! shells read it here and pass it in, so tests can pass their own.

use std::time::{SystemTime, UNIX_EPOCH};

use omnistock_ledger::TimestampMs;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> TimestampMs {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    TimestampMs(i64::try_from(ms).unwrap_or(i64::MAX))
}
