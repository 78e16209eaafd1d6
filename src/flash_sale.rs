//! The in-process flash-sale demonstration behind `omnistock demo`: one hot
//! SKU, a fixed number of units, many more buyers on every core, then an
//! audit that not one unit was oversold. It drives the engine through the
//! same operations the HTTP API calls, on a clock of its own (so "ten
//! minutes later" needs no waiting).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::engine::{ApiKey, Engine, EngineConfig, ReserveOrder, Stops, WriteError};
use crate::ledger::{
    Channel, CountRequest, Ledger, LedgerConfig, Line, Location, LocationCode, LocationKind, Qty,
    Refusal, Scope, Sku, TimestampMs,
};

const HOLD_MS: u64 = 10 * 60_000;

/// The demo's buyers act through one key with the `reserve` scope.
fn buyer_key() -> ApiKey {
    ApiKey {
        id: "demo".into(),
        name: "flash-sale buyers".into(),
        scopes: BTreeSet::from([crate::engine::Scope::Reserve]),
        locations: Vec::new(),
        max_held_units: None,
        publishable: None,
    }
}

pub fn run(units: u32, buyers: u64) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(flash_sale(units, buyers))
}

async fn flash_sale(units: u32, buyers: u64) -> Result<(), String> {
    let wall = Arc::new(AtomicI64::new(crate::clock::now().0));
    let clock = {
        let wall = Arc::clone(&wall);
        Arc::new(move || TimestampMs(wall.load(Ordering::Relaxed)))
    };
    let ledger = Arc::new(Ledger::new(LedgerConfig::default()));
    let engine = Engine::with_clock(EngineConfig::default(), ledger, clock);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = engine
        .start_in_memory(Stops {
            requests: stopped.clone(),
            flusher: stopped,
        })
        .map_err(|e| e.to_string())?;
    let (store, sku) = stock_one_store(&engine, units).await?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    println!("flash sale: {units} units of {sku} at {store}, {buyers} buyers on {threads} threads");
    let started = Instant::now();
    let (granted, refused) = buy(&engine, &sku, &store, buyers, threads).await?;
    let elapsed = started.elapsed();
    let ledger = engine.ledger();
    let atf = |at| {
        ledger
            .availability(&sku, &Scope::All, None, at)
            .map(|view| view.total_atf)
            .map_err(|e| e.to_string())
    };
    let audit = ledger.check_invariants()?;
    println!(
        "{buyers} attempts in {:.1} ms ({:.2} M/s): {granted} granted, {refused} refused",
        elapsed.as_secs_f64() * 1e3,
        buyers as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "available to fulfil now: {} (on hand {}, reserved {})",
        atf(engine.now())?,
        audit.on_hand,
        audit.reserved
    );
    wall.fetch_add(HOLD_MS as i64, Ordering::Relaxed);
    let expired = engine.expire_due();
    println!(
        "ten minutes later, {expired} unpaid holds expired; available again: {}",
        atf(engine.now())?
    );
    let _ = stop.send(true);
    tasks.finish().await.map_err(|e| e.to_string())?;
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

/// One store with `units` of one SKU.
async fn stock_one_store(engine: &Engine, units: u32) -> Result<(LocationCode, Sku), String> {
    let store = LocationCode::new("PARIS-01").map_err(|e| e.to_string())?;
    let sku = Sku::new("SNEAKER-42").map_err(|e| e.to_string())?;
    engine
        .put_location(Location {
            code: store.clone(),
            kind: LocationKind::Store,
            name: "Paris Rivoli".into(),
            coords: None,
            pickup: None,
            ship_from_store: true,
        })
        .await
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
    engine
        .write(|writes| writes.count(&count, None))
        .await
        .map_err(|e| e.to_string())?;
    Ok((store, sku))
}

/// `buyers` single-unit reservations, spread over `threads` tasks; returns
/// (granted, refused). Any refusal but "insufficient stock" is a failure.
async fn buy(
    engine: &Arc<Engine>,
    sku: &Sku,
    store: &LocationCode,
    buyers: u64,
    threads: u64,
) -> Result<(u64, u64), String> {
    let granted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for thread in 0..threads {
        let (engine, granted, refused) = (Arc::clone(engine), granted.clone(), refused.clone());
        let order = ReserveOrder {
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
            ttl_ms: HOLD_MS,
            customer: None,
        };
        tasks.spawn(async move {
            let key = buyer_key();
            for _ in (thread..buyers).step_by(threads as usize) {
                match engine.reserve(&key, order.clone(), None).await {
                    Ok(_) => granted.fetch_add(1, Ordering::Relaxed),
                    Err(WriteError::Refused(Refusal::InsufficientStock { .. })) => {
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(other) => return Err(format!("unexpected refusal: {other}")),
                };
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok((
        granted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    ))
}
