//! A node's view of its lease on one partition, failing closed.
//!
//! The lease itself lives in Redis (`SET {pN}:lease NODE NX PX ttl`, and an
//! epoch incremented on every acquisition). Here is what the node may
//! conclude from it: it serves the partition only until a local deadline
//! measured from when it *sent* the acquire or renew request, since Redis
//! started the TTL no earlier than that, less a margin for clock-rate drift
//! and the time between checking the deadline and acting. So the node stops
//! serving before Redis can hand the lease to anyone else. The epoch is the
//! fencing token: every write of a flush carries it and Redis refuses one
//! whose epoch is not the partition's current one, which covers what the
//! deadline cannot (a process paused between its check and its write).

use thiserror::Error;

/// The fencing token of one partition: incremented in Redis on every
/// acquisition of its lease, so a later owner always holds a larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// How long a lease lasts and when it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    ttl_ms: u64,
    renew_every_ms: u64,
    margin_ms: u64,
}

/// Timings under which a node could serve past its lease, or lose it to
/// one slow renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LeaseTimingError {
    #[error("the lease TTL must be at least 100 ms")]
    TtlTooShort,
    #[error("the safety margin must be shorter than half the TTL")]
    MarginTooLong,
    #[error(
        "renewals must come at least twice within the TTL less the margin, so that one failed renewal does not lose the lease"
    )]
    RenewTooRare,
}

impl LeaseTiming {
    /// What a node uses unless told otherwise: a lease of 3 s renewed
    /// every second, given up locally 500 ms before Redis would let it go.
    /// A killed node's partitions are free at most 3 s after its last
    /// renewal.
    pub const DEFAULT: LeaseTiming = LeaseTiming {
        ttl_ms: 3_000,
        renew_every_ms: 1_000,
        margin_ms: 500,
    };

    pub fn new(ttl_ms: u64, renew_every_ms: u64, margin_ms: u64) -> Result<Self, LeaseTimingError> {
        if ttl_ms < 100 {
            return Err(LeaseTimingError::TtlTooShort);
        }
        if margin_ms.saturating_mul(2) >= ttl_ms {
            return Err(LeaseTimingError::MarginTooLong);
        }
        if renew_every_ms == 0 || renew_every_ms.saturating_mul(2) > ttl_ms - margin_ms {
            return Err(LeaseTimingError::RenewTooRare);
        }
        Ok(LeaseTiming {
            ttl_ms,
            renew_every_ms,
            margin_ms,
        })
    }

    pub fn ttl_ms(self) -> u64 {
        self.ttl_ms
    }

    pub fn renew_every_ms(self) -> u64 {
        self.renew_every_ms
    }

    pub fn margin_ms(self) -> u64 {
        self.margin_ms
    }
}

/// What this node holds of one partition's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Not held: the partition is not served here.
    Free,
    /// Held under `epoch`; served until `serve_until_ms`, renewed from
    /// `renew_at_ms`.
    Held {
        epoch: Epoch,
        serve_until_ms: u64,
        renew_at_ms: u64,
    },
}

impl Lease {
    /// The lease was acquired with a request sent at `sent_at_ms`.
    pub fn acquired(timing: LeaseTiming, epoch: Epoch, sent_at_ms: u64) -> Lease {
        Lease::Held {
            epoch,
            serve_until_ms: sent_at_ms + timing.ttl_ms - timing.margin_ms,
            renew_at_ms: sent_at_ms + timing.renew_every_ms,
        }
    }

    /// A renewal sent at `sent_at_ms` succeeded. Answers can arrive out of
    /// order: an older renewal never shortens what a newer one granted.
    pub fn handle_renewed(&mut self, timing: LeaseTiming, sent_at_ms: u64) {
        if let Lease::Held {
            serve_until_ms,
            renew_at_ms,
            ..
        } = self
        {
            *serve_until_ms = (*serve_until_ms).max(sent_at_ms + timing.ttl_ms - timing.margin_ms);
            *renew_at_ms = (*renew_at_ms).max(sent_at_ms + timing.renew_every_ms);
        }
    }

    /// Redis refused a renewal (the lease or the epoch is someone else's):
    /// stop serving at once.
    pub fn handle_lost(&mut self) {
        *self = Lease::Free;
    }

    /// The epoch to serve under at `now_ms`, or `None`: not held, or held
    /// past its local deadline (fail closed: better refuse a request than
    /// serve it without the lease).
    pub fn serving(&self, now_ms: u64) -> Option<Epoch> {
        match *self {
            Lease::Held {
                epoch,
                serve_until_ms,
                ..
            } if now_ms < serve_until_ms => Some(epoch),
            _ => None,
        }
    }

    /// Whether a renewal should be sent at `now_ms`.
    pub fn renew_due(&self, now_ms: u64) -> bool {
        matches!(*self, Lease::Held { renew_at_ms, serve_until_ms, .. }
            if now_ms >= renew_at_ms && now_ms < serve_until_ms)
    }

    /// When this lease next needs attention (a renewal, or its deadline).
    pub fn poll_timeout(&self) -> Option<u64> {
        match *self {
            Lease::Free => None,
            Lease::Held {
                serve_until_ms,
                renew_at_ms,
                ..
            } => Some(renew_at_ms.min(serve_until_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: LeaseTiming = LeaseTiming::DEFAULT;

    #[test]
    fn timings_that_could_serve_past_the_lease_are_refused() {
        assert_eq!(
            LeaseTiming::new(50, 10, 5),
            Err(LeaseTimingError::TtlTooShort)
        );
        assert_eq!(
            LeaseTiming::new(1_000, 100, 500),
            Err(LeaseTimingError::MarginTooLong)
        );
        assert_eq!(
            LeaseTiming::new(3_000, 1_300, 500),
            Err(LeaseTimingError::RenewTooRare)
        );
        assert_eq!(
            LeaseTiming::new(3_000, 0, 500),
            Err(LeaseTimingError::RenewTooRare)
        );
        assert_eq!(
            LeaseTiming::new(3_000, 1_000, 500),
            Ok(LeaseTiming::DEFAULT)
        );
    }

    #[test]
    fn a_lease_is_served_until_its_local_deadline_only() {
        let lease = Lease::acquired(T, Epoch(7), 10_000);
        assert_eq!(lease.serving(10_000), Some(Epoch(7)));
        // Redis keeps it until 13,000; the node stops at 12,500.
        assert_eq!(lease.serving(12_499), Some(Epoch(7)));
        assert_eq!(lease.serving(12_500), None);
        assert_eq!(lease.serving(13_000), None);
    }

    #[test]
    fn renewal_extends_from_when_it_was_sent() {
        let mut lease = Lease::acquired(T, Epoch(1), 0);
        assert!(!lease.renew_due(999));
        assert!(lease.renew_due(1_000));
        assert_eq!(lease.poll_timeout(), Some(1_000));
        lease.handle_renewed(T, 1_000);
        assert_eq!(lease.serving(3_499), Some(Epoch(1)));
        assert_eq!(lease.poll_timeout(), Some(2_000));
        // A late answer to an older renewal shortens nothing.
        lease.handle_renewed(T, 400);
        assert_eq!(lease.serving(3_499), Some(Epoch(1)));
    }

    #[test]
    fn a_lost_lease_stops_serving_at_once() {
        let mut lease = Lease::acquired(T, Epoch(3), 0);
        lease.handle_lost();
        assert_eq!(lease.serving(1), None);
        assert_eq!(lease.poll_timeout(), None);
        // Renewing a lease no longer held does not bring it back.
        lease.handle_renewed(T, 2);
        assert_eq!(lease, Lease::Free);
    }

    #[test]
    fn a_lapsed_lease_is_not_renewed() {
        let lease = Lease::acquired(T, Epoch(3), 0);
        assert!(
            !lease.renew_due(2_500),
            "past the deadline: acquire again instead"
        );
    }
}
