//! The README's "Using the ledger from Rust" snippet, compiled by the test
//! command so it cannot rot: `cargo run --example quickstart`.

use omnistock::ledger::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ledger = Ledger::new(LedgerConfig::default());
    let store = LocationCode::new("PARIS-01")?;
    ledger.put_location(Location {
        code: store.clone(),
        kind: LocationKind::Store,
        name: "Paris Rivoli".into(),
        coords: GeoPoint::new(48.86, 2.35),
        pickup: None,
        ship_from_store: true,
    })?;
    let sku = Sku::new("SNEAKER-42")?;
    let now = TimestampMs(1_700_000_000_000); // the ledger never reads a clock
    ledger.count(
        &CountRequest {
            sku: sku.clone(),
            location: store.clone(),
            on_hand: Qty(5),
            safety_stock: None,
            expected_version: None,
            as_of: None,
            reference: None,
        },
        now,
        None,
    )?;
    let hold = ledger.reserve(
        &ReserveRequest {
            caps: Vec::new(),
            channel: Channel::Web,
            ttl_ms: 600_000,
            lines: vec![Line {
                sku: sku.clone(),
                location: store.clone(),
                qty: Qty(2),
            }],
        },
        now,
        None,
    )?;
    let done = ledger.commit(
        &CommitRequest {
            id: hold.id,
            lines: None,
        },
        Acting::Any,
        now,
        None,
    )?;
    let position = ledger.position(&sku, &store, Some(Channel::Web), now)?;
    println!(
        "reservation {} {}: {} on hand, {} available to fulfil",
        done.id,
        done.state.as_str(),
        position.on_hand,
        position.atf
    );
    assert_eq!((position.on_hand, position.atf), (Qty(3), Qty(3)));
    Ok(())
}
