//! Reading a whole request body: the one place that applies the body limits
//! (`HttpLimits::max_body_bytes`, 413 `body_too_large`, and
//! `body_read_timeout_ms`, 408 `body_timeout`) and decides whether a content
//! type is JSON.
//!
//! Why not axum's `DefaultBodyLimit` layer and `Bytes` extractor: the layer
//! wraps every route in one more boxed service (cloned per request) and
//! stores its limit in the request's extensions, and the extractor boxes the
//! limited body and collects it through a list of chunks: together 7 of the
//! 35 allocations a reservation made when this was measured (callgrind,
//! commit 452ffd5 and after). A body that arrives in one chunk (nearly
//! every JSON body) is handed on without a copy.
//!
//! Architecture invariant: every handler that reads a whole body does it
//! through [`ApiBody`] or [`super::json::ApiJson`], so a body larger than the
//! limit is refused before it is buffered, whichever route it is sent to.
//! The streamed stock import is the one exception (it never holds the body).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use bytes::BytesMut;
use http_body::Body as _;
use http_body_util::BodyExt;

use super::AppState;
use super::error::ApiError;
use super::error_codes::Code;

/// The whole body of a request, read within the limits.
pub struct ApiBody(pub Bytes);

impl FromRequest<Arc<AppState>> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        read_body(
            request.into_body(),
            state.limits.max_body_bytes,
            state.limits.body_read_timeout_ms,
        )
        .await
        .map(ApiBody)
    }
}

/// Reads `body` whole: at most `max_bytes` (413 beyond; a `Content-Length`
/// above it is refused before anything is read), all of it within
/// `timeout_ms` (408 after).
pub async fn read_body(body: Body, max_bytes: usize, timeout_ms: u64) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            Code::BodyTooLarge,
            format!("the body is larger than the limit of {max_bytes} bytes"),
        )
    };
    if body.size_hint().lower() > max_bytes as u64 {
        return Err(too_large());
    }
    let timeout = Duration::from_millis(timeout_ms);
    match tokio::time::timeout(timeout, collect(body, max_bytes)).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err(too_large()),
        Ok(Err(error)) => Err(ApiError::new(
            Code::UnreadableBody,
            format!("the body stopped: {error}"),
        )),
        Err(_) => Err(ApiError::new(
            Code::BodyTimeout,
            format!("the body did not arrive within {timeout_ms} ms"),
        )),
    }
}

/// The body's data frames joined (`None` once they pass `max_bytes`). The
/// first chunk is kept as it is; only a second one starts a copy.
async fn collect(mut body: Body, max_bytes: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut length = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry nothing a handler reads
        };
        length = length.saturating_add(data.len());
        if length > max_bytes {
            return Ok(None);
        }
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let mut buffer = BytesMut::with_capacity(length);
                buffer.extend_from_slice(&earlier);
                buffer.extend_from_slice(&data);
                joined = Some(buffer);
            }
        }
    }
    Ok(Some(match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    }))
}

/// Whether the request says its body is JSON: `application/json` or an
/// `application/*+json` type, with any parameters: the rule of
/// `axum::Json`, checked without parsing (and allocating) the media type.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    // The form nearly every client sends, compared without splitting.
    if value.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return true;
    }
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let ends_with_json = subtype.len() >= 5
        && subtype.is_char_boundary(subtype.len() - 5)
        && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json");
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || ends_with_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use futures_util::{StreamExt, stream};

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("header"),
        );
        headers
    }

    #[test]
    fn json_content_types_follow_axum() {
        for yes in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/problem+json",
            "application/vnd.api+JSON ; x=y",
        ] {
            assert!(is_json(&headers(yes)), "{yes}");
        }
        for no in [
            "",
            "text/plain",
            "application/jsonx",
            "text/json",
            "json",
            "application/",
            "application/+jso",
            "multipart/form-data",
        ] {
            assert!(!is_json(&headers(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk)))
            .collect();
        Body::from_stream(stream::iter(chunks))
    }

    #[tokio::test]
    async fn chunks_are_joined_in_order() {
        let body = read_body(chunked(&[b"ab", b"", b"cd", b"e"]), 5, 1_000)
            .await
            .expect("read");
        assert_eq!(&body[..], b"abcde");
        let one = read_body(Body::from("xyz"), 3, 1_000).await.expect("read");
        assert_eq!(&one[..], b"xyz");
        let empty = read_body(Body::empty(), 3, 1_000).await.expect("read");
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        // Known length: refused before reading.
        let error = read_body(Body::from("123456"), 5, 1_000)
            .await
            .expect_err("refused");
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Streamed without a length: refused once it passes the limit.
        let error = read_body(chunked(&[b"123", b"456"]), 5, 1_000)
            .await
            .expect_err("refused");
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.code, Code::BodyTooLarge);
    }

    #[tokio::test]
    async fn a_failing_body_is_a_bad_request() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::other("connection reset")),
        ];
        let error = read_body(Body::from_stream(stream::iter(chunks)), 100, 1_000)
            .await
            .expect_err("refused");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.code, Code::UnreadableBody);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let stalled = stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{")) })
            .chain(stream::pending());
        let error = read_body(Body::from_stream(stalled), 100, 300)
            .await
            .expect_err("refused");
        assert_eq!(error.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(error.code, Code::BodyTimeout);
    }
}
