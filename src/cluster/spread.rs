//! Requests spread over partitions: a batch whose items live in several
//! partitions is split into one batch per partition (run in parallel, each
//! where its partition is served), and the answers are put back together
//! in the original order; the audit asks every partition and adds up.
//! Each answer has the single node's shape.

use axum::body::{Bytes, to_bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ClusterNode;
use super::dispatch::to_partition;
use super::forward::Envelope;
use crate::http::dto::BatchAvailabilityBody;
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::http::routes::stock::MovementBatchBody;
use omnistock_cluster::PartitionId;

/// Largest answer read from one partition: a batch of `--max-batch-items`
/// positions is far below it (a position is under 1 KiB of JSON).
const MAX_PART_ANSWER_BYTES: usize = 64 << 20;

/// One partition's share of a request: the original indices of its items.
struct Part {
    partition: PartitionId,
    indices: Vec<usize>,
}

/// What one partition answered: its JSON (2xx), or the whole problem.
pub(super) type PartAnswer = Result<Value, Box<ProblemAnswer>>;

/// A partition's answer other than 200: the response, and its problem
/// body's code, status and detail (for a per-item refusal).
pub(super) struct ProblemAnswer {
    pub(super) status: StatusCode,
    headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) problem: Value,
}

impl ProblemAnswer {
    pub(super) fn to_response(&self) -> Response {
        (self.status, self.headers.clone(), self.body.clone()).into_response()
    }
}

/// `POST /v1/availability/batch` over the partitions of its items.
pub async fn availability_batch(node: &ClusterNode, envelope: &Envelope) -> Response {
    let Some((body, parts)) = split::<BatchAvailabilityBody>(node, envelope) else {
        return super::dispatch::call(&node.node_app, envelope).await;
    };
    let answers = run(node, envelope, &body, &parts).await;
    if let Some(refused) = refused_everywhere(&answers) {
        return refused;
    }
    let items = body["items"].as_array().map_or(&[][..], Vec::as_slice);
    let results = merge(&parts, answers, |index, problem| {
        let item = &items[index];
        json!({"sku": truncated(&item["sku"]), "location": truncated(&item["location"]),
               "code": problem["code"], "detail": problem["detail"]})
    });
    axum::Json(json!({ "results": results })).into_response()
}

/// `POST /v1/movements/batch` over the partitions of its items. With
/// `Idempotency-Key: K`, each partition's items run under `K#i` by their
/// order in that partition's share, which a retry of the same batch
/// splits the same way: it replays every item and applies nothing twice.
pub async fn movement_batch(node: &ClusterNode, envelope: &Envelope) -> Response {
    let Some((body, parts)) = split::<MovementBatchBody>(node, envelope) else {
        return super::dispatch::call(&node.node_app, envelope).await;
    };
    let answers = run(node, envelope, &body, &parts).await;
    if let Some(refused) = refused_everywhere(&answers) {
        return refused;
    }
    let results = merge(
        &parts,
        answers,
        |_, problem| json!({"code": problem["code"], "status": problem["status"], "detail": problem["detail"]}),
    );
    let applied = results
        .iter()
        .filter(|r| r.get("position").is_some())
        .count();
    let failed = results.len() - applied;
    axum::Json(json!({"applied": applied, "failed": failed, "results": results})).into_response()
}

/// `GET /v1/admin/audit` of every partition, added up: `ok` only when
/// every partition's invariants hold (the first violation names its
/// partition). A partition that cannot answer fails the audit with its
/// problem: nothing is claimed about stock that was not checked.
pub async fn audit(node: &ClusterNode, envelope: &Envelope) -> Response {
    let all = node.partitions();
    let partitions: Vec<PartitionId> = (0..all.count()).filter_map(|i| all.get(i)).collect();
    let calls = partitions.iter().map(|p| to_partition(node, *p, envelope));
    let answers: Vec<PartAnswer> = join_all(calls.map(answer)).await;
    let mut total = json!({"ok": true, "violation": null, "positions": 0, "held_reservations": 0,
                           "on_hand": 0, "reserved": 0, "positions_short": 0});
    for (partition, answer) in partitions.iter().zip(answers) {
        let report = match answer {
            Ok(report) => report,
            Err(problem) => return problem.to_response(),
        };
        if report["ok"] != json!(true) && total["ok"] == json!(true) {
            total["ok"] = json!(false);
            total["violation"] = json!(format!("partition {partition}: {}", report["violation"]));
        }
        for field in [
            "positions",
            "held_reservations",
            "on_hand",
            "reserved",
            "positions_short",
        ] {
            let sum = total[field].as_u64().unwrap_or(0) + report[field].as_u64().unwrap_or(0);
            total[field] = json!(sum);
        }
    }
    axum::Json(total).into_response()
}

/// The body as JSON and its items grouped by partition, ascending; `None`
/// when the node itself should answer: the body is not a valid `T`, or
/// has more items than allowed (every engine gives the same problem), or
/// the caller has no key.
fn split<T: DeserializeOwned>(
    node: &ClusterNode,
    envelope: &Envelope,
) -> Option<(Value, Vec<Part>)> {
    super::status::authenticate(node, &envelope.headers).ok()?;
    serde_json::from_slice::<T>(&envelope.body).ok()?;
    let body: Value = serde_json::from_slice(&envelope.body).ok()?;
    let items = body.get("items")?.as_array()?;
    if items.len() > node.node_state.limits.max_batch_items {
        return None;
    }
    let mut parts: Vec<Part> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let partition = node.partitions().of(item.get("sku")?.as_str()?);
        match parts.binary_search_by_key(&partition, |p| p.partition) {
            Ok(at) => parts[at].indices.push(index),
            Err(at) => parts.insert(
                at,
                Part {
                    partition,
                    indices: vec![index],
                },
            ),
        }
    }
    Some((body, parts))
}

/// Sends each part (the body with only its items) to its partition, all
/// at once.
async fn run(
    node: &ClusterNode,
    envelope: &Envelope,
    body: &Value,
    parts: &[Part],
) -> Vec<PartAnswer> {
    let items = body["items"].as_array().map_or(&[][..], Vec::as_slice);
    let envelopes: Vec<Envelope> = parts
        .iter()
        .map(|part| {
            let mut share = body.clone();
            share["items"] = Value::Array(part.indices.iter().map(|&i| items[i].clone()).collect());
            Envelope {
                body: Bytes::from(share.to_string()),
                ..envelope.clone()
            }
        })
        .collect();
    let shares: Vec<(PartitionId, Envelope)> = parts
        .iter()
        .map(|part| part.partition)
        .zip(envelopes)
        .collect();
    ask_each(node, &shares).await
}

/// Sends each request to its partition, all at once; the answers, each
/// read whole, in order.
pub(super) async fn ask_each(
    node: &ClusterNode,
    shares: &[(PartitionId, Envelope)],
) -> Vec<PartAnswer> {
    let asking = shares
        .iter()
        .map(|(partition, share)| answer(to_partition(node, *partition, share)));
    join_all(asking).await
}

/// A partition's answer read whole.
pub(super) async fn answer(response: impl Future<Output = Response>) -> PartAnswer {
    let (head, body) = response.await.into_parts();
    match to_bytes(body, MAX_PART_ANSWER_BYTES).await {
        Ok(bytes) => classify(head.status, head.headers, bytes),
        Err(error) => {
            let detail = format!("a partition's answer could not be read: {error}");
            let (head, body) = ApiError::new(Code::PartitionUnavailable, detail)
                .into_response()
                .into_parts();
            // A body already in memory: reading it cannot fail.
            let bytes = to_bytes(body, MAX_PART_ANSWER_BYTES)
                .await
                .unwrap_or_default();
            classify(head.status, head.headers, bytes)
        }
    }
}

fn classify(status: StatusCode, headers: HeaderMap, body: Bytes) -> PartAnswer {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(parsed);
    }
    Err(Box::new(ProblemAnswer {
        status,
        headers,
        body,
        problem: parsed,
    }))
}

/// When no partition took its share (the key, the scope, the channel or
/// the content type are wrong, which every partition says alike), the
/// first partition's problem is the answer.
fn refused_everywhere(answers: &[PartAnswer]) -> Option<Response> {
    if answers.iter().any(Result::is_ok) {
        return None;
    }
    answers
        .iter()
        .find_map(|a| a.as_ref().err())
        .map(|problem| problem.to_response())
}

/// Every item's result in the original order: from its partition's
/// `results`, or, when its partition could not take it, `refusal(index,
/// problem)`.
fn merge(
    parts: &[Part],
    answers: Vec<PartAnswer>,
    refusal: impl Fn(usize, &Value) -> Value,
) -> Vec<Value> {
    let total = parts.iter().map(|p| p.indices.len()).sum();
    let mut results = vec![Value::Null; total];
    for (part, answer) in parts.iter().zip(answers) {
        match answer {
            Ok(mut value) => {
                let mut own = match value.get_mut("results").map(Value::take) {
                    Some(Value::Array(own)) => own,
                    _ => Vec::new(),
                };
                own.resize(part.indices.len(), Value::Null);
                for (&index, result) in part.indices.iter().zip(own) {
                    results[index] = result;
                }
            }
            Err(problem) => {
                for &index in &part.indices {
                    results[index] = refusal(index, &problem.problem);
                }
            }
        }
    }
    results
}

/// An item's text as a refusal repeats it (as the single node does: its
/// first 60 characters).
fn truncated(value: &Value) -> Value {
    Value::String(value.as_str().unwrap_or("").chars().take(60).collect())
}
