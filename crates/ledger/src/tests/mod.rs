//! Table-driven tests of every ledger operation and every refusal, one
//! module per operation; the fixtures they share are here.

use super::*;

mod caller_scopes;
mod catalog;
mod commit_release;
mod expiry;
mod hold_caps;
mod idempotency;
mod journal;
mod queries;
mod reserve;
mod restore;
mod stock;
mod transfer;

const T0: TimestampMs = TimestampMs(1_000_000);
const TTL: u64 = 60_000;

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}
fn loc(s: &str) -> LocationCode {
    LocationCode::new(s).expect("valid location")
}
fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).expect("valid key")
}
fn line(s: &str, l: &str, qty: u32) -> Line {
    Line {
        sku: sku(s),
        location: loc(l),
        qty: Qty(qty),
    }
}

fn store(code: &str, lat: f64, lon: f64, pickup: bool) -> Location {
    Location {
        code: loc(code),
        kind: LocationKind::Store,
        name: format!("Store {code}"),
        coords: GeoPoint::new(lat, lon),
        pickup: pickup.then_some(Pickup {
            method: PickupMethod::Buy,
            sla: Some(PickupSla::SameDay),
        }),
        ship_from_store: false,
    }
}

/// Stores A (Paris), B (Lyon), warehouse W; group `online` = {B, W};
/// web holds back 2 at A; marketplace capped at 5 across `online`.
fn fixture() -> Ledger {
    fixture_with(LedgerConfig {
        position_history_len: 4,
        ..LedgerConfig::default()
    })
}

/// The fixture with one reservation shard, so its deadline index sees every hold.
fn one_reservation_shard() -> Ledger {
    fixture_with(LedgerConfig {
        reservation_shards: 1,
        ..LedgerConfig::default()
    })
}

fn fixture_with(config: LedgerConfig) -> Ledger {
    let ledger = Ledger::new(config);
    ledger
        .put_location(store("A", 48.8566, 2.3522, true))
        .expect("A");
    ledger
        .put_location(store("B", 45.7640, 4.8357, false))
        .expect("B");
    ledger
        .put_location(Location {
            kind: LocationKind::Warehouse,
            coords: None,
            ..store("W", 0.0, 0.0, false)
        })
        .expect("W");
    ledger
        .put_group(
            GroupName::new("online").expect("name"),
            &[loc("B"), loc("W")],
        )
        .expect("group");
    ledger
        .put_policy(
            Channel::Web,
            PolicyScope::Location(loc("A")),
            Some(ChannelPolicy {
                held_back: Qty(2),
                cap: None,
            }),
        )
        .expect("policy");
    ledger
        .put_policy(
            Channel::Marketplace,
            PolicyScope::Group(GroupName::new("online").expect("name")),
            Some(ChannelPolicy {
                held_back: Qty(0),
                cap: Some(Qty(5)),
            }),
        )
        .expect("policy");
    for (s, l, n) in [
        ("S1", "A", 10),
        ("S1", "B", 10),
        ("S1", "W", 100),
        ("S2", "A", 3),
    ] {
        set(&ledger, s, l, n);
    }
    ledger
}

fn set(ledger: &Ledger, s: &str, l: &str, on_hand: u32) -> PositionView {
    ledger
        .count(
            &CountRequest {
                sku: sku(s),
                location: loc(l),
                on_hand: Qty(on_hand),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            T0,
            None,
        )
        .expect("count")
}

fn pos(ledger: &Ledger, s: &str, l: &str) -> PositionView {
    ledger
        .position(&sku(s), &loc(l), None, T0)
        .expect("position")
}

fn reserve(
    ledger: &Ledger,
    channel: Channel,
    lines: Vec<Line>,
) -> Result<ReservationView, Refusal> {
    ledger.reserve(
        &ReserveRequest {
            caps: Vec::new(),
            channel,
            lines,
            ttl_ms: TTL,
        },
        T0,
        None,
    )
}

fn assert_consistent(ledger: &Ledger) {
    ledger.check_invariants().expect("invariants hold");
}

/// Everything observable: positions, journal head, held reservations.
fn state(ledger: &Ledger) -> (Vec<PositionView>, Seq, InvariantReport) {
    let mut positions: Vec<_> = (0..ledger.position_shard_count())
        .flat_map(|i| ledger.positions_in_shard(i, None, T0))
        .collect();
    positions.sort_by(|a, b| {
        (a.sku.as_str(), a.location.as_str()).cmp(&(b.sku.as_str(), b.location.as_str()))
    });
    (
        positions,
        ledger.journal_head(),
        ledger.check_invariants().expect("invariants"),
    )
}

fn t_plus(ms: i64) -> TimestampMs {
    TimestampMs(T0.0 + ms)
}

/// Rebuilds a fresh ledger from everything `ledger` would persist.
fn restored(ledger: &Ledger, now: TimestampMs) -> (Ledger, RestoreReport) {
    let cut = ledger.export_all(now);
    let fresh = Ledger::new(ledger.config().clone());
    let report = fresh
        .restore(
            Restore {
                head: cut.head,
                reservation_shards: ledger.config().reservation_shards,
                reservation_next_local: cut.reservation_next_local.clone(),
                catalog: Some(cut.catalog.clone()),
                positions: cut.positions.clone(),
                reservations: cut.reservations.clone(),
                idempotency: cut.idempotency.clone(),
                cursor_lineage: Some(cut.cursor_lineage),
                cursor_floor: cut.cursor_floor,
                clean: true,
            },
            now,
        )
        .expect("restores");
    (fresh, report)
}
