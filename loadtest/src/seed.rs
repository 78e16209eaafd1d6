//! Creates the run's data set through the API, as a retailer's systems would:
//! locations (PUT), the store group, one POS key per store, then every
//! position's initial count with the streamed NDJSON import.

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde_json::Value;

use crate::dataset::{DataSet, STORE_GROUP};
use crate::http_client::{Call, Conn, Reply, bearer};
use crate::targets::Target;

const IMPORT_CHUNK_ROWS: usize = 10_000;

async fn expect_ok(conn: &mut Conn, call: Call<'_>, what: &str) -> Result<Reply, String> {
    let reply = conn
        .call(call)
        .await
        .map_err(|e| format!("seeding {what}: {e}"))?;
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

/// Every position's initial count, by streamed imports of `IMPORT_CHUNK_ROWS` rows.
async fn seed_counts(
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
        let reply = expect_ok(conn, call, "the initial counts").await?;
        let report: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("seeding the initial counts: {e}"))?;
        if report["applied"].as_u64() != Some(chunk.len() as u64) {
            return Err(format!("seeding the initial counts: {report}"));
        }
    }
    Ok(())
}

/// Seeds `data`; returns the POS keys (one per store; empty unless omnistock).
pub async fn seed(
    conn: &mut Conn,
    data: &DataSet,
    target: Target,
    admin: &HeaderValue,
) -> Result<Vec<HeaderValue>, String> {
    let key = Some(admin);
    seed_locations(conn, data, key).await?;
    let pos_keys = if target.is_omnistock() {
        seed_pos_keys(conn, data, key).await?
    } else {
        Vec::new()
    };
    seed_counts(conn, data, key).await?;
    Ok(pos_keys)
}
