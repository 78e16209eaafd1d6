//! Write-behind figures on a real Redis (see `bench/store.sh`, which starts
//! one): full rewrite and incremental flush throughput (positions/s), and
//! recovery time for the whole store (positions/s loaded into a ledger).
//!
//! Usage: `cargo run --release --example store_bench -- REDIS_URL [SKUS] [LOCATIONS]`

use std::time::Instant;

use omnistock::clock::now;
use omnistock::ledger::{
    Changes, CountRequest, Ledger, LedgerConfig, Location, LocationCode, LocationKind, Qty, Sku,
};
use omnistock::store::redis::{RedisConfig, RedisStore};
use omnistock::store::{Batch, Store};

fn count(ledger: &Ledger, sku: &Sku, location: &LocationCode, on_hand: u32) {
    ledger
        .count(
            &CountRequest {
                sku: sku.clone(),
                location: location.clone(),
                on_hand: Qty(on_hand),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            now(),
            None,
        )
        .expect("count");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: store_bench REDIS_URL [SKUS] [LOCATIONS]");
    let skus: usize = args.next().map_or(100_000, |a| a.parse().expect("SKUS"));
    let locations: usize = args.next().map_or(10, |a| a.parse().expect("LOCATIONS"));
    let store = RedisStore::new(RedisConfig::new(&url)).expect("store");

    let ledger = Ledger::new(LedgerConfig::default());
    let shards = ledger.config().reservation_shards;
    let codes: Vec<LocationCode> = (0..locations)
        .map(|l| LocationCode::new(&format!("STORE-{l:03}")).expect("code"))
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
    let sku_ids: Vec<Sku> = (0..skus)
        .map(|s| Sku::new(&format!("SKU-{s:07}")).expect("sku"))
        .collect();
    for sku in &sku_ids {
        for code in &codes {
            count(&ledger, sku, code, 25);
        }
    }
    let positions = skus * locations;
    println!("ledger: {positions} positions ({skus} SKUs x {locations} locations)");

    // Full rewrite (first write, or after Redis came back empty).
    let started = Instant::now();
    let cut = ledger.export_all(now());
    let cut_seconds = started.elapsed().as_secs_f64();
    let write_started = Instant::now();
    store
        .write(&Batch {
            cut: &cut,
            keys: None,
            now: now(),
            reservation_shards: shards,
            clean: false,
            catalog_changed: true,
        })
        .await
        .expect("full write");
    let write_seconds = write_started.elapsed().as_secs_f64();
    println!(
        "full rewrite: cut {cut_seconds:.3} s, write {write_seconds:.3} s, {:.0} positions/s",
        positions as f64 / (cut_seconds + write_seconds)
    );
    drop(cut);

    // Incremental flushes: batches of changed positions, coalesced.
    let mut changes = Changes::new(&ledger, 100_000);
    for batch_size in [1_000usize, 10_000, 50_000] {
        let rounds = 5;
        let mut seconds = 0.0;
        let mut cut_seconds = 0.0;
        for round in 0..rounds {
            for i in 0..batch_size {
                let index = (round * batch_size + i) % positions;
                count(
                    &ledger,
                    &sku_ids[index / locations],
                    &codes[index % locations],
                    30 + round as u32,
                );
            }
            let started = Instant::now();
            ledger.collect_changes(&mut changes, now());
            let cut = ledger.cut(&mut changes, now());
            cut_seconds += started.elapsed().as_secs_f64();
            store
                .write(&Batch {
                    cut: &cut,
                    keys: None,
                    now: now(),
                    reservation_shards: shards,
                    clean: false,
                    catalog_changed: false,
                })
                .await
                .expect("write");
            changes.written(&cut);
            seconds += started.elapsed().as_secs_f64();
        }
        println!(
            "incremental flush of {batch_size} positions: {:.1} ms per batch (cut {:.1} ms), {:.0} positions/s",
            seconds * 1000.0 / rounds as f64,
            cut_seconds * 1000.0 / rounds as f64,
            (batch_size * rounds) as f64 / seconds
        );
    }

    // Recovery: everything back into a fresh ledger.
    let reader = RedisStore::new(RedisConfig::new(&url)).expect("store");
    let started = Instant::now();
    let loaded = reader.load(now()).await.expect("load").expect("not empty");
    let read_seconds = started.elapsed().as_secs_f64();
    let fresh = Ledger::new(LedgerConfig::default());
    let restore_started = Instant::now();
    let report = fresh.restore(loaded.restore, now()).expect("restore");
    let restore_seconds = restore_started.elapsed().as_secs_f64();
    let total = read_seconds + restore_seconds;
    println!(
        "recovery: {} positions, read+decode {read_seconds:.3} s, restore {restore_seconds:.3} s, total {total:.3} s, {:.0} positions/s",
        report.positions,
        report.positions as f64 / total
    );
}
