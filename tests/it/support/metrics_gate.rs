//! The metrics recorder is process-wide (the `metrics` facade has one
//! global recorder), and every test of this binary runs in this one process,
//! in parallel. Most tests do not care what the counters say. The one that
//! compares exact counter deltas (`metrics.rs`: a replay counted once as
//! `replayed`, a feed counted once) would see another test's reservations
//! and feed requests as its own, so it has the recorder to itself
//! (`MetricsAlone`) while every other in-process engine holds a share
//! (`MetricsShare`, taken by `support::engine::start_engine`).
//!
//! Shares never wait for a test that only waits to be alone: a test may
//! hold one engine while it starts another (taking a second share), and
//! must not deadlock behind a waiting `MetricsAlone`. The test that wants
//! to be alone waits until no engine of any other test is running, which
//! happens between tests.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Engines holding a share, and whether a test has the recorder to itself.
struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

static GATE: Gate = Gate {
    state: Mutex::new((0, false)),
    changed: Condvar::new(),
};

fn lock() -> MutexGuard<'static, (usize, bool)> {
    // A panicking test must not fail the others: the counts stay right
    // whatever panicked (guards only change them in `take` and `drop`).
    GATE.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Held by every in-process engine started with `start_engine` (through
/// `support::engine::Running`) while it lives.
pub struct MetricsShare(());

impl MetricsShare {
    /// Waits while a test has the recorder to itself, then takes a share.
    pub fn take() -> MetricsShare {
        let mut state = lock();
        while state.1 {
            state = GATE
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.0 += 1;
        MetricsShare(())
    }
}

impl Drop for MetricsShare {
    fn drop(&mut self) {
        lock().0 -= 1;
        GATE.changed.notify_all();
    }
}

/// The recorder to this test alone: no other test's in-process engine runs
/// while it is held. Start the test's own engine with
/// `support::engine::start_engine_alone`.
pub struct MetricsAlone(());

impl MetricsAlone {
    /// Waits until no in-process engine runs and no other test is alone.
    pub fn take() -> MetricsAlone {
        let mut state = lock();
        while state.0 > 0 || state.1 {
            state = GATE
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.1 = true;
        MetricsAlone(())
    }
}

impl Drop for MetricsAlone {
    fn drop(&mut self) {
        lock().1 = false;
        GATE.changed.notify_all();
    }
}
