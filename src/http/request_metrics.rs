//! Request counts, latency and response bytes by route, method and status,
//! with the metric handles cached: registering a labelled metric hashes its
//! labels and takes a registry lock, which is too much to do three times per
//! request. A hit costs a hash of the three labels and three atomic updates;
//! no allocation. (HELP texts: `server::metrics_catalog`.)

use std::cell::Cell;
use std::hash::BuildHasher;

use axum::http::Method;
use dashmap::DashMap;
use metrics::{Counter, Histogram};
use rustc_hash::FxBuildHasher;

use crate::ledger::{Refusal, ReservationView};

struct Handles {
    route: String,
    method: Method,
    status: u16,
    requests: Counter,
    latency: Histogram,
    body_bytes: Counter,
}

/// Distinct (route, method, status) triples are few (routes x statuses), so
/// the cache is small; it is bounded anyway, recording uncached past it.
const MAX_CACHED: usize = 4_096;

#[derive(Default)]
pub struct RequestMetrics {
    cache: DashMap<u64, Handles, FxBuildHasher>,
}

impl RequestMetrics {
    /// One answered request: `seconds` from its arrival to the end of its
    /// response body, `body_bytes` the bytes of that body.
    pub fn record(&self, route: &str, method: &Method, status: u16, seconds: f64, body_bytes: u64) {
        let key = FxBuildHasher.hash_one((route, method.as_str(), status));
        if let Some(h) = self.cache.get(&key)
            && h.route == route
            && h.method == method
            && h.status == status
        {
            h.requests.increment(1);
            h.latency.record(seconds);
            h.body_bytes.increment(body_bytes);
            return;
        }
        let requests = metrics::counter!("omnistock_http_requests_total", "route" => route.to_string(), "method" => method.as_str().to_string(), "status" => status.to_string());
        let latency = metrics::histogram!("omnistock_http_request_duration_seconds", "route" => route.to_string());
        let bytes = metrics::counter!("omnistock_http_response_body_bytes_total", "route" => route.to_string());
        requests.increment(1);
        latency.record(seconds);
        bytes.increment(body_bytes);
        if self.cache.len() < MAX_CACHED {
            self.cache.entry(key).or_insert(Handles {
                route: route.to_string(),
                method: method.clone(),
                status,
                requests,
                latency,
                body_bytes: bytes,
            });
        }
    }
}

thread_local! {
    /// Ledger writes that ran (were not answered from the idempotency store)
    /// on this thread; see [`note_write_ran`].
    static WRITES_RAN: Cell<u64> = const { Cell::new(0) };
}

/// Called by the ledger's change listener, which the ledger invokes
/// synchronously, on the calling thread, after every write it actually runs,
/// and never for an idempotent replay (a replay changes nothing). Comparing
/// [`writes_ran_on_this_thread`] before and after one synchronous ledger call
/// therefore tells a new outcome from a replayed one without a lock or an
/// allocation. (The ledger's API does not say which it was; a stored
/// outcome is indistinguishable from a new one.)
pub fn note_write_ran() {
    WRITES_RAN.with(|count| count.set(count.get().wrapping_add(1)));
}

pub fn writes_ran_on_this_thread() -> u64 {
    WRITES_RAN.with(Cell::get)
}

/// Counters of reservation outcomes, registered once.
pub struct LedgerCounters {
    pub granted: Counter,
    pub refused: Counter,
    /// Idempotent retries answered with the stored outcome: neither a new
    /// grant nor a new refusal.
    pub replayed: Counter,
    pub oversell_refused: Counter,
    /// False when the ledger's change listener is not ours (it was installed
    /// before): replays cannot be told apart then, and every outcome counts
    /// as new, as it did before replays were counted.
    pub replays_detected: bool,
}

impl LedgerCounters {
    pub fn new(replays_detected: bool) -> LedgerCounters {
        LedgerCounters {
            granted: metrics::counter!("omnistock_reservations_total", "outcome" => "granted"),
            refused: metrics::counter!("omnistock_reservations_total", "outcome" => "refused"),
            replayed: metrics::counter!("omnistock_reservations_total", "outcome" => "replayed"),
            oversell_refused: metrics::counter!("omnistock_oversell_refused_total"),
            replays_detected,
        }
    }

    /// Counts one reservation request's outcome. `ran`: the ledger ran the
    /// operation (see [`note_write_ran`]) rather than replaying a stored
    /// outcome.
    pub fn reservation(&self, outcome: &Result<ReservationView, Refusal>, ran: bool) {
        let replayed = self.replays_detected
            && !ran
            && match outcome {
                Ok(_) => true,
                // Refused before the idempotency store was consulted (shape),
                // or by it (key reused, in flight, full): new refusals, and
                // the ledger runs nothing for them either.
                Err(
                    Refusal::Invalid(_)
                    | Refusal::IdempotencyKeyReused
                    | Refusal::IdempotencyInFlight
                    | Refusal::IdempotencyStoreFull,
                ) => false,
                Err(_) => true,
            };
        if replayed {
            self.replayed.increment(1);
            return;
        }
        match outcome {
            Ok(_) => self.granted.increment(1),
            Err(refusal) => {
                self.refused.increment(1);
                if matches!(refusal, Refusal::InsufficientStock { .. }) {
                    self.oversell_refused.increment(1);
                }
            }
        }
    }
}
