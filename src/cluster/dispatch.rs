//! A cluster node's front: every request is read (its body bounded by
//! `--max-body-bytes` and `--body-read-timeout-ms`), given a destination
//! ([`target`]), and answered by this node, by the partition's engine here,
//! or by the partition's owner (forwarded once; if the partition moved
//! meanwhile, once more to the new owner).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::ClusterNode;
use super::forward::{
    Envelope, FORWARDED_BY, Forwarded, NOT_OWNER, forwarded_partition, shared_versions,
};
use super::target::{Spread, Target, by_path, by_path_and_body};
use crate::engine::cluster_shared::SharedRecord;
use crate::http::body::read_body;
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::store::cluster_carts::CartKind;
use crate::store::cluster_shared::Published;
use omnistock_cluster::{NodeId, PartitionId, Partitions};

/// Longest a request waits for a moving partition to settle: a lease's
/// TTL and a heartbeat's, the time a SIGKILLed owner's partitions take to
/// move (a graceful move settles in a heartbeat).
const MOVE_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting request looks whether the partition settled.
const MOVE_POLL: Duration = Duration::from_millis(25);
/// Longest between two attempts while a partition is moving.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Attempts at publishing one change of the shared catalog or keys while
/// other nodes change it too.
const PUBLISH_ATTEMPTS: usize = 3;

/// The front: one handler for every path.
pub fn router(node: Arc<ClusterNode>) -> Router {
    Router::new().fallback(front).with_state(node)
}

async fn front(State(node): State<Arc<ClusterNode>>, request: Request) -> Response {
    let api = request.uri().path().starts_with("/v1/");
    let mut response = route(&node, request).await;
    if api {
        // As a node's own answers are (a forwarded one is already).
        crate::http::track::private_unless_said(&mut response);
    }
    response
}

/// Where the request goes, and its answer.
async fn route(node: &Arc<ClusterNode>, request: Request) -> Response {
    let (method, uri) = (request.method(), request.uri());
    let known = by_path(node.partitions(), method, uri.path(), uri.query());
    let known = share_of_read(known.as_ref(), request.headers(), node.partitions()).or(known);
    if known == Some(Target::Spread(Spread::Import)) {
        // Streamed: an import is unbounded, never read whole.
        return super::import::import(node, request).await;
    }
    let envelope = match read(node, request).await {
        Ok(envelope) => envelope,
        Err(problem) => return problem.into_response(),
    };
    let destination = known.unwrap_or_else(|| {
        let path = envelope.uri.path();
        by_path_and_body(node.partitions(), &envelope.method, path, &envelope.body)
    });
    match destination {
        Target::Node => call(&node.node_app, &envelope).await,
        Target::Ready => super::status::readyz(node),
        Target::ClusterStatus => super::status::cluster(node, &envelope).await,
        Target::SharedCatalog => shared_change(node, SharedRecord::Catalog, &envelope).await,
        Target::SharedKeys => shared_change(node, SharedRecord::Keys, &envelope).await,
        Target::Partition(partition) => to_partition(node, partition, &envelope).await,
        Target::Spread(spread) => spread_over_partitions(node.clone(), spread, &envelope).await,
        Target::Cart(home) => super::cart_ops::operate(node, home, &envelope).await,
        Target::CrossPartition(detail) => {
            match super::status::authenticate(node, &envelope.headers) {
                Ok(_) => ApiError::new(Code::CrossPartitionNotSupported, detail).into_response(),
                Err(unauthorized) => unauthorized.into_response(),
            }
        }
    }
}

/// A share of another node's read of every partition (forwarded, naming
/// its partition) is that partition's. Only reads: a write is served
/// where its own SKUs say, whatever a client puts in the headers.
fn share_of_read(
    known: Option<&Target>,
    headers: &HeaderMap,
    partitions: Partitions,
) -> Option<Target> {
    let read = matches!(
        known?,
        Target::Spread(Spread::Audit | Spread::Feed | Spread::Stream | Spread::Journal)
            | Target::CrossPartition(_)
    );
    let partition = forwarded_partition(headers, partitions)?;
    read.then_some(Target::Partition(partition))
}

/// A request that concerns several partitions, by what it is.
async fn spread_over_partitions(
    node: Arc<ClusterNode>,
    spread: Spread,
    envelope: &Envelope,
) -> Response {
    match spread {
        Spread::AvailabilityBatch => super::spread::availability_batch(&node, envelope).await,
        Spread::MovementBatch => super::spread::movement_batch(&node, envelope).await,
        Spread::Audit => super::spread::audit(&node, envelope).await,
        Spread::Feed => super::feeds::feed(&node, envelope).await,
        Spread::Stream => super::streams::availability(node.clone(), envelope).await,
        Spread::Import => super::import::import(&node, envelope.request()).await,
        Spread::Journal => super::journal::journal(&node, envelope).await,
        Spread::Cart => super::carts::create(&node, CartKind::Reservation, envelope).await,
        Spread::Sale => super::carts::create(&node, CartKind::Sale, envelope).await,
    }
}

/// The request with its whole body, within the node's body limits (the
/// same reader, and so the same 413 and 408, as every handler's).
async fn read(node: &ClusterNode, request: Request) -> Result<Envelope, ApiError> {
    let limits = &node.node_state.limits;
    let (mut parts, body) = request.into_parts();
    let body = read_body(body, limits.max_body_bytes, limits.body_read_timeout_ms).await?;
    name_the_client(&mut parts, &limits.trusted_proxies);
    Ok(Envelope {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    })
}

/// A request from a client (not from another node) carries, wherever it
/// is served, the `Host` it was sent to and the client's address (the
/// engine that serves it sees neither: it gets the request from this node).
/// Whatever a client sent in these headers is replaced.
fn name_the_client(parts: &mut axum::http::request::Parts, trusted: &[ipnet::IpNet]) {
    use crate::http::publishable::{ClientAddr, FORWARDED_CLIENT, FORWARDED_HOST, resolve_client};
    if parts.headers.contains_key(super::forward::FORWARDED_BY) {
        return;
    }
    parts.headers.remove(FORWARDED_HOST);
    parts.headers.remove(FORWARDED_CLIENT);
    if let Some(host) = parts.headers.get(axum::http::header::HOST).cloned() {
        parts.headers.insert(FORWARDED_HOST, host);
    }
    if let Some(ClientAddr(peer)) = parts.extensions.get::<ClientAddr>().copied()
        && let address = resolve_client(peer, &parts.headers, trusted)
        && let Ok(value) = axum::http::HeaderValue::from_str(&address.to_string())
    {
        parts.headers.insert(FORWARDED_CLIENT, value);
    }
}

/// Runs `envelope` through one of this node's APIs.
pub(super) async fn call(app: &Router, envelope: &Envelope) -> Response {
    let mut app = app.clone();
    match app.call(envelope.request()).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// On the partition's engine here if this node serves it; else forwarded
/// to its owner (one hop: the owner never forwards it again). While the
/// partition is moving (its owner says it is not there, cannot be reached,
/// or it is this node's but not loaded yet), the node tries again each
/// time the owner changes, or every [`RETRY_PAUSE`], for up to
/// [`MOVE_WAIT`]: nothing was applied by the attempts that failed so.
pub(super) async fn to_partition(
    node: &ClusterNode,
    partition: PartitionId,
    envelope: &Envelope,
) -> Response {
    let deadline = Instant::now() + MOVE_WAIT;
    let mut why = String::from("it is moving between nodes");
    loop {
        if node.driver.serving(partition).is_some()
            && let Some(serving) = node.engines.enter(partition).await
        {
            catch_up(node, envelope).await;
            let app = node.partition_app(partition, &serving.engine);
            // The pass is held until the answer is made: a handover waits.
            let response = call(&app, envelope).await;
            drop(serving);
            return response;
        }
        if envelope.headers.contains_key(FORWARDED_BY) {
            let mut response = unavailable(partition, "moved away from this node").into_response();
            response
                .headers_mut()
                .insert(NOT_OWNER, HeaderValue::from_static("1"));
            return response;
        }
        let owner = node
            .driver
            .owner_of(partition)
            .filter(|o| o.id != *node.node_id());
        if let Some(owner) = &owner {
            let (from, shared) = (node.node_id().as_str(), node.shared.versions());
            match node
                .forwarder
                .forward(&owner.url, partition, envelope, from, shared)
                .await
            {
                Forwarded::Answered(response) if !response.headers().contains_key(NOT_OWNER) => {
                    return until_stopped(node, response);
                }
                Forwarded::Answered(_) => why = format!("{} does not serve it yet", owner.id),
                Forwarded::NotSent(error) => why = format!("{} is unreachable: {error}", owner.id),
                Forwarded::Lost(error) => {
                    return unavailable(
                        partition,
                        &format!("{} did not answer ({error}); the request may have been applied there: retry with the same Idempotency-Key", owner.id),
                    )
                    .into_response();
                }
            }
        }
        if Instant::now() >= deadline {
            return unavailable(partition, &why).into_response();
        }
        let previous = owner.map(|o| o.id);
        wait_for_move(node, partition, previous.as_ref(), deadline).await;
    }
}

/// A forwarded request from a node that has newer shared catalog or keys
/// than this one: this node adopts them first. Should Redis not answer,
/// the request runs on what this node has (the poll catches up later).
async fn catch_up(node: &ClusterNode, envelope: &Envelope) {
    let Some(wanted) = shared_versions(&envelope.headers) else {
        return;
    };
    let known = node.shared.versions();
    if wanted.catalog <= known.catalog && wanted.keys <= known.keys {
        return;
    }
    if let Err(error) = node.shared.refresh().await {
        tracing::warn!(%error, "cannot catch up with the shared catalog and keys");
    }
    // Also when another task's refresh got there first: it may not have
    // handed the catalog to the partitions yet.
    if wanted.catalog > known.catalog {
        node.engines.adopt_shared_catalog();
    }
}

/// Waits until `partition` is served here or its owner is another node
/// than `previous`, or [`RETRY_PAUSE`] has passed (or `deadline`).
async fn wait_for_move(
    node: &ClusterNode,
    partition: PartitionId,
    previous: Option<&NodeId>,
    deadline: Instant,
) {
    let until = deadline.min(Instant::now() + RETRY_PAUSE);
    loop {
        tokio::time::sleep(MOVE_POLL).await;
        if node.driver.serving(partition).is_some() || Instant::now() >= until {
            return;
        }
        let owner = node.driver.owner_of(partition).map(|o| o.id);
        if owner.is_some() && owner.as_ref() != previous && owner.as_ref() != Some(node.node_id()) {
            return;
        }
    }
}

fn unavailable(partition: PartitionId, why: &str) -> ApiError {
    ApiError::new(
        Code::PartitionUnavailable,
        format!("partition {partition} is not available: {why}"),
    )
}

/// A change of the shared catalog or keys: applied to this node's shared
/// engine (which checks the caller and the request, and answers), then
/// published; when another node published first, this node adopts that
/// and applies the change again on top of it.
async fn shared_change(node: &ClusterNode, record: SharedRecord, envelope: &Envelope) -> Response {
    let _writing = node.shared.writing().await;
    for _ in 0..PUBLISH_ATTEMPTS {
        let response = call(&node.node_app, envelope).await;
        if !response.status().is_success() {
            return response;
        }
        match node.shared.publish(record).await {
            Ok(Published::Version(_)) => {
                if record == SharedRecord::Catalog {
                    node.engines.adopt_shared_catalog();
                }
                return response;
            }
            Ok(Published::NotReplicated(version)) => {
                if record == SharedRecord::Catalog {
                    node.engines.adopt_shared_catalog();
                }
                return ApiError::new(
                    Code::NotDurable,
                    format!("the change (version {version}) is on the Redis master, but no replica confirmed it; retry"),
                )
                .into_response();
            }
            Ok(Published::Conflict(_)) => {
                if let Err(error) = node.shared.refresh().await {
                    return store_unavailable(&error.to_string());
                }
            }
            Err(error) => return store_unavailable(&error.to_string()),
        }
    }
    store_unavailable("other nodes kept changing it at the same time")
}

fn store_unavailable(why: &str) -> Response {
    ApiError::new(
        Code::ClusterStoreUnavailable,
        format!("the change could not be published to the cluster: {why}"),
    )
    .into_response()
}

/// A live stream passed on from another node ends when this node stops:
/// it never ends by itself, and this node's shutdown waits for every
/// answer in progress. Its client reconnects, with `Last-Event-ID`,
/// through another node. (A feed passed on is finite: it is let finish.)
fn until_stopped(node: &ClusterNode, response: Response) -> Response {
    let live = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !live {
        return response;
    }
    let mut stopping = node.node_state.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    response.map(|body| {
        axum::body::Body::from_stream(futures_util::StreamExt::take_until(
            body.into_data_stream(),
            Box::pin(stopped),
        ))
    })
}
