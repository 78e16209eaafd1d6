//! Reservation throughput, the figure the comparison is about: single-line
//! holds, or holds of `--batch-lines` lines, spread by the data set's skew
//! and left to expire after `--hold-ttl-s` (so stock comes back during a
//! long run, and the audit checks the expiries).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::{ScenarioWorker, reserve_body};
use crate::dataset::unix_ms;
use crate::driver::Flow;
use crate::http_client::Call;
use crate::stats::Op;

pub async fn single(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let location = w.rng.below(w.ctx.data.locations.len());
    let position = w.pick_position(location);
    hold(w, scheduled, Op::Reserve, vec![(position, 1)]).await
}

pub async fn batch(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let count = w.ctx.batch_lines.max(1);
    let mut lines = Vec::with_capacity(count);
    for _ in 0..count {
        let location = w.rng.below(w.ctx.data.locations.len());
        lines.push((w.pick_position(location), 1));
    }
    hold(w, scheduled, Op::ReserveBatch, lines).await
}

async fn hold(
    w: &mut ScenarioWorker,
    scheduled: Instant,
    op: Op,
    lines: Vec<(usize, u32)>,
) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let body = reserve_body(&ctx.data, "web", &lines, ctx.hold_ttl_s);
    let sent_ms = unix_ms();
    let call = Call::json(Method::POST, "/v1/reservations", Some(&ctx.admin), body);
    if let Some(reply) = w.send(op, scheduled, call, lines.len() as u64, true).await
        && reply.status == StatusCode::CREATED
    {
        ctx.book.hold_left(sent_ms + ctx.hold_ttl_s * 1000);
    }
    Flow::Continue
}
