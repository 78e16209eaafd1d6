//! Per-key request rate limiting: a token bucket per API key, refilled
//! continuously. One noisy key runs out of tokens and gets 429s; other keys
//! are untouched because each has its own bucket.

use std::time::Instant;

use dashmap::DashMap;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: DashMap<String, Bucket>,
    /// Most buckets kept (see [`RateLimiter::bounded`]).
    max_buckets: usize,
    /// When the buckets were last swept for idle ones (one sweep per
    /// refill time at most: a sweep walks every bucket).
    swept_at: parking_lot::Mutex<Option<Instant>>,
}

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// `per_second == 0` disables limiting.
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
            max_buckets: usize::MAX,
            swept_at: parking_lot::Mutex::new(None),
        }
    }

    /// At most `max_buckets` buckets (keyed by something clients choose,
    /// such as their address). When a new one would be one too many, the
    /// buckets idle long enough to be full again are dropped (nothing is
    /// lost: a full bucket is what a new one starts as), once per refill
    /// time at most; while every bucket is in use, a new caller is let
    /// through untracked (failing open: it is still held to its key's own
    /// rate, and refusing every newcomer would turn a flood of addresses
    /// into an outage for all new shoppers).
    pub fn bounded(per_second: u32, burst: u32, max_buckets: usize) -> RateLimiter {
        RateLimiter {
            max_buckets,
            ..RateLimiter::new(per_second, burst)
        }
    }

    /// Whether requests are limited at all (`per_second > 0`).
    pub fn is_enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes one token for `key`, or says how many seconds until one is back.
    /// Reads the clock (`now`) only when limiting is on.
    pub fn check(&self, key: &str, now: impl FnOnce() -> Instant) -> Result<(), u64> {
        if !self.is_enabled() {
            return Ok(());
        }
        let now = now();
        // Look up before inserting: no key allocation on the hot path.
        let mut bucket = match self.buckets.get_mut(key) {
            Some(bucket) => bucket,
            None if self.buckets.len() >= self.max_buckets && !self.drop_idle(now) => {
                return Ok(());
            }
            None => self
                .buckets
                .entry(key.to_string())
                .or_insert_with(|| Bucket {
                    tokens: self.burst,
                    refilled_at: now,
                }),
        };
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_second).ceil() as u64)
        }
    }

    /// Drops the buckets full again (unless a sweep ran within the refill
    /// time); whether there is room.
    fn drop_idle(&self, now: Instant) -> bool {
        let refill_s = self.burst / self.per_second;
        {
            let mut swept_at = self.swept_at.lock();
            let recent = swept_at
                .is_some_and(|at| now.saturating_duration_since(at).as_secs_f64() < refill_s);
            if recent {
                return self.buckets.len() < self.max_buckets;
            }
            *swept_at = Some(now);
        }
        self.buckets.retain(|_, bucket| {
            now.saturating_duration_since(bucket.refilled_at)
                .as_secs_f64()
                < refill_s
        });
        self.buckets.len() < self.max_buckets
    }

    /// Forgets a revoked key's bucket.
    pub fn forget(&self, key: &str) {
        self.buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.check("a", || t0).is_ok()));
        assert_eq!(limiter.check("a", || t0), Err(1));
        assert!(
            limiter.check("b", || t0).is_ok(),
            "keys have their own buckets"
        );
        assert!(
            limiter
                .check("a", || t0 + Duration::from_millis(110))
                .is_ok()
        );
        assert!(limiter.is_enabled());
        let off = RateLimiter::new(0, 0);
        assert!(!off.is_enabled());
        assert!(
            off.check("a", || panic!("no clock read when off")).is_ok(),
            "0 disables"
        );
    }

    #[test]
    fn a_bounded_limiter_drops_idle_buckets_and_lets_newcomers_through_when_all_are_busy() {
        let limiter = RateLimiter::bounded(10, 2, 2);
        let t0 = Instant::now();
        assert!(limiter.check("a", || t0).is_ok());
        assert!(limiter.check("b", || t0).is_ok());
        // Both buckets busy: a newcomer is let through, untracked.
        assert!((0..5).all(|_| limiter.check("c", || t0).is_ok()));
        assert!(!limiter.buckets.contains_key("c"));
        assert!(limiter.check("a", || t0).is_ok());
        assert_eq!(
            limiter.check("a", || t0),
            Err(1),
            "tracked ones still limited"
        );
        // Once the refill time (0.2 s) has passed, idle buckets go.
        let later = t0 + Duration::from_millis(300);
        assert!(limiter.check("c", || later).is_ok());
        assert!(limiter.buckets.contains_key("c"), "tracked now");
        assert!(limiter.buckets.len() <= 2);
    }
}
