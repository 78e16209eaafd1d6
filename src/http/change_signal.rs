//! Tells live streams that the journal moved on.
//!
//! Every write calls [`ChangeSignal::publish`], so it must cost next to
//! nothing while nobody listens, which is the usual case: an atomic
//! `fetch_max` and an atomic load. `tokio::sync::watch` took a write lock
//! and notified eight wait lists on every write, whether or not a stream
//! was open: a lock every request shared.
//!
//! Architecture invariant: a write never takes a lock here unless a stream
//! is waiting at that moment.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ChangeSignal {
    /// The newest journal sequence published.
    latest: AtomicU64,
    /// Streams between "registered for a wake-up" and "woken or gone".
    waiting: AtomicUsize,
    notify: Notify,
}

impl ChangeSignal {
    pub fn new(latest: u64) -> ChangeSignal {
        ChangeSignal {
            latest: AtomicU64::new(latest),
            waiting: AtomicUsize::new(0),
            notify: Notify::new(),
        }
    }

    /// Records that the journal reached `seq` and wakes the waiting streams.
    /// Writers may publish out of order; the newest sequence wins.
    pub fn publish(&self, seq: u64) {
        // SeqCst pairs with `changed`: either this load sees a stream's
        // registration, or that stream's re-check sees this sequence.
        self.latest.fetch_max(seq, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::SeqCst)
    }

    /// Waits until the newest sequence differs from `*seen`, then stores it
    /// there. Cancel-safe (a stream waits for it in a `select!`).
    pub async fn changed(&self, seen: &mut u64) {
        loop {
            let latest = self.latest();
            if latest != *seen {
                *seen = latest;
                return;
            }
            let mut notified = pin!(self.notify.notified());
            // Registered before counting: a publish that sees the count
            // finds this waiter.
            notified.as_mut().enable();
            let _registered = Registered::new(&self.waiting);
            if self.latest() != *seen {
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

    #[tokio::test]
    async fn a_waiting_stream_wakes_on_publish_and_none_waits_for_nothing() {
        let signal = Arc::new(ChangeSignal::new(5));
        let mut seen = 5;
        let waiter = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move {
                signal.changed(&mut seen).await;
                seen
            }
        });
        // Wait until the stream is registered, then publish.
        while signal.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        signal.publish(7);
        let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .expect("the waiter ends");
        assert_eq!(seen, 7);
        assert_eq!(signal.waiting.load(Ordering::SeqCst), 0);

        // Out of order publishes keep the newest; a change already there
        // returns at once.
        signal.publish(6);
        assert_eq!(signal.latest(), 7);
        let mut seen = 3;
        signal.changed(&mut seen).await;
        assert_eq!(seen, 7);
    }

    #[tokio::test]
    async fn a_cancelled_wait_unregisters() {
        let signal = ChangeSignal::new(1);
        let mut seen = 1;
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
            let signal = Arc::new(ChangeSignal::new(0));
            for round in 1..=2_000u64 {
                let publisher = {
                    let signal = Arc::clone(&signal);
                    tokio::spawn(async move { signal.publish(round) })
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
