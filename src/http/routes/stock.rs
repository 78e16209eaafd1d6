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

/// One row of a bulk import (written again as NDJSON by a cluster node
/// that routes rows to their partitions).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRow {
    pub(crate) sku: String,
    location: String,
    on_hand: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_stock: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    let mut format = import_format(&headers)?;
    let mut import = Import::new(&state);
    let mut rows = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(Code::UnreadableBody, format!("the body stopped: {e}")))?;
        if chunk.is_empty() {
            // The end of the body is told by the stream, not by a chunk.
            continue;
        }
        format.rows(&chunk, &mut rows)?;
        import.apply(&mut rows).await?;
    }
    format.rows(&[], &mut rows)?;
    import.apply(&mut rows).await?;
    import.finish().await
}

/// The import's format, from its content type.
pub(crate) fn import_format(headers: &HeaderMap) -> ApiResult<Format> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match content_type.split(';').next().map(str::trim) {
        Some("application/x-ndjson" | "application/ndjson") => {
            Ok(Format::Ndjson(NdjsonRows::default()))
        }
        Some("text/csv") => Ok(Format::Csv(Box::default())),
        _ => Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send application/x-ndjson or text/csv",
        )),
    }
}

/// A data row as read: the row, or why it cannot be.
pub(crate) type ReadRow = ApiResult<ImportRow>;

/// Reads rows from the body's chunks as they arrive; an empty chunk is the
/// end of the body.
pub(crate) enum Format {
    Ndjson(NdjsonRows),
    Csv(Box<CsvRows>),
}

impl Format {
    /// Appends the rows that `chunk` completes to `rows`.
    pub(crate) fn rows(&mut self, chunk: &[u8], rows: &mut Vec<ReadRow>) -> ApiResult<()> {
        match self {
            Format::Ndjson(lines) => lines.feed(chunk, rows),
            Format::Csv(csv) => csv.feed(chunk, rows),
        }
    }
}

/// An import in progress: the writes and what they did.
struct Import<'s> {
    writes: Writes<'s>,
    report: ImportReport,
    max_errors: usize,
}

impl<'s> Import<'s> {
    fn new(state: &'s AppState) -> Import<'s> {
        Import {
            writes: state.engine.writes(),
            report: ImportReport {
                rows: 0,
                applied: 0,
                failed: 0,
                errors: Vec::new(),
                errors_truncated: false,
            },
            max_errors: state.limits.max_import_errors_reported,
        }
    }

    /// Applies `rows` (numbered in order) and empties it.
    async fn apply(&mut self, rows: &mut Vec<ReadRow>) -> ApiResult<()> {
        for row in rows.drain(..) {
            let report = &mut self.report;
            report.rows += 1;
            match row.and_then(|row| apply_row(&mut self.writes, row)) {
                Ok(()) => report.applied += 1,
                Err(error) => {
                    report.failed += 1;
                    if report.errors.len() < self.max_errors {
                        report.errors.push(ImportRowError {
                            row: report.rows,
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
        Ok(())
    }

    async fn finish(self) -> ApiResult<Json<ImportReport>> {
        metrics::counter!("omnistock_import_rows_total", "outcome" => "applied")
            .increment(self.report.applied);
        metrics::counter!("omnistock_import_rows_total", "outcome" => "failed")
            .increment(self.report.failed);
        self.writes.durable().await?;
        Ok(Json(self.report))
    }
}

fn row_too_long() -> ApiError {
    ApiError::new(
        Code::RowTooLong,
        format!("rows are at most {MAX_IMPORT_LINE_BYTES} bytes"),
    )
}

/// NDJSON: one JSON object a line.
#[derive(Default)]
pub(crate) struct NdjsonRows {
    pending: Vec<u8>,
    /// Data rows read so far.
    rows: u64,
}

impl NdjsonRows {
    fn feed(&mut self, chunk: &[u8], rows: &mut Vec<ReadRow>) -> ApiResult<()> {
        self.pending.extend_from_slice(chunk);
        if chunk.is_empty() && self.pending.last().is_some_and(|b| *b != b'\n') {
            self.pending.push(b'\n');
        }
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let raw = &self.pending[start..start + offset];
            start += offset + 1;
            let text = String::from_utf8_lossy(raw);
            let line = text.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            self.rows += 1;
            rows.push(if raw.len() > MAX_IMPORT_LINE_BYTES {
                Err(row_too_long())
            } else {
                serde_json::from_str(line)
                    .map_err(|e| ApiError::new(Code::InvalidRow, e.to_string()))
            });
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_IMPORT_LINE_BYTES * 4 {
            // A row with no end in sight: refuse it rather than buffer without bound.
            return Err(ApiError::new(
                Code::RowTooLong,
                format!(
                    "row {} exceeds {MAX_IMPORT_LINE_BYTES} bytes",
                    self.rows + 1
                ),
            ));
        }
        Ok(())
    }
}

/// CSV (RFC 4180: quoted fields, `""` escapes, CRLF or LF) read with the
/// `csv` crate's push parser, `csv-core`, which takes the body chunk by
/// chunk (a quoted field may span chunks) into buffers of fixed size: a row
/// longer than [`MAX_IMPORT_LINE_BYTES`] is read to its end and reported,
/// never buffered.
pub(crate) struct CsvRows {
    reader: csv_core::Reader,
    header: Option<Vec<String>>,
    /// The current record's fields, and where each ends in it.
    fields: [u8; MAX_IMPORT_LINE_BYTES],
    ends: [usize; MAX_IMPORT_LINE_BYTES + 1],
    fields_len: usize,
    ends_len: usize,
    /// Bytes of the body the current record took so far.
    raw: usize,
    /// The current record did not fit: it is read to its end and reported.
    overflowed: bool,
}

impl Default for CsvRows {
    fn default() -> CsvRows {
        CsvRows {
            reader: csv_core::Reader::new(),
            header: None,
            fields: [0; MAX_IMPORT_LINE_BYTES],
            ends: [0; MAX_IMPORT_LINE_BYTES + 1],
            fields_len: 0,
            ends_len: 0,
            raw: 0,
            overflowed: false,
        }
    }
}

impl CsvRows {
    fn feed(&mut self, mut chunk: &[u8], rows: &mut Vec<ReadRow>) -> ApiResult<()> {
        use csv_core::ReadRecordResult;
        loop {
            let (result, read, written, ended) = self.reader.read_record(
                chunk,
                &mut self.fields[self.fields_len..],
                &mut self.ends[self.ends_len..],
            );
            chunk = &chunk[read..];
            self.raw += read;
            self.fields_len += written;
            self.ends_len += ended;
            match result {
                // All of `chunk` is read (or, for an empty one, the body ended).
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return Ok(()),
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {
                    // Too long: read on to its end, keeping nothing.
                    self.overflowed = true;
                    self.fields_len = 0;
                    self.ends_len = 0;
                }
                ReadRecordResult::Record => self.record(rows)?,
            }
        }
    }

    /// A complete record: the header, a data row, or a blank line.
    fn record(&mut self, rows: &mut Vec<ReadRow>) -> ApiResult<()> {
        // The record's bytes, with its line end.
        let too_long = self.overflowed || self.raw > MAX_IMPORT_LINE_BYTES + 2;
        let fields = if too_long {
            Vec::new()
        } else {
            let mut start = 0;
            self.ends[..self.ends_len]
                .iter()
                .map(|&end| {
                    let field = String::from_utf8_lossy(&self.fields[start..end]).into_owned();
                    start = end;
                    field
                })
                .collect()
        };
        (self.raw, self.fields_len, self.ends_len, self.overflowed) = (0, 0, 0, false);
        match &self.header {
            None if too_long => Err(ApiError::new(
                Code::RowTooLong,
                format!("the header row exceeds {MAX_IMPORT_LINE_BYTES} bytes"),
            )),
            Some(_) if too_long => {
                rows.push(Err(row_too_long()));
                Ok(())
            }
            _ if matches!(&fields[..], [only] if only.trim().is_empty()) => Ok(()),
            None => {
                self.header = Some(fields.iter().map(|h| h.trim().to_owned()).collect());
                Ok(())
            }
            Some(header) => {
                rows.push(csv_row(header, fields));
                Ok(())
            }
        }
    }
}

fn apply_row(writes: &mut Writes<'_>, row: ImportRow) -> ApiResult<()> {
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

/// A CSV data row, its fields named by the header.
fn csv_row(header: &[String], fields: Vec<String>) -> ApiResult<ImportRow> {
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

#[cfg(test)]
mod tests {
    use super::{CsvRows, MAX_IMPORT_LINE_BYTES};
    use crate::http::error_codes::Code;

    /// The rows `body` reads as, fed in chunks of `size` bytes: each row's
    /// fields (`sku`, `location`, `on_hand` only) or its error code.
    fn csv(body: &str, size: usize) -> Vec<Result<(String, String, u32), Code>> {
        let mut reader = CsvRows::default();
        let mut rows = Vec::new();
        for chunk in body.as_bytes().chunks(size).chain([&[][..]]) {
            reader.feed(chunk, &mut rows).expect("read");
        }
        rows.into_iter()
            .map(|row| {
                row.map(|r| (r.sku, r.location, r.on_hand))
                    .map_err(|e| e.code)
            })
            .collect()
    }

    #[test]
    fn csv_quotes_escapes_and_line_endings_across_chunks() {
        let body = "sku,location,on_hand,reference\r\n\
                    \"A,1\",S1,3,\"say \"\"hi\"\"\"\r\n\
                    \n\
                    B,S1,4,\"two\nlines\"\n\
                    C,S1,x,\n\
                    D,S1\n\
                    E,S1,5,";
        let expected = vec![
            Ok(("A,1".to_owned(), "S1".to_owned(), 3)),
            Ok(("B".to_owned(), "S1".to_owned(), 4)),
            Err(Code::InvalidRow),
            Err(Code::InvalidRow),
            Ok(("E".to_owned(), "S1".to_owned(), 5)),
        ];
        for size in [1, 2, 7, 4096] {
            assert_eq!(csv(body, size), expected, "chunks of {size}");
        }
    }

    #[test]
    fn an_overlong_csv_row_is_reported_and_the_next_one_read() {
        let long = "x".repeat(MAX_IMPORT_LINE_BYTES * 3);
        let body = format!("sku,location,on_hand\nA,S1,1\n{long},S1,2\nB,S1,3\n");
        for size in [5, 1000, 1 << 16] {
            assert_eq!(
                csv(&body, size),
                vec![
                    Ok(("A".to_owned(), "S1".to_owned(), 1)),
                    Err(Code::RowTooLong),
                    Ok(("B".to_owned(), "S1".to_owned(), 3)),
                ],
                "chunks of {size}"
            );
        }
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
