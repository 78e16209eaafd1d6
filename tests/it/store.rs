//! The Redis write-behind store against a real `redis-server` started by the
//! tests: round trip, Redis killed and restarted under load (empty, and with
//! its data), and retried or reordered batches.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use omnistock::clock::now;
use omnistock::ledger::{
    Acting, Changes, CountRequest, Cut, Fingerprint, Ledger, LedgerConfig, Line, Location,
    LocationCode, LocationKind, PositionRecord, Qty, ReservationRecord, ReserveRequest, Restore,
    Seq, Sku,
};
use omnistock::server::config::{Durability, ServeConfig};
use omnistock::store::redis::{RedisConfig, RedisStore};
use omnistock::store::{Batch, Store, codec};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::engine::{Running, start_engine};
use support::{ADMIN, RedisServer};

struct Engine {
    running: Running,
    base: String,
    http: Client,
}

impl Engine {
    async fn start(redis_url: &str, durability: Durability) -> Engine {
        let config = ServeConfig {
            redis_url: Some(redis_url.into()),
            durability,
            rate_limit_per_second: 0,
            ..ServeConfig::default()
        };
        let mut running = start_engine(config, ADMIN).await;
        running
            .wait_ready(Duration::from_secs(30))
            .await
            .expect("loads the store");
        Engine {
            base: format!("http://{}", running.addr),
            running,
            http: Client::new(),
        }
    }

    fn ledger(&self) -> &Ledger {
        self.running.state.ledger()
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(ADMIN, method, path, body, None).await
    }

    async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, body) = self.call(method, path, Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn readyz(&self) -> Value {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json")
    }

    /// Waits until every change is written (backlog 0, healthy).
    async fn caught_up(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.readyz().await;
            if ready["status"] == "ready" && ready["write_behind"]["backlog_items"] == 0 {
                // One more interval so the latest round is certainly written.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let again = self.readyz().await;
                if again["write_behind"]["backlog_items"] == 0 && again["status"] == "ready" {
                    return again;
                }
            }
            assert!(Instant::now() < deadline, "never caught up: {ready}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn positions_by_key(records: &[PositionRecord]) -> BTreeMap<(Sku, LocationCode), PositionRecord> {
    records
        .iter()
        .map(|p| ((p.sku.clone(), p.location.clone()), p.clone()))
        .collect()
}

/// Reservations without their store version (which only orders writes).
fn reservations_by_id(records: &[ReservationRecord]) -> BTreeMap<u64, ReservationRecord> {
    records
        .iter()
        .map(|r| {
            (
                r.id.0,
                ReservationRecord {
                    version: Seq(0),
                    ..r.clone()
                },
            )
        })
        .collect()
}

/// What Redis holds, read the way the engine reads it at start.
async fn stored(redis_url: &str) -> Restore {
    let store = RedisStore::new(RedisConfig::new(redis_url)).expect("store");
    store
        .load(now())
        .await
        .expect("load")
        .expect("store not empty")
        .restore
}

fn assert_store_equals_ledger(stored: &Restore, ledger: &Cut) {
    let (in_store, in_memory) = (
        positions_by_key(&stored.positions),
        positions_by_key(&ledger.positions),
    );
    assert_eq!(in_store.len(), in_memory.len(), "position count");
    for (key, position) in &in_memory {
        assert_eq!(in_store.get(key), Some(position), "position {key:?}");
    }
    assert_eq!(
        reservations_by_id(&stored.reservations),
        reservations_by_id(&ledger.reservations),
        "reservations"
    );
    assert_eq!(stored.catalog.as_ref(), Some(&ledger.catalog), "catalog");
}

async fn seed(engine: &Engine, skus: usize, units: u32) {
    for store in ["S1", "S2"] {
        engine
            .ok(
                Method::PUT,
                &format!("/v1/locations/{store}"),
                json!({"kind": "store", "name": format!("Store {store}"), "lat": 48.85, "lon": 2.35,
                       "pickup": {"method": "buy", "sla": "same day"}}),
            )
            .await;
        for sku in 0..skus {
            engine
                .ok(
                    Method::PUT,
                    &format!("/v1/stock/{store}/SKU-{sku}"),
                    json!({"on_hand": units}),
                )
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_restores_every_position_reservation_and_key() {
    let redis = RedisServer::start();
    let engine = Engine::start(&redis.url(), Durability::Async).await;
    seed(&engine, 5, 100).await;
    engine
        .ok(
            Method::PUT,
            "/v1/locations/WH",
            json!({"kind": "warehouse", "name": "Lille | DC; 1"}),
        )
        .await;
    engine
        .ok(
            Method::PUT,
            "/v1/groups/paris",
            json!({"locations": ["S1", "S2"]}),
        )
        .await;
    engine
        .ok(
            Method::PUT,
            "/v1/policies",
            json!({"channel": "ads", "group": "paris", "held_back": 2}),
        )
        .await;
    engine
        .ok(
            Method::PUT,
            "/v1/stock/WH/SKU-0",
            json!({"on_hand": 40, "safety_stock": 3}),
        )
        .await;
    engine
        .ok(
            Method::POST,
            "/v1/incoming",
            json!({"sku": "SKU-1", "location": "S1", "qty": 5, "expected_at": "2030-01-01T00:00:00Z", "reference": "PO|1"}),
        )
        .await;
    let reserve = |sku: &str, qty: u32| json!({"channel": "web", "lines": [{"sku": sku, "location": "S1", "qty": qty}, {"sku": "SKU-2", "location": "S2", "qty": 1}], "ttl_seconds": 900});
    let mut ids = Vec::new();
    for (i, action) in ["hold", "commit", "release", "partial", "hold"]
        .iter()
        .enumerate()
    {
        let (status, body) = engine
            .call_as(
                ADMIN,
                Method::POST,
                "/v1/reservations",
                Some(reserve(&format!("SKU-{i}"), 3)),
                Some(&format!("order-{i}")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        match *action {
            "commit" => {
                engine
                    .ok(
                        Method::POST,
                        &format!("/v1/reservations/{id}/commit"),
                        json!({}),
                    )
                    .await;
            }
            "release" => {
                engine
                    .ok(
                        Method::POST,
                        &format!("/v1/reservations/{id}/release"),
                        json!({}),
                    )
                    .await;
            }
            "partial" => {
                engine
                    .ok(
                        Method::POST,
                        &format!("/v1/reservations/{id}/commit"),
                        json!({"lines": [{"sku": format!("SKU-{i}"), "location": "S1", "qty": 2}]}),
                    )
                    .await;
            }
            _ => {}
        }
        ids.push(id);
    }
    engine
        .ok(
            Method::POST,
            "/v1/sales",
            json!({"channel": "pos", "lines": [{"sku": "SKU-4", "location": "S2", "qty": 2}]}),
        )
        .await;
    engine
        .ok(
            Method::POST,
            "/v1/adjustments",
            json!({"sku": "SKU-3", "location": "S2", "delta": -4, "reason": "damaged"}),
        )
        .await;
    let key = engine
        .ok(
            Method::POST,
            "/v1/keys",
            json!({"name": "storefront", "scopes": ["read"]}),
        )
        .await;
    let secret = key["key"].as_str().expect("secret").to_owned();
    let revoked = engine
        .ok(
            Method::POST,
            "/v1/keys",
            json!({"name": "old", "scopes": ["read"]}),
        )
        .await;
    let revoked_secret = revoked["key"].as_str().expect("secret").to_owned();
    let (status, _) = engine
        .call(
            Method::DELETE,
            &format!("/v1/keys/{}", revoked["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, keys_before) = engine.call(Method::GET, "/v1/keys", None).await;
    let head_before = engine.ledger().journal_head();
    let before = engine.ledger().export_all(now());

    engine.running.shutdown().await.expect("graceful stop");
    assert_store_equals_ledger(&stored(&redis.url()).await, &before);

    let engine = Engine::start(&redis.url(), Durability::Async).await;
    let after = engine.ledger().export_all(now());
    assert_eq!(
        positions_by_key(&after.positions),
        positions_by_key(&before.positions),
        "every position, field by field"
    );
    assert_eq!(
        reservations_by_id(&after.reservations),
        reservations_by_id(&before.reservations),
        "every reservation"
    );
    assert_eq!(after.catalog, before.catalog, "locations, groups, policies");
    let (_, keys_after) = engine.call(Method::GET, "/v1/keys", None).await;
    assert_eq!(keys_after, keys_before, "keys");
    let (status, _) = engine
        .call_as(&secret, Method::GET, "/v1/availability/SKU-1", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "a created key still works");
    let (status, _) = engine
        .call_as(
            &revoked_secret,
            Method::GET,
            "/v1/availability/SKU-1",
            None,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stays revoked"
    );

    // Idempotency survives: the retry gets the original reservation.
    let (status, body) = engine
        .call_as(
            ADMIN,
            Method::POST,
            "/v1/reservations",
            Some(reserve("SKU-0", 3)),
            Some("order-0"),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(body["id"], ids[0].as_str(), "replayed, not applied twice");
    // New ids and sequences never collide with the previous run's.
    let (status, body) = engine
        .call_as(
            ADMIN,
            Method::POST,
            "/v1/reservations",
            Some(reserve("SKU-0", 1)),
            Some("order-new"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!ids.contains(&body["id"].as_str().expect("id").to_owned()));
    assert!(engine.ledger().journal_head() > head_before);
    let (_, audit) = engine.call(Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(audit["ok"], true, "{audit}");
    engine.running.shutdown().await.expect("stop");
}

/// Drives reservations (and commits/releases) until `stop`; returns the
/// statuses seen. Any 5xx fails the caller's test.
async fn drive_load(base: String, clients: usize, duration: Duration) -> BTreeMap<u16, usize> {
    let http = Client::new();
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let http = http.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = BTreeMap::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let sku = format!("SKU-{}", (client as u64 + i) % 10);
                let response = http
                    .post(format!("{base}/v1/reservations"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"channel": "web", "lines": [{"sku": sku, "location": "S1", "qty": 1}], "ttl_seconds": 600}))
                    .send()
                    .await
                    .expect("the engine answers");
                let status = response.status();
                *statuses.entry(status.as_u16()).or_insert(0) += 1;
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status == StatusCode::CREATED && !i.is_multiple_of(3) {
                    let id = body["id"].as_str().unwrap_or_default();
                    let action = if i % 3 == 1 { "commit" } else { "release" };
                    let status = http
                        .post(format!("{base}/v1/reservations/{id}/{action}"))
                        .bearer_auth(ADMIN)
                        .json(&json!({}))
                        .send()
                        .await
                        .expect("the engine answers")
                        .status();
                    *statuses.entry(status.as_u16()).or_insert(0) += 1;
                }
            }
            statuses
        }));
    }
    let mut all = BTreeMap::new();
    for task in tasks {
        for (status, count) in task.await.expect("client") {
            *all.entry(status).or_insert(0) += count;
        }
    }
    all
}

async fn redis_restart_during_load(mut redis: RedisServer) {
    let engine = Engine::start(&redis.url(), Durability::Async).await;
    seed(&engine, 10, 1_000_000).await;
    engine.caught_up().await;
    let load = tokio::spawn(drive_load(
        engine.base.clone(),
        4,
        Duration::from_millis(2_500),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let degraded = engine.readyz().await;
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    assert!(
        degraded["write_behind"]["flush_errors"].as_u64() > Some(0),
        "{degraded}"
    );
    // Names only: the recorder is process-wide and other tests' engines run
    // in this process too, so values are not this engine's alone.
    let metrics = engine
        .http
        .get(format!("{}/metrics", engine.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "omnistock_store_degraded",
        "omnistock_write_behind_backlog_items",
        "omnistock_write_behind_flush_lag_seconds",
        "omnistock_write_behind_flush_errors_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    redis.restart();
    let statuses = load.await.expect("load");
    assert!(
        statuses.keys().all(|s| *s < 500),
        "the engine served throughout: {statuses:?}"
    );
    assert!(
        statuses.get(&201).copied().unwrap_or(0) > 50,
        "{statuses:?}"
    );
    let ready = engine.caught_up().await;
    assert!(
        ready["write_behind"]["full_rewrites"].as_u64() >= Some(2),
        "the restarted Redis got the full state: {ready}"
    );
    assert!(
        ready["write_behind"]["last_error"].is_null(),
        "no stale error once Redis is back: {ready}"
    );
    let in_memory = engine.ledger().export_all(now());
    assert_store_equals_ledger(&stored(&redis.url()).await, &in_memory);
    engine.running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_during_load_gets_the_full_state() {
    let _serial = support::serial().await;
    redis_restart_during_load(RedisServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_with_its_data_during_load_catches_up() {
    let _serial = support::serial().await;
    redis_restart_during_load(RedisServer::start_persistent()).await;
}

fn location(code: &str) -> Location {
    Location {
        code: LocationCode::new(code).expect("code"),
        kind: LocationKind::Store,
        name: code.into(),
        coords: None,
        pickup: None,
        ship_from_store: false,
    }
}

fn count(ledger: &Ledger, sku: &str, on_hand: u32) {
    ledger
        .count(
            &CountRequest {
                sku: Sku::new(sku).expect("sku"),
                location: LocationCode::new("S1").expect("loc"),
                on_hand: Qty(on_hand),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            now(),
            None,
        )
        .expect("count");
}

/// The idempotency record (hash, field, value) whose key ends with `suffix`.
async fn idempotency_record(redis_url: &str, suffix: &str) -> Option<(String, String, Vec<u8>)> {
    let client = redis::Client::open(redis_url).expect("client");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for bucket in 0..16 {
        let hash = format!("omnistock:{{i{bucket}}}:idem");
        let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&hash)
            .query_async(&mut redis)
            .await
            .expect("HGETALL");
        if let Some((field, value)) = entries.into_iter().find(|(f, _)| f.ends_with(suffix)) {
            return Some((hash, field, value));
        }
    }
    None
}

/// A store written by an engine before fingerprint version 2 holds legacy
/// records (a version-1 SipHash fingerprint): after the upgrade, their
/// retries still replay, a different request under their key is still
/// refused, and the records are written back with their own fingerprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_idempotency_records_replay_and_refuse_after_an_upgrade() {
    // The version-1 fingerprint of the ledger request `body` makes (web, one
    // line, 900 s, counted against customer cust-7), as engines before
    // version 2 computed it.
    const LEGACY_FINGERPRINT: u64 = 6_809_153_889_089_045_231;
    let mut redis_server = RedisServer::start();
    let engine = Engine::start(&redis_server.url(), Durability::Async).await;
    seed(&engine, 1, 100).await;
    let body = json!({"channel": "web", "lines": [{"sku": "SKU-0", "location": "S1", "qty": 2}],
                      "ttl_seconds": 900, "customer_id": "cust-7"});
    let (status, held) = engine
        .call_as(
            ADMIN,
            Method::POST,
            "/v1/reservations",
            Some(body.clone()),
            Some("order-legacy"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    engine.caught_up().await;
    engine.running.shutdown().await.expect("graceful stop");

    // What an engine before fingerprint version 2 would have stored: the
    // same record with the legacy fingerprint.
    let (hash, field, current) = idempotency_record(&redis_server.url(), ":order-legacy")
        .await
        .expect("the record is stored");
    let mut record = codec::decode_idempotency(&field, &current).expect("a record");
    assert!(
        matches!(record.fingerprint, Fingerprint::V2(_)),
        "new records are version 2: {:?}",
        record.fingerprint
    );
    record.fingerprint = Fingerprint::V1(LEGACY_FINGERPRINT);
    let legacy = codec::encode_idempotency(&record);
    let client = redis::Client::open(redis_server.url()).expect("client");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg(&field)
        .arg(&legacy)
        .query_async(&mut redis)
        .await
        .expect("HSET");

    let engine = Engine::start(&redis_server.url(), Durability::Async).await;
    let head = engine.ledger().journal_head();
    let (status, replayed) = engine
        .call_as(
            ADMIN,
            Method::POST,
            "/v1/reservations",
            Some(body.clone()),
            Some("order-legacy"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{replayed}");
    assert_eq!(replayed, held, "the original reservation, replayed");
    assert_eq!(engine.ledger().journal_head(), head, "nothing applied");
    let mut other = body.clone();
    other["lines"][0]["qty"] = json!(3);
    let (status, refused) = engine
        .call_as(
            ADMIN,
            Method::POST,
            "/v1/reservations",
            Some(other),
            Some("order-legacy"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["code"], "idempotency_key_reused");

    // Redis comes back empty: the full rewrite (the next write finds it)
    // writes the legacy record back as it was read.
    redis_server.restart();
    engine
        .ok(Method::PUT, "/v1/stock/S1/SKU-0", json!({"on_hand": 50}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let rewritten = loop {
        if let Some((_, _, value)) = idempotency_record(&redis_server.url(), ":order-legacy").await
        {
            break value;
        }
        assert!(Instant::now() < deadline, "never rewritten");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rewritten = codec::decode_idempotency(&field, &rewritten).expect("a record");
    assert_eq!(
        rewritten.fingerprint,
        Fingerprint::V1(LEGACY_FINGERPRINT),
        "the legacy fingerprint is written back as it was read"
    );
    engine.running.shutdown().await.expect("graceful stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_and_reordered_batches_never_roll_anything_back() {
    let redis = RedisServer::start();
    let store = RedisStore::new(RedisConfig::new(redis.url())).expect("store");
    let ledger = Ledger::new(LedgerConfig::default());
    let shards = ledger.config().reservation_shards;
    ledger.put_location(location("S1")).expect("location");
    count(&ledger, "A", 10);
    async fn write(store: &RedisStore, cut: &Cut, shards: usize) {
        let batch = Batch {
            cut,
            keys: None,
            now: now(),
            reservation_shards: shards,
            clean: false,
            catalog_changed: true,
        };
        store.write(&batch).await.expect("write");
    }
    write(&store, &ledger.export_all(now()), shards).await;

    let mut changes = Changes::new(&ledger, 1_000);
    let held = ledger
        .reserve(
            &ReserveRequest {
                caps: Vec::new(),
                channel: omnistock::ledger::Channel::Web,
                lines: vec![Line {
                    sku: Sku::new("A").expect("sku"),
                    location: LocationCode::new("S1").expect("loc"),
                    qty: Qty(4),
                }],
                ttl_ms: 60_000,
            },
            now(),
            None,
        )
        .expect("reserve");
    let older = ledger.cut(&mut changes, now());
    changes.written(&older);
    count(&ledger, "A", 7);
    ledger
        .commit(
            &omnistock::ledger::CommitRequest {
                id: held.id,
                lines: None,
            },
            Acting::Any,
            now(),
            None,
        )
        .expect("commit");
    let newer = ledger.cut(&mut changes, now());
    changes.written(&newer);
    assert!(older.head < newer.head);

    write(&store, &newer, shards).await;
    write(&store, &older, shards).await; // reordered: older after newer
    write(&store, &older, shards).await; // and retried
    let after_old = stored(&redis.url()).await;
    assert_store_equals_ledger(&after_old, &ledger.export_all(now()));
    let a = &after_old.positions[0];
    assert_eq!((a.on_hand, a.reserved), (Qty(3), Qty(0)), "{a:?}");
    assert_eq!(
        after_old.reservations[0].state,
        omnistock::ledger::ReservationState::Committed
    );
    write(&store, &newer, shards).await; // a retried newer batch is a no-op too
    assert_store_equals_ledger(&stored(&redis.url()).await, &ledger.export_all(now()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_loaded_and_sync_writes_answer_503_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.kill();
    // Redis is down at start: the engine waits for it, not ready, serving nothing.
    let config = ServeConfig {
        redis_url: Some(redis.url()),
        durability: Durability::Sync,
        rate_limit_per_second: 0,
        ..ServeConfig::default()
    };
    let mut running = start_engine(config, ADMIN).await;
    let base = format!("http://{}", running.addr);
    let http = Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "loading", "{body}");
    let response = http
        .get(format!("{base}/v1/availability/A"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_ready", "{body}");

    redis.restart();
    running
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("ready once Redis is up");
    let engine = Engine {
        base,
        running,
        http,
    };
    seed(&engine, 1, 100).await;
    engine.caught_up().await;

    // Redis goes away: a sync write is applied in memory but not acknowledged.
    redis.kill();
    let hold = json!({"channel": "web", "lines": [{"sku": "SKU-0", "location": "S1", "qty": 2}], "ttl_seconds": 600});
    let mut refused = None;
    for _ in 0..50 {
        let (status, body) = engine
            .call_as(
                ADMIN,
                Method::POST,
                "/v1/reservations",
                Some(hold.clone()),
                Some("cart-503"),
            )
            .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(body);
            break;
        }
        // The first attempt can only pass if Redis had not yet gone; the
        // key then replays, and the next one sees the store down.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = refused.expect("a sync write is refused while Redis is down");
    assert_eq!(refused["code"], "not_durable", "{refused}");
    let detail = refused["detail"].as_str().expect("detail");
    assert!(
        detail.matches("unavailable").count() <= 1,
        "says what failed once: {detail}"
    );
    assert!(!detail.contains("Some("), "{detail}");
    let ready = engine.readyz().await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    let error = ready["write_behind"]["last_error"]
        .as_str()
        .expect("last_error");
    assert!(
        error.contains("unavailable") && error.matches("unavailable").count() == 1,
        "{ready}"
    );
    let at = ready["write_behind"]["last_error_at"]
        .as_str()
        .expect("last_error_at");
    assert!(
        at.len() >= 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "RFC 3339: {at}"
    );

    // Redis is back (empty): the full state is rewritten, and the retry
    // with the same key gets the one reservation, acknowledged.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = engine
            .call_as(
                ADMIN,
                Method::POST,
                "/v1/reservations",
                Some(hold.clone()),
                Some("cart-503"),
            )
            .await;
        if status.is_success() || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.is_success(), "{status} {body}");
    let (_, position) = engine.call(Method::GET, "/v1/stock/S1/SKU-0", None).await;
    assert_eq!(position["reserved"], 2, "applied once: {position}");
    let id = body["id"].as_str().expect("id").to_owned();
    let ready = engine.caught_up().await;
    assert!(
        ready["write_behind"]["last_error"].is_null()
            && ready["write_behind"]["last_error_at"].is_null(),
        "no stale error once the store has recovered: {ready}"
    );
    assert!(
        ready["write_behind"]["flush_errors"].as_u64() > Some(0),
        "the failures stay counted: {ready}"
    );
    let stored = stored(&redis.url()).await;
    assert!(
        stored.reservations.iter().any(|r| r.id.0.to_string() == id),
        "the acknowledged reservation is in Redis"
    );
    engine.running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_aof_is_refused_clearly_when_redis_lacks_waitaof() {
    let redis = RedisServer::start_persistent();
    let config = ServeConfig {
        redis_url: Some(redis.url()),
        durability: Durability::Sync,
        wait_aof: true,
        ..ServeConfig::default()
    };
    let mut running = start_engine(config, ADMIN).await;
    let version = support::redis_version();
    let result = running.wait_ready(Duration::from_secs(30)).await;
    if version < (7, 2) {
        let error = result.expect_err("Redis < 7.2 has no WAITAOF");
        assert!(error.contains("WAITAOF"), "{error}");
    } else {
        result.expect("Redis >= 7.2 has WAITAOF");
    }
    running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_export_from_the_store_matches_the_served_feed() {
    let redis = RedisServer::start();
    let engine = Engine::start(&redis.url(), Durability::Async).await;
    seed(&engine, 20, 7).await;
    engine
        .ok(
            Method::POST,
            "/v1/reservations",
            json!({"channel": "web", "lines": [{"sku": "SKU-3", "location": "S1", "qty": 5}], "ttl_seconds": 600}),
        )
        .await;
    engine.caught_up().await;
    let served = |format: &'static str| {
        let http = engine.http.clone();
        let url = format!("{}/v1/feeds/{format}", engine.base);
        async move {
            http.get(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("feed")
                .text()
                .await
                .expect("body")
        }
    };
    let dir = std::env::temp_dir().join(format!("omnistock-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (kind, extra, route) in [
        ("google", None, "google/local-inventory"),
        ("google", Some("xml"), "google/local-inventory?format=xml"),
        ("meta", None, "meta/local-inventory"),
    ] {
        let out = dir.join(format!("{kind}-{}.feed", extra.unwrap_or("default")));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_omnistock"));
        command
            .args(["feed", kind, "--redis-url", &redis.url(), "--out"])
            .arg(&out);
        if let Some(format) = extra {
            command.args(["--format", format]);
        }
        let status = command.status().expect("the binary runs");
        assert!(status.success(), "{kind} {extra:?}: {status}");
        let written = std::fs::read_to_string(&out).expect("the file");
        let mut written: Vec<&str> = written.lines().collect();
        let body = served(route).await;
        let mut body: Vec<&str> = body.lines().collect();
        assert!(written.len() > 20, "{written:?}");
        // Same rows (shards are visited in the same order, but the store's
        // restore may place SKUs differently within a shard).
        written.sort_unstable();
        body.sort_unstable();
        assert_eq!(written, body, "{kind} {extra:?}");
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_omnistock"))
        .args([
            "feed",
            "meta",
            "--redis-url",
            &redis.url(),
            "--format",
            "xml",
            "--out",
        ])
        .arg(dir.join("x"))
        .status()
        .expect("runs");
    assert!(!status.success(), "a wrong format is refused");
    let _ = std::fs::remove_dir_all(&dir);
    engine.running.shutdown().await.expect("stop");
}
