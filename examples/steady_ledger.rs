//! The ledger's share of the HTTP steady-state benchmark, without HTTP:
//! `cargo run --release --example steady_ledger [REQUESTS_PER_S] [SECONDS]`.
//!
//! Single-line reservations with 60 s holds arrive at REQUESTS_PER_S on a
//! simulated clock, and the expiry sweep runs every 10 ms of that clock
//! (the server's default interval). After 70 simulated seconds (holds
//! expire as fast as they arrive, and resolved ones are forgotten at the
//! cap), SECONDS of simulated traffic are timed: the figure is wall-clock
//! nanoseconds per reservation, its expiry and its forgetting included.
//! One thread, so it measures work and cache misses, not contention.

use std::time::Instant;

use omnistock::ledger::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let per_second: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(40_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let ledger = Ledger::new(LedgerConfig::default());
    let location = LocationCode::new("WH-NORD").expect("code");
    ledger
        .put_location(Location {
            code: location.clone(),
            kind: LocationKind::Warehouse,
            name: "Nord".into(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        })
        .expect("location");
    let sku = Sku::new("HOT").expect("sku");
    let count = CountRequest {
        sku: sku.clone(),
        location: location.clone(),
        on_hand: Qty(4_000_000_000),
        safety_stock: None,
        expected_version: None,
        as_of: None,
        reference: None,
    };
    ledger.count(&count, TimestampMs(0), None).expect("count");
    let request = ReserveRequest {
        caps: Vec::new(),
        channel: Channel::Web,
        lines: vec![Line {
            sku,
            location,
            qty: Qty(1),
        }],
        ttl_ms: 60_000,
    };
    let per_sweep = per_second / 100;
    let warm_sweeps = 70 * 100;
    let timed_sweeps = seconds * 100;
    let mut started = None;
    for sweep in 0..warm_sweeps + timed_sweeps {
        if sweep == warm_sweeps {
            started = Some(Instant::now());
        }
        let now = TimestampMs(1_000 + sweep as i64 * 10);
        for _ in 0..per_sweep {
            ledger.reserve(&request, now, None).expect("granted");
        }
        ledger.tick(now, 10_000);
    }
    let elapsed = started.expect("timed").elapsed();
    let requests = timed_sweeps * per_sweep;
    println!(
        "{per_second} reservations/s of simulated time, {seconds} s timed: {:.0} ns per reservation (its expiry and forgetting included)",
        elapsed.as_nanos() as f64 / requests as f64
    );
}
