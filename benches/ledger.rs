use criterion::{Criterion, criterion_group, criterion_main};
use omnistock::ledger::*;
use std::hint::black_box;

fn setup() -> (Ledger, Sku, LocationCode) {
    let ledger = Ledger::new(LedgerConfig::default());
    let loc = LocationCode::new("S1").unwrap();
    ledger
        .put_location(Location {
            code: loc.clone(),
            kind: LocationKind::Store,
            name: "s".into(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        })
        .unwrap();
    let sku = Sku::new("SKU-1").unwrap();
    ledger
        .count(
            &CountRequest {
                sku: sku.clone(),
                location: loc.clone(),
                on_hand: Qty(1_000_000),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            TimestampMs(0),
            None,
        )
        .unwrap();
    (ledger, sku, loc)
}

fn bench(c: &mut Criterion) {
    let (ledger, sku, loc) = setup();
    let req = ReserveRequest {
        channel: Channel::Web,
        lines: vec![Line {
            sku,
            location: loc,
            qty: Qty(1),
        }],
        ttl_ms: 60_000,
    };
    let mut now = 1;
    c.bench_function("reserve_release", |b| {
        b.iter(|| {
            now += 1;
            let r = ledger
                .reserve(black_box(&req), TimestampMs(now), None)
                .unwrap();
            ledger.release(r.id, TimestampMs(now), None).unwrap();
        })
    });
}
criterion_group!(benches, bench);
criterion_main!(benches);
