//! Cacheable reads. Every availability answer (`GET /v1/availability/{sku}`,
//! `GET /v1/stock/{location}/{sku}`, `GET /v1/nearby`) carries an `ETag`,
//! and a request whose `If-None-Match` names it is answered 304 with no
//! body. Every `/v1` answer that does not say otherwise is
//! `Cache-Control: private, no-store`: what a secret key reads must not
//! sit in a shared cache.
//!
//! The tag is a hash of the answer's bytes rather than of the position
//! versions behind it: a channel policy, a location's kind or a group can
//! change an answer without changing any position's version, and hashing
//! what was answered is right whatever changed it (one pass over a few
//! hundred bytes; XXH3-128, so two different answers never share a tag in
//! practice).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;

/// Largest answer given a tag (an availability answer over thousands of
/// stores is tens of KiB); a larger one is passed on untagged, unbuffered.
const MAX_TAGGED_BYTES: u64 = 1 << 20;
const PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");

/// The middleware: tags availability answers, answers 304 where the
/// client has the answer already, and marks `/v1` answers private.
pub async fn conditional(request: Request, next: Next) -> Response {
    let tagged = is_availability_read(request.method(), request.uri().path());
    let is_api = request.uri().path().starts_with("/v1/");
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let mut response = next.run(request).await;
    if is_api && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, PRIVATE);
    }
    // Tagged already: by the node that served it, passed on by this one.
    let untagged = !response.headers().contains_key(header::ETAG);
    if !tagged || !untagged || response.status() != StatusCode::OK {
        return response;
    }
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_TAGGED_BYTES);
    if !small {
        return response;
    }
    let (mut head, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        // The body failed on the way (it is made in memory: it cannot).
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = entity_tag(&bytes);
    head.headers.insert(header::ETAG, tag.clone());
    if if_none_match.is_some_and(|wanted| matches(&wanted, &tag)) {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        copy(&head.headers, not_modified.headers_mut());
        return not_modified;
    }
    Response::from_parts(head, Body::from(bytes))
}

fn is_availability_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (path.starts_with("/v1/availability/")
            || path.starts_with("/v1/stock/")
            || path == "/v1/nearby")
}

/// A strong tag: the answer's XXH3-128, in hex, quoted.
fn entity_tag(bytes: &[u8]) -> HeaderValue {
    let hash = xxhash_rust::xxh3::xxh3_128(bytes);
    HeaderValue::from_str(&format!("\"{hash:032x}\"")).unwrap_or(PRIVATE)
}

/// Whether `If-None-Match` names `tag` (RFC 9110, 13.1.2: `*`, or a list
/// compared weakly, so `W/"x"` matches `"x"`).
fn matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let tag = tag.to_str().unwrap_or("");
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// The headers a 304 repeats (RFC 9110, 15.4.5).
fn copy(from: &HeaderMap, to: &mut HeaderMap) {
    for name in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_the_tag_strongly_weakly_or_by_star() {
        let tag = entity_tag(b"{\"sku\":\"A\"}");
        let value = |s: &str| HeaderValue::from_str(s).expect("header");
        let text = tag.to_str().expect("ascii").to_owned();
        assert!(matches(&value(&text), &tag));
        assert!(matches(&value(&format!("W/{text}")), &tag));
        assert!(matches(&value(&format!("\"other\", {text}")), &tag));
        assert!(matches(&value("*"), &tag));
        assert!(!matches(&value("\"other\""), &tag));
        assert_ne!(
            entity_tag(b"{\"sku\":\"B\"}"),
            tag,
            "another answer, another tag"
        );
    }

    #[test]
    fn only_availability_reads_are_tagged() {
        assert!(is_availability_read(&Method::GET, "/v1/availability/SKU-1"));
        assert!(is_availability_read(&Method::GET, "/v1/stock/S1/SKU-1"));
        assert!(is_availability_read(&Method::GET, "/v1/nearby"));
        assert!(!is_availability_read(&Method::PUT, "/v1/stock/S1/SKU-1"));
        assert!(!is_availability_read(&Method::GET, "/v1/reservations/1"));
    }
}
