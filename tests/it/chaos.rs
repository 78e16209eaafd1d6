//! Chaos soak: the real engine (`omnistock serve --durability sync`) behind
//! a fault-injecting TCP proxy in front of a real, persistent Redis (AOF,
//! fsync always), under concurrent channels: web checkout (reserve, then
//! commit or release; some carts abandoned with a 1 s TTL), POS sales and
//! returns, ERP counts (compare-and-set) and receipts, and a feed poller
//! that also reads availability.
//!
//! A fault injector, in a loop: SIGKILLs the engine and restarts it (under
//! load), kills Redis and restarts it from its AOF, and switches the proxy
//! to added latency (some above the Redis command timeout), dropped
//! connections, or connections reset mid-pipeline (part of a chunk
//! forwarded, then RST). After every fault, with the workload paused and the
//! engine caught up, and at the end:
//!
//! - zero oversold units: the audit (ledger invariants on a consistent cut)
//!   is ok, no position has more reserved than on hand (counts are
//!   compare-and-set with `on_hand >= reserved`, so a shortage can only be a
//!   bug), and every position's ATF is `max(0, on_hand - reserved - safety)`;
//! - reserved == the sum of active holds (the audit, and the store's held
//!   reservations are exactly the ones clients hold acknowledgements for);
//! - every acknowledged write survived: each is retried with its
//!   `Idempotency-Key` and must replay the identical answer (a lost write
//!   would run again and answer differently), and every acknowledged
//!   reservation is there in the state the client last got acknowledged;
//! - Redis equals the engine: positions field by field, and reservations.
//!
//! Clients retry an unanswered or 503 write with the same key until they get
//! a definitive answer, as a real channel would. Any other 5xx, an
//! unexpected status, or a failed check is a violation. The run prints the
//! counts; violations must be 0.
//!
//! Duration: `CHAOS_SECONDS` (default 20). Longer by hand:
//! `CHAOS_SECONDS=600 cargo test --release --test it chaos:: -- --nocapture`.
//! `CHAOS_SEED` fixes the fault schedule and the workload's choices.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omnistock::clock::now;
use omnistock::store::Store;
use omnistock::store::redis::{RedisConfig, RedisStore};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::proxy::{ChaosProxy, ProxyMode};
use support::rng::Rng;
use support::{ADMIN, EngineProcess, RedisServer, free_port};

const SKUS: usize = 10;
const LOCATIONS: [&str; 3] = ["S1", "S2", "WH"];
const STORES: [&str; 2] = ["S1", "S2"];
const START_ON_HAND: u32 = 30;
const CHECKOUT_WORKERS: usize = 3;
const POS_WORKERS: usize = 2;
/// checkout + POS + ERP + feed poller.
const WORKERS: usize = CHECKOUT_WORKERS + POS_WORKERS + 2;
/// Longest a client keeps retrying one request before calling it a violation.
const GIVE_UP: Duration = Duration::from_secs(90);

// ---------- the workload's SKUs ----------

/// Hot SKUs (the first three) get most of the traffic.
fn hot_sku(rng: &mut Rng) -> String {
    let index = if rng.chance(60) {
        rng.below(3)
    } else {
        rng.below(SKUS as u64)
    };
    format!("C-{index}")
}

// ---------- what the clients were told ----------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Held,
    Committed,
    Released,
    /// An abandoned cart with a 1 s TTL: held until it expires.
    HeldOrExpired,
}

impl Expect {
    fn allows(self, state: &str) -> bool {
        match self {
            Expect::Held => state == "held",
            Expect::Committed => state == "committed",
            Expect::Released => state == "released",
            Expect::HeldOrExpired => state == "held" || state == "expired",
        }
    }
}

/// (sku, location, qty)
type Line = (String, String, u32);

struct Tracked {
    lines: Vec<Line>,
    expect: Expect,
    /// Changed since the last checkpoint (read back through the API).
    touched: bool,
}

/// An acknowledged write, replayed with its key at the next checkpoint.
struct Acked {
    method: Method,
    path: String,
    body: Value,
    key: String,
    status: StatusCode,
    response: Value,
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    retries: AtomicU64,
    acked: AtomicU64,
    reserved: AtomicU64,
    refused: AtomicU64,
    committed: AtomicU64,
    released: AtomicU64,
    sales: AtomicU64,
    returns: AtomicU64,
    counts: AtomicU64,
    receipts: AtomicU64,
    feed_polls: AtomicU64,
    reads: AtomicU64,
    /// Acknowledged writes replayed with their key and found identical.
    replays_checked: AtomicU64,
    /// Acknowledged reservations found as acknowledged (API and store).
    reservations_checked: AtomicU64,
    checkpoints: AtomicU64,
}

struct World {
    base: String,
    http: Client,
    pause: AtomicBool,
    parked: AtomicUsize,
    stop: AtomicBool,
    reservations: Mutex<BTreeMap<u64, Tracked>>,
    acked: Mutex<Vec<Acked>>,
    counters: Counters,
    violations: Mutex<Vec<String>>,
    /// When the last abandoned cart (1 s TTL) was acknowledged: checkpoints
    /// wait until it has expired, so nothing changes while they compare.
    last_abandoned: Mutex<Option<Instant>>,
}

enum Outcome {
    Done(StatusCode, Value),
    /// No answer, or 503 / 429: the write may or may not have happened.
    Unsure(String),
}

impl World {
    fn violation(&self, mut what: String) {
        if what.len() > 2_000 {
            let mut cut = 2_000;
            while !what.is_char_boundary(cut) {
                cut -= 1;
            }
            what.truncate(cut);
            what.push_str("...");
        }
        eprintln!("VIOLATION: {what}");
        self.violations.lock().expect("violations").push(what);
    }

    async fn park_if_paused(&self) {
        if !self.pause.load(Ordering::Acquire) {
            return;
        }
        self.parked.fetch_add(1, Ordering::AcqRel);
        while self.pause.load(Ordering::Acquire) && !self.stop.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.parked.fetch_sub(1, Ordering::AcqRel);
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Outcome {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Outcome::Unsure(format!("{e}")),
        };
        let status = response.status();
        let Ok(text) = response.text().await else {
            return Outcome::Unsure("body cut".into());
        };
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            return Outcome::Unsure(format!("{status} {}", value["code"]));
        }
        if status.is_server_error() {
            self.violation(format!("{method} {path}: {status} {text}"));
        }
        Outcome::Done(status, value)
    }

    /// Retries (with the same key) until a definitive answer.
    async fn definitive(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Option<(StatusCode, Value)> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.send(&method, path, body, key).await {
                Outcome::Done(status, value) => {
                    self.counters.ops.fetch_add(1, Ordering::Relaxed);
                    return Some((status, value));
                }
                Outcome::Unsure(why) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    if started.elapsed() > GIVE_UP {
                        self.violation(format!(
                            "{method} {path} (key {key:?}): no definitive answer in {GIVE_UP:?}: {why}"
                        ));
                        return None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// A write with a key; a 2xx is recorded for the replay check.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: Value,
        key: String,
    ) -> Option<(StatusCode, Value)> {
        let (status, response) = self
            .definitive(method.clone(), path, Some(&body), Some(&key))
            .await?;
        if status.is_success() {
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
            self.acked.lock().expect("acked").push(Acked {
                method,
                path: path.to_owned(),
                body,
                key,
                status,
                response: response.clone(),
            });
        }
        Some((status, response))
    }

    fn expect_code(&self, what: &str, status: StatusCode, body: &Value, allowed: &[&str]) {
        let code = body["code"].as_str().unwrap_or("");
        if !allowed.contains(&code) {
            self.violation(format!(
                "{what}: unexpected {status} {body} (allowed: {allowed:?})"
            ));
        }
    }
}

/// A position as served must not be oversold.
fn check_position(world: &World, what: &str, p: &Value) {
    let (Some(on_hand), Some(reserved), Some(safety), Some(atf)) = (
        p["on_hand"].as_u64(),
        p["reserved"].as_u64(),
        p["safety_stock"].as_u64(),
        p["atf"].as_u64(),
    ) else {
        world.violation(format!("{what}: not a position: {p}"));
        return;
    };
    if reserved > on_hand {
        world.violation(format!("{what}: oversold, reserved > on_hand: {p}"));
    }
    if atf != on_hand.saturating_sub(reserved + safety) {
        world.violation(format!(
            "{what}: atf is not on_hand - reserved - safety: {p}"
        ));
    }
}

// ---------- the channels ----------

async fn checkout(world: Arc<World>, worker: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut open: Vec<u64> = Vec::new();
    let mut n = 0u64;
    while !world.stop.load(Ordering::Acquire) {
        world.park_if_paused().await;
        if world.stop.load(Ordering::Acquire) {
            break;
        }
        n += 1;
        let key = format!("co-{seed:x}-{worker}-{n}");
        if !open.is_empty() && (open.len() >= 3 || rng.chance(50)) {
            let id = open.swap_remove(rng.below(open.len() as u64) as usize);
            let commit = rng.chance(60);
            let action = if commit { "commit" } else { "release" };
            let path = format!("/v1/reservations/{id}/{action}");
            let Some((status, body)) = world.write(Method::POST, &path, json!({}), key).await
            else {
                continue;
            };
            let want = if commit { "committed" } else { "released" };
            if status == StatusCode::OK && body["state"] == want {
                let counter = if commit {
                    &world.counters.committed
                } else {
                    &world.counters.released
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(tracked) = world.reservations.lock().expect("lock").get_mut(&id) {
                    tracked.expect = if commit {
                        Expect::Committed
                    } else {
                        Expect::Released
                    };
                    tracked.touched = true;
                }
            } else {
                world.violation(format!(
                    "{action} of acknowledged reservation {id}: {status} {body}"
                ));
            }
            continue;
        }
        let mut lines: Vec<Line> = Vec::new();
        for _ in 0..if rng.chance(20) { 2 } else { 1 } {
            let (sku, location) = (hot_sku(&mut rng), rng.pick(&LOCATIONS).to_owned());
            if !lines.iter().any(|(s, l, _)| *s == sku && *l == location) {
                lines.push((sku, location, rng.range(1, 3) as u32));
            }
        }
        let abandoned = rng.chance(8);
        let body = json!({
            "channel": "web",
            "lines": lines.iter().map(|(s, l, q)| json!({"sku": s, "location": l, "qty": q})).collect::<Vec<_>>(),
            "ttl_seconds": if abandoned { 1 } else { 3600 },
        });
        let Some((status, response)) = world
            .write(Method::POST, "/v1/reservations", body, key)
            .await
        else {
            continue;
        };
        match status {
            StatusCode::CREATED => {
                world.counters.reserved.fetch_add(1, Ordering::Relaxed);
                let Some(id) = response["id"]
                    .as_str()
                    .and_then(|id| id.parse::<u64>().ok())
                else {
                    world.violation(format!("reservation without an id: {response}"));
                    continue;
                };
                if response["state"] != "held" {
                    world.violation(format!("new reservation not held: {response}"));
                }
                let expect = if abandoned {
                    *world.last_abandoned.lock().expect("lock") = Some(Instant::now());
                    Expect::HeldOrExpired
                } else {
                    open.push(id);
                    Expect::Held
                };
                let previous = world.reservations.lock().expect("lock").insert(
                    id,
                    Tracked {
                        lines,
                        expect,
                        touched: true,
                    },
                );
                if previous.is_some() {
                    world.violation(format!("reservation id {id} handed out twice"));
                }
            }
            StatusCode::CONFLICT => {
                world.counters.refused.fetch_add(1, Ordering::Relaxed);
                world.expect_code("reserve", status, &response, &["insufficient_stock"]);
            }
            _ => world.violation(format!("reserve: {status} {response}")),
        }
    }
}

async fn pos(world: Arc<World>, worker: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !world.stop.load(Ordering::Acquire) {
        world.park_if_paused().await;
        if world.stop.load(Ordering::Acquire) {
            break;
        }
        n += 1;
        let key = format!("pos-{seed:x}-{worker}-{n}");
        let (sku, store) = (hot_sku(&mut rng), rng.pick(&STORES));
        if rng.chance(10) {
            let body = json!({"channel": "pos", "sku": sku, "location": store, "qty": 1, "reason": "customer return"});
            let Some((status, response)) =
                world.write(Method::POST, "/v1/returns", body, key).await
            else {
                continue;
            };
            if status == StatusCode::OK {
                world.counters.returns.fetch_add(1, Ordering::Relaxed);
                check_position(&world, "return", &response);
            } else {
                world.violation(format!("return: {status} {response}"));
            }
        } else {
            let qty = rng.range(1, 2);
            let body =
                json!({"channel": "pos", "lines": [{"sku": sku, "location": store, "qty": qty}]});
            let Some((status, response)) = world.write(Method::POST, "/v1/sales", body, key).await
            else {
                continue;
            };
            match status {
                StatusCode::OK => {
                    world.counters.sales.fetch_add(1, Ordering::Relaxed);
                    for p in response["positions"].as_array().into_iter().flatten() {
                        check_position(&world, "sale", p);
                    }
                }
                StatusCode::CONFLICT => {
                    world.counters.refused.fetch_add(1, Ordering::Relaxed);
                    world.expect_code("sale", status, &response, &["insufficient_stock"]);
                }
                _ => world.violation(format!("sale: {status} {response}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(0, 5))).await;
    }
}

async fn erp(world: Arc<World>, seed: u64) {
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !world.stop.load(Ordering::Acquire) {
        world.park_if_paused().await;
        if world.stop.load(Ordering::Acquire) {
            break;
        }
        n += 1;
        let key = format!("erp-{seed:x}-{n}");
        let (sku, location) = (hot_sku(&mut rng), rng.pick(&LOCATIONS));
        let path = format!("/v1/stock/{location}/{sku}");
        if rng.chance(60) {
            // A count never below what is reserved, and only if nothing
            // moved since it was read (compare-and-set).
            let Some((status, position)) = world.definitive(Method::GET, &path, None, None).await
            else {
                continue;
            };
            world.counters.reads.fetch_add(1, Ordering::Relaxed);
            if status != StatusCode::OK {
                world.violation(format!("GET {path}: {status} {position}"));
                continue;
            }
            let reserved = position["reserved"].as_u64().unwrap_or(0);
            let body = json!({
                "on_hand": reserved + rng.range(5, 40),
                "expected_version": position["version"],
            });
            let Some((status, response)) = world.write(Method::PUT, &path, body, key).await else {
                continue;
            };
            match status {
                StatusCode::OK => {
                    world.counters.counts.fetch_add(1, Ordering::Relaxed);
                    check_position(&world, "count", &response);
                }
                StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => {
                    world.expect_code(
                        "count",
                        status,
                        &response,
                        &["stale_version", "stale_count"],
                    );
                }
                _ => world.violation(format!("count: {status} {response}")),
            }
        } else {
            let body = json!({"sku": sku, "location": location, "qty": rng.range(5, 20), "reference": format!("ASN-{n}")});
            let Some((status, response)) =
                world.write(Method::POST, "/v1/receipts", body, key).await
            else {
                continue;
            };
            if status == StatusCode::OK {
                world.counters.receipts.fetch_add(1, Ordering::Relaxed);
                check_position(&world, "receipt", &response);
            } else {
                world.violation(format!("receipt: {status} {response}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(10, 30))).await;
    }
}

/// A feed cursor's lineage and sequence. Clients treat cursors as opaque;
/// the soak looks inside to check that a store's lineage never changes and
/// its sequences only grow, across restarts too.
fn cursor_parts(cursor: &str) -> Option<(String, u64)> {
    let mut parts = cursor.strip_prefix("c1.")?.split('.');
    let lineage = parts.next()?.to_owned();
    let seq = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((lineage, seq))
}

async fn feed_poller(world: Arc<World>, seed: u64) {
    let mut rng = Rng(seed);
    let mut cursor: Option<String> = None;
    while !world.stop.load(Ordering::Acquire) {
        world.park_if_paused().await;
        if world.stop.load(Ordering::Acquire) {
            break;
        }
        if rng.chance(50) {
            let sku = hot_sku(&mut rng);
            let path = format!("/v1/availability/{sku}");
            if let Some((status, body)) = world.definitive(Method::GET, &path, None, None).await {
                world.counters.reads.fetch_add(1, Ordering::Relaxed);
                if status != StatusCode::OK {
                    world.violation(format!("GET {path}: {status} {body}"));
                }
                for p in body["locations"].as_array().into_iter().flatten() {
                    check_position(&world, "availability", p);
                }
            }
        } else {
            let url = match &cursor {
                Some(cursor) => format!(
                    "{}/v1/feeds/google/local-inventory?since={cursor}",
                    world.base
                ),
                None => format!("{}/v1/feeds/google/local-inventory", world.base),
            };
            let Ok(response) = world.http.get(&url).bearer_auth(ADMIN).send().await else {
                world.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let status = response.status();
            let header = |name: &str| crate::support::header(&response, name);
            let next = header("x-next-cursor");
            let snapshot = header("x-feed-snapshot");
            let Ok(text) = response.text().await else {
                continue;
            };
            if status == StatusCode::SERVICE_UNAVAILABLE {
                world.counters.retries.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            world.counters.ops.fetch_add(1, Ordering::Relaxed);
            world.counters.feed_polls.fetch_add(1, Ordering::Relaxed);
            if status != StatusCode::OK {
                world.violation(format!("feed: {status} {text}"));
                continue;
            }
            let mut rows = text.lines();
            if rows.next().map(|h| h.split('\t').next()) != Some(Some("store_code")) {
                world.violation(format!("feed without its header: {text:.200}"));
            }
            for row in rows {
                let columns: Vec<&str> = row.split('\t').collect();
                let quantity_ok = columns.get(3).is_some_and(|q| q.parse::<u32>().is_ok());
                if columns.len() < 4 || !quantity_ok || !STORES.contains(&columns[0]) {
                    world.violation(format!("feed row malformed: {row:?}"));
                }
            }
            if !matches!(snapshot.as_deref(), Some("full" | "incremental")) {
                world.violation(format!("feed without X-Feed-Snapshot: {snapshot:?}"));
            }
            // One store, one lineage; its sequences only grow, across
            // restarts too.
            let before = cursor.as_deref().and_then(cursor_parts);
            match (before, next.as_deref().and_then(cursor_parts)) {
                (None, Some(_)) => cursor = next,
                (Some((lineage, seq)), Some((next_lineage, next_seq)))
                    if next_lineage == lineage && next_seq >= seq =>
                {
                    cursor = next
                }
                _ => world.violation(format!("feed cursor went from {cursor:?} to {next:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(20, 60))).await;
    }
}

// ---------- checkpoints ----------

async fn readyz(world: &World) -> Option<Value> {
    let response = world
        .http
        .get(format!("{}/readyz", world.base))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// Ready, and the write-behind has nothing left to write.
async fn caught_up(world: &World) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    loop {
        if let Some(ready) = readyz(world).await {
            let idle =
                |r: &Value| r["status"] == "ready" && r["write_behind"]["backlog_items"] == 0;
            if idle(&ready) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if readyz(world).await.is_some_and(|r| idle(&r)) {
                    return;
                }
            }
            last = ready;
        }
        assert!(
            Instant::now() < deadline,
            "the engine never caught up with Redis: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pause_workers(world: &World) {
    world.pause.store(true, Ordering::Release);
    let deadline = Instant::now() + GIVE_UP + Duration::from_secs(30);
    while world.parked.load(Ordering::Acquire) < WORKERS {
        assert!(
            Instant::now() < deadline,
            "workers did not pause ({} of {WORKERS} parked)",
            world.parked.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every acknowledged write since the last checkpoint, sent again with its
/// key: the engine must replay the same answer (a lost write would run
/// again: a new reservation id, a new version, or a refusal).
async fn replay_acknowledged(world: &Arc<World>) {
    let acked = std::mem::take(&mut *world.acked.lock().expect("acked"));
    let chunks: Vec<Vec<Acked>> = {
        let mut chunks: Vec<Vec<Acked>> = (0..8).map(|_| Vec::new()).collect();
        for (i, a) in acked.into_iter().enumerate() {
            chunks[i % 8].push(a);
        }
        chunks
    };
    let mut tasks = Vec::new();
    for chunk in chunks {
        let world = Arc::clone(world);
        tasks.push(tokio::spawn(async move {
            for a in chunk {
                let Some((status, response)) = world
                    .definitive(a.method.clone(), &a.path, Some(&a.body), Some(&a.key))
                    .await
                else {
                    continue;
                };
                if status != a.status || response != a.response {
                    world.violation(format!(
                        "acknowledged {} {} (key {}) not replayed: was {} {}, now {} {}",
                        a.method, a.path, a.key, a.status, a.response, status, response
                    ));
                } else {
                    world
                        .counters
                        .replays_checked
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("replay task");
    }
}

type PositionKey = (String, String);

/// Every position as the engine serves it, checked for oversell.
async fn engine_positions(world: &World) -> BTreeMap<PositionKey, Value> {
    let mut positions = BTreeMap::new();
    for sku in 0..SKUS {
        let path = format!("/v1/availability/C-{sku}");
        let Some((status, body)) = world.definitive(Method::GET, &path, None, None).await else {
            continue;
        };
        if status != StatusCode::OK {
            world.violation(format!("GET {path}: {status} {body}"));
            continue;
        }
        for p in body["locations"].as_array().into_iter().flatten() {
            check_position(world, "checkpoint", p);
            let key = (
                p["sku"].as_str().unwrap_or("").to_owned(),
                p["location"].as_str().unwrap_or("").to_owned(),
            );
            positions.insert(key, p.clone());
        }
    }
    positions
}

async fn checkpoint(world: &Arc<World>, redis_url: &str, every_reservation: bool, label: &str) {
    let started = Instant::now();
    replay_acknowledged(world).await;
    let abandoned = *world.last_abandoned.lock().expect("lock");
    if let Some(at) = abandoned {
        // Past its 1 s TTL and swept (every 10 ms).
        let quiet = at + Duration::from_millis(1_300);
        tokio::time::sleep(quiet.saturating_duration_since(Instant::now())).await;
    }
    caught_up(world).await;

    // The ledger's invariants on a consistent cut.
    let audit = match world
        .definitive(Method::GET, "/v1/admin/audit", None, None)
        .await
    {
        Some((StatusCode::OK, audit)) => audit,
        other => {
            world.violation(format!("{label}: audit: {other:?}"));
            Value::Null
        }
    };
    if audit["ok"] != true || audit["positions_short"] != 0 {
        world.violation(format!("{label}: audit: {audit}"));
    }
    let positions = engine_positions(world).await;
    if positions.len() != SKUS * LOCATIONS.len() {
        world.violation(format!("{label}: {} positions served", positions.len()));
    }

    // Redis, read the way the engine reads it at start, equals the engine.
    let store = RedisStore::new(RedisConfig::new(redis_url)).expect("store");
    let restore = match store.load(now()).await {
        Ok(Some(loaded)) => loaded.restore,
        other => {
            world.violation(format!(
                "{label}: cannot load Redis: {:?}",
                other.map(|o| o.is_some())
            ));
            return;
        }
    };
    if restore.positions.len() != positions.len() {
        world.violation(format!(
            "{label}: Redis holds {} positions, the engine {}",
            restore.positions.len(),
            positions.len()
        ));
    }
    for record in &restore.positions {
        let key = (record.sku.to_string(), record.location.to_string());
        let stored = json!({
            "on_hand": record.on_hand.0, "reserved": record.reserved.0,
            "safety_stock": record.safety_stock.0, "version": record.version.0,
        });
        let served = positions.get(&key).map(|p| {
            json!({"on_hand": p["on_hand"], "reserved": p["reserved"],
                   "safety_stock": p["safety_stock"], "version": p["version"]})
        });
        if served.as_ref() != Some(&stored) {
            world.violation(format!(
                "{label}: Redis {key:?} = {stored}, engine = {served:?}"
            ));
        }
    }
    let stored_reservations: BTreeMap<u64, (&'static str, Vec<Line>)> = restore
        .reservations
        .iter()
        .map(|r| {
            (
                r.id.0,
                (
                    r.state.as_str(),
                    r.lines
                        .iter()
                        .map(|l| (l.sku.to_string(), l.location.to_string(), l.qty.0))
                        .collect(),
                ),
            )
        })
        .collect();
    let held_in_redis: BTreeSet<u64> = stored_reservations
        .iter()
        .filter(|(_, (state, _))| *state == "held")
        .map(|(id, _)| *id)
        .collect();
    if audit["held_reservations"].as_u64() != Some(held_in_redis.len() as u64) {
        world.violation(format!(
            "{label}: engine holds {} reservations, Redis {}",
            audit["held_reservations"],
            held_in_redis.len()
        ));
    }

    // Every acknowledged reservation, in the state last acknowledged: in
    // Redis, and through the API (those changed since the last checkpoint,
    // or all of them at the end).
    let mut to_read = Vec::new();
    {
        let mut tracked = world.reservations.lock().expect("lock");
        for id in &held_in_redis {
            if !tracked.contains_key(id) {
                world.violation(format!(
                    "{label}: Redis holds reservation {id} that no client got acknowledged (doubled?)"
                ));
            }
        }
        for (id, t) in tracked.iter_mut() {
            match stored_reservations.get(id) {
                Some((state, lines)) if t.expect.allows(state) && *lines == t.lines => {
                    world
                        .counters
                        .reservations_checked
                        .fetch_add(1, Ordering::Relaxed);
                }
                other => world.violation(format!(
                    "{label}: acknowledged reservation {id} ({:?}, {:?}) in Redis: {other:?}",
                    t.expect, t.lines
                )),
            }
            if t.touched || every_reservation {
                to_read.push((*id, t.expect, t.lines.clone()));
            }
            t.touched = false;
        }
    }
    for (id, expect, lines) in to_read {
        let path = format!("/v1/reservations/{id}");
        match world.definitive(Method::GET, &path, None, None).await {
            Some((StatusCode::OK, body)) => {
                let served: Vec<Line> = body["lines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        (
                            l["sku"].as_str().unwrap_or("").to_owned(),
                            l["location"].as_str().unwrap_or("").to_owned(),
                            l["qty"].as_u64().unwrap_or(0) as u32,
                        )
                    })
                    .collect();
                if expect.allows(body["state"].as_str().unwrap_or("")) && served == lines {
                    world
                        .counters
                        .reservations_checked
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    world.violation(format!(
                        "{label}: acknowledged reservation {id} ({expect:?}) served as {body}"
                    ));
                }
            }
            other => world.violation(format!(
                "{label}: acknowledged reservation {id} ({expect:?}): {other:?}"
            )),
        }
    }
    world.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    println!(
        "checkpoint after {label}: ok in {} ms ({} held, {} positions)",
        started.elapsed().as_millis(),
        held_in_redis.len(),
        positions.len()
    );
}

// ---------- faults ----------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    EngineKill,
    RedisKill,
    ProxyLatency,
    ProxyDrop,
    ProxyReset,
    /// SIGKILL, then the restart loads from Redis through a proxy that
    /// drops, resets or stalls connections for a while.
    EngineRestartThroughFaults,
}

const FAULTS: [Fault; 6] = [
    Fault::EngineKill,
    Fault::RedisKill,
    Fault::ProxyLatency,
    Fault::ProxyDrop,
    Fault::ProxyReset,
    Fault::EngineRestartThroughFaults,
];

struct Rig {
    engine: Arc<Mutex<EngineProcess>>,
    redis: Arc<Mutex<RedisServer>>,
    proxy: ChaosProxy,
    engine_port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl Rig {
    async fn restart_engine(&self) {
        let (engine, args, port, log) = (
            Arc::clone(&self.engine),
            self.args.clone(),
            self.engine_port,
            self.log.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut engine = engine.lock().expect("engine");
            engine.kill9();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            *engine = EngineProcess::start_on(port, &args, Some(&log));
        })
        .await
        .expect("engine restart");
    }

    async fn inject(&self, fault: Fault, rng: &mut Rng) -> String {
        match fault {
            Fault::EngineKill => {
                self.restart_engine().await;
                "SIGKILL engine, restarted".into()
            }
            Fault::RedisKill => {
                let down = Duration::from_millis(rng.range(200, 900));
                let redis = Arc::clone(&self.redis);
                tokio::task::spawn_blocking(move || {
                    redis.lock().expect("redis").kill();
                    std::thread::sleep(down);
                    redis.lock().expect("redis").restart();
                })
                .await
                .expect("redis restart");
                format!("SIGKILL Redis, down {down:?}, restarted from its AOF")
            }
            Fault::ProxyLatency => {
                let delay = Duration::from_millis([2, 20, 100, 400, 1_500][rng.below(5) as usize]);
                let window = Duration::from_millis(rng.range(800, 2_000));
                self.proxy.set_mode(ProxyMode::Latency(delay));
                tokio::time::sleep(window).await;
                self.proxy.set_mode(ProxyMode::Pass);
                format!("proxy latency {delay:?} per chunk for {window:?}")
            }
            Fault::ProxyDrop => {
                let window = Duration::from_millis(rng.range(200, 1_000));
                self.proxy.set_mode(ProxyMode::Drop);
                tokio::time::sleep(window).await;
                self.proxy.set_mode(ProxyMode::Pass);
                format!("proxy drops connections for {window:?}")
            }
            Fault::EngineRestartThroughFaults => {
                let mode = [
                    ProxyMode::Drop,
                    ProxyMode::Reset,
                    ProxyMode::Latency(Duration::from_millis(1_500)),
                ][rng.below(3) as usize];
                let window = Duration::from_millis(rng.range(300, 1_500));
                let (engine, args, port, log) = (
                    Arc::clone(&self.engine),
                    self.args.clone(),
                    self.engine_port,
                    self.log.clone(),
                );
                self.proxy.set_mode(mode);
                tokio::task::spawn_blocking(move || {
                    let mut engine = engine.lock().expect("engine");
                    engine.kill9();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    *engine = EngineProcess::spawn_on(port, &args, Some(&log));
                })
                .await
                .expect("engine spawn");
                tokio::time::sleep(window).await;
                self.proxy.set_mode(ProxyMode::Pass);
                let engine = Arc::clone(&self.engine);
                tokio::task::spawn_blocking(move || {
                    engine
                        .lock()
                        .expect("engine")
                        .wait_ready(Duration::from_secs(60));
                })
                .await
                .expect("engine ready");
                format!("SIGKILL engine, restarted loading through proxy {mode:?} for {window:?}")
            }
            Fault::ProxyReset => {
                let window = Duration::from_millis(rng.range(300, 1_500));
                self.proxy.set_mode(ProxyMode::Reset);
                tokio::time::sleep(window).await;
                self.proxy.set_mode(ProxyMode::Pass);
                format!("proxy resets connections mid-stream for {window:?}")
            }
        }
    }
}

async fn seed_catalog(world: &World) {
    for location in LOCATIONS {
        let kind = if location == "WH" {
            "warehouse"
        } else {
            "store"
        };
        let body = json!({"kind": kind, "name": location, "lat": 48.85, "lon": 2.35,
                          "pickup": {"method": "buy", "sla": "same day"}});
        let got = world
            .write(
                Method::PUT,
                &format!("/v1/locations/{location}"),
                body,
                format!("seed-{location}"),
            )
            .await;
        assert!(got.as_ref().is_some_and(|(s, _)| s.is_success()), "{got:?}");
        for sku in 0..SKUS {
            let got = world
                .write(
                    Method::PUT,
                    &format!("/v1/stock/{location}/C-{sku}"),
                    json!({"on_hand": START_ON_HAND}),
                    format!("seed-{location}-{sku}"),
                )
                .await;
            assert!(got.as_ref().is_some_and(|(s, _)| s.is_success()), "{got:?}");
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_keeps_every_promise() {
    let _serial = support::serial().await;
    let seconds = env_u64("CHAOS_SECONDS").unwrap_or(20);
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
    });
    // `async` only to see the checks fail: async mode may lose what it
    // acknowledged in the last flush interval before a SIGKILL.
    let durability = std::env::var("CHAOS_DURABILITY").unwrap_or_else(|_| "sync".into());
    println!("chaos soak: CHAOS_SECONDS={seconds} CHAOS_SEED={seed} CHAOS_DURABILITY={durability}");
    let mut rng = Rng(seed);

    let redis = RedisServer::start_persistent();
    let redis_url = redis.url();
    let proxy = ChaosProxy::start(redis.port);
    let engine_port = free_port();
    let log = std::env::temp_dir().join(format!("omnistock-chaos-{}.log", std::process::id()));
    let args: Vec<String> = [
        "--redis-url",
        &proxy.url(),
        "--durability",
        &durability,
        "--rate-limit-per-second",
        "0",
        "--redis-timeout-ms",
        "1000",
        "--sync-wait-timeout-ms",
        "3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let engine = {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        EngineProcess::start_on(engine_port, &args, Some(&log))
    };
    println!("engine log: {}", log.display());
    let rig = Rig {
        engine: Arc::new(Mutex::new(engine)),
        redis: Arc::new(Mutex::new(redis)),
        proxy,
        engine_port,
        args,
        log: log.clone(),
    };
    let world = Arc::new(World {
        base: format!("http://127.0.0.1:{engine_port}"),
        http: Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client"),
        pause: AtomicBool::new(false),
        parked: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        reservations: Mutex::new(BTreeMap::new()),
        acked: Mutex::new(Vec::new()),
        counters: Counters::default(),
        violations: Mutex::new(Vec::new()),
        last_abandoned: Mutex::new(None),
    });
    seed_catalog(&world).await;

    let mut workers = Vec::new();
    for w in 0..CHECKOUT_WORKERS {
        workers.push(tokio::spawn(checkout(Arc::clone(&world), w, rng.next())));
    }
    for w in 0..POS_WORKERS {
        workers.push(tokio::spawn(pos(Arc::clone(&world), w, rng.next())));
    }
    workers.push(tokio::spawn(erp(Arc::clone(&world), rng.next())));
    workers.push(tokio::spawn(feed_poller(Arc::clone(&world), rng.next())));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut faults: BTreeMap<Fault, u64> = BTreeMap::new();
    let mut order = FAULTS;
    let mut round = 0;
    while Instant::now() < deadline || round < FAULTS.len() {
        if round % FAULTS.len() == 0 {
            // Every kind once per cycle, in a seeded order.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = order[round % FAULTS.len()];
        round += 1;
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1_200))).await;
        let what = rig.inject(fault, &mut rng).await;
        *faults.entry(fault).or_default() += 1;
        println!("fault {round}: {what}");
        pause_workers(&world).await;
        checkpoint(
            &world,
            &redis_url,
            false,
            &format!("fault {round} ({fault:?})"),
        )
        .await;
        world.pause.store(false, Ordering::Release);
    }

    // The end: stop the channels, a last full check, then once more after a
    // SIGKILL at rest (the engine restarted from Redis alone).
    world.stop.store(true, Ordering::Release);
    world.pause.store(false, Ordering::Release);
    for worker in workers {
        worker.await.expect("worker");
    }
    checkpoint(&world, &redis_url, true, "the run").await;
    let stable = |positions: BTreeMap<PositionKey, Value>| -> BTreeMap<PositionKey, Value> {
        positions
            .into_iter()
            .map(|(k, p)| {
                let fields = ["on_hand", "reserved", "safety_stock", "atf", "version"];
                (
                    k,
                    fields
                        .iter()
                        .map(|f| (f.to_string(), p[f].clone()))
                        .collect(),
                )
            })
            .collect()
    };
    let before = stable(engine_positions(&world).await);
    rig.restart_engine().await;
    *faults.entry(Fault::EngineKill).or_default() += 1;
    checkpoint(&world, &redis_url, true, "a SIGKILL at rest").await;
    let after = stable(engine_positions(&world).await);
    for (key, was) in &before {
        if after.get(key) != Some(was) {
            world.violation(format!(
                "{key:?} changed across a SIGKILL at rest: {was} -> {:?}",
                after.get(key)
            ));
        }
    }

    let c = &world.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let violations = world.violations.lock().expect("violations").clone();
    let stats = rig.proxy.stats();
    let fault_list: Vec<String> = faults.iter().map(|(k, v)| format!("{k:?} {v}")).collect();
    println!(
        "chaos soak: {} s, seed {seed}; faults injected {} ({}; proxy: {} connections, {} dropped, {} reset ({} cutting a chunk), {} chunks delayed); \
         operations {} (reservations {}, refused {}, commits {}, releases {}, sales {}, returns {}, counts {}, receipts {}, feed polls {}, reads {}; retries {}); \
         acknowledged writes {}; acknowledged writes checked {} (replayed with their key {}, reservations found as acknowledged {}); checkpoints {}; violations {}",
        started.elapsed().as_secs(),
        faults.values().sum::<u64>(),
        fault_list.join(", "),
        stats.connections,
        stats.dropped,
        stats.reset,
        stats.cut_mid_chunk,
        stats.delayed_chunks,
        load(&c.ops),
        load(&c.reserved),
        load(&c.refused),
        load(&c.committed),
        load(&c.released),
        load(&c.sales),
        load(&c.returns),
        load(&c.counts),
        load(&c.receipts),
        load(&c.feed_polls),
        load(&c.reads),
        load(&c.retries),
        load(&c.acked),
        load(&c.replays_checked) + load(&c.reservations_checked),
        load(&c.replays_checked),
        load(&c.reservations_checked),
        load(&c.checkpoints),
        violations.len(),
    );
    assert!(
        violations.is_empty(),
        "{} violations (engine log: {}):\n{}",
        violations.len(),
        log.display(),
        violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for kind in FAULTS {
        assert!(
            faults.get(&kind).copied().unwrap_or(0) > 0,
            "{kind:?} never injected"
        );
    }
    assert!(
        load(&c.reserved) > 50 && load(&c.sales) > 10,
        "too little load"
    );
    assert!(load(&c.replays_checked) > 50, "too few writes checked");
    let _ = std::fs::remove_file(&log);
}
