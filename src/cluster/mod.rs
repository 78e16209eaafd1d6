//! `omnistock serve --cluster`: one node of a cluster of engines on a Redis
//! Cluster. The node runs one engine per partition it owns
//! ([`PartitionEngines`]), takes and gives partitions up with the ownership
//! driver, follows the shared catalog and keys, and answers any request of
//! the Stable contract: a request for a partition it serves goes to that
//! partition's engine (the single node's HTTP API around it, unchanged),
//! one for a partition another node serves is forwarded there, once.

mod cart_ops;
mod cart_recovery;
mod cart_sale;
mod carts;
mod dispatch;
mod feeds;
pub mod forward;
mod import;
mod journal;
mod spread;
mod status;
mod streams;
pub mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::engine::cluster_shared::SharedState;
use crate::engine::ownership_driver::{NodeConfig, OwnershipDriver, monotonic_ms};
use crate::engine::partition_engines::{PartitionEngineConfig, PartitionEngines};
use crate::http::AppState;
use crate::server::config::ServeConfig;
use crate::server::{engine_config, listen, redis_config, state};
use crate::store::cluster::{ClusterStore, ClusterStoreError};
use forward::Forwarder;
use omnistock_cluster::{NodeId, PartitionId, Partitions};

/// Every partition engine's ledger: a share of the stock, so far smaller
/// than a single node's (an empty one costs about 0.5 MiB instead of 8).
fn partition_ledger(config: &ServeConfig) -> crate::ledger::LedgerConfig {
    crate::ledger::LedgerConfig {
        position_shards: 8,
        reservation_shards: 8,
        journal_capacity: 4_096,
        ..config.ledger_config()
    }
}

/// A running cluster node's parts, shared by its request handlers.
pub struct ClusterNode {
    driver: OwnershipDriver,
    engines: Arc<PartitionEngines>,
    shared: Arc<SharedState>,
    store: ClusterStore,
    /// The HTTP layer's state around the shared engine: probes, documents,
    /// the catalog and keys.
    node_state: Arc<AppState>,
    node_app: Router,
    /// Each served partition's API, kept while its engine runs.
    partition_apps: Mutex<HashMap<PartitionId, (Arc<Engine>, Router)>>,
    forwarder: Forwarder,
}

impl ClusterNode {
    pub fn node_id(&self) -> &NodeId {
        self.driver.node()
    }

    pub fn partitions(&self) -> Partitions {
        self.driver.partitions()
    }

    /// The API of `partition` around `engine`, built once per engine.
    fn partition_app(&self, partition: PartitionId, engine: &Arc<Engine>) -> Router {
        let mut apps = self.partition_apps.lock();
        if let Some((built_for, app)) = apps.get(&partition)
            && Arc::ptr_eq(built_for, engine)
        {
            return app.clone();
        }
        let app = crate::http::app(self.node_state.for_engine(Arc::clone(engine)));
        apps.insert(partition, (Arc::clone(engine), app.clone()));
        app
    }
}

/// A node serving in the background (tests, and `serve --cluster`).
pub struct RunningNode {
    pub addr: SocketAddr,
    pub node: Arc<ClusterNode>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningNode {
    /// Graceful stop (SIGTERM): hands every partition over (each flushed,
    /// its lease released, so the next owner takes it at once), then stops
    /// taking requests. Requests that arrive meanwhile are forwarded to
    /// the partitions' new owners.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let handed_over = self.node.driver.leave().await;
        if !handed_over {
            tracing::warn!("not every partition was handed over in time: the rest lapse");
        }
        let _ = self.stop.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// This node's id: `--node-id`, else derived from the advertise URL.
fn node_id(config: &ServeConfig, advertise_url: &str) -> Result<NodeId, String> {
    let text = match &config.node_id {
        Some(id) => id.clone(),
        None => advertise_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .replace(['/', '[', ']'], "-"),
    };
    NodeId::new(&text).map_err(|e| format!("--node-id: {e} (set --node-id)"))
}

/// How the others reach this node: `--advertise-url`, else the bound
/// address (which must then be one they can reach).
fn advertise_url(config: &ServeConfig, addr: SocketAddr) -> Result<String, String> {
    if let Some(url) = &config.advertise_url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    if addr.ip().is_unspecified() {
        return Err(format!(
            "listening on {addr}: set --advertise-url to an address the other nodes can reach"
        ));
    }
    Ok(format!("http://{addr}"))
}

/// Longest a starting node keeps trying to reach a Redis Cluster that is
/// not up yet (just created, or failing over).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// Connects to the Redis Cluster, checks the partition count and reads the
/// shared catalog and keys; retries what may pass (the cluster not up
/// yet) for up to [`JOIN_TIMEOUT`], and fails at once on another
/// partition count.
async fn join(
    config: &ServeConfig,
    partitions: Partitions,
    engine: &crate::engine::EngineConfig,
) -> Result<(ClusterStore, Arc<SharedState>), String> {
    let seed = config
        .redis_url
        .clone()
        .ok_or("--cluster needs --redis-url")?;
    let started = Instant::now();
    loop {
        let attempt = async {
            let store =
                ClusterStore::connect(std::slice::from_ref(&seed), &config.redis_key_prefix)
                    .await
                    .map_err(|e| {
                        (
                            false,
                            format!("cannot reach the Redis Cluster at {seed}: {e}"),
                        )
                    })?;
            store.ensure_partitions(partitions).await.map_err(|e| {
                let fatal = matches!(e, ClusterStoreError::PartitionsMismatch { .. });
                (fatal, e.to_string())
            })?;
            let shared = SharedState::start(store.clone(), engine)
                .await
                .map_err(|e| (false, e))?;
            Ok::<_, (bool, String)>((store, shared))
        };
        match attempt.await {
            Ok(joined) => return Ok(joined),
            Err((true, error)) => return Err(error),
            Err((false, error)) if started.elapsed() < JOIN_TIMEOUT => {
                tracing::warn!(%error, "cannot join the cluster yet; retrying");
                tokio::time::sleep(JOIN_RETRY).await;
            }
            Err((false, error)) => return Err(error),
        }
    }
}

/// Joins the cluster and serves on `listener`; returns once the node has
/// joined (its partitions load in the background: `/readyz` says when).
pub async fn start(listener: TcpListener, config: &ServeConfig) -> Result<RunningNode, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let advertise = advertise_url(config, addr)?;
    let id = node_id(config, &advertise)?;
    let partitions = Partitions::new(u64::from(config.partitions)).map_err(|e| e.to_string())?;
    crate::server::metrics_handle();
    let engine = engine_config(config);
    let (store, shared) = join(config, partitions, &engine).await?;
    let partition_config = PartitionEngineConfig {
        partitions,
        engine,
        ledger: partition_ledger(config),
        redis: redis_config(config, "redis://cluster", &partition_ledger(config)),
    };
    let engines = Arc::new(PartitionEngines::new(
        store.clone(),
        partition_config,
        shared.clone(),
    ));
    let (stop, stopped) = watch::channel(false);
    let node_config = NodeConfig::new(id.clone(), advertise.clone(), partitions);
    let driver =
        OwnershipDriver::start(node_config, store.clone(), engines.clone(), monotonic_ms()).await?;
    tokio::spawn(engines.clone().follow_shared(stopped.clone()));
    let node_state = state(config, shared.engine().clone(), stopped.clone());
    let node = Arc::new(ClusterNode {
        driver,
        engines,
        shared,
        store,
        node_app: crate::http::app(node_state.clone()),
        node_state,
        partition_apps: Mutex::default(),
        forwarder: Forwarder::default(),
    });
    tokio::spawn(cart_recovery::run(node.clone(), stopped.clone()));
    let router = dispatch::router(node.clone());
    let limits = listen::ConnectionLimits {
        max_connections: config.max_connections,
        header_read_timeout_ms: config.header_read_timeout_ms,
    };
    let task = tokio::spawn(listen::serve(listener, router, limits, stopped));
    tracing::info!(node = %id, url = %advertise, partitions = partitions.count(), "joined the cluster");
    Ok(RunningNode {
        addr,
        node,
        stop,
        task,
    })
}
