//! The journal of every SKU of a cluster (one SKU's is its partition's,
//! routed there): each partition's journal read from where the client's
//! `cursor` left it, all at once, merged in time order, cut at `limit`.
//! `next_cursor` is every partition's next sequence (a movement of a
//! partition not taken this time is where that partition goes on), so
//! paging through it misses nothing and lists nothing twice; `lagged`
//! when any partition had dropped what was asked (a partition's journal
//! is kept in memory by the engine serving it: a move starts it afresh).

use axum::body::Bytes;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde_json::{Value, json};

use super::ClusterNode;
use super::dispatch::to_partition;
use super::forward::Envelope;
use super::spread::answer;
use crate::cursor::{ClusterCursor, Cursor};
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::ledger::Seq;
use omnistock_cluster::PartitionId;

/// `GET /v1/journal` without `?sku=` over every partition.
pub async fn journal(node: &ClusterNode, envelope: &Envelope) -> Response {
    if let Err(unauthorized) = super::status::authenticate(node, &envelope.headers) {
        return unauthorized.into_response();
    }
    let partitions: Vec<PartitionId> = node.partitions().all().collect();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(envelope.uri.query().unwrap_or("").as_bytes())
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
    let value = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = match value("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(limit)) if (1..=1_000).contains(&limit) => limit,
        Some(_) => {
            return ApiError::new(Code::InvalidLimit, "limit must be 1 to 1000").into_response();
        }
    };
    let from: Vec<Option<u64>> = match value("cursor").map(str::parse::<ClusterCursor>) {
        None => vec![None; partitions.len()],
        Some(Ok(cursor)) if cursor.0.len() == partitions.len() => {
            cursor.0.iter().map(|c| Some(c.seq.0)).collect()
        }
        Some(_) => {
            let detail =
                "cursor: pass the `next_cursor` a previous page of this cluster's journal gave";
            return ApiError::new(Code::InvalidCursor, detail).into_response();
        }
    };
    let others: Vec<&(String, String)> = query.iter().filter(|(n, _)| n != "cursor").collect();
    let reads: Vec<Envelope> = from
        .iter()
        .map(|since| {
            let mut params = form_urlencoded::Serializer::new(String::new());
            params.extend_pairs(others.iter().map(|(n, v)| (n, v)));
            if let Some(since) = since {
                params.append_pair("since", &since.to_string());
            }
            let uri = format!("/v1/journal?{}", params.finish());
            Envelope {
                uri: uri
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("/v1/journal")),
                body: Bytes::new(),
                ..envelope.clone()
            }
        })
        .collect();
    let reading = partitions
        .iter()
        .zip(&reads)
        .map(|(p, e)| answer(to_partition(node, *p, e)));
    let mut pages = Vec::with_capacity(partitions.len());
    for page in join_all(reading).await {
        match page {
            Ok(page) => pages.push(page),
            Err(problem) => return problem.to_response(),
        }
    }
    axum::Json(merge(pages, &from, limit)).into_response()
}

/// The first `limit` movements of every partition's page, in time order,
/// and where each partition goes on.
fn merge(pages: Vec<Value>, from: &[Option<u64>], limit: usize) -> Value {
    let lagged = pages.iter().any(|p| p["lagged"] == json!(true));
    let mut all: Vec<(usize, Value)> = Vec::new();
    for (index, mut page) in pages.iter().cloned().enumerate() {
        if let Some(Value::Array(movements)) = page.get_mut("movements").map(Value::take) {
            all.extend(movements.into_iter().map(|m| (index, m)));
        }
    }
    all.sort_by(|(a_index, a), (b_index, b)| {
        let key = |m: &Value| m["at"].as_str().unwrap_or("").to_owned();
        key(a)
            .cmp(&key(b))
            .then(a_index.cmp(b_index))
            .then(a["seq"].as_u64().cmp(&b["seq"].as_u64()))
    });
    let left = all.split_off(all.len().min(limit));
    let next: Vec<Cursor> = pages
        .iter()
        .enumerate()
        .map(|(index, page)| {
            // The first movement of this partition not taken, else where
            // its page said to go on.
            let first_left = left
                .iter()
                .find(|(i, _)| *i == index)
                .and_then(|(_, m)| m["seq"].as_u64());
            let goes_on = page["next"].as_u64().or(from[index]).unwrap_or(1);
            Cursor {
                lineage: 0,
                seq: Seq(first_left.unwrap_or(goes_on)),
            }
        })
        .collect();
    let movements: Vec<Value> = all.into_iter().map(|(_, m)| m).collect();
    json!({"movements": movements, "next": 0, "lagged": lagged,
           "next_cursor": ClusterCursor(next).to_string()})
}
