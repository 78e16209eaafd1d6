//! The HTTP ceiling (`--target noop`): the same axum/tokio stack as omnistock,
//! parsing the same reservation body and answering at once, without a ledger,
//! authentication or metrics. Equivalent to `examples/noop_server.rs`, run as
//! its own process (`loadtest serve-noop`) like every target.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The shape of omnistock's `ReserveBody`, as strict (unknown fields refused).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    pub channel: String,
    pub lines: Vec<LineBody>,
    pub ttl_seconds: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    pub sku: String,
    pub location: String,
    pub qty: u32,
}

async fn reserve(Json(body): Json<ReserveBody>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({"id": "1", "state": "held", "channel": body.channel, "lines": body.lines})),
    )
}

async fn position(Path((location, sku)): Path<(String, String)>) -> Json<Value> {
    Json(
        json!({"sku": sku, "location": location, "on_hand": 1, "reserved": 0, "safety_stock": 0, "atf": 1, "ato": 1, "version": 1}),
    )
}

pub fn router() -> Router {
    Router::new()
        .route("/v1/reservations", post(reserve))
        .route("/v1/stock/{location}/{sku}", get(position))
        .route("/readyz", get(|| async { "ready" }))
        .route("/healthz", get(|| async { "ok" }))
}

pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("no-op target on {}", listener.local_addr()?);
    axum::serve(listener, router()).await
}
