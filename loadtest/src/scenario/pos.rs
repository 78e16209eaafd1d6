//! A store's tills, each with a POS key limited to its own store: sales
//! (70 %), returns to sellable stock (20 %), and the store receiving a
//! delivery (10 %, through the ERP's key).

use std::sync::Arc;

use hyper::Method;
use tokio::time::Instant;

use super::{ScenarioWorker, lines_json};
use crate::driver::Flow;
use crate::http_client::Call;
use crate::stats::Op;

pub async fn run(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let data = &ctx.data;
    if data.stores == 0 {
        return Flow::Done;
    }
    let store = w.rng.below(data.stores);
    let Some(till_key) = ctx.pos_keys.get(store).or(ctx.pos_keys.first()) else {
        return Flow::Done;
    };
    let position = w.pick_position(store);
    let (sku, location) = data.codes(position);
    let roll = w.rng.below(100);
    if roll < 70 {
        let body = format!(
            r#"{{"channel":"pos","lines":{},"reference":"till"}}"#,
            lines_json(data, &[(position, 1)])
        );
        let call = Call::json(Method::POST, "/v1/sales", Some(till_key), body);
        if let Some(reply) = w.send(Op::PosSale, scheduled, call, 1, true).await
            && reply.status.is_success()
        {
            ctx.book.moved(position, -1);
        }
    } else if roll < 90 {
        let body = format!(
            r#"{{"channel":"pos","sku":"{sku}","location":"{location}","qty":1,"sellable":true,"reason":"customer return"}}"#
        );
        let call = Call::json(Method::POST, "/v1/returns", Some(till_key), body);
        if w.send(Op::PosReturn, scheduled, call, 1, false)
            .await
            .is_some()
        {
            ctx.book.moved(position, 1);
        }
    } else {
        let qty = 5 + w.rng.below(16) as u32;
        let body = format!(
            r#"{{"sku":"{sku}","location":"{location}","qty":{qty},"reference":"delivery"}}"#
        );
        let call = Call::json(Method::POST, "/v1/receipts", Some(&ctx.admin), body);
        if w.send(Op::PosReceipt, scheduled, call, 1, false)
            .await
            .is_some()
        {
            ctx.book.moved(position, i64::from(qty));
        }
    }
    Flow::Continue
}
