//! Hold caps: units held per key and per customer, refused beyond the cap and given back on resolve.

use super::*;

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
