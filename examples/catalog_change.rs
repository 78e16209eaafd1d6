//! How long a catalog change holds writers back:
//! `cargo run --release --example catalog_change [POSITIONS]` (default 1,000,000).
//!
//! A catalog change is applied with every position shard locked (so that
//! incremental feeds list exactly the rows it changes; see
//! `ledger/publishing.rs`). A change of the ads channel's policy also walks
//! the positions to mark the rows whose published quantity it moves, and
//! writers wait for that walk. This times both kinds, five times each, on
//! `POSITIONS` positions spread over 40 stores, and prints the median.

use std::time::Instant;

use omnistock::ledger::*;

const STORES: usize = 40;

fn main() {
    let positions: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("POSITIONS: a number"))
        .unwrap_or(1_000_000);
    let ledger = Ledger::new(LedgerConfig::default());
    let codes: Vec<LocationCode> = (0..STORES)
        .map(|l| LocationCode::new(&format!("STORE-{l:02}")).expect("code"))
        .collect();
    for code in &codes {
        ledger
            .put_location(Location {
                code: code.clone(),
                kind: LocationKind::Store,
                name: code.to_string(),
                coords: None,
                pickup: None,
                ship_from_store: false,
            })
            .expect("location");
    }
    let group = GroupName::new("stores").expect("group");
    ledger.put_group(group.clone(), &codes).expect("group");
    for s in 0..positions.div_ceil(STORES) {
        let sku = Sku::new(&format!("SKU-{s:08}")).expect("sku");
        for (l, code) in codes.iter().enumerate() {
            let count = CountRequest {
                sku: sku.clone(),
                location: code.clone(),
                on_hand: Qty(((s * 7 + l) % 13) as u32),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            };
            ledger.count(&count, TimestampMs(1), None).expect("count");
        }
    }
    let median = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let time = |channel: Channel, round: u32| {
        let started = Instant::now();
        ledger
            .put_policy(
                channel,
                PolicyScope::Group(group.clone()),
                Some(ChannelPolicy {
                    held_back: Qty(round % 3),
                    cap: Some(Qty(5 + round % 4)),
                }),
            )
            .expect("policy");
        started.elapsed().as_secs_f64() * 1e3
    };
    let other: Vec<f64> = (1..=5).map(|round| time(Channel::Web, round)).collect();
    let ads: Vec<f64> = (1..=5).map(|round| time(Channel::Ads, round)).collect();
    println!(
        "{} positions: web policy change {:.3} ms, ads policy change {:.1} ms (median of 5)",
        ledger.position_count(),
        median(other),
        median(ads)
    );
}
