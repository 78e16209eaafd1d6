//! Tells live streams that the journal moved on.
//!
//! Every write calls [`ChangeSignal::publish`], so it must cost next to
//! nothing while nobody listens, which is the usual case: an atomic add and
//! an atomic load. `tokio::sync::watch` took a write lock and notified
//! eight wait lists on every write, whether or not a stream was open: a
//! lock every request shared.
//!
//! It counts publishes rather than keeping the newest journal sequence:
//! writers append out of order, so a writer that finishes appending an
//! earlier sequence after a later one was published does not move the
//! head, yet a stream stopped at that gap must wake to read on.
//!
//! Architecture invariant: a write never takes a lock here unless a stream
//! is waiting at that moment.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct ChangeSignal {
    /// Publishes so far.
    version: AtomicU64,
    /// Streams between "registered for a wake-up" and "woken or gone".
    waiting: AtomicUsize,
    notify: Notify,
}

impl ChangeSignal {
    /// Records that the journal changed and wakes the waiting streams.
    pub fn publish(&self) {
        // SeqCst pairs with `changed`: either this load sees a stream's
        // registration, or that stream's re-check sees this publish.
        self.version.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Publishes so far: what a stream passes to [`Self::changed`].
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Waits until something was published after version `*seen`, then
    /// stores the new version there. Cancel-safe (a stream waits for it in
    /// a `select!`).
    pub async fn changed(&self, seen: &mut u64) {
        loop {
            let version = self.version();
            if version != *seen {
                *seen = version;
                return;
            }
            let mut notified = pin!(self.notify.notified());
            // Registered before counting: a publish that sees the count
            // finds this waiter.
            notified.as_mut().enable();
            let _registered = Registered::new(&self.waiting);
            if self.version() != *seen {
                continue;
            }
            notified.await;
        }
    }
}

/// Counts one waiting stream while alive (also when its wait is cancelled).
struct Registered<'a>(&'a AtomicUsize);

impl<'a> Registered<'a> {
    fn new(waiting: &'a AtomicUsize) -> Registered<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Registered(waiting)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Spawns a stream-like waiter from `seen`; returns the version it woke at.
    fn waiter(signal: &Arc<ChangeSignal>, mut seen: u64) -> tokio::task::JoinHandle<u64> {
        let signal = Arc::clone(signal);
        tokio::spawn(async move {
            signal.changed(&mut seen).await;
            seen
        })
    }

    async fn registered(signal: &ChangeSignal) {
        while signal.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn every_publish_wakes_a_waiting_stream() {
        let signal = Arc::new(ChangeSignal::default());
        signal.publish();
        let woken = waiter(&signal, signal.version());
        registered(&signal).await;
        // A writer that filled an earlier gap in the journal publishes
        // without moving the head: the stream must still wake.
        signal.publish();
        let seen = tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("the waiter wakes")
            .expect("the waiter ends");
        assert_eq!(seen, 2);
        assert_eq!(signal.waiting.load(Ordering::SeqCst), 0);

        // A publish the stream has not seen yet returns at once.
        let mut seen = 1;
        signal.changed(&mut seen).await;
        assert_eq!(seen, 2);
    }

    #[tokio::test]
    async fn a_cancelled_wait_unregisters() {
        let signal = ChangeSignal::default();
        let mut seen = signal.version();
        let timed_out =
            tokio::time::timeout(Duration::from_millis(20), signal.changed(&mut seen)).await;
        assert!(timed_out.is_err(), "nothing was published");
        assert_eq!(signal.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn no_publish_is_lost_between_check_and_wait() {
        // Publishers race a waiter many times; a lost wake-up would hang a
        // round (caught by the timeout).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let signal = Arc::new(ChangeSignal::default());
            for round in 1..=2_000u64 {
                let publisher = {
                    let signal = Arc::clone(&signal);
                    tokio::spawn(async move { signal.publish() })
                };
                let mut seen = round - 1;
                tokio::time::timeout(Duration::from_secs(5), signal.changed(&mut seen))
                    .await
                    .expect("no lost wake-up");
                assert_eq!(seen, round);
                publisher.await.expect("publisher ends");
            }
        });
    }
}
