//! Admin: locations, groups, channel policies, API keys, the movement journal.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::AppState;
use crate::http::auth::{Caller, Scope};
use crate::http::dto::{
    self, GroupBody, JournalJson, LocationBody, LocationJson, MovementJson, PolicyBody,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiJson, ApiPath, ApiQuery, rfc3339};
use crate::ledger::{
    Catalog, ChannelPolicy, GroupName, JournalRead, Ledger, LocationCode, Movement, PolicyScope,
    Qty, Seq, Sku,
};

/// Create or replace a store or warehouse.
#[utoipa::path(put, path = "/v1/locations/{location}", tag = "admin", params(("location" = crate::http::openapi::LocationCode, Path)), request_body = LocationBody,
    responses((status = 200, body = LocationJson), (status = 422, description = "invalid location")), security(("bearer" = [])))]
pub async fn put_location(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
    ApiJson(body): ApiJson<LocationBody>,
) -> ApiResult<Json<LocationJson>> {
    caller.require(Scope::Admin)?;
    let location = body.to_location(json::location("location", &code)?)?;
    state.engine.put_location(location.clone()).await?;
    Ok(Json(LocationJson::from(&location)))
}

/// Every location.
#[utoipa::path(get, path = "/v1/locations", tag = "admin", responses((status = 200, body = Vec<LocationJson>)), security(("bearer" = [])))]
pub async fn list_locations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<LocationJson>>> {
    caller.require(Scope::Read)?;
    let catalog = state.ledger().catalog();
    Ok(Json(
        catalog
            .locations()
            .map(|(_, l)| LocationJson::from(l))
            .collect(),
    ))
}

/// Create or replace a location group.
#[utoipa::path(put, path = "/v1/groups/{group}", tag = "admin", params(("group" = crate::http::openapi::GroupName, Path)), request_body = GroupBody,
    responses((status = 204), (status = 404, description = "unknown member location")), security(("bearer" = [])))]
pub async fn put_group(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<GroupBody>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    let name =
        GroupName::new(&name).map_err(|e| ApiError::new(Code::InvalidId, format!("group: {e}")))?;
    if body.locations.len() > 10_000 {
        return Err(ApiError::new(
            Code::TooManyItems,
            "at most 10,000 locations per group",
        ));
    }
    let members = body
        .locations
        .iter()
        .map(|c| json::location("locations", c))
        .collect::<Result<Vec<_>, _>>()?;
    state.engine.put_group(name, &members).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a channel's policy (buffer and/or cap) at a location or a group; both
/// `held_back` and `cap` absent removes it.
#[utoipa::path(put, path = "/v1/policies", tag = "admin", request_body = PolicyBody,
    responses((status = 204), (status = 404, description = "unknown location or group")), security(("bearer" = [])))]
pub async fn put_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<PolicyBody>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    let channel = dto::channel(&body.channel)?;
    let scope = match (&body.location, &body.group) {
        (Some(location), None) => PolicyScope::Location(json::location("location", location)?),
        (None, Some(group)) => PolicyScope::Group(
            GroupName::new(group)
                .map_err(|e| ApiError::new(Code::InvalidId, format!("group: {e}")))?,
        ),
        _ => {
            return Err(ApiError::new(
                Code::InvalidScope,
                "give exactly one of location or group",
            ));
        }
    };
    let policy = match (body.held_back, body.cap) {
        (None, None) => None,
        (held_back, cap) => Some(ChannelPolicy {
            held_back: Qty(held_back.unwrap_or(0)),
            cap: cap.map(Qty),
        }),
    };
    state.engine.put_policy(channel, scope, policy).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The cluster: the nodes and who owns each partition under which epoch.
/// Answered by a node started with `--cluster` (its front answers this
/// route itself); an engine running alone answers 404 `not_a_cluster`.
#[utoipa::path(get, path = "/v1/cluster", tag = "admin",
    responses((status = 200, description = "cluster mode only", body = crate::http::dto::ClusterJson),
        (status = 404, description = "an engine running alone (`not_a_cluster`)")),
    security(("bearer" = [])))]
pub async fn cluster(caller: Caller) -> ApiResult<Json<crate::http::dto::ClusterJson>> {
    caller.require(Scope::Admin)?;
    Err(ApiError::new(
        Code::NotACluster,
        "this engine runs alone: start it with --cluster to run it as a node of a cluster",
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JournalParams {
    /// First sequence to return (default: the oldest kept).
    pub since: Option<u64>,
    /// A cluster's journal of every SKU: where to continue, as
    /// `next_cursor` gave it (instead of `since`). A single node answers
    /// 422: it takes `since`.
    pub cursor: Option<String>,
    /// Only this SKU's movements.
    #[param(value_type = Option<crate::http::openapi::Sku>)]
    pub sku: Option<String>,
    /// Only this location's movements.
    #[param(value_type = Option<crate::http::openapi::LocationCode>)]
    pub location: Option<String>,
    /// Default 100, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The movement journal from a sequence on, optionally for one SKU and/or location.
#[utoipa::path(get, path = "/v1/journal", tag = "admin", params(JournalParams), responses((status = 200, body = JournalJson),
        (status = 409, description = "`since` is ahead of the journal (`cursor_ahead`): never handed out by this server, or by a run before its restart"),
        (status = 422, description = "invalid parameters; or a `cursor` sent to a single node, which takes `since` (`invalid_cursor`)")), security(("bearer" = [])))]
pub async fn journal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(params): ApiQuery<JournalParams>,
) -> ApiResult<Json<JournalJson>> {
    caller.require(Scope::Admin)?;
    if params.cursor.is_some() {
        return Err(ApiError::new(
            Code::InvalidCursor,
            "`cursor` continues a cluster's journal; this node runs alone: pass `since`",
        ));
    }
    let filter = JournalFilter::of(&params)?;
    let from = Seq(params.since.unwrap_or(1).max(1));
    let head = state.ledger().journal_head();
    if from > head {
        // Never handed out here (another run's, or made up): answering it
        // with nothing would silently skip every movement until the head
        // gets there.
        // A well-formed request at odds with the server's state: 409.
        return Err(ApiError::new(
            Code::CursorAhead,
            format!(
                "since {} is ahead of the journal (next sequence {}): start again without since",
                from.0, head.0
            ),
        ));
    }
    Ok(Json(filter.read(state.ledger(), from)))
}

/// Which movements `GET /v1/journal` lists, and how many.
struct JournalFilter {
    limit: usize,
    sku: Option<Sku>,
    location: Option<LocationCode>,
}

impl JournalFilter {
    fn of(params: &JournalParams) -> ApiResult<JournalFilter> {
        let limit = params.limit.unwrap_or(100);
        if !(1..=1_000).contains(&limit) {
            return Err(ApiError::new(Code::InvalidLimit, "limit must be 1 to 1000"));
        }
        let sku = params
            .sku
            .as_deref()
            .map(|s| json::sku("sku", s))
            .transpose()?;
        let location = params
            .location
            .as_deref()
            .map(|l| json::location("location", l))
            .transpose()?;
        Ok(JournalFilter {
            limit,
            sku,
            location,
        })
    }

    /// Up to `limit` matching movements from `from` on. Filtered reads scan
    /// forward in pages; bounded by the journal's size.
    fn read(&self, ledger: &Ledger, mut from: Seq) -> JournalJson {
        let catalog = ledger.catalog();
        let mut lagged = false;
        let mut movements = Vec::new();
        for _ in 0..64 {
            let (page, next) = match ledger.read_journal(from, 1_000) {
                JournalRead::Movements { movements, next } => (movements, next),
                JournalRead::Lagged { oldest, .. } => {
                    lagged = true;
                    from = oldest;
                    continue;
                }
            };
            let empty = page.is_empty();
            self.collect(ledger, &catalog, page, &mut movements, &mut from);
            if empty {
                // Past catalog markers (they are no movements), if any.
                from = next;
                break;
            }
            if movements.len() >= self.limit {
                break;
            }
            from = next;
        }
        JournalJson {
            movements,
            next: from.0,
            lagged,
            next_cursor: None,
        }
    }

    /// Adds the page's matching movements (up to `limit`), moving `from`
    /// past each one looked at.
    fn collect(
        &self,
        ledger: &Ledger,
        catalog: &Catalog,
        page: Vec<Movement>,
        movements: &mut Vec<MovementJson>,
        from: &mut Seq,
    ) {
        for m in page {
            if movements.len() >= self.limit {
                break;
            }
            let (Some(sku_code), Some(loc)) = (
                ledger.sku_code(m.position.sku()),
                catalog.location(m.position.loc()),
            ) else {
                continue;
            };
            *from = Seq(m.seq.0 + 1);
            if self.sku.as_ref().is_some_and(|s| *s != sku_code)
                || self.location.as_ref().is_some_and(|l| *l != loc.code)
            {
                continue;
            }
            movements.push(movement_json(&m, &sku_code, &loc.code));
        }
    }
}

fn movement_json(m: &Movement, sku: &Sku, location: &LocationCode) -> MovementJson {
    let note = m.note.as_deref();
    MovementJson {
        seq: m.seq.0,
        at: rfc3339(m.at),
        kind: m.kind.as_str(),
        sku: sku.to_string(),
        location: location.to_string(),
        on_hand_delta: m.on_hand_delta,
        reserved_delta: m.reserved_delta,
        safety_stock_delta: m.safety_stock_delta,
        non_sellable_delta: m.non_sellable_delta,
        incoming_delta: m.incoming_delta,
        on_hand: m.after.on_hand.0,
        reserved: m.after.reserved.0,
        channel: m.channel.map(|c| c.as_str()),
        reservation: m.reservation.map(|r| r.to_string()),
        reason: note.and_then(|n| n.reason.clone()),
        reference: note.and_then(|n| n.reference.clone()),
        idempotency_key: note
            .and_then(|n| n.idempotency_key.as_ref())
            .map(|k| k.to_string()),
    }
}

/// The ledger's invariants on a consistent cut (every shard locked at once).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditJson {
    /// True when every invariant holds.
    pub ok: bool,
    /// The first violation found, if any.
    pub violation: Option<String>,
    pub positions: usize,
    pub held_reservations: usize,
    pub on_hand: u64,
    /// Equal to the units held by active reservations when `ok`.
    pub reserved: u64,
    /// Positions where a count left fewer units on hand than reserved.
    pub positions_short: usize,
}

/// Audit: checks that reserved equals the units of active holds on every
/// position, that the deadline index matches the held set, and that versions
/// are below the journal head. Briefly stops writers (a consistent cut).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", responses((status = 200, body = AuditJson)), security(("bearer" = [])))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<AuditJson>> {
    caller.require(Scope::Admin)?;
    Ok(Json(match state.ledger().check_invariants() {
        Ok(report) => AuditJson {
            ok: true,
            violation: None,
            positions: report.positions,
            held_reservations: report.held_reservations,
            on_hand: report.on_hand,
            reserved: report.reserved,
            positions_short: report.positions_short,
        },
        Err(violation) => AuditJson {
            ok: false,
            violation: Some(violation),
            positions: 0,
            held_reservations: 0,
            on_hand: 0,
            reserved: 0,
            positions_short: 0,
        },
    }))
}
