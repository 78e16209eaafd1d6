//! The engine in the test's own process, on a free loopback port, and one
//! way to call its API: the start-up and request code every in-process HTTP
//! test shares.

use std::sync::Arc;

use omnistock::ledger::Ledger;
use omnistock::server::config::ServeConfig;
use omnistock::server::{Running, start};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Starts the engine on `127.0.0.1:0` with `admin_key`, its ledger
/// configured from `config` as `omnistock serve` does. Stops when the
/// returned `Running` is dropped.
pub async fn start_engine(config: ServeConfig, admin_key: &str) -> Running {
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        admin_key: Some(admin_key.into()),
        ..config
    };
    let ledger = Arc::new(Ledger::new(config.ledger_config()));
    start(&config, ledger).await.expect("server starts")
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
