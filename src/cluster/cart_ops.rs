//! Operations on a granted cart across partitions (its id has
//! `CART_BIT`): read, commit (in full or by lines), release, extend and
//! transfer act on every part it names, all at once, each under the
//! request's own `Idempotency-Key` (in each part's partition), so a retry
//! applies nothing twice. The answer is the cart made from the parts'
//! answers, in the shape of a single reservation.

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::Value;

use super::ClusterNode;
use super::carts::json_answer;
use super::dispatch::{call, to_partition};
use super::forward::Envelope;
use super::spread::{PartAnswer, answer, ask_each};
use crate::http::dto::{self, CommitBody, ExtendBody};
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::store::cluster_carts::CartState;
use omnistock_cluster::PartitionId;

/// A cart as its client sees it: the shape of one reservation.
#[derive(Serialize)]
struct CartJson<'a> {
    id: String,
    state: &'static str,
    channel: &'a Value,
    created_at: &'a Value,
    expires_at: &'a Value,
    resolved_at: Option<&'a Value>,
    lines: Vec<&'a Value>,
}

/// The cart `id` made from its parts' reservations: every line; the
/// earliest creation and deadline; resolved when every part is, at the
/// last. Its state: committed if any part is (units left), else held if
/// any part is, else released if any part was, else expired.
pub(super) fn merge(id: u64, parts: &[&Value]) -> Value {
    let states: Vec<&str> = parts.iter().filter_map(|p| p["state"].as_str()).collect();
    let state = ["committed", "held", "released"]
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or("expired");
    // RFC 3339 times in UTC with the same precision: their text sorts as
    // their instants do.
    let text = |p: &&Value, field: &str| p[field].as_str().map(str::to_owned);
    let earliest = |field: &str| {
        parts
            .iter()
            .min_by_key(|p| text(p, field))
            .map(|p| &p[field])
    };
    let unresolved = parts.iter().any(|p| p["resolved_at"].is_null());
    let resolved_at = if unresolved {
        None
    } else {
        parts
            .iter()
            .max_by_key(|p| text(p, "resolved_at"))
            .map(|p| &p["resolved_at"])
    };
    let null = &Value::Null;
    let cart = CartJson {
        id: id.to_string(),
        state,
        channel: parts.first().map_or(null, |p| &p["channel"]),
        created_at: earliest("created_at").unwrap_or(null),
        expires_at: earliest("expires_at").unwrap_or(null),
        resolved_at,
        lines: parts
            .iter()
            .filter_map(|p| p["lines"].as_array())
            .flatten()
            .collect(),
    };
    serde_json::to_value(cart).unwrap_or(Value::Null)
}

/// A request on cart `id` homed in `home`: `/v1/reservations/ID[/OP]`.
pub async fn operate(node: &ClusterNode, home: PartitionId, envelope: &Envelope) -> Response {
    if let Err(unauthorized) = super::status::authenticate(node, &envelope.headers) {
        return unauthorized.into_response();
    }
    let path = envelope.uri.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (id, op) = match segments.as_slice() {
        ["v1", "reservations", id] => (*id, None),
        ["v1", "reservations", id, op] => (*id, Some(*op)),
        _ => return call(&node.node_app, envelope).await,
    };
    let known = matches!(
        (&envelope.method, op),
        (&Method::GET, None)
            | (
                &Method::POST,
                Some("commit" | "release" | "extend" | "transfer")
            )
    );
    let Some(id) = id.parse::<u64>().ok().filter(|_| known) else {
        return call(&node.node_app, envelope).await;
    };
    let parts = match granted_parts(node, home, id).await {
        Ok(parts) => parts,
        Err(problem) => return problem,
    };
    if op == Some("commit") {
        return commit(node, envelope, id, &parts).await;
    }
    let shares = match op {
        Some("transfer") => transfer_shares(node, envelope, &parts),
        _ => parts
            .iter()
            .map(|part| (part.0, share(envelope, part.1, op, envelope.body.clone())))
            .collect(),
    };
    let answers = ask_each(node, &shares).await;
    if op == Some("extend") && answers.iter().all(Result::is_ok) {
        retain(node, home, id, &envelope.body).await;
    }
    together(id, answers)
}

/// After an extend: the cart's record is kept as long beyond its new
/// deadline as it was beyond its first (else it could lapse first).
async fn retain(node: &ClusterNode, home: PartitionId, id: u64, body: &[u8]) {
    let Ok(extend) = serde_json::from_slice::<ExtendBody>(body) else {
        return;
    };
    let retain_ms = extend
        .ttl_seconds
        .saturating_mul(1_000)
        .saturating_add(super::carts::RETENTION_MS);
    if let Err(error) = node.store.retain_cart(home, id, retain_ms).await {
        // Kept a day beyond its first deadline regardless.
        tracing::warn!(%error, cart = id, "cannot keep an extended cart's record longer");
    }
}

/// The parts of cart `id`, if it was granted; else the cart is not found
/// (a refused or unfinished cart holds nothing).
async fn granted_parts(
    node: &ClusterNode,
    home: PartitionId,
    id: u64,
) -> Result<Vec<(PartitionId, u64)>, Response> {
    let record = node
        .store
        .cart(home, id)
        .await
        .map_err(|e| super::carts::store_unavailable(&e.to_string()))?;
    let granted = record.filter(|r| r.state == CartState::Granted);
    let partitions = node.partitions();
    granted
        .map(|r| {
            r.parts
                .iter()
                .filter_map(|(p, part)| Some((partitions.get(*p)?, *part)))
                .collect()
        })
        .ok_or_else(|| {
            ApiError::new(
                Code::ReservationNotFound,
                format!("reservation {id} not found"),
            )
            .into_response()
        })
}

/// One part's request: the same method, headers and `body`, on the part.
fn share(envelope: &Envelope, part: u64, op: Option<&str>, body: Bytes) -> Envelope {
    let path = match op {
        Some(op) => format!("/v1/reservations/{part}/{op}"),
        None => format!("/v1/reservations/{part}"),
    };
    Envelope {
        uri: path.parse().unwrap_or_else(|_| Uri::from_static("/")),
        body,
        ..envelope.clone()
    }
}

/// A commit of cart `id`. In full: the same on every part. By lines:
/// every line must be one of the cart's (checked on its parts as they are,
/// before anything changes); the parts with lines listed commit them, then
/// the parts with none are released (as the lines not listed on one
/// reservation are). A retry with the same key finishes what a failure
/// left undone.
async fn commit(
    node: &ClusterNode,
    envelope: &Envelope,
    id: u64,
    parts: &[(PartitionId, u64)],
) -> Response {
    let on_part = |part: &(PartitionId, u64), op: &str, body: Bytes| {
        (part.0, share(envelope, part.1, Some(op), body))
    };
    let listed = match listed_lines(node, envelope, id, parts).await {
        Ok(Some(listed)) => listed,
        Ok(None) => {
            let same = parts
                .iter()
                .map(|p| on_part(p, "commit", envelope.body.clone()));
            return together(id, ask_each(node, &same.collect::<Vec<_>>()).await);
        }
        Err(problem) => return problem,
    };
    let (committing, releasing): (Vec<_>, Vec<_>) = parts
        .iter()
        .zip(listed)
        .partition(|(_, lines)| !lines.is_empty());
    let commits = committing.iter().map(|(part, lines)| {
        let body = serde_json::json!({ "lines": lines }).to_string();
        on_part(part, "commit", Bytes::from(body))
    });
    let mut answers = ask_each(node, &commits.collect::<Vec<_>>()).await;
    if answers.iter().all(Result::is_ok) {
        let releases = releasing
            .iter()
            .map(|(part, _)| on_part(part, "release", Bytes::new()));
        answers.extend(ask_each(node, &releases.collect::<Vec<_>>()).await);
    }
    together(id, answers)
}

/// The lines of a commit by lines, grouped as `parts` (each part's own);
/// `None` for a commit in full (or a body no engine takes); a problem if a
/// line is not the cart's.
async fn listed_lines(
    node: &ClusterNode,
    envelope: &Envelope,
    id: u64,
    parts: &[(PartitionId, u64)],
) -> Result<Option<Vec<Vec<Value>>>, Response> {
    // Without a body, or with one that is not a commit's (each part's
    // engine refuses it, as one engine would), the same to every part.
    let body: Option<CommitBody> = serde_json::from_slice(&envelope.body).ok();
    let Some(lines) = body.and_then(|b| b.lines) else {
        return Ok(None);
    };
    let max_lines = node.shared.engine().ledger().config().max_lines_per_request;
    let checked = dto::lines(&lines, max_lines).map_err(IntoResponse::into_response)?;
    let reads: Vec<(PartitionId, Envelope)> = parts
        .iter()
        .map(|part| {
            let read = Envelope {
                method: Method::GET,
                ..share(envelope, part.1, None, Bytes::new())
            };
            (part.0, read)
        })
        .collect();
    let mut held: Vec<Value> = Vec::with_capacity(parts.len());
    for read in ask_each(node, &reads).await {
        held.push(read.map_err(|problem| problem.to_response())?);
    }
    let mut own: Vec<Vec<Value>> = vec![Vec::new(); parts.len()];
    for (line, body) in checked.iter().zip(&lines) {
        let (sku, location) = (line.sku.as_str(), line.location.as_str());
        let holds = |part: &Value| {
            let held = part["lines"].as_array().map_or(&[][..], Vec::as_slice);
            held.iter()
                .any(|h| h["sku"] == sku && h["location"] == location)
        };
        let Some(at) = held.iter().position(holds) else {
            return Err(ApiError::new(
                Code::LineNotInReservation,
                format!("reservation {id} has no line for {sku} at {location}"),
            )
            .into_response());
        };
        own[at].push(serde_json::json!(body));
    }
    Ok(Some(own))
}

/// A transfer moves a line of one SKU: on the part in that SKU's
/// partition; the other parts are read for the answer.
fn transfer_shares(
    node: &ClusterNode,
    envelope: &Envelope,
    parts: &[(PartitionId, u64)],
) -> Vec<(PartitionId, Envelope)> {
    let body: Value = serde_json::from_slice(&envelope.body).unwrap_or(Value::Null);
    let partition = body["sku"].as_str().map(|sku| node.partitions().of(sku));
    let at = parts
        .iter()
        .position(|p| Some(p.0) == partition)
        .unwrap_or(0);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i == at {
                return (
                    part.0,
                    share(envelope, part.1, Some("transfer"), envelope.body.clone()),
                );
            }
            let read = Envelope {
                method: Method::GET,
                ..share(envelope, part.1, None, Bytes::new())
            };
            (part.0, read)
        })
        .collect()
}

/// The cart from every part's answer; the first part's problem if any
/// part could not do it (a retry with the same key finishes the rest).
fn together(id: u64, answers: Vec<PartAnswer>) -> Response {
    if let Some(problem) = answers.iter().find_map(|a| a.as_ref().err()) {
        return problem.to_response();
    }
    let parts: Vec<&Value> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    json_answer(StatusCode::OK, Bytes::from(merge(id, &parts).to_string()))
}

/// Releases the parts an attempt placed that its cart will not keep
/// (refused or aborted); one that cannot be released now is undone later
/// by its partition's owner, which finds it listed.
pub(super) async fn release_parts(node: &ClusterNode, envelope: &Envelope, placed: &[(u16, u64)]) {
    let mut request = Envelope {
        method: Method::POST,
        ..share(envelope, 0, Some("release"), Bytes::new())
    };
    request.headers.remove("idempotency-key");
    request.headers.remove(axum::http::header::CONTENT_TYPE);
    let partitions = node.partitions();
    let releasing = placed.iter().filter_map(|(p, part)| {
        let partition = partitions.get(*p)?;
        let release = Envelope {
            uri: format!("/v1/reservations/{part}/release").parse().ok()?,
            ..request.clone()
        };
        Some(async move { (part, answer(to_partition(node, partition, &release)).await) })
    });
    for (part, outcome) in join_all(releasing).await {
        if let Err(problem) = outcome {
            tracing::warn!(part, status = %problem.status, "a cart's part was not released; its partition's owner will");
        }
    }
}
