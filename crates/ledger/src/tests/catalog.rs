//! The catalog: what it validates, and a catalog change takes a sequence
//! that changes no item.

use super::*;

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
fn adopting_a_catalog_makes_it_this_ledgers_and_keeps_the_stock() {
    let source = fixture();
    // Another ledger that learnt B before A (other location ids), with a
    // policy the source does not have and stock at A.
    let ledger = Ledger::new(LedgerConfig::default());
    ledger.put_location(store("B", 0.0, 0.0, false)).expect("B");
    ledger.put_location(store("A", 1.0, 1.0, false)).expect("A");
    ledger
        .put_policy(
            Channel::Ads,
            PolicyScope::Location(loc("B")),
            Some(ChannelPolicy {
                held_back: Qty(9),
                cap: None,
            }),
        )
        .expect("policy");
    set(&ledger, "S9", "A", 7);

    let record = CatalogRecord::of(&source.catalog());
    assert_eq!(ledger.adopt_catalog(&record), Ok(true));
    let adopted = CatalogRecord::of(&ledger.catalog());
    let codes = |r: &CatalogRecord| {
        let mut codes: Vec<_> = r.locations.iter().map(|l| l.code.clone()).collect();
        codes.sort();
        codes
    };
    assert_eq!(codes(&adopted), codes(&record));
    assert_eq!(
        adopted.policies, record.policies,
        "the ads policy at B is gone"
    );
    let find = |r: &CatalogRecord, code: &str| {
        r.locations
            .iter()
            .find(|l| l.code.as_str() == code)
            .cloned()
    };
    assert_eq!(find(&adopted, "A"), find(&record, "A"));
    assert_eq!(pos(&ledger, "S9", "A").on_hand, Qty(7));
    let web = ledger
        .position(&sku("S9"), &loc("A"), Some(Channel::Web), t_plus(0))
        .expect("position");
    assert_eq!(web.atf, Qty(5), "the web policy at A holds 2 back");

    // Adopting the same catalog again changes nothing, however ordered.
    let generation = ledger.catalog().generation();
    assert_eq!(ledger.adopt_catalog(&record), Ok(false));
    assert_eq!(ledger.catalog().generation(), generation);
}
