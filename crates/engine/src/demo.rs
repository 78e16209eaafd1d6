//! The demo data set behind `serve --demo`: a French retailer with 36 stores
//! in 18 cities (coordinates, pickup settings), 2 warehouses, location
//! groups, channel policies and 5,000 SKUs stocked across the network.
//! Deterministic, so README examples always show the same thing.

use omnistock_ledger::{
    Channel, ChannelPolicy, CountRequest, DisplayRequest, GeoPoint, GroupName, IncomingRequest,
    Ledger, Line, Location, LocationCode, LocationKind, Pickup, PickupMethod, PickupSla,
    PolicyScope, Qty, Refusal, Sku, TimestampMs,
};

const CITIES: [(&str, &str, f64, f64); 18] = [
    ("PAR", "Paris", 48.8566, 2.3522),
    ("LYS", "Lyon", 45.7640, 4.8357),
    ("MRS", "Marseille", 43.2965, 5.3698),
    ("TLS", "Toulouse", 43.6047, 1.4442),
    ("NCE", "Nice", 43.7102, 7.2620),
    ("NTE", "Nantes", 47.2184, -1.5536),
    ("SXB", "Strasbourg", 48.5734, 7.7521),
    ("MPL", "Montpellier", 43.6108, 3.8767),
    ("BOD", "Bordeaux", 44.8378, -0.5792),
    ("LIL", "Lille", 50.6292, 3.0573),
    ("RNS", "Rennes", 48.1173, -1.6778),
    ("RHE", "Reims", 49.2583, 4.0317),
    ("TLN", "Toulon", 43.1242, 5.9280),
    ("GNB", "Grenoble", 45.1885, 5.7245),
    ("DIJ", "Dijon", 47.3220, 5.0415),
    ("ANG", "Angers", 47.4784, -0.5632),
    ("NIM", "Nimes", 43.8367, 4.3601),
    ("ROU", "Rouen", 49.4432, 1.0999),
];

/// SKUs in the demo: `SKU-00001` to `SKU-05000`.
pub const DEMO_SKUS: u32 = 5_000;

/// A tiny deterministic generator (xorshift), so the data set never changes.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn code(text: &str) -> Result<LocationCode, String> {
    LocationCode::new(text).map_err(|e| format!("{text}: {e}"))
}

fn group(text: &str) -> Result<GroupName, String> {
    GroupName::new(text).map_err(|e| format!("{text}: {e}"))
}

/// Loads the data set; returns the number of positions created.
pub fn load(ledger: &Ledger, now: TimestampMs) -> Result<usize, String> {
    load_where(ledger, now, &|_| true)
}

/// The demo data set with the stock of the SKUs `keep` accepts only (one
/// partition's share in a cluster); every SKU's numbers are the same as in
/// the whole set.
pub fn load_where(
    ledger: &Ledger,
    now: TimestampMs,
    keep: &dyn Fn(&Sku) -> bool,
) -> Result<usize, String> {
    let mut network = Network::default();
    put_stores(ledger, &mut network)?;
    put_warehouses(ledger, &mut network)?;
    put_groups(ledger, &network)?;
    put_policies(ledger)?;
    stock(ledger, &network.stores, now, keep)
}

fn fail(refusal: Refusal) -> String {
    refusal.to_string()
}

const WAREHOUSES: [(&str, &str, f64, f64); 2] = [
    ("WH-NORD", "Warehouse Nord (Lille)", 50.60, 3.10),
    ("WH-SUD", "Warehouse Sud (Lyon)", 45.70, 4.90),
];

/// The locations each group lists, gathered as they are registered.
#[derive(Default)]
struct Network {
    stores: Vec<LocationCode>,
    online: Vec<LocationCode>,
    paris: Vec<LocationCode>,
    north: Vec<LocationCode>,
}

/// Two stores per city: `-01` (Centre, ships from store) and `-02` (Nord).
fn put_stores(ledger: &Ledger, network: &mut Network) -> Result<(), String> {
    for (index, (city_code, city, lat, lon)) in CITIES.iter().enumerate() {
        for n in 1..=2 {
            let store = code(&format!("{city_code}-{n:02}"))?;
            let ship_from_store = n == 1;
            ledger
                .put_location(Location {
                    code: store.clone(),
                    kind: LocationKind::Store,
                    name: format!("{city} {}", if n == 1 { "Centre" } else { "Nord" }),
                    coords: GeoPoint::new(lat + 0.01 * n as f64, lon - 0.012 * n as f64),
                    pickup: Some(store_pickup(index + n)),
                    ship_from_store,
                })
                .map_err(fail)?;
            if ship_from_store {
                network.online.push(store.clone());
            }
            if *city_code == "PAR" {
                network.paris.push(store.clone());
            }
            if *lat > 48.0 {
                network.north.push(store.clone());
            }
            network.stores.push(store);
        }
    }
    Ok(())
}

/// The pickup settings of a store, varied by `turn`.
fn store_pickup(turn: usize) -> Pickup {
    match turn % 4 {
        0 => Pickup {
            method: PickupMethod::Reserve,
            sla: Some(PickupSla::NextDay),
        },
        1 => Pickup {
            method: PickupMethod::ShipToStore,
            sla: PickupSla::days(3),
        },
        _ => Pickup {
            method: PickupMethod::Buy,
            sla: Some(PickupSla::SameDay),
        },
    }
}

fn put_warehouses(ledger: &Ledger, network: &mut Network) -> Result<(), String> {
    for (text, name, lat, lon) in WAREHOUSES {
        let warehouse = code(text)?;
        ledger
            .put_location(Location {
                code: warehouse.clone(),
                kind: LocationKind::Warehouse,
                name: name.into(),
                coords: GeoPoint::new(lat, lon),
                pickup: None,
                ship_from_store: true,
            })
            .map_err(fail)?;
        network.online.push(warehouse);
    }
    Ok(())
}

fn put_groups(ledger: &Ledger, network: &Network) -> Result<(), String> {
    ledger
        .put_group(group("online")?, &network.online)
        .map_err(fail)?;
    ledger
        .put_group(group("stores")?, &network.stores)
        .map_err(fail)?;
    ledger
        .put_group(group("paris")?, &network.paris)
        .map_err(fail)?;
    ledger
        .put_group(group("north-region")?, &network.north)
        .map_err(fail)?;
    Ok(())
}

/// Keep the last 2 units of every store for walk-in customers; the
/// marketplace sees at most 20 per location of the online network; ads
/// advertise a store's stock only above 1 unit.
fn put_policies(ledger: &Ledger) -> Result<(), String> {
    for channel in [Channel::Web, Channel::App] {
        ledger
            .put_policy(
                channel,
                PolicyScope::Group(group("stores")?),
                Some(ChannelPolicy {
                    held_back: Qty(2),
                    cap: None,
                }),
            )
            .map_err(fail)?;
    }
    ledger
        .put_policy(
            Channel::Marketplace,
            PolicyScope::Group(group("online")?),
            Some(ChannelPolicy {
                held_back: Qty(0),
                cap: Some(Qty(20)),
            }),
        )
        .map_err(fail)?;
    ledger
        .put_policy(
            Channel::Ads,
            PolicyScope::Group(group("stores")?),
            Some(ChannelPolicy {
                held_back: Qty(1),
                cap: None,
            }),
        )
        .map_err(fail)?;
    Ok(())
}

/// Counts every SKU in both warehouses and about a third of the stores;
/// returns the number of positions created.
/// The SKUs `keep` refuses draw the same random numbers, unused, so that
/// every SKU gets the same stock whichever others are kept.
fn stock(
    ledger: &Ledger,
    stores: &[LocationCode],
    now: TimestampMs,
    keep: &dyn Fn(&Sku) -> bool,
) -> Result<usize, String> {
    let mut rng = Rng(0x005E_ED0F_0AA1);
    let mut positions = 0;
    for n in 1..=DEMO_SKUS {
        let sku = Sku::new(&format!("SKU-{n:05}")).map_err(|e| e.to_string())?;
        let kept = keep(&sku);
        for (text, ..) in WAREHOUSES {
            let on_hand = 50 + rng.below(950) as u32;
            if kept {
                ledger
                    .count(&demo_count(&sku, &code(text)?, on_hand), now, None)
                    .map_err(fail)?;
                positions += 1;
            }
        }
        let target = kept.then_some(ledger);
        positions += stock_stores(target, &mut rng, n, &sku, stores, now)?;
        if kept && n % 10 == 0 {
            expect_purchase_order(ledger, n, &sku, now)?;
        }
    }
    Ok(positions)
}

/// Counts SKU number `n` in about a third of the stores; returns the number
/// of positions created (none without a ledger: the numbers are drawn only).
fn stock_stores(
    ledger: Option<&Ledger>,
    rng: &mut Rng,
    n: u32,
    sku: &Sku,
    stores: &[LocationCode],
    now: TimestampMs,
) -> Result<usize, String> {
    let mut positions = 0;
    for store in stores {
        if rng.below(3) == 0 {
            let on_hand = rng.below(20) as u32;
            let display_model = n.is_multiple_of(50) && rng.below(2) == 0;
            let Some(ledger) = ledger else { continue };
            ledger
                .count(&demo_count(sku, store, on_hand), now, None)
                .map_err(fail)?;
            positions += 1;
            // Big items (every 50th SKU) are display models in some
            // stores: shown, ordered for delivery, not sold off the shelf.
            if display_model {
                let display = DisplayRequest {
                    sku: sku.clone(),
                    location: store.clone(),
                    display_only: true,
                    reference: Some("demo".into()),
                };
                ledger.set_display(&display, now, None).map_err(fail)?;
            }
        }
    }
    Ok(positions)
}

fn demo_count(sku: &Sku, location: &LocationCode, on_hand: u32) -> CountRequest {
    CountRequest {
        sku: sku.clone(),
        location: location.clone(),
        on_hand: Qty(on_hand),
        safety_stock: None,
        expected_version: None,
        as_of: None,
        reference: Some("demo".into()),
    }
}

/// 100 units of SKU number `n` expected at WH-NORD in 3 days.
fn expect_purchase_order(
    ledger: &Ledger,
    n: u32,
    sku: &Sku,
    now: TimestampMs,
) -> Result<(), String> {
    let line = Line {
        sku: sku.clone(),
        location: code("WH-NORD")?,
        qty: Qty(100),
    };
    let expected_at = now.plus_ms(3 * 24 * 3_600_000);
    ledger
        .expect_incoming(
            &IncomingRequest {
                line,
                expected_at,
                reference: Some(format!("PO-{n:05}")),
            },
            now,
            None,
        )
        .map_err(fail)?;
    Ok(())
}
