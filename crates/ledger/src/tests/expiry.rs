//! Deadlines: holds expire exactly at their deadline, lazily, once, and within a bounded budget per call.

use super::*;

#[test]
fn deadlines_expire_exactly_and_lazily() {
    let ledger = fixture();
    let r = reserve(&ledger, Channel::Web, vec![line("S1", "B", 3)]).expect("granted");
    let deadline = r.expires_at;
    assert_eq!(ledger.next_deadline(), Some(deadline));
    assert_eq!(
        ledger.expire_due(TimestampMs(deadline.0 - 1), 100),
        0,
        "never before the deadline"
    );
    // Extending moves the deadline; the old one no longer applies.
    let extended = ledger
        .extend(
            r.id,
            2 * TTL,
            Acting::Any,
            TimestampMs(deadline.0 - 1),
            None,
        )
        .expect("extend");
    assert_eq!(
        extended.expires_at,
        TimestampMs(deadline.0 - 1).plus_ms(2 * TTL)
    );
    assert_eq!(ledger.expire_due(deadline, 100), 0);
    assert_eq!(
        ledger.expire_due(extended.expires_at, 100),
        1,
        "expires at the deadline"
    );
    assert_eq!(
        ledger.reservation(r.id).map(|v| v.state),
        Some(ReservationState::Expired)
    );
    assert_eq!(pos(&ledger, "S1", "B").reserved, Qty(0));
    assert_eq!(ledger.next_deadline(), None);

    // Touching a reservation past its deadline expires it on the spot.
    let r = reserve(&ledger, Channel::Web, vec![line("S1", "B", 3)]).expect("granted");
    let late = r.expires_at;
    let expired = Refusal::ReservationNotHeld {
        id: r.id,
        state: ReservationState::Expired,
    };
    assert_eq!(
        ledger.commit(
            &CommitRequest {
                id: r.id,
                lines: None
            },
            Acting::Any,
            late,
            None
        ),
        Err(expired.clone())
    );
    assert_eq!(pos(&ledger, "S1", "B").reserved, Qty(0));
    assert_eq!(ledger.release(r.id, Acting::Any, late, None), Err(expired));
    assert_eq!(ledger.expire_due(late, 100), 0, "already resolved");
    assert_consistent(&ledger);
}

#[test]
fn resolved_and_extended_holds_never_expire_twice_and_stay_bounded() {
    // One shard, so its deadline index sees all 20,000 holds and compacts.
    let ledger = one_reservation_shard();
    set(&ledger, "S1", "W", 1_000_000);
    let mut kept = Vec::new();
    // Many TTLs (more than the index's lanes), time moving on, most holds
    // released or committed before their deadline, some extended: each
    // leaves a stale entry that must neither expire anything nor grow the
    // index past its bound (checked by check_invariants).
    for i in 0..20_000_u64 {
        let now = T0.plus_ms(i / 10);
        let request = ReserveRequest {
            caps: Vec::new(),
            channel: Channel::Pos,
            lines: vec![line("S1", "W", 1)],
            ttl_ms: 1_000 + (i % 13) * 500,
        };
        let r = ledger.reserve(&request, now, None).expect("granted");
        match i % 10 {
            0 => kept.push(r.id),
            1 => {
                ledger
                    .extend(r.id, 30_000, Acting::Any, now, None)
                    .expect("extended");
                kept.push(r.id);
            }
            2 => {
                let commit = CommitRequest {
                    id: r.id,
                    lines: None,
                };
                ledger
                    .commit(&commit, Acting::Any, now, None)
                    .expect("committed");
            }
            _ => {
                ledger
                    .release(r.id, Acting::Any, now, None)
                    .expect("released");
            }
        }
        if i % 4_999 == 0 {
            assert_consistent(&ledger);
        }
    }
    assert_consistent(&ledger);
    let reserved = u64::from(pos(&ledger, "S1", "W").reserved.0);
    assert_eq!(reserved, kept.len() as u64);
    // Only the kept holds expire, each once, whatever stale entries remain.
    let far = T0.plus_ms(10 * 60_000);
    assert_eq!(ledger.expire_due(far, usize::MAX), kept.len());
    assert_eq!(ledger.expire_due(far, usize::MAX), 0);
    assert_eq!(ledger.next_deadline(), None, "stale entries are gone too");
    assert_eq!(pos(&ledger, "S1", "W").reserved, Qty(0));
    assert_consistent(&ledger);
}

#[test]
fn expiry_is_bounded_per_call() {
    let ledger = fixture();
    for _ in 0..10 {
        reserve(&ledger, Channel::Pos, vec![line("S1", "W", 1)]).expect("granted");
    }
    let due = T0.plus_ms(TTL);
    assert_eq!(ledger.expire_due(due, 4), 4);
    assert_eq!(ledger.tick(due, 100), 6);
    assert_eq!(pos(&ledger, "S1", "W").reserved, Qty(0));
    assert_consistent(&ledger);
}

#[test]
fn expiry_budget_is_exact_with_stale_entries_between() {
    // One shard, every third hold released first (a stale entry in the
    // deadline index): each call expires exactly its budget, in deadline
    // order, and never a released hold.
    let ledger = one_reservation_shard();
    set(&ledger, "S1", "W", 1_000);
    let mut held = Vec::new();
    for i in 0..150 {
        let r = reserve(&ledger, Channel::Pos, vec![line("S1", "W", 1)]).expect("granted");
        if i % 3 == 0 {
            ledger
                .release(r.id, Acting::Any, T0, None)
                .expect("released");
        } else {
            held.push(r.id);
        }
    }
    let due = T0.plus_ms(TTL);
    let state = |id| ledger.reservation(id).map(|r| r.state);
    let mut expired = 0;
    for budget in [1, 31, 32, 33] {
        assert_eq!(ledger.expire_due(due, budget), budget);
        expired += budget;
        assert_eq!(state(held[expired - 1]), Some(ReservationState::Expired));
        assert_eq!(state(held[expired]), Some(ReservationState::Held));
        assert_consistent(&ledger);
    }
    assert_eq!(ledger.expire_due(due, usize::MAX), held.len() - expired);
    assert_eq!(ledger.expire_due(due, usize::MAX), 0);
    assert_eq!(pos(&ledger, "S1", "W").reserved, Qty(0));
    assert_consistent(&ledger);
}
