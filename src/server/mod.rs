//! `omnistock serve`: wires the ledger, the HTTP shell, the expiry sweeper and
//! metrics together, and shuts down gracefully on SIGINT/SIGTERM (stop
//! accepting, finish in-flight requests, stop background tasks, exit).

pub mod config;
pub mod demo;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::auth::KeyStore;
use crate::http::rate_limit::RateLimiter;
use crate::http::{AppState, HttpLimits, app, now, run_expiry};
use crate::ledger::{Ledger, LedgerConfig};
use config::ServeConfig;

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
            Some(handle)
        })
        .clone()
}

/// Builds the application state for a configuration (used by `serve` and by tests).
pub fn state(config: &ServeConfig, ledger: Arc<Ledger>) -> Arc<AppState> {
    Arc::new(AppState {
        ledger,
        keys: KeyStore::new(config.admin_key.as_deref()),
        rate_limiter: RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
        limits: HttpLimits {
            max_body_bytes: config.max_body_bytes,
            ..HttpLimits::default()
        },
        metrics: metrics_handle(),
        request_metrics: Default::default(),
        counters: Default::default(),
        ready: AtomicBool::new(false),
    })
}

/// A server running in the background (tests, and `serve` itself).
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Graceful stop: in-flight requests finish, then the task ends.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Binds and starts serving; returns once the listener is bound.
pub async fn start(config: &ServeConfig, ledger: Arc<Ledger>) -> std::io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let state = state(config, ledger);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(run_expiry(
        Arc::clone(&state.ledger),
        Duration::from_millis(config.expiry_sweep_interval_ms),
        stopped.clone(),
    ));
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
    state.ready.store(true, Ordering::Release);
    let router = app(Arc::clone(&state));
    let mut shutdown = stopped;
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await
    });
    Ok(Running {
        addr,
        state,
        stop,
        task,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<(), String> {
    let ledger = Arc::new(Ledger::new(LedgerConfig::default()));
    if config.demo {
        let positions = demo::load(&ledger, now())?;
        tracing::info!(
            positions,
            skus = demo::DEMO_SKUS,
            locations = ledger.catalog().location_count(),
            "demo data loaded"
        );
    }
    tracing::info!(
        store = "memory",
        "no --redis-url: running on the embedded in-memory store; state is lost on exit"
    );
    if config.admin_key.is_none() {
        tracing::warn!(
            "OMNISTOCK_ADMIN_KEY is not set: no key can call the API; set it to administer the engine"
        );
    }
    let running = start(&config, ledger)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(addr = %running.addr, durability = ?config.durability, "omnistock serving");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running
        .shutdown()
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
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
