//! The journal, the change listener, and changes and cuts since a sequence.

use super::*;

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
fn change_listener_hears_every_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let ledger = fixture();
    let heard = std::sync::Arc::new(AtomicU64::new(0));
    let sink = heard.clone();
    assert!(ledger.set_change_listener(Box::new(move |seq| sink.store(seq.0, Ordering::SeqCst))));
    reserve(&ledger, Channel::Web, vec![line("S1", "B", 1)]).expect("granted");
    assert_eq!(heard.load(Ordering::SeqCst), ledger.journal_head().0 - 1);
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
