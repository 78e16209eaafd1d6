//! Committing, releasing and extending a hold; resolved reservations forgotten within bounds.

use super::*;

#[test]
fn commit_release_extend_refusals() {
    let ledger = fixture();
    let r = reserve(&ledger, Channel::Web, vec![line("S1", "B", 3)]).expect("granted");
    let missing = ReservationId(999_999);
    let commit_all = |id| CommitRequest { id, lines: None };
    let cases: Vec<(&str, Result<ReservationView, Refusal>, Refusal)> = vec![
        (
            "commit unknown",
            ledger.commit(&commit_all(missing), Acting::Any, T0, None),
            Refusal::ReservationNotFound(missing),
        ),
        (
            "release unknown",
            ledger.release(missing, Acting::Any, T0, None),
            Refusal::ReservationNotFound(missing),
        ),
        (
            "extend unknown",
            ledger.extend(missing, TTL, Acting::Any, T0, None),
            Refusal::ReservationNotFound(missing),
        ),
        (
            "commit more than held",
            ledger.commit(
                &CommitRequest {
                    id: r.id,
                    lines: Some(vec![line("S1", "B", 4)]),
                },
                Acting::Any,
                T0,
                None,
            ),
            Invalid::CommitMoreThanHeld {
                line: 0,
                requested: Qty(4),
                held: Qty(3),
            }
            .into(),
        ),
        (
            "commit a line not held",
            ledger.commit(
                &CommitRequest {
                    id: r.id,
                    lines: Some(vec![line("S1", "A", 1)]),
                },
                Acting::Any,
                T0,
                None,
            ),
            Refusal::LineNotInReservation {
                sku: sku("S1"),
                location: loc("A"),
            },
        ),
        (
            "commit a duplicate line",
            ledger.commit(
                &CommitRequest {
                    id: r.id,
                    lines: Some(vec![line("S1", "B", 1), line("S1", "B", 1)]),
                },
                Acting::Any,
                T0,
                None,
            ),
            Invalid::DuplicateLine { line: 1 }.into(),
        ),
        (
            "extend beyond max ttl",
            ledger.extend(r.id, u64::MAX, Acting::Any, T0, None),
            Invalid::TtlOutOfRange {
                min_ms: 1_000,
                max_ms: 7 * 24 * 3_600_000,
            }
            .into(),
        ),
    ];
    for (name, got, expected) in cases {
        assert_eq!(got, Err(expected), "{name}");
    }
    assert_eq!(
        pos(&ledger, "S1", "B").reserved,
        Qty(3),
        "refusals change nothing"
    );

    let released = ledger
        .release(r.id, Acting::Any, T0, None)
        .expect("release");
    assert_eq!(released.state, ReservationState::Released);
    assert_eq!(
        pos(&ledger, "S1", "B").atf,
        Qty(10),
        "released units are back at once"
    );
    let not_held = Refusal::ReservationNotHeld {
        id: r.id,
        state: ReservationState::Released,
    };
    assert_eq!(
        ledger.release(r.id, Acting::Any, T0, None),
        Err(not_held.clone()),
        "resolves at most once"
    );
    assert_eq!(
        ledger.commit(&commit_all(r.id), Acting::Any, T0, None),
        Err(not_held.clone())
    );
    assert_eq!(
        ledger.extend(r.id, TTL, Acting::Any, T0, None),
        Err(not_held)
    );
    assert_consistent(&ledger);
}

#[test]
fn commit_full_and_partial() {
    let ledger = fixture();
    let full = reserve(&ledger, Channel::Web, vec![line("S1", "B", 3)]).expect("granted");
    let done = ledger
        .commit(
            &CommitRequest {
                id: full.id,
                lines: None,
            },
            Acting::Any,
            T0,
            None,
        )
        .expect("commit");
    assert_eq!(done.state, ReservationState::Committed);
    assert_eq!(done.lines[0].committed, Qty(3));
    let b = pos(&ledger, "S1", "B");
    assert_eq!((b.on_hand.0, b.reserved.0, b.atf.0), (7, 0, 7));

    // Partial: 1 of 2 at B, nothing listed for W: the rest is released.
    let cart = reserve(
        &ledger,
        Channel::Web,
        vec![line("S1", "B", 2), line("S1", "W", 4)],
    )
    .expect("granted");
    let done = ledger
        .commit(
            &CommitRequest {
                id: cart.id,
                lines: Some(vec![line("S1", "B", 1)]),
            },
            Acting::Any,
            T0,
            None,
        )
        .expect("partial commit");
    let committed: Vec<_> = done
        .lines
        .iter()
        .map(|l| (l.location.as_str(), l.qty.0, l.committed.0))
        .collect();
    assert_eq!(committed, vec![("B", 2, 1), ("W", 4, 0)]);
    let (b, w) = (pos(&ledger, "S1", "B"), pos(&ledger, "S1", "W"));
    assert_eq!((b.on_hand.0, b.reserved.0), (6, 0));
    assert_eq!((w.on_hand.0, w.reserved.0), (100, 0));
    assert_consistent(&ledger);
}

#[test]
fn resolved_reservations_are_forgotten_within_bounds() {
    let ledger = Ledger::new(LedgerConfig {
        reservation_shards: 1,
        max_resolved_reservations: 8,
        resolved_retention_ms: 1_000,
        ..LedgerConfig::default()
    });
    ledger.put_location(store("A", 0.0, 0.0, false)).expect("A");
    set(&ledger, "S", "A", 1_000);
    let mut ids = Vec::new();
    for _ in 0..50 {
        let r = reserve(&ledger, Channel::Web, vec![line("S", "A", 1)]).expect("granted");
        ledger
            .release(r.id, Acting::Any, T0, None)
            .expect("release");
        ids.push(r.id);
    }
    assert!(
        ledger.reservation_count() <= 10,
        "bounded: {}",
        ledger.reservation_count()
    );
    assert_eq!(
        ledger.reservation(ids[49]).map(|r| r.state),
        Some(ReservationState::Released)
    );
    assert_eq!(ledger.reservation(ids[0]), None);
    assert_eq!(
        ledger.release(ids[0], Acting::Any, T0, None),
        Err(Refusal::ReservationNotFound(ids[0])),
        "forgotten, still never resolved twice"
    );
    // Past the retention they go even under the bound.
    ledger.tick(T0.plus_ms(1_000), 100);
    assert_eq!(ledger.reservation_count(), 0);
}

#[test]
fn a_long_hold_pushed_out_of_a_full_ring_still_resolves_and_reads() {
    let ledger = Ledger::new(LedgerConfig {
        reservation_shards: 1,
        max_resolved_reservations: 4,
        ..LedgerConfig::default()
    });
    ledger.put_location(store("A", 0.0, 0.0, false)).expect("A");
    set(&ledger, "S", "A", 1_000);
    let long_hold = reserve(&ledger, Channel::Web, vec![line("S", "A", 5)]).expect("granted");
    for _ in 0..20 {
        let r = reserve(&ledger, Channel::Web, vec![line("S", "A", 1)]).expect("granted");
        ledger
            .release(r.id, Acting::Any, T0, None)
            .expect("release");
    }
    let released = ledger
        .release(long_hold.id, Acting::Any, T0, None)
        .expect("the evicted hold releases and answers");
    assert_eq!(released.state, ReservationState::Released);
    assert_eq!(pos(&ledger, "S", "A").reserved, Qty(0));
    assert_consistent(&ledger);
}
