//! Callers restricted to some locations: refused elsewhere, before any state is read or expired, and not remembered under the idempotency key.

use super::*;

/// A caller restricted to some locations (a POS key) acts only on
/// reservations whose every line is at one of them, and transfers only to
/// one of them; otherwise each operation is refused with the first location
/// it may not act on, and the refusal changes nothing (no movement, no
/// reservation, no idempotency key).
#[test]
fn restricted_callers_are_refused_at_other_locations_and_change_nothing() {
    let ledger = fixture();
    let at_a = [loc("A")];
    let pos_a = Acting::AtLocations(&at_a);
    let r_a = reserve(&ledger, Channel::Pos, vec![line("S1", "A", 2)]).expect("granted");
    let r_b = reserve(&ledger, Channel::Pos, vec![line("S1", "B", 2)]).expect("granted");
    let cart = reserve(
        &ledger,
        Channel::Pos,
        vec![line("S1", "A", 1), line("S1", "B", 1)],
    )
    .expect("granted");
    let missing = ReservationId(999_999);
    let commit_all = |id| CommitRequest { id, lines: None };
    let transfer = |id, from: &str, to: &str| TransferRequest {
        id,
        sku: sku("S1"),
        from: loc(from),
        to: loc(to),
        qty: None,
    };
    let not_at = |l: &str| Refusal::LocationNotAllowed { location: loc(l) };
    let before = state(&ledger);
    let views = |ledger: &Ledger| [r_a.id, r_b.id, cart.id].map(|id| ledger.reservation(id));
    let views_before = views(&ledger);
    let keys_before = ledger.idempotency_key_count();
    let k = key("pos-retry");
    let cases: Vec<(&str, Result<ReservationView, Refusal>, Refusal)> = vec![
        (
            "commit at B",
            ledger.commit(&commit_all(r_b.id), pos_a, T0, Some(&k)),
            not_at("B"),
        ),
        (
            "commit a cart with one line at B",
            ledger.commit(&commit_all(cart.id), pos_a, T0, Some(&k)),
            not_at("B"),
        ),
        (
            "release at B",
            ledger.release(r_b.id, pos_a, T0, Some(&k)),
            not_at("B"),
        ),
        (
            "extend at B",
            ledger.extend(r_b.id, 2 * TTL, pos_a, T0, Some(&k)),
            not_at("B"),
        ),
        (
            "transfer from B",
            ledger.transfer(&transfer(r_b.id, "B", "A"), pos_a, T0, Some(&k)),
            not_at("B"),
        ),
        (
            "transfer to B",
            ledger.transfer(&transfer(r_a.id, "A", "B"), pos_a, T0, Some(&k)),
            not_at("B"),
        ),
        (
            "transfer to a location it may not act on, before the location is looked up",
            ledger.transfer(&transfer(r_a.id, "A", "NOPE"), pos_a, T0, Some(&k)),
            not_at("NOPE"),
        ),
        (
            "an unknown reservation is not found, whoever asks",
            ledger.release(missing, pos_a, T0, None),
            Refusal::ReservationNotFound(missing),
        ),
        (
            "a shape refusal comes first",
            ledger.transfer(&transfer(r_b.id, "B", "B"), pos_a, T0, None),
            Invalid::TransferToSameLocation.into(),
        ),
    ];
    for (name, outcome, expected) in cases {
        assert_eq!(outcome, Err(expected), "{name}");
    }
    assert_eq!(state(&ledger), before, "refusals change nothing");
    assert_eq!(views(&ledger), views_before, "no reservation changed");
    assert_eq!(
        ledger.idempotency_key_count(),
        keys_before,
        "a location refusal is not remembered under its key"
    );

    // Every line (and the destination) among the caller's locations: it acts.
    let at_a_and_w = [loc("A"), loc("W")];
    let moved = ledger
        .transfer(
            &transfer(r_a.id, "A", "W"),
            Acting::AtLocations(&at_a_and_w),
            T0,
            None,
        )
        .expect("A and W are the caller's");
    assert_eq!(moved.lines[0].location, loc("W"));
    assert_eq!(
        ledger.extend(r_a.id, 2 * TTL, pos_a, T0, None),
        Err(not_at("W")),
        "the line is at W now"
    );
    let at_w = [loc("W")];
    let committed = ledger
        .commit(&commit_all(r_a.id), Acting::AtLocations(&at_w), T0, None)
        .expect("at W");
    assert_eq!(committed.state, ReservationState::Committed);
    let at_a_and_b = [loc("A"), loc("B")];
    let released = ledger
        .release(cart.id, Acting::AtLocations(&at_a_and_b), T0, None)
        .expect("A and B");
    assert_eq!(released.state, ReservationState::Released);
    let extended = ledger
        .extend(r_b.id, 2 * TTL, Acting::Any, T0, None)
        .expect("anyone may act");
    assert_eq!(extended.expires_at, T0.plus_ms(2 * TTL));
    assert_consistent(&ledger);
}

/// The caller's authority is checked before the reservation's state, and
/// before anything changes: a caller that may not act on a reservation
/// past its deadline does not expire it (the sweep, or an allowed caller,
/// does), and learns the location, not the state.
#[test]
fn authority_comes_before_state_and_a_refused_caller_expires_nothing() {
    let ledger = fixture();
    let at_a = [loc("A")];
    let pos_a = Acting::AtLocations(&at_a);
    let not_at_b = Err(Refusal::LocationNotAllowed { location: loc("B") });
    let resolved = reserve(&ledger, Channel::Pos, vec![line("S1", "B", 1)]).expect("granted");
    ledger
        .release(resolved.id, Acting::Any, T0, None)
        .expect("released");
    assert_eq!(ledger.release(resolved.id, pos_a, T0, None), not_at_b);

    let due = reserve(&ledger, Channel::Pos, vec![line("S1", "B", 3)]).expect("granted");
    let late = due.expires_at;
    let head = ledger.journal_head();
    let commit = CommitRequest {
        id: due.id,
        lines: None,
    };
    assert_eq!(ledger.commit(&commit, pos_a, late, None), not_at_b);
    assert_eq!(ledger.journal_head(), head, "nothing recorded");
    assert_eq!(
        ledger.reservation(due.id).map(|r| r.state),
        Some(ReservationState::Held),
        "still held until someone allowed touches it"
    );
    assert_eq!(pos(&ledger, "S1", "B").reserved, Qty(3));
    assert_eq!(
        ledger.commit(&commit, Acting::Any, late, None),
        Err(Refusal::ReservationNotHeld {
            id: due.id,
            state: ReservationState::Expired
        })
    );
    assert_consistent(&ledger);
}

/// A location refusal is not the operation's outcome, so it is not kept
/// under the idempotency key: a retry with the same key runs again (here
/// after the line came back to the caller's store) and its outcome is the
/// one kept and replayed.
#[test]
fn a_location_refusal_is_not_kept_under_the_idempotency_key() {
    let ledger = fixture();
    let at_a = [loc("A")];
    let pos_a = Acting::AtLocations(&at_a);
    let r = reserve(&ledger, Channel::Pos, vec![line("S1", "B", 2)]).expect("granted");
    let k = key("till-7-release");
    assert_eq!(
        ledger.release(r.id, pos_a, T0, Some(&k)),
        Err(Refusal::LocationNotAllowed { location: loc("B") })
    );
    let keys = ledger.idempotency_key_count();
    ledger
        .transfer(
            &TransferRequest {
                id: r.id,
                sku: sku("S1"),
                from: loc("B"),
                to: loc("A"),
                qty: None,
            },
            Acting::Any,
            T0,
            None,
        )
        .expect("moved to A");
    let released = ledger
        .release(r.id, pos_a, t_plus(1), Some(&k))
        .expect("the retry runs");
    assert_eq!(released.state, ReservationState::Released);
    assert_eq!(ledger.idempotency_key_count(), keys + 1, "now it is kept");
    let head = ledger.journal_head();
    assert_eq!(
        ledger.release(r.id, pos_a, t_plus(2), Some(&k)),
        Ok(released),
        "and replayed"
    );
    assert_eq!(ledger.journal_head(), head);
    assert_consistent(&ledger);
}
