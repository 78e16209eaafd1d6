//! Operational routes: health, readiness, metrics, the OpenAPI document and
//! its browsable page. No authentication, so probes and scrapers need no key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::engine::write_behind::StoreStatus;
use crate::http::AppState;
use crate::http::json::rfc3339;
use crate::http::openapi;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "the process answers", body = crate::http::openapi::Health)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: state loaded and the engine serving. With a store it also
/// reports the write-behind: `degraded` (Redis down, serving from memory)
/// stays 200 in async mode, where writes are still acknowledged, and is 503
/// in sync mode, where they cannot be.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "ready, or degraded in async mode (serving from memory)", body = crate::http::openapi::Readiness),
        (status = 503, description = "loading, failed, or degraded in sync mode", body = crate::http::openapi::Readiness)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.engine.is_ready();
    let Some(write_behind) = state.engine.write_behind() else {
        return if ready {
            (
                StatusCode::OK,
                Json(json!({"status": "ready", "store": "memory"})),
            )
                .into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "loading", "store": "memory"})),
            )
                .into_response()
        };
    };
    let health = write_behind.health();
    let sync = write_behind.config().sync;
    let (status, code) = match (ready, &health.status) {
        (_, StoreStatus::Failed) => ("failed", StatusCode::SERVICE_UNAVAILABLE),
        (false, _) | (_, StoreStatus::Loading) => ("loading", StatusCode::SERVICE_UNAVAILABLE),
        (true, StoreStatus::Degraded) if sync => ("degraded", StatusCode::SERVICE_UNAVAILABLE),
        (true, StoreStatus::Degraded) => ("degraded", StatusCode::OK),
        (true, StoreStatus::Healthy) => ("ready", StatusCode::OK),
    };
    (
        code,
        Json(json!({
            "status": status,
            "store": "redis",
            "durability": if sync { "sync" } else { "async" },
            "write_behind": {
                "state": health.status.as_str(),
                "backlog_items": health.backlog_items,
                "flush_lag_ms": health.flush_lag_ms,
                "consecutive_failures": health.consecutive_failures,
                "last_error": health.last_error,
                "last_error_at": health.last_error_at.map(rfc3339),
                "flushes": health.flushes,
                "flush_errors": health.flush_errors,
                "full_rewrites": health.full_rewrites,
                "stream_entries_dropped": health.stream_dropped,
            },
        })),
    )
        .into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let ledger = state.ledger();
    metrics::gauge!("omnistock_positions").set(ledger.position_count() as f64);
    metrics::gauge!("omnistock_reservations_stored").set(ledger.reservation_count() as f64);
    metrics::gauge!("omnistock_idempotency_keys").set(ledger.idempotency_key_count() as f64);
    metrics::gauge!("omnistock_journal_head").set(ledger.journal_head().0 as f64);
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}

/// The API's browsable documentation: one self-contained page rendering
/// `/openapi.json` (no external resources).
#[utoipa::path(get, path = "/docs", tag = "system",
    responses((status = 200, description = "an HTML page", content_type = "text/html", body = String)))]
pub async fn docs() -> Html<&'static str> {
    Html(openapi::DOCS_PAGE)
}
