//! Idempotency fingerprints: what makes a retry "the same request".
//!
//! A fingerprint is remembered with its idempotency key, in memory and in
//! the store, and compared with every retry for as long as the key lives
//! (`idempotency_ttl_ms`), across restarts and upgrades. So it must depend
//! on nothing a compiler, a platform or a dependency may change.
//!
//! **Version 2 (current)**: the first 16 bytes (128 bits) of the SHA-256 of
//! an explicit canonical byte encoding of the request:
//!
//! ```text
//! u8    format version (2)
//! str   operation name ("reserve", "commit", "count", ...)
//! ...   the request's fields, in the order its `Fingerprinted` impl writes them
//! ```
//!
//! with fixed-width big-endian integers (`u8`, `u32`, `u64`, two's-complement
//! `i64`), each type at one width (`Qty`: u32; `Seq`, `ReservationId`, TTLs:
//! u64; `TimestampMs`, deltas: i64), booleans as one byte 0/1, strings as a
//! u64 byte length then their UTF-8 bytes, `Option` as a tag byte (0 none,
//! 1 some, then the value), sequences as a u64 item count then the items, and
//! enums as explicit tags pinned in this file (`channel_tag`,
//! `holder_kind_tag`), never Rust discriminants. Every field is framed, so
//! two different requests never share an encoding ("ab"+"c" is not
//! "a"+"bc"). Golden vectors in the tests pin the digests: a change to the
//! encoding fails them, and must come with a new version.
//!
//! **Version 1 (legacy, read-only)**: SipHash-1-3 with fixed keys over the
//! derived `std::hash::Hash` of the request, whose output Rust does not
//! promise to keep across compiler versions or platforms. Records stored by
//! engines before version 2 carry it (record format `1|...` in the store).
//! They are restored as they are, and a retry meeting one is compared with
//! its own version-1 fingerprint ([`Fingerprint::matches`]), so those keys
//! keep replaying and refusing exactly as before until they expire (at most
//! `idempotency_ttl_ms` after the upgrade). A new claim is always version 2.
//! (Re-fingerprinting on load is impossible: a record keeps the outcome, not
//! the request.) Once no store can hold a version-1 record any more, the
//! legacy code can go.

use std::fmt;
use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use smallvec::SmallVec;

use super::holder::{Holder, HolderKind};
use super::ids::{Channel, HolderId, LocationCode, Qty, ReservationId, Seq, Sku, TimestampMs};
use super::requests::{
    AdjustmentRequest, CommitRequest, CountRequest, DisplayRequest, IncomingRequest, Line,
    ReceiptRequest, ReserveRequest, ReturnRequest, SaleRequest, TransferRequest,
};

/// How a fingerprint was computed (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FingerprintVersion {
    /// Legacy: SipHash-1-3 over derived `Hash`. Only ever compared with
    /// records stored before version 2; never given to a new claim.
    V1,
    /// SHA-256 of the canonical encoding, truncated to 128 bits.
    V2,
}

impl FingerprintVersion {
    /// What every new claim is fingerprinted with.
    pub const CURRENT: FingerprintVersion = FingerprintVersion::V2;
}

/// Bytes kept of the SHA-256 of a version-2 encoding.
pub const FINGERPRINT_V2_BYTES: usize = 16;

/// A stable digest of a request, tagged with its version: the same request
/// always gets the same fingerprint of a given version, across processes,
/// restarts, platforms and compiler versions (version 2; see the module
/// documentation for version 1's limits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    /// Legacy (SipHash-1-3 over derived `Hash`): read from stores only.
    V1(u64),
    /// The first 16 bytes of the SHA-256 of the canonical encoding.
    V2([u8; FINGERPRINT_V2_BYTES]),
}

impl Fingerprint {
    /// The fingerprint of `request` (of the operation `operation`) in
    /// `version`. New claims use [`FingerprintVersion::CURRENT`]; the other
    /// versions exist to compare a retry with a record stored by an older
    /// engine.
    pub(crate) fn of(
        version: FingerprintVersion,
        operation: &'static str,
        request: &impl Fingerprinted,
    ) -> Fingerprint {
        match version {
            FingerprintVersion::V1 => {
                // Legacy-only: exactly what engines before version 2 computed.
                let mut hasher =
                    siphasher::sip::SipHasher13::new_with_keys(0x6f6d_6e69, 0x7374_6f63);
                operation.hash(&mut hasher);
                request.legacy_hash(&mut hasher);
                Fingerprint::V1(hasher.finish())
            }
            FingerprintVersion::V2 => {
                Fingerprint::v2_of_encoding(&canonical_encoding(operation, request))
            }
        }
    }

    fn v2_of_encoding(encoding: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(encoding);
        let mut bytes = [0; FINGERPRINT_V2_BYTES];
        bytes.copy_from_slice(&digest[..FINGERPRINT_V2_BYTES]);
        Fingerprint::V2(bytes)
    }

    pub fn version(self) -> FingerprintVersion {
        match self {
            Fingerprint::V1(_) => FingerprintVersion::V1,
            Fingerprint::V2(_) => FingerprintVersion::V2,
        }
    }

    /// Whether this (remembered) fingerprint is of the request whose
    /// current fingerprint is `current`. A fingerprint of another version
    /// (a record restored from a store written by an older engine) is
    /// compared with the request's fingerprint in that version, computed
    /// by `fingerprint_as` only then.
    pub(crate) fn matches(
        self,
        current: Fingerprint,
        fingerprint_as: impl Fn(FingerprintVersion) -> Fingerprint,
    ) -> bool {
        if self.version() == current.version() {
            self == current
        } else {
            self == fingerprint_as(self.version())
        }
    }

    /// A version-2 fingerprint from its text form (as `Display` writes it:
    /// exactly 32 lowercase hexadecimal digits).
    pub fn v2_from_hex(text: &str) -> Option<Fingerprint> {
        fn digit(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        if text.len() != 2 * FINGERPRINT_V2_BYTES {
            return None;
        }
        let mut bytes = [0; FINGERPRINT_V2_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let &[high, low] = pair else { return None };
            *byte = (digit(high)? << 4) | digit(low)?;
        }
        Some(Fingerprint::V2(bytes))
    }
}

/// Version 1: the decimal number; version 2: 32 lowercase hex digits.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fingerprint::V1(n) => write!(f, "{n}"),
            Fingerprint::V2(bytes) => bytes.iter().try_for_each(|b| write!(f, "{b:02x}")),
        }
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fingerprint::V1(_) => write!(f, "V1({self})"),
            Fingerprint::V2(_) => write!(f, "V2({self})"),
        }
    }
}

/// The canonical version-2 encoding of `request`: the version, the
/// operation, the request's fields.
fn canonical_encoding(operation: &str, request: &impl Fingerprinted) -> SmallVec<[u8; 256]> {
    let mut out = CanonicalEncoder {
        bytes: SmallVec::new(),
    };
    out.u8(2);
    out.str(operation);
    request.encode(&mut out);
    out.bytes
}

/// A request kind that is fingerprinted.
pub(crate) trait Fingerprinted {
    /// Writes every field that identifies the request (version 2). A field
    /// left out is one a retry may change and still be the same request
    /// (a hold cap's number); say so at the impl.
    fn encode(&self, out: &mut CanonicalEncoder);

    /// Legacy-only (version 1): feeds `hasher` exactly what engines before
    /// version 2 hashed for this request, to compare a retry with a record
    /// they stored. Never used for a new claim.
    fn legacy_hash<H: Hasher>(&self, hasher: &mut H);
}

/// Writes a canonical, unambiguous byte encoding: fixed-width big-endian
/// integers, length-prefixed strings and sequences, tagged options.
pub(crate) struct CanonicalEncoder {
    bytes: SmallVec<[u8; 256]>,
}

impl CanonicalEncoder {
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// A length or count: u64, whatever the platform's `usize`.
    fn len(&mut self, len: usize) {
        // usize is at most 64 bits on every platform Rust supports.
        self.u64(len as u64);
    }

    /// The byte length, then the UTF-8 bytes.
    pub fn str(&mut self, text: &str) {
        self.len(text.len());
        self.bytes.extend_from_slice(text.as_bytes());
    }

    /// 0 for none; 1, then the value.
    pub fn option<T: CanonicalField>(&mut self, value: Option<&T>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                value.encode(self);
            }
        }
    }

    /// The item count, then the items.
    pub fn seq<'a, T: CanonicalField + 'a>(&mut self, items: impl ExactSizeIterator<Item = &'a T>) {
        self.len(items.len());
        for item in items {
            item.encode(self);
        }
    }

    pub fn field<T: CanonicalField + ?Sized>(&mut self, value: &T) {
        value.encode(self);
    }
}

/// A field type's one canonical form (its width, its tags).
pub(crate) trait CanonicalField {
    fn encode(&self, out: &mut CanonicalEncoder);
}

impl CanonicalField for str {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.str(self);
    }
}

impl CanonicalField for String {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.str(self);
    }
}

impl CanonicalField for bool {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.bool(*self);
    }
}

impl CanonicalField for u64 {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.u64(*self);
    }
}

impl CanonicalField for i64 {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.i64(*self);
    }
}

/// A sequence: the item count, then the items.
impl<T: CanonicalField> CanonicalField for [T] {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.seq(self.iter());
    }
}

impl<T: CanonicalField> CanonicalField for Vec<T> {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.seq(self.iter());
    }
}

/// 0 for none; 1, then the value.
impl<T: CanonicalField> CanonicalField for Option<T> {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.option(self.as_ref());
    }
}

macro_rules! string_fields {
    ($($ty:ty),*) => {$(
        impl CanonicalField for $ty {
            fn encode(&self, out: &mut CanonicalEncoder) {
                out.str(self.as_str());
            }
        }
    )*};
}
string_fields!(Sku, LocationCode, HolderId);

impl CanonicalField for Qty {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.u32(self.0);
    }
}

impl CanonicalField for Seq {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.u64(self.0);
    }
}

impl CanonicalField for ReservationId {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.u64(self.0);
    }
}

impl CanonicalField for TimestampMs {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.i64(self.0);
    }
}

/// Pinned tags: never reorder or reuse; a new channel takes a new tag.
fn channel_tag(channel: Channel) -> u8 {
    match channel {
        Channel::Web => 1,
        Channel::App => 2,
        Channel::Pos => 3,
        Channel::Kiosk => 4,
        Channel::Marketplace => 5,
        Channel::CallCentre => 6,
        Channel::Ads => 7,
    }
}

impl CanonicalField for Channel {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.u8(channel_tag(*self));
    }
}

/// Pinned tags: never reorder or reuse.
fn holder_kind_tag(kind: HolderKind) -> u8 {
    match kind {
        HolderKind::Key => 1,
        HolderKind::Customer => 2,
    }
}

impl CanonicalField for Holder {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.u8(holder_kind_tag(self.kind));
        out.field(&self.id);
    }
}

impl CanonicalField for Line {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.field(&self.sku);
        out.field(&self.location);
        out.field(&self.qty);
    }
}

/// Reserve: channel, lines, TTL, and the holders of the hold caps it counts
/// against, but not the caps' numbers: a retry after a cap changed is still
/// the same request.
impl Fingerprinted for ReserveRequest {
    fn encode(&self, out: &mut CanonicalEncoder) {
        // Destructured so that a new field cannot be forgotten here.
        let ReserveRequest {
            channel,
            lines,
            ttl_ms,
            caps,
        } = self;
        out.field(channel);
        out.field(lines);
        out.u64(*ttl_ms);
        out.seq(caps.iter().map(|cap| &cap.holder));
    }

    fn legacy_hash<H: Hasher>(&self, hasher: &mut H) {
        // Version 1 hashed the derived `Hash` of the request as it was
        // before caps existed (these fields, in order), and the holders
        // after it only when there were any.
        let uncapped = (self.channel, &self.lines, self.ttl_ms);
        if self.caps.is_empty() {
            uncapped.hash(hasher);
        } else {
            let holders: SmallVec<[&Holder; 2]> = self.caps.iter().map(|cap| &cap.holder).collect();
            (uncapped, holders).hash(hasher);
        }
    }
}

/// Release: the reservation id.
impl Fingerprinted for ReservationId {
    fn encode(&self, out: &mut CanonicalEncoder) {
        out.field(self);
    }

    fn legacy_hash<H: Hasher>(&self, hasher: &mut H) {
        self.hash(hasher);
    }
}

/// Extend: the reservation id and the new TTL.
impl Fingerprinted for (ReservationId, u64) {
    fn encode(&self, out: &mut CanonicalEncoder) {
        let (id, ttl_ms) = self;
        out.field(id);
        out.u64(*ttl_ms);
    }

    fn legacy_hash<H: Hasher>(&self, hasher: &mut H) {
        self.hash(hasher);
    }
}

/// The requests fingerprinted whole: every field, in declaration order
/// (destructured, so that a new field cannot be forgotten), and version 1
/// was their derived `Hash`.
macro_rules! fingerprinted_whole {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {$(
        impl Fingerprinted for $ty {
            fn encode(&self, out: &mut CanonicalEncoder) {
                let $ty { $($field),* } = self;
                $(out.field($field);)*
            }

            fn legacy_hash<H: Hasher>(&self, hasher: &mut H) {
                self.hash(hasher);
            }
        }
    )*};
}

fingerprinted_whole! {
    CommitRequest { id, lines }
    TransferRequest { id, sku, from, to, qty }
    SaleRequest { channel, lines, reference }
    ReturnRequest { channel, line, sellable, reason, reference }
    ReceiptRequest { line, reference }
    IncomingRequest { line, expected_at, reference }
    AdjustmentRequest { sku, location, delta, reason, reference }
    CountRequest { sku, location, on_hand, safety_stock, expected_version, as_of, reference }
    DisplayRequest { sku, location, display_only, reference }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holder::HoldCap;

    fn sku(s: &str) -> Sku {
        Sku::new(s).expect("valid sku")
    }
    fn loc(s: &str) -> LocationCode {
        LocationCode::new(s).expect("valid location")
    }
    fn line(s: &str, l: &str, qty: u32) -> Line {
        Line {
            sku: sku(s),
            location: loc(l),
            qty: Qty(qty),
        }
    }
    fn cap(kind: HolderKind, id: &str, max_units: u64) -> HoldCap {
        HoldCap {
            holder: Holder {
                kind,
                id: HolderId::new(id).expect("valid holder"),
            },
            max_units,
        }
    }

    const ID: ReservationId = ReservationId(4_160);
    const EXTEND_TTL: u64 = 300_000;

    /// A multi-line reservation with a unicode SKU, counted against two caps.
    fn reserve() -> ReserveRequest {
        ReserveRequest {
            channel: Channel::Web,
            lines: vec![line("ÉTÉ-👕-42", "PAR-01", 2), line("SKU-1", "LYO-02", 1)],
            ttl_ms: 900_000,
            caps: vec![
                cap(HolderKind::Key, "key_1", 10),
                cap(HolderKind::Customer, "cust-42", 500),
            ],
        }
    }
    fn reserve_uncapped() -> ReserveRequest {
        ReserveRequest {
            caps: Vec::new(),
            ..reserve()
        }
    }
    /// A count with `as_of` and `expected_version`.
    fn count() -> CountRequest {
        CountRequest {
            sku: sku("SKU-1"),
            location: loc("WH-1"),
            on_hand: Qty(40),
            safety_stock: Some(Qty(2)),
            expected_version: Some(Seq(17)),
            as_of: Some(TimestampMs(1_700_000_000_000)),
            reference: Some("cycle-7".into()),
        }
    }
    fn sale() -> SaleRequest {
        SaleRequest {
            channel: Channel::Pos,
            lines: vec![line("SKU-1", "PAR-01", 1), line("SKU-2", "PAR-01", 3)],
            reference: Some("till-4/receipt-991".into()),
        }
    }
    /// A commit of some lines (the rest is released).
    fn commit_partial() -> CommitRequest {
        CommitRequest {
            id: ID,
            lines: Some(vec![line("ÉTÉ-👕-42", "PAR-01", 1)]),
        }
    }
    fn commit_all() -> CommitRequest {
        CommitRequest {
            id: ID,
            lines: None,
        }
    }
    fn transfer() -> TransferRequest {
        TransferRequest {
            id: ID,
            sku: sku("SKU-1"),
            from: loc("LYO-02"),
            to: loc("PAR-01"),
            qty: Some(Qty(1)),
        }
    }
    fn return_() -> ReturnRequest {
        ReturnRequest {
            channel: Channel::Kiosk,
            line: line("SKU-2", "PAR-01", 1),
            sellable: false,
            reason: Some("damaged".into()),
            reference: None,
        }
    }
    fn receipt() -> ReceiptRequest {
        ReceiptRequest {
            line: line("SKU-1", "WH-1", 120),
            reference: Some("PO-2024-0042".into()),
        }
    }
    fn incoming() -> IncomingRequest {
        IncomingRequest {
            line: line("SKU-1", "WH-1", 60),
            expected_at: TimestampMs(1_700_086_400_000),
            reference: Some("PO-2024-0043".into()),
        }
    }
    fn adjustment() -> AdjustmentRequest {
        AdjustmentRequest {
            sku: sku("SKU-1"),
            location: loc("PAR-01"),
            delta: -3,
            reason: "theft".into(),
            reference: None,
        }
    }
    fn display() -> DisplayRequest {
        DisplayRequest {
            sku: sku("SKU-2"),
            location: loc("PAR-01"),
            display_only: true,
            reference: None,
        }
    }

    /// Every golden request, as its operation fingerprints it.
    fn goldens(v: FingerprintVersion) -> Vec<(&'static str, Fingerprint)> {
        vec![
            ("reserve", Fingerprint::of(v, "reserve", &reserve())),
            (
                "reserve uncapped",
                Fingerprint::of(v, "reserve", &reserve_uncapped()),
            ),
            ("count", Fingerprint::of(v, "count", &count())),
            ("sale", Fingerprint::of(v, "sale", &sale())),
            (
                "commit partial",
                Fingerprint::of(v, "commit", &commit_partial()),
            ),
            ("commit all", Fingerprint::of(v, "commit", &commit_all())),
            ("release", Fingerprint::of(v, "release", &ID)),
            ("extend", Fingerprint::of(v, "extend", &(ID, EXTEND_TTL))),
            ("transfer", Fingerprint::of(v, "transfer", &transfer())),
            ("return", Fingerprint::of(v, "return", &return_())),
            ("receive", Fingerprint::of(v, "receive", &receipt())),
            ("incoming", Fingerprint::of(v, "incoming", &incoming())),
            ("adjust", Fingerprint::of(v, "adjust", &adjustment())),
            ("display", Fingerprint::of(v, "display", &display())),
        ]
    }

    fn hex(fingerprint: Fingerprint) -> String {
        fingerprint.to_string()
    }

    /// The pinned version-2 digests (computed independently from the
    /// documented encoding). A failure here means the encoding changed:
    /// that needs a new version, not new numbers.
    #[test]
    fn golden_vectors_pin_the_v2_digests() {
        let expected = [
            ("reserve", "72b1d025753835308b41b1b00ce96831"),
            ("reserve uncapped", "73561072f35b1cddeca1777d597bc8b3"),
            ("count", "2789116e97f8d350f809d2140538c3a7"),
            ("sale", "b2efd38de59ead588195fb5282f84e1c"),
            ("commit partial", "ba496a28a12c5a952c63d4187a3d6319"),
            ("commit all", "76e8feff512d7611d4defe5aa90dc979"),
            ("release", "20d3777de713516374f47ee4f125da71"),
            ("extend", "472a539d08c27513fbfbfe85de747b49"),
            ("transfer", "2d9061bb0a4a011699ce95927440dd33"),
            ("return", "cbd869574021d8a4ea3a82a74ac2fbd2"),
            ("receive", "f11996f06ccaf214f15e4debdd9671b4"),
            ("incoming", "7caed0d1b33f22a18a49600acd8015ce"),
            ("adjust", "3cd78586953af939f0cf89e34dd2a58c"),
            ("display", "2d22c2a1f1dee502f00e47c78ece9291"),
        ];
        let actual: Vec<(&str, String)> = goldens(FingerprintVersion::V2)
            .into_iter()
            .map(|(name, f)| {
                assert_eq!(f.version(), FingerprintVersion::V2, "{name}");
                (name, hex(f))
            })
            .collect();
        let expected: Vec<(&str, String)> = expected
            .into_iter()
            .map(|(name, digest)| (name, digest.to_owned()))
            .collect();
        assert_eq!(actual, expected);
        for (name, digest) in &expected {
            assert_eq!(
                Fingerprint::v2_from_hex(digest).map(hex).as_deref(),
                Some(digest.as_str()),
                "{name}: the text form round-trips"
            );
        }
    }

    /// The byte-exact encoding of two requests, field by field.
    #[test]
    fn golden_encodings_are_byte_exact() {
        let mut expected = String::new();
        for part in [
            "02",                             // format version
            "0000000000000005",               // operation: 5 bytes
            "636f756e74",                     // "count"
            "0000000000000005534b552d31",     // sku "SKU-1"
            "000000000000000457482d31",       // location "WH-1"
            "00000028",                       // on_hand 40 (u32)
            "01",                             // safety_stock: some
            "00000002",                       // 2 (u32)
            "01",                             // expected_version: some
            "0000000000000011",               // 17 (u64)
            "01",                             // as_of: some
            "0000018bcfe56800",               // 1,700,000,000,000 ms (i64)
            "01",                             // reference: some
            "00000000000000076379636c652d37", // "cycle-7"
        ] {
            expected.push_str(part);
        }
        let encoding = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(encoding(&canonical_encoding("count", &count())), expected);
        assert_eq!(
            encoding(&canonical_encoding("release", &ID)),
            "02000000000000000772656c656173650000000000001040"
        );
    }

    /// The legacy (version-1) fingerprints of the golden requests, as the
    /// engine computed them before version 2 (pinned from that code): the
    /// legacy function must keep matching records it stored.
    #[test]
    fn golden_vectors_pin_the_legacy_v1_fingerprints() {
        let expected: [(&str, u64); 14] = [
            ("reserve", 11_797_948_176_945_236_699),
            ("reserve uncapped", 5_357_134_570_198_865_695),
            ("count", 2_374_654_174_286_493_997),
            ("sale", 17_020_888_603_402_756_437),
            ("commit partial", 17_093_919_912_889_190_266),
            ("commit all", 2_715_404_873_873_311_533),
            ("release", 12_112_415_766_426_679_867),
            ("extend", 11_837_493_616_319_994_142),
            ("transfer", 1_219_880_246_009_085_080),
            ("return", 2_027_938_366_236_558_887),
            ("receive", 18_259_041_507_154_204_165),
            ("incoming", 7_645_932_208_524_874_289),
            ("adjust", 12_345_564_794_627_869_606),
            ("display", 7_193_696_505_988_445_768),
        ];
        let actual: Vec<(&str, Fingerprint)> = goldens(FingerprintVersion::V1);
        let expected: Vec<(&str, Fingerprint)> = expected
            .into_iter()
            .map(|(name, n)| (name, Fingerprint::V1(n)))
            .collect();
        assert_eq!(actual, expected);
    }

    fn v2(operation: &'static str, request: &impl Fingerprinted) -> Fingerprint {
        Fingerprint::of(FingerprintVersion::V2, operation, request)
    }

    /// Asserts every fingerprint differs from every other.
    fn all_distinct(fingerprints: &[(String, Fingerprint)]) {
        for (i, (a_name, a)) in fingerprints.iter().enumerate() {
            for (b_name, b) in &fingerprints[..i] {
                assert_ne!(a, b, "{a_name} and {b_name} must differ");
            }
        }
    }

    #[test]
    fn changing_any_single_field_changes_the_digest() {
        macro_rules! variants {
            ($operation:literal, $base:expr, [$($name:literal => $change:expr),* $(,)?]) => {{
                let base = $base;
                let mut out = vec![(format!("{} base", $operation), v2($operation, &base))];
                $(
                    let mut changed = base.clone();
                    #[allow(clippy::redundant_closure_call)]
                    ($change)(&mut changed);
                    assert_ne!(changed, base, "{}: {} must change something", $operation, $name);
                    out.push((format!("{} {}", $operation, $name), v2($operation, &changed)));
                )*
                out
            }};
        }
        let sets = [
            variants!("reserve", reserve(), [
                "channel" => |r: &mut ReserveRequest| r.channel = Channel::App,
                "line sku" => |r: &mut ReserveRequest| r.lines[0].sku = sku("ÉTÉ-👕-43"),
                "line location" => |r: &mut ReserveRequest| r.lines[1].location = loc("LYO-03"),
                "line qty" => |r: &mut ReserveRequest| r.lines[0].qty = Qty(3),
                "line order" => |r: &mut ReserveRequest| r.lines.reverse(),
                "one line less" => |r: &mut ReserveRequest| { r.lines.pop(); },
                "ttl" => |r: &mut ReserveRequest| r.ttl_ms += 1,
                "holder kind" => |r: &mut ReserveRequest| r.caps[0].holder.kind = HolderKind::Customer,
                "holder id" => |r: &mut ReserveRequest| {
                    r.caps[1].holder.id = HolderId::new("cust-43").expect("id");
                },
                "one cap less" => |r: &mut ReserveRequest| { r.caps.pop(); },
                "no caps" => |r: &mut ReserveRequest| r.caps.clear(),
            ]),
            variants!("count", count(), [
                "sku" => |r: &mut CountRequest| r.sku = sku("SKU-2"),
                "location" => |r: &mut CountRequest| r.location = loc("WH-2"),
                "on_hand" => |r: &mut CountRequest| r.on_hand = Qty(41),
                "safety_stock" => |r: &mut CountRequest| r.safety_stock = Some(Qty(3)),
                "no safety_stock" => |r: &mut CountRequest| r.safety_stock = None,
                "safety_stock 0" => |r: &mut CountRequest| r.safety_stock = Some(Qty(0)),
                "expected_version" => |r: &mut CountRequest| r.expected_version = Some(Seq(18)),
                "no expected_version" => |r: &mut CountRequest| r.expected_version = None,
                "as_of" => |r: &mut CountRequest| r.as_of = Some(TimestampMs(1_700_000_000_001)),
                "no as_of" => |r: &mut CountRequest| r.as_of = None,
                "reference" => |r: &mut CountRequest| r.reference = Some("cycle-8".into()),
                "no reference" => |r: &mut CountRequest| r.reference = None,
            ]),
            variants!("sale", sale(), [
                "channel" => |r: &mut SaleRequest| r.channel = Channel::Kiosk,
                "line qty" => |r: &mut SaleRequest| r.lines[1].qty = Qty(4),
                "line sku" => |r: &mut SaleRequest| r.lines[1].sku = sku("SKU-3"),
                "reference" => |r: &mut SaleRequest| r.reference = Some("till-4/receipt-992".into()),
                "no reference" => |r: &mut SaleRequest| r.reference = None,
            ]),
            variants!("commit", commit_partial(), [
                "id" => |r: &mut CommitRequest| r.id = ReservationId(4_161),
                "all lines" => |r: &mut CommitRequest| r.lines = None,
                "no line" => |r: &mut CommitRequest| r.lines = Some(Vec::new()),
                "line qty" => |r: &mut CommitRequest| {
                    if let Some(lines) = &mut r.lines { lines[0].qty = Qty(0); }
                },
            ]),
            variants!("transfer", transfer(), [
                "id" => |r: &mut TransferRequest| r.id = ReservationId(1),
                "sku" => |r: &mut TransferRequest| r.sku = sku("SKU-2"),
                "from" => |r: &mut TransferRequest| r.from = loc("LYO-03"),
                "to" => |r: &mut TransferRequest| r.to = loc("PAR-02"),
                "qty" => |r: &mut TransferRequest| r.qty = Some(Qty(2)),
                "whole line" => |r: &mut TransferRequest| r.qty = None,
            ]),
            variants!("return", return_(), [
                "channel" => |r: &mut ReturnRequest| r.channel = Channel::Pos,
                "line" => |r: &mut ReturnRequest| r.line.qty = Qty(2),
                "sellable" => |r: &mut ReturnRequest| r.sellable = true,
                "reason" => |r: &mut ReturnRequest| r.reason = Some("scratched".into()),
                "no reason" => |r: &mut ReturnRequest| r.reason = None,
                "reference" => |r: &mut ReturnRequest| r.reference = Some("rma-1".into()),
            ]),
            variants!("receive", receipt(), [
                "line" => |r: &mut ReceiptRequest| r.line.location = loc("WH-2"),
                "reference" => |r: &mut ReceiptRequest| r.reference = None,
            ]),
            variants!("incoming", incoming(), [
                "line" => |r: &mut IncomingRequest| r.line.qty = Qty(61),
                "expected_at" => |r: &mut IncomingRequest| r.expected_at = TimestampMs(-1),
                "reference" => |r: &mut IncomingRequest| r.reference = None,
            ]),
            variants!("adjust", adjustment(), [
                "sku" => |r: &mut AdjustmentRequest| r.sku = sku("SKU-2"),
                "location" => |r: &mut AdjustmentRequest| r.location = loc("PAR-02"),
                "delta" => |r: &mut AdjustmentRequest| r.delta = 3,
                "reason" => |r: &mut AdjustmentRequest| r.reason = "found".into(),
                "reference" => |r: &mut AdjustmentRequest| r.reference = Some("audit".into()),
            ]),
            variants!("display", display(), [
                "sku" => |r: &mut DisplayRequest| r.sku = sku("SKU-3"),
                "location" => |r: &mut DisplayRequest| r.location = loc("PAR-02"),
                "display_only" => |r: &mut DisplayRequest| r.display_only = false,
                "reference" => |r: &mut DisplayRequest| r.reference = Some("planogram".into()),
            ]),
        ];
        let mut every: Vec<(String, Fingerprint)> = sets.into_iter().flatten().collect();
        every.push(("release".into(), v2("release", &ID)));
        every.push((
            "release other id".into(),
            v2("release", &ReservationId(4_161)),
        ));
        every.push(("extend".into(), v2("extend", &(ID, EXTEND_TTL))));
        every.push((
            "extend other id".into(),
            v2("extend", &(ReservationId(4_161), EXTEND_TTL)),
        ));
        every.push((
            "extend other ttl".into(),
            v2("extend", &(ID, EXTEND_TTL + 1)),
        ));
        // Across kinds and operations too: nothing collides.
        all_distinct(&every);
    }

    #[test]
    fn field_boundaries_are_part_of_the_digest() {
        let with = |s: &str, l: &str| {
            v2(
                "receive",
                &ReceiptRequest {
                    line: line(s, l, 1),
                    reference: None,
                },
            )
        };
        let returned = |reason: Option<&str>, reference: Option<&str>| {
            v2(
                "return",
                &ReturnRequest {
                    reason: reason.map(String::from),
                    reference: reference.map(String::from),
                    ..return_()
                },
            )
        };
        let lines = |lines: Vec<Line>| v2("sale", &SaleRequest { lines, ..sale() });
        all_distinct(&[
            ("ab + c".into(), with("ab", "c")),
            ("a + bc".into(), with("a", "bc")),
            ("abc + d".into(), with("abc", "d")),
        ]);
        all_distinct(&[
            (
                "reason ab, reference c".into(),
                returned(Some("ab"), Some("c")),
            ),
            (
                "reason a, reference bc".into(),
                returned(Some("a"), Some("bc")),
            ),
            ("reason x only".into(), returned(Some("x"), None)),
            ("reference x only".into(), returned(None, Some("x"))),
            ("empty reason".into(), returned(Some(""), None)),
            ("neither".into(), returned(None, None)),
        ]);
        all_distinct(&[
            ("one line of 12".into(), lines(vec![line("A", "B", 12)])),
            (
                "two lines".into(),
                lines(vec![line("A", "B", 1), line("A", "B", 2)]),
            ),
            ("one line of 1".into(), lines(vec![line("A", "B", 1)])),
        ]);
        // The operation is framed too: the same request under two names.
        all_distinct(&[
            ("receive".into(), v2("receive", &receipt())),
            ("receiv + e".into(), v2("receiv", &receipt())),
        ]);
    }

    #[test]
    fn hold_cap_numbers_are_not_fingerprinted() {
        let mut raised = reserve();
        raised.caps[0].max_units = 11;
        raised.caps[1].max_units = 1;
        for version in [FingerprintVersion::V1, FingerprintVersion::V2] {
            assert_eq!(
                Fingerprint::of(version, "reserve", &raised),
                Fingerprint::of(version, "reserve", &reserve()),
                "{version:?}"
            );
        }
    }

    #[test]
    fn enum_tags_are_pinned() {
        assert_eq!(Channel::ALL.map(channel_tag), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            [HolderKind::Key, HolderKind::Customer].map(holder_kind_tag),
            [1, 2]
        );
    }

    #[test]
    fn a_remembered_fingerprint_compares_in_its_own_version() {
        let request = reserve();
        let fingerprint_as = |version| Fingerprint::of(version, "reserve", &request);
        let current = fingerprint_as(FingerprintVersion::CURRENT);
        let legacy = fingerprint_as(FingerprintVersion::V1);
        assert!(current.matches(current, fingerprint_as));
        assert!(legacy.matches(current, fingerprint_as));
        let other = ReserveRequest {
            ttl_ms: 1,
            ..reserve()
        };
        let other_as = |version| Fingerprint::of(version, "reserve", &other);
        let other_current = other_as(FingerprintVersion::CURRENT);
        assert!(!current.matches(other_current, other_as));
        assert!(!legacy.matches(other_current, other_as));
        // Only a remembered fingerprint of another version asks for one.
        let never = |_: FingerprintVersion| -> Fingerprint { panic!("not needed") };
        assert!(current.matches(current, never));
        assert!(!current.matches(other_current, never));
    }
}
