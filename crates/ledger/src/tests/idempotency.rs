//! Idempotent writes: replays, refused reuse of a key, and the bounded store of keys.

use super::*;

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
