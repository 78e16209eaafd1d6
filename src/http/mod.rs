//! The HTTP shell around the engine (axum): translation only. A handler
//! parses JSON into engine and ledger requests, authenticates the caller
//! and checks its scopes, calls one engine operation (or a ledger read), and
//! renders the outcome; it holds no stock state and reads no clock of its
//! own. Only this layer knows JSON and status codes.
//!
//! `app(state)` builds the whole router so tests can serve it on port 0.

pub mod auth;
pub mod body;
pub mod conditional;
pub mod dto;
pub mod error;
pub mod error_codes;
pub mod json;
pub mod openapi;
pub mod page_json;
pub mod probe;
pub mod publishable;
pub mod rate_limit;
pub mod request_metrics;
pub(crate) mod routes;
pub mod stream_quota;
mod timestamps;
pub(crate) mod track;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::Engine;
use crate::ledger::{IdempotencyKey, Ledger};
use auth::Caller;
use error::ApiError;
use error_codes::Code;
use rate_limit::RateLimiter;

/// Limits of the HTTP layer (the ledger has its own in `LedgerConfig`, the
/// engine its hold caps in `HoldPolicy`).
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
    /// Delay before a 429 (capped at its Retry-After): a client that
    /// ignores Retry-After waits instead of re-sending at once. Each waiting
    /// request holds its connection, so `--max-connections` bounds them.
    pub rate_limited_delay_ms: u64,
    /// A publishable key's requests per second from one client address
    /// (burst: twice as many); 0: no limit.
    pub rate_limit_per_address: u32,
    /// Live streams one publishable key may hold open at once.
    pub max_streams_per_key: usize,
    /// Live streams of publishable keys one client address may hold open.
    pub max_streams_per_address: usize,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 256 * 1024,
            max_batch_items: 1_000,
            max_import_errors_reported: 1_000,
            max_stream_subscribers: 10_000,
            body_read_timeout_ms: 10_000,
            rate_limited_delay_ms: 200,
            rate_limit_per_address: 50,
            max_streams_per_key: 5_000,
            max_streams_per_address: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

/// What the HTTP layer holds: the engine, and what only HTTP needs (rate
/// limits, body limits, metrics rendering, live-stream slots).
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Shared by every partition's state on a cluster node.
    pub rate_limiter: Arc<RateLimiter>,
    pub limits: HttpLimits,
    pub metrics: Option<PrometheusHandle>,
    pub request_metrics: request_metrics::RequestMetrics,
    /// Turns true when the server shuts down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// One permit per open live stream (`limits.max_stream_subscribers`).
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    /// Ad feeds: at most this many units (after the ads policy) is
    /// `limited_availability`.
    pub feed_low_stock_threshold: u32,
    /// What pages (publishable keys) are held to.
    pub pages: Arc<Pages>,
}

/// Limits of publishable keys' readers, and whether the console offers
/// the demo's flash sale.
pub struct Pages {
    /// Requests per publishable key and client address.
    pub address_rate_limiter: RateLimiter,
    /// Live streams per publishable key and per client address.
    pub stream_quota: stream_quota::StreamQuota,
    /// `serve --demo`: the console offers its flash-sale button.
    pub demo: bool,
}

impl Pages {
    pub fn new(limits: &HttpLimits, demo: bool) -> Pages {
        Pages {
            address_rate_limiter: RateLimiter::bounded(
                limits.rate_limit_per_address,
                limits.rate_limit_per_address.saturating_mul(2),
                MAX_ADDRESS_BUCKETS,
            ),
            stream_quota: stream_quota::StreamQuota::new(
                limits.max_streams_per_key,
                limits.max_streams_per_address,
            ),
            demo,
        }
    }
}

/// Client addresses (with their key) whose request rate is tracked at
/// once; beyond, idle ones are dropped first (see [`RateLimiter::bounded`]).
const MAX_ADDRESS_BUCKETS: usize = 100_000;

impl AppState {
    /// The ledger, for reads (writes go through the engine's operations).
    pub fn ledger(&self) -> &Arc<Ledger> {
        self.engine.ledger()
    }

    /// The same HTTP settings, rate limits and stream slots around another
    /// engine (a cluster node's partition engines share them).
    pub fn for_engine(&self, engine: Arc<Engine>) -> Arc<AppState> {
        Arc::new(AppState {
            engine,
            rate_limiter: Arc::clone(&self.rate_limiter),
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
            request_metrics: Default::default(),
            stopping: self.stopping.clone(),
            stream_slots: Arc::clone(&self.stream_slots),
            feed_low_stock_threshold: self.feed_low_stock_threshold,
            pages: Arc::clone(&self.pages),
        })
    }
}

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
