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
use super::spread::{PartAnswer, answer};
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
    let shares = match op {
        Some("commit") => commit_shares(node, envelope, &parts),
        Some("transfer") => transfer_shares(node, envelope, &parts),
        _ => parts
            .iter()
            .map(|part| (part.0, share(envelope, part.1, op, envelope.body.clone())))
            .collect(),
    };
    let answers = join_all(
        shares
            .iter()
            .map(|(partition, share)| answer(to_partition(node, *partition, share))),
    )
    .await;
    together(id, answers)
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

/// A commit: in full, the same on every part; by lines, each part commits
/// its own lines, and a part with none listed is released (as the lines
/// not listed are on one reservation). A line of no part goes to the
/// first part, whose engine refuses it as for any reservation.
fn commit_shares(
    node: &ClusterNode,
    envelope: &Envelope,
    parts: &[(PartitionId, u64)],
) -> Vec<(PartitionId, Envelope)> {
    let body: Value = serde_json::from_slice(&envelope.body).unwrap_or(Value::Null);
    let Some(lines) = body["lines"].as_array().filter(|l| !l.is_empty()) else {
        let same = |part: &(PartitionId, u64)| {
            (
                part.0,
                share(envelope, part.1, Some("commit"), envelope.body.clone()),
            )
        };
        return parts.iter().map(same).collect();
    };
    let mut own: Vec<Vec<Value>> = vec![Vec::new(); parts.len()];
    for line in lines {
        let partition = line["sku"].as_str().map(|sku| node.partitions().of(sku));
        let at = parts
            .iter()
            .position(|p| Some(p.0) == partition)
            .unwrap_or(0);
        own[at].push(line.clone());
    }
    parts
        .iter()
        .zip(own)
        .map(|(part, lines)| {
            if lines.is_empty() {
                return (
                    part.0,
                    share(envelope, part.1, Some("release"), Bytes::new()),
                );
            }
            let body = Bytes::from(serde_json::json!({ "lines": lines }).to_string());
            (part.0, share(envelope, part.1, Some("commit"), body))
        })
        .collect()
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
