//! Creates the run's data set through the API, as a retailer's systems would:
//! locations (PUT), the store group, one POS key per store, then every
//! position's initial count with the streamed NDJSON import.
//!
//! On a cluster (`omnistock serve --cluster`) seeding goes through the first
//! node as on a single one: the catalog and keys are shared, and the import
//! sends each row to its SKU's partition. The counts wait until every node
//! lists every location (see `wait_for_catalog`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde_json::Value;

use crate::dataset::{DataSet, STORE_GROUP};
use crate::http_client::{Call, Conn, Endpoints, Reply, bearer};
use crate::targets::Target;

const IMPORT_CHUNK_ROWS: usize = 10_000;
/// How long the nodes get to list the shared catalog (they poll it every
/// ~250 ms; the rest is slack for a loaded machine).
const CATALOG_WAIT: Duration = Duration::from_secs(15);
/// One poll period of the shared catalog: see `wait_for_catalog`.
const CATALOG_POLL: Duration = Duration::from_millis(300);

async fn expect_ok(conn: &mut Conn, call: Call<'_>, what: &str) -> Result<Reply, String> {
    let reply = conn
        .call(call)
        .await
        .map_err(|e| format!("seeding {what}: {e}"))?;
    ok_or_error(reply, what)
}

fn ok_or_error(reply: Reply, what: &str) -> Result<Reply, String> {
    if !reply.status.is_success() {
        return Err(format!(
            "seeding {what}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
        ));
    }
    Ok(reply)
}

/// Every location (PUT), then the store group.
async fn seed_locations(
    conn: &mut Conn,
    data: &DataSet,
    key: Option<&HeaderValue>,
) -> Result<(), String> {
    for (i, location) in data.locations.iter().enumerate() {
        let body = if location.store {
            format!(
                r#"{{"kind":"store","name":"Loadtest store {i}","lat":{},"lon":{},"pickup":{{"method":"buy","sla":"same day"}},"ship_from_store":true}}"#,
                location.lat, location.lon
            )
        } else {
            format!(r#"{{"kind":"warehouse","name":"Loadtest warehouse {i}"}}"#)
        };
        let path = format!("/v1/locations/{}", location.code);
        expect_ok(conn, Call::json(Method::PUT, &path, key, body), &path).await?;
    }
    let stores: Vec<String> = data
        .store_codes()
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    if !stores.is_empty() {
        let path = format!("/v1/groups/{STORE_GROUP}");
        let body = format!(r#"{{"locations":[{}]}}"#, stores.join(","));
        expect_ok(conn, Call::json(Method::PUT, &path, key, body), &path).await?;
    }
    Ok(())
}

/// One POS key per store, limited to it.
async fn seed_pos_keys(
    conn: &mut Conn,
    data: &DataSet,
    key: Option<&HeaderValue>,
) -> Result<Vec<HeaderValue>, String> {
    let mut pos_keys = Vec::new();
    for code in data.store_codes() {
        let body = format!(
            r#"{{"name":"loadtest till {code}","scopes":["read","pos"],"locations":["{code}"]}}"#
        );
        let reply = expect_ok(
            conn,
            Call::json(Method::POST, "/v1/keys", key, body),
            "a POS key",
        )
        .await?;
        let created: Value =
            serde_json::from_slice(&reply.body).map_err(|e| format!("seeding a POS key: {e}"))?;
        let secret = created["key"]
            .as_str()
            .ok_or("seeding a POS key: no key in the answer")?;
        pos_keys.push(bearer(secret)?);
    }
    Ok(pos_keys)
}

/// Every node lists every location of the data set (`GET /v1/locations`).
/// The catalog was written through the first node; the others take it from
/// the shared store within ~250 ms, and a count that reaches a node that has
/// not yet (an import row sent on to its partition's node, a request of the
/// run) would find an unknown location.
async fn wait_for_catalog(
    nodes: &Endpoints,
    data: &DataSet,
    key: &HeaderValue,
) -> Result<(), String> {
    let started = Instant::now();
    for endpoint in nodes.all() {
        let mut conn = Conn::new(endpoint.clone(), Duration::from_secs(10));
        loop {
            let reply = expect_ok(
                &mut conn,
                Call::get("/v1/locations", Some(key)),
                "the catalog",
            )
            .await?;
            let listed: Value = serde_json::from_slice(&reply.body)
                .map_err(|e| format!("seeding: the locations of {}: {e}", endpoint.base))?;
            let codes: Vec<&str> = listed
                .as_array()
                .map(|all| all.iter().filter_map(|l| l["code"].as_str()).collect())
                .unwrap_or_default();
            if data
                .locations
                .iter()
                .all(|l| codes.contains(&l.code.as_str()))
            {
                break;
            }
            if started.elapsed() > CATALOG_WAIT {
                return Err(format!(
                    "seeding: {} does not list every location after {} s (is it a node of the same cluster?)",
                    endpoint.base,
                    CATALOG_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The store group was written after the last location: a node that read
    // the shared catalog between the two lists every location but not the
    // group yet. One more poll period and it has both.
    tokio::time::sleep(CATALOG_POLL).await;
    Ok(())
}

/// Every position's initial count, by streamed imports of `IMPORT_CHUNK_ROWS`
/// rows. Any failure (a refused request, a row not applied) is an error.
async fn import_counts(
    conn: &mut Conn,
    data: &DataSet,
    key: Option<&HeaderValue>,
) -> Result<(), String> {
    let positions: Vec<usize> = (0..data.positions()).collect();
    for chunk in positions.chunks(IMPORT_CHUNK_ROWS) {
        let mut body = String::with_capacity(chunk.len() * 64);
        for position in chunk {
            let (sku, location) = data.codes(*position);
            body.push_str(&format!(
                r#"{{"sku":"{sku}","location":"{location}","on_hand":{}}}"#,
                data.initial[*position]
            ));
            body.push('\n');
        }
        let call = Call {
            method: Method::POST,
            path: "/v1/stock/import",
            body: Some(("application/x-ndjson", Bytes::from(body))),
            key,
        };
        let reply = conn
            .call(call)
            .await
            .map_err(|e| format!("seeding the initial counts: {e}"))?;
        let reply = ok_or_error(reply, "the initial counts")?;
        let report: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("seeding the initial counts: {e}"))?;
        if report["applied"].as_u64() != Some(chunk.len() as u64) {
            return Err(format!("seeding the initial counts: {report}"));
        }
    }
    Ok(())
}

/// What seeding did.
pub struct Seeded {
    /// One per store; empty unless omnistock.
    pub pos_keys: Vec<HeaderValue>,
}

/// Seeds `data` through `conn` (the first node): the catalog, the keys, then
/// the counts by import. On a cluster (more than one node in `nodes`), the
/// counts wait until every node lists the catalog.
pub async fn seed(
    conn: &mut Conn,
    nodes: &Endpoints,
    data: &DataSet,
    target: Target,
    admin: &HeaderValue,
) -> Result<Seeded, String> {
    let key = Some(admin);
    seed_locations(conn, data, key).await?;
    if nodes.all().len() > 1 {
        wait_for_catalog(nodes, data, admin).await?;
    }
    let pos_keys = if target.is_omnistock() {
        seed_pos_keys(conn, data, key).await?
    } else {
        Vec::new()
    };
    import_counts(conn, data, key).await?;
    Ok(Seeded { pos_keys })
}
