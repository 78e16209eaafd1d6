//! The HTTP shell around the ledger (axum). It parses JSON into ledger
//! requests, reads the clock once per request, checks keys and scopes, and
//! renders outcomes; it holds no stock state of its own.
//!
//! `app(state)` builds the whole router so tests can serve it on port 0.

pub mod auth;
pub mod body;
pub mod change_signal;
pub mod dto;
pub mod error;
pub mod error_codes;
pub mod json;
pub mod openapi;
pub mod probe;
pub mod rate_limit;
pub mod request_metrics;
mod routes;
mod track;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::write_behind::WriteBehind;
use crate::ledger::{IdempotencyKey, Ledger, TimestampMs};
use auth::{Caller, KeyStore};
use error::ApiError;
use error_codes::Code;
use rate_limit::RateLimiter;

/// Limits of the HTTP layer (the ledger has its own in `LedgerConfig`).
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest JSON body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Most items in one batch request.
    pub max_batch_items: usize,
    /// Most per-row errors an import reports (the count of all is always given).
    pub max_import_errors_reported: usize,
    /// Live streams open at once (each holds a journal cursor and a pending
    /// set); one more is refused with 503 `too_many_subscribers`.
    pub max_stream_subscribers: usize,
    /// A JSON body must arrive within this time (408 `body_timeout`): a
    /// client trickling a body cannot hold a request open for ever.
    pub body_read_timeout_ms: u64,
    /// Hold cap per customer (`customer_id`): most units held at once
    /// across its held reservations (0: none). 409 `hold_cap_exceeded`.
    pub max_held_units_per_customer: u64,
    /// Hold cap per API key without its own `max_held_units` (0: none).
    pub max_held_units_per_key: u64,
    /// Delay before a 429 (capped at its Retry-After): a client that
    /// ignores Retry-After waits instead of re-sending at once. Each waiting
    /// request holds its connection, so `--max-connections` bounds them.
    pub rate_limited_delay_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 256 * 1024,
            max_batch_items: 1_000,
            max_import_errors_reported: 1_000,
            max_stream_subscribers: 10_000,
            body_read_timeout_ms: 10_000,
            max_held_units_per_customer: 500,
            max_held_units_per_key: 0,
            rate_limited_delay_ms: 200,
        }
    }
}

pub struct AppState {
    pub ledger: Arc<Ledger>,
    pub keys: KeyStore,
    pub rate_limiter: RateLimiter,
    pub limits: HttpLimits,
    pub metrics: Option<PrometheusHandle>,
    pub request_metrics: request_metrics::RequestMetrics,
    pub counters: request_metrics::LedgerCounters,
    /// False until the engine has loaded its state and can serve.
    pub ready: AtomicBool,
    /// The write-behind store, when one is configured.
    pub write_behind: Option<Arc<WriteBehind>>,
    /// The newest journal sequence, published after every write (the
    /// ledger's change listener): live streams wait on it instead of polling.
    pub changes: Arc<change_signal::ChangeSignal>,
    /// Turns true when the server shuts down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// One permit per open live stream (`limits.max_stream_subscribers`).
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    /// Ad feeds: at most this many units (after the ads policy) is
    /// `limited_availability`.
    pub feed_low_stock_threshold: u32,
}

/// The flusher persists the keys through the application state.
impl crate::store::KeySource for AppState {
    fn generation(&self) -> u64 {
        self.keys.generation()
    }

    fn export(&self) -> crate::store::KeysRecord {
        self.keys.export()
    }
}

/// Wall-clock now for the ledger. The only clock read of a request.
pub use crate::clock::now;

/// The raw `Idempotency-Key` header of a request. An extractor of its own so
/// write handlers do not take (and clone) the whole `HeaderMap` per request.
pub struct IdempotencyHeader(pub Option<HeaderValue>);

const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyHeader(
            parts.headers.get(IDEMPOTENCY_KEY).cloned(),
        ))
    }
}

/// The `Idempotency-Key` header, namespaced by the API key so two callers'
/// keys never collide.
pub fn idempotency_key(
    header: &IdempotencyHeader,
    caller: &Caller,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = header.0.as_ref() else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        ApiError::new(
            Code::InvalidIdempotencyKey,
            "Idempotency-Key must be visible ASCII",
        )
    })?;
    if text.is_empty() || text.len() > 200 {
        return Err(ApiError::new(
            Code::InvalidIdempotencyKey,
            "Idempotency-Key must be 1 to 200 characters",
        ));
    }
    IdempotencyKey::new(&format!("{}:{text}", caller.0.id))
        .map(Some)
        .map_err(|e| ApiError::new(Code::InvalidIdempotencyKey, format!("Idempotency-Key: {e}")))
}

/// The whole API. Every route lives under `/v1` except the operational ones.
pub fn app(state: Arc<AppState>) -> Router {
    // No `DefaultBodyLimit` layer: `body::ApiBody` applies the body limit
    // where a body is read (one layer less around every route).
    routes::router()
        .layer(track::TrackLayer {
            state: Arc::clone(&state),
        })
        .with_state(state)
}

pub use routes::table::{Extracted, RouteSpec};

/// Every operation [`app`] serves (method, path, handler) with what its
/// handler extracts from a request, from the same table the router is built
/// from. The OpenAPI test holds the document equal to it.
pub fn route_specs() -> Vec<RouteSpec> {
    routes::specs()
}

/// Runs the ledger's housekeeping: expiry and idempotency purges, every
/// `interval`, so an expired hold returns to ATF within one interval (and at
/// once when anyone touches it). Up to `EXPIRIES_PER_SWEEP` per interval;
/// more wait for the next one.
pub async fn run_expiry(
    ledger: Arc<Ledger>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    run_expiry_with_clock(ledger, interval, stop, now).await;
}

/// Most expiries (and idempotency purges) one sweep does.
pub const EXPIRIES_PER_SWEEP: usize = 10_000;

/// [`run_expiry`] reading time from `clock` (tests jump it forwards and
/// backwards; the ledger never reads a clock itself).
pub async fn run_expiry_with_clock(
    ledger: Arc<Ledger>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    clock: impl Fn() -> TimestampMs,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let expired = ledger.tick(clock(), EXPIRIES_PER_SWEEP);
        if expired > 0 {
            metrics::counter!("omnistock_reservations_expired_total").increment(expired as u64);
        }
    }
}
