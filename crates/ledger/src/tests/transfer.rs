//! Transferring a reserved line to another location.

use super::*;

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
