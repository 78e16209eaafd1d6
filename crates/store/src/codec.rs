//! Stored values and hash field names.
//!
//! A value is one byte, its format ([`FORMAT`]), then its record
//! ([`super::records`], serde-derived) in postcard, a compact binary serde
//! format with a documented, stable wire format. A record's layout never
//! changes within a format: a new layout is a new format byte, and the
//! decoder keeps reading the older ones. Values written before format 1
//! (text, [`super::legacy`]) start with an ASCII digit, which no format
//! byte is; a load migrates them (see `RedisStore::load`).
//!
//! Hash field names (SKUs, idempotency keys) stay text: `%` and the old
//! text format's separators are escaped as `%XX`, as they always were, so
//! a field keeps its name across formats.

use std::borrow::Cow;

use omnistock_ledger::{
    CatalogRecord, IdempotencyKey, IdempotencyRecord, LocationCode, PositionRecord, ReservationId,
    ReservationRecord, Seq, Sku, TimestampMs,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::records::{self, Catalog, Idempotency, Keys, KeysV2, Position, Reservation, State};
use super::{KeysRecord, legacy};

/// The format of every value written: postcard records, version 1.
pub const FORMAT: u8 = 0x01;

/// What is wrong with a stored value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what}: {problem}")]
pub struct CodecError {
    pub what: &'static str,
    pub problem: String,
}

pub(crate) fn bad(what: &'static str, problem: impl Into<String>) -> CodecError {
    CodecError {
        what,
        problem: problem.into(),
    }
}

/// Whether `value` is in the text form written before format 1.
pub fn is_legacy(value: &[u8]) -> bool {
    value.first().is_some_and(u8::is_ascii_digit)
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serialising to memory fails only on types postcard cannot write,
    // which no record has (the tests write every record type).
    postcard::to_extend(record, vec![FORMAT]).unwrap_or_default()
}

/// The record of a format-1 value; the whole value must be the record.
fn decode<'a, T: Deserialize<'a>>(value: &'a [u8], what: &'static str) -> Result<T, CodecError> {
    match value.split_first() {
        Some((&FORMAT, bytes)) => match postcard::take_from_bytes(bytes) {
            Ok((record, [])) => Ok(record),
            Ok((_, rest)) => Err(bad(what, format!("{} bytes after the record", rest.len()))),
            Err(error) => Err(bad(what, error.to_string())),
        },
        Some((format, _)) => Err(bad(what, format!("unknown format {format}"))),
        None => Err(bad(what, "empty value")),
    }
}

/// A legacy value as text.
fn text<'a>(value: &'a [u8], what: &'static str) -> Result<&'a str, CodecError> {
    std::str::from_utf8(value).map_err(|_| bad(what, "legacy value is not UTF-8"))
}

// ---- field names --------------------------------------------------------------

/// `~` too: fields starting with `~` are the store's own (`~v`).
const SPECIAL: &[char] = &['%', '|', ';', ',', '@', '~', '\n', '\r'];

pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(SPECIAL) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        if SPECIAL.contains(&ch) {
            out.push_str(&format!("%{:02X}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

pub fn unescape(text: &str) -> Result<Cow<'_, str>, CodecError> {
    if !text.contains('%') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or_else(|| bad("escape", format!("bad escape in {text:?}")))?;
        out.push(char::from(code));
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// The hash field of a SKU's positions: the SKU, escaped.
pub fn sku_field(sku: &Sku) -> Cow<'_, str> {
    escape(sku.as_str())
}

/// The hash field of an idempotency record: its key, escaped.
pub fn idempotency_field(key: &IdempotencyKey) -> Cow<'_, str> {
    escape(key.as_str())
}

// ---- positions ----------------------------------------------------------------

/// Every position of one SKU (the records must all be of that SKU).
pub fn encode_sku_positions(positions: &[PositionRecord]) -> Vec<u8> {
    let records: Vec<Position<'_>> = positions.iter().map(Position::of).collect();
    encode(&records)
}

pub fn decode_sku_positions(field: &str, value: &[u8]) -> Result<Vec<PositionRecord>, CodecError> {
    decode_sku_positions_with(field, value, &mut FxHashMap::default())
}

/// As [`decode_sku_positions`], sharing location codes through `locations`
/// (a store has few locations and a million positions).
pub fn decode_sku_positions_with(
    field: &str,
    value: &[u8],
    locations: &mut FxHashMap<String, LocationCode>,
) -> Result<Vec<PositionRecord>, CodecError> {
    let sku = records::sku(&unescape(field)?)?;
    if is_legacy(value) {
        return legacy::decode_sku_positions_with(&sku, text(value, "positions")?, locations);
    }
    let stored: Vec<Position<'_>> = decode(value, "positions")?;
    stored
        .into_iter()
        .map(|position| {
            let code = match locations.get(position.location) {
                Some(code) => code.clone(),
                None => {
                    let code = records::location(position.location)?;
                    locations.insert(position.location.to_owned(), code.clone());
                    code
                }
            };
            Ok(position.into_record(sku.clone(), code))
        })
        .collect()
}

// ---- reservations, idempotency records ------------------------------------------

pub fn encode_reservation(r: &ReservationRecord) -> Vec<u8> {
    encode(&Reservation::of(r))
}

pub fn decode_reservation(field: &str, value: &[u8]) -> Result<ReservationRecord, CodecError> {
    if is_legacy(value) {
        return legacy::decode_reservation(field, text(value, "reservation")?);
    }
    let id = field
        .parse()
        .map_err(|_| bad("reservation id", field.to_owned()))?;
    decode::<Reservation<'_>>(value, "reservation")?.into_record(ReservationId(id))
}

/// A record is written once and never changes; it keeps the fingerprint
/// it was made with, of whatever version.
pub fn encode_idempotency(r: &IdempotencyRecord) -> Vec<u8> {
    encode(&Idempotency::of(r))
}

pub fn decode_idempotency(field: &str, value: &[u8]) -> Result<IdempotencyRecord, CodecError> {
    let key = IdempotencyKey::new(&unescape(field)?)
        .map_err(|e| bad("idempotency key", e.to_string()))?;
    if is_legacy(value) {
        return legacy::decode_idempotency(key, text(value, "idempotency")?);
    }
    decode::<Idempotency<'_>>(value, "idempotency")?.into_record(key)
}

// ---- catalog, API keys, engine state ----------------------------------------------

pub fn encode_catalog(c: &CatalogRecord) -> Vec<u8> {
    encode(&Catalog::of(c))
}

pub fn decode_catalog(value: &[u8]) -> Result<CatalogRecord, CodecError> {
    if is_legacy(value) {
        return legacy::decode_catalog(text(value, "catalog")?);
    }
    decode::<Catalog<'_>>(value, "catalog")?.to_record()
}

/// Keys with a publishable key are written in a second format of their
/// own: format 1's key has no publishable limits, and postcard has no
/// optional trailing fields. Without one, format 1 as before, so a build
/// from before publishable keys can still read them (a rollback, or an
/// older node of a cluster); creating a publishable key is the one-way step.
const KEYS_FORMAT_2: u8 = 2;

pub fn encode_keys(k: &KeysRecord) -> Vec<u8> {
    if k.keys.iter().all(|key| key.publishable.is_none()) {
        return encode(&Keys::of(k));
    }
    postcard::to_extend(&KeysV2::of(k), vec![KEYS_FORMAT_2]).unwrap_or_default()
}

pub fn decode_keys(value: &[u8]) -> Result<KeysRecord, CodecError> {
    if is_legacy(value) {
        return legacy::decode_keys(text(value, "keys")?);
    }
    if let Some((&KEYS_FORMAT_2, bytes)) = value.split_first() {
        return match postcard::take_from_bytes::<KeysV2<'_>>(bytes) {
            Ok((record, [])) => Ok(record.to_record()),
            Ok((_, rest)) => Err(bad(
                "keys",
                format!("{} bytes after the record", rest.len()),
            )),
            Err(error) => Err(bad("keys", error.to_string())),
        };
    }
    Ok(decode::<Keys<'_>>(value, "keys")?.to_record())
}

/// The engine's counters: the head of the latest cut written, per
/// reservation shard the next local id, and what feed cursors need (the
/// lineage, the oldest cursor honoured, and whether this write was the last
/// of a graceful stop).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    pub head: Seq,
    pub reservation_shards: usize,
    pub reservation_next_local: Vec<u64>,
    pub written_at: TimestampMs,
    /// `None` in states written before lineages existed.
    pub cursor_lineage: Option<u64>,
    pub cursor_floor: Seq,
    pub clean: bool,
}

pub fn encode_state(s: &EngineState) -> Vec<u8> {
    encode(&State::of(s))
}

pub fn decode_state(value: &[u8]) -> Result<EngineState, CodecError> {
    if is_legacy(value) {
        return legacy::decode_state(text(value, "state")?);
    }
    decode::<State>(value, "state")?.into_state()
}

#[cfg(test)]
mod tests {
    use super::super::KeyRecord;
    use super::*;
    use omnistock_ledger::{
        Channel, ChannelPolicy, Fingerprint, FingerprintVersion, GeoPoint, GroupName, Holder,
        HolderId, HolderKind, Incoming, Location, LocationKind, Pickup, PickupMethod, PickupSla,
        PolicyScope, PositionView, Qty, ReservationLineRecord, ReservationLineView,
        ReservationState, ReservationView, WriteOutput,
    };

    // Values as engines before format 1 wrote them (the text form; their
    // records are the ones the tests below build).
    const LEGACY_POSITIONS: &str = "18446744073709551615|PAR%2C01%40%25,18446744073709551615,10,3,1,2,-9223372036854775808,0,5~1700000000000~=PO%7C7%7E%40%2C@1~-5~,1~-3@2~4;\
         LYO-01,7,10,3,1,2,-9223372036854775808,0,,;\
         NCE-01,18446744073709551615,10,3,1,2,-9223372036854775808,0,5~1700000000000~=PO%7C7%7E%40%2C@1~-5~,1~-3@2~4,d,p4294967295;\
         BDX-01,7,10,3,1,2,-9223372036854775808,0,,,p17";
    const LEGACY_RESERVATION: &str =
        "9|call_centre|held|1|2||A,S1,2,1|key=key_1;customer=c%7C1%3B=x";
    const LEGACY_CATALOG: &str = "12~4294967301|PAR-01,store,Paris%2C Rivoli%3B 1er,48.8606,2.3376,buy,3,1;\
         WH,warehouse,,,,not_supported,,0|paris,PAR-01@WH|ads,g,paris,2,;\
         marketplace,l,WH,0,20";
    const LEGACY_KEYS: &str = "3|key_1,till%2C 3,pos@read,PAR-01,abababababababababababababababababababababababababababababababab;\
         key_2,till%2C 3,pos@read,PAR-01,abababababababababababababababababababababababababababababababab,250";
    const LEGACY_IDEMPOTENCY: [&str; 12] = [
        "1|18446744073709551615|10|P|A%2CB,S1,1,0,0,0,4,1,5,3,0",
        "2|a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5|10|P|A%2CB,S1,1,0,0,0,4,1,5,3,0",
        "2|00112233445566778899aabbccddeeff|10|P|A%2CB,S1,1,0,0,0,4,1,5,3,0",
        "1|18446744073709551615|10|P|A%2CB,S1,1,0,0,0,4,0,5,3,0,d",
        "2|a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5|10|P|A%2CB,S1,1,0,0,0,4,0,5,3,0,d",
        "2|00112233445566778899aabbccddeeff|10|P|A%2CB,S1,1,0,0,0,4,0,5,3,0,d",
        "1|18446744073709551615|10|S|A%2CB,S1,1,0,0,0,4,1,5,3,0;A%2CB,S1,1,0,0,0,4,0,5,3,0,d;A%2CB,S1,1,0,0,0,4,1,5,3,0",
        "2|a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5|10|S|A%2CB,S1,1,0,0,0,4,1,5,3,0;A%2CB,S1,1,0,0,0,4,0,5,3,0,d;A%2CB,S1,1,0,0,0,4,1,5,3,0",
        "2|00112233445566778899aabbccddeeff|10|S|A%2CB,S1,1,0,0,0,4,1,5,3,0;A%2CB,S1,1,0,0,0,4,0,5,3,0,d;A%2CB,S1,1,0,0,0,4,1,5,3,0",
        "1|18446744073709551615|10|R|5|web|held|1|2||A,S%7C1,1,0",
        "2|a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5|10|R|5|web|held|1|2||A,S%7C1,1,0",
        "2|00112233445566778899aabbccddeeff|10|R|5|web|held|1|2||A,S%7C1,1,0",
    ];
    const LEGACY_STATE: &str = "99|100|4|1;2;3;4|5|0123456789abcdef|42|1";

    fn sku_(s: &str) -> Sku {
        Sku::new(s).expect("sku")
    }
    fn loc_(s: &str) -> LocationCode {
        LocationCode::new(s).expect("loc")
    }

    #[test]
    fn escaping_round_trips_every_separator() {
        for text in ["plain", "a|b;c,d@e%f", "%41", "é|ü", "50%", "@@"] {
            assert_eq!(unescape(&escape(text)).expect("valid"), text);
            assert!(!escape(text).contains(['|', ';', ',', '@']));
        }
        assert!(unescape("%4").is_err());
        assert!(unescape("%zz").is_err());
    }

    #[test]
    fn positions_round_trip_with_awkward_ids() {
        let first = PositionRecord {
            sku: sku_("SKU|1;x~"),
            location: loc_("PAR,01@%"),
            on_hand: Qty(10),
            reserved: Qty(3),
            safety_stock: Qty(1),
            non_sellable: Qty(2),
            version: Seq(u64::MAX),
            last_count_as_of: TimestampMs::MIN,
            incoming: vec![
                Incoming {
                    qty: Qty(5),
                    expected_at: TimestampMs(1_700_000_000_000),
                    reference: Some("PO|7~@,".into()),
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
            location: loc_("LYO-01"),
            version: Seq(7),
            incoming: Vec::new(),
            history: Vec::new(),
            ..first.clone()
        };
        let third = PositionRecord {
            location: loc_("NCE-01"),
            display_only: true,
            published_lag: u32::MAX,
            ..first.clone()
        };
        let fourth = PositionRecord {
            location: loc_("BDX-01"),
            published_lag: 17,
            ..second.clone()
        };
        let records = vec![first, second, third, fourth];
        let field = sku_field(&records[0].sku).into_owned();
        let value = encode_sku_positions(&records);
        assert_eq!(value[0], FORMAT);
        assert!(!is_legacy(&value));
        assert_eq!(decode_sku_positions(&field, &value), Ok(records.clone()));
        // Damaged or unknown values are refused, never guessed at.
        let refused = |value: &[u8]| decode_sku_positions(&field, value).is_err();
        assert!(refused(&value[..value.len() - 1]), "truncated");
        assert!(refused(&[&value[..], &[0]].concat()), "trailing bytes");
        assert!(refused(&[&[2], &value[1..]].concat()), "an unknown format");
        assert!(refused(b""));
        assert_eq!(
            decode_sku_positions(&field, &encode_sku_positions(&[])),
            Ok(Vec::new())
        );

        // The legacy text form, as engines before format 1 wrote it.
        assert_eq!(
            decode_sku_positions(&field, LEGACY_POSITIONS.as_bytes()),
            Ok(records)
        );
        assert!(refused(b"1|2,3"));
        assert!(refused(b"1|L,x,1,1,1,1,1,1,,"));
        assert!(refused(b"1|L,1,1,1,1,1,1,1,,,z"));
        let legacy = decode_sku_positions(&field, b"1|L,1,1,1,1,1,1,1,,");
        assert_eq!(legacy.map(|p| p[0].display_only), Ok(false));
        assert_eq!(decode_sku_positions(&field, b"1|"), Ok(Vec::new()));
    }

    #[test]
    fn reservation_and_outcomes_round_trip() {
        let lines = vec![ReservationLineRecord {
            sku: sku_("A"),
            location: loc_("S1"),
            qty: Qty(2),
            committed: Qty(1),
        }];
        let record = ReservationRecord {
            id: ReservationId(77),
            version: Seq(9),
            channel: Channel::CallCentre,
            state: ReservationState::Committed,
            created_at: TimestampMs(1),
            expires_at: TimestampMs(2),
            resolved_at: Some(TimestampMs(3)),
            lines,
            holders: Vec::new(),
        };
        assert_eq!(
            decode_reservation("77", &encode_reservation(&record)),
            Ok(record.clone())
        );
        // A held reservation counted against hold caps keeps its holders
        // (ids with separators escaped); a value without them reads as none.
        let holder = |kind, id: &str| Holder {
            kind,
            id: HolderId::new(id).expect("valid holder"),
        };
        let held = ReservationRecord {
            state: ReservationState::Held,
            resolved_at: None,
            holders: vec![
                holder(HolderKind::Key, "key_1"),
                holder(HolderKind::Customer, "c|1;=x"),
            ],
            ..record.clone()
        };
        let encoded = encode_reservation(&held);
        assert_eq!(decode_reservation("77", &encoded), Ok(held.clone()));
        assert!(decode_reservation("x", &encoded).is_err());
        assert_eq!(
            decode_reservation("77", LEGACY_RESERVATION.as_bytes()),
            Ok(held)
        );
        let robot = format!("{LEGACY_RESERVATION};robot=r");
        assert!(decode_reservation("77", robot.as_bytes()).is_err());
        let view = PositionView {
            sku: sku_("A,B"),
            location: loc_("S1"),
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
        };
        let display = PositionView {
            display_only: true,
            atf: Qty(0),
            ..view.clone()
        };
        let outcomes = [
            WriteOutput::Position(view.clone()),
            WriteOutput::Position(display.clone()),
            WriteOutput::Positions(vec![view.clone(), display, view]),
            WriteOutput::Reservation(ReservationView {
                id: ReservationId(5),
                channel: Channel::Web,
                state: ReservationState::Held,
                created_at: TimestampMs(1),
                expires_at: TimestampMs(2),
                resolved_at: None,
                lines: vec![ReservationLineView {
                    sku: sku_("A"),
                    location: loc_("S|1"),
                    qty: Qty(1),
                    committed: Qty(0),
                }],
            }),
        ];
        let fingerprints = [
            Fingerprint::V1(u64::MAX),
            Fingerprint::V2([0xa5; 16]),
            Fingerprint::V2(std::array::from_fn(|i| i as u8 * 17)),
        ];
        for ((outcome, fingerprint), legacy) in outcomes
            .into_iter()
            .flat_map(|o| fingerprints.map(|f| (o.clone(), f)))
            .zip(LEGACY_IDEMPOTENCY)
        {
            let record = IdempotencyRecord {
                key: IdempotencyKey::new("key_1:order|42").expect("key"),
                fingerprint,
                expires_at: TimestampMs(10),
                outcome,
            };
            let field = idempotency_field(&record.key).into_owned();
            let encoded = encode_idempotency(&record);
            assert_eq!(encoded[0], FORMAT);
            // Each record keeps the fingerprint it was made with.
            assert_eq!(decode_idempotency(&field, &encoded), Ok(record.clone()));
            assert_eq!(decode_idempotency(&field, legacy.as_bytes()), Ok(record));
        }
    }

    #[test]
    fn idempotency_fingerprints_are_read_by_record_version() {
        let tail = "|10|P|A,S1,1,0,0,0,4,1,5,3,0";
        let decoded =
            |value: &str| decode_idempotency("k", value.as_bytes()).map(|r| r.fingerprint);
        assert_eq!(
            decoded(&format!("1|42{tail}")),
            Ok(Fingerprint::V1(42)),
            "legacy records (SipHash, decimal) are still read"
        );
        assert_eq!(
            decoded(&format!("2|000102030405060708090a0b0c0d0e0f{tail}")),
            Ok(Fingerprint::V2(std::array::from_fn(|i| i as u8)))
        );
        for refused in [
            // A version-2 digest in a version-1 record, and the reverse.
            format!("1|000102030405060708090a0b0c0d0e0f{tail}"),
            format!("2|42{tail}"),
            // Not exactly 32 lowercase hex digits.
            format!("2|000102030405060708090a0b0c0d0e{tail}"),
            format!("2|000102030405060708090a0b0c0d0e0f00{tail}"),
            format!("2|000102030405060708090A0B0C0D0E0F{tail}"),
            format!("2|+00102030405060708090a0b0c0d0e0f{tail}"),
            format!("2|g00102030405060708090a0b0c0d0e0f{tail}"),
            format!("2|é0102030405060708090a0b0c0d0e0f{tail}"),
            // An unknown version (a newer engine's record).
            format!("3|000102030405060708090a0b0c0d0e0f{tail}"),
        ] {
            assert!(decoded(&refused).is_err(), "{refused}");
        }
    }

    /// Records stored by engines before fingerprint version 2 (record
    /// format 1, legacy SipHash fingerprints, golden strings as they wrote
    /// them) still replay the identical request and still refuse a
    /// different one, after the decode and `Ledger::restore` of a start.
    #[test]
    fn legacy_idempotency_records_still_replay_and_refuse_after_a_restore() {
        use omnistock_ledger::{
            Acting, CommitRequest, CountRequest, HoldCap, Ledger, LedgerConfig, Line, Origin,
            Refusal, ReserveRequest, Restore, SaleRequest,
        };
        const NOW: TimestampMs = TimestampMs(1_700_000_100_000);
        let holder = |kind, id: &str| Holder {
            kind,
            id: HolderId::new(id).expect("holder"),
        };
        let held_view = |outcome: &WriteOutput| match outcome {
            WriteOutput::Reservation(view) => Ok(view.clone()),
            _ => Err(Refusal::IdempotencyKeyReused),
        };
        let line = |s: &str, l: &str, qty: u32| Line {
            sku: sku_(s),
            location: loc_(l),
            qty: Qty(qty),
        };
        let reserve = ReserveRequest {
            channel: Channel::Web,
            lines: vec![line("ÉTÉ-👕-42", "PAR-01", 2), line("SKU-1", "LYO-02", 1)],
            ttl_ms: 900_000,
            caps: vec![
                HoldCap {
                    holder: holder(HolderKind::Key, "key_1"),
                    max_units: 10,
                },
                HoldCap {
                    holder: holder(HolderKind::Customer, "cust-42"),
                    max_units: 500,
                },
            ],
        };
        let commit = CommitRequest {
            id: ReservationId(4_160),
            lines: Some(vec![line("ÉTÉ-👕-42", "PAR-01", 1)]),
        };
        let count = CountRequest {
            sku: sku_("SKU-1"),
            location: loc_("WH-1"),
            on_hand: Qty(40),
            safety_stock: Some(Qty(2)),
            expected_version: Some(Seq(17)),
            as_of: Some(TimestampMs(1_700_000_000_000)),
            reference: Some("cycle-7".into()),
        };
        let sale = SaleRequest {
            channel: Channel::Pos,
            lines: vec![line("SKU-1", "PAR-01", 1), line("SKU-2", "PAR-01", 3)],
            reference: Some("till-4/receipt-991".into()),
        };
        // (field, value) as the store held them.
        let stored = [
            (
                "key_1:order-7",
                "1|11797948176945236699|1700086500000|R|4160|web|held|1700000000000|1700000900000||\
                 ÉTÉ-👕-42,PAR-01,2,0;SKU-1,LYO-02,1,0",
            ),
            (
                "key_1:commit-7",
                "1|17093919912889190266|1700086500000|R|4160|web|committed|1700000000000|1700000900000|\
                 1700000050000|ÉTÉ-👕-42,PAR-01,2,1;SKU-1,LYO-02,1,0",
            ),
            (
                "key_1:count-7",
                "1|2374654174286493997|1700086500000|P|SKU-1,WH-1,40,0,2,0,0,38,38,18,0",
            ),
            (
                "key_1:till-4%7C991",
                "1|17020888603402756437|1700086500000|S|SKU-1,PAR-01,8,0,0,0,0,8,8,21,0;\
                 SKU-2,PAR-01,4,0,0,0,0,4,4,22,0",
            ),
        ];
        let records: Vec<IdempotencyRecord> = stored
            .iter()
            .map(|(field, value)| {
                decode_idempotency(field, value.as_bytes()).expect("a legacy record")
            })
            .collect();
        assert!(
            records
                .iter()
                .all(|r| r.fingerprint.version() == FingerprintVersion::V1)
        );
        let ledger = Ledger::new(LedgerConfig::default());
        let report = ledger
            .restore(
                Restore {
                    idempotency: records.clone(),
                    ..Restore::default()
                },
                NOW,
            )
            .expect("restores");
        assert_eq!(report.idempotency_keys, 4);
        let key = |k: &str| IdempotencyKey::new(k).expect("key");
        let outcome = |index: usize| records[index].outcome.clone();
        let head = ledger.journal_head();

        // The identical requests replay the stored outcomes...
        let (held, origin) = ledger.reserve_with_origin(&reserve, NOW, Some(&key("key_1:order-7")));
        assert_eq!(origin, Origin::Replayed);
        assert_eq!(held.map(WriteOutput::Reservation), Ok(outcome(0)));
        // (hold caps' numbers are not part of the request's identity)
        let mut raised = reserve.clone();
        raised.caps[1].max_units = 5;
        assert_eq!(
            ledger.reserve_with_origin(&raised, NOW, Some(&key("key_1:order-7"))),
            (held_view(&outcome(0)), Origin::Replayed)
        );
        assert_eq!(
            ledger
                .commit(&commit, Acting::Any, NOW, Some(&key("key_1:commit-7")))
                .map(WriteOutput::Reservation),
            Ok(outcome(1))
        );
        assert_eq!(
            ledger
                .count(&count, NOW, Some(&key("key_1:count-7")))
                .map(WriteOutput::Position),
            Ok(outcome(2))
        );
        assert_eq!(
            ledger
                .sell(&sale, NOW, Some(&key("key_1:till-4|991")))
                .map(WriteOutput::Positions),
            Ok(outcome(3))
        );
        // ...and different ones are refused.
        let reused = Refusal::IdempotencyKeyReused;
        let longer = ReserveRequest {
            ttl_ms: 900_001,
            ..reserve.clone()
        };
        let other_customer = ReserveRequest {
            caps: vec![HoldCap {
                holder: holder(HolderKind::Customer, "cust-43"),
                max_units: 500,
            }],
            ..reserve.clone()
        };
        for other in [longer, other_customer] {
            assert_eq!(
                ledger.reserve(&other, NOW, Some(&key("key_1:order-7"))),
                Err(reused.clone())
            );
        }
        let commit_all = CommitRequest {
            lines: None,
            ..commit.clone()
        };
        assert_eq!(
            ledger.commit(&commit_all, Acting::Any, NOW, Some(&key("key_1:commit-7"))),
            Err(reused.clone())
        );
        let now_count = CountRequest {
            as_of: None,
            ..count.clone()
        };
        assert_eq!(
            ledger.count(&now_count, NOW, Some(&key("key_1:count-7"))),
            Err(reused.clone())
        );
        let other_till = SaleRequest {
            reference: Some("till-4/receipt-992".into()),
            ..sale.clone()
        };
        assert_eq!(
            ledger.sell(&other_till, NOW, Some(&key("key_1:till-4|991"))),
            Err(reused)
        );
        assert_eq!(ledger.journal_head(), head, "nothing ran");

        // The legacy records are written back in the current format, each
        // with its legacy fingerprint; a new key gets a version-2 one.
        ledger
            .put_location(Location {
                code: loc_("WH-1"),
                kind: LocationKind::Warehouse,
                name: "Warehouse".into(),
                coords: None,
                pickup: None,
                ship_from_store: false,
            })
            .expect("a location");
        let first_count = CountRequest {
            expected_version: None,
            ..now_count
        };
        ledger
            .count(&first_count, NOW, Some(&key("key_1:count-8")))
            .expect("counted");
        let mut written: Vec<IdempotencyRecord> = ledger.export_all(NOW).idempotency;
        for record in &written {
            let field = idempotency_field(&record.key).into_owned();
            let encoded = encode_idempotency(record);
            assert_eq!(encoded[0], FORMAT);
            assert_eq!(decode_idempotency(&field, &encoded).as_ref(), Ok(record));
        }
        written.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        let fresh = written
            .iter()
            .position(|r| r.key.as_str() == "key_1:count-8")
            .map(|i| written.remove(i))
            .expect("the new key is written");
        assert_eq!(fresh.fingerprint.version(), FingerprintVersion::V2);
        let mut expected = records;
        expected.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        assert_eq!(written, expected);
    }

    #[test]
    fn catalog_keys_and_state_round_trip() {
        let catalog = CatalogRecord {
            generation: 12,
            changed_at: Seq(4_294_967_301),
            locations: vec![
                Location {
                    code: loc_("PAR-01"),
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
                    code: loc_("WH"),
                    kind: LocationKind::Warehouse,
                    name: String::new(),
                    coords: None,
                    pickup: Some(Pickup {
                        method: PickupMethod::NotSupported,
                        sla: None,
                    }),
                    ship_from_store: false,
                },
            ],
            groups: vec![(
                GroupName::new("paris").expect("group"),
                vec![loc_("PAR-01"), loc_("WH")],
            )],
            policies: vec![
                (
                    Channel::Ads,
                    PolicyScope::Group(GroupName::new("paris").expect("group")),
                    ChannelPolicy {
                        held_back: Qty(2),
                        cap: None,
                    },
                ),
                (
                    Channel::Marketplace,
                    PolicyScope::Location(loc_("WH")),
                    ChannelPolicy {
                        held_back: Qty(0),
                        cap: Some(Qty(20)),
                    },
                ),
            ],
        };
        let encoded = encode_catalog(&catalog);
        assert_eq!(decode_catalog(&encoded), Ok(catalog.clone()));
        // Enums are stored in the ledger's one spelling (the API's and the
        // feeds').
        let text = String::from_utf8_lossy(&encoded);
        for spelling in [
            "store",
            "warehouse",
            "buy",
            "3-day",
            "not supported",
            "ads",
            "marketplace",
        ] {
            assert!(text.contains(spelling), "{spelling} in {text:?}");
        }
        assert_eq!(
            decode_catalog(LEGACY_CATALOG.as_bytes()),
            Ok(catalog.clone())
        );
        // A catalog written before `changed_at` existed reads as 0.
        let legacy = LEGACY_CATALOG.replacen("~4294967301", "", 1);
        assert_eq!(
            decode_catalog(legacy.as_bytes()).map(|c| (c.generation, c.changed_at)),
            Ok((12, Seq(0)))
        );
        let till = KeyRecord {
            id: "key_1".into(),
            name: "till, 3".into(),
            scopes: vec!["pos".into(), "read".into()],
            locations: vec!["PAR-01".into()],
            digest_hex: "ab".repeat(32),
            max_held_units: None,
            publishable: None,
        };
        let capped = KeyRecord {
            id: "key_2".into(),
            max_held_units: Some(250),
            ..till.clone()
        };
        let keys = KeysRecord {
            generation: 3,
            keys: vec![till, capped],
        };
        assert_eq!(decode_keys(&encode_keys(&keys)), Ok(keys.clone()));
        assert_eq!(
            encode_keys(&keys),
            encode(&Keys::of(&keys)),
            "without a publishable key, format 1 (an older build reads it)"
        );
        assert_eq!(decode_keys(LEGACY_KEYS.as_bytes()), Ok(keys.clone()));
        let storefront = KeyRecord {
            id: "key_3".into(),
            scopes: Vec::new(),
            locations: Vec::new(),
            publishable: Some(crate::PublishableRecord {
                channel: "web".into(),
                origins: vec!["https://shop.example".into()],
                quantities: "threshold".into(),
                quantity_threshold: 3,
                cache_control: Some("max-age=1".into()),
            }),
            ..keys.keys[0].clone()
        };
        let with_publishable = KeysRecord {
            generation: 4,
            keys: vec![keys.keys[0].clone(), storefront],
        };
        let written = encode_keys(&with_publishable);
        assert_eq!(written.first(), Some(&KEYS_FORMAT_2));
        assert_eq!(decode_keys(&written), Ok(with_publishable));
        let state = EngineState {
            head: Seq(100),
            reservation_shards: 4,
            reservation_next_local: vec![1, 2, 3, 4],
            written_at: TimestampMs(5),
            cursor_lineage: Some(0x0123_4567_89ab_cdef),
            cursor_floor: Seq(42),
            clean: true,
        };
        assert_eq!(decode_state(&encode_state(&state)), Ok(state.clone()));
        assert_eq!(decode_state(LEGACY_STATE.as_bytes()), Ok(state.clone()));
        // The form written before cursor lineages still loads: no lineage,
        // not clean (its cursors are answered in full after the restart).
        assert_eq!(
            decode_state(b"99|100|4|1;2;3;4|5"),
            Ok(EngineState {
                cursor_lineage: None,
                cursor_floor: Seq(0),
                clean: false,
                ..state
            })
        );
        assert!(decode_state(b"99|100|4|1;2;3;4|5|zz|1|0").is_err());
        assert!(decode_state(b"99|100|4|1;2;3;4|5|00000000000000ff|1|2").is_err());
    }
}
