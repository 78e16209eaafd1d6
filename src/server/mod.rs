//! `omnistock serve`: wires the ledger, the HTTP shell, the expiry sweeper and
//! metrics together, and shuts down gracefully on SIGINT/SIGTERM (stop
//! accepting, finish in-flight requests, stop background tasks, exit).

pub mod config;
pub mod demo;
pub mod export;
pub mod listen;
pub mod metrics_catalog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::write_behind::{
    self, FlusherParts, StoreStatus, WriteBehind, WriteBehindConfig,
};
use crate::http::auth::KeyStore;
use crate::http::change_signal::ChangeSignal;
use crate::http::rate_limit::RateLimiter;
use crate::http::request_metrics::LedgerCounters;
use crate::http::{AppState, HttpLimits, app, now, run_expiry};
use crate::ledger::{Changes, Ledger, LedgerConfig};
use crate::store::redis::{RedisConfig, RedisStore};
use crate::store::{Store, StoreError};
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

/// Builds the application state for a configuration (used by `serve` and by tests).
/// `stopping` turns true when the server shuts down (live streams end then,
/// so a graceful shutdown does not wait for them forever).
pub fn state(
    config: &ServeConfig,
    ledger: Arc<Ledger>,
    stopping: watch::Receiver<bool>,
) -> Arc<AppState> {
    let changes = Arc::new(ChangeSignal::default());
    let publisher = Arc::clone(&changes);
    if !ledger.set_change_listener(Box::new(move |_seq| publisher.publish())) {
        tracing::warn!(
            "the ledger already has a change listener: live streams wake only on their timers"
        );
    }
    let metrics = metrics_handle();
    Arc::new(AppState {
        changes,
        stopping,
        ledger,
        keys: KeyStore::new(config.admin_key.as_deref()),
        rate_limiter: RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
        limits: HttpLimits {
            max_body_bytes: config.max_body_bytes,
            max_stream_subscribers: config.max_stream_subscribers,
            body_read_timeout_ms: config.body_read_timeout_ms,
            max_held_units_per_customer: config.max_held_units_per_customer,
            max_held_units_per_key: config.max_held_units_per_key,
            max_batch_items: config.max_batch_items,
            rate_limited_delay_ms: config.rate_limited_delay_ms,
            ..HttpLimits::default()
        },
        stream_slots: Arc::new(tokio::sync::Semaphore::new(config.max_stream_subscribers)),
        metrics,
        request_metrics: Default::default(),
        counters: LedgerCounters::default(),
        ready: AtomicBool::new(false),
        feed_low_stock_threshold: config.feed_low_stock_threshold,
        write_behind: config.redis_url.as_ref().map(|_| {
            WriteBehind::new(WriteBehindConfig {
                sync: config.durability == Durability::Sync,
                flush_interval_ms: config.flush_interval_ms,
                flush_max_items: config.flush_max_items,
                sync_wait_timeout_ms: config.sync_wait_timeout_ms,
                ..WriteBehindConfig::default()
            })
        }),
    })
}

fn redis_config(config: &ServeConfig, url: &str, ledger: &LedgerConfig) -> RedisConfig {
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
    /// The expiry sweeper of an engine without a store (with one, the
    /// store task owns it).
    expiry: Option<tokio::task::JoinHandle<()>>,
    /// Loads the store, then runs the flusher until stopped.
    store_task: Option<tokio::task::JoinHandle<()>>,
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
        if let Some(expiry) = self.expiry {
            expiry.await.map_err(std::io::Error::other)?;
        }
        if let Some(store_task) = self.store_task {
            store_task.await.map_err(std::io::Error::other)?;
        }
        served?
    }

    /// Waits until the engine serves (state loaded), or fails.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !self.state.ready.load(Ordering::Acquire) {
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
    // This run's feed cursors are its own until a store's lineage replaces
    // this one (restore).
    ledger.set_cursor_lineage(random_lineage()?);
    let (stop, stopped) = watch::channel(false);
    let (flush_stop, flush_stopped) = watch::channel(false);
    let state = state(config, ledger, stopped.clone());
    let (fatal_sender, fatal) = watch::channel(None);
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
    let (store_task, expiry) = match &config.redis_url {
        None => {
            let expiry = start_expiry(&state, config, stopped.clone());
            state.ready.store(true, Ordering::Release);
            (None, Some(expiry))
        }
        Some(url) => {
            let store = RedisStore::new(redis_config(config, url, state.ledger.config()))
                .map_err(std::io::Error::other)?;
            let task = tokio::spawn(run_store(
                Arc::new(store),
                Arc::clone(&state),
                config.clone(),
                Stops {
                    requests: stopped.clone(),
                    flusher: flush_stopped,
                },
                fatal_sender,
            ));
            (Some(task), None)
        }
    };
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
        expiry,
        store_task,
        fatal,
    })
}

/// A random lineage for a fresh ledger's feed cursors.
fn random_lineage() -> std::io::Result<u64> {
    let mut bytes = [0_u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

fn start_expiry(
    state: &Arc<AppState>,
    config: &ServeConfig,
    stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_expiry(
        Arc::clone(&state.ledger),
        Duration::from_millis(config.expiry_sweep_interval_ms),
        stopped,
    ))
}

/// The two stops of an engine with a store: requests (and expiry) first,
/// then the flusher, whose last write must come after every change.
struct Stops {
    requests: watch::Receiver<bool>,
    flusher: watch::Receiver<bool>,
}

/// Loads the store into the ledger (retrying while Redis is unreachable),
/// claims it for this run, marks the engine ready, then runs the flusher
/// until stopped.
async fn run_store<S: Store>(
    store: Arc<S>,
    state: Arc<AppState>,
    config: ServeConfig,
    stops: Stops,
    fatal: watch::Sender<Option<String>>,
) {
    let Stops {
        requests: mut stopped,
        flusher: mut flush_stopped,
    } = stops;
    let Some(write_behind) = state.write_behind.clone() else {
        return;
    };
    let fail = |error: String| {
        tracing::error!(%error, "cannot use the store");
        write_behind.set_status(StoreStatus::Failed, Some(error.clone()));
        let _ = fatal.send(Some(error));
    };
    let Some(loaded) = load_store(&*store, &write_behind, &mut stopped).await else {
        return;
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return fail(error),
    };
    let ledger = &state.ledger;
    let fresh = loaded.is_none();
    if let Err(error) = fill_ledger(&state, loaded, config.demo) {
        return fail(error);
    }
    let mut changes = Changes::new(ledger, write_behind.config().max_stream_backlog);
    // A fresh store gets everything in its first write.
    changes.everything = fresh;
    // Holds whose deadline passed while the engine was down expire now
    // (after `Changes::new`, so the expiries are written too).
    let expired = ledger.tick(now(), usize::MAX);
    if expired > 0 {
        tracing::info!(expired, "reservations expired while the engine was down");
        metrics::counter!("omnistock_reservations_expired_total").increment(expired as u64);
    }
    let first = write_behind::first_write(
        &write_behind,
        &*store,
        ledger,
        &*state,
        &mut changes,
        &mut stopped,
    );
    if !first.await {
        return;
    }
    let expiry = start_expiry(&state, &config, stopped.clone());
    write_behind.set_status(StoreStatus::Healthy, None);
    state.ready.store(true, Ordering::Release);
    // The flusher stops after the requests have drained and the expiry
    // sweeper has ended, so its last write holds every change.
    let (final_stop, final_stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = flush_stopped.wait_for(|stop| *stop).await;
        let _ = expiry.await;
        let _ = final_stop.send(true);
    });
    write_behind::run(
        Arc::clone(&write_behind),
        store,
        FlusherParts {
            ledger: Arc::clone(ledger),
            keys: Arc::clone(&state) as Arc<dyn crate::store::KeySource>,
            changes,
            clock: now,
        },
        final_stopped,
    )
    .await;
}

/// Reads the store, retrying (50 ms doubling to 2 s) while it is
/// unreachable. `None`: stopped meanwhile; `Some(Err)`: it cannot be used.
async fn load_store<S: Store>(
    store: &S,
    write_behind: &WriteBehind,
    stopped: &mut watch::Receiver<bool>,
) -> Option<Result<Option<crate::store::Loaded>, String>> {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.load(now()).await {
            Ok(loaded) => return Some(Ok(loaded)),
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, retry_ms = delay.as_millis() as u64,
                    "store unreachable at start; not ready until it is loaded");
                write_behind.set_status(StoreStatus::Loading, Some(error.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped.changed() => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Some(Err(error.to_string())),
        }
    }
}

/// Restores what the store held into the fresh ledger and key store; an
/// empty store gets the demo data set when asked for.
fn fill_ledger(
    state: &AppState,
    loaded: Option<crate::store::Loaded>,
    demo: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let Some(loaded) = loaded else {
        if demo {
            let positions = demo::load(&state.ledger, now())?;
            tracing::info!(positions, "store is empty: demo data loaded");
        } else {
            tracing::info!("store is empty: starting with an empty ledger");
        }
        return Ok(());
    };
    if demo {
        tracing::info!("the store holds data: --demo ignored");
    }
    let report = state
        .ledger
        .restore(loaded.restore, now())
        .map_err(|e| e.to_string())?;
    let keys = state.keys.restore(loaded.keys)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        positions = report.positions,
        reservations_held = report.reservations_held,
        reservations_resolved = report.reservations_resolved,
        idempotency_keys = report.idempotency_keys,
        api_keys = keys,
        reserved_recomputed = report.reserved_recomputed,
        seconds,
        positions_per_second = (report.positions as f64 / seconds.max(1e-9)) as u64,
        "state loaded from the store"
    );
    Ok(())
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<(), String> {
    // Bound before anything slow (the demo data set takes seconds to load):
    // a taken port fails at once.
    let listener = bind(&config)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let ledger = Arc::new(Ledger::new(config.ledger_config()));
    if config.demo && config.redis_url.is_none() {
        let positions = demo::load(&ledger, now())?;
        tracing::info!(
            positions,
            skus = demo::DEMO_SKUS,
            locations = ledger.catalog().location_count(),
            "demo data loaded"
        );
    }
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
