//! A streamed stock import into any node of a cluster: the body is read as
//! it arrives with the single node's row readers (NDJSON or CSV), each row
//! goes to its SKU's partition in batches (NDJSON imports of that
//! partition's rows; partitions at once, a partition's batches in order),
//! and the report is the single node's: every row counted, each failed
//! row listed with its number in the body. A batch whose partition cannot take it (a node failed, the
//! partition is moving) fails each of its rows with that problem; counts
//! are absolute, so running the import again converges (with `as_of`, a
//! count older than the one applied is refused, never applied twice).

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::Value;

use super::ClusterNode;
use super::dispatch::to_partition;
use super::forward::Envelope;
use super::spread::answer;
use crate::engine::Scope;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::http::routes::stock::{ImportRow, ReadRow, import_format};
use omnistock_cluster::PartitionId;

/// Rows held before they are sent (over every partition): the import's
/// memory, whatever its size.
const ROWS_PER_ROUND: usize = 4_096;
/// Most rows in one partition's batch.
const ROWS_PER_BATCH: usize = 1_000;

/// The report as the single node gives it.
struct Report {
    rows: u64,
    applied: u64,
    failed: u64,
    errors: Vec<Value>,
    errors_truncated: bool,
    max_errors: usize,
}

impl Report {
    fn fail(&mut self, row: u64, code: &Value, detail: &Value) {
        self.failed += 1;
        if self.errors.len() < self.max_errors {
            self.errors
                .push(serde_json::json!({"row": row, "code": code, "detail": detail}));
        } else {
            self.errors_truncated = true;
        }
    }
}

/// `POST /v1/stock/import` on a cluster node.
pub async fn import(node: &ClusterNode, request: Request) -> Response {
    let caller = match super::status::authenticate(node, request.headers()) {
        Ok(caller) => Caller(caller),
        Err(unauthorized) => return unauthorized.into_response(),
    };
    if let Err(forbidden) = caller.require(Scope::StockWrite) {
        return forbidden.into_response();
    }
    let mut format = match import_format(request.headers()) {
        Ok(format) => format,
        Err(problem) => return problem.into_response(),
    };
    let (parts, body) = request.into_parts();
    let template = Envelope {
        method: Method::POST,
        uri: Uri::from_static("/v1/stock/import"),
        headers: parts.headers,
        body: Bytes::new(),
    };
    let mut report = Report {
        rows: 0,
        applied: 0,
        failed: 0,
        errors: Vec::new(),
        errors_truncated: false,
        max_errors: node.node_state.limits.max_import_errors_reported,
    };
    let mut waiting: Vec<(u64, ImportRow)> = Vec::new();
    let mut read: Vec<ReadRow> = Vec::new();
    let mut chunks = body.into_data_stream();
    loop {
        let chunk = match chunks.next().await {
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => {
                return ApiError::new(Code::UnreadableBody, format!("the body stopped: {error}"))
                    .into_response();
            }
            None => Bytes::new(),
        };
        let last = chunk.is_empty();
        if let Err(problem) = format.rows(&chunk, &mut read) {
            return problem.into_response();
        }
        for row in read.drain(..) {
            report.rows += 1;
            match row {
                Ok(row) => waiting.push((report.rows, row)),
                Err(error) => report.fail(
                    report.rows,
                    &serde_json::json!(error.code),
                    &serde_json::json!(error.detail),
                ),
            }
        }
        if last || waiting.len() >= ROWS_PER_ROUND {
            send(node, &template, std::mem::take(&mut waiting), &mut report).await;
        }
        if last {
            break;
        }
    }
    report.errors.sort_by_key(|e| e["row"].as_u64());
    let body = serde_json::json!({"rows": report.rows, "applied": report.applied,
        "failed": report.failed, "errors": report.errors, "errors_truncated": report.errors_truncated});
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A partition's batch: its rows' numbers in the body, and its request.
struct Batch {
    partition: PartitionId,
    numbers: Vec<u64>,
    envelope: Envelope,
}

/// Sends `rows` (with their numbers in the body) to their partitions in
/// batches, and adds what they did to `report`. Partitions take theirs at
/// once; a partition's batches go one after the other, in the body's order,
/// so two counts of one position apply as a single node applies them.
async fn send(
    node: &ClusterNode,
    template: &Envelope,
    rows: Vec<(u64, ImportRow)>,
    report: &mut Report,
) {
    // A partition lists every failed row of a batch no larger than that.
    let batch_rows = ROWS_PER_BATCH.min(report.max_errors.max(1));
    let lanes = lanes(node, template, rows, batch_rows);
    let sending = lanes.iter().map(|lane| async move {
        let mut answers = Vec::with_capacity(lane.len());
        for batch in lane {
            answers.push(answer(to_partition(node, batch.partition, &batch.envelope)).await);
        }
        answers
    });
    let answers = join_all(sending).await;
    let sent = lanes.iter().flatten().zip(answers.into_iter().flatten());
    for (batch, outcome) in sent {
        match outcome {
            Ok(done) => {
                report.applied += done["applied"].as_u64().unwrap_or(0);
                for error in done["errors"].as_array().into_iter().flatten() {
                    let index = error["row"].as_u64().and_then(|r| usize::try_from(r).ok());
                    let number = index
                        .and_then(|i| batch.numbers.get(i.checked_sub(1)?))
                        .copied()
                        .unwrap_or(0);
                    report.fail(number, &error["code"], &error["detail"]);
                }
            }
            Err(problem) => {
                for number in &batch.numbers {
                    report.fail(
                        *number,
                        &problem.problem["code"],
                        &problem.problem["detail"],
                    );
                }
            }
        }
    }
}

/// `rows` grouped by partition, in the body's order, each partition's cut
/// into NDJSON imports of at most `batch_rows` rows: one lane of batches
/// per partition.
fn lanes(
    node: &ClusterNode,
    template: &Envelope,
    rows: Vec<(u64, ImportRow)>,
    batch_rows: usize,
) -> Vec<Vec<Batch>> {
    let mut by_partition: Vec<(PartitionId, Vec<(u64, ImportRow)>)> = Vec::new();
    for (number, row) in rows {
        let partition = node.partitions().of(&row.sku);
        match by_partition.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, rows)) => rows.push((number, row)),
            None => by_partition.push((partition, vec![(number, row)])),
        }
    }
    by_partition
        .iter()
        .map(|(partition, rows)| {
            let batches = rows.chunks(batch_rows.max(1));
            batches
                .map(|rows| batch(template, *partition, rows))
                .collect()
        })
        .collect()
}

/// One partition's NDJSON import of `rows`.
fn batch(template: &Envelope, partition: PartitionId, rows: &[(u64, ImportRow)]) -> Batch {
    let mut body = Vec::new();
    for (_, row) in rows {
        // A row read from the body is always valid JSON again.
        if serde_json::to_writer(&mut body, row).is_ok() {
            body.push(b'\n');
        }
    }
    let mut envelope = Envelope {
        body: Bytes::from(body),
        ..template.clone()
    };
    let ndjson = header::HeaderValue::from_static("application/x-ndjson");
    envelope.headers.insert(header::CONTENT_TYPE, ndjson);
    envelope.headers.remove(header::CONTENT_LENGTH);
    Batch {
        partition,
        numbers: rows.iter().map(|(n, _)| *n).collect(),
        envelope,
    }
}
