//! Incremental feeds never miss a row: catalog changes list exactly the
//! rows they change, cursors a ledger cannot answer exactly get a full feed
//! with the reason, and a poller that applies increments converges on the
//! full feed while writers and catalog changes run concurrently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::cursor::{Cursor, SentCursor, Unhonoured};
use omnistock_ledger::{
    Acting, Channel, ChannelPolicy, CountRequest, GroupName, LedgerConfig, Line, LocationCode,
    LocationKind, Pickup, PickupSla, PolicyScope, Qty, ReserveRequest, Restore, Sku, TimestampMs,
};

const T0: TimestampMs = TimestampMs(1_700_000_000_000);
const LINEAGE: u64 = 0x5eed;

/// (store, sku) -> the whole TSV line, so column changes count too.
type Rows = BTreeMap<(String, String), String>;

fn code(text: &str) -> LocationCode {
    LocationCode::new(text).expect("code")
}

fn location(text: &str, kind: LocationKind, pickup: Option<Pickup>) -> Location {
    Location {
        code: code(text),
        kind,
        name: text.to_owned(),
        coords: None,
        pickup,
        ship_from_store: false,
    }
}

fn buy_same_day() -> Option<Pickup> {
    Some(Pickup {
        method: PickupMethod::Buy,
        sla: Some(PickupSla::SameDay),
    })
}

fn count(ledger: &Ledger, sku: &str, at: &str, on_hand: u32) {
    ledger
        .count(
            &CountRequest {
                sku: Sku::new(sku).expect("sku"),
                location: code(at),
                on_hand: Qty(on_hand),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            T0,
            None,
        )
        .expect("count");
}

fn policy(ledger: &Ledger, channel: Channel, at: &str, held_back: u32, cap: Option<u32>) {
    ledger
        .put_policy(
            channel,
            PolicyScope::Location(code(at)),
            Some(ChannelPolicy {
                held_back: Qty(held_back),
                cap: cap.map(Qty),
            }),
        )
        .expect("policy");
}

/// Stores S1 and S2 (pickup: buy, same day), warehouse W; SKUs A (10
/// units), B (3) and C (0) everywhere.
fn seeded() -> Ledger {
    let ledger = Ledger::new(LedgerConfig::default());
    ledger.set_cursor_lineage(LINEAGE);
    for store in ["S1", "S2"] {
        ledger
            .put_location(location(store, LocationKind::Store, buy_same_day()))
            .expect("store");
    }
    ledger
        .put_location(location("W", LocationKind::Warehouse, None))
        .expect("warehouse");
    for at in ["S1", "S2", "W"] {
        for (sku, units) in [("A", 10), ("B", 3), ("C", 0)] {
            count(&ledger, sku, at, units);
        }
    }
    ledger
}

/// A Google TSV feed: its rows, whether it was full, the next cursor.
fn feed(ledger: &Ledger, since: Option<Cursor>, group: Option<&str>) -> (Rows, Snapshot, Cursor) {
    let request = FeedRequest {
        since: since.map(SentCursor::Cursor),
        store: None,
        group,
        format: Format::GoogleTsv,
        low_stock_threshold: 2,
    };
    let (plan, next) = FeedPlan::plan(ledger, &request).expect("plan");
    let mut out = Vec::new();
    plan.write_all(ledger, &mut out).expect("render");
    let text = String::from_utf8(out).expect("utf-8");
    let rows = text
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split('\t');
            let store = fields.next().expect("store").to_owned();
            let sku = fields.next().expect("id").to_owned();
            ((store, sku), line.to_owned())
        })
        .collect();
    (rows, plan.snapshot(), next)
}

fn keys(rows: &Rows) -> Vec<(&str, &str)> {
    rows.keys()
        .map(|(store, sku)| (store.as_str(), sku.as_str()))
        .collect()
}

#[test]
fn catalog_changes_list_exactly_the_rows_they_change() {
    let ledger = seeded();
    let (all, snapshot, cursor) = feed(&ledger, None, None);
    assert_eq!(snapshot, Snapshot::Full(FullReason::NoCursor));
    assert_eq!(all.len(), 6, "two stores x three SKUs, no warehouse");

    // A buffer for the web channel only: nothing the ads channel publishes.
    policy(&ledger, Channel::Web, "S1", 2, None);
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), None);
    assert_eq!((snapshot, keys(&rows)), (Snapshot::Incremental, vec![]));

    // A new store without stock: no row yet.
    ledger
        .put_location(location("S3", LocationKind::Store, None))
        .expect("store");
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), None);
    assert_eq!((snapshot, keys(&rows)), (Snapshot::Incremental, vec![]));

    // An ads cap of 5 at S1 moves A (10 -> 5), not B (3) nor C (0).
    policy(&ledger, Channel::Ads, "S1", 0, Some(5));
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), None);
    assert_eq!(
        (snapshot, keys(&rows)),
        (Snapshot::Incremental, vec![("S1", "A")])
    );
    assert!(rows[&("S1".into(), "A".into())].contains("\tin_stock\t5\t"));

    // A store's pickup columns change every row of that store.
    ledger
        .put_location(location("S2", LocationKind::Store, None))
        .expect("store");
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), None);
    assert_eq!(
        (snapshot, keys(&rows)),
        (
            Snapshot::Incremental,
            vec![("S2", "A"), ("S2", "B"), ("S2", "C")]
        )
    );

    // A store that becomes a warehouse takes rows away: full, once.
    ledger
        .put_location(location("S2", LocationKind::Warehouse, None))
        .expect("warehouse");
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), None);
    assert_eq!(snapshot, Snapshot::Full(FullReason::RowsRemoved));
    assert_eq!(keys(&rows), vec![("S1", "A"), ("S1", "B"), ("S1", "C")]);
    let (rows, snapshot, _) = feed(&ledger, Some(cursor), None);
    assert_eq!((snapshot, keys(&rows)), (Snapshot::Incremental, vec![]));
}

#[test]
fn a_group_feed_lists_stores_that_join_and_is_full_once_when_one_leaves() {
    let ledger = seeded();
    let group = |members: &[&str]| {
        let members: Vec<LocationCode> = members.iter().map(|m| code(m)).collect();
        ledger
            .put_group(GroupName::new("g").expect("name"), &members)
            .expect("group");
    };
    group(&["S1"]);
    let (rows, _, cursor) = feed(&ledger, None, Some("g"));
    assert_eq!(rows.len(), 3);
    group(&["S1", "S2", "W"]);
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), Some("g"));
    assert_eq!(
        (snapshot, keys(&rows)),
        (
            Snapshot::Incremental,
            vec![("S2", "A"), ("S2", "B"), ("S2", "C")]
        ),
        "the store that joined, whole; the warehouse is never published"
    );
    group(&["S2"]);
    let (rows, snapshot, cursor) = feed(&ledger, Some(cursor), Some("g"));
    assert_eq!(snapshot, Snapshot::Full(FullReason::RowsRemoved));
    assert_eq!(rows.len(), 3);
    let (rows, snapshot, _) = feed(&ledger, Some(cursor), Some("g"));
    assert_eq!((snapshot, rows.len()), (Snapshot::Incremental, 0));
}

/// Everything a store would hold of `ledger`, restored into a fresh one:
/// after a graceful stop (`clean`) or a crash.
fn restarted(ledger: &Ledger, clean: bool) -> Ledger {
    let cut = ledger.export_all(T0);
    let fresh = Ledger::new(ledger.config().clone());
    fresh
        .restore(
            Restore {
                head: cut.head,
                cursor_lineage: Some(cut.cursor_lineage),
                cursor_floor: cut.cursor_floor,
                clean,
                reservation_shards: ledger.config().reservation_shards,
                reservation_next_local: cut.reservation_next_local.clone(),
                catalog: Some(cut.catalog.clone()),
                positions: cut.positions.clone(),
                reservations: cut.reservations.clone(),
                idempotency: cut.idempotency.clone(),
            },
            T0,
        )
        .expect("restores");
    fresh
}

#[test]
fn cursors_a_ledger_cannot_answer_exactly_get_everything_with_the_reason() {
    let ledger = seeded();
    let (_, _, cursor) = feed(&ledger, None, None);
    let unhonoured = |ledger: &Ledger, cursor: Cursor| feed(ledger, Some(cursor), None).1;

    let ahead = Cursor {
        seq: Seq(ledger.journal_head().0 + 1_000),
        ..cursor
    };
    assert_eq!(
        unhonoured(&ledger, ahead),
        Snapshot::Full(FullReason::Unhonoured(Unhonoured::AheadOfHead))
    );
    let other = Cursor {
        lineage: LINEAGE + 1,
        ..cursor
    };
    assert_eq!(
        unhonoured(&ledger, other),
        Snapshot::Full(FullReason::Unhonoured(Unhonoured::OtherLineage))
    );
    let (rows, legacy, _) = {
        let request = FeedRequest {
            since: Some(SentCursor::Legacy(99_999_999)),
            store: None,
            group: None,
            format: Format::GoogleTsv,
            low_stock_threshold: 2,
        };
        let (plan, next) = FeedPlan::plan(&ledger, &request).expect("plan");
        (plan.stores.iter().flatten().count(), plan.snapshot(), next)
    };
    assert_eq!(
        (rows, legacy),
        (
            2,
            Snapshot::Full(FullReason::Unhonoured(Unhonoured::Legacy))
        )
    );

    // A graceful restart keeps cursors: a change after it is listed alone.
    let graceful = restarted(&ledger, true);
    count(&graceful, "B", "S2", 7);
    let (rows, snapshot, _) = feed(&graceful, Some(cursor), None);
    assert_eq!(
        (snapshot, keys(&rows)),
        (Snapshot::Incremental, vec![("S2", "B")])
    );
    // A crash may have lost what clients saw: everything, once.
    let crashed = restarted(&ledger, false);
    let (rows, snapshot, next) = feed(&crashed, Some(cursor), None);
    assert_eq!(
        (snapshot, rows.len()),
        (
            Snapshot::Full(FullReason::Unhonoured(Unhonoured::BeforeRestart)),
            6
        )
    );
    assert_eq!(feed(&crashed, Some(next), None).1, Snapshot::Incremental);
}

#[test]
fn a_cursor_older_than_the_catalog_versions_kept_gets_everything() {
    let ledger = Ledger::new(LedgerConfig {
        catalog_history_len: 2,
        ..LedgerConfig::default()
    });
    ledger
        .put_location(location("S1", LocationKind::Store, None))
        .expect("store");
    count(&ledger, "A", "S1", 4);
    let (_, _, cursor) = feed(&ledger, None, None);
    policy(&ledger, Channel::Web, "S1", 1, None);
    assert_eq!(feed(&ledger, Some(cursor), None).1, Snapshot::Incremental);
    policy(&ledger, Channel::Web, "S1", 2, None);
    assert_eq!(
        feed(&ledger, Some(cursor), None).1,
        Snapshot::Full(FullReason::CatalogHistory)
    );
}

/// A tiny deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const STORES: [&str; 4] = ["S1", "S2", "S3", "S4"];
const SKUS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];

fn writer(ledger: &Ledger, seed: u64, stop: &AtomicBool) {
    let mut rng = Rng(seed);
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sku = SKUS[rng.below(SKUS.len() as u64) as usize];
        let at = STORES[rng.below(STORES.len() as u64) as usize];
        match rng.below(3) {
            0 => count(ledger, sku, at, rng.below(12) as u32),
            1 => {
                let request = ReserveRequest {
                    channel: Channel::Web,
                    lines: vec![Line {
                        sku: Sku::new(sku).expect("sku"),
                        location: code(at),
                        qty: Qty(1 + rng.below(3) as u32),
                    }],
                    ttl_ms: 60_000,
                    caps: Vec::new(),
                };
                if let Ok(view) = ledger.reserve(&request, T0, None) {
                    held.push(view.id);
                }
            }
            _ => {
                if let Some(id) = held.pop() {
                    ledger.release(id, Acting::Any, T0, None).expect("release");
                }
            }
        }
    }
}

fn catalog_changer(ledger: &Ledger, seed: u64, stop: &AtomicBool) {
    let mut rng = Rng(seed);
    while !stop.load(Ordering::Relaxed) {
        let at = STORES[rng.below(STORES.len() as u64) as usize];
        match rng.below(4) {
            0 => {
                let cap = (rng.below(2) == 0).then(|| rng.below(8) as u32);
                policy(ledger, Channel::Ads, at, rng.below(3) as u32, cap);
            }
            1 => policy(ledger, Channel::Web, at, rng.below(3) as u32, None),
            2 => {
                let pickup = (rng.below(2) == 0).then(buy_same_day).flatten();
                ledger
                    .put_location(location(at, LocationKind::Store, pickup))
                    .expect("store");
            }
            _ => {
                // Rarely: a store leaving the feed makes the next poll
                // full, which would hide a missed row.
                let kind = if rng.below(8) == 0 {
                    LocationKind::Warehouse
                } else {
                    LocationKind::Store
                };
                ledger
                    .put_location(location(at, kind, None))
                    .expect("location");
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Polls incrementally for `duration`, applying what comes. The test's own
/// stopwatch: the threads it races are real, the code under test reads no clock.
#[allow(clippy::disallowed_methods)]
fn poll_for(ledger: &Ledger, held: &mut Rows, cursor: &mut Cursor, duration_ms: u64) -> usize {
    let mut increments = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(duration_ms) {
        let (rows, snapshot, next) = feed(ledger, Some(*cursor), None);
        match snapshot {
            Snapshot::Incremental => {
                increments += 1;
                held.extend(rows);
            }
            Snapshot::Full(_) => *held = rows,
        }
        *cursor = next;
    }
    increments
}

/// The property the cursors exist for: a client that takes one full feed
/// and then applies increments holds, once writes stop, exactly what a
/// full feed says, whatever ran concurrently. The writers stop before the
/// catalog changes do, so the last catalog changes' rows are listed by
/// nothing but the catalog change itself.
#[test]
fn a_poller_applying_increments_converges_under_concurrent_writes_and_catalog_changes() {
    for round in 0..4_u64 {
        let ledger = Arc::new(Ledger::new(LedgerConfig::default()));
        ledger.set_cursor_lineage(LINEAGE);
        for at in STORES {
            ledger
                .put_location(location(at, LocationKind::Store, None))
                .expect("store");
            for sku in SKUS {
                count(&ledger, sku, at, 5);
            }
        }
        let stop_writers = Arc::new(AtomicBool::new(false));
        let stop_catalog = Arc::new(AtomicBool::new(false));
        let spawn = |thread: u64| {
            let ledger = Arc::clone(&ledger);
            let stop = Arc::clone(if thread == 2 {
                &stop_catalog
            } else {
                &stop_writers
            });
            std::thread::spawn(move || {
                let seed = 0x9E37_79B9 + round * 7 + thread;
                if thread == 2 {
                    catalog_changer(&ledger, seed, &stop);
                } else {
                    writer(&ledger, seed, &stop);
                }
            })
        };
        let threads: Vec<_> = (0..3_u64).map(spawn).collect();
        let (mut held, _, mut cursor) = feed(&ledger, None, None);
        let mut increments = poll_for(&ledger, &mut held, &mut cursor, 200);
        stop_writers.store(true, Ordering::Relaxed);
        increments += poll_for(&ledger, &mut held, &mut cursor, 100);
        stop_catalog.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().expect("thread");
        }
        let (rows, snapshot, _) = feed(&ledger, Some(cursor), None);
        match snapshot {
            Snapshot::Incremental => held.extend(rows),
            Snapshot::Full(_) => held = rows,
        }
        let (truth, _, _) = feed(&ledger, None, None);
        assert_eq!(held, truth, "round {round}: {increments} increments");
        assert!(
            increments > 0,
            "round {round}: polls were answered incrementally"
        );
    }
}
