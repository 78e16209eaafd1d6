//! The baseline a team would build instead (`--target redis-lua`): stock in
//! Redis hashes, a reservation as one Lua script (check every line, then
//! increment `reserved` on all of them, or on none; record the hold with its
//! deadline), commit/release/expiry as a second script, behind a minimal axum
//! service with the same routes and JSON as omnistock's. No authentication,
//! no channels, no policies, no journal, no idempotency: the baseline is
//! given every advantage, so the comparison flatters it, never omnistock.
//! Runs as its own process (`loadtest serve-redis-lua`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use redis::Script;
use redis::aio::MultiplexedConnection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::noop::ReserveBody;
use crate::dataset::unix_ms;

/// KEYS: positions (distinct); ARGV: now_ms, ttl_ms, qty per key.
/// Returns {"ok", id} or {"short", key, requested, available, ...}.
const RESERVE_LUA: &str = r#"
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local short = {'short'}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'on_hand', 'reserved')
  local available = (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)
  local qty = tonumber(ARGV[2 + i])
  if available < qty then
    short[#short + 1] = key
    short[#short + 1] = tostring(qty)
    short[#short + 1] = tostring(math.max(available, 0))
  end
end
if #short > 1 then return short end
local lines = {}
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'reserved', ARGV[2 + i])
  lines[#lines + 1] = key .. '\t' .. ARGV[2 + i]
end
local id = redis.call('INCR', 'seq:hold')
local deadline = now + ttl
redis.call('HSET', 'hold:' .. id, 'state', 'held', 'lines', table.concat(lines, '\n'), 'deadline', deadline)
redis.call('ZADD', 'holds:deadline', deadline, id)
return {'ok', tostring(id)}
"#;

/// Shared by resolve and sweep: returns units of a held hold.
const RESOLVE_FN: &str = r#"
local function resolve(id, action)
  local hk = 'hold:' .. id
  local state = redis.call('HGET', hk, 'state')
  if not state then return -1 end
  if state ~= 'held' then return 0 end
  for line in string.gmatch(redis.call('HGET', hk, 'lines'), '[^\n]+') do
    local key, qty = string.match(line, '^(.*)\t(%d+)$')
    redis.call('HINCRBY', key, 'reserved', -tonumber(qty))
    if action == 'commit' then redis.call('HINCRBY', key, 'on_hand', -tonumber(qty)) end
  end
  local states = {commit = 'committed', release = 'released', expire = 'expired'}
  redis.call('HSET', hk, 'state', states[action])
  redis.call('EXPIRE', hk, 86400)
  redis.call('ZREM', 'holds:deadline', id)
  return 1
end
"#;

/// ARGV: id, action (commit|release), now_ms. 1 done, 0 not held, -1 unknown, 2 expired.
const RESOLVE_LUA: &str = r#"
local deadline = tonumber(redis.call('HGET', 'hold:' .. ARGV[1], 'deadline'))
if deadline and tonumber(ARGV[3]) >= deadline then
  local r = resolve(ARGV[1], 'expire')
  if r == 1 then return 2 end
  return r
end
return resolve(ARGV[1], ARGV[2])
"#;

/// ARGV: now_ms, limit. Expires due holds; returns how many.
const SWEEP_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', 'holds:deadline', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do resolve(id, 'expire') end
return #due
"#;

const SWEEP_LIMIT: usize = 1_000;

struct App {
    redis: MultiplexedConnection,
    reserve: Script,
    resolve: Script,
}

fn position_key(location: &str, sku: &str) -> String {
    format!("pos:{location}/{sku}")
}

fn split_key(key: &str) -> (&str, &str) {
    key.strip_prefix("pos:")
        .and_then(|k| k.split_once('/'))
        .unwrap_or(("", key))
}

fn problem(status: StatusCode, code: &str, detail: String) -> Response {
    (
        status,
        Json(json!({"type": "about:blank", "title": code, "status": status.as_u16(), "code": code, "detail": detail})),
    )
        .into_response()
}

fn redis_error(e: redis::RedisError) -> Response {
    problem(StatusCode::SERVICE_UNAVAILABLE, "redis", e.to_string())
}

async fn reserve(State(app): State<Arc<App>>, Json(body): Json<ReserveBody>) -> Response {
    if body.lines.is_empty() || body.lines.len() > 100 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_lines",
            "1 to 100 lines".into(),
        );
    }
    if !(1..=604_800).contains(&body.ttl_seconds) || body.lines.iter().any(|l| l.qty == 0) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "ttl or qty out of range".into(),
        );
    }
    // Lines on the same position are summed before the check.
    let mut keys: Vec<(String, u64)> = Vec::with_capacity(body.lines.len());
    for line in &body.lines {
        let key = position_key(&line.location, &line.sku);
        match keys.iter_mut().find(|(k, _)| *k == key) {
            Some((_, qty)) => *qty += u64::from(line.qty),
            None => keys.push((key, u64::from(line.qty))),
        }
    }
    let now = unix_ms();
    let ttl_ms = body.ttl_seconds * 1000;
    let mut invocation = app.reserve.prepare_invoke();
    invocation.arg(now).arg(ttl_ms);
    for (key, qty) in &keys {
        invocation.key(key).arg(*qty);
    }
    let mut con = app.redis.clone();
    let answer: Vec<String> = match invocation.invoke_async(&mut con).await {
        Ok(answer) => answer,
        Err(e) => return redis_error(e),
    };
    match answer.first().map(String::as_str) {
        Some("ok") => {
            let id = answer.get(1).cloned().unwrap_or_default();
            (
                StatusCode::CREATED,
                Json(json!({"id": id, "state": "held", "channel": body.channel,
                    "expires_at": now + ttl_ms, "lines": body.lines})),
            )
                .into_response()
        }
        _ => {
            let shortfalls: Vec<Value> = answer[1..]
                .chunks(3)
                .map(|c| {
                    let (location, sku) = split_key(&c[0]);
                    json!({"sku": sku, "location": location,
                        "requested": c.get(1).and_then(|q| q.parse::<u64>().ok()),
                        "available": c.get(2).and_then(|q| q.parse::<u64>().ok())})
                })
                .collect();
            (
                StatusCode::CONFLICT,
                Json(
                    json!({"type": "about:blank", "title": "Insufficient stock", "status": 409,
                    "code": "insufficient_stock", "shortfalls": shortfalls}),
                ),
            )
                .into_response()
        }
    }
}

async fn resolve(app: &App, id: &str, action: &str, state: &str) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such reservation".into(),
        );
    };
    let mut con = app.redis.clone();
    let result: i64 = match app
        .resolve
        .arg(id)
        .arg(action)
        .arg(unix_ms())
        .invoke_async(&mut con)
        .await
    {
        Ok(result) => result,
        Err(e) => return redis_error(e),
    };
    match result {
        1 => (
            StatusCode::OK,
            Json(json!({"id": id.to_string(), "state": state})),
        )
            .into_response(),
        -1 => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such reservation".into(),
        ),
        2 => problem(
            StatusCode::CONFLICT,
            "reservation_expired",
            "expired".into(),
        ),
        _ => problem(StatusCode::CONFLICT, "not_held", "already resolved".into()),
    }
}

async fn commit(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    resolve(&app, &id, "commit", "committed").await
}

async fn release(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    resolve(&app, &id, "release", "released").await
}

#[derive(Deserialize)]
struct ImportRow {
    sku: String,
    location: String,
    on_hand: u64,
}

/// Absolute counts, NDJSON (seeding only: no `as_of` re-application).
async fn import(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let mut pipe = redis::pipe();
    let (mut rows, mut failed) = (0u64, 0u64);
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        rows += 1;
        match serde_json::from_slice::<ImportRow>(line) {
            Ok(row) => {
                let key = position_key(&row.location, &row.sku);
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg("on_hand")
                    .arg(row.on_hand)
                    .ignore();
                pipe.cmd("HSETNX").arg(&key).arg("reserved").arg(0).ignore();
            }
            Err(_) => failed += 1,
        }
    }
    let mut con = app.redis.clone();
    if let Err(e) = pipe.query_async::<()>(&mut con).await {
        return redis_error(e);
    }
    Json(json!({"rows": rows, "applied": rows - failed, "failed": failed, "errors": [], "errors_truncated": false}))
        .into_response()
}

async fn read_positions(
    app: &App,
    items: &[(String, String)],
) -> Result<Vec<Value>, redis::RedisError> {
    let mut pipe = redis::pipe();
    for (sku, location) in items {
        pipe.cmd("HMGET")
            .arg(position_key(location, sku))
            .arg("on_hand")
            .arg("reserved");
    }
    let mut con = app.redis.clone();
    let values: Vec<(Option<i64>, Option<i64>)> = pipe.query_async(&mut con).await?;
    Ok(items
        .iter()
        .zip(values)
        .map(|((sku, location), (on_hand, reserved))| match on_hand {
            None => json!({"sku": sku, "location": location, "code": "not_found", "detail": "no such position"}),
            Some(on_hand) => {
                let reserved = reserved.unwrap_or(0);
                json!({"sku": sku, "location": location, "on_hand": on_hand, "reserved": reserved,
                    "safety_stock": 0, "atf": (on_hand - reserved).max(0), "ato": (on_hand - reserved).max(0), "version": 0})
            }
        })
        .collect())
}

#[derive(Deserialize)]
struct BatchBody {
    items: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    sku: String,
    location: String,
}

async fn batch(State(app): State<Arc<App>>, Json(body): Json<BatchBody>) -> Response {
    let items: Vec<(String, String)> = body
        .items
        .into_iter()
        .map(|i| (i.sku, i.location))
        .collect();
    match read_positions(&app, &items).await {
        Ok(results) => Json(json!({"results": results})).into_response(),
        Err(e) => redis_error(e),
    }
}

async fn position(
    State(app): State<Arc<App>>,
    Path((location, sku)): Path<(String, String)>,
) -> Response {
    match read_positions(&app, &[(sku, location)]).await {
        Ok(mut results) => Json(results.pop().unwrap_or(Value::Null)).into_response(),
        Err(e) => redis_error(e),
    }
}

async fn scan(
    con: &mut MultiplexedConnection,
    pattern: &str,
) -> Result<Vec<String>, redis::RedisError> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The same invariants as omnistock's audit: nothing oversold, and
/// `reserved` equal to the sum of held holds at every position (not on a
/// consistent cut: run it when the load has stopped).
async fn audit(State(app): State<Arc<App>>) -> Response {
    let mut con = app.redis.clone();
    let result: Result<Value, redis::RedisError> = async {
        let positions = scan(&mut con, "pos:*").await?;
        let holds = scan(&mut con, "hold:*").await?;
        let mut pipe = redis::pipe();
        for hold in &holds {
            pipe.cmd("HMGET").arg(hold).arg("state").arg("lines");
        }
        let hold_values: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut con).await?;
        let mut held: std::collections::HashMap<String, i64> = Default::default();
        let mut held_count = 0u64;
        for (state, lines) in hold_values {
            if state.as_deref() != Some("held") {
                continue;
            }
            held_count += 1;
            for line in lines.unwrap_or_default().lines() {
                if let Some((key, qty)) = line.rsplit_once('\t') {
                    *held.entry(key.to_string()).or_default() += qty.parse::<i64>().unwrap_or(0);
                }
            }
        }
        let mut pipe = redis::pipe();
        for key in &positions {
            pipe.cmd("HMGET").arg(key).arg("on_hand").arg("reserved");
        }
        let values: Vec<(Option<i64>, Option<i64>)> = pipe.query_async(&mut con).await?;
        let mut violation = None;
        for (key, (on_hand, reserved)) in positions.iter().zip(values) {
            let (on_hand, reserved) = (on_hand.unwrap_or(0), reserved.unwrap_or(0));
            let expected = held.get(key).copied().unwrap_or(0);
            if on_hand < 0 || reserved < 0 || reserved > on_hand {
                violation = Some(format!("{key}: on_hand {on_hand}, reserved {reserved}"));
            } else if reserved != expected {
                violation = Some(format!(
                    "{key}: reserved {reserved}, held lines sum to {expected}"
                ));
            }
            if violation.is_some() {
                break;
            }
        }
        Ok(json!({"ok": violation.is_none(), "violation": violation,
            "positions": positions.len(), "held_reservations": held_count}))
    }
    .await;
    match result {
        Ok(report) => Json(report).into_response(),
        Err(e) => redis_error(e),
    }
}

async fn sweep(redis: MultiplexedConnection, script: Script) {
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    loop {
        ticker.tick().await;
        loop {
            let mut con = redis.clone();
            let expired: Result<usize, _> = script
                .arg(unix_ms())
                .arg(SWEEP_LIMIT)
                .invoke_async(&mut con)
                .await;
            match expired {
                Ok(n) if n == SWEEP_LIMIT => continue,
                Ok(_) => break,
                Err(e) => {
                    eprintln!("redis-lua sweep: {e}");
                    break;
                }
            }
        }
    }
}

pub async fn serve(listen: SocketAddr, redis_url: &str) -> Result<(), String> {
    let client = redis::Client::open(redis_url).map_err(|e| e.to_string())?;
    // The crate's default response timeout (500 ms) is shorter than a queue of
    // Lua calls on a loaded machine, or than the audit's full scan: wait like
    // omnistock's store does (its command timeout is 2 s; the audit needs more).
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let redis = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("cannot reach Redis at {redis_url}: {e}"))?;
    let app = Arc::new(App {
        redis: redis.clone(),
        reserve: Script::new(RESERVE_LUA),
        resolve: Script::new(&format!("{RESOLVE_FN}{RESOLVE_LUA}")),
    });
    tokio::spawn(sweep(
        redis,
        Script::new(&format!("{RESOLVE_FN}{SWEEP_LUA}")),
    ));
    let ok = || async { StatusCode::OK };
    let router = Router::new()
        .route("/v1/reservations", post(reserve))
        .route("/v1/reservations/{id}/commit", post(commit))
        .route("/v1/reservations/{id}/release", post(release))
        .route("/v1/stock/import", post(import))
        .route("/v1/stock/{location}/{sku}", get(position))
        .route("/v1/availability/batch", post(batch))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/locations/{location}", put(ok))
        .route("/v1/groups/{group}", put(ok))
        .route("/readyz", get(|| async { "ready" }))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("redis-lua target on {listen}, Redis at {redis_url}");
    axum::serve(listener, router)
        .await
        .map_err(|e| e.to_string())
}
