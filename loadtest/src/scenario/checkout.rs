//! Online checkout: a cart of 1-5 lines (warehouses and ship-from stores) is
//! held with a TTL, then 80 % are committed (paid), 15 % released (abandoned
//! with a click) and 5 % left to expire (abandoned tab; their TTL is
//! `--hold-ttl-s`, so they expire during the run and the audit can see it).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::{ScenarioWorker, reserve_body};
use crate::dataset::unix_ms;
use crate::driver::Flow;
use crate::http_client::{Call, reservation_id};
use crate::stats::Op;

/// TTL of carts that will be committed or released: long, as a real checkout's.
const CART_TTL_S: u64 = 600;

pub async fn run(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let data = &ctx.data;
    let key = Some(&ctx.admin);
    let count = 1 + w.rng.below(5);
    let warehouses = data.locations.len() - data.stores;
    let mut lines = Vec::with_capacity(count);
    for _ in 0..count {
        let location = if warehouses > 0 && (data.stores == 0 || w.rng.chance(0.6)) {
            data.stores + w.rng.below(warehouses)
        } else {
            w.rng.below(data.stores.max(1))
        };
        let position = w.pick_position(location);
        lines.push((position, 1 + w.rng.below(2) as u32));
    }
    let fate = w.rng.below(100);
    let ttl_s = if fate >= 95 {
        ctx.hold_ttl_s
    } else {
        CART_TTL_S
    };
    let body = reserve_body(data, "web", &lines, ttl_s);
    let sent_ms = unix_ms();
    let call = Call::json(Method::POST, "/v1/reservations", key, body);
    let Some(reply) = w
        .send(Op::CheckoutReserve, scheduled, call, count as u64, true)
        .await
    else {
        return Flow::Continue;
    };
    if reply.status != StatusCode::CREATED {
        return Flow::Continue;
    }
    let Some(id) = reservation_id(&reply.body) else {
        w.rec
            .note_error("checkout.reserve: no id in the 201 body".into());
        return Flow::Continue;
    };
    if fate < 80 {
        if w.resolve_reservation(Op::CheckoutCommit, id, "commit", key, count as u64)
            .await
        {
            for (position, qty) in &lines {
                ctx.book.moved(*position, -i64::from(*qty));
            }
        }
    } else if fate < 95 {
        w.resolve_reservation(Op::CheckoutRelease, id, "release", key, count as u64)
            .await;
    } else {
        ctx.book.hold_left(sent_ms + ttl_s * 1000);
    }
    Flow::Continue
}
