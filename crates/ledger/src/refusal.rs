//! Refusals are values. The variants are declared in precedence order: when a
//! request is wrong in several ways, the ledger reports the first that applies
//! (shape, then existence, then idempotency, then the caller's authority over
//! a reservation, then state, then versions, then hold caps, then stock),
//! because that is the order in which it checks them.

use super::holder::HolderKind;
use super::ids::{
    GroupName, HolderId, IdError, LocationCode, Qty, ReservationId, Seq, Sku, TimestampMs,
};
use super::reservation_state::ReservationState;

/// One line that could not be granted, and by how much it fell short.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shortfall {
    pub sku: Sku,
    pub location: LocationCode,
    /// Units asked for on this position (lines on the same position summed).
    pub requested: Qty,
    /// What the requesting channel could have had.
    pub available: Qty,
}

/// What is wrong with the shape of a request; such refusals do not depend on
/// ledger state, so they are never stored under an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Invalid {
    #[error("a request needs at least one line")]
    NoLines,
    #[error("at most {max} lines per request")]
    TooManyLines { max: usize },
    #[error("line {line}: quantity must be at least 1")]
    ZeroQuantity { line: usize },
    #[error("line {line}: quantity must be at most {max}")]
    QuantityTooLarge { line: usize, max: u32 },
    #[error("ttl must be between {min_ms} and {max_ms} ms")]
    TtlOutOfRange { min_ms: u64, max_ms: u64 },
    #[error("line {line}: cannot commit {requested}, only {held} held")]
    CommitMoreThanHeld {
        line: usize,
        requested: Qty,
        held: Qty,
    },
    #[error("line {line}: the same position is listed twice")]
    DuplicateLine { line: usize },
    #[error("transfer destination is the line's own location")]
    TransferToSameLocation,
    #[error("an adjustment needs a reason")]
    MissingReason,
    #[error("an adjustment delta must not be zero")]
    ZeroDelta,
    #[error("{field}: {error}")]
    BadId { field: &'static str, error: IdError },
    #[error("{0}")]
    Other(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("invalid request: {0}")]
    Invalid(Invalid),
    #[error("unknown location {0}")]
    UnknownLocation(LocationCode),
    #[error("unknown location group {0}")]
    UnknownGroup(GroupName),
    #[error("idempotency key already used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyInFlight,
    #[error("too many idempotency keys remembered; retry later")]
    IdempotencyStoreFull,
    #[error("reservation {0} not found")]
    ReservationNotFound(ReservationId),
    /// The caller may act only at some locations ([`Acting::AtLocations`]),
    /// and the reservation has a line at `location` (or a transfer's
    /// destination is `location`). Checked under the reservation's lock,
    /// before anything changes.
    ///
    /// [`Acting::AtLocations`]: super::Acting::AtLocations
    #[error("the caller may not act on location {location}")]
    LocationNotAllowed { location: LocationCode },
    #[error("reservation {id} is {}, not held", state.as_str())]
    ReservationNotHeld {
        id: ReservationId,
        state: ReservationState,
    },
    #[error("reservation has no line for {sku} at {location}")]
    LineNotInReservation { sku: Sku, location: LocationCode },
    #[error("the position is at version {}, the request expected version {}", actual.0, expected.0)]
    StaleVersion { expected: Seq, actual: Seq },
    #[error(
        "a count taken at {} ms (Unix time) was already applied; this one is from {} ms",
        last_as_of.0,
        as_of.0
    )]
    CountOlderThanLast {
        as_of: TimestampMs,
        last_as_of: TimestampMs,
    },
    #[error(
        "as_of {} ms (Unix time) is older than the movement history kept (from {} ms); count again",
        as_of.0,
        horizon.0
    )]
    AsOfBeyondHistory {
        as_of: TimestampMs,
        horizon: TimestampMs,
    },
    #[error("as_of {} ms (Unix time) is in the future", as_of.0)]
    AsOfInFuture { as_of: TimestampMs },
    #[error("{} {holder} holds {held} units; {requested} more would exceed its cap of {max}", kind.as_str())]
    HoldCapExceeded {
        kind: HolderKind,
        holder: HolderId,
        held: u64,
        requested: u64,
        max: u64,
    },
    #[error("insufficient stock on {} line(s)", shortfalls.len())]
    InsufficientStock { shortfalls: Vec<Shortfall> },
    #[error("not enough units physically on hand on {} line(s)", shortfalls.len())]
    InsufficientOnHand { shortfalls: Vec<Shortfall> },
    #[error("position {sku} at {location} already has too many expected receipts")]
    TooManyIncoming { sku: Sku, location: LocationCode },
    #[error("quantity of {sku} at {location} would exceed the per-position maximum")]
    QuantityOverflow { sku: Sku, location: LocationCode },
}

impl Refusal {
    /// Whether this refusal is the outcome an idempotency key keeps (and
    /// replays). Two kinds are not, so a retry with the same key runs again:
    /// - `Invalid`: the shape of the request, whatever the state;
    /// - `LocationNotAllowed`: who asked, not what the operation did. The
    ///   operation did not run for this caller, and the fingerprint does not
    ///   name the caller, so a stored refusal would be replayed to anyone
    ///   using the key: to a caller allowed to act (the HTTP layer
    ///   namespaces keys per API key, but the ledger does not rely on it),
    ///   or to the same caller after the reservation moved back to its
    ///   stores. Nothing changed, so nothing is lost by forgetting it: the
    ///   key stays free and the operation still runs at most once.
    pub fn is_remembered(&self) -> bool {
        !matches!(
            self,
            Refusal::Invalid(_) | Refusal::LocationNotAllowed { .. }
        )
    }
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Refusal {
        Refusal::Invalid(invalid)
    }
}
