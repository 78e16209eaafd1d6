//! Request counts and latency by route, method and status, with the metric
//! handles cached: registering a labelled metric hashes its labels and takes
//! a registry lock, which is too much to do twice per request. A hit costs a
//! hash of the three labels and two atomic updates; no allocation.

use std::hash::BuildHasher;

use axum::http::Method;
use dashmap::DashMap;
use metrics::{Counter, Histogram};
use rustc_hash::FxBuildHasher;

struct Handles {
    route: String,
    method: Method,
    status: u16,
    requests: Counter,
    latency: Histogram,
}

/// Distinct (route, method, status) triples are few (routes x statuses), so
/// the cache is small; it is bounded anyway, recording uncached past it.
const MAX_CACHED: usize = 4_096;

#[derive(Default)]
pub struct RequestMetrics {
    cache: DashMap<u64, Handles, FxBuildHasher>,
}

impl RequestMetrics {
    pub fn record(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let key = FxBuildHasher.hash_one((route, method.as_str(), status));
        if let Some(h) = self.cache.get(&key)
            && h.route == route
            && h.method == method
            && h.status == status
        {
            h.requests.increment(1);
            h.latency.record(seconds);
            return;
        }
        let requests = metrics::counter!("omnistock_http_requests_total", "route" => route.to_string(), "method" => method.as_str().to_string(), "status" => status.to_string());
        let latency = metrics::histogram!("omnistock_http_request_duration_seconds", "route" => route.to_string());
        requests.increment(1);
        latency.record(seconds);
        if self.cache.len() < MAX_CACHED {
            self.cache.entry(key).or_insert(Handles {
                route: route.to_string(),
                method: method.clone(),
                status,
                requests,
                latency,
            });
        }
    }
}

/// Counters of reservation outcomes, registered once.
pub struct LedgerCounters {
    pub granted: Counter,
    pub refused: Counter,
    pub oversell_refused: Counter,
}

impl Default for LedgerCounters {
    fn default() -> Self {
        LedgerCounters {
            granted: metrics::counter!("omnistock_reservations_total", "outcome" => "granted"),
            refused: metrics::counter!("omnistock_reservations_total", "outcome" => "refused"),
            oversell_refused: metrics::counter!("omnistock_oversell_refused_total"),
        }
    }
}
