//! The in-process flash-sale demonstration behind `omnistock demo`: one hot
//! SKU, a fixed number of units, many more buyers on every core, then an
//! audit that not one unit was oversold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::ledger::{
    Channel, CountRequest, Ledger, LedgerConfig, Line, Location, LocationCode, LocationKind, Qty,
    Refusal, ReserveRequest, Scope, Sku, TimestampMs,
};

pub fn run(units: u32, buyers: u64) -> Result<(), String> {
    let ledger = Arc::new(Ledger::new(LedgerConfig::default()));
    let store = LocationCode::new("PARIS-01").map_err(|e| e.to_string())?;
    let sku = Sku::new("SNEAKER-42").map_err(|e| e.to_string())?;
    ledger
        .put_location(Location {
            code: store.clone(),
            kind: LocationKind::Store,
            name: "Paris Rivoli".into(),
            coords: None,
            pickup: None,
            ship_from_store: true,
        })
        .map_err(|e| e.to_string())?;
    let count = CountRequest {
        sku: sku.clone(),
        location: store.clone(),
        on_hand: Qty(units),
        safety_stock: None,
        expected_version: None,
        as_of: None,
        reference: None,
    };
    ledger
        .count(&count, crate::clock::now(), None)
        .map_err(|e| e.to_string())?;

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let granted = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    println!("flash sale: {units} units of {sku} at {store}, {buyers} buyers on {threads} threads");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (ledger, sku, store, granted, refused) =
                (&ledger, &sku, &store, &granted, &refused);
            scope.spawn(move || {
                let request = ReserveRequest {
                    caps: Vec::new(),
                    channel: if thread % 2 == 0 {
                        Channel::Web
                    } else {
                        Channel::App
                    },
                    lines: vec![Line {
                        sku: sku.clone(),
                        location: store.clone(),
                        qty: Qty(1),
                    }],
                    ttl_ms: 10 * 60_000,
                };
                for _ in (thread..buyers).step_by(threads as usize) {
                    match ledger.reserve(&request, crate::clock::now(), None) {
                        Ok(_) => granted.fetch_add(1, Ordering::Relaxed),
                        Err(Refusal::InsufficientStock { .. }) => {
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(other) => panic!("unexpected refusal: {other}"),
                    };
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let (granted, refused) = (granted.into_inner(), refused.into_inner());
    let view = ledger
        .availability(&sku, &Scope::All, None, crate::clock::now())
        .map_err(|e| e.to_string())?;
    let audit = ledger.check_invariants()?;
    println!(
        "{buyers} attempts in {:.1} ms ({:.2} M/s): {granted} granted, {refused} refused",
        elapsed.as_secs_f64() * 1e3,
        buyers as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "available to fulfil now: {} (on hand {}, reserved {})",
        view.total_atf, audit.on_hand, audit.reserved
    );
    let expired = ledger.expire_due(TimestampMs(crate::clock::now().0 + 10 * 60_000), usize::MAX);
    println!(
        "ten minutes later, {expired} unpaid holds expired; available again: {}",
        ledger
            .availability(&sku, &Scope::All, None, crate::clock::now())
            .map_err(|e| e.to_string())?
            .total_atf
    );
    if granted != u64::from(units.min(u32::try_from(buyers).unwrap_or(u32::MAX)))
        || audit.reserved > audit.on_hand
    {
        return Err(format!(
            "audit failed: granted {granted} of {units} units ({audit:?})"
        ));
    }
    println!("audit: exactly {granted} units granted, 0 oversold, invariants hold");
    Ok(())
}
