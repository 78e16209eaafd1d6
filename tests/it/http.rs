//! The HTTP service over real sockets: the server is bound to 127.0.0.1:0 in
//! this process and driven with a real HTTP client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;

use omnistock::server::config::ServeConfig;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::engine::{Running, base_url, send, start_engine};

const ADMIN: &str = "test-admin-key-0123456789";

struct Server {
    running: Running,
    base: String,
    http: Client,
}

impl Server {
    async fn start_with(config: ServeConfig) -> Server {
        let running = start_engine(config, ADMIN).await;
        let base = base_url(&running);
        Server {
            running,
            base,
            http: Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .expect("client"),
        }
    }

    async fn start() -> Server {
        Server::start_with(ServeConfig::default()).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, key, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let body = body.as_ref();
        send(&self.http, &self.base, method, path, key, body, headers).await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN), body).await
    }

    /// Two stores (S1, S2) and a warehouse (W1), group `online`, one SKU stocked.
    async fn seed(&self) {
        for (code, body) in [
            (
                "S1",
                json!({"kind": "store", "name": "Paris", "lat": 48.8566, "lon": 2.3522, "pickup": {"method": "buy", "sla": "same day"}}),
            ),
            (
                "S2",
                json!({"kind": "store", "name": "Lyon", "lat": 45.764, "lon": 4.8357}),
            ),
            (
                "W1",
                json!({"kind": "warehouse", "name": "Nord", "ship_from_store": true}),
            ),
        ] {
            let (status, _) = self
                .admin(Method::PUT, &format!("/v1/locations/{code}"), Some(body))
                .await;
            assert_eq!(status, StatusCode::OK, "location {code}");
        }
        let (status, _) = self
            .admin(
                Method::PUT,
                "/v1/groups/online",
                Some(json!({"locations": ["S1", "W1"]})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for (location, on_hand) in [("S1", 10), ("S2", 5), ("W1", 100)] {
            let (status, _) = self
                .admin(
                    Method::PUT,
                    &format!("/v1/stock/{location}/SKU-1"),
                    Some(json!({"on_hand": on_hand})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }

    async fn key(&self, scopes: &[&str], locations: &[&str]) -> String {
        let (status, body) = self
            .admin(
                Method::POST,
                "/v1/keys",
                Some(json!({"name": "test", "scopes": scopes, "locations": locations})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key"].as_str().expect("secret").to_string()
    }

    async fn atf(&self, location: &str) -> u64 {
        let (_, body) = self
            .admin(Method::GET, &format!("/v1/stock/{location}/SKU-1"), None)
            .await;
        body["atf"].as_u64().expect("atf")
    }
}

/// (name, method, path, body, names of the keys allowed).
type AuthCase = (
    &'static str,
    Method,
    &'static str,
    Option<Value>,
    &'static [&'static str],
);
/// (name, method, path, content type of a raw body, JSON body or raw body, status, problem code).
type BadInputCase = (
    &'static str,
    Method,
    String,
    Option<&'static str>,
    Result<Value, &'static str>,
    StatusCode,
    &'static str,
);

fn reserve_body(location: &str, qty: u32) -> Value {
    json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": location, "qty": qty}], "ttl_seconds": 600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_per_the_contract() {
    let server = Server::start().await;
    server.seed().await;
    let get = |path: &'static str| server.admin(Method::GET, path, None);

    // Availability.
    let (status, body) = get("/v1/availability/SKU-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_atf"], 115);
    let position = &body["locations"][0];
    for field in [
        "sku",
        "location",
        "on_hand",
        "reserved",
        "safety_stock",
        "atf",
        "ato",
        "version",
    ] {
        assert!(
            position.get(field).is_some(),
            "position field {field}: {position}"
        );
    }
    let (_, body) = get("/v1/availability/SKU-1?group=online").await;
    assert_eq!(body["total_atf"], 110);
    let (_, body) = get("/v1/availability/SKU-1?locations=S2,W1").await;
    assert_eq!(body["locations"].as_array().map(Vec::len), Some(2));
    let (status, body) = server.admin(Method::POST, "/v1/availability/batch", Some(json!({"items": [{"sku": "SKU-1", "location": "S1"}, {"sku": "SKU-1", "location": "NOPE"}]}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["atf"], 10);
    assert_eq!(body["results"][1]["code"], "unknown_location");
    let (status, body) = get("/v1/nearby?sku=SKU-1&lat=48.85&lon=2.35&radius_km=600&qty=6").await;
    assert_eq!(status, StatusCode::OK);
    let stores: Vec<_> = body["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .map(|s| s["location"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        stores,
        vec!["S1"],
        "S2 has only 5; the warehouse is not a store: {body}"
    );
    assert_eq!(body["stores"][0]["pickup_sla"], "same day");

    // Policies shape what a channel sees.
    let (status, _) = server
        .admin(
            Method::PUT,
            "/v1/policies",
            Some(json!({"channel": "web", "location": "S1", "held_back": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = get("/v1/stock/S1/SKU-1?channel=web").await;
    assert_eq!(body["atf"], 8);

    // Reservations: create, get, extend, transfer, commit (partial), release.
    let (status, held) = server
        .admin(
            Method::POST,
            "/v1/reservations",
            Some(reserve_body("S1", 3)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    assert_eq!(held["state"], "held");
    let id = held["id"].as_str().expect("id").to_string();
    let (status, body) = server
        .admin(Method::GET, &format!("/v1/reservations/{id}"), None)
        .await;
    assert_eq!(
        (status, body["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let (status, body) = server
        .admin(
            Method::POST,
            &format!("/v1/reservations/{id}/extend"),
            Some(json!({"ttl_seconds": 1200})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(body["expires_at"], held["expires_at"]);
    let (status, body) = server
        .admin(
            Method::POST,
            &format!("/v1/reservations/{id}/transfer"),
            Some(json!({"sku": "SKU-1", "from": "S1", "to": "W1", "qty": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lines"].as_array().map(Vec::len), Some(2));
    let (status, body) = server
        .admin(
            Method::POST,
            &format!("/v1/reservations/{id}/commit"),
            Some(json!({"lines": [{"sku": "SKU-1", "location": "S1", "qty": 1}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "committed");
    assert_eq!(server.atf("S1").await, 9);
    assert_eq!(
        server.atf("W1").await,
        100,
        "the uncommitted line was released"
    );
    let (_, second) = server
        .admin(
            Method::POST,
            "/v1/reservations",
            Some(reserve_body("S2", 1)),
        )
        .await;
    let id2 = second["id"].as_str().expect("id").to_string();
    let (status, body) = server
        .admin(
            Method::POST,
            &format!("/v1/reservations/{id2}/release"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("released"))
    );
    let (status, body) = server
        .admin(
            Method::POST,
            &format!("/v1/reservations/{id2}/release"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["state"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("reservation_not_held"),
            Some("released")
        )
    );
    let (_, third) = server
        .admin(
            Method::POST,
            "/v1/reservations",
            Some(reserve_body("S2", 1)),
        )
        .await;
    let (status, body) = server
        .admin(
            Method::POST,
            &format!(
                "/v1/reservations/{}/commit",
                third["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("committed")),
        "commit without a body"
    );

    // Stock movements.
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/sales",
            Some(
                json!({"channel": "pos", "lines": [{"sku": "SKU-1", "location": "S2", "qty": 1}]}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["positions"][0]["on_hand"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let (status, body) = server.admin(Method::POST, "/v1/returns", Some(json!({"channel": "pos", "sku": "SKU-1", "location": "S2", "qty": 1, "sellable": false}))).await;
    assert_eq!(
        (status, body["non_sellable"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, body) = server.admin(Method::POST, "/v1/incoming", Some(json!({"sku": "SKU-1", "location": "W1", "qty": 40, "expected_at": "2099-01-01T00:00:00Z", "reference": "PO-1"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/receipts",
            Some(json!({"sku": "SKU-1", "location": "W1", "qty": 40, "reference": "PO-1"})),
        )
        .await;
    assert_eq!(
        (status, body["on_hand"].as_u64(), body["incoming"].as_u64()),
        (StatusCode::OK, Some(140), Some(0))
    );
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/adjustments",
            Some(json!({"sku": "SKU-1", "location": "W1", "delta": -5, "reason": "damaged"})),
        )
        .await;
    assert_eq!(
        (status, body["on_hand"].as_u64()),
        (StatusCode::OK, Some(135))
    );
    let version = body["version"].as_u64().expect("version");
    let (status, body) = server
        .admin(
            Method::PUT,
            "/v1/stock/W1/SKU-1",
            Some(json!({"on_hand": 120, "expected_version": version - 1})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("stale_version"))
    );
    let (status, body) = server.admin(Method::PUT, "/v1/stock/W1/SKU-1", Some(json!({"on_hand": 120, "expected_version": version, "as_of": "2020-01-01T00:00:00Z"}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("stale_count")),
        "a count older than the last one: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("2020-01-01T00:00:00.000Z")),
        "times in RFC 3339: {body}"
    );

    // A batch of movements: each item answers on its own.
    let batch = json!({"items": [
        {"kind": "receipt", "sku": "SKU-1", "location": "S2", "qty": 4},
        {"kind": "sale", "channel": "pos", "sku": "SKU-1", "location": "S2", "qty": 1},
        {"kind": "adjustment", "sku": "SKU-1", "location": "S2", "delta": -1000, "reason": "audit"},
        {"kind": "return", "channel": "pos", "sku": "SKU-1", "location": "NOPE", "qty": 1}
    ]});
    let (status, body) = server
        .call_with(
            Method::POST,
            "/v1/movements/batch",
            Some(ADMIN),
            Some(batch.clone()),
            &[("idempotency-key", "batch-1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let head = server.running.state.ledger().journal_head();
    let replay = server
        .call_with(
            Method::POST,
            "/v1/movements/batch",
            Some(ADMIN),
            Some(batch),
            &[("idempotency-key", "batch-1")],
        )
        .await;
    assert_eq!(
        replay,
        (status, body.clone()),
        "a retried batch replays every item"
    );
    assert_eq!(
        server.running.state.ledger().journal_head(),
        head,
        "and applies nothing twice"
    );
    assert_eq!(
        (body["applied"].as_u64(), body["failed"].as_u64()),
        (Some(2), Some(2)),
        "{body}"
    );
    assert_eq!(body["results"][1]["position"]["on_hand"], 6);
    assert_eq!(body["results"][2]["code"], "insufficient_on_hand");
    assert_eq!(body["results"][3]["code"], "unknown_location");

    // Bulk import, NDJSON and CSV, with per-row errors.
    let ndjson = "{\"sku\":\"SKU-2\",\"location\":\"S1\",\"on_hand\":7}\n{\"sku\":\"SKU-3\",\"location\":\"NOPE\",\"on_hand\":1}\nnot json\n{\"sku\":\"SKU-4\",\"location\":\"S2\",\"on_hand\":2,\"safety_stock\":1}";
    let response = server
        .http
        .post(format!("{}/v1/stock/import", server.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.expect("report");
    assert_eq!(
        (
            report["rows"].as_u64(),
            report["applied"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(4), Some(2), Some(2)),
        "{report}"
    );
    assert_eq!(report["errors"][0]["row"], 2);
    assert_eq!(report["errors"][0]["code"], "unknown_location");
    let csv = "sku,location,on_hand,safety_stock\nSKU-5,W1,9,\n\"SKU,6\",W1,3,1\nSKU-7,W1,-1,\n";
    let response = server
        .http
        .post(format!("{}/v1/stock/import", server.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import");
    let report: Value = response.json().await.expect("report");
    assert_eq!(
        (report["applied"].as_u64(), report["failed"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    let (_, body) = get("/v1/availability/SKU,6").await;
    assert_eq!(
        body["total_atf"], 2,
        "quoted CSV field, safety stock applied"
    );

    // Journal, keys, locations.
    let (status, body) = get("/v1/journal?sku=SKU-1&location=W1&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["movements"]
            .as_array()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["location"] == "W1")),
        "{body}"
    );
    let (status, body) = get("/v1/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true, "{body}");
    assert!(body["positions"].as_u64().is_some_and(|n| n > 0), "{body}");
    let (status, body) = get("/v1/locations").await;
    assert_eq!(
        (status, body.as_array().map(Vec::len)),
        (StatusCode::OK, Some(3))
    );
    let reader = server.key(&["read"], &[]).await;
    let (status, keys) = get("/v1/keys").await;
    assert_eq!(status, StatusCode::OK);
    let key_id = keys[0]["id"].as_str().expect("id").to_string();
    assert!(keys[0].get("key").is_none(), "secrets are never listed");
    assert_eq!(
        server
            .call(Method::GET, "/v1/availability/SKU-1", Some(&reader), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .admin(Method::DELETE, &format!("/v1/keys/{key_id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .call(Method::GET, "/v1/availability/SKU-1", Some(&reader), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );

    // Operations.
    assert_eq!(
        server.call(Method::GET, "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.call(Method::GET, "/readyz", None, None).await.0,
        StatusCode::OK
    );
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("omnistock_http_requests_total"),
        "request counter exported"
    );
    assert!(
        metrics.contains("omnistock_http_request_duration_seconds_bucket"),
        "latency histogram exported"
    );
    assert!(
        metrics.contains("omnistock_positions"),
        "ledger size exported"
    );
    let (status, spec) = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/reservations",
        "/v1/reservations/{id}/commit",
        "/v1/stock/{location}/{sku}",
        "/v1/availability/{sku}",
        "/v1/locations/{location}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "spec documents {path}");
    }
    let docs = server
        .http
        .get(format!("{}/docs", server.base))
        .send()
        .await
        .expect("docs")
        .text()
        .await
        .expect("html");
    assert!(
        docs.contains("/openapi.json") && !docs.contains("https://"),
        "docs page is self-contained"
    );
    server.running.shutdown().await.expect("graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix() {
    let server = Server::start().await;
    server.seed().await;
    // The matrix holds, sells and commits many units at the stores.
    for location in ["S1", "S2"] {
        server
            .admin(
                Method::PUT,
                &format!("/v1/stock/{location}/SKU-1"),
                Some(json!({"on_hand": 10_000})),
            )
            .await;
    }
    let keys = [
        ("read", server.key(&["read"], &[]).await),
        ("reserve", server.key(&["reserve"], &[]).await),
        ("pos_s1", server.key(&["pos"], &["S1"]).await),
        ("stock_write", server.key(&["stock_write"], &[]).await),
        ("feed", server.key(&["feed"], &[]).await),
        ("admin", ADMIN.to_string()),
    ];
    // Every route. `{id}` is replaced by a fresh reservation at S1 (so `pos_s1`
    // may act on it), `{id_s2}` by one at S2 (so it may not).
    let sale_s1 =
        json!({"channel": "pos", "lines": [{"sku": "SKU-1", "location": "S1", "qty": 1}]});
    let sale_s2 =
        json!({"channel": "pos", "lines": [{"sku": "SKU-1", "location": "S2", "qty": 1}]});
    let routes: Vec<AuthCase> = vec![
        (
            "availability",
            Method::GET,
            "/v1/availability/SKU-1",
            None,
            &["read", "admin"],
        ),
        // Without `read`, a key reads a position where it writes stock.
        (
            "position",
            Method::GET,
            "/v1/stock/S1/SKU-1",
            None,
            &["read", "pos_s1", "stock_write", "admin"],
        ),
        (
            "position at another store",
            Method::GET,
            "/v1/stock/S2/SKU-1",
            None,
            &["read", "stock_write", "admin"],
        ),
        (
            "batch availability",
            Method::POST,
            "/v1/availability/batch",
            Some(json!({"items": [{"sku": "SKU-1", "location": "S1"}]})),
            &["read", "admin"],
        ),
        (
            "nearby",
            Method::GET,
            "/v1/nearby?sku=SKU-1&lat=48.85&lon=2.35",
            None,
            &["read", "admin"],
        ),
        (
            "locations",
            Method::GET,
            "/v1/locations",
            None,
            &["read", "admin"],
        ),
        (
            "reserve at S1",
            Method::POST,
            "/v1/reservations",
            Some(reserve_body("S1", 1)),
            &["reserve", "pos_s1", "admin"],
        ),
        (
            "reserve at S2",
            Method::POST,
            "/v1/reservations",
            Some(reserve_body("S2", 1)),
            &["reserve", "admin"],
        ),
        (
            "get reservation at S1",
            Method::GET,
            "/v1/reservations/{id}",
            None,
            &["read", "reserve", "pos_s1", "admin"],
        ),
        (
            "get reservation at S2",
            Method::GET,
            "/v1/reservations/{id_s2}",
            None,
            &["read", "reserve", "admin"],
        ),
        (
            "extend at S1",
            Method::POST,
            "/v1/reservations/{id}/extend",
            Some(json!({"ttl_seconds": 60})),
            &["reserve", "pos_s1", "admin"],
        ),
        (
            "extend at S2",
            Method::POST,
            "/v1/reservations/{id_s2}/extend",
            Some(json!({"ttl_seconds": 60})),
            &["reserve", "admin"],
        ),
        (
            "transfer S1 to W1",
            Method::POST,
            "/v1/reservations/{id}/transfer",
            Some(json!({"sku": "SKU-1", "from": "S1", "to": "W1"})),
            &["reserve", "admin"],
        ),
        (
            "commit at S1",
            Method::POST,
            "/v1/reservations/{id}/commit",
            None,
            &["reserve", "pos_s1", "admin"],
        ),
        (
            "commit at S2",
            Method::POST,
            "/v1/reservations/{id_s2}/commit",
            None,
            &["reserve", "admin"],
        ),
        (
            "release at S1",
            Method::POST,
            "/v1/reservations/{id}/release",
            None,
            &["reserve", "pos_s1", "admin"],
        ),
        (
            "release at S2",
            Method::POST,
            "/v1/reservations/{id_s2}/release",
            None,
            &["reserve", "admin"],
        ),
        (
            "sale at S1",
            Method::POST,
            "/v1/sales",
            Some(sale_s1),
            &["pos_s1", "stock_write", "admin"],
        ),
        (
            "sale at S2",
            Method::POST,
            "/v1/sales",
            Some(sale_s2),
            &["stock_write", "admin"],
        ),
        (
            "return at S1",
            Method::POST,
            "/v1/returns",
            Some(json!({"channel": "pos", "sku": "SKU-1", "location": "S1", "qty": 1})),
            &["pos_s1", "stock_write", "admin"],
        ),
        (
            "return at S2",
            Method::POST,
            "/v1/returns",
            Some(json!({"channel": "pos", "sku": "SKU-1", "location": "S2", "qty": 1})),
            &["stock_write", "admin"],
        ),
        (
            "count",
            Method::PUT,
            "/v1/stock/W1/SKU-1",
            Some(json!({"on_hand": 100})),
            &["stock_write", "admin"],
        ),
        (
            "receipt",
            Method::POST,
            "/v1/receipts",
            Some(json!({"sku": "SKU-1", "location": "W1", "qty": 1})),
            &["stock_write", "admin"],
        ),
        (
            "incoming",
            Method::POST,
            "/v1/incoming",
            Some(
                json!({"sku": "SKU-1", "location": "W1", "qty": 1, "expected_at": "2099-01-01T00:00:00Z"}),
            ),
            &["stock_write", "admin"],
        ),
        (
            "adjustment",
            Method::POST,
            "/v1/adjustments",
            Some(json!({"sku": "SKU-1", "location": "W1", "delta": 1, "reason": "found"})),
            &["stock_write", "admin"],
        ),
        (
            "movement batch",
            Method::POST,
            "/v1/movements/batch",
            Some(json!({"items": []})),
            &["read", "reserve", "pos_s1", "stock_write", "feed", "admin"],
        ),
        (
            "location",
            Method::PUT,
            "/v1/locations/S9",
            Some(json!({"kind": "store", "name": "x"})),
            &["admin"],
        ),
        (
            "group",
            Method::PUT,
            "/v1/groups/g",
            Some(json!({"locations": ["S1"]})),
            &["admin"],
        ),
        (
            "policy",
            Method::PUT,
            "/v1/policies",
            Some(json!({"channel": "web", "location": "S1", "held_back": 0})),
            &["admin"],
        ),
        (
            "create key",
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "k", "scopes": ["read"]})),
            &["admin"],
        ),
        ("list keys", Method::GET, "/v1/keys", None, &["admin"]),
        ("revoke key", Method::DELETE, "/v1/keys/key_none", None, &[]),
        ("journal", Method::GET, "/v1/journal", None, &["admin"]),
        ("audit", Method::GET, "/v1/admin/audit", None, &["admin"]),
        (
            "google feed",
            Method::GET,
            "/v1/feeds/google/local-inventory",
            None,
            &["feed", "admin"],
        ),
        (
            "meta feed",
            Method::GET,
            "/v1/feeds/meta/local-inventory",
            None,
            &["feed", "admin"],
        ),
    ];
    for (name, method, path, body, allowed) in &routes {
        for (key_name, key) in &keys {
            let mut path = path.to_string();
            for (marker, location) in [("{id_s2}", "S2"), ("{id}", "S1")] {
                if path.contains(marker) {
                    let (_, held) = server
                        .admin(
                            Method::POST,
                            "/v1/reservations",
                            Some(reserve_body(location, 1)),
                        )
                        .await;
                    path = path.replace(marker, held["id"].as_str().expect("id"));
                }
            }
            let (status, response) = server
                .call(method.clone(), &path, Some(key), body.clone())
                .await;
            if allowed.contains(key_name) {
                assert!(
                    status.is_success(),
                    "{name} with {key_name}: {status} {response}"
                );
            } else if *name == "revoke key" && *key_name == "admin" {
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "admin may revoke; this key does not exist"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{name} with {key_name}: {response}"
                );
                assert_eq!(response["code"], "forbidden");
            }
        }
        assert_eq!(
            server
                .call(method.clone(), path, None, body.clone())
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "{name} without a key"
        );
        assert_eq!(
            server
                .call(method.clone(), path, Some("wrong-key"), body.clone())
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "{name} with a wrong key"
        );
    }
    // Scopes inside a batch apply per item.
    let batch = json!({"items": [{"kind": "receipt", "sku": "SKU-1", "location": "W1", "qty": 1}]});
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/movements/batch",
            Some(&keys[0].1),
            Some(batch),
        )
        .await;
    assert_eq!(
        (status, body["results"][0]["code"].as_str()),
        (StatusCode::OK, Some("forbidden")),
        "{body}"
    );
    // A POS key may resolve reservations at its own store only.
    let pos = &keys[2].1;
    let (_, at_s2) = server
        .admin(
            Method::POST,
            "/v1/reservations",
            Some(reserve_body("S2", 1)),
        )
        .await;
    let (status, _) = server
        .call(
            Method::POST,
            &format!(
                "/v1/reservations/{}/release",
                at_s2["id"].as_str().expect("id")
            ),
            Some(pos),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, at_s1) = server
        .call(
            Method::POST,
            "/v1/reservations",
            Some(pos),
            Some(reserve_body("S1", 1)),
        )
        .await;
    let (status, _) = server
        .call(
            Method::POST,
            &format!(
                "/v1/reservations/{}/release",
                at_s1["id"].as_str().expect("id")
            ),
            Some(pos),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The ledger checks the POS key's stores in the same operation as it
    // acts: a reservation moved to S2 is refused with the location named,
    // and so is a transfer to S2; the refusal is not kept under the
    // Idempotency-Key, so the same request succeeds once the line is back.
    let (_, held) = server
        .call(
            Method::POST,
            "/v1/reservations",
            Some(pos),
            Some(reserve_body("S1", 1)),
        )
        .await;
    let id = held["id"].as_str().expect("id");
    let move_to = |from: &str, to: &str| json!({"sku": "SKU-1", "from": from, "to": to});
    let transfer = format!("/v1/reservations/{id}/transfer");
    let (status, body) = server
        .call(
            Method::POST,
            &transfer,
            Some(pos),
            Some(move_to("S1", "S2")),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["location"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"), Some("S2")),
        "{body}"
    );
    let (status, _) = server
        .admin(Method::POST, &transfer, Some(move_to("S1", "S2")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let commit = format!("/v1/reservations/{id}/commit");
    let till = [("idempotency-key", "till-1")];
    let (status, body) = server
        .call_with(Method::POST, &commit, Some(pos), None, &till)
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["location"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"), Some("S2")),
        "{body}"
    );
    assert_eq!(
        body["detail"], "this pos key may not act on location S2",
        "the body the HTTP layer gave before the ledger checked it"
    );
    let (status, _) = server
        .admin(Method::POST, &transfer, Some(move_to("S2", "S1")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let committed = server
        .call_with(Method::POST, &commit, Some(pos), None, &till)
        .await;
    assert_eq!(committed.0, StatusCode::OK, "{}", committed.1);
    assert_eq!(committed.1["state"], "committed");
    assert_eq!(
        server
            .call_with(Method::POST, &commit, Some(pos), None, &till)
            .await,
        committed,
        "the commit is what the key keeps"
    );
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "pos", "scopes": ["pos"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("pos_needs_locations")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let server = Server::start_with(ServeConfig {
        max_body_bytes: 4 * 1024,
        ..ServeConfig::default()
    })
    .await;
    server.seed().await;
    let ledger = Arc::clone(server.running.state.ledger());
    let head = ledger.journal_head();
    let long_id = "x".repeat(51);
    let huge_body = json!({"channel": "web", "lines": [{"sku": "x".repeat(5_000), "location": "S1", "qty": 1}], "ttl_seconds": 60});
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"sku": "SKU-1", "location": "S1", "qty": 1}))
        .collect();
    let line = |qty: Value| json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "S1", "qty": qty}], "ttl_seconds": 60});
    let cases: Vec<BadInputCase> = vec![
        (
            "malformed json",
            Method::POST,
            "/v1/reservations".into(),
            Some("application/json"),
            Err("{\"channel\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "wrong content type",
            Method::POST,
            "/v1/reservations".into(),
            Some("text/plain"),
            Err("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "unknown field",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(json!({"channel": "web", "lines": [], "ttl_seconds": 60, "extra": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "negative qty",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(line(json!(-1))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "zero qty",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(line(json!(0))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "zero_quantity",
        ),
        (
            "huge qty",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(line(json!(99_999_999_999u64))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "over line max",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(line(json!(2_000_000))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity_too_large",
        ),
        (
            "float qty",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(line(json!(1.5))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "string qty",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(line(json!("1"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "unknown channel",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(
                json!({"channel": "fax", "lines": [{"sku": "SKU-1", "location": "S1", "qty": 1}], "ttl_seconds": 60}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_channel",
        ),
        (
            "too many lines",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(json!({"channel": "web", "lines": too_many, "ttl_seconds": 60})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_lines",
        ),
        (
            "no lines",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(json!({"channel": "web", "lines": [], "ttl_seconds": 60})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_lines",
        ),
        (
            "ttl zero",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(
                json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "S1", "qty": 1}], "ttl_seconds": 0}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttl_out_of_range",
        ),
        (
            "over-long sku",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(
                json!({"channel": "web", "lines": [{"sku": long_id, "location": "S1", "qty": 1}], "ttl_seconds": 60}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
        (
            "control char sku",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(
                json!({"channel": "web", "lines": [{"sku": "a\u{7}b", "location": "S1", "qty": 1}], "ttl_seconds": 60}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
        (
            "oversized body",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(huge_body),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "unknown location",
            Method::POST,
            "/v1/reservations".into(),
            None,
            Ok(reserve_body("NOPE", 1)),
            StatusCode::NOT_FOUND,
            "unknown_location",
        ),
        (
            "count negative",
            Method::PUT,
            "/v1/stock/S1/SKU-1".into(),
            None,
            Ok(json!({"on_hand": -3})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "count bad as_of",
            Method::PUT,
            "/v1/stock/S1/SKU-1".into(),
            None,
            Ok(json!({"on_hand": 3, "as_of": "yesterday"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_timestamp",
        ),
        (
            "count path id too long",
            Method::PUT,
            format!("/v1/stock/S1/{}", "y".repeat(60)),
            None,
            Ok(json!({"on_hand": 3})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
        (
            "adjust zero",
            Method::POST,
            "/v1/adjustments".into(),
            None,
            Ok(json!({"sku": "SKU-1", "location": "S1", "delta": 0, "reason": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "zero_delta",
        ),
        (
            "adjust below zero",
            Method::POST,
            "/v1/adjustments".into(),
            None,
            Ok(json!({"sku": "SKU-1", "location": "S1", "delta": -50, "reason": "x"})),
            StatusCode::CONFLICT,
            "insufficient_on_hand",
        ),
        (
            "reservation id garbage",
            Method::POST,
            "/v1/reservations/abc/release".into(),
            None,
            Err(""),
            StatusCode::NOT_FOUND,
            "reservation_not_found",
        ),
        (
            "commit body malformed",
            Method::POST,
            "/v1/reservations/999/commit".into(),
            Some("application/json"),
            Err("{\"lines\": ["),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "commit body not json",
            Method::POST,
            "/v1/reservations/999/commit".into(),
            Some("text/plain"),
            Err("lines"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "commit body unknown field",
            Method::POST,
            "/v1/reservations/999/commit".into(),
            None,
            Ok(json!({"lines": [], "everything": true})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "commit body oversized",
            Method::POST,
            "/v1/reservations/999/commit".into(),
            None,
            Ok(json!({"lines": [{"sku": "x".repeat(5_000), "location": "S1", "qty": 1}]})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "nearby bad lat",
            Method::GET,
            "/v1/nearby?sku=SKU-1&lat=200&lon=0".into(),
            None,
            Err(""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_coordinates",
        ),
        (
            "nearby lat not a number",
            Method::GET,
            "/v1/nearby?sku=SKU-1&lat=abc&lon=0".into(),
            None,
            Err(""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
        ),
        (
            "location bad kind",
            Method::PUT,
            "/v1/locations/S3".into(),
            None,
            Ok(json!({"kind": "shop", "name": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_kind",
        ),
        (
            "location pickup without sla",
            Method::PUT,
            "/v1/locations/S3".into(),
            None,
            Ok(json!({"kind": "store", "name": "x", "pickup": {"method": "buy"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            "unknown route",
            Method::GET,
            "/v1/nothing".into(),
            None,
            Err(""),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            "wrong method",
            Method::DELETE,
            "/v1/reservations".into(),
            None,
            Err(""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (name, method, path, content_type, body, expected_status, expected_code) in cases {
        let mut request = server
            .http
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(ADMIN);
        request = match body {
            Ok(value) => request.json(&value),
            Err(raw) if !raw.is_empty() => request
                .header("content-type", content_type.unwrap_or("application/json"))
                .body(raw.to_string()),
            Err(_) => request,
        };
        let response = request.send().await.expect("sent");
        let status = response.status();
        let content = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected_status, "{name}: {problem}");
        assert_eq!(content, "application/problem+json", "{name}");
        assert_eq!(problem["code"], expected_code, "{name}: {problem}");
        assert_eq!(problem["status"], expected_status.as_u16(), "{name}");
        assert!(
            problem["type"].is_string()
                && problem["title"].is_string()
                && problem["detail"].is_string(),
            "{name}: {problem}"
        );
        assert_eq!(
            ledger.journal_head(),
            head,
            "{name}: bad input changed nothing"
        );
    }
    assert_eq!(ledger.check_invariants().map(|r| r.reserved), Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flash_sale_grants_exactly_the_stock() {
    const UNITS: u64 = 1_000;
    const CLIENTS: usize = 300;
    const ATTEMPTS_PER_CLIENT: usize = 12;
    let server = Arc::new(Server::start().await);
    server.seed().await;
    server
        .admin(
            Method::PUT,
            "/v1/stock/W1/HOT",
            Some(json!({"on_hand": UNITS})),
        )
        .await;
    let body = json!({"channel": "web", "lines": [{"sku": "HOT", "location": "W1", "qty": 1}], "ttl_seconds": 600});
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, body) = (Arc::clone(&server), body.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..ATTEMPTS_PER_CLIENT {
                    outcomes.push(
                        server
                            .admin(Method::POST, "/v1/reservations", Some(body.clone()))
                            .await
                            .0,
                    );
                }
                outcomes
            })
        })
        .collect();
    let mut granted = 0;
    let mut refused = 0;
    for task in tasks {
        for status in task.await.expect("client") {
            match status {
                StatusCode::CREATED => granted += 1,
                StatusCode::CONFLICT => refused += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(granted, UNITS, "exactly the stock is granted");
    assert_eq!(refused, (CLIENTS * ATTEMPTS_PER_CLIENT) as u64 - UNITS);
    let report = server
        .running
        .state
        .ledger()
        .check_invariants()
        .expect("invariants");
    assert!(report.reserved <= report.on_hand);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_releases_units_on_time() {
    let server = Server::start().await;
    server.seed().await;
    let (status, held) = server.admin(Method::POST, "/v1/reservations", Some(json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "S2", "qty": 5}], "ttl_seconds": 1}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let created = Instant::now();
    assert_eq!(server.atf("S2").await, 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.atf("S2").await, 0, "not before the deadline");
    let released_after = loop {
        if server.atf("S2").await == 5 {
            break created.elapsed();
        }
        assert!(
            created.elapsed() < Duration::from_secs(3),
            "units never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The deadline is 1 s after creation (minus request latency); the sweep
    // runs every 10 ms. Allow generous scheduling slack on a loaded CI box.
    assert!(
        released_after >= Duration::from_millis(900),
        "{released_after:?}"
    );
    assert!(
        released_after <= Duration::from_millis(1_500),
        "released {released_after:?} after creation"
    );
    let (_, body) = server
        .admin(
            Method::GET,
            &format!("/v1/reservations/{}", held["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(body["state"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_replays_including_concurrent_ones() {
    let server = Arc::new(Server::start().await);
    server.seed().await;
    let body = reserve_body("S1", 2);
    let first = server
        .call_with(
            Method::POST,
            "/v1/reservations",
            Some(ADMIN),
            Some(body.clone()),
            &[("idempotency-key", "cart-1")],
        )
        .await;
    assert_eq!(first.0, StatusCode::CREATED);
    let head = server.running.state.ledger().journal_head();
    let replay = server
        .call_with(
            Method::POST,
            "/v1/reservations",
            Some(ADMIN),
            Some(body.clone()),
            &[("idempotency-key", "cart-1")],
        )
        .await;
    assert_eq!(replay, first, "same status and body");
    assert_eq!(
        server.running.state.ledger().journal_head(),
        head,
        "a replay changes nothing"
    );
    let different = server
        .call_with(
            Method::POST,
            "/v1/reservations",
            Some(ADMIN),
            Some(reserve_body("S1", 3)),
            &[("idempotency-key", "cart-1")],
        )
        .await;
    assert_eq!(
        (different.0, different.1["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );
    // A refusal is replayed too.
    let short = server
        .call_with(
            Method::POST,
            "/v1/reservations",
            Some(ADMIN),
            Some(reserve_body("S1", 500)),
            &[("idempotency-key", "cart-2")],
        )
        .await;
    assert_eq!(short.0, StatusCode::CONFLICT);
    assert_eq!(
        server
            .call_with(
                Method::POST,
                "/v1/reservations",
                Some(ADMIN),
                Some(reserve_body("S1", 500)),
                &[("idempotency-key", "cart-2")]
            )
            .await,
        short
    );
    // Another key's Idempotency-Key space is separate.
    let other = server.key(&["reserve"], &[]).await;
    let theirs = server
        .call_with(
            Method::POST,
            "/v1/reservations",
            Some(&other),
            Some(body.clone()),
            &[("idempotency-key", "cart-1")],
        )
        .await;
    assert_eq!(theirs.0, StatusCode::CREATED);
    assert_ne!(theirs.1["id"], first.1["id"]);

    // 40 concurrent duplicates: exactly one applies.
    let before = server.atf("W1").await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                server
                    .call_with(
                        Method::POST,
                        "/v1/reservations",
                        Some(ADMIN),
                        Some(reserve_body("W1", 3)),
                        &[("idempotency-key", "dup")],
                    )
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            StatusCode::CREATED => {
                ids.insert(body["id"].as_str().unwrap_or_default().to_string());
            }
            StatusCode::CONFLICT => assert_eq!(body["code"], "idempotency_in_flight"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "every success is the same reservation");
    assert_eq!(server.atf("W1").await, before - 3, "held once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let server = Server::start_with(ServeConfig {
        rate_limit_per_second: 5,
        rate_limit_burst: 5,
        ..ServeConfig::default()
    })
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let response = server
            .http
            .get(format!("{}/v1/locations", server.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("sent");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the sixth request within a second is limited");
    assert!(response.headers().get("retry-after").is_some());
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "rate_limited");
}

/// Availability answers carry an `ETag`; the same read with
/// `If-None-Match` is a 304 without a body until the answer changes, by a
/// movement or by a policy (which changes no position's version). Every
/// `/v1` answer is `Cache-Control: private, no-store`.
#[tokio::test]
async fn availability_reads_are_tagged_and_answered_304_while_unchanged() {
    let server = Server::start().await;
    server.seed().await;
    let get = async |path: &str, if_none_match: Option<&str>| {
        let mut request = server
            .http
            .get(format!("{}{path}", server.base))
            .bearer_auth(ADMIN);
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        let response = request.send().await.expect("read");
        let header = |name: &str| crate::support::header(&response, name);
        let (status, tag, cache) = (response.status(), header("etag"), header("cache-control"));
        let body = response.bytes().await.expect("body");
        (status, tag, cache, body)
    };
    for path in [
        "/v1/availability/SKU-1",
        "/v1/stock/S1/SKU-1",
        "/v1/nearby?sku=SKU-1&lat=48.85&lon=2.35&radius_km=1000",
    ] {
        let (status, tag, cache, body) = get(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(cache.as_deref(), Some("private, no-store"), "{path}");
        let tag = tag.unwrap_or_else(|| panic!("{path}: an ETag"));
        assert!(!body.is_empty());
        let (status, again, _, body) = get(path, Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.as_deref(), Some(tag.as_str()), "{path}");
        assert!(body.is_empty(), "{path}: a 304 has no body");
        let (status, _, _, _) = get(path, Some("\"another\"")).await;
        assert_eq!(status, StatusCode::OK, "{path}: another tag");
    }

    let (_, tag, _, _) = get("/v1/availability/SKU-1", None).await;
    let tag = tag.expect("an ETag");
    // A movement changes the answer: a new tag, a 200.
    let (status, _) = server
        .admin(
            Method::PUT,
            "/v1/stock/S2/SKU-1",
            Some(json!({"on_hand": 6})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, moved, _, _) = get("/v1/availability/SKU-1", Some(&tag)).await;
    assert_eq!(status, StatusCode::OK);
    let moved = moved.expect("an ETag");
    assert_ne!(moved, tag);
    // So does a channel policy, which changes no position's version.
    let path = "/v1/availability/SKU-1?channel=web";
    let (_, before, _, _) = get(path, None).await;
    let before = before.expect("an ETag");
    let (status, _) = server
        .admin(
            Method::PUT,
            "/v1/policies",
            Some(json!({"channel": "web", "location": "S2", "held_back": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, after, _, _) = get(path, Some(&before)).await;
    assert_eq!(status, StatusCode::OK, "the web sees 2 units fewer at S2");
    assert_ne!(after.as_deref(), Some(before.as_str()));

    // A write's answer is private too.
    let response = server
        .http
        .post(format!("{}/v1/reservations", server.base))
        .bearer_auth(ADMIN)
        .json(&json!({"channel": "web", "ttl_seconds": 60,
            "lines": [{"sku": "SKU-1", "location": "S1", "qty": 1}]}))
        .send()
        .await
        .expect("reserve");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"private, no-store"[..])
    );
}
