//! Reserving: every refusal in its order of precedence, and what a grant holds.

use super::*;

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
