//! Availability queries: by scope (all, a group, a list of locations) and nearby.

use super::*;

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
