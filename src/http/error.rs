//! One error type for the whole API: every refusal, rejection and limit is
//! a [`Code`] of the table in `http/error_codes.rs` (which gives its status,
//! title and `type`) with a `detail`, answered as an
//! `application/problem+json` body (RFC 9457). Channel teams build on the
//! codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::error_codes::Code;
use super::timestamps::rfc3339;
use crate::engine::{KeyWriteError, NoRandomness, NotDurable, WriteError};
use crate::ledger::{Invalid, LocationCode, Refusal, Shortfall};

/// A problem to answer with. Built from a [`Code`] (its status, title and
/// `type` come from the table in `http/error_codes.rs`) and a `detail`:
/// no code string, status or title is given here.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub detail: String,
    /// Extra members of the problem object (e.g. `shortfalls`).
    pub extra: Map<String, Value>,
    /// `Retry-After`: the code's own unless set with [`ApiError::retry_after`].
    pub retry_after_seconds: Option<u64>,
    /// A refusal of a page's request, once its origin is known to be one
    /// of its key's: answered with CORS for it, so the page can read why
    /// (and when to retry).
    pub page_origin: Option<HeaderValue>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            extra: Map::new(),
            retry_after_seconds: code.retry_after_seconds(),
            page_origin: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// Overrides the code's `Retry-After` (at least one second).
    /// Answered with CORS for `origin` (see [`ApiError::page_origin`]).
    pub fn for_page(mut self, origin: Option<&HeaderValue>) -> ApiError {
        self.page_origin = origin.cloned();
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            Code::Unauthorized,
            "send `Authorization: Bearer <key>` with a valid key",
        )
    }

    /// 403 for a `pos` key acting at a location that is not its own: the
    /// same body whether the HTTP layer finds it in the request or the
    /// ledger in the reservation (`Refusal::LocationNotAllowed`).
    pub fn location_not_allowed(location: &LocationCode) -> ApiError {
        ApiError::new(
            Code::Forbidden,
            format!("this pos key may not act on location {location}"),
        )
        .with("location", json!(location.as_str()))
    }

    pub fn rate_limited(retry_after_seconds: u64) -> ApiError {
        ApiError::new(
            Code::RateLimited,
            "this API key is over its request rate; retry after the delay in Retry-After",
        )
        .retry_after(retry_after_seconds)
    }
}

fn shortfalls(list: &[Shortfall]) -> Value {
    Value::Array(
        list.iter()
            .map(|s| json!({"sku": s.sku.as_str(), "location": s.location.as_str(), "requested": s.requested.0, "available": s.available.0}))
            .collect(),
    )
}

/// The code of each shape refusal. Exhaustive, like [`From<Refusal>`]: a
/// new `Invalid` does not compile until it has its code.
fn invalid_code(invalid: &Invalid) -> Code {
    match invalid {
        Invalid::NoLines => Code::NoLines,
        Invalid::TooManyLines { .. } => Code::TooManyLines,
        Invalid::ZeroQuantity { .. } => Code::ZeroQuantity,
        Invalid::QuantityTooLarge { .. } => Code::QuantityTooLarge,
        Invalid::TtlOutOfRange { .. } => Code::TtlOutOfRange,
        Invalid::CommitMoreThanHeld { .. } => Code::MoreThanHeld,
        Invalid::DuplicateLine { .. } => Code::DuplicateLine,
        Invalid::TransferToSameLocation => Code::TransferToSameLocation,
        Invalid::MissingReason => Code::MissingReason,
        Invalid::ZeroDelta => Code::ZeroDelta,
        Invalid::BadId { .. } => Code::InvalidId,
        Invalid::Other(_) => Code::InvalidValue,
    }
}

/// A sync-mode write that was applied but not stored in time: 503, and the
/// client retries with the same `Idempotency-Key` to get the outcome.
impl From<NotDurable> for ApiError {
    fn from(error: NotDurable) -> ApiError {
        ApiError::new(
            Code::NotDurable,
            format!(
                "{error}; the write is applied in memory and will be stored when the store is back: \
                 retry with the same Idempotency-Key to get its outcome"
            ),
        )
    }
}

impl From<NoRandomness> for ApiError {
    fn from(error: NoRandomness) -> ApiError {
        ApiError::new(Code::Internal, error.to_string())
    }
}

impl From<KeyWriteError> for ApiError {
    fn from(error: KeyWriteError) -> ApiError {
        match error {
            KeyWriteError::TooManyKeys { .. } => {
                ApiError::new(Code::TooManyKeys, error.to_string())
            }
            KeyWriteError::NoRandomness(error) => error.into(),
            KeyWriteError::NotDurable(error) => error.into(),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> ApiError {
        match error {
            WriteError::Refused(refusal) => refusal.into(),
            WriteError::NotDurable(not_durable) => not_durable.into(),
        }
    }
}

/// Every refusal's code, and the members it adds. The ledger knows no codes
/// or statuses: this mapping is the HTTP layer's, exhaustive (no wildcard),
/// so a new refusal does not compile until it is mapped.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let detail = refusal.to_string();
        match &refusal {
            Refusal::Invalid(invalid) => ApiError::new(invalid_code(invalid), detail),
            Refusal::UnknownLocation(code) => {
                ApiError::new(Code::UnknownLocation, detail).with("location", json!(code.as_str()))
            }
            Refusal::UnknownGroup(name) => {
                ApiError::new(Code::UnknownGroup, detail).with("group", json!(name.as_str()))
            }
            Refusal::IdempotencyKeyReused => ApiError::new(Code::IdempotencyKeyReused, detail),
            Refusal::IdempotencyInFlight => ApiError::new(Code::IdempotencyInFlight, detail),
            Refusal::IdempotencyStoreFull => ApiError::new(Code::IdempotencyStoreFull, detail),
            Refusal::ReservationNotFound(_) => ApiError::new(Code::ReservationNotFound, detail),
            Refusal::LocationNotAllowed { location } => ApiError::location_not_allowed(location),
            Refusal::ReservationNotHeld { state, .. } => {
                ApiError::new(Code::ReservationNotHeld, detail).with("state", json!(state.as_str()))
            }
            Refusal::LineNotInReservation { .. } => {
                ApiError::new(Code::LineNotInReservation, detail)
            }
            Refusal::StaleVersion { expected, actual } => ApiError::new(Code::StaleVersion, detail)
                .with("expected_version", json!(expected.0))
                .with("actual_version", json!(actual.0)),
            Refusal::CountOlderThanLast { as_of, last_as_of } => ApiError::new(
                Code::StaleCount,
                format!(
                    "a count taken at {} was already applied; this one was taken at {}",
                    rfc3339(*last_as_of),
                    rfc3339(*as_of)
                ),
            ),
            Refusal::AsOfBeyondHistory { as_of, horizon } => ApiError::new(
                Code::AsOfBeyondHistory,
                format!(
                    "as_of {} is older than the movement history kept (complete from {}); count again",
                    rfc3339(*as_of),
                    rfc3339(*horizon)
                ),
            ),
            Refusal::AsOfInFuture { as_of } => ApiError::new(
                Code::AsOfInFuture,
                format!("as_of {} is in the future", rfc3339(*as_of)),
            ),
            Refusal::HoldCapExceeded {
                kind,
                holder,
                held,
                requested,
                max,
            } => ApiError::new(Code::HoldCapExceeded, detail)
                .with("holder_kind", json!(kind.as_str()))
                .with("holder", json!(holder.as_str()))
                .with("held", json!(held))
                .with("requested", json!(requested))
                .with("max", json!(max)),
            Refusal::InsufficientStock { shortfalls: list } => {
                ApiError::new(Code::InsufficientStock, detail).with("shortfalls", shortfalls(list))
            }
            Refusal::InsufficientOnHand { shortfalls: list } => {
                ApiError::new(Code::InsufficientOnHand, detail).with("shortfalls", shortfalls(list))
            }
            Refusal::TooManyIncoming { .. } => ApiError::new(Code::TooManyIncoming, detail),
            Refusal::QuantityOverflow { .. } => ApiError::new(Code::QuantityOverflow, detail),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code;
        let body = Problem {
            kind: code.type_uri(),
            title: code.title(),
            status: code.status().as_u16(),
            detail: &self.detail,
            code: code.as_str(),
            extra: &self.extra,
        };
        let bytes = serde_json::to_vec(&body)
            .unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", Code::Internal).into_bytes());
        let mut response = (code.status(), bytes).into_response();
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
        if let Some(origin) = self.page_origin {
            super::publishable::allow_page(headers, origin);
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
