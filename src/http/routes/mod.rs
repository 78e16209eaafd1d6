//! The routing table. Handlers live by area; each one checks its scope.

pub mod admin;
pub mod availability;
pub mod feeds;
pub mod keys;
pub mod pages;
pub mod reservations;
pub mod stock;
pub mod streams;
pub mod system;
pub mod table;

use std::sync::Arc;

use axum::Router;

use super::AppState;
use super::error::ApiError;
use super::error_codes::Code;
use table::{Routes, delete, get, post, put};

/// The router: every route of [`routes`].
pub fn router() -> Router<Arc<AppState>> {
    routes().into_router()
}

/// Every operation the router serves, with what its handler extracts.
pub fn specs() -> Vec<table::RouteSpec> {
    routes().into_specs()
}

/// The one table of routes: the router serves it, and [`specs`] lists it
/// for the OpenAPI test (register every route here, through `table`).
fn routes() -> Routes {
    Routes::new()
        .route("/v1/availability/batch", post(availability::batch))
        .route(
            "/v1/availability/{sku}",
            get(availability::sku_availability).options(pages::preflight_availability),
        )
        .route(
            "/v1/nearby",
            get(availability::nearby).options(pages::preflight_nearby),
        )
        .route("/v1/stock/import", post(stock::import))
        .route(
            "/v1/stock/{location}/{sku}",
            get(availability::position).put(stock::count),
        )
        .route("/v1/stock/{location}/{sku}/display", put(stock::display))
        .route("/v1/reservations", post(reservations::create))
        .route("/v1/reservations/{id}", get(reservations::get))
        .route("/v1/reservations/{id}/commit", post(reservations::commit))
        .route("/v1/reservations/{id}/release", post(reservations::release))
        .route("/v1/reservations/{id}/extend", post(reservations::extend))
        .route(
            "/v1/reservations/{id}/transfer",
            post(reservations::transfer),
        )
        .route("/v1/sales", post(stock::sale))
        .route("/v1/returns", post(stock::return_units))
        .route("/v1/receipts", post(stock::receipt))
        .route("/v1/incoming", post(stock::incoming))
        .route("/v1/adjustments", post(stock::adjustment))
        .route("/v1/movements/batch", post(stock::movement_batch))
        .route("/v1/locations", get(admin::list_locations))
        .route("/v1/locations/{location}", put(admin::put_location))
        .route("/v1/groups/{group}", put(admin::put_group))
        .route("/v1/policies", put(admin::put_policy))
        .route("/v1/keys", post(keys::create_key).get(keys::list_keys))
        .route("/v1/keys/{id}", delete(keys::revoke_key))
        .route("/v1/journal", get(admin::journal))
        .route("/v1/feeds/google/local-inventory", get(feeds::google))
        .route("/v1/feeds/meta/local-inventory", get(feeds::meta))
        .route(
            "/v1/streams/availability",
            get(streams::availability).options(pages::preflight_stream),
        )
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/cluster", get(admin::cluster))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi_json))
        .route("/docs", get(system::docs))
        .route("/sdk/omnistock.js", get(pages::sdk))
        .route("/console", get(pages::console))
        .fallback(|| async { ApiError::new(Code::NoRoute, "no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::MethodNotAllowed,
                "see /openapi.json for the methods of this route",
            )
        })
}
