//! Forwarding a request to the node that owns its partition: one hop, over
//! keep-alive connections kept per node (hyper's pooled client).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::store::cluster_shared::SharedVersions;
use omnistock_cluster::{PartitionId, Partitions};

/// Set on a forwarded request (the forwarding node's id): the node that
/// receives it never forwards it again.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("omnistock-forwarded-by");
/// Set on a forwarded request: the versions of the shared catalog and keys
/// the forwarding node has (`CATALOG,KEYS`). An owner behind them catches
/// up before it serves the request, so a request never runs against an
/// older catalog or key set than the node it was sent to has.
pub const SHARED_VERSIONS: HeaderName = HeaderName::from_static("omnistock-shared-versions");
/// Set on a forwarded request: the index of the partition it was sent
/// for. The owner serves a request that names no single partition of its
/// own (a share of the audit) on this one.
pub const PARTITION: HeaderName = HeaderName::from_static("omnistock-partition");
/// Set on the answer of a node asked for a partition it does not serve
/// (any more): the forwarding node looks for the owner again, once.
pub const NOT_OWNER: HeaderName = HeaderName::from_static("omnistock-not-owner");

/// Longest a forwarded request may take, answer included (a sync-mode
/// write waits for Redis up to `--sync-wait-timeout-ms`, 5 s by default,
/// on the owner). An owner that answers nothing for this long (paused,
/// or cut off) costs the request a 503.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per node.
const IDLE_PER_NODE: usize = 64;

/// What the request a node forwards carries of the original one.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Envelope {
    /// The request again (for this node's own engine, or a retry).
    pub fn request(&self) -> Request<Body> {
        let mut request = Request::new(Body::from(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// How forwarding went.
pub enum Forwarded {
    /// The owner answered (whatever it answered).
    Answered(Response<Body>),
    /// No connection could be made: nothing reached the owner, so trying
    /// elsewhere is safe.
    NotSent(String),
    /// Sent, but no answer came: the owner may have applied it.
    Lost(String),
}

pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(IDLE_PER_NODE)
            .build(connector);
        Forwarder { client }
    }
}

impl Forwarder {
    /// Sends `envelope` to the node at `base_url` (`http://HOST:PORT`).
    pub async fn forward(
        &self,
        base_url: &str,
        partition: PartitionId,
        envelope: &Envelope,
        from: &str,
        shared: SharedVersions,
    ) -> Forwarded {
        let path = envelope.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = match format!("{}{path}", base_url.trim_end_matches('/')).parse() {
            Ok(uri) => uri,
            Err(error) => return Forwarded::NotSent(format!("owner URL {base_url:?}: {error}")),
        };
        let mut request = Request::new(Full::new(envelope.body.clone()));
        *request.method_mut() = envelope.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for (name, value) in &envelope.headers {
            if !is_hop_by_hop(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(from) = HeaderValue::from_str(from) {
            headers.insert(FORWARDED_BY, from);
        }
        headers.insert(PARTITION, HeaderValue::from(partition.index()));
        let versions = format!("{},{}", shared.catalog, shared.keys);
        if let Ok(versions) = HeaderValue::from_str(&versions) {
            headers.insert(SHARED_VERSIONS, versions);
        }
        let started = tokio::time::Instant::now();
        let response = match tokio::time::timeout(FORWARD_TIMEOUT, self.client.request(request))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) if error.is_connect() => return Forwarded::NotSent(error.to_string()),
            Ok(Err(error)) => return Forwarded::Lost(error.to_string()),
            Err(_) => return Forwarded::Lost(format!("no answer within {FORWARD_TIMEOUT:?}")),
        };
        if is_streamed(response.headers()) {
            return Forwarded::Answered(response.map(Body::new));
        }
        // A JSON answer is read whole here, so a link cut in its middle is
        // an answer lost (503, retry with the same key), never half a 201.
        let (head, body) = response.into_parts();
        let left = FORWARD_TIMEOUT.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, body.collect()).await {
            Ok(Ok(whole)) => {
                Forwarded::Answered(Response::from_parts(head, Body::from(whole.to_bytes())))
            }
            Ok(Err(error)) => Forwarded::Lost(format!("the answer was cut: {error}")),
            Err(_) => Forwarded::Lost(format!("no whole answer within {FORWARD_TIMEOUT:?}")),
        }
    }
}

/// Whether an answer is a stream passed on as it comes (a feed, a live
/// stream), rather than one JSON document.
fn is_streamed(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !content_type.contains("json")
}

/// Headers about this connection, not the request (RFC 9110, 7.6.1), and
/// those the client sets itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name == FORWARDED_BY
        || name == SHARED_VERSIONS
        || name == PARTITION
}

/// The partition a forwarded request was sent for, if it names one of
/// `partitions`.
pub fn forwarded_partition(headers: &HeaderMap, partitions: Partitions) -> Option<PartitionId> {
    if !headers.contains_key(FORWARDED_BY) {
        return None;
    }
    let index = headers.get(PARTITION)?.to_str().ok()?.parse().ok()?;
    partitions.get(index)
}

/// The versions a forwarded request carries, if it carries any.
pub fn shared_versions(headers: &HeaderMap) -> Option<SharedVersions> {
    let text = headers.get(SHARED_VERSIONS)?.to_str().ok()?;
    let (catalog, keys) = text.split_once(',')?;
    Some(SharedVersions {
        catalog: catalog.parse().ok()?,
        keys: keys.parse().ok()?,
    })
}
