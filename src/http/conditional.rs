//! Cacheable reads. An availability answer (`GET /v1/availability/{sku}`,
//! `GET /v1/stock/{location}/{sku}`, `GET /v1/nearby`) is a [`TaggedJson`]:
//! it carries an `ETag`, and a request whose `If-None-Match` names it is
//! answered 304 with no body. (Every `/v1` answer that sets no
//! `Cache-Control` is made `private, no-store` by the track layer.)
//!
//! The tag is a hash of the answer's bytes rather than of the position
//! versions behind it: a channel policy, a location's kind or a group can
//! change an answer without changing any position's version, and hashing
//! what was answered is right whatever changed it (one pass over a few
//! hundred bytes; XXH3-128, so two different answers never share a tag in
//! practice). It is made where the answer is serialized, once: a
//! middleware buffering every answer again cost 13 % of a position read's
//! throughput (`loadtest paired`), this costs the hash.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::json::json_bytes;

/// The request's `If-None-Match`, if it sent one.
pub struct IfNoneMatch(pub Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts.headers.get(header::IF_NONE_MATCH).cloned(),
        ))
    }
}

/// A JSON answer with its `ETag`; 304 without a body when the request's
/// `If-None-Match` names it.
pub struct TaggedJson<T>(pub IfNoneMatch, pub T);

impl<T: Serialize> IntoResponse for TaggedJson<T> {
    fn into_response(self) -> Response {
        let TaggedJson(IfNoneMatch(wanted), value) = self;
        let body = match json_bytes(&value) {
            Ok(body) => body,
            Err(problem) => return problem.into_response(),
        };
        let tag = entity_tag(&body);
        if wanted.is_some_and(|wanted| matches(&wanted, &tag)) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
        }
        let content_type = HeaderValue::from_static("application/json");
        let headers = [(header::CONTENT_TYPE, content_type), (header::ETAG, tag)];
        (headers, body).into_response()
    }
}

/// A strong tag: the answer's XXH3-128, in hex, quoted.
fn entity_tag(bytes: &[u8]) -> HeaderValue {
    let hash = xxhash_rust::xxh3::xxh3_128(bytes);
    // Quotes and hex digits: always a valid header value.
    HeaderValue::from_str(&format!("\"{hash:032x}\"")).unwrap_or(HeaderValue::from_static("\"\""))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_the_tag_strongly_weakly_or_by_star() {
        let tag = entity_tag(b"{\"sku\":\"A\"}");
        let value = |s: &str| HeaderValue::from_str(s).expect("header");
        let text = tag.to_str().expect("ascii").to_owned();
        assert_eq!(text.len(), 34, "{text}");
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
}
