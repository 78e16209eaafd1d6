//! Availability reads: one position, one SKU across locations or a group, a
//! batch of positions, and stores nearby.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::AppState;
use crate::http::auth::{Caller, Scope};
use crate::http::conditional::{IfNoneMatch, TaggedJson};
use crate::http::dto::{
    self, AvailabilityJson, BatchAvailabilityBody, BatchAvailabilityJson, BatchResult, NearbyJson,
    NearbyStoreJson, PositionJson,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiJson, ApiPath, ApiQuery};
use crate::http::page_json::{PageAvailabilityJson, PageNearbyJson, PageStoreJson};
use crate::http::publishable::Reader;
use crate::ledger::{GeoPoint, GroupName, NearbyQuery, Qty, Scope as Coverage};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityParams {
    /// Comma-separated location codes (at most `--max-batch-items`, 1,000 by
    /// default); not together with `group`.
    #[param(
        pattern = r"^(?:[^,\s\x00-\x1f\x7f-\x9f](?:[^,\x00-\x1f\x7f-\x9f]{0,48}[^,\s\x00-\x1f\x7f-\x9f])?)?(?:,(?:[^,\s\x00-\x1f\x7f-\x9f](?:[^,\x00-\x1f\x7f-\x9f]{0,48}[^,\s\x00-\x1f\x7f-\x9f])?)?)*$"
    )]
    pub locations: Option<String>,
    /// A location group name; not together with `locations`.
    #[param(value_type = Option<crate::http::openapi::GroupName>)]
    pub group: Option<String>,
    /// See availability after this channel's policy (a publishable key:
    /// its own channel only).
    #[param(value_type = Option<crate::http::openapi::ChannelName>)]
    pub channel: Option<String>,
    /// A publishable key, for pages that cannot set `Authorization`
    /// (a secret key here is refused: `key_in_url`).
    #[param(pattern = "^opk_[0-9a-f]{64}$")]
    #[expect(
        dead_code,
        reason = "listed for the document; `Reader` reads it from the URL"
    )]
    pub key: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChannelParam {
    /// See availability after this channel's policy.
    #[param(value_type = Option<crate::http::openapi::ChannelName>)]
    pub channel: Option<String>,
}

fn channel(param: Option<&String>) -> ApiResult<Option<crate::ledger::Channel>> {
    param.map(|c| dto::channel(c)).transpose()
}

/// Availability of one SKU at every location stocking it, at listed locations, or in a group.
/// A publishable key (as `Authorization: Bearer` or `?key=`) is answered as a page sees it
/// (`PageAvailabilityJson`: bands, and units as the key shows them), with CORS for its origins.
#[utoipa::path(get, path = "/v1/availability/{sku}", tag = "availability",
    params(("sku" = crate::http::openapi::Sku, Path), AvailabilityParams, crate::http::openapi::IfNoneMatchHeader),
    responses((status = 200, description = "a secret key's answer (`AvailabilityJson`), or a publishable key's (`PageAvailabilityJson`)", body = crate::http::page_json::AvailabilityAnswer, headers(("ETag" = String, description = "the answer's tag, for `If-None-Match`"))), (status = 304, description = "not modified: `If-None-Match` names this answer's `ETag`; no body"), (status = 404, description = "unknown location or group"), (status = 422, description = "invalid parameters")),
    security(("bearer" = []), ("publishable_key" = [])))]
pub async fn sku_availability(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    ApiPath(sku): ApiPath<String>,
    ApiQuery(params): ApiQuery<AvailabilityParams>,
    if_none_match: IfNoneMatch,
) -> Response {
    let origin = reader.page_origin();
    read_availability(&state, reader, &sku, &params, if_none_match)
        .unwrap_or_else(|error| error.for_page(origin.as_ref()).into_response())
}

fn read_availability(
    state: &AppState,
    reader: Reader,
    sku: &str,
    params: &AvailabilityParams,
    if_none_match: IfNoneMatch,
) -> ApiResult<Response> {
    let channel = match &reader {
        Reader::Secret(caller) => {
            caller.require(Scope::Read)?;
            channel(params.channel.as_ref())?
        }
        Reader::Page(page) => Some(page.channel(params.channel.as_deref())?),
    };
    let sku = json::sku("sku", sku)?;
    let coverage = coverage(state, params)?;
    let view = state
        .ledger()
        .availability(&sku, &coverage, channel, state.engine.now())?;
    Ok(match reader {
        Reader::Secret(_) => {
            TaggedJson(if_none_match, AvailabilityJson::from(&view)).into_response()
        }
        Reader::Page(page) => {
            let catalog = state.ledger().catalog();
            let answer = PageAvailabilityJson::of(&page.publishable, &view, &catalog);
            (page.answer_headers(), TaggedJson(if_none_match, answer)).into_response()
        }
    })
}

/// The locations `?locations=` or `?group=` names (every one without either).
fn coverage(state: &AppState, params: &AvailabilityParams) -> ApiResult<Coverage> {
    Ok(match (&params.locations, &params.group) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                Code::InvalidQuery,
                "give locations or group, not both",
            ));
        }
        (Some(list), None) => {
            let codes = list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|c| json::location("locations", c))
                .collect::<Result<Vec<_>, _>>()?;
            if codes.len() > state.limits.max_batch_items {
                return Err(ApiError::new(
                    Code::TooManyItems,
                    format!("at most {} locations", state.limits.max_batch_items),
                ));
            }
            Coverage::Locations(codes)
        }
        (None, Some(group)) => Coverage::Group(
            GroupName::new(group)
                .map_err(|e| ApiError::new(Code::InvalidId, format!("group: {e}")))?,
        ),
        (None, None) => Coverage::All,
    })
}

/// The location of a position read: any with `read`; without it, where
/// the key writes stock (a POS terminal at its stores), since the answers
/// to its own writes show it those positions anyway.
fn readable_location(caller: &Caller, location: &str) -> ApiResult<crate::ledger::LocationCode> {
    if caller.has(Scope::Read) {
        return json::location("location", location);
    }
    let acting = caller.0.acting(Scope::StockWrite);
    let acting = acting.ok_or_else(|| Caller::forbidden(Scope::Read))?;
    let location = json::location("location", location)?;
    if acting.allows(&location) {
        Ok(location)
    } else {
        Err(ApiError::location_not_allowed(&location))
    }
}

/// One position.
#[utoipa::path(get, path = "/v1/stock/{location}/{sku}", tag = "availability",
    params(("location" = crate::http::openapi::LocationCode, Path), ("sku" = crate::http::openapi::Sku, Path), ChannelParam, crate::http::openapi::IfNoneMatchHeader),
    responses((status = 200, body = PositionJson, headers(("ETag" = String, description = "the answer's tag, for `If-None-Match`"))), (status = 304, description = "not modified: `If-None-Match` names this answer's `ETag`; no body"), (status = 404, description = "unknown location")),
    security(("bearer" = [])))]
pub async fn position(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((location, sku)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<ChannelParam>,
    if_none_match: IfNoneMatch,
) -> ApiResult<TaggedJson<PositionJson>> {
    let location = readable_location(&caller, &location)?;
    let view = state.ledger().position(
        &json::sku("sku", &sku)?,
        &location,
        channel(params.channel.as_ref())?,
        state.engine.now(),
    )?;
    Ok(TaggedJson(if_none_match, PositionJson::from(&view)))
}

/// Many positions in one request; each item answers on its own.
#[utoipa::path(post, path = "/v1/availability/batch", tag = "availability", request_body = BatchAvailabilityBody,
    responses((status = 200, body = BatchAvailabilityJson)), security(("bearer" = [])))]
pub async fn batch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<BatchAvailabilityBody>,
) -> ApiResult<Json<BatchAvailabilityJson>> {
    caller.require(Scope::Read)?;
    if body.items.len() > state.limits.max_batch_items {
        return Err(ApiError::new(
            Code::TooManyItems,
            format!("at most {} items per batch", state.limits.max_batch_items),
        ));
    }
    let channel = channel(body.channel.as_ref())?;
    let at = state.engine.now();
    let results = body
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let answer = json::sku(format_args!("items[{i}].sku"), &item.sku)
                .and_then(|sku| {
                    Ok((
                        sku,
                        json::location(format_args!("items[{i}].location"), &item.location)?,
                    ))
                })
                .and_then(|(sku, location)| {
                    state
                        .ledger()
                        .position(&sku, &location, channel, at)
                        .map_err(ApiError::from)
                });
            match answer {
                Ok(view) => BatchResult::Position(PositionJson::from(&view)),
                Err(error) => BatchResult::Error {
                    sku: item.sku.chars().take(60).collect(),
                    location: item.location.chars().take(60).collect(),
                    code: error.code,
                    detail: error.detail,
                },
            }
        })
        .collect();
    Ok(Json(BatchAvailabilityJson { results }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NearbyParams {
    /// The SKU wanted.
    #[param(value_type = crate::http::openapi::Sku)]
    pub sku: String,
    /// Latitude of the point, -90 to 90.
    #[param(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    /// Longitude of the point, -180 to 180.
    #[param(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// Default 25 km, at most 1000.
    #[param(exclusive_minimum = 0.0, maximum = 1000.0)]
    pub radius_km: Option<f64>,
    /// Units needed (default 1), at most the largest quantity of a line.
    #[param(minimum = 1, maximum = 1000000)]
    pub qty: Option<u32>,
    /// Default `web`.
    #[param(value_type = Option<crate::http::openapi::ChannelName>)]
    pub channel: Option<String>,
    /// Only stores offering pickup.
    pub pickup_only: Option<bool>,
    /// Default 10, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// A publishable key, for pages that cannot set `Authorization`.
    #[param(pattern = "^opk_[0-9a-f]{64}$")]
    #[expect(
        dead_code,
        reason = "listed for the document; `Reader` reads it from the URL"
    )]
    pub key: Option<String>,
}

/// Stores near a point that can supply a quantity, nearest first (BOPIS "find in store").
/// A publishable key sees its own channel, as bands (`PageNearbyJson`).
#[utoipa::path(get, path = "/v1/nearby", tag = "availability", params(NearbyParams, crate::http::openapi::IfNoneMatchHeader),
    responses((status = 200, description = "a secret key's answer (`NearbyJson`), or a publishable key's (`PageNearbyJson`)", body = crate::http::page_json::NearbyAnswer, headers(("ETag" = String, description = "the answer's tag, for `If-None-Match`"))), (status = 304, description = "not modified: `If-None-Match` names this answer's `ETag`; no body"), (status = 422, description = "invalid parameters")),
    security(("bearer" = []), ("publishable_key" = [])))]
pub async fn nearby(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    ApiQuery(params): ApiQuery<NearbyParams>,
    if_none_match: IfNoneMatch,
) -> Response {
    let origin = reader.page_origin();
    read_nearby(&state, reader, &params, if_none_match)
        .unwrap_or_else(|error| error.for_page(origin.as_ref()).into_response())
}

fn read_nearby(
    state: &AppState,
    reader: Reader,
    params: &NearbyParams,
    if_none_match: IfNoneMatch,
) -> ApiResult<Response> {
    let channel = match &reader {
        Reader::Secret(caller) => {
            caller.require(Scope::Read)?;
            dto::channel(params.channel.as_deref().unwrap_or("web"))?
        }
        Reader::Page(page) => page.channel(params.channel.as_deref())?,
    };
    let query = nearby_query(state, params, channel)?;
    let stores = state.ledger().nearby(&query);
    let sku = query.sku.to_string();
    Ok(match reader {
        Reader::Secret(_) => {
            let stores = stores.iter().map(NearbyStoreJson::from).collect();
            TaggedJson(if_none_match, NearbyJson { sku, stores }).into_response()
        }
        Reader::Page(page) => {
            let stores = stores
                .iter()
                .map(|store| PageStoreJson::of(&page.publishable, store))
                .collect();
            let answer = PageNearbyJson { sku, stores };
            (page.answer_headers(), TaggedJson(if_none_match, answer)).into_response()
        }
    })
}

fn nearby_query(
    state: &AppState,
    params: &NearbyParams,
    channel: crate::ledger::Channel,
) -> ApiResult<NearbyQuery> {
    let sku = json::sku("sku", &params.sku)?;
    let point = GeoPoint::new(params.lat, params.lon).ok_or_else(|| {
        ApiError::new(
            Code::InvalidCoordinates,
            "lat must be within -90..90 and lon within -180..180",
        )
    })?;
    let radius_km = params.radius_km.unwrap_or(25.0);
    if !(radius_km > 0.0 && radius_km <= 1000.0) {
        return Err(ApiError::new(
            Code::InvalidRadius,
            "radius_km must be above 0 and at most 1000",
        ));
    }
    let qty = params.qty.unwrap_or(1);
    let max_qty = state.ledger().config().max_qty_per_line;
    if qty == 0 || qty > max_qty {
        return Err(ApiError::new(
            Code::InvalidQuantity,
            format!("qty must be 1 to {max_qty}"),
        ));
    }
    let limit = params.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(Code::InvalidLimit, "limit must be 1 to 100"));
    }
    Ok(NearbyQuery {
        sku,
        point,
        radius_km,
        qty: Qty(qty),
        channel,
        pickup_only: params.pickup_only.unwrap_or(false),
        limit,
    })
}
