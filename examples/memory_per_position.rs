//! Measures resident memory per position: `cargo run --release --example memory_per_position`.
//!
//! Builds positions through the public API (absolute counts, as an ERP import
//! would) and reads the process's resident set size from /proc before and
//! after. The figure therefore includes everything a position really costs:
//! the hash table slot and its spare capacity, the SKU interner's share, and
//! allocator overhead. The journal ring is allocated before the first reading.

use omnistock::ledger::*;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn measure(skus: usize, locations: usize) -> f64 {
    let ledger = Ledger::new(LedgerConfig::default());
    let codes: Vec<LocationCode> = (0..locations)
        .map(|l| LocationCode::new(&format!("STORE-{l:04}")).expect("code"))
        .collect();
    for code in &codes {
        let location = Location {
            code: code.clone(),
            kind: LocationKind::Store,
            name: code.to_string(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        };
        ledger.put_location(location).expect("location");
    }
    let before = resident_bytes();
    for s in 0..skus {
        let sku = Sku::new(&format!("SKU-{s:09}")).expect("sku");
        for code in &codes {
            let count = CountRequest {
                sku: sku.clone(),
                location: code.clone(),
                on_hand: Qty(12),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            };
            ledger.count(&count, TimestampMs(1), None).expect("count");
        }
    }
    let after = resident_bytes();
    let positions = ledger.position_count();
    assert_eq!(positions, skus * locations);
    let per_position = (after - before) as f64 / positions as f64;
    println!(
        "{positions} positions ({skus} SKUs x {locations} locations): {:.1} MiB resident, {per_position:.1} bytes per position",
        (after - before) as f64 / (1 << 20) as f64
    );
    per_position
}

fn main() {
    // Typical shape: many SKUs, each stocked at a handful of locations.
    measure(100_000, 10);
    // Worst case for the interner: every position a different SKU.
    measure(1_000_000, 1);
}
