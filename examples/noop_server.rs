//! The HTTP ceiling for BENCHMARKS.md: the same axum/tokio stack with handlers
//! that parse the same requests as omnistock's and answer at once, without
//! touching a ledger. `cargo run --release --example noop_server -- 127.0.0.1:18090`

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use omnistock::http::dto::ReserveBody;
use serde_json::{Value, json};

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

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let app = Router::new()
                .route("/v1/reservations", post(reserve))
                .route("/v1/stock/{location}/{sku}", get(position));
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!("no-op server on {addr}");
            axum::serve(listener, app).await
        })
}
