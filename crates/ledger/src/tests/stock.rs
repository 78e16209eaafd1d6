//! Stock movements: sales, returns, receipts, incoming, adjustments, counts (compare-and-set, as of a time), and display-only positions.

use super::*;

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
