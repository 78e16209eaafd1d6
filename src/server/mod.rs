//! `omnistock serve`: wires the engine (ledger, store, expiry), the HTTP
//! shell and metrics together, and shuts down gracefully on SIGINT/SIGTERM
//! (stop accepting, finish in-flight requests, let the engine write its
//! last batch, exit).

pub mod config;
pub mod demo_key;
pub mod export;
pub mod listen;
pub mod metrics_catalog;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::{Engine, EngineConfig, EngineTasks, HoldPolicy, Stops, WriteBehindConfig};
use crate::http::rate_limit::RateLimiter;
use crate::http::{AppState, HttpLimits, app};
use crate::ledger::{Ledger, LedgerConfig};
use crate::store::redis::{RedisConfig, RedisStore};
use config::{Durability, ServeConfig};

/// Latency buckets (seconds) for request histograms.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The process-wide Prometheus recorder (the `metrics` facade has one global
/// recorder; every server in the process shares it).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            metrics_catalog::describe_all();
            Some(handle)
        })
        .clone()
}

/// The engine's part of a configuration.
pub fn engine_config(config: &ServeConfig) -> EngineConfig {
    EngineConfig {
        admin_key: config.admin_key.clone(),
        hold_policy: HoldPolicy {
            max_held_units_per_customer: config.max_held_units_per_customer,
            max_held_units_per_key: config.max_held_units_per_key,
        },
        store: config.redis_url.as_ref().map(|_| WriteBehindConfig {
            sync: config.durability == Durability::Sync,
            flush_interval_ms: config.flush_interval_ms,
            flush_max_items: config.flush_max_items,
            sync_wait_timeout_ms: config.sync_wait_timeout_ms,
            ..WriteBehindConfig::default()
        }),
        expiry_sweep_interval_ms: config.expiry_sweep_interval_ms,
        demo: config.demo,
        partition: None,
    }
}

/// Builds the HTTP layer's state around an engine for a configuration
/// (used by `serve` and by tests). `stopping` turns true when the server
/// shuts down (live streams end then, so a graceful shutdown does not wait
/// for them forever).
pub fn state(
    config: &ServeConfig,
    engine: Arc<Engine>,
    stopping: watch::Receiver<bool>,
) -> Arc<AppState> {
    let limits = HttpLimits {
        max_body_bytes: config.max_body_bytes,
        max_stream_subscribers: config.max_stream_subscribers,
        body_read_timeout_ms: config.body_read_timeout_ms,
        max_batch_items: config.max_batch_items,
        rate_limited_delay_ms: config.rate_limited_delay_ms,
        rate_limit_per_address: config.rate_limit_per_address,
        max_streams_per_key: config.max_streams_per_key,
        max_streams_per_address: config.max_streams_per_address,
        trusted_proxies: config.trusted_proxies.clone(),
        ..HttpLimits::default()
    };
    Arc::new(AppState {
        engine,
        stopping,
        rate_limiter: Arc::new(RateLimiter::new(
            config.rate_limit_per_second,
            config.rate_limit_burst,
        )),
        limits: limits.clone(),
        stream_slots: Arc::new(tokio::sync::Semaphore::new(config.max_stream_subscribers)),
        metrics: metrics_handle(),
        request_metrics: Default::default(),
        feed_low_stock_threshold: config.feed_low_stock_threshold,
        pages: Arc::new(crate::http::Pages::new(&limits, config.demo)),
    })
}

pub(crate) fn redis_config(config: &ServeConfig, url: &str, ledger: &LedgerConfig) -> RedisConfig {
    RedisConfig {
        key_prefix: config.redis_key_prefix.clone(),
        timeout_ms: config.redis_timeout_ms,
        resolved_retention_ms: ledger.resolved_retention_ms,
        wait_aof: config.wait_aof,
        ..RedisConfig::new(url)
    }
}

/// A server running in the background (tests, and `serve` itself).
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    /// Sent once requests have drained: the flusher's last write follows.
    flush_stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The engine's expiry sweeper, store loading and flusher.
    engine_tasks: EngineTasks,
    /// Set when the engine cannot go on (e.g. the store holds invalid data).
    pub fatal: watch::Receiver<Option<String>>,
}

impl Running {
    /// Graceful stop: in-flight requests finish, the write-behind store gets
    /// a last flush, then the tasks end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let served = self.task.await.map_err(std::io::Error::other);
        // Requests are done (sync-mode writers got their flush meanwhile):
        // the flusher may now write the last, clean batch.
        let _ = self.flush_stop.send(true);
        self.engine_tasks
            .finish()
            .await
            .map_err(std::io::Error::other)?;
        served?
    }

    /// Waits until the engine serves (state loaded), or fails.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !self.state.engine.is_ready() {
            if let Some(error) = self.fatal.borrow().clone() {
                return Err(error);
            }
            if Instant::now() > deadline {
                return Err("not ready in time".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Binds `--listen`: a host name is resolved, and each of its addresses is
/// tried in turn until one binds.
pub async fn bind(config: &ServeConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen.as_str()).await
}

/// Binds and starts serving; returns once the listener is bound.
pub async fn start(config: &ServeConfig, ledger: Arc<Ledger>) -> std::io::Result<Running> {
    start_on(bind(config).await?, config, ledger)
}

/// Starts serving on a bound listener.
pub fn start_on(
    listener: TcpListener,
    config: &ServeConfig,
    ledger: Arc<Ledger>,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let (flush_stop, flush_stopped) = watch::channel(false);
    // The recorder first: the engine registers its counters when it is made.
    metrics_handle();
    let engine = Engine::new(engine_config(config), ledger);
    let state = state(config, Arc::clone(&engine), stopped.clone());
    if let Some(handle) = state.metrics.clone() {
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = ticker.tick() => handle.run_upkeep(),
                    _ = stopped.changed() => return,
                }
            }
        });
    }
    let stops = Stops {
        requests: stopped.clone(),
        flusher: flush_stopped,
    };
    let engine_tasks = match &config.redis_url {
        None => engine.start_in_memory(stops),
        Some(url) => {
            let store = RedisStore::new(redis_config(config, url, engine.ledger().config()))
                .map_err(std::io::Error::other)?;
            engine.start_with_store(Arc::new(store), stops)
        }
    }
    .map_err(std::io::Error::other)?;
    let fatal = engine_tasks.fatal.clone();
    let router = app(Arc::clone(&state));
    let shutdown = stopped;
    let limits = listen::ConnectionLimits {
        max_connections: config.max_connections,
        header_read_timeout_ms: config.header_read_timeout_ms,
    };
    let task = tokio::spawn(async move { listen::serve(listener, router, limits, shutdown).await });
    Ok(Running {
        addr,
        state,
        stop,
        flush_stop,
        task,
        engine_tasks,
        fatal,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<(), String> {
    // Bound before anything slow (the demo data set takes seconds to load):
    // a taken port fails at once.
    let listener = bind(&config)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    if config.cluster {
        return serve_cluster_node(listener, &config).await;
    }
    let ledger = Arc::new(Ledger::new(config.ledger_config()));
    match &config.redis_url {
        None => tracing::info!(
            store = "memory",
            "no --redis-url: running on the embedded in-memory store; state is lost on exit"
        ),
        Some(url) => tracing::info!(
            store = "redis",
            url = %redact(url),
            durability = ?config.durability,
            flush_interval_ms = config.flush_interval_ms,
            "write-behind store: Redis"
        ),
    }
    if config.admin_key.is_none() {
        tracing::warn!(
            "OMNISTOCK_ADMIN_KEY is not set (--allow-no-admin-key): no key can call the API; set it to administer the engine"
        );
    }
    let mut running = start_on(listener, &config, ledger)
        .map_err(|e| format!("cannot start on {}: {e}", config.listen))?;
    tracing::info!(addr = %running.addr, durability = ?config.durability, "omnistock serving");
    if config.demo {
        let welcome = demo_key::announce(&running.state.engine, running.addr).await?;
        println!("{welcome}");
    }
    let mut fatal = running.fatal.clone();
    // A fatal store error ends the process; without a store there is none
    // (the sender is gone, and that branch is disabled).
    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        Some(error) = async { fatal.wait_for(Option::is_some).await.ok().and_then(|e| e.clone()) } => Some(error),
    };
    if let Some(error) = failure {
        let _ = running.shutdown().await;
        return Err(error);
    }
    running.fatal = fatal;
    tracing::info!("shutting down: finishing in-flight requests");
    running
        .shutdown()
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// `serve --cluster`: one node of a cluster until SIGINT or SIGTERM, then
/// a graceful leave (every partition handed over before the process ends).
async fn serve_cluster_node(listener: TcpListener, config: &ServeConfig) -> Result<(), String> {
    if config.admin_key.is_none() {
        tracing::warn!("OMNISTOCK_ADMIN_KEY is not set (--allow-no-admin-key)");
    }
    let running = crate::cluster::start(listener, config).await?;
    tracing::info!(addr = %running.addr, durability = ?config.durability, "omnistock cluster node serving");
    shutdown_signal().await;
    tracing::info!("leaving the cluster: handing every partition over");
    running
        .shutdown()
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
