//! JSON in and out, with every rejection turned into a problem body, and the
//! parsing of RFC 3339 timestamps (their formatting is in `timestamps.rs`).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
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

/// A response body that writes its own JSON ([`JsonWriter`]): the hot
/// responses (a reservation, a position) skip serde's generic machinery and
/// the `String`s of their documented shapes. Tests hold each writer's output
/// equal to serde_json's rendering of the documented shape.
pub trait WriteJson {
    fn write_json(&self, out: &mut JsonWriter);
}

/// A JSON response written into one buffer sized for it up front (axum's
/// `Json` starts at 128 bytes and grows by copying).
pub struct JsonResponse<T>(pub T);

/// Room for a typical single-reservation or position body.
const JSON_RESPONSE_CAPACITY_BYTES: usize = 512;

impl<T: WriteJson> IntoResponse for JsonResponse<T> {
    fn into_response(self) -> Response {
        let mut writer = JsonWriter::with_capacity(JSON_RESPONSE_CAPACITY_BYTES);
        self.0.write_json(&mut writer);
        let mut response = Response::new(axum::body::Body::from(writer.into_bytes()));
        response.headers_mut().insert(
            CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Appends JSON to a buffer, placing commas itself. Strings are escaped
/// exactly as serde_json escapes them (`"`, `\\`, control characters; other
/// characters, non-ASCII included, as they are).
pub struct JsonWriter {
    out: Vec<u8>,
    /// A value was just written at this level: the next one needs a comma.
    needs_comma: bool,
}

impl JsonWriter {
    pub fn with_capacity(bytes: usize) -> JsonWriter {
        JsonWriter {
            out: Vec::with_capacity(bytes),
            needs_comma: false,
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    fn separate(&mut self) {
        if self.needs_comma {
            self.out.push(b',');
        }
    }

    fn open(&mut self, bracket: u8) {
        self.separate();
        self.out.push(bracket);
        self.needs_comma = false;
    }

    fn close(&mut self, bracket: u8) {
        self.out.push(bracket);
        self.needs_comma = true;
    }

    pub fn begin_object(&mut self) {
        self.open(b'{');
    }

    pub fn end_object(&mut self) {
        self.close(b'}');
    }

    pub fn begin_array(&mut self) {
        self.open(b'[');
    }

    pub fn end_array(&mut self) {
        self.close(b']');
    }

    /// An object key (a constant of ours: plain ASCII, nothing to escape);
    /// the value follows.
    pub fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(needs_escape), "{key}");
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.needs_comma = false;
    }

    pub fn str(&mut self, value: &str) {
        self.separate();
        self.push_escaped(value);
        self.needs_comma = true;
    }

    /// A number written as a JSON string (ids).
    pub fn u64_text(&mut self, value: u64) {
        self.separate();
        self.out.push(b'"');
        self.push_digits(value);
        self.out.push(b'"');
        self.needs_comma = true;
    }

    pub fn u64(&mut self, value: u64) {
        self.separate();
        self.push_digits(value);
        self.needs_comma = true;
    }

    fn push_digits(&mut self, value: u64) {
        let mut digits = [0_u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[at..]);
    }

    pub fn bool(&mut self, value: bool) {
        self.separate();
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self.needs_comma = true;
    }

    pub fn null(&mut self) {
        self.separate();
        self.out.extend_from_slice(b"null");
        self.needs_comma = true;
    }

    /// A timestamp as RFC 3339 text (see [`rfc3339`]), without allocating.
    pub fn time(&mut self, at: TimestampMs) {
        match rfc3339_text(at) {
            Some(text) => {
                self.separate();
                self.out.push(b'"');
                self.out.extend_from_slice(&text);
                self.out.push(b'"');
                self.needs_comma = true;
            }
            None => self.str(&rfc3339_slow(at)),
        }
    }

    fn push_escaped(&mut self, text: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.out.push(b'"');
        let bytes = text.as_bytes();
        // Ids and names almost never need escaping: one scan, one copy.
        if !bytes.iter().copied().any(needs_escape) {
            self.out.extend_from_slice(bytes);
            self.out.push(b'"');
            return;
        }
        let mut plain_from = 0;
        for (index, &byte) in bytes.iter().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => &[],
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[plain_from..index]);
            if escape.is_empty() {
                self.out.extend_from_slice(b"\\u00");
                self.out.push(HEX[usize::from(byte >> 4)]);
                self.out.push(HEX[usize::from(byte & 0xf)]);
            } else {
                self.out.extend_from_slice(escape);
            }
            plain_from = index + 1;
        }
        self.out.extend_from_slice(&bytes[plain_from..]);
        self.out.push(b'"');
    }
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
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
    fn json_writer_escapes_and_separates_like_serde_json() {
        let texts: Vec<String> = (0_u8..=0x7f)
            .map(|b| format!("a{}b", char::from(b)))
            .chain(["", "plain", "é ü 😀 \u{2028}", "\"\\\"", "\u{7f}\u{80}"].map(String::from))
            .collect();
        let mut writer = JsonWriter::with_capacity(0);
        writer.begin_object();
        writer.key("texts");
        writer.begin_array();
        for text in &texts {
            writer.str(text);
        }
        writer.end_array();
        writer.key("numbers");
        writer.begin_array();
        for n in [0, 1, 9, 10, 99, 1_000_000, u64::MAX] {
            writer.u64(n);
        }
        writer.end_array();
        writer.key("id");
        writer.u64_text(18_446_744_073_709_551_615);
        writer.key("nested");
        writer.begin_array();
        writer.begin_object();
        writer.key("t");
        writer.bool(true);
        writer.key("f");
        writer.bool(false);
        writer.key("n");
        writer.null();
        writer.end_object();
        writer.begin_object();
        writer.end_object();
        writer.end_array();
        writer.key("at");
        writer.time(TimestampMs(951_782_400_123));
        writer.end_object();
        let expected = serde_json::json!({
            "texts": texts,
            "numbers": [0, 1, 9, 10, 99, 1_000_000, u64::MAX],
            "nested": [{"t": true, "f": false, "n": null}, {}],
            "at": "2000-02-29T00:00:00.123Z",
            "id": "18446744073709551615",
        });
        // serde_json renders maps with sorted keys: compare byte for byte
        // against serde_json writing the same strings one by one.
        let written = String::from_utf8(writer.into_bytes()).expect("utf-8");
        let value: serde_json::Value = serde_json::from_str(&written).expect("valid JSON");
        assert_eq!(value, expected);
        for text in &texts {
            let mut one = JsonWriter::with_capacity(0);
            one.str(text);
            assert_eq!(
                String::from_utf8(one.into_bytes()).expect("utf-8"),
                serde_json::to_string(text).expect("json"),
                "{text:?}"
            );
        }
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
