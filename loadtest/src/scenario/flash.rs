//! A flash sale: one hot SKU with N units and many times more buyers, each
//! asking for one unit and paying (commit) when granted. Rounds run one after
//! the other (a new hot SKU each); the audit checks that every completed
//! round granted exactly N.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::{ScenarioWorker, reserve_body};
use crate::driver::Flow;
use crate::http_client::{Call, reservation_id};
use crate::stats::Op;

pub async fn run(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let data = &ctx.data;
    let Some(round) = ctx.book.next_flash_buyer(data) else {
        return Flow::Done;
    };
    let position = data.flash_position(round);
    let body = reserve_body(data, "app", &[(position, 1)], 600);
    let key = Some(&ctx.admin);
    let call = Call::json(Method::POST, "/v1/reservations", key, body);
    let Some(reply) = w.send(Op::FlashReserve, scheduled, call, 1, true).await else {
        return Flow::Continue;
    };
    let stats = &ctx.book.flash[round];
    if reply.status != StatusCode::CREATED {
        stats.answered.fetch_add(1, Ordering::Relaxed);
        return Flow::Continue;
    }
    stats.granted.fetch_add(1, Ordering::Relaxed);
    stats.answered.fetch_add(1, Ordering::Relaxed);
    let Some(id) = reservation_id(&reply.body) else {
        w.rec
            .note_error("flash.reserve: no id in the 201 body".into());
        return Flow::Continue;
    };
    if w.resolve_reservation(Op::FlashCommit, id, "commit", key, 1)
        .await
    {
        ctx.book.moved(position, -1);
    }
    Flow::Continue
}
