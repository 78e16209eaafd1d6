//! JSON in and out, with every rejection turned into a problem body, and the
//! RFC 3339 conversions of timestamps.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use std::sync::Arc;

use super::AppState;
use super::body::{ApiBody, is_json};
use super::error::ApiError;
use super::error_codes::Code;
pub use super::timestamps::rfc3339;
use super::timestamps::{rfc3339_slow, rfc3339_text};
use crate::ledger::{Catalog, IdError, LocationCode, Sku, TimestampMs, UnknownFilter};

/// `axum::Json`, but malformed JSON, a wrong content type, unknown fields and
/// out-of-range values all answer with a problem body saying what is wrong,
/// and the body is read within the limits of [`super::body::read_body`].
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        // The media type first: a body that is not JSON is not read at all.
        if !is_json(request.headers()) {
            return Err(unsupported_media_type());
        }
        let ApiBody(body) = ApiBody::from_request(request, state).await?;
        from_json_slice(&body).map(ApiJson)
    }
}

/// An optional JSON body: none at all (or only whitespace) is `None`;
/// anything else must be JSON, with [`ApiJson`]'s answers when it is not.
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let json = is_json(request.headers());
        let ApiBody(body) = ApiBody::from_request(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalApiJson(None));
        }
        if !json {
            return Err(unsupported_media_type());
        }
        from_json_slice(&body).map(|value| OptionalApiJson(Some(value)))
    }
}

/// 415: the body must be sent as JSON.
fn unsupported_media_type() -> ApiError {
    ApiError::new(
        Code::UnsupportedMediaType,
        "send the body as `Content-Type: application/json`",
    )
}

/// A JSON body into `T`. Parsed once without path tracking (which allocates
/// every key it passes); only a body that fails is parsed again through
/// axum's extractor, for its message naming the offending field.
fn from_json_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| match axum::Json::<T>::from_bytes(body) {
        Err(rejection) => json_rejection(rejection),
        // Cannot happen (the same parser refused it); answer as invalid anyway.
        Ok(_) => ApiError::new(Code::InvalidBody, "the body is not valid for this request"),
    })
}

/// The message of a body `from_json_slice` refused (`from_bytes` never
/// checks the content type: [`ApiJson`] has done that already).
fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(Code::MalformedJson, e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::new(Code::InvalidBody, e.body_text()),
        other => ApiError::new(Code::UnreadableBody, other.body_text()),
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
            .map_err(|e: PathRejection| ApiError::new(Code::InvalidPath, e.body_text()))
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
            .map_err(|e: QueryRejection| ApiError::new(Code::InvalidQuery, e.body_text()))
    }
}

/// A JSON response serialized into one buffer sized for it up front
/// (axum's `Json` starts at 128 bytes and grows by copying).
pub struct JsonResponse<T>(pub T);

/// Room for a typical single-reservation or position body.
const JSON_RESPONSE_CAPACITY_BYTES: usize = 512;

/// `value` as JSON, in one buffer sized for a typical answer up front.
pub fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::with_capacity(JSON_RESPONSE_CAPACITY_BYTES);
    serde_json::to_writer(&mut body, value)
        .map_err(|error| ApiError::new(Code::Internal, format!("rendering JSON: {error}")))?;
    Ok(body)
}

impl<T: Serialize> IntoResponse for JsonResponse<T> {
    fn into_response(self) -> Response {
        let body = match json_bytes(&self.0) {
            Ok(body) => body,
            Err(problem) => return problem.into_response(),
        };
        let mut response = Response::new(axum::body::Body::from(body));
        response.headers_mut().insert(
            CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// A timestamp in a JSON body: RFC 3339 text (see [`rfc3339`]), written
/// without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonTime(pub TimestampMs);

impl Serialize for JsonTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match rfc3339_text(self.0) {
            // The fast path writes ASCII digits and separators only.
            Some(text) => serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default()),
            None => serializer.serialize_str(&rfc3339_slow(self.0)),
        }
    }
}

pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<TimestampMs, ApiError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::new(
            Code::InvalidTimestamp,
            format!("{field}: not an RFC 3339 timestamp ({e})"),
        )
    })?;
    let ms = parsed.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms)
        .map(TimestampMs)
        .map_err(|_| ApiError::new(Code::InvalidTimestamp, format!("{field}: out of range")))
}

fn id_error(field: impl std::fmt::Display, text: &str, error: IdError) -> ApiError {
    let shown: String = text.chars().take(60).collect();
    let field = field.to_string();
    ApiError::new(Code::InvalidId, format!("{field} {shown:?}: {error}"))
        .with("field", serde_json::json!(field))
}

/// `field` names the id in an error; it is formatted only then, so a caller
/// can pass `format_args!("lines[{index}].sku")` without allocating per id.
pub fn sku(field: impl std::fmt::Display, text: &str) -> Result<Sku, ApiError> {
    Sku::new(text).map_err(|e| id_error(field, text, e))
}

pub fn location(field: impl std::fmt::Display, text: &str) -> Result<LocationCode, ApiError> {
    LocationCode::new(text).map_err(|e| id_error(field, text, e))
}

/// The locations a `?{field}=CODE` / `?group=NAME` filter selects
/// (indexed by location id), with the same 422/404 answers wherever such a
/// filter is taken (feeds, the live stream, the feed export's server).
pub fn location_filter(
    catalog: &Catalog,
    field: &str,
    location: Option<&str>,
    group: Option<&str>,
) -> Result<Vec<bool>, ApiError> {
    let code = location
        .map(|code| self::location(field, code))
        .transpose()?;
    catalog
        .select_locations(code.as_ref().map(LocationCode::as_str), group)
        .map_err(|unknown| unknown_filter(unknown, field, location, group))
}

/// The 404 for a location filter naming an unknown location or group.
pub fn unknown_filter(
    unknown: UnknownFilter,
    field: &str,
    location: Option<&str>,
    group: Option<&str>,
) -> ApiError {
    match unknown {
        UnknownFilter::Location => ApiError::new(
            Code::UnknownLocation,
            format!("unknown {field} {}", location.unwrap_or_default()),
        ),
        UnknownFilter::Group => ApiError::new(
            Code::UnknownGroup,
            format!("unknown location group {}", group.unwrap_or_default()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_time_writes_what_rfc3339_formats() {
        for at in [
            -62_000_000_000_000,
            -1,
            0,
            951_782_400_123,
            1_795_345_424_999,
            253_402_300_799_999,
            253_402_300_800_000,
        ] {
            let written = serde_json::to_string(&JsonTime(TimestampMs(at))).expect("json");
            assert_eq!(written, format!("\"{}\"", rfc3339(TimestampMs(at))), "{at}");
        }
        assert_eq!(
            serde_json::to_string(&JsonTime(TimestampMs(951_782_400_123))).expect("json"),
            "\"2000-02-29T00:00:00.123Z\""
        );
    }

    #[test]
    fn fast_rfc3339_agrees_with_the_time_crate() {
        let mut at: i64 = -62_000_000_000_000;
        while at < 250_000_000_000_000 {
            let expected = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
                .expect("in range");
            let text = rfc3339(TimestampMs(at));
            assert_eq!(
                OffsetDateTime::parse(&text, &Rfc3339).ok(),
                Some(expected),
                "{at} -> {text}"
            );
            at += 7_777_777_777 + at.rem_euclid(86_399_999);
        }
        assert_eq!(rfc3339(TimestampMs(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(TimestampMs(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(rfc3339(TimestampMs(-1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            parse_rfc3339("t", &rfc3339(TimestampMs(1_795_345_424_275))).ok(),
            Some(TimestampMs(1_795_345_424_275))
        );
    }
}
