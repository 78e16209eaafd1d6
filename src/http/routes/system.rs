//! Operational routes: health, readiness, metrics, the OpenAPI document and
//! its browsable page. No authentication, so probes and scrapers need no key.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::http::AppState;
use crate::http::openapi;

/// Liveness: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: state loaded and the engine serving.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "store": "memory"})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response()
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let ledger = &state.ledger;
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

pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}

pub async fn docs() -> Html<&'static str> {
    Html(openapi::DOCS_PAGE)
}
