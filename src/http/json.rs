//! JSON in and out, with every rejection turned into a problem body, and the
//! RFC 3339 conversions of timestamps.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use crate::ledger::{IdError, LocationCode, Sku, TimestampMs};

/// `axum::Json`, but malformed JSON, a wrong content type, unknown fields and
/// out-of-range values all answer with a problem body saying what is wrong.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the body as `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("malformed_json", e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::invalid("invalid_body", e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
                e.body_text(),
            )
        }
        other => ApiError::bad_request("unreadable_body", other.body_text()),
    }
}

/// `axum::extract::Path` with problem-body rejections.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::invalid("invalid_path", e.body_text()))
    }
}

/// `axum::extract::Query` with problem-body rejections.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid("invalid_query", e.body_text()))
    }
}

pub fn rfc3339(at: TimestampMs) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.0.to_string())
}

pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<TimestampMs, ApiError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::invalid(
            "invalid_timestamp",
            format!("{field}: not an RFC 3339 timestamp ({e})"),
        )
    })?;
    let ms = parsed.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms)
        .map(TimestampMs)
        .map_err(|_| ApiError::invalid("invalid_timestamp", format!("{field}: out of range")))
}

fn id_error(field: &str, text: &str, error: IdError) -> ApiError {
    let shown: String = text.chars().take(60).collect();
    ApiError::invalid("invalid_id", format!("{field} {shown:?}: {error}"))
        .with("field", serde_json::json!(field))
}

pub fn sku(field: &str, text: &str) -> Result<Sku, ApiError> {
    Sku::new(text).map_err(|e| id_error(field, text, e))
}

pub fn location(field: &str, text: &str) -> Result<LocationCode, ApiError> {
    LocationCode::new(text).map_err(|e| id_error(field, text, e))
}
