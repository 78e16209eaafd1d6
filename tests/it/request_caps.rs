//! Limits on what one request, one key and one customer may do: hold caps
//! against reservation hoarding (per key, per customer), and the configured
//! caps on lines, TTL, batch size and body size. Over real HTTP; every
//! refusal is a problem body with a code and changes nothing.

use crate::support;

use omnistock::server::config::ServeConfig;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::engine::{Running, base_url, send, start_engine};

const ADMIN: &str = "request-limits-admin-key-0123";

struct Server {
    _running: Running,
    base: String,
    http: Client,
}

impl Server {
    /// A server with `config`'s limits (the ledger's too), one store `S1`
    /// holding 100 units of `SKU-1`.
    async fn start(config: ServeConfig) -> Server {
        let config = ServeConfig {
            rate_limit_per_second: 0,
            ..config
        };
        let running = start_engine(config, ADMIN).await;
        let server = Server {
            base: base_url(&running),
            _running: running,
            http: Client::new(),
        };
        let (status, _) = server
            .call(
                Method::PUT,
                "/v1/locations/S1",
                ADMIN,
                json!({"kind": "store", "name": "Paris"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = server
            .call(
                Method::PUT,
                "/v1/stock/S1/SKU-1",
                ADMIN,
                json!({"on_hand": 100}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        server
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let body = (!body.is_null()).then_some(&body);
        send(&self.http, &self.base, method, path, Some(key), body, &[]).await
    }

    async fn reserve(&self, key: &str, qty: u32, customer: Option<&str>) -> (StatusCode, Value) {
        let mut body = json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "S1", "qty": qty}], "ttl_seconds": 60});
        if let Some(customer) = customer {
            body["customer_id"] = json!(customer);
        }
        self.call(Method::POST, "/v1/reservations", key, body).await
    }

    async fn reserved(&self) -> u64 {
        let (status, position) = self
            .call(Method::GET, "/v1/stock/S1/SKU-1", ADMIN, Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
        position["reserved"].as_u64().expect("reserved")
    }
}

/// A refusal's problem body: the status and code, and a detail to read.
fn assert_problem(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    assert!(answer.1["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_caps_stop_one_key_or_customer_from_hoarding() {
    let server = Server::start(ServeConfig {
        max_held_units_per_customer: 5,
        ..ServeConfig::default()
    })
    .await;
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/keys",
            ADMIN,
            json!({"name": "marketplace bot", "scopes": ["reserve", "read"], "max_held_units": 6}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["max_held_units"], 6);
    let bot = created["key"].as_str().expect("secret").to_owned();
    let bot_id = created["id"].as_str().expect("id").to_owned();

    // Customer c-1 fills its cap of 5 in two carts; a third unit is refused.
    let (status, first) = server.reserve(&bot, 3, Some("c-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        server.reserve(&bot, 2, Some("c-1")).await.0,
        StatusCode::CREATED
    );
    let refused = server.reserve(&bot, 1, Some("c-1")).await;
    assert_problem(&refused, StatusCode::CONFLICT, "hold_cap_exceeded");
    assert_eq!(
        (
            &refused.1["holder_kind"],
            &refused.1["holder"],
            &refused.1["held"],
            &refused.1["requested"],
            &refused.1["max"]
        ),
        (
            &json!("customer"),
            &json!("c-1"),
            &json!(5),
            &json!(1),
            &json!(5)
        )
    );
    assert_eq!(server.reserved().await, 5, "a refused hold holds nothing");

    // The key's own cap (6, 5 held) refuses 2 more units for another customer.
    let refused = server.reserve(&bot, 2, Some("c-2")).await;
    assert_problem(&refused, StatusCode::CONFLICT, "hold_cap_exceeded");
    assert_eq!(refused.1["holder_kind"], "key");
    assert_eq!(refused.1["holder"], json!(bot_id));
    assert_eq!(
        server.reserve(&bot, 1, Some("c-2")).await.0,
        StatusCode::CREATED
    );

    // Releasing a cart gives its units back to the key and the customer.
    let id = first["id"].as_str().expect("id");
    let (status, released) = server
        .call(
            Method::POST,
            &format!("/v1/reservations/{id}/release"),
            &bot,
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(
        server.reserve(&bot, 3, Some("c-1")).await.0,
        StatusCode::CREATED
    );

    // Keys without a cap of their own (here: the admin key, no server
    // default) are not capped; customers still are.
    assert_eq!(server.reserve(ADMIN, 50, None).await.0, StatusCode::CREATED);
    let refused = server.reserve(ADMIN, 6, Some("c-3")).await;
    assert_problem(&refused, StatusCode::CONFLICT, "hold_cap_exceeded");

    // A customer id is validated like every id.
    let before = server.reserved().await;
    for bad in ["", " padded", &"x".repeat(51)] {
        let refused = server.reserve(&bot, 1, Some(bad)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_id");
    }
    assert_eq!(server.reserved().await, before);

    // The key's cap is listed (and persisted with it: see the codec tests).
    let (_, keys) = server
        .call(Method::GET, "/v1/keys", ADMIN, Value::Null)
        .await;
    let listed = keys
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == json!(bot_id))
        .expect("bot key listed");
    assert_eq!(listed["max_held_units"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_wide_key_cap_applies_to_keys_without_their_own() {
    let server = Server::start(ServeConfig {
        max_held_units_per_key: 4,
        max_held_units_per_customer: 0,
        ..ServeConfig::default()
    })
    .await;
    assert_eq!(
        server.reserve(ADMIN, 4, Some("c-1")).await.0,
        StatusCode::CREATED
    );
    let refused = server.reserve(ADMIN, 1, Some("c-2")).await;
    assert_problem(&refused, StatusCode::CONFLICT, "hold_cap_exceeded");
    assert_eq!(refused.1["holder"], "admin");
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/keys",
            ADMIN,
            json!({"name": "storefront", "scopes": ["reserve"], "max_held_units": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let storefront = created["key"].as_str().expect("secret");
    // Its own 0 means no cap, whatever the server default.
    assert_eq!(
        server.reserve(storefront, 40, None).await.0,
        StatusCode::CREATED
    );
    assert_eq!(server.reserved().await, 44);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_caps_on_lines_ttl_batches_and_bodies_refuse_and_change_nothing() {
    let server = Server::start(ServeConfig {
        max_lines_per_request: 2,
        max_ttl_seconds: 60,
        max_batch_items: 3,
        max_body_bytes: 2_048,
        ..ServeConfig::default()
    })
    .await;
    let line = json!({"sku": "SKU-1", "location": "S1", "qty": 1});
    let other = json!({"sku": "SKU-2", "location": "S1", "qty": 1});
    let third = json!({"sku": "SKU-3", "location": "S1", "qty": 1});
    let reserve =
        |lines: Value, ttl: u64| json!({"channel": "web", "lines": lines, "ttl_seconds": ttl});
    let (_, before) = server
        .call(Method::GET, "/v1/journal?limit=1000", ADMIN, Value::Null)
        .await;

    let answer = server
        .call(
            Method::POST,
            "/v1/reservations",
            ADMIN,
            reserve(json!([line, other, third]), 60),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "too_many_lines");
    let answer = server
        .call(
            Method::POST,
            "/v1/reservations",
            ADMIN,
            reserve(json!([line]), 61),
        )
        .await;
    assert_problem(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ttl_out_of_range",
    );

    let items: Vec<Value> = (0..4)
        .map(|i| json!({"sku": format!("SKU-{i}"), "location": "S1"}))
        .collect();
    let answer = server
        .call(
            Method::POST,
            "/v1/availability/batch",
            ADMIN,
            json!({"items": items}),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "too_many_items");
    let receipts: Vec<Value> = (0..4)
        .map(|_| json!({"kind": "receipt", "sku": "SKU-1", "location": "S1", "qty": 1}))
        .collect();
    let answer = server
        .call(
            Method::POST,
            "/v1/movements/batch",
            ADMIN,
            json!({"items": receipts}),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "too_many_items");

    let long_reference = "r".repeat(4_000);
    let answer = server
        .call(
            Method::POST,
            "/v1/receipts",
            ADMIN,
            json!({"sku": "SKU-1", "location": "S1", "qty": 1, "reference": long_reference}),
        )
        .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    let (_, after) = server
        .call(Method::GET, "/v1/journal?limit=1000", ADMIN, Value::Null)
        .await;
    assert_eq!(before, after, "no refused request wrote a movement");

    // At the limits, the same requests pass.
    let answer = server
        .call(
            Method::POST,
            "/v1/reservations",
            ADMIN,
            reserve(json!([line]), 60),
        )
        .await;
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    let answer = server
        .call(
            Method::POST,
            "/v1/movements/batch",
            ADMIN,
            json!({"items": &receipts[..3]}),
        )
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(answer.1["applied"], 3);
}

#[test]
fn limits_out_of_range_are_refused_at_start() {
    for (config, flag) in [
        (
            ServeConfig {
                max_lines_per_request: 0,
                ..ServeConfig::default()
            },
            "--max-lines-per-request",
        ),
        (
            ServeConfig {
                max_ttl_seconds: 0,
                ..ServeConfig::default()
            },
            "--max-ttl-seconds",
        ),
        (
            ServeConfig {
                max_batch_items: 100_001,
                ..ServeConfig::default()
            },
            "--max-batch-items",
        ),
    ] {
        let error = config.validate().expect_err("refused");
        assert!(error.contains(flag), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_a_delayed_429_and_other_keys_do_not_wait() {
    // Not `Server::start`: that one turns rate limiting off for seeding.
    let config = ServeConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 1,
        rate_limited_delay_ms: 400,
        ..ServeConfig::default()
    };
    let running = start_engine(config, ADMIN).await;
    let base = base_url(&running);
    let http = Client::new();
    let get = |key: String| {
        let request = http
            .get(format!("{base}/v1/locations"))
            .bearer_auth(key)
            .send();
        async move {
            let started = std::time::Instant::now();
            let response = request.await.expect("sent");
            (response.status(), started.elapsed(), response)
        }
    };
    let created = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "other", "scopes": ["read"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("key");
    let other = created["key"].as_str().expect("secret").to_owned();

    // The admin key spent its one token creating the key: the next request
    // is refused, after at least half the configured delay (jitter).
    let (status, waited, response) = get(ADMIN.into()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        waited >= std::time::Duration::from_millis(200),
        "answered after {waited:?}"
    );
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "rate_limited");
    // Another key has its own bucket: answered, not limited.
    let (status, _, _) = get(other).await;
    assert_eq!(status, StatusCode::OK);
}
