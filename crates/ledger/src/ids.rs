//! Identifiers and quantities: newtypes so a SKU can never be passed where a
//! location code is expected, and a quantity never where a version is.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Google limits product ids to 50 characters; we apply the same bound to
/// every external id so that every id fits every feed.
pub const MAX_ID_CHARS: usize = 50;
/// Idempotency keys are typically UUIDs or order numbers; 255 leaves room for
/// a namespace prefix added by the HTTP layer.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters (found one at character {index})")]
    ControlCharacter { index: usize },
    #[error("must not start or end with whitespace")]
    SurroundingWhitespace,
}

fn validate_id(text: &str, max_chars: usize) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    // Control characters would break tab-separated feeds and log lines.
    let mut count = 0;
    for (index, ch) in text.chars().enumerate() {
        if ch.is_control() {
            return Err(IdError::ControlCharacter { index });
        }
        count += 1;
        if count > max_chars {
            return Err(IdError::TooLong { max: max_chars });
        }
    }
    if text.trim() != text {
        return Err(IdError::SurroundingWhitespace);
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an id (non-empty, bounded, no control characters).
            pub fn new(text: &str) -> Result<Self, IdError> {
                validate_id(text, $max)?;
                Ok(Self(Arc::from(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        // Lets hash maps keyed by the id be probed with a plain `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A product variant id as the retailer names it.
    Sku,
    MAX_ID_CHARS
);
string_id!(
    /// A store or warehouse code (Google's `store_code`).
    LocationCode,
    MAX_ID_CHARS
);
string_id!(
    /// The name of a location group ("online", "north-region").
    GroupName,
    MAX_ID_CHARS
);
string_id!(
    /// Who units are held for, counted against a hold cap: an API key's id
    /// or a customer account id as the retailer names it.
    HolderId,
    MAX_ID_CHARS
);
string_id!(
    /// A caller-chosen key that makes a write safe to retry.
    IdempotencyKey,
    MAX_IDEMPOTENCY_KEY_CHARS
);

/// A number of units. Positions hold at most `u32::MAX` units each, which keeps
/// a position small (see `BENCHMARKS.md`, memory per position); arithmetic that
/// would overflow is refused, never wrapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Qty(pub u32);

impl Qty {
    pub const ZERO: Qty = Qty(0);

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch. The ledger never reads a clock: every
/// operation is handed `now`, so tests control time exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampMs(pub i64);

impl TimestampMs {
    pub const MIN: TimestampMs = TimestampMs(i64::MIN);

    /// `self + ms`, saturating: a huge TTL cannot wrap a deadline into the past.
    pub fn plus_ms(self, ms: u64) -> TimestampMs {
        TimestampMs(self.0.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
    }
}

/// A position in the global movement journal. Every change gets the next one,
/// and a position's `version` is the sequence of its latest change, so versions
/// grow with every change and double as feed cursors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// Reservation ids are allocated by the ledger, densely, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId(pub u64);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Interned SKU index: positions store 4 bytes instead of a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkuId(pub u32);

/// Interned location index, dense from 0 in registration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocId(pub u32);

/// One SKU at one location, packed into a single word for cheap hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PosKey(u64);

impl PosKey {
    pub fn new(sku: SkuId, loc: LocId) -> PosKey {
        PosKey((u64::from(sku.0) << 32) | u64::from(loc.0))
    }

    pub fn sku(self) -> SkuId {
        SkuId((self.0 >> 32) as u32)
    }

    pub fn loc(self) -> LocId {
        LocId(self.0 as u32)
    }

    pub(crate) fn raw(self) -> u64 {
        self.0
    }
}

/// The sales channels. A closed set: policies are indexed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    Web,
    App,
    Pos,
    Kiosk,
    Marketplace,
    CallCentre,
    Ads,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Web,
        Channel::App,
        Channel::Pos,
        Channel::Kiosk,
        Channel::Marketplace,
        Channel::CallCentre,
        Channel::Ads,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::App => "app",
            Channel::Pos => "pos",
            Channel::Kiosk => "kiosk",
            Channel::Marketplace => "marketplace",
            Channel::CallCentre => "call_centre",
            Channel::Ads => "ads",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_validation_table() {
        let long = "x".repeat(MAX_ID_CHARS + 1);
        let exact = "é".repeat(MAX_ID_CHARS);
        let cases: &[(&str, Result<(), IdError>)] = &[
            ("SKU-1", Ok(())),
            ("", Err(IdError::Empty)),
            (&long, Err(IdError::TooLong { max: MAX_ID_CHARS })),
            (&exact, Ok(())),
            ("a\tb", Err(IdError::ControlCharacter { index: 1 })),
            ("a\nb", Err(IdError::ControlCharacter { index: 1 })),
            (" a", Err(IdError::SurroundingWhitespace)),
            ("a ", Err(IdError::SurroundingWhitespace)),
            ("with space", Ok(())),
        ];
        for (input, expected) in cases {
            assert_eq!(Sku::new(input).map(|_| ()), *expected, "input {input:?}");
        }
    }

    #[test]
    fn pos_key_round_trips() {
        let key = PosKey::new(SkuId(u32::MAX), LocId(7));
        assert_eq!(key.sku(), SkuId(u32::MAX));
        assert_eq!(key.loc(), LocId(7));
    }

    #[test]
    fn channel_names_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("fax"), None);
    }

    #[test]
    fn deadline_arithmetic_saturates() {
        assert_eq!(
            TimestampMs(i64::MAX - 1).plus_ms(u64::MAX),
            TimestampMs(i64::MAX)
        );
    }
}
