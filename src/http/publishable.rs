//! Readers in web pages: publishable keys, where they come from, and what
//! their answers carry for browsers and caches.
//!
//! A publishable key (`opk_…`) is made to sit in a page's source: it holds
//! no scope, so every handler that checks one refuses it; the three reads
//! made for pages (availability, nearby stores, the live stream) take a
//! [`Reader`] instead, which accepts it as `Authorization: Bearer` or as
//! the `key` query parameter (an `EventSource` cannot set headers). Its
//! page's `Origin` must be on the key's list; its requests count against
//! the key's rate and, per client address, against
//! `--rate-limit-per-address`. A secret key is refused in a URL (URLs end
//! up in logs, histories and caches) and from another site's page
//! ([`refuse_secret_from_page`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, AUTHORIZATION, CACHE_CONTROL, HOST,
    ORIGIN, VARY,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponseParts, ResponseParts};

use ipnet::IpNet;

use super::AppState;
use super::auth::{ApiKey, Caller, KeyStore};
use super::error::{ApiError, ApiResult};
use super::error_codes::Code;
use crate::engine::Publishable;
use crate::ledger::Channel;

/// The client's address, as the connection's peer (set by the accept
/// loop on every request it serves).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// Set by a cluster node's front on a client's request: the `Host` it was
/// sent to (so the engine serving it tells a same-origin page from
/// another site's).
pub const FORWARDED_HOST: HeaderName = HeaderName::from_static("omnistock-forwarded-host");
/// Set by a cluster node's front on a client's request: its address.
pub const FORWARDED_CLIENT: HeaderName = HeaderName::from_static("omnistock-forwarded-client");

/// Who reads: a secret key's caller, or a page's publishable key.
pub enum Reader {
    Secret(Caller),
    Page(Page),
}

impl Reader {
    /// A page's origin (one of its key's), to answer its refusals with CORS.
    pub fn page_origin(&self) -> Option<HeaderValue> {
        match self {
            Reader::Secret(_) => None,
            Reader::Page(page) => page.origin.clone(),
        }
    }

    /// The reader's key, whichever kind.
    pub fn key(&self) -> &ApiKey {
        match self {
            Reader::Secret(caller) => &caller.0,
            Reader::Page(page) => &page.key,
        }
    }
}

/// A publishable key read from a page (or any client holding the key).
pub struct Page {
    pub key: Arc<ApiKey>,
    pub publishable: Arc<Publishable>,
    /// The page's `Origin`, when the browser sent one (on the key's list).
    origin: Option<HeaderValue>,
    /// The client's address, for the per-address stream quota.
    pub address: Option<IpAddr>,
    /// The key came in `Authorization` (not in the URL): shared caches
    /// must then key answers on it too.
    from_header: bool,
}

impl Page {
    /// The channel the page sees: the key's. Naming another is refused.
    pub fn channel(&self, asked: Option<&str>) -> ApiResult<Channel> {
        match asked {
            Some(name) if name != self.publishable.channel.as_str() => Err(ApiError::new(
                Code::ChannelNotAllowed,
                format!(
                    "this key sees the `{}` channel only",
                    self.publishable.channel.as_str()
                ),
            )),
            _ => Ok(self.publishable.channel),
        }
    }

    /// What the page's answers carry: CORS for its origin, and the key's
    /// caching policy (shared caches revalidate by `ETag` unless the key
    /// says otherwise).
    pub fn answer_headers(&self) -> PageHeaders {
        let cache_control = self
            .publishable
            .cache_control
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
            .unwrap_or(HeaderValue::from_static("no-cache"));
        PageHeaders {
            origin: self.origin.clone(),
            cache_control,
            vary: if self.from_header {
                HeaderValue::from_static("Origin, Authorization")
            } else {
                HeaderValue::from_static("Origin")
            },
        }
    }
}

/// Headers of an answer to a page (see [`Page::answer_headers`]).
pub struct PageHeaders {
    origin: Option<HeaderValue>,
    cache_control: HeaderValue,
    vary: HeaderValue,
}

impl PageHeaders {
    /// For a live stream: never cached, whatever the key says.
    pub fn for_stream(self) -> PageHeaders {
        PageHeaders {
            cache_control: HeaderValue::from_static("no-cache"),
            ..self
        }
    }
}

impl IntoResponseParts for PageHeaders {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        let headers = parts.headers_mut();
        // The answer depends on the Origin (CORS), and on the key when it
        // is not in the URL: caches key on them.
        headers.insert(VARY, self.vary);
        headers.insert(CACHE_CONTROL, self.cache_control);
        if let Some(origin) = self.origin {
            allow_page(headers, origin);
        }
        Ok(parts)
    }
}

/// The `key` query parameter, when the URL has one.
pub fn key_param(query: Option<&str>) -> Option<String> {
    let query = query?;
    if !query.contains("key=") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned())
}

/// The bearer key of `Authorization`, when there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The secret key of `Authorization`: 401 without a known one, 403 for a
/// publishable key (it reads only through a [`Reader`]). What an engine's
/// `Caller` and a cluster node's front both authenticate with.
pub fn secret_key(keys: &KeyStore, headers: &HeaderMap) -> ApiResult<Arc<ApiKey>> {
    let key = bearer(headers)
        .and_then(|secret| keys.authenticate(secret))
        .ok_or_else(ApiError::unauthorized)?;
    if key.publishable.is_some() {
        return Err(ApiError::new(
            Code::PublishableKeyNotAllowed,
            "a publishable key reads availability, nearby stores and the live stream only",
        ));
    }
    Ok(key)
}

/// Lets a page of `origin` read an answer (and its `ETag` and
/// `Retry-After`): what a page's answers and refusals both carry.
pub fn allow_page(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Retry-After"),
    );
}

/// A secret key sent by another site's page is refused: whoever opens the
/// page can read it. A page of the engine's own origin (the console) may
/// send one: `Origin` then names the `Host` the request was sent to.
/// On a direct connection the request's `Host`; from a cluster node's
/// front, the `Host` it names.
pub fn refuse_secret_from_page(parts: &Parts) -> ApiResult<()> {
    let headers = &parts.headers;
    let host = match parts.extensions.get::<ClientAddr>() {
        Some(_) => headers.get(HOST),
        None => headers.get(FORWARDED_HOST).or_else(|| headers.get(HOST)),
    };
    refuse_secret_from_other_site(headers, host)
}

/// The check of [`refuse_secret_from_page`], given the `Host` the request
/// was sent to (a cluster front's own requests name it).
pub fn refuse_secret_from_other_site(
    headers: &HeaderMap,
    host: Option<&HeaderValue>,
) -> ApiResult<()> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    match (authority, host.and_then(|h| h.to_str().ok())) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::new(
            Code::SecretKeyFromBrowser,
            "a secret key came from another site's page; give pages a publishable key (`kind: publishable`)",
        )),
    }
}

/// The client's address: the connection's peer (or, from a trusted proxy,
/// the client it names: [`resolve_client`]); for a request a cluster
/// node's front passes to its engine (no connection of its own), the one
/// the front names. A client's own header is never read on a direct
/// connection (and a front replaces it). IPv6 clients are counted by their
/// /64: one host commonly holds a whole /64, and would otherwise have 2^64
/// addresses to spread over.
fn client_address(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let address = match parts.extensions.get::<ClientAddr>() {
        Some(ClientAddr(peer)) => resolve_client(*peer, &parts.headers, trusted),
        None => parts
            .headers
            .get(FORWARDED_CLIENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())?,
    };
    Some(match address {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    })
}

/// The client of a request from `peer`: the peer, unless it is a trusted
/// proxy; then the last address of `X-Forwarded-For` that is not one (each
/// proxy appends the address it saw, so the addresses before a client's
/// are the client's own to write, and never believed).
pub fn resolve_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<IpAddr>() {
            Ok(address) if is_trusted(&address) => client = address,
            Ok(address) => return address,
            Err(_) => return client,
        }
    }
    client
}

/// Most `X-Forwarded-For` entries read from the right (proxies in a chain).
const MAX_FORWARDED_HOPS: usize = 16;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let in_url = key_param(parts.uri.query());
        let secret = match (&in_url, bearer(&parts.headers)) {
            (Some(from_url), _) => from_url.as_str(),
            (None, Some(from_header)) => from_header,
            (None, None) => return Err(ApiError::unauthorized()),
        };
        let key = state
            .engine
            .keys()
            .authenticate(secret)
            .ok_or_else(ApiError::unauthorized)?;
        let Some(publishable) = key.publishable.clone() else {
            if in_url.is_some() {
                return Err(key_in_url());
            }
            return Caller::admit(parts, state, key).await.map(Reader::Secret);
        };
        let origin = parts.headers.get(ORIGIN).cloned();
        if let Some(origin) = &origin
            && !origin
                .to_str()
                .is_ok_and(|origin| publishable.allows_origin(origin))
        {
            return Err(ApiError::new(
                Code::OriginNotAllowed,
                "this page's origin is not one of the key's `origins`",
            ));
        }
        refuse_no_cors(parts)?;
        let address = client_address(parts, &state.limits.trusted_proxies);
        let for_page = |error: ApiError| error.for_page(origin.as_ref());
        check_address_rate(state, &key, address).map_err(for_page)?;
        Caller::check_rate(state, &key).await.map_err(for_page)?;
        Ok(Reader::Page(Page {
            key,
            publishable,
            origin,
            address,
            from_header: in_url.is_none(),
        }))
    }
}

/// A page reads with `fetch` or an `EventSource`. A request an `<img>`,
/// `<script>` or other tag makes (`Sec-Fetch-Mode: no-cors`) carries no
/// `Origin`, so another site could make its visitors' browsers hold a key's
/// streams or spend its rate; it is refused.
fn refuse_no_cors(parts: &Parts) -> ApiResult<()> {
    let no_cors = parts
        .headers
        .get("sec-fetch-mode")
        .is_some_and(|mode| mode.as_bytes() == b"no-cors");
    if no_cors {
        return Err(ApiError::new(
            Code::OriginNotAllowed,
            "a page reads with fetch or an EventSource, not through an <img>, <script> or other tag",
        ));
    }
    Ok(())
}

/// A publishable key's requests from one address, against
/// `--rate-limit-per-address` (one page in a loop, or one scraper, cannot
/// spend the whole key's rate).
fn check_address_rate(state: &AppState, key: &ApiKey, address: Option<IpAddr>) -> ApiResult<()> {
    let Some(address) = address else {
        return Ok(());
    };
    let bucket = format!("{}|{address}", key.id);
    state
        .pages
        .address_rate_limiter
        .check(&bucket, Instant::now)
        .map_err(|retry_after_s| {
            ApiError::new(
                Code::AddressRateLimited,
                "requests from this address with this key are over the per-address rate; retry after Retry-After",
            )
            .retry_after(retry_after_s)
        })
}

/// The refusal of a secret key sent in a URL.
pub fn key_in_url() -> ApiError {
    ApiError::new(
        Code::KeyInUrl,
        "a secret key was sent in the URL; send it as `Authorization: Bearer` (only publishable keys go in URLs), and consider it leaked",
    )
}

/// What a preflight asks about: the page's origin, and the key when the
/// URL carries one.
pub struct Preflight {
    pub origin: Option<HeaderValue>,
    pub key: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Preflight {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Preflight {
            origin: parts.headers.get(ORIGIN).cloned(),
            key: key_param(parts.uri.query()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxy_names_the_client_and_nothing_else_does() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.1.2.3"),
        );
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let client: IpAddr = [203, 0, 113, 9].into();
        assert_eq!(
            resolve_client(proxy, &headers, &proxies),
            client,
            "the last untrusted hop"
        );
        let stranger: IpAddr = [198, 51, 100, 4].into();
        assert_eq!(
            resolve_client(stranger, &headers, &proxies),
            stranger,
            "only proxies are believed"
        );
        assert_eq!(
            resolve_client(proxy, &headers, &[]),
            proxy,
            "no proxy trusted"
        );
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("garbage"));
        assert_eq!(resolve_client(proxy, &headers, &proxies), proxy);
    }
}
