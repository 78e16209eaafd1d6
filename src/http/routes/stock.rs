//! Stock movements: absolute counts (single and streamed bulk import), sales,
//! returns, receipts, expected receipts, adjustments.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::Writes;
use crate::http::auth::{Caller, Scope};
use crate::http::dto::{
    self, AdjustmentBody, CountBody, DisplayBody, IncomingBody, PositionJson, PositionsJson,
    ReceiptBody, ReturnBody, SaleBody,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiJson, ApiPath, parse_rfc3339};
use crate::http::{AppState, IdempotencyHeader, idempotency_key};
use crate::ledger::{
    AdjustmentRequest, CountRequest, DisplayRequest, IncomingRequest, Line, Qty, ReceiptRequest,
    ReturnRequest, SaleRequest, Seq,
};

/// Absolute count from ERP/WMS/cycle count: sets on hand, never touches reservations.
#[utoipa::path(put, path = "/v1/stock/{location}/{sku}", tag = "stock", params(("location" = crate::http::openapi::LocationCode, Path), ("sku" = crate::http::openapi::Sku, Path), crate::http::openapi::IdempotencyKeyHeader), request_body = CountBody,
    responses((status = 200, body = PositionJson), (status = 404, description = "unknown location"), (status = 412, description = "stale expected_version"), (status = 409, description = "as_of older than the last count or than the history kept")),
    security(("bearer" = [])))]
pub async fn count(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiPath((location, sku)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CountBody>,
) -> ApiResult<Json<PositionJson>> {
    caller.require(Scope::StockWrite)?;
    let request = count_request(
        json::sku("sku", &sku)?,
        json::location("location", &location)?,
        &body,
    )?;
    let key = idempotency_key(&idempotency, &caller)?;
    let view = state
        .engine
        .write(|writes| writes.count(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionJson::from(&view)))
}

/// Marks a position's units as display models (or clears it): ATF 0 for every
/// channel, ads publish `on_display_to_order`. Creates the position if needed.
#[utoipa::path(put, path = "/v1/stock/{location}/{sku}/display", tag = "stock", params(("location" = crate::http::openapi::LocationCode, Path), ("sku" = crate::http::openapi::Sku, Path), crate::http::openapi::IdempotencyKeyHeader), request_body = DisplayBody,
    responses((status = 200, body = PositionJson), (status = 404, description = "unknown location")),
    security(("bearer" = [])))]
pub async fn display(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiPath((location, sku)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DisplayBody>,
) -> ApiResult<Json<PositionJson>> {
    caller.require(Scope::StockWrite)?;
    let request = DisplayRequest {
        sku: json::sku("sku", &sku)?,
        location: json::location("location", &location)?,
        display_only: body.display_only,
        reference: dto::free_text("reference", body.reference.as_ref())?,
    };
    let key = idempotency_key(&idempotency, &caller)?;
    let view = state
        .engine
        .write(|writes| writes.set_display(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionJson::from(&view)))
}

fn count_request(
    sku: crate::ledger::Sku,
    location: crate::ledger::LocationCode,
    body: &CountBody,
) -> ApiResult<CountRequest> {
    Ok(CountRequest {
        sku,
        location,
        on_hand: Qty(body.on_hand),
        safety_stock: body.safety_stock.map(Qty),
        expected_version: body.expected_version.map(Seq),
        as_of: body
            .as_of
            .as_deref()
            .map(|t| parse_rfc3339("as_of", t))
            .transpose()?,
        reference: dto::free_text("reference", body.reference.as_ref())?,
    })
}

/// An immediate sale (POS, kiosk): all lines or none, within what the channel sees.
#[utoipa::path(post, path = "/v1/sales", tag = "stock", request_body = SaleBody, params(crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = PositionsJson), (status = 404, description = "unknown location"), (status = 409, description = "insufficient stock")), security(("bearer" = [])))]
pub async fn sale(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<SaleBody>,
) -> ApiResult<Json<PositionsJson>> {
    let lines = dto::lines(&body.lines, state.ledger().config().max_lines_per_request)?;
    caller.require_at(Scope::StockWrite, lines.iter().map(|l| &l.location))?;
    let request = SaleRequest {
        channel: dto::channel(&body.channel)?,
        lines,
        reference: dto::free_text("reference", body.reference.as_ref())?,
    };
    let key = idempotency_key(&idempotency, &caller)?;
    let views = state
        .engine
        .write(|writes| writes.sell(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionsJson {
        positions: views.iter().map(PositionJson::from).collect(),
    }))
}

/// A customer return (BORIS), to on hand or to the non-sellable bucket.
#[utoipa::path(post, path = "/v1/returns", tag = "stock", request_body = ReturnBody, params(crate::http::openapi::IdempotencyKeyHeader), responses((status = 200, body = PositionJson), (status = 404, description = "unknown location")), security(("bearer" = [])))]
pub async fn return_units(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<ReturnBody>,
) -> ApiResult<Json<PositionJson>> {
    let line = Line {
        sku: json::sku("sku", &body.sku)?,
        location: json::location("location", &body.location)?,
        qty: Qty(body.qty),
    };
    caller.require_at(Scope::StockWrite, [&line.location])?;
    let request = ReturnRequest {
        channel: dto::channel(&body.channel)?,
        line,
        sellable: body.sellable.unwrap_or(true),
        reason: dto::free_text("reason", body.reason.as_ref())?,
        reference: dto::free_text("reference", body.reference.as_ref())?,
    };
    let key = idempotency_key(&idempotency, &caller)?;
    let view = state
        .engine
        .write(|writes| writes.return_units(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionJson::from(&view)))
}

/// Goods received (consumes the expected receipt with the same reference).
#[utoipa::path(post, path = "/v1/receipts", tag = "stock", request_body = ReceiptBody, params(crate::http::openapi::IdempotencyKeyHeader), responses((status = 200, body = PositionJson), (status = 404, description = "unknown location")), security(("bearer" = [])))]
pub async fn receipt(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<ReceiptBody>,
) -> ApiResult<Json<PositionJson>> {
    caller.require(Scope::StockWrite)?;
    let request = ReceiptRequest {
        line: Line {
            sku: json::sku("sku", &body.sku)?,
            location: json::location("location", &body.location)?,
            qty: Qty(body.qty),
        },
        reference: dto::free_text("reference", body.reference.as_ref())?,
    };
    let key = idempotency_key(&idempotency, &caller)?;
    let view = state
        .engine
        .write(|writes| writes.receive(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionJson::from(&view)))
}

/// Goods expected at a date (counts towards ATO).
#[utoipa::path(post, path = "/v1/incoming", tag = "stock", request_body = IncomingBody, params(crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = PositionJson), (status = 404, description = "unknown location"), (status = 409, description = "`too_many_incoming`: too many expected receipts at this position")), security(("bearer" = [])))]
pub async fn incoming(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<IncomingBody>,
) -> ApiResult<Json<PositionJson>> {
    caller.require(Scope::StockWrite)?;
    let request = IncomingRequest {
        line: Line {
            sku: json::sku("sku", &body.sku)?,
            location: json::location("location", &body.location)?,
            qty: Qty(body.qty),
        },
        expected_at: parse_rfc3339("expected_at", &body.expected_at)?,
        reference: dto::free_text("reference", body.reference.as_ref())?,
    };
    let key = idempotency_key(&idempotency, &caller)?;
    let view = state
        .engine
        .write(|writes| writes.expect_incoming(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionJson::from(&view)))
}

/// A signed correction of on hand, with a reason.
#[utoipa::path(post, path = "/v1/adjustments", tag = "stock", request_body = AdjustmentBody, params(crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = PositionJson), (status = 404, description = "unknown location"), (status = 409, description = "would go below zero")), security(("bearer" = [])))]
pub async fn adjustment(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<AdjustmentBody>,
) -> ApiResult<Json<PositionJson>> {
    caller.require(Scope::StockWrite)?;
    let request = AdjustmentRequest {
        sku: json::sku("sku", &body.sku)?,
        location: json::location("location", &body.location)?,
        delta: body.delta,
        reason: dto::free_text("reason", Some(&body.reason))?.unwrap_or_default(),
        reference: dto::free_text("reference", body.reference.as_ref())?,
    };
    let key = idempotency_key(&idempotency, &caller)?;
    let view = state
        .engine
        .write(|writes| writes.adjust(&request, key.as_ref()))
        .await?;
    Ok(Json(PositionJson::from(&view)))
}

/// One row of a bulk import.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRow {
    sku: String,
    location: String,
    on_hand: u32,
    safety_stock: Option<u32>,
    expected_version: Option<u64>,
    as_of: Option<String>,
    reference: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRowError {
    /// 1-based data row (the CSV header is row 0).
    pub row: u64,
    pub code: Code,
    pub detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub rows: u64,
    pub applied: u64,
    pub failed: u64,
    pub errors: Vec<ImportRowError>,
    /// More rows failed than `errors` lists.
    pub errors_truncated: bool,
}

/// Longest row accepted; a longer one is an error for that row.
const MAX_IMPORT_LINE_BYTES: usize = 4 * 1024;
/// Rows between yields to the runtime, so an import never starves other requests.
const ROWS_PER_YIELD: u64 = 512;

enum Format {
    Ndjson,
    Csv { header: Option<Vec<String>> },
}

/// Bulk absolute counts as a stream of NDJSON (`application/x-ndjson`) or CSV
/// (`text/csv`, header `sku,location,on_hand[,safety_stock][,as_of][,expected_version][,reference]`).
/// Rows are applied as they arrive; memory stays flat; each bad row is
/// reported and skipped.
#[utoipa::path(post, path = "/v1/stock/import", tag = "stock",
    request_body(description = "one count per line: NDJSON objects, or CSV rows after a header row",
        content((String = "application/x-ndjson"), (String = "text/csv"))),
    responses((status = 200, body = ImportReport), (status = 415, description = "neither NDJSON nor CSV")), security(("bearer" = [])))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ImportReport>> {
    caller.require(Scope::StockWrite)?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut format = match content_type.split(';').next().map(str::trim) {
        Some("application/x-ndjson" | "application/ndjson") => Format::Ndjson,
        Some("text/csv") => Format::Csv { header: None },
        _ => {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "send application/x-ndjson or text/csv",
            ));
        }
    };
    let mut report = ImportReport {
        rows: 0,
        applied: 0,
        failed: 0,
        errors: Vec::new(),
        errors_truncated: false,
    };
    let max_errors = state.limits.max_import_errors_reported;
    let mut writes = state.engine.writes();
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut line_number: u64 = 0;
    let mut finished = false;
    while !finished {
        match stream.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(ApiError::new(
                    Code::UnreadableBody,
                    format!("the body stopped: {e}"),
                ));
            }
            None => {
                finished = true;
                if !pending.is_empty() && pending.last() != Some(&b'\n') {
                    pending.push(b'\n');
                }
            }
        }
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|b| *b == b'\n') {
            let raw = &pending[start..start + offset];
            start += offset + 1;
            let text = String::from_utf8_lossy(raw);
            let line = text.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if let Format::Csv {
                header: header @ None,
            } = &mut format
            {
                *header = Some(
                    split_csv(line)
                        .into_iter()
                        .map(|h| h.trim().to_string())
                        .collect(),
                );
                continue;
            }
            line_number += 1;
            report.rows += 1;
            let outcome = if raw.len() > MAX_IMPORT_LINE_BYTES {
                Err(ApiError::new(
                    Code::RowTooLong,
                    format!("rows are at most {MAX_IMPORT_LINE_BYTES} bytes"),
                ))
            } else {
                apply_row(&mut writes, &format, line)
            };
            match outcome {
                Ok(()) => report.applied += 1,
                Err(error) => {
                    report.failed += 1;
                    if report.errors.len() < max_errors {
                        report.errors.push(ImportRowError {
                            row: line_number,
                            code: error.code,
                            detail: error.detail,
                        });
                    } else {
                        report.errors_truncated = true;
                    }
                }
            }
            if report.rows.is_multiple_of(ROWS_PER_YIELD) {
                tokio::task::yield_now().await;
            }
        }
        pending.drain(..start);
        if pending.len() > MAX_IMPORT_LINE_BYTES * 4 {
            // A row with no end in sight: refuse it rather than buffer without bound.
            return Err(ApiError::new(
                Code::RowTooLong,
                format!(
                    "row {} exceeds {MAX_IMPORT_LINE_BYTES} bytes",
                    line_number + 1
                ),
            ));
        }
    }
    metrics::counter!("omnistock_import_rows_total", "outcome" => "applied")
        .increment(report.applied);
    metrics::counter!("omnistock_import_rows_total", "outcome" => "failed")
        .increment(report.failed);
    writes.durable().await?;
    Ok(Json(report))
}

fn apply_row(writes: &mut Writes<'_>, format: &Format, line: &str) -> ApiResult<()> {
    let row: ImportRow = match format {
        Format::Ndjson => serde_json::from_str(line)
            .map_err(|e| ApiError::new(Code::InvalidRow, e.to_string()))?,
        Format::Csv { header } => csv_row(header.as_deref().unwrap_or_default(), line)?,
    };
    let count = CountBody {
        on_hand: row.on_hand,
        safety_stock: row.safety_stock,
        expected_version: row.expected_version,
        as_of: row.as_of,
        reference: row.reference,
    };
    let request = count_request(
        json::sku("sku", &row.sku)?,
        json::location("location", &row.location)?,
        &count,
    )?;
    writes.count(&request, None)?;
    Ok(())
}

fn csv_row(header: &[String], line: &str) -> ApiResult<ImportRow> {
    let fields = split_csv(line);
    if fields.len() != header.len() {
        return Err(ApiError::new(
            Code::InvalidRow,
            format!("expected {} fields, found {}", header.len(), fields.len()),
        ));
    }
    let mut object = serde_json::Map::new();
    for (name, value) in header.iter().zip(fields) {
        if value.is_empty() {
            continue;
        }
        let value = match name.as_str() {
            "on_hand" | "safety_stock" | "expected_version" => {
                serde_json::Value::from(value.trim().parse::<u64>().map_err(|_| {
                    ApiError::new(
                        Code::InvalidRow,
                        format!(
                            "{name}: not a whole number: {:?}",
                            value.chars().take(30).collect::<String>()
                        ),
                    )
                })?)
            }
            _ => serde_json::Value::from(value),
        };
        object.insert(name.clone(), value);
    }
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ApiError::new(Code::InvalidRow, e.to_string()))
}

/// Splits one CSV line: commas, with double-quoted fields and `""` escapes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::split_csv;

    #[test]
    fn csv_fields_with_quotes() {
        assert_eq!(
            split_csv(r#"a,"b,c","say ""hi""",,d"#),
            vec!["a", "b,c", "say \"hi\"", "", "d"]
        );
        assert_eq!(split_csv(""), vec![""]);
    }
}

/// One movement of a batch; `kind` says which.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MovementItem {
    Sale {
        channel: String,
        sku: String,
        location: String,
        qty: u32,
        reference: Option<String>,
    },
    Return {
        channel: String,
        sku: String,
        location: String,
        qty: u32,
        sellable: Option<bool>,
        reason: Option<String>,
        reference: Option<String>,
    },
    Receipt {
        sku: String,
        location: String,
        qty: u32,
        reference: Option<String>,
    },
    Adjustment {
        sku: String,
        location: String,
        delta: i64,
        reason: String,
        reference: Option<String>,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementBatchBody {
    pub items: Vec<MovementItem>,
}

/// One answer per item, in order: the position after it, or a problem.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MovementResult {
    Applied {
        position: PositionJson,
    },
    Refused {
        code: Code,
        status: u16,
        detail: String,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementBatchReport {
    pub applied: u64,
    pub failed: u64,
    pub results: Vec<MovementResult>,
}

/// Many sales, returns, receipts and adjustments in one request. Each item
/// applies (or is refused) on its own. With `Idempotency-Key: K`, item `i`
/// runs under the key `K#i`: a retried batch replays every item's original
/// outcome and applies nothing twice.
#[utoipa::path(post, path = "/v1/movements/batch", tag = "stock", request_body = MovementBatchBody, params(crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = MovementBatchReport)), security(("bearer" = [])))]
pub async fn movement_batch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    idempotency: IdempotencyHeader,
    ApiJson(body): ApiJson<MovementBatchBody>,
) -> ApiResult<Json<MovementBatchReport>> {
    if body.items.len() > state.limits.max_batch_items {
        return Err(ApiError::new(
            Code::TooManyItems,
            format!("at most {} items per batch", state.limits.max_batch_items),
        ));
    }
    let mut writes = state.engine.writes();
    let mut report = MovementBatchReport {
        applied: 0,
        failed: 0,
        results: Vec::with_capacity(body.items.len()),
    };
    let batch_key = idempotency_key(&idempotency, &caller)?;
    for (index, item) in body.items.iter().enumerate() {
        let item_key = batch_key
            .as_ref()
            .map(|k| {
                crate::ledger::IdempotencyKey::new(&format!("{k}#{index}"))
                    .map_err(|e| ApiError::new(Code::InvalidIdempotencyKey, e.to_string()))
            })
            .transpose()?;
        match apply_movement(&mut writes, &caller, item, item_key.as_ref()) {
            Ok(view) => {
                report.applied += 1;
                report.results.push(MovementResult::Applied {
                    position: PositionJson::from(&view),
                });
            }
            Err(error) => {
                report.failed += 1;
                report.results.push(MovementResult::Refused {
                    code: error.code,
                    status: error.status().as_u16(),
                    detail: error.detail,
                });
            }
        }
    }
    writes.durable().await?;
    Ok(Json(report))
}

fn apply_movement(
    writes: &mut Writes<'_>,
    caller: &Caller,
    item: &MovementItem,
    key: Option<&crate::ledger::IdempotencyKey>,
) -> ApiResult<crate::ledger::PositionView> {
    let line = |sku: &str, location: &str, qty: u32| -> ApiResult<Line> {
        Ok(Line {
            sku: json::sku("sku", sku)?,
            location: json::location("location", location)?,
            qty: Qty(qty),
        })
    };
    match item {
        MovementItem::Sale {
            channel,
            sku,
            location,
            qty,
            reference,
        } => {
            let line = line(sku, location, *qty)?;
            caller.require_at(Scope::StockWrite, [&line.location])?;
            let request = SaleRequest {
                channel: dto::channel(channel)?,
                lines: vec![line],
                reference: dto::free_text("reference", reference.as_ref())?,
            };
            writes
                .sell(&request, key)?
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::new(Code::Internal, "a sale returns its position"))
        }
        MovementItem::Return {
            channel,
            sku,
            location,
            qty,
            sellable,
            reason,
            reference,
        } => {
            let line = line(sku, location, *qty)?;
            caller.require_at(Scope::StockWrite, [&line.location])?;
            let request = ReturnRequest {
                channel: dto::channel(channel)?,
                line,
                sellable: sellable.unwrap_or(true),
                reason: dto::free_text("reason", reason.as_ref())?,
                reference: dto::free_text("reference", reference.as_ref())?,
            };
            Ok(writes.return_units(&request, key)?)
        }
        MovementItem::Receipt {
            sku,
            location,
            qty,
            reference,
        } => {
            caller.require(Scope::StockWrite)?;
            let request = ReceiptRequest {
                line: line(sku, location, *qty)?,
                reference: dto::free_text("reference", reference.as_ref())?,
            };
            Ok(writes.receive(&request, key)?)
        }
        MovementItem::Adjustment {
            sku,
            location,
            delta,
            reason,
            reference,
        } => {
            caller.require(Scope::StockWrite)?;
            let request = AdjustmentRequest {
                sku: json::sku("sku", sku)?,
                location: json::location("location", location)?,
                delta: *delta,
                reason: dto::free_text("reason", Some(reason))?.unwrap_or_default(),
                reference: dto::free_text("reference", reference.as_ref())?,
            };
            Ok(writes.adjust(&request, key)?)
        }
    }
}
