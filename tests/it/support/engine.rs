//! The engine in the test's own process, on a free loopback port, and one
//! way to call its API: the start-up and request code every in-process HTTP
//! test shares.
//!
//! Every engine in this process records into the one process-wide metrics
//! recorder (`omnistock::server::metrics_handle`). An engine started here
//! holds a share of it (`super::metrics_gate`) for as long as it lives, so
//! the test that compares exact counter deltas (`metrics.rs`) can have the
//! recorder to itself: it starts its engine with `start_engine_alone`.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use omnistock::ledger::Ledger;
use omnistock::server::config::ServeConfig;
use omnistock::server::start;

use super::metrics_gate::{MetricsAlone, MetricsShare};

/// A running in-process engine (`omnistock::server::Running`, which it
/// dereferences to) with its share of the metrics recorder. Stops when
/// dropped, or gracefully with `shutdown`.
pub struct Running {
    running: omnistock::server::Running,
    _metrics: Option<MetricsShare>,
}

impl Running {
    /// Graceful stop (`omnistock::server::Running::shutdown`); the share of
    /// the recorder is given back once the engine has stopped.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.running.shutdown().await
    }
}

impl Deref for Running {
    type Target = omnistock::server::Running;

    fn deref(&self) -> &Self::Target {
        &self.running
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.running
    }
}
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Starts the engine on `127.0.0.1:0` with `admin_key`, its ledger
/// configured from `config` as `omnistock serve` does. Stops when the
/// returned `Running` is dropped. Waits while a test has the metrics
/// recorder to itself.
pub async fn start_engine(config: ServeConfig, admin_key: &str) -> Running {
    let share = MetricsShare::take();
    launch(config, admin_key, Some(share)).await
}

/// As `start_engine`, for the test that holds the recorder to itself
/// (`alone`): takes no share, which would wait for that test to end.
pub async fn start_engine_alone(
    config: ServeConfig,
    admin_key: &str,
    _alone: &MetricsAlone,
) -> Running {
    launch(config, admin_key, None).await
}

async fn launch(config: ServeConfig, admin_key: &str, share: Option<MetricsShare>) -> Running {
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        admin_key: Some(admin_key.into()),
        ..config
    };
    let ledger = Arc::new(Ledger::new(config.ledger_config()));
    Running {
        running: start(&config, ledger).await.expect("server starts"),
        _metrics: share,
    }
}

/// The default configuration without the per-key rate limit, for tests
/// that send many requests with one key and are not about rate limiting.
pub fn unlimited() -> ServeConfig {
    ServeConfig {
        rate_limit_per_second: 0,
        ..ServeConfig::default()
    }
}

/// The base URL of a running engine.
pub fn base_url(running: &Running) -> String {
    format!("http://{}", running.addr)
}

/// Sends one request (`key` as a bearer token, `body` as JSON, extra
/// `headers`) and returns the status and the body: parsed JSON, or the text
/// as a JSON string when it is not JSON.
pub async fn send(
    http: &Client,
    base: &str,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One engine's API, called with one key: what the HTTP tests repeat.
pub struct Api {
    pub base: String,
    pub http: Client,
    pub key: String,
}

impl Api {
    pub fn of(running: &Running, key: &str) -> Api {
        Api {
            base: base_url(running),
            http: Client::new(),
            key: key.to_owned(),
        }
    }

    /// A JSON request, with an `Idempotency-Key` when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|key| ("Idempotency-Key", key))
            .into_iter()
            .collect();
        send(
            &self.http,
            &self.base,
            method,
            path,
            Some(&self.key),
            body.as_ref(),
            &headers,
        )
        .await
    }

    /// A request that must succeed; its body.
    pub async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, body) = self.call(method, path, Some(body), None).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}
