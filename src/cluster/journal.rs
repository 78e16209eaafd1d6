//! The journal of every SKU of a cluster (one SKU's is its partition's,
//! routed there): each partition's journal read from where the client's
//! `cursor` left it, all at once, merged in time order, cut at `limit`.
//! `next_cursor` is every partition's next sequence (a movement of a
//! partition not taken this time is where that partition goes on), so
//! paging through it misses nothing and lists nothing twice; `lagged`
//! when any partition had dropped what was asked (a partition's journal
//! is kept in memory by the engine serving it: a move starts it afresh).

use std::collections::VecDeque;

use axum::body::Bytes;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ClusterNode;
use super::forward::Envelope;
use super::spread::ask_each;
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
    let reads: Vec<(PartitionId, Envelope)> = partitions
        .iter()
        .zip(&from)
        .map(|(partition, since)| {
            let mut params = form_urlencoded::Serializer::new(String::new());
            params.extend_pairs(others.iter().map(|(n, v)| (n, v)));
            if let Some(since) = since {
                params.append_pair("since", &since.to_string());
            }
            let uri = format!("/v1/journal?{}", params.finish());
            let read = Envelope {
                uri: uri
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("/v1/journal")),
                body: Bytes::new(),
                ..envelope.clone()
            };
            (*partition, read)
        })
        .collect();
    let mut pages = Vec::with_capacity(partitions.len());
    for page in ask_each(node, &reads).await {
        match page {
            Ok(page) => pages.push(page),
            Err(problem) => return problem.to_response(),
        }
    }
    axum::Json(merge(pages, &from, limit)).into_response()
}

/// The first `limit` movements of every partition's page, in time order,
/// and where each partition goes on. A k-way merge of the pages as they
/// come (each in its partition's sequence order), taking the earliest head
/// each time: what is taken of a partition is always a prefix of its page,
/// so its cursor (the first movement not taken) repeats nothing, even where
/// a partition's times are not in its sequence order.
fn merge(pages: Vec<Value>, from: &[Option<u64>], limit: usize) -> Value {
    let lagged = pages.iter().any(|p| p["lagged"] == json!(true));
    let next_of: Vec<Option<u64>> = pages.iter().map(|p| p["next"].as_u64()).collect();
    let mut queues: Vec<VecDeque<Value>> = pages
        .into_iter()
        .map(
            |mut page| match page.get_mut("movements").map(Value::take) {
                Some(Value::Array(movements)) => movements.into(),
                _ => VecDeque::new(),
            },
        )
        .collect();
    let mut movements = Vec::with_capacity(limit);
    while movements.len() < limit {
        let earliest = queues
            .iter()
            .enumerate()
            .filter_map(|(index, queue)| Some((queue.front()?["at"].as_str().unwrap_or(""), index)))
            .min()
            .map(|(_, index)| index);
        let Some(movement) = earliest.and_then(|index| queues[index].pop_front()) else {
            break;
        };
        movements.push(movement);
    }
    let next: Vec<Cursor> = queues
        .iter()
        .enumerate()
        .map(|(index, queue)| {
            // The first movement of this partition not taken, else where
            // its page said to go on.
            let first_left = queue.front().and_then(|m| m["seq"].as_u64());
            let goes_on = next_of[index].or(from[index]).unwrap_or(1);
            Cursor {
                lineage: 0,
                seq: Seq(first_left.unwrap_or(goes_on)),
            }
        })
        .collect();
    json!({"movements": movements, "next": 0, "lagged": lagged,
           "next_cursor": ClusterCursor(next).to_string()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movement(seq: u64, at: &str) -> Value {
        json!({"seq": seq, "at": at})
    }

    #[test]
    fn a_page_takes_a_prefix_of_each_partition_so_the_next_repeats_nothing() {
        // Partition 0's times are not in its sequence order (seq 6 is
        // stamped before seq 5).
        let pages = vec![
            json!({"movements": [movement(5, "2026-01-01T00:00:02Z"),
                                 movement(6, "2026-01-01T00:00:01Z")], "next": 7}),
            json!({"movements": [movement(3, "2026-01-01T00:00:00Z")], "next": 4}),
        ];
        let page = merge(pages, &[Some(5), Some(3)], 2);
        let seqs: Vec<u64> = page["movements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["seq"].as_u64())
            .collect();
        assert_eq!(seqs, [3, 5], "{page}");
        let cursor: ClusterCursor = page["next_cursor"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a cursor: {page}"));
        let next: Vec<u64> = cursor.0.iter().map(|c| c.seq.0).collect();
        assert_eq!(
            next,
            [6, 4],
            "partition 0 goes on at 6, partition 1 after its page"
        );
    }
}
