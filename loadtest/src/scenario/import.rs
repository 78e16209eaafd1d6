//! The ERP's bulk count (streamed NDJSON import) while everything else runs.
//! Every row carries `as_of` = the instant after seeding, so the engine
//! re-applies the movements made since; the tool then knows exactly what on
//! hand must be (the counted value plus its own movements). A row refused
//! because the position moved more often than its history keeps
//! (`as_of_beyond_history`) is expected and leaves the position uncounted.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use tokio::time::Instant;

use super::ScenarioWorker;
use crate::dataset::rfc3339_ms;
use crate::driver::Flow;
use crate::http_client::Call;
use crate::stats::Op;

#[derive(Deserialize)]
struct ImportReport {
    rows: u64,
    errors: Vec<RowError>,
    errors_truncated: bool,
}

#[derive(Deserialize)]
struct RowError {
    row: u64,
    code: String,
}

/// Refusals a concurrent count may legitimately meet.
const EXPECTED_ROW_CODES: [&str; 1] = ["as_of_beyond_history"];

pub async fn run(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let data = &ctx.data;
    let positions = ctx.book.next_import_range(data, ctx.import_rows);
    let as_of = rfc3339_ms(ctx.book.as_of_ms);
    let mut body = String::with_capacity(positions.len() * 120);
    for position in &positions {
        let (sku, location) = data.codes(*position);
        body.push_str(&format!(
            r#"{{"sku":"{sku}","location":"{location}","on_hand":{},"as_of":"{as_of}","reference":"erp cycle count"}}"#,
            data.count_value(*position)
        ));
        body.push('\n');
    }
    let call = Call {
        method: Method::POST,
        path: "/v1/stock/import",
        body: Some(("application/x-ndjson", Bytes::from(body))),
        key: Some(&ctx.admin),
    };
    let Some(reply) = w
        .send(Op::Import, scheduled, call, positions.len() as u64, false)
        .await
    else {
        return Flow::Continue;
    };
    let report: ImportReport = match serde_json::from_slice(&reply.body) {
        Ok(report) => report,
        Err(e) => {
            w.rec
                .note_error(format!("import.count: unreadable report: {e}"));
            return Flow::Continue;
        }
    };
    if report.errors_truncated || report.rows != positions.len() as u64 {
        w.rec
            .note_error("import.count: the report does not list every row".into());
        return Flow::Continue;
    }
    let mut failed = vec![false; positions.len()];
    for error in &report.errors {
        if let Some(slot) = (error.row as usize)
            .checked_sub(1)
            .and_then(|i| failed.get_mut(i))
        {
            *slot = true;
        }
        if !EXPECTED_ROW_CODES.contains(&error.code.as_str()) {
            w.rec.note_error(format!(
                "import.count: row {} refused: {}",
                error.row, error.code
            ));
        }
    }
    for (position, failed) in positions.iter().zip(failed) {
        if !failed {
            ctx.book.counted(*position);
        }
    }
    Flow::Continue
}
