//! A store written before format 1 (every value in the legacy text form)
//! loads, is migrated to the current format by that load, and a restart
//! after the migration reads the current format: on a real `redis-server`.

use omnistock_ledger::{
    CatalogRecord, Channel, ChannelPolicy, Fingerprint, GeoPoint, GroupName, Holder, HolderId,
    HolderKind, IdempotencyRecord, Incoming, Location, LocationCode, LocationKind, Pickup,
    PickupMethod, PickupSla, PolicyScope, PositionRecord, PositionView, Qty, ReservationId,
    ReservationLineRecord, ReservationRecord, ReservationState, Seq, Sku, TimestampMs, WriteOutput,
};
use omnistock_store::codec::{self, FORMAT};
use omnistock_store::redis::{RedisConfig, RedisStore};
use omnistock_store::{KeyRecord, Loaded, Store};
use omnistock_testkit::RedisServer;

const NOW: TimestampMs = TimestampMs(1_700_000_100_000);

/// FNV-1a, the store's bucket hash.
fn bucket(text: &str, buckets: u64) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    }) % buckets
}

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("sku")
}
fn loc(s: &str) -> LocationCode {
    LocationCode::new(s).expect("location")
}

/// (hash, field, value) as an engine before format 1 stored them.
fn legacy_values() -> Vec<(String, String, String)> {
    let positions = format!("omnistock:{{p{}}}:pos", bucket("SKU|1", 32));
    let idempotency = |key: &str| format!("omnistock:{{i{}}}:idem", bucket(key, 16));
    [
        (
            "omnistock:{meta}:state",
            "state",
            "99|100|4|1;2;3;4|5|0123456789abcdef|42|1",
        ),
        (
            "omnistock:{meta}:catalog",
            "catalog",
            "12~4294967301|PAR-01,store,Paris%2C Rivoli%3B 1er,48.8606,2.3376,buy,3,1;\
             WH,warehouse,,,,not_supported,,0|paris,PAR-01@WH|ads,g,paris,2,;marketplace,l,WH,0,20",
        ),
        (
            "omnistock:{meta}:keys",
            "keys",
            "3|key_1,till%2C 3,pos@read,PAR-01,abab,250",
        ),
        (
            positions.as_str(),
            "SKU%7C1",
            "7|PAR-01,7,10,3,1,2,-9223372036854775808,0,5~1700000000000~=PO%7C7@1~-5~,1~-3@2~4;\
             WH,5,1,0,0,0,-9223372036854775808,0,,,d,p17",
        ),
        (
            "omnistock:{r13}:res",
            "77",
            "9|web|held|1|2||SKU%7C1,PAR-01,2,0|key=key_1;customer=c%7C1",
        ),
        (
            idempotency("key_1:order|42").as_str(),
            "key_1:order%7C42",
            "1|42|1700086500000|P|SKU%7C1,PAR-01,1,0,0,0,4,1,5,3,0",
        ),
        // Expired: not loaded, migrated all the same.
        (
            idempotency("key_1:old").as_str(),
            "key_1:old",
            "2|000102030405060708090a0b0c0d0e0f|10|P|SKU%7C1,WH,1,0,0,0,0,1,1,3,0,d",
        ),
    ]
    .into_iter()
    .map(|(hash, field, value)| (hash.to_owned(), field.to_owned(), value.to_owned()))
    .collect()
}

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Every stored (hash, field, value) but the hashes' batch versions.
async fn stored(redis: &RedisServer) -> Vec<(String, String, Vec<u8>)> {
    let mut connection = connection(redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("omnistock:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let mut out = Vec::new();
    for key in keys.into_iter().filter(|k| !k.ends_with(":marker")) {
        let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("HGETALL");
        for (field, value) in entries.into_iter().filter(|(f, _)| f != "~v") {
            out.push((key.clone(), field, value));
        }
    }
    out.sort();
    out
}

fn check_loaded(loaded: &Loaded) {
    let restore = &loaded.restore;
    assert_eq!(
        (restore.head, restore.cursor_lineage, restore.cursor_floor),
        (Seq(100), Some(0x0123_4567_89ab_cdef), Seq(42))
    );
    assert!(restore.clean);
    assert_eq!(restore.reservation_next_local, vec![1, 2, 3, 4]);
    check_catalog(restore.catalog.as_ref().expect("a catalog"));
    assert_eq!(
        loaded.keys.keys,
        vec![KeyRecord {
            id: "key_1".into(),
            name: "till, 3".into(),
            scopes: vec!["pos".into(), "read".into()],
            locations: vec!["PAR-01".into()],
            digest_hex: "abab".into(),
            max_held_units: Some(250),
            publishable: None,
        }]
    );
    check_positions(&restore.positions);
    check_reservations(&restore.reservations);
    check_idempotency(&restore.idempotency);
}

fn check_catalog(catalog: &CatalogRecord) {
    assert_eq!(
        (catalog.generation, catalog.changed_at),
        (12, Seq(4_294_967_301))
    );
    assert_eq!(
        catalog.locations,
        vec![
            Location {
                code: loc("PAR-01"),
                kind: LocationKind::Store,
                name: "Paris, Rivoli; 1er".into(),
                coords: GeoPoint::new(48.8606, 2.3376),
                pickup: Some(Pickup {
                    method: PickupMethod::Buy,
                    sla: Some(PickupSla::Days(3)),
                }),
                ship_from_store: true,
            },
            Location {
                code: loc("WH"),
                kind: LocationKind::Warehouse,
                name: String::new(),
                coords: None,
                pickup: Some(Pickup {
                    method: PickupMethod::NotSupported,
                    sla: None,
                }),
                ship_from_store: false,
            },
        ]
    );
    let paris = GroupName::new("paris").expect("group");
    assert_eq!(
        catalog.groups,
        vec![(paris.clone(), vec![loc("PAR-01"), loc("WH")])]
    );
    assert_eq!(
        catalog.policies,
        vec![
            (
                Channel::Ads,
                PolicyScope::Group(paris),
                ChannelPolicy {
                    held_back: Qty(2),
                    cap: None
                }
            ),
            (
                Channel::Marketplace,
                PolicyScope::Location(loc("WH")),
                ChannelPolicy {
                    held_back: Qty(0),
                    cap: Some(Qty(20))
                }
            ),
        ]
    );
}

fn check_reservations(reservations: &[ReservationRecord]) {
    let [reservation] = reservations else {
        panic!("one reservation: {:?}", reservations);
    };
    assert_eq!(
        (
            reservation.id,
            reservation.version,
            reservation.channel,
            reservation.state
        ),
        (
            ReservationId(77),
            Seq(9),
            Channel::Web,
            ReservationState::Held
        )
    );
    assert_eq!(
        reservation.lines,
        vec![ReservationLineRecord {
            sku: sku("SKU|1"),
            location: loc("PAR-01"),
            qty: Qty(2),
            committed: Qty(0),
        }]
    );
    let holder = |kind, id: &str| Holder {
        kind,
        id: HolderId::new(id).expect("holder"),
    };
    assert_eq!(
        reservation.holders,
        vec![
            holder(HolderKind::Key, "key_1"),
            holder(HolderKind::Customer, "c|1")
        ]
    );
}

fn check_idempotency(idempotency: &[IdempotencyRecord]) {
    let [record] = idempotency else {
        panic!("one live idempotency record: {:?}", idempotency);
    };
    assert_eq!(record.key.as_str(), "key_1:order|42");
    assert_eq!(
        record.fingerprint,
        Fingerprint::V1(42),
        "the legacy fingerprint is kept"
    );
    assert_eq!(
        record.outcome,
        WriteOutput::Position(PositionView {
            sku: sku("SKU|1"),
            location: loc("PAR-01"),
            on_hand: Qty(1),
            reserved: Qty(0),
            safety_stock: Qty(0),
            non_sellable: Qty(0),
            incoming: 4,
            atf: Qty(1),
            ato: 5,
            version: Seq(3),
            shortage: Qty(0),
            display_only: false,
        })
    );
}

fn check_positions(positions: &[PositionRecord]) {
    let first = PositionRecord {
        sku: sku("SKU|1"),
        location: loc("PAR-01"),
        on_hand: Qty(10),
        reserved: Qty(3),
        safety_stock: Qty(1),
        non_sellable: Qty(2),
        version: Seq(7),
        last_count_as_of: TimestampMs::MIN,
        incoming: vec![
            Incoming {
                qty: Qty(5),
                expected_at: TimestampMs(1_700_000_000_000),
                reference: Some("PO|7".into()),
            },
            Incoming {
                qty: Qty(1),
                expected_at: TimestampMs(-5),
                reference: None,
            },
        ],
        history: vec![(TimestampMs(1), -3), (TimestampMs(2), 4)],
        history_horizon: TimestampMs(0),
        display_only: false,
        published_lag: 0,
    };
    let second = PositionRecord {
        location: loc("WH"),
        on_hand: Qty(1),
        reserved: Qty(0),
        safety_stock: Qty(0),
        non_sellable: Qty(0),
        version: Seq(5),
        incoming: Vec::new(),
        history: Vec::new(),
        display_only: true,
        published_lag: 17,
        ..first.clone()
    };
    assert_eq!(positions, [first, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_store_loads_migrates_and_restarts_in_the_current_format() {
    let redis = RedisServer::start();
    let mut connection = connection(&redis).await;
    let legacy = legacy_values();
    for (hash, field, value) in &legacy {
        let _: () = redis::cmd("HSET")
            .arg(hash)
            .arg(field)
            .arg(value)
            .arg("~v")
            .arg("99")
            .query_async(&mut connection)
            .await
            .expect("HSET");
    }
    let _: () = redis::cmd("SET")
        .arg("omnistock:{meta}:marker")
        .arg("0123")
        .query_async(&mut connection)
        .await
        .expect("SET");

    // The first start reads the text form and migrates every value.
    let store = RedisStore::new(RedisConfig::new(redis.url())).expect("store");
    let loaded = store.load(NOW).await.expect("loads").expect("not empty");
    check_loaded(&loaded);
    let migrated = stored(&redis).await;
    assert_eq!(migrated.len(), legacy.len(), "{migrated:?}");
    for (hash, field, value) in &migrated {
        assert!(!codec::is_legacy(value), "{hash} {field} still legacy");
        assert_eq!(value[0], FORMAT, "{hash} {field}");
    }

    // A restart reads the current format, the same records, and migrates
    // nothing more.
    let restarted = RedisStore::new(RedisConfig::new(redis.url())).expect("store");
    let reloaded = restarted
        .load(NOW)
        .await
        .expect("loads")
        .expect("not empty");
    check_loaded(&reloaded);
    assert_eq!(stored(&redis).await, migrated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_value_is_refused_not_migrated() {
    let redis = RedisServer::start();
    let mut connection = connection(&redis).await;
    for (hash, field, value) in legacy_values() {
        let value = if field == "77" {
            "9|web|held|1|2||SKU%7C1,PAR-01,2".to_owned()
        } else {
            value
        };
        let _: () = redis::cmd("HSET")
            .arg(&hash)
            .arg(&field)
            .arg(&value)
            .query_async(&mut connection)
            .await
            .expect("HSET");
    }
    let before = stored(&redis).await;
    let store = RedisStore::new(RedisConfig::new(redis.url())).expect("store");
    let refused = store.load(NOW).await.err().expect("refused");
    assert!(refused.to_string().contains("77"), "{refused}");
    assert_eq!(stored(&redis).await, before, "nothing was migrated");
}
