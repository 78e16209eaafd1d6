//! Export and restore: a round trip of everything, and reserved recomputed from the holds.

use super::*;

#[test]
fn export_and_restore_round_trip_everything() {
    let ledger = fixture();
    set(&ledger, "X", "A", 10);
    set(&ledger, "X", "B", 5);
    set(&ledger, "Y", "W", 7);
    let held = ledger
        .reserve(
            &ReserveRequest {
                caps: Vec::new(),
                channel: Channel::Web,
                lines: vec![line("X", "A", 3), line("Y", "W", 1)],
                ttl_ms: TTL,
            },
            T0,
            Some(&key("order-1")),
        )
        .expect("held");
    let committed = reserve(&ledger, Channel::App, vec![line("X", "B", 2)]).expect("held");
    ledger
        .commit(
            &CommitRequest {
                id: committed.id,
                lines: None,
            },
            Acting::Any,
            T0,
            None,
        )
        .expect("committed");
    let before = ledger.export_all(T0);

    let (fresh, report) = restored(&ledger, T0);
    assert_eq!(report.positions, before.positions.len());
    assert_eq!(
        (report.reservations_held, report.reservations_resolved),
        (1, 1)
    );
    assert_eq!(report.idempotency_keys, 1);
    assert_eq!(report.reserved_recomputed, 0);
    let after = fresh.export_all(T0);
    let sorted = |cut: &Cut| {
        let mut positions = cut.positions.clone();
        positions.sort_by(|a, b| (&a.sku, &a.location).cmp(&(&b.sku, &b.location)));
        positions
    };
    assert_eq!(sorted(&after), sorted(&before));
    assert_eq!(after.catalog, before.catalog);
    let strip = |cut: &Cut| -> Vec<ReservationRecord> {
        cut.reservations
            .iter()
            .map(|r| ReservationRecord {
                version: Seq(0),
                ..r.clone()
            })
            .collect()
    };
    let (mut a, mut b) = (strip(&after), strip(&before));
    a.sort_by_key(|r| r.id);
    b.sort_by_key(|r| r.id);
    assert_eq!(a, b);
    assert_consistent(&fresh);

    // The retry replays; new sequences and ids skip past the old run's.
    let replay = fresh
        .reserve(
            &ReserveRequest {
                caps: Vec::new(),
                channel: Channel::Web,
                lines: vec![line("X", "A", 3), line("Y", "W", 1)],
                ttl_ms: TTL,
            },
            T0,
            Some(&key("order-1")),
        )
        .expect("replayed");
    assert_eq!(replay.id, held.id);
    assert!(fresh.journal_head().0 >= before.head.0 + RESTART_SEQ_GAP);
    let new = reserve(&fresh, Channel::Web, vec![line("X", "A", 1)]).expect("held");
    assert!(new.id != held.id && new.id != committed.id);
    assert!(new.id.0 >> 6 >= RESTART_RESERVATION_GAP, "{:?}", new.id);
    assert_consistent(&fresh);

    // Overdue holds expire at the first tick after the restore.
    let (late, _) = restored(&ledger, T0.plus_ms(TTL + 1));
    assert_eq!(late.tick(T0.plus_ms(TTL + 1), usize::MAX), 1);
    assert_eq!(pos(&late, "X", "A").reserved, Qty(0));

    // Only into a fresh ledger.
    let cut = ledger.export_all(T0);
    let refused = ledger.restore(
        Restore {
            head: cut.head,
            ..Restore::default()
        },
        T0,
    );
    assert_eq!(refused, Err(RestoreError::NotFresh));
}

#[test]
fn restore_recomputes_reserved_from_the_holds() {
    let ledger = fixture();
    set(&ledger, "X", "A", 10);
    reserve(&ledger, Channel::Web, vec![line("X", "A", 4)]).expect("held");
    let mut cut = ledger.export_all(T0);
    cut.positions[0].reserved = Qty(9); // a damaged store
    let fresh = Ledger::new(ledger.config().clone());
    let report = fresh
        .restore(
            Restore {
                head: cut.head,
                reservation_shards: ledger.config().reservation_shards,
                reservation_next_local: cut.reservation_next_local,
                catalog: Some(cut.catalog),
                positions: cut.positions,
                reservations: cut.reservations,
                idempotency: Vec::new(),
                ..Restore::default()
            },
            T0,
        )
        .expect("restores");
    assert_eq!(report.reserved_recomputed, 1);
    assert_eq!(pos(&fresh, "X", "A").reserved, Qty(4));
    assert_consistent(&fresh);
}
