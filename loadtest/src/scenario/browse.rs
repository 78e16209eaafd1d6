//! Storefront reads: a product page (one position), "available in which
//! stores" (one SKU across the store group), a cart or listing page (a batch
//! of 20 positions) and "find it near me" (nearby stores).

use std::sync::Arc;

use hyper::Method;
use tokio::time::Instant;

use super::ScenarioWorker;
use crate::dataset::STORE_GROUP;
use crate::driver::Flow;
use crate::http_client::Call;
use crate::stats::Op;

pub async fn run(w: &mut ScenarioWorker, scheduled: Instant) -> Flow {
    let ctx = Arc::clone(&w.ctx);
    let data = &ctx.data;
    let key = Some(&ctx.admin);
    let roll = w.rng.below(100);
    if roll < 50 {
        let location = w.rng.below(data.locations.len());
        let position = w.pick_position(location);
        let (sku, location) = data.codes(position);
        let path = format!("/v1/stock/{location}/{sku}?channel=web");
        w.send(
            Op::BrowsePosition,
            scheduled,
            Call::get(&path, key),
            0,
            false,
        )
        .await;
    } else if roll < 70 {
        let sku = &data.skus[data.sku_picker.pick(&mut w.rng)];
        let path = format!("/v1/availability/{sku}?group={STORE_GROUP}&channel=web");
        w.send(Op::BrowseSku, scheduled, Call::get(&path, key), 0, false)
            .await;
    } else if roll < 90 {
        let mut items = String::with_capacity(20 * 48);
        for i in 0..20 {
            let location = w.rng.below(data.locations.len());
            let position = w.pick_position(location);
            let (sku, location) = data.codes(position);
            if i > 0 {
                items.push(',');
            }
            items.push_str(&format!(r#"{{"sku":"{sku}","location":"{location}"}}"#));
        }
        let body = format!(r#"{{"channel":"web","items":[{items}]}}"#);
        let call = Call::json(Method::POST, "/v1/availability/batch", key, body);
        w.send(Op::BrowseBatch, scheduled, call, 0, false).await;
    } else {
        let sku = &data.skus[data.sku_picker.pick(&mut w.rng)];
        let (lat, lon) = (48.64 + w.rng.unit() * 0.4, 2.02 + w.rng.unit() * 0.6);
        let path =
            format!("/v1/nearby?sku={sku}&lat={lat:.4}&lon={lon:.4}&radius_km=15&channel=web");
        w.send(Op::BrowseNearby, scheduled, Call::get(&path, key), 0, false)
            .await;
    }
    Flow::Continue
}
