//! An ad-feed poller (Google local inventory for the data set's stores): the
//! first poll and one in `--feed-incremental-per-full + 1` afterwards pull the
//! full feed; the others only what changed since the last cursor.

use std::sync::Arc;

use tokio::time::Instant;

use super::ScenarioWorker;
use crate::dataset::STORE_GROUP;
use crate::driver::Flow;
use crate::http_client::Call;
use crate::stats::Op;

pub async fn run(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let full = match w.feed_cursor {
        None => true,
        Some(_) => w.rng.below(ctx.feed_incremental_per_full as usize + 1) == 0,
    };
    let (op, path) = match (full, &w.feed_cursor) {
        (false, Some(cursor)) => (
            Op::FeedIncremental,
            format!("/v1/feeds/google/local-inventory?group={STORE_GROUP}&since={cursor}"),
        ),
        _ => (
            Op::FeedFull,
            format!("/v1/feeds/google/local-inventory?group={STORE_GROUP}"),
        ),
    };
    if let Some(reply) = w
        .send(op, scheduled, Call::get(&path, Some(&ctx.admin)), 0, false)
        .await
    {
        match reply.cursor {
            Some(cursor) => w.feed_cursor = Some(cursor),
            None => w.rec.note_error(format!("{}: no X-Next-Cursor", op.name())),
        }
    }
    Flow::Continue
}
