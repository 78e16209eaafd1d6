//! Encode and decode time of the stored positions alone (no Redis), the
//! part of `store_bench`'s full rewrite and recovery that the value format
//! decides: 100,000 SKUs x 10 locations, one field per SKU, as the store
//! writes them.
//!
//! Usage: `cargo run --example codec_bench -p omnistock-store [SKUS] [ROUNDS]`

use std::time::Instant;

use omnistock_ledger::{LocationCode, PositionRecord, Qty, Seq, Sku, TimestampMs};
use omnistock_store::codec;

fn main() {
    let mut args = std::env::args().skip(1);
    let skus: u64 = args.next().map_or(100_000, |a| a.parse().expect("SKUS"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let codes: Vec<LocationCode> = (0..10)
        .map(|l| LocationCode::new(&format!("STORE-{l:03}")).expect("code"))
        .collect();
    let records: Vec<Vec<PositionRecord>> = (0..skus)
        .map(|s| {
            let sku = Sku::new(&format!("SKU-{s:07}")).expect("sku");
            codes
                .iter()
                .map(|code| PositionRecord {
                    sku: sku.clone(),
                    location: code.clone(),
                    on_hand: Qty(25),
                    reserved: Qty(0),
                    safety_stock: Qty(0),
                    non_sellable: Qty(0),
                    version: Seq(4_294_967_296 + s),
                    last_count_as_of: TimestampMs(1_700_000_000_000),
                    incoming: Vec::new(),
                    history: vec![(TimestampMs(1_700_000_000_000), 25)],
                    history_horizon: TimestampMs(0),
                    display_only: false,
                    published_lag: 0,
                })
                .collect()
        })
        .collect();
    let positions = records.len() * codes.len();
    for round in 1..=rounds {
        let started = Instant::now();
        let encoded: Vec<_> = records
            .iter()
            .map(|p| {
                let field = codec::sku_field(&p[0].sku).into_owned();
                (field, codec::encode_sku_positions(p))
            })
            .collect();
        let encode_ns = started.elapsed().as_nanos() as f64 / positions as f64;
        let bytes: usize = encoded.iter().map(|(_, v)| v.len()).sum();
        let started = Instant::now();
        let mut locations = Default::default();
        let mut decoded = 0;
        for (field, value) in &encoded {
            decoded += codec::decode_sku_positions_with(field, value.as_ref(), &mut locations)
                .expect("decodes")
                .len();
        }
        let decode_ns = started.elapsed().as_nanos() as f64 / positions as f64;
        assert_eq!(decoded, positions);
        println!(
            "round {round}: {positions} positions, encode {encode_ns:.0} ns/position, \
             decode {decode_ns:.0} ns/position, {:.1} bytes/position",
            bytes as f64 / positions as f64
        );
    }
}
