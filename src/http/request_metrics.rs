//! Request counts, latency and response bytes by route, method and status,
//! with the metric handles cached: registering a labelled metric hashes its
//! labels and takes a registry lock, which is too much to do three times per
//! request. A hit costs a hash of the three labels and three atomic updates;
//! no allocation. (HELP texts: `server::metrics_catalog`.)

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
