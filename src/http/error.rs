//! One error type for the whole API: every refusal, rejection and limit maps
//! to a status and an `application/problem+json` body (RFC 9457) with a
//! stable machine-readable `code`. Channel teams build on the codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::json::rfc3339;
use crate::ledger::{Invalid, LocationCode, Refusal, Shortfall};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extra members of the problem object (e.g. `shortfalls`).
    pub extra: Map<String, Value>,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after_seconds: None,
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown API key",
            "send `Authorization: Bearer <key>` with a valid key",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The API key lacks a scope for this request",
            detail,
        )
    }

    /// 403 for a `pos` key acting at a location that is not its own: the
    /// same body whether the HTTP layer finds it in the request or the
    /// ledger in the reservation (`Refusal::LocationNotAllowed`).
    pub fn location_not_allowed(location: &LocationCode) -> ApiError {
        ApiError::forbidden(format!("this pos key may not act on location {location}"))
            .with("location", json!(location.as_str()))
    }

    pub fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "Invalid request",
            detail,
        )
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, "Malformed request", detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, "Not found", detail)
    }

    pub fn rate_limited(retry_after_seconds: u64) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            "this API key is over its request rate; retry after the delay in Retry-After",
        );
        error.retry_after_seconds = Some(retry_after_seconds.max(1));
        error
    }

    /// 503 with `Retry-After: 1`: the engine cannot serve this right now.
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "Temporarily unavailable",
            detail,
        );
        error.retry_after_seconds = Some(1);
        error
    }

    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }
}

fn shortfalls(list: &[Shortfall]) -> Value {
    Value::Array(
        list.iter()
            .map(|s| json!({"sku": s.sku.as_str(), "location": s.location.as_str(), "requested": s.requested.0, "available": s.available.0}))
            .collect(),
    )
}

fn invalid_code(invalid: &Invalid) -> &'static str {
    match invalid {
        Invalid::NoLines => "no_lines",
        Invalid::TooManyLines { .. } => "too_many_lines",
        Invalid::ZeroQuantity { .. } => "zero_quantity",
        Invalid::QuantityTooLarge { .. } => "quantity_too_large",
        Invalid::TtlOutOfRange { .. } => "ttl_out_of_range",
        Invalid::CommitMoreThanHeld { .. } => "more_than_held",
        Invalid::DuplicateLine { .. } => "duplicate_line",
        Invalid::TransferToSameLocation => "transfer_to_same_location",
        Invalid::MissingReason => "missing_reason",
        Invalid::ZeroDelta => "zero_delta",
        Invalid::BadId { .. } => "invalid_id",
        Invalid::Other(_) => "invalid_value",
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        use StatusCode as S;
        let detail = refusal.to_string();
        match &refusal {
            Refusal::Invalid(invalid) => ApiError::invalid(invalid_code(invalid), detail),
            Refusal::UnknownLocation(code) => ApiError::not_found("unknown_location", detail)
                .with("location", json!(code.as_str())),
            Refusal::UnknownGroup(name) => {
                ApiError::not_found("unknown_group", detail).with("group", json!(name.as_str()))
            }
            Refusal::IdempotencyKeyReused => ApiError::invalid("idempotency_key_reused", detail),
            Refusal::IdempotencyInFlight => {
                let mut error = ApiError::new(
                    S::CONFLICT,
                    "idempotency_in_flight",
                    "Request in progress",
                    detail,
                );
                error.retry_after_seconds = Some(1);
                error
            }
            Refusal::IdempotencyStoreFull => {
                let mut error = ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "idempotency_store_full",
                    "Too many idempotency keys",
                    detail,
                );
                error.retry_after_seconds = Some(5);
                error
            }
            Refusal::ReservationNotFound(_) => ApiError::not_found("reservation_not_found", detail),
            Refusal::LocationNotAllowed { location } => ApiError::location_not_allowed(location),
            Refusal::ReservationNotHeld { state, .. } => ApiError::new(
                S::CONFLICT,
                "reservation_not_held",
                "Reservation is not held",
                detail,
            )
            .with("state", json!(state.as_str())),
            Refusal::LineNotInReservation { .. } => {
                ApiError::invalid("line_not_in_reservation", detail)
            }
            Refusal::StaleVersion { expected, actual } => ApiError::new(
                S::PRECONDITION_FAILED,
                "stale_version",
                "Version mismatch",
                detail,
            )
            .with("expected_version", json!(expected.0))
            .with("actual_version", json!(actual.0)),
            Refusal::CountOlderThanLast { as_of, last_as_of } => ApiError::new(
                S::CONFLICT,
                "stale_count",
                "A newer count was applied",
                format!(
                    "a count taken at {} was already applied; this one was taken at {}",
                    rfc3339(*last_as_of),
                    rfc3339(*as_of)
                ),
            ),
            Refusal::AsOfBeyondHistory { as_of, horizon } => ApiError::new(
                S::CONFLICT,
                "as_of_beyond_history",
                "Count too old to reconcile",
                format!(
                    "as_of {} is older than the movement history kept (complete from {}); count again",
                    rfc3339(*as_of),
                    rfc3339(*horizon)
                ),
            ),
            Refusal::AsOfInFuture { as_of } => ApiError::invalid(
                "as_of_in_future",
                format!("as_of {} is in the future", rfc3339(*as_of)),
            ),
            Refusal::HoldCapExceeded {
                kind,
                holder,
                held,
                requested,
                max,
            } => ApiError::new(
                S::CONFLICT,
                "hold_cap_exceeded",
                "Hold cap exceeded",
                detail,
            )
            .with("holder_kind", json!(kind.as_str()))
            .with("holder", json!(holder.as_str()))
            .with("held", json!(held))
            .with("requested", json!(requested))
            .with("max", json!(max)),
            Refusal::InsufficientStock { shortfalls: list } => ApiError::new(
                S::CONFLICT,
                "insufficient_stock",
                "Insufficient stock",
                detail,
            )
            .with("shortfalls", shortfalls(list)),
            Refusal::InsufficientOnHand { shortfalls: list } => ApiError::new(
                S::CONFLICT,
                "insufficient_on_hand",
                "Not enough units on hand",
                detail,
            )
            .with("shortfalls", shortfalls(list)),
            Refusal::TooManyIncoming { .. } => ApiError::new(
                S::CONFLICT,
                "too_many_incoming",
                "Too many expected receipts",
                detail,
            ),
            Refusal::QuantityOverflow { .. } => ApiError::invalid("quantity_overflow", detail),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:omnistock:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extra: &self.extra,
        };
        let bytes =
            serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec());
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
