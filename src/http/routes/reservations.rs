//! Reservations: create, read, commit, release, extend, transfer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::engine::ReserveOrder;
use crate::http::auth::{Caller, Scope};
use crate::http::dto::{self, CommitBody, ExtendBody, ReservationJson, ReserveBody, TransferBody};
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiJson, ApiPath, JsonResponse, OptionalApiJson};
use crate::http::{AppState, IdempotencyHeader, idempotency_key};
use crate::ledger::{CommitRequest, HolderId, Qty, ReservationId, TransferRequest};

fn reservation_id(text: &str) -> ApiResult<ReservationId> {
    text.parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .map(ReservationId)
        .ok_or_else(|| ApiError::new(Code::ReservationNotFound, "no reservation has this id"))
}

fn seconds_to_ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1_000)
}

/// The customer a reservation's hold counts against (its cap is the
/// engine's `HoldPolicy`).
fn customer(customer_id: Option<&str>) -> ApiResult<Option<HolderId>> {
    customer_id
        .map(|customer| {
            HolderId::new(customer).map_err(|e| {
                ApiError::new(Code::InvalidId, format!("customer_id: {e}"))
                    .with("field", serde_json::json!("customer_id"))
            })
        })
        .transpose()
}

/// The engine's order for a reservation body, its lines validated.
pub fn order(body: &ReserveBody, lines: Vec<crate::ledger::Line>) -> ApiResult<ReserveOrder> {
    Ok(ReserveOrder {
        lines,
        channel: dto::channel(&body.channel)?,
        ttl_ms: seconds_to_ms(body.ttl_seconds),
        customer: customer(body.customer_id.as_deref())?,
    })
}

/// Hold units for a channel: every line or none.
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations", request_body = ReserveBody,
    params(crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 201, body = ReservationJson), (status = 404, description = "unknown location"), (status = 409, description = "insufficient stock, with `shortfalls`; or `hold_cap_exceeded`: the key or customer would hold more than its cap"), (status = 422, description = "invalid request")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<ReserveBody>,
) -> ApiResult<(StatusCode, JsonResponse<ReservationJson>)> {
    let lines = dto::lines(&body.lines, state.ledger().config().max_lines_per_request)?;
    caller.require_at(Scope::Reserve, lines.iter().map(|l| &l.location))?;
    let order = order(&body, lines)?;
    let key = idempotency_key(&idempotency, &caller)?;
    let held = state.engine.reserve(&caller.0, order, key.as_ref()).await?;
    Ok((
        StatusCode::CREATED,
        JsonResponse(ReservationJson::from(held)),
    ))
}

/// A reservation (held, or resolved within the retention time).
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations", params(("id" = String, Path)),
    responses((status = 200, body = ReservationJson), (status = 404, description = "not found")), security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<JsonResponse<ReservationJson>> {
    let id = reservation_id(&id)?;
    // A read stays a read: the view is one snapshot, taken under the
    // reservation's lock, and the locations checked are that snapshot's,
    // so a `pos` key is shown a reservation only as it was at its stores.
    // (Commit, release, extend and transfer act, so the ledger checks
    // their locations itself, in the same operation: `Caller::acting`.)
    let view = state.ledger().reservation(id).ok_or_else(|| {
        ApiError::new(
            Code::ReservationNotFound,
            format!("reservation {id} not found"),
        )
    })?;
    if !caller.has(Scope::Read) {
        caller.require_at(Scope::Reserve, view.lines.iter().map(|l| &l.location))?;
    }
    Ok(JsonResponse(ReservationJson::from(view)))
}

/// Commit (fulfil): committed units leave on hand; with `lines`, only those
/// quantities commit and the rest is released. The body is optional.
#[utoipa::path(post, path = "/v1/reservations/{id}/commit", tag = "reservations", params(("id" = String, Path), crate::http::openapi::IdempotencyKeyHeader),
    request_body(content = Option<CommitBody>, description = "optional: without a body (or an empty one) every line commits in full"),
    responses((status = 200, body = ReservationJson), (status = 404, description = "no reservation has this id"), (status = 409, description = "not held, or not enough on hand")), security(("bearer" = [])))]
pub async fn commit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiPath(id): ApiPath<String>,
    OptionalApiJson(body): OptionalApiJson<CommitBody>,
) -> ApiResult<JsonResponse<ReservationJson>> {
    let id = reservation_id(&id)?;
    let body = body.unwrap_or_default();
    let lines = body
        .lines
        .as_deref()
        .map(|l| dto::lines(l, state.ledger().config().max_lines_per_request))
        .transpose()?;
    let acting = caller.acting(Scope::Reserve)?;
    let key = idempotency_key(&idempotency, &caller)?;
    let request = CommitRequest { id, lines };
    let done = state
        .engine
        .write(|writes| writes.commit(&request, acting, key.as_ref()))
        .await?;
    Ok(JsonResponse(ReservationJson::from(done)))
}

/// Release (cancel): the units are available again at once.
#[utoipa::path(post, path = "/v1/reservations/{id}/release", tag = "reservations", params(("id" = String, Path), crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = ReservationJson), (status = 404, description = "no reservation has this id"), (status = 409, description = "not held")), security(("bearer" = [])))]
pub async fn release(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<JsonResponse<ReservationJson>> {
    let id = reservation_id(&id)?;
    let acting = caller.acting(Scope::Reserve)?;
    let key = idempotency_key(&idempotency, &caller)?;
    let released = state
        .engine
        .write(|writes| writes.release(id, acting, key.as_ref()))
        .await?;
    Ok(JsonResponse(ReservationJson::from(released)))
}

/// Extend: the hold now ends `ttl_seconds` from now.
#[utoipa::path(post, path = "/v1/reservations/{id}/extend", tag = "reservations", params(("id" = String, Path), crate::http::openapi::IdempotencyKeyHeader), request_body = ExtendBody,
    responses((status = 200, body = ReservationJson), (status = 404, description = "no reservation has this id"), (status = 409, description = "not held")), security(("bearer" = [])))]
pub async fn extend(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> ApiResult<JsonResponse<ReservationJson>> {
    let id = reservation_id(&id)?;
    let acting = caller.acting(Scope::Reserve)?;
    let key = idempotency_key(&idempotency, &caller)?;
    let ttl_ms = seconds_to_ms(body.ttl_seconds);
    let extended = state
        .engine
        .write(|writes| writes.extend(id, ttl_ms, acting, key.as_ref()))
        .await?;
    Ok(JsonResponse(ReservationJson::from(extended)))
}

/// Transfer: move a held line (or part of it) to another location, atomically.
#[utoipa::path(post, path = "/v1/reservations/{id}/transfer", tag = "reservations", params(("id" = String, Path), crate::http::openapi::IdempotencyKeyHeader), request_body = TransferBody,
    responses((status = 200, body = ReservationJson), (status = 404, description = "no reservation has this id, or unknown destination location"), (status = 409, description = "destination short, or not held")), security(("bearer" = [])))]
pub async fn transfer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> ApiResult<JsonResponse<ReservationJson>> {
    let id = reservation_id(&id)?;
    let request = TransferRequest {
        id,
        sku: json::sku("sku", &body.sku)?,
        from: json::location("from", &body.from)?,
        to: json::location("to", &body.to)?,
        qty: body.qty.map(Qty),
    };
    // The reservation's lines and the destination alike.
    let acting = caller.acting(Scope::Reserve)?;
    let key = idempotency_key(&idempotency, &caller)?;
    let moved = state
        .engine
        .write(|writes| writes.transfer(&request, acting, key.as_ref()))
        .await?;
    Ok(JsonResponse(ReservationJson::from(moved)))
}
