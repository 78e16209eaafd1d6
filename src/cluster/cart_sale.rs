//! Sales across partitions: a sale whose lines live in several partitions
//! is a cart (`carts.rs`) whose parts are held briefly and, once every part
//! is placed and the decision is recorded, committed. Its answer, the
//! positions after the sale (read once its parts are committed), is then
//! recorded for retries. A coordinator that stops after the decision
//! leaves a granted sale: a retry with the same key finishes it, and so
//! does each partition's owner for its part (`cart_recovery.rs`), long
//! before the holds would lapse.

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::ClusterNode;
use super::carts::{Attempt, Cart, commit_key, forget_parts, json_answer, record};
use super::forward::Envelope;
use super::spread::ask_each;
use crate::store::cluster_carts::CartState;
use omnistock_cluster::PartitionId;

/// Commits every part of a granted sale, reads the positions it left and
/// records them as its answer.
pub(super) async fn finish(
    node: &ClusterNode,
    envelope: &Envelope,
    cart: &Cart,
    at: Attempt,
    parts: &[(u16, u64)],
) -> Response {
    let commits: Vec<(PartitionId, Envelope)> = parts
        .iter()
        .filter_map(|(p, part)| {
            let mut share = Envelope {
                method: Method::POST,
                uri: format!("/v1/reservations/{part}/commit").parse().ok()?,
                body: Bytes::new(),
                ..envelope.clone()
            };
            share.headers.remove(header::CONTENT_TYPE);
            let key = HeaderValue::from_str(&commit_key(at.id, at.number)).ok()?;
            share.headers.insert("idempotency-key", key);
            Some((node.partitions().get(*p)?, share))
        })
        .collect();
    for committed in ask_each(node, &commits).await {
        if let Err(problem) = committed {
            // A retry with the same key commits the rest.
            return problem.to_response();
        }
    }
    let positions = match positions(node, envelope, cart).await {
        Ok(positions) => positions,
        Err(problem) => return problem,
    };
    let body = Bytes::from(json!({ "positions": positions }).to_string());
    let ok = StatusCode::OK.as_u16();
    let recorded = record(
        node,
        at,
        CartState::Granted,
        (CartState::Granted, ok, &body),
        parts,
    )
    .await;
    if let Err(unrecorded) = recorded {
        return unrecorded.into_response();
    }
    forget_parts(node, cart, at).await;
    json_answer(StatusCode::OK, body)
}

/// The position of every line of the sale, as it is now.
async fn positions(
    node: &ClusterNode,
    envelope: &Envelope,
    cart: &Cart,
) -> Result<Vec<Value>, Response> {
    let lines = cart.body["lines"].as_array().map_or(&[][..], Vec::as_slice);
    let reads: Vec<(PartitionId, Envelope)> = lines
        .iter()
        .filter_map(|line| {
            let (sku, location) = (line["sku"].as_str()?, line["location"].as_str()?);
            let path = format!(
                "/v1/stock/{}/{}",
                utf8_percent_encode(location, NON_ALPHANUMERIC),
                utf8_percent_encode(sku, NON_ALPHANUMERIC)
            );
            let read = Envelope {
                method: Method::GET,
                uri: path.parse().ok()?,
                body: Bytes::new(),
                ..envelope.clone()
            };
            Some((node.partitions().of(sku), read))
        })
        .collect();
    let mut positions = Vec::with_capacity(reads.len());
    for read in ask_each(node, &reads).await {
        match read {
            Ok(position) => positions.push(position),
            Err(problem) => return Err(problem.to_response()),
        }
    }
    Ok(positions)
}
