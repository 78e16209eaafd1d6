//! A cluster node's own routes: `/readyz` (joined, and every partition can
//! be served here or forwarded) and `GET /v1/cluster` (the nodes and who
//! owns each partition under which epoch; admin scope).

use axum::Json;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde_json::json;

use super::ClusterNode;
use super::forward::Envelope;
use crate::engine::{ApiKey, Scope};
use crate::http::dto::{ClusterJson, ClusterNodeJson, PartitionOwnerJson};
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::http::publishable::{FORWARDED_HOST, refuse_secret_from_other_site, secret_key};

/// 200 once the node has joined and every partition that belongs to it
/// is loaded (the others are forwarded); 503 with the reason otherwise.
pub fn readyz(node: &ClusterNode) -> Response {
    let (status, body) = match node.driver.unready_reason() {
        None => (
            StatusCode::OK,
            json!({"status": "ready", "store": "redis-cluster", "node_id": node.node_id().as_str(),
                   "served": node.driver.served().len()}),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "loading", "store": "redis-cluster", "node_id": node.node_id().as_str(),
                   "reason": reason}),
        ),
    };
    (status, Json(body)).into_response()
}

/// The caller's secret key, by the node's shared key store; 401 without
/// one. As an engine's `Caller`: a publishable key is refused (the reads
/// pages make are each one partition's, served by its engine), and so is a
/// secret key from another site's page.
pub fn authenticate(node: &ClusterNode, headers: &HeaderMap) -> Result<Arc<ApiKey>, ApiError> {
    let key = secret_key(node.shared.engine().keys(), headers)?;
    // The front named the Host the client sent its request to.
    let host = headers
        .get(FORWARDED_HOST)
        .or_else(|| headers.get(header::HOST));
    refuse_secret_from_other_site(headers, host)?;
    Ok(key)
}

/// `GET /v1/cluster`, for admin keys: the heartbeats' nodes and each
/// partition's lease as Redis holds it now.
pub async fn cluster(node: &ClusterNode, envelope: &Envelope) -> Response {
    let key = match authenticate(node, &envelope.headers) {
        Ok(key) => key,
        Err(unauthorized) => return unauthorized.into_response(),
    };
    if !key.has(Scope::Admin) {
        return ApiError::new(Code::Forbidden, "this request needs the `admin` scope")
            .into_response();
    }
    let partitions = node.partitions();
    let leases = join_all(partitions.all().map(|p| node.store.owner(p))).await;
    let mut owners = Vec::with_capacity(leases.len());
    for (partition, lease) in partitions.all().zip(leases) {
        match lease {
            Ok((node_id, epoch)) => owners.push(PartitionOwnerJson {
                partition: partition.index(),
                node_id,
                epoch: epoch.0,
            }),
            Err(error) => {
                return ApiError::new(
                    Code::ClusterStoreUnavailable,
                    format!("cannot read partition {partition}'s lease: {error}"),
                )
                .into_response();
            }
        }
    }
    let nodes = node
        .driver
        .members()
        .into_iter()
        .map(|m| ClusterNodeJson {
            owned: owners
                .iter()
                .filter(|o| o.node_id.as_deref() == Some(&m.id))
                .count(),
            id: m.id,
            url: m.url,
            alive: m.alive,
        })
        .collect();
    Json(ClusterJson {
        node_id: node.node_id().to_string(),
        partitions: partitions.count(),
        nodes,
        owners,
    })
    .into_response()
}
