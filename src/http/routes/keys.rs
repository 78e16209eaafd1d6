//! API keys: secret keys with scopes for servers, publishable keys for web
//! pages (see `http::publishable`). Admin only.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::uri::Authority;
use axum::http::{HeaderValue, StatusCode};

use crate::engine::{KeySpec, Publishable, Quantities};
use crate::http::AppState;
use crate::http::auth::{ApiKey, Caller, Scope};
use crate::http::dto::{self, KeyBody, KeyJson, KeyKind, PublishableJson, QuantitiesBody};
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiJson, ApiPath};

/// Most origins one publishable key lists.
const MAX_ORIGINS: usize = 50;
/// Longest origin accepted (scheme, host and port).
const MAX_ORIGIN_CHARS: usize = 300;
/// Longest `cache_control` accepted.
const MAX_CACHE_CONTROL_CHARS: usize = 200;
/// Units at or below which stock is `limited`, unless the key says.
const DEFAULT_QUANTITY_THRESHOLD: u32 = 5;

fn key_json(key: &ApiKey, secret: Option<String>) -> KeyJson {
    KeyJson {
        id: key.id.clone(),
        name: key.name.clone(),
        scopes: key.scopes.iter().copied().collect(),
        locations: key.locations.iter().map(|l| l.to_string()).collect(),
        max_held_units: key.max_held_units,
        kind: match key.publishable {
            Some(_) => KeyKind::Publishable,
            None => KeyKind::Secret,
        },
        publishable: key.publishable.as_deref().map(|p| PublishableJson {
            channel: p.channel.as_str().to_owned(),
            origins: p.origins.clone(),
            quantities: match p.quantities {
                Quantities::Exact => QuantitiesBody::Exact,
                Quantities::Banded => QuantitiesBody::Banded,
                Quantities::Threshold => QuantitiesBody::Threshold,
            },
            quantity_threshold: p.quantity_threshold,
            cache_control: p.cache_control.clone(),
        }),
        key: secret,
    }
}

/// Create an API key: a secret key with scopes, or a publishable key for
/// web pages (`"kind": "publishable"`, a `channel` and its `origins`). The
/// secret is in this response only.
#[utoipa::path(post, path = "/v1/keys", tag = "admin", request_body = KeyBody,
    responses((status = 201, body = KeyJson), (status = 422, description = "invalid key: no scopes, a pos key without locations, a publishable key without channel or origins, an invalid origin or cache_control")),
    security(("bearer" = [])))]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<KeyBody>,
) -> ApiResult<(StatusCode, Json<KeyJson>)> {
    caller.require(Scope::Admin)?;
    let name = dto::free_text("name", Some(&body.name))?.unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::new(Code::InvalidText, "name must not be empty"));
    }
    let spec = match body.kind.unwrap_or(KeyKind::Secret) {
        KeyKind::Secret => secret_spec(name, body)?,
        KeyKind::Publishable => publishable_spec(name, body)?,
    };
    let (key, secret) = state.engine.create_key(spec).await?;
    Ok((StatusCode::CREATED, Json(key_json(&key, Some(secret)))))
}

fn secret_spec(name: String, body: KeyBody) -> ApiResult<KeySpec> {
    if body.channel.is_some()
        || body.origins.is_some()
        || body.quantities.is_some()
        || body.quantity_threshold.is_some()
        || body.cache_control.is_some()
    {
        return Err(ApiError::new(
            Code::InvalidPublishableKey,
            "channel, origins, quantities, quantity_threshold and cache_control are for `kind: publishable` keys",
        ));
    }
    let scopes: BTreeSet<Scope> = body.scopes.iter().copied().collect();
    if scopes.is_empty() {
        return Err(ApiError::new(
            Code::NoScopes,
            "a key needs at least one scope",
        ));
    }
    let locations = body
        .locations
        .unwrap_or_default()
        .iter()
        .map(|c| json::location("locations", c))
        .collect::<Result<Vec<_>, _>>()?;
    if scopes.contains(&Scope::Pos) && locations.is_empty() {
        return Err(ApiError::new(
            Code::PosNeedsLocations,
            "a pos key needs the list of locations it may act on",
        ));
    }
    if locations.len() > 1_000 {
        return Err(ApiError::new(
            Code::TooManyItems,
            "at most 1,000 locations per key",
        ));
    }
    Ok(KeySpec {
        name,
        scopes,
        locations,
        max_held_units: body.max_held_units,
        publishable: None,
    })
}

fn publishable_spec(name: String, body: KeyBody) -> ApiResult<KeySpec> {
    let invalid = |detail: &str| ApiError::new(Code::InvalidPublishableKey, detail.to_owned());
    if !body.scopes.is_empty() || body.locations.is_some() || body.max_held_units.is_some() {
        return Err(invalid(
            "a publishable key holds no scopes, locations or hold cap: it reads availability, nearby stores and the live stream of its channel",
        ));
    }
    let channel = body
        .channel
        .as_deref()
        .ok_or_else(|| invalid("a publishable key needs the `channel` its pages see"))?;
    let origins = body.origins.unwrap_or_default();
    if origins.is_empty() || origins.len() > MAX_ORIGINS {
        return Err(invalid(&format!(
            "a publishable key needs 1 to {MAX_ORIGINS} `origins`, the sites whose pages use it"
        )));
    }
    for origin in &origins {
        check_origin(origin)?;
    }
    let quantity_threshold = body
        .quantity_threshold
        .unwrap_or(DEFAULT_QUANTITY_THRESHOLD);
    if quantity_threshold > 1_000_000 {
        return Err(invalid("quantity_threshold must be at most 1000000"));
    }
    if let Some(value) = &body.cache_control {
        check_cache_control(value)?;
    }
    let publishable = Publishable {
        channel: dto::channel(channel)?,
        origins,
        quantities: match body.quantities.unwrap_or(QuantitiesBody::Exact) {
            QuantitiesBody::Exact => Quantities::Exact,
            QuantitiesBody::Banded => Quantities::Banded,
            QuantitiesBody::Threshold => Quantities::Threshold,
        },
        quantity_threshold,
        cache_control: body.cache_control,
    };
    Ok(KeySpec {
        name,
        scopes: BTreeSet::new(),
        locations: Vec::new(),
        max_held_units: None,
        publishable: Some(publishable),
    })
}

/// An origin as a browser sends it: `http(s)://host[:port]`, lower case,
/// no path, no trailing slash, no default port (a browser leaves `:443` of
/// `https` out): anything else would never match one.
fn check_origin(origin: &str) -> ApiResult<()> {
    let invalid = || {
        ApiError::new(
            Code::InvalidOrigin,
            format!(
                "origin {:?} is not `http(s)://host[:port]` in lower case, without a path or a default port",
                origin.chars().take(60).collect::<String>()
            ),
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(invalid)?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return Err(invalid()),
    };
    let authority: Authority = rest.parse().map_err(|_| invalid())?;
    let host = authority.host();
    let host_ok = if host.starts_with('[') {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    };
    let port_ok = match authority.port_u16() {
        Some(port) => port != 0 && port != default_port,
        None => !rest.contains(':') || host.starts_with('['),
    };
    let exact = authority.as_str() == rest && !rest.contains('@');
    if host_ok && port_ok && exact && origin.len() <= MAX_ORIGIN_CHARS {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn check_cache_control(value: &str) -> ApiResult<()> {
    let visible = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if value.is_empty()
        || value.len() > MAX_CACHE_CONTROL_CHARS
        || !visible
        || HeaderValue::from_str(value).is_err()
    {
        return Err(ApiError::new(
            Code::InvalidCacheControl,
            format!(
                "cache_control must be 1 to {MAX_CACHE_CONTROL_CHARS} characters of visible ASCII"
            ),
        ));
    }
    Ok(())
}

/// Every key (without secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "admin", responses((status = 200, body = Vec<KeyJson>)), security(("bearer" = [])))]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<KeyJson>>> {
    caller.require(Scope::Admin)?;
    Ok(Json(
        state
            .engine
            .keys()
            .list()
            .iter()
            .map(|k| key_json(k, None))
            .collect(),
    ))
}

/// Revoke a key: it stops working at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204), (status = 404, description = "no such key")), security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    if state.engine.revoke_key(&id).await? {
        state.rate_limiter.forget(&id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(Code::KeyNotFound, "no key has this id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        for good in [
            "https://shop.example",
            "http://localhost:8000",
            "http://127.0.0.1:8000",
            "https://xn--bcher-kva.example",
            "https://[::1]:8443",
            "https://[::1]",
        ] {
            assert!(check_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "shop.example",
            "https://Shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "https://shop.example:0",
            "https://shop.example:99999",
            "ftp://shop.example",
            "https://",
            "*",
            "https://a:b:80",
            "https://.",
            "https://a..b",
            "https://shop.example:443",
            "http://shop.example:80",
            "https://user@shop.example",
            "https://shop.example?x",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        assert!(check_cache_control("public, max-age=1, stale-while-revalidate=5").is_ok());
        assert!(check_cache_control("max-age=1\r\nSet-Cookie: x").is_err());
        assert!(check_cache_control("").is_err());
    }
}
