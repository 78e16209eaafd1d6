//! Table-driven tests of every ledger operation and every refusal.

use super::*;

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

#[test]
fn reserve_refusals_in_precedence_order_change_nothing() {
    let ledger = fixture();
    let max_lines = ledger.config().max_lines_per_request;
    let before = state(&ledger);
    let too_many: Vec<Line> = (0..=max_lines).map(|_| line("S1", "A", 1)).collect();
    let cases: Vec<(&str, Channel, Vec<Line>, u64, Refusal)> = vec![
        (
            "no lines",
            Channel::Web,
            vec![],
            TTL,
            Invalid::NoLines.into(),
        ),
        (
            "too many lines",
            Channel::Web,
            too_many,
            TTL,
            Invalid::TooManyLines { max: max_lines }.into(),
        ),
        (
            "zero qty",
            Channel::Web,
            vec![line("S1", "B", 1), line("S1", "A", 0)],
            TTL,
            Invalid::ZeroQuantity { line: 1 }.into(),
        ),
        (
            "huge qty",
            Channel::Web,
            vec![line("S1", "A", 2_000_000)],
            TTL,
            Invalid::QuantityTooLarge {
                line: 0,
                max: 1_000_000,
            }
            .into(),
        ),
        (
            "ttl too short",
            Channel::Web,
            vec![line("S1", "A", 1)],
            10,
            Invalid::TtlOutOfRange {
                min_ms: 1_000,
                max_ms: 7 * 24 * 3_600_000,
            }
            .into(),
        ),
        (
            "shape before existence",
            Channel::Web,
            vec![line("S1", "NOPE", 0)],
            TTL,
            Invalid::ZeroQuantity { line: 0 }.into(),
        ),
        (
            "unknown location",
            Channel::Web,
            vec![line("S1", "NOPE", 1)],
            TTL,
            Refusal::UnknownLocation(loc("NOPE")),
        ),
        (
            "unknown sku is zero stock",
            Channel::Web,
            vec![line("GHOST", "A", 1)],
            TTL,
            Refusal::InsufficientStock {
                shortfalls: vec![Shortfall {
                    sku: sku("GHOST"),
                    location: loc("A"),
                    requested: Qty(1),
                    available: Qty(0),
                }],
            },
        ),
        (
            "web buffer at A hides 2 units",
            Channel::Web,
            vec![line("S1", "A", 9)],
            TTL,
            Refusal::InsufficientStock {
                shortfalls: vec![Shortfall {
                    sku: sku("S1"),
                    location: loc("A"),
                    requested: Qty(9),
                    available: Qty(8),
                }],
            },
        ),
        (
            "marketplace cap at W",
            Channel::Marketplace,
            vec![line("S1", "W", 6)],
            TTL,
            Refusal::InsufficientStock {
                shortfalls: vec![Shortfall {
                    sku: sku("S1"),
                    location: loc("W"),
                    requested: Qty(6),
                    available: Qty(5),
                }],
            },
        ),
        (
            "lines on one position are summed, every short line reported",
            Channel::Pos,
            vec![
                line("S1", "A", 6),
                line("S2", "A", 4),
                line("S1", "A", 5),
                line("S1", "B", 1),
            ],
            TTL,
            Refusal::InsufficientStock {
                shortfalls: vec![
                    Shortfall {
                        sku: sku("S1"),
                        location: loc("A"),
                        requested: Qty(11),
                        available: Qty(10),
                    },
                    Shortfall {
                        sku: sku("S2"),
                        location: loc("A"),
                        requested: Qty(4),
                        available: Qty(3),
                    },
                ],
            },
        ),
    ];
    for (name, channel, lines, ttl_ms, expected) in cases {
        let result = ledger.reserve(
            &ReserveRequest {
                caps: Vec::new(),
                channel,
                lines,
                ttl_ms,
            },
            T0,
            None,
        );
        assert_eq!(result, Err(expected), "{name}");
        assert_eq!(state(&ledger), before, "{name}: a refusal changes nothing");
    }
}

#[test]
fn reserve_grants_within_channel_view_and_merges_lines() {
    let ledger = fixture();
    let cases = [
        (Channel::Web, vec![line("S1", "A", 8)], vec![("S1", "A", 8)]),
        (
            Channel::Pos,
            vec![line("S1", "B", 4), line("S1", "B", 6)],
            vec![("S1", "B", 10)],
        ),
        (
            Channel::Marketplace,
            vec![line("S1", "W", 5)],
            vec![("S1", "W", 5)],
        ),
    ];
    for (channel, lines, held) in cases {
        let r = reserve(&ledger, channel, lines).expect("granted");
        assert_eq!(r.state, ReservationState::Held);
        assert_eq!(r.expires_at, T0.plus_ms(TTL));
        let got: Vec<_> = r
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.location.as_str(), l.qty.0))
            .collect();
        assert_eq!(got, held);
        assert_eq!(ledger.reservation(r.id), Some(r));
    }
    let a = pos(&ledger, "S1", "A");
    assert_eq!((a.on_hand.0, a.reserved.0, a.atf.0), (10, 8, 2));
    assert_eq!(pos(&ledger, "S1", "B").atf, Qty(0));
    // The web buffer at A now hides the last 2 units from the web...
    assert_eq!(
        ledger
            .position(&sku("S1"), &loc("A"), Some(Channel::Web), T0)
            .expect("view")
            .atf,
        Qty(0)
    );
    // ...but the POS still sees them.
    assert_eq!(
        ledger
            .position(&sku("S1"), &loc("A"), Some(Channel::Pos), T0)
            .expect("view")
            .atf,
        Qty(2)
    );
    assert_consistent(&ledger);
}

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

#[test]
fn transfer_moves_a_line_atomically() {
    let ledger = fixture();
    let r = reserve(&ledger, Channel::Pos, vec![line("S1", "A", 4)]).expect("granted");
    let transfer = |to: &str, qty: Option<u32>| TransferRequest {
        id: r.id,
        sku: sku("S1"),
        from: loc("A"),
        to: loc(to),
        qty: qty.map(Qty),
    };
    let cases: Vec<(&str, TransferRequest, Refusal)> = vec![
        (
            "same location",
            transfer("A", None),
            Invalid::TransferToSameLocation.into(),
        ),
        (
            "zero units",
            transfer("B", Some(0)),
            Invalid::ZeroQuantity { line: 0 }.into(),
        ),
        (
            "unknown destination",
            transfer("NOPE", None),
            Refusal::UnknownLocation(loc("NOPE")),
        ),
        (
            "line not held",
            TransferRequest {
                from: loc("B"),
                ..transfer("W", None)
            },
            Refusal::LineNotInReservation {
                sku: sku("S1"),
                location: loc("B"),
            },
        ),
        (
            "more than held",
            transfer("B", Some(5)),
            Invalid::CommitMoreThanHeld {
                line: 0,
                requested: Qty(5),
                held: Qty(4),
            }
            .into(),
        ),
    ];
    for (name, request, expected) in cases {
        assert_eq!(
            ledger.transfer(&request, Acting::Any, T0, None),
            Err(expected),
            "{name}"
        );
    }
    // Destination short: refused, nothing moves.
    reserve(&ledger, Channel::Pos, vec![line("S1", "B", 8)]).expect("granted");
    assert_eq!(
        ledger.transfer(&transfer("B", None), Acting::Any, T0, None),
        Err(Refusal::InsufficientStock {
            shortfalls: vec![Shortfall {
                sku: sku("S1"),
                location: loc("B"),
                requested: Qty(4),
                available: Qty(2)
            }]
        })
    );
    assert_eq!(pos(&ledger, "S1", "A").reserved, Qty(4));
    // Partial then full move; the view merges into the destination line.
    let moved = ledger
        .transfer(&transfer("B", Some(1)), Acting::Any, T0, None)
        .expect("partial transfer");
    let lines: Vec<_> = moved
        .lines
        .iter()
        .map(|l| (l.location.as_str(), l.qty.0))
        .collect();
    assert_eq!(lines, vec![("A", 3), ("B", 1)]);
    let moved = ledger
        .transfer(&transfer("W", None), Acting::Any, T0, None)
        .expect("transfer");
    let lines: Vec<_> = moved
        .lines
        .iter()
        .map(|l| (l.location.as_str(), l.qty.0))
        .collect();
    assert_eq!(lines, vec![("B", 1), ("W", 3)]);
    assert_eq!(
        (
            pos(&ledger, "S1", "A").reserved,
            pos(&ledger, "S1", "B").reserved,
            pos(&ledger, "S1", "W").reserved
        ),
        (Qty(0), Qty(9), Qty(3))
    );
    assert_consistent(&ledger);
}

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

#[test]
fn sales_respect_reservations_and_policies() {
    let ledger = fixture();
    reserve(&ledger, Channel::Web, vec![line("S1", "A", 7)]).expect("granted");
    let sale = |channel, lines| SaleRequest {
        channel,
        lines,
        reference: Some("till-7".into()),
    };
    assert_eq!(
        ledger.sell(&sale(Channel::Pos, vec![line("S1", "A", 4)]), T0, None),
        Err(Refusal::InsufficientStock {
            shortfalls: vec![Shortfall {
                sku: sku("S1"),
                location: loc("A"),
                requested: Qty(4),
                available: Qty(3)
            }]
        }),
        "held units are not sold at the till"
    );
    assert_eq!(
        ledger
            .sell(
                &sale(Channel::Pos, vec![line("S2", "A", 1), line("S1", "A", 4)]),
                T0,
                None
            )
            .map(|_| ()),
        Err(Refusal::InsufficientStock {
            shortfalls: vec![Shortfall {
                sku: sku("S1"),
                location: loc("A"),
                requested: Qty(4),
                available: Qty(3)
            }]
        }),
    );
    assert_eq!(pos(&ledger, "S2", "A").on_hand, Qty(3), "all lines or none");
    let sold = ledger
        .sell(
            &sale(Channel::Pos, vec![line("S1", "A", 3), line("S2", "A", 1)]),
            T0,
            None,
        )
        .expect("sale");
    assert_eq!(
        sold.iter().map(|p| p.on_hand.0).collect::<Vec<_>>(),
        vec![7, 2]
    );
    assert_eq!(
        ledger.sell(&sale(Channel::Pos, vec![line("S1", "A", 0)]), T0, None),
        Err(Invalid::ZeroQuantity { line: 0 }.into())
    );
    assert_consistent(&ledger);
}

#[test]
fn returns_receipts_incoming_and_adjustments() {
    let ledger = fixture();
    let back = |sellable| ReturnRequest {
        channel: Channel::Pos,
        line: line("S2", "A", 2),
        sellable,
        reason: Some("unwanted".into()),
        reference: None,
    };
    assert_eq!(
        ledger
            .return_units(&back(true), T0, None)
            .expect("return")
            .on_hand,
        Qty(5)
    );
    let damaged = ledger.return_units(&back(false), T0, None).expect("return");
    assert_eq!(
        (damaged.on_hand, damaged.non_sellable, damaged.atf),
        (Qty(5), Qty(2), Qty(5))
    );

    let day = 24 * 3_600_000;
    let po = |qty, days: u64, reference: &str| IncomingRequest {
        line: line("S2", "A", qty),
        expected_at: T0.plus_ms(days * day),
        reference: Some(reference.into()),
    };
    ledger
        .expect_incoming(&po(10, 3, "PO-1"), T0, None)
        .expect("incoming");
    let far = ledger
        .expect_incoming(&po(50, 30, "PO-2"), T0, None)
        .expect("incoming");
    assert_eq!(
        (far.incoming, far.ato),
        (10, 15),
        "only receipts within the horizon count towards ATO"
    );
    let received = ledger
        .receive(
            &ReceiptRequest {
                line: line("S2", "A", 4),
                reference: Some("PO-1".into()),
            },
            T0,
            None,
        )
        .expect("receipt");
    assert_eq!(
        (received.on_hand.0, received.incoming, received.ato),
        (9, 6, 15),
        "a receipt consumes its expected receipt"
    );

    let adjust = |delta, reason: &str| AdjustmentRequest {
        sku: sku("S2"),
        location: loc("A"),
        delta,
        reason: reason.into(),
        reference: None,
    };
    let cases: Vec<(AdjustmentRequest, Result<u32, Refusal>)> = vec![
        (adjust(0, "x"), Err(Invalid::ZeroDelta.into())),
        (adjust(-1, " "), Err(Invalid::MissingReason.into())),
        (
            adjust(5_000_000, "x"),
            Err(Invalid::QuantityTooLarge {
                line: 0,
                max: 1_000_000,
            }
            .into()),
        ),
        (
            adjust(-10, "damaged"),
            Err(Refusal::InsufficientOnHand {
                shortfalls: vec![Shortfall {
                    sku: sku("S2"),
                    location: loc("A"),
                    requested: Qty(10),
                    available: Qty(9),
                }],
            }),
        ),
        (adjust(-2, "damaged"), Ok(7)),
        (adjust(3, "found"), Ok(10)),
    ];
    for (request, expected) in cases {
        assert_eq!(
            ledger.adjust(&request, T0, None).map(|p| p.on_hand.0),
            expected,
            "{request:?}"
        );
    }
    let nowhere = AdjustmentRequest {
        sku: sku("NEW"),
        location: loc("B"),
        delta: -1,
        reason: "x".into(),
        reference: None,
    };
    assert!(matches!(
        ledger.adjust(&nowhere, T0, None),
        Err(Refusal::InsufficientOnHand { .. })
    ));
    assert_eq!(
        ledger.sku_count(),
        2,
        "a refused adjustment creates no position"
    );
    let overflow = ReceiptRequest {
        line: line("S2", "A", 1_000_000),
        reference: None,
    };
    ledger
        .count(
            &CountRequest {
                sku: sku("S2"),
                location: loc("A"),
                on_hand: Qty(u32::MAX - 10),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            T0,
            None,
        )
        .expect("count");
    assert_eq!(
        ledger.receive(&overflow, T0, None),
        Err(Refusal::QuantityOverflow {
            sku: sku("S2"),
            location: loc("A")
        })
    );
    assert_consistent(&ledger);
}

#[test]
fn counts_never_touch_reservations_and_report_shortage() {
    let ledger = fixture();
    reserve(&ledger, Channel::Pos, vec![line("S1", "B", 6)]).expect("granted");
    let counted = set(&ledger, "S1", "B", 4);
    assert_eq!(
        (
            counted.on_hand.0,
            counted.reserved.0,
            counted.atf.0,
            counted.shortage.0
        ),
        (4, 6, 0, 2)
    );
    let report = ledger.check_invariants().expect("a shortage is allowed");
    assert_eq!(report.positions_short, 1);
    let with_safety = ledger
        .count(
            &CountRequest {
                sku: sku("S1"),
                location: loc("A"),
                on_hand: Qty(10),
                safety_stock: Some(Qty(3)),
                expected_version: None,
                as_of: None,
                reference: None,
            },
            T0,
            None,
        )
        .expect("count");
    assert_eq!((with_safety.safety_stock.0, with_safety.atf.0), (3, 7));
}

#[test]
fn count_compare_and_set_and_as_of() {
    let ledger = fixture();
    let count = |on_hand, expected_version: Option<Seq>, as_of: Option<i64>| CountRequest {
        sku: sku("S1"),
        location: loc("A"),
        on_hand: Qty(on_hand),
        safety_stock: None,
        expected_version,
        as_of: as_of.map(TimestampMs),
        reference: Some("cycle-count".into()),
    };
    let version = pos(&ledger, "S1", "A").version;
    let stale = Seq(version.0 - 1);
    assert_eq!(
        ledger.count(&count(9, Some(stale), None), T0, None),
        Err(Refusal::StaleVersion {
            expected: stale,
            actual: version
        })
    );
    assert_eq!(
        ledger
            .count(&count(9, Some(version), None), T0, None)
            .expect("cas")
            .on_hand,
        Qty(9)
    );
    let fresh = CountRequest {
        sku: sku("NEW"),
        expected_version: Some(Seq(0)),
        ..count(1, None, None)
    };
    assert_eq!(
        ledger
            .count(&fresh, T0, None)
            .expect("absent is version 0")
            .on_hand,
        Qty(1)
    );

    // A count taken at t=T0+10 arrives at T0+30; a sale at T0+20 is re-applied.
    let t = |ms: i64| TimestampMs(T0.0 + ms);
    ledger
        .sell(
            &SaleRequest {
                channel: Channel::Pos,
                lines: vec![line("S1", "A", 2)],
                reference: None,
            },
            t(20),
            None,
        )
        .expect("sale");
    let counted = ledger
        .count(&count(9, None, Some(t(10).0)), t(30), None)
        .expect("as_of count");
    assert_eq!(
        counted.on_hand,
        Qty(7),
        "the sale after as_of is not counted twice"
    );
    assert_eq!(
        ledger.count(&count(9, None, Some(t(5).0)), t(31), None),
        Err(Refusal::CountOlderThanLast {
            as_of: t(5),
            last_as_of: t(10)
        })
    );
    let future = t(31).plus_ms(ledger.config().max_as_of_skew_ms + 1);
    assert_eq!(
        ledger.count(&count(9, None, Some(future.0)), t(31), None),
        Err(Refusal::AsOfInFuture { as_of: future })
    );
    // History holds 4 movements; older ones are dropped and a count older
    // than the dropped ones is refused rather than guessed.
    for i in 0..6 {
        ledger
            .receive(
                &ReceiptRequest {
                    line: line("S1", "A", 1),
                    reference: None,
                },
                t(40 + i),
                None,
            )
            .expect("receipt");
    }
    assert_eq!(
        ledger.count(&count(9, None, Some(t(40).0)), t(50), None),
        Err(Refusal::AsOfBeyondHistory {
            as_of: t(40),
            horizon: t(41)
        })
    );
    assert_eq!(
        ledger
            .count(&count(9, None, Some(t(41).0)), t(50), None)
            .expect("within history")
            .on_hand,
        Qty(13)
    );
    assert_consistent(&ledger);
}

#[test]
fn idempotent_writes_replay_and_refuse_reuse() {
    let ledger = fixture();
    let k = key("order-1");
    let request = ReserveRequest {
        caps: Vec::new(),
        channel: Channel::Web,
        lines: vec![line("S1", "B", 2)],
        ttl_ms: TTL,
    };
    let first = ledger.reserve(&request, T0, Some(&k)).expect("granted");
    let head = ledger.journal_head();
    assert_eq!(
        ledger.reserve(&request, t_plus(5), Some(&k)),
        Ok(first.clone()),
        "replay returns the original"
    );
    assert_eq!(ledger.journal_head(), head, "a replay changes nothing");
    assert_eq!(pos(&ledger, "S1", "B").reserved, Qty(2));
    let other = ReserveRequest {
        caps: Vec::new(),
        lines: vec![line("S1", "B", 3)],
        ..request.clone()
    };
    assert_eq!(
        ledger.reserve(&other, T0, Some(&k)),
        Err(Refusal::IdempotencyKeyReused)
    );
    assert_eq!(
        ledger.release(first.id, Acting::Any, T0, Some(&k)),
        Err(Refusal::IdempotencyKeyReused),
        "keys span operations"
    );
    // Callers that count outcomes learn which were replays.
    assert_eq!(
        ledger.reserve_with_origin(&request, T0, Some(&k)),
        (Ok(first.clone()), Origin::Replayed)
    );
    assert_eq!(
        ledger.reserve_with_origin(&other, T0, Some(&k)),
        (Err(Refusal::IdempotencyKeyReused), Origin::Ran),
        "a reused key is a new refusal, not a replay"
    );
    let (fresh, origin) = ledger.reserve_with_origin(&request, T0, Some(&key("order-new")));
    assert_eq!(origin, Origin::Ran);
    ledger
        .release(fresh.expect("granted").id, Acting::Any, T0, None)
        .expect("released");

    // Refusals that depend on state are replayed too...
    let big = ReserveRequest {
        caps: Vec::new(),
        lines: vec![line("S1", "B", 50)],
        ..request.clone()
    };
    let refused = ledger.reserve(&big, T0, Some(&key("order-2")));
    assert!(matches!(refused, Err(Refusal::InsufficientStock { .. })));
    set(&ledger, "S1", "B", 100);
    assert_eq!(
        ledger.reserve(&big, T0, Some(&key("order-2"))),
        refused,
        "the original answer, even though stock arrived"
    );
    // ...but shape refusals are not remembered: the key stays usable.
    let invalid = ReserveRequest {
        caps: Vec::new(),
        lines: vec![],
        ..request.clone()
    };
    assert_eq!(
        ledger.reserve(&invalid, T0, Some(&key("order-3"))),
        Err(Invalid::NoLines.into())
    );
    assert!(ledger.reserve(&request, T0, Some(&key("order-3"))).is_ok());

    // Keys are forgotten after their time.
    let remembered = ledger.idempotency_key_count();
    ledger.tick(T0.plus_ms(ledger.config().idempotency_ttl_ms), 1_000);
    assert_eq!(ledger.idempotency_key_count(), remembered - 4);
    assert!(
        ledger
            .reserve(
                &other,
                T0.plus_ms(ledger.config().idempotency_ttl_ms),
                Some(&k)
            )
            .is_ok()
    );
}

fn t_plus(ms: i64) -> TimestampMs {
    TimestampMs(T0.0 + ms)
}

#[test]
fn idempotency_store_is_bounded() {
    let ledger = Ledger::new(LedgerConfig {
        max_idempotency_keys: 2,
        ..LedgerConfig::default()
    });
    ledger.put_location(store("A", 0.0, 0.0, false)).expect("A");
    let receipt = ReceiptRequest {
        line: line("S", "A", 1),
        reference: None,
    };
    assert!(ledger.receive(&receipt, T0, Some(&key("a"))).is_ok());
    assert!(ledger.receive(&receipt, T0, Some(&key("b"))).is_ok());
    assert_eq!(
        ledger.receive(&receipt, T0, Some(&key("c"))),
        Err(Refusal::IdempotencyStoreFull)
    );
    assert_eq!(
        ledger
            .receive(&receipt, T0, Some(&key("a")))
            .map(|p| p.on_hand),
        Ok(Qty(1)),
        "known keys still replay"
    );
}

#[test]
fn journal_records_every_change_in_order() {
    let ledger = fixture();
    let start = ledger.journal_head();
    let r = ledger
        .reserve(
            &ReserveRequest {
                caps: Vec::new(),
                channel: Channel::App,
                lines: vec![line("S1", "A", 1), line("S1", "B", 2)],
                ttl_ms: TTL,
            },
            T0,
            Some(&key("k1")),
        )
        .expect("granted");
    ledger
        .release(r.id, Acting::Any, T0, None)
        .expect("release");
    ledger
        .adjust(
            &AdjustmentRequest {
                sku: sku("S1"),
                location: loc("W"),
                delta: -1,
                reason: "damaged".into(),
                reference: Some("DOC-9".into()),
            },
            T0,
            None,
        )
        .expect("adjust");
    let JournalRead::Movements { movements, next } = ledger.read_journal(start, 100) else {
        panic!("no lag expected");
    };
    assert_eq!(next, ledger.journal_head());
    let summary: Vec<_> = movements
        .iter()
        .map(|m| {
            (
                m.kind,
                m.on_hand_delta,
                m.reserved_delta,
                m.after.reserved.0,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (MovementKind::Reserve, 0, 1, 1),
            (MovementKind::Reserve, 0, 2, 2),
            (MovementKind::Release, 0, -1, 0),
            (MovementKind::Release, 0, -2, 0),
            (MovementKind::Adjustment, -1, 0, 0),
        ]
    );
    assert!(
        movements.windows(2).all(|w| w[1].seq.0 == w[0].seq.0 + 1),
        "dense sequence numbers"
    );
    assert_eq!(movements[0].reservation, Some(r.id));
    assert_eq!(movements[0].channel, Some(Channel::App));
    assert_eq!(
        movements[0]
            .note
            .as_ref()
            .and_then(|n| n.idempotency_key.clone()),
        Some(key("k1"))
    );
    let note = movements[4].note.as_ref().expect("note");
    assert_eq!(
        (note.reason.as_deref(), note.reference.as_deref()),
        (Some("damaged"), Some("DOC-9"))
    );
    assert_eq!(
        pos(&ledger, "S1", "W").version,
        movements[4].seq,
        "version = sequence of the latest change"
    );
    assert_eq!(
        ledger.sku_code(movements[4].position.sku()),
        Some(sku("S1"))
    );
}

#[test]
fn availability_scopes_and_nearby() {
    let ledger = fixture();
    let all = ledger
        .availability(&sku("S1"), &Scope::All, None, T0)
        .expect("all");
    assert_eq!((all.total_atf, all.locations.len()), (120, 3));
    let group = ledger
        .availability(
            &sku("S1"),
            &Scope::Group(GroupName::new("online").expect("name")),
            Some(Channel::Marketplace),
            T0,
        )
        .expect("group");
    assert_eq!(
        group.total_atf, 10,
        "marketplace cap of 5 at each of B and W"
    );
    let listed = ledger
        .availability(
            &sku("S2"),
            &Scope::Locations(vec![loc("A"), loc("B")]),
            None,
            T0,
        )
        .expect("listed");
    assert_eq!(
        listed.locations.iter().map(|p| p.atf.0).collect::<Vec<_>>(),
        vec![3, 0],
        "listed locations without stock read as zero"
    );
    assert_eq!(
        ledger.availability(
            &sku("S1"),
            &Scope::Group(GroupName::new("none").expect("name")),
            None,
            T0
        ),
        Err(Refusal::UnknownGroup(GroupName::new("none").expect("name")))
    );
    assert_eq!(
        ledger.availability(&sku("S1"), &Scope::Locations(vec![loc("X")]), None, T0),
        Err(Refusal::UnknownLocation(loc("X")))
    );

    let near_paris = |qty, radius_km, pickup_only| NearbyQuery {
        sku: sku("S1"),
        point: GeoPoint::new(48.85, 2.35).expect("point"),
        radius_km,
        qty: Qty(qty),
        channel: Channel::Web,
        pickup_only,
        limit: 10,
    };
    let found = |q| {
        ledger
            .nearby(&q)
            .into_iter()
            .map(|s| s.location.as_str().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        found(near_paris(1, 1000.0, false)),
        vec!["A", "B"],
        "nearest first; warehouses are not stores"
    );
    assert_eq!(found(near_paris(1, 100.0, false)), vec!["A"]);
    assert_eq!(
        found(near_paris(9, 1000.0, false)),
        vec!["B"],
        "A shows the web only 8"
    );
    assert_eq!(
        found(near_paris(1, 1000.0, true)),
        vec!["A"],
        "only A offers pickup"
    );
    let a = &ledger.nearby(&near_paris(1, 10.0, false))[0];
    assert!(a.distance_km < 1.0 && a.pickup.is_some_and(|p| p.sla == Some(PickupSla::SameDay)));
}

#[test]
fn catalog_validation() {
    let ledger = fixture();
    let bad_pickup = Location {
        pickup: Some(Pickup {
            method: PickupMethod::Reserve,
            sla: None,
        }),
        ..store("Z", 0.0, 0.0, false)
    };
    assert!(matches!(
        ledger.put_location(bad_pickup),
        Err(Refusal::Invalid(_))
    ));
    let bad_days = Location {
        pickup: Some(Pickup {
            method: PickupMethod::Buy,
            sla: Some(PickupSla::Days(9)),
        }),
        ..store("Z", 0.0, 0.0, false)
    };
    assert!(matches!(
        ledger.put_location(bad_days),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(
        ledger.put_group(GroupName::new("g").expect("name"), &[loc("A"), loc("Q")]),
        Err(Refusal::UnknownLocation(loc("Q")))
    );
    assert_eq!(
        ledger.put_policy(
            Channel::Ads,
            PolicyScope::Group(GroupName::new("g").expect("name")),
            None
        ),
        Err(Refusal::UnknownGroup(GroupName::new("g").expect("name")))
    );
    // Re-putting a location keeps its id and its stock.
    let id = ledger.catalog().location_id("A");
    ledger
        .put_location(store("A", 1.0, 1.0, true))
        .expect("update");
    assert_eq!(ledger.catalog().location_id("A"), id);
    assert_eq!(pos(&ledger, "S1", "A").on_hand, Qty(10));
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

#[test]
fn change_listener_hears_every_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let ledger = fixture();
    let heard = std::sync::Arc::new(AtomicU64::new(0));
    let sink = heard.clone();
    assert!(ledger.set_change_listener(Box::new(move |seq| sink.store(seq.0, Ordering::SeqCst))));
    reserve(&ledger, Channel::Web, vec![line("S1", "B", 1)]).expect("granted");
    assert_eq!(heard.load(Ordering::SeqCst), ledger.journal_head().0 - 1);
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

#[test]
fn changes_and_cuts_cover_exactly_what_changed() {
    let ledger = fixture();
    set(&ledger, "X", "A", 10);
    set(&ledger, "X", "B", 3);
    set(&ledger, "Y", "A", 1);
    let mut changes = Changes::new(&ledger, 10);
    assert!(changes.is_empty());
    let held = reserve(&ledger, Channel::Web, vec![line("X", "A", 2)]).expect("held");
    ledger.collect_changes(&mut changes, T0);
    assert_eq!(changes.positions.len(), 1);
    assert!(changes.reservations.contains(&held.id));
    let cut = ledger.cut(&mut changes, T0);
    // The whole SKU X (both locations), not Y.
    let keys: Vec<_> = cut
        .positions
        .iter()
        .map(|p| (p.sku.as_str(), p.location.as_str()))
        .collect();
    assert_eq!(keys, [("X", "A"), ("X", "B")]);
    assert_eq!(cut.reservations.len(), 1);
    assert_eq!(cut.movements.len(), 1);
    assert_eq!(cut.head, ledger.journal_head());
    changes.written(&cut);
    assert!(changes.is_empty());
    // Movements beyond the bound are dropped oldest first, and counted.
    for _ in 0..12 {
        set(&ledger, "Y", "A", 2);
    }
    ledger.collect_changes(&mut changes, T0);
    assert_eq!(changes.movements.len(), 10);
    assert_eq!(changes.movements_dropped, 2);
}

#[test]
fn a_catalog_change_takes_a_sequence_that_changes_no_item() {
    let ledger = fixture();
    set(&ledger, "X", "A", 10);
    let mut changes = Changes::new(&ledger, 10);
    let head = ledger.journal_head();
    ledger
        .put_policy(
            Channel::Ads,
            PolicyScope::Location(loc("A")),
            Some(ChannelPolicy {
                held_back: Qty(0),
                cap: Some(Qty(4)),
            }),
        )
        .expect("policy");
    // The marker: one sequence, the catalog's `changed_at`, no movement.
    assert_eq!(ledger.journal_head(), Seq(head.0 + 1));
    assert_eq!(ledger.catalog().changed_at(), head);
    assert_eq!(
        ledger.catalog_at(head).map(|c| c.generation()),
        Some(ledger.catalog().generation())
    );
    assert!(
        ledger
            .catalog_at(Seq(head.0 - 1))
            .is_some_and(|c| c.changed_at() < head)
    );
    let cut = ledger.cut(&mut changes, T0);
    assert_eq!(
        cut.head,
        ledger.journal_head(),
        "the cut reads past the marker"
    );
    assert!(cut.positions.is_empty() && cut.movements.is_empty());
    // The position's version did not move (compare-and-set callers are not
    // disturbed by a policy change).
    assert_eq!(pos(&ledger, "X", "A").version, Seq(head.0 - 1));
    ledger.check_invariants().expect("invariants hold");
}

#[test]
fn display_only_positions_sell_nothing_keep_holds_and_survive_restore() {
    let ledger = fixture();
    set(&ledger, "SOFA", "A", 3);
    let held = reserve(&ledger, Channel::Web, vec![line("SOFA", "A", 1)]).expect("held");
    let display = |display_only: bool| DisplayRequest {
        sku: sku("SOFA"),
        location: loc("A"),
        display_only,
        reference: Some("floor model".into()),
    };
    let head = ledger.journal_head();
    let flagged = ledger
        .set_display(&display(true), T0, None)
        .expect("flagged");
    assert!(flagged.display_only);
    assert_eq!(
        (flagged.on_hand.0, flagged.reserved.0, flagged.atf.0),
        (3, 1, 0),
        "the units stay counted, the hold stays, nothing is for sale"
    );
    assert_eq!(held.lines.len(), 1);
    let JournalRead::Movements {
        movements: movement,
        ..
    } = ledger.read_journal(head, 10)
    else {
        panic!("journal lagged");
    };
    assert_eq!(movement.len(), 1);
    assert_eq!(movement[0].kind, MovementKind::Display);
    assert_eq!(movement[0].on_hand_delta, 0);
    // No channel can take display units.
    let refused = reserve(&ledger, Channel::Pos, vec![line("SOFA", "A", 1)]);
    assert!(
        matches!(refused, Err(Refusal::InsufficientStock { .. })),
        "{refused:?}"
    );
    assert_consistent(&ledger);

    // The flag survives a restore, then clearing it makes the units sellable.
    let (fresh, _) = restored(&ledger, T0);
    assert!(pos(&fresh, "SOFA", "A").display_only);
    assert_eq!(pos(&fresh, "SOFA", "A").atf.0, 0);
    let cleared = fresh
        .set_display(&display(false), T0, None)
        .expect("cleared");
    assert!(!cleared.display_only);
    assert_eq!(cleared.atf.0, 2);
    assert_consistent(&fresh);
}

fn holder(kind: HolderKind, id: &str) -> Holder {
    Holder {
        kind,
        id: HolderId::new(id).expect("valid holder"),
    }
}

fn capped(
    ledger: &Ledger,
    lines: Vec<Line>,
    caps: &[&HoldCap],
    idempotency: Option<&str>,
) -> Result<ReservationView, Refusal> {
    ledger.reserve(
        &ReserveRequest {
            channel: Channel::Web,
            lines,
            ttl_ms: TTL,
            caps: caps.iter().map(|cap| (*cap).clone()).collect(),
        },
        T0,
        idempotency.map(key).as_ref(),
    )
}

#[test]
fn hold_caps_count_units_per_holder_refuse_beyond_and_give_back_on_resolve() {
    let ledger = fixture();
    set(&ledger, "X", "A", 100);
    set(&ledger, "Y", "W", 100);
    let web_key = HoldCap {
        holder: holder(HolderKind::Key, "key_web"),
        max_units: 8,
    };
    let bot = HoldCap {
        holder: holder(HolderKind::Customer, "bot-1"),
        max_units: 5,
    };
    let shopper = HoldCap {
        holder: holder(HolderKind::Customer, "shopper-2"),
        max_units: 5,
    };
    let held = |cap: &HoldCap| ledger.held_units(&cap.holder);

    // Lines are summed: 2 + 1 on X and 2 on Y reach the customer cap exactly.
    let first = capped(
        &ledger,
        vec![line("X", "A", 2), line("X", "A", 1)],
        &[&web_key, &bot],
        None,
    );
    let first = first.expect("3 units fit");
    let second = capped(&ledger, vec![line("Y", "W", 2)], &[&web_key, &bot], None)
        .expect("exactly at the cap");
    assert_eq!((held(&web_key), held(&bot)), (5, 5));
    assert_consistent(&ledger);

    // One more unit for the bot is refused, and nothing changes.
    let before = state(&ledger);
    assert_eq!(
        capped(&ledger, vec![line("X", "A", 1)], &[&web_key, &bot], None),
        Err(Refusal::HoldCapExceeded {
            kind: HolderKind::Customer,
            holder: bot.holder.id.clone(),
            held: 5,
            requested: 1,
            max: 5,
        })
    );
    assert_eq!(state(&ledger), before, "a refused reserve changes nothing");

    // Another customer on the same key: the key's cap (8, 5 used) refuses 4
    // units and the customer's claim is rolled back with it.
    assert_eq!(
        capped(
            &ledger,
            vec![line("X", "A", 4)],
            &[&web_key, &shopper],
            None
        ),
        Err(Refusal::HoldCapExceeded {
            kind: HolderKind::Key,
            holder: web_key.holder.id.clone(),
            held: 5,
            requested: 4,
            max: 8,
        })
    );
    assert_eq!(held(&shopper), 0);

    // A stock refusal gives the claim back; a cap is checked before stock.
    let wholesale = HoldCap {
        holder: holder(HolderKind::Customer, "wholesale-3"),
        max_units: 1_000,
    };
    assert!(matches!(
        capped(&ledger, vec![line("X", "A", 99)], &[&wholesale], None),
        Err(Refusal::InsufficientStock { .. })
    ));
    assert_eq!(held(&wholesale), 0);
    assert!(matches!(
        capped(&ledger, vec![line("X", "A", 99)], &[&web_key], None),
        Err(Refusal::HoldCapExceeded { .. })
    ));
    assert_eq!((held(&web_key), held(&shopper)), (5, 0));
    assert_consistent(&ledger);

    // Release, then a partial commit: each gives back all the reservation's units.
    ledger
        .release(first.id, Acting::Any, T0, None)
        .expect("released");
    assert_eq!((held(&web_key), held(&bot)), (2, 2));
    ledger
        .commit(
            &CommitRequest {
                id: second.id,
                lines: Some(vec![line("Y", "W", 1)]),
            },
            Acting::Any,
            T0,
            None,
        )
        .expect("committed");
    assert_eq!((held(&web_key), held(&bot)), (0, 0));

    // An idempotent retry replays without counting twice.
    let hold = capped(&ledger, vec![line("X", "A", 4)], &[&bot], Some("cart-9"));
    let replay = capped(&ledger, vec![line("X", "A", 4)], &[&bot], Some("cart-9"));
    assert_eq!(hold.expect("held").id, replay.expect("replayed").id);
    assert_eq!(held(&bot), 4);
    assert_consistent(&ledger);

    // A restart rebuilds the counts from the held reservations.
    let (fresh, report) = restored(&ledger, T0);
    assert_eq!(report.reservations_held, 1);
    assert_eq!(fresh.held_units(&bot.holder), 4);
    assert_consistent(&fresh);
    assert!(matches!(
        capped(&fresh, vec![line("Y", "W", 2)], &[&bot], None),
        Err(Refusal::HoldCapExceeded { held: 4, .. })
    ));

    // Expiry gives the units back too.
    assert_eq!(fresh.expire_due(t_plus(TTL as i64), 100), 1);
    assert_eq!(fresh.held_units(&bot.holder), 0);
    capped(&fresh, vec![line("Y", "W", 5)], &[&bot], None).expect("room again");
    assert_consistent(&fresh);
}
