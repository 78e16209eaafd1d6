//! Who may act on an existing reservation. The ledger checks it in the same
//! operation as the action, under the reservation shard's lock, so no other
//! write (a transfer moving a line to another store) can land between the
//! check and the action.
//!
//! Not part of an idempotency fingerprint: a replay returns the stored
//! outcome without checking again. The HTTP layer namespaces keys per API
//! key and a key's locations never change, so whoever replays an outcome
//! is the caller that was authorised when it ran. A refusal for the
//! location is not stored at all (`Refusal::is_remembered`).

use super::ids::LocationCode;

/// On whose authority a commit, release, extend or transfer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acting<'a> {
    /// Any reservation (a `reserve` or `admin` key, the ledger's own users).
    Any,
    /// Only reservations whose every line is at one of these locations (a
    /// `pos` key: its stores); a transfer's destination too. Refused with
    /// [`Refusal::LocationNotAllowed`](super::Refusal::LocationNotAllowed).
    AtLocations(&'a [LocationCode]),
}

impl Acting<'_> {
    /// Whether this caller may act at `location`.
    pub fn allows(&self, location: &LocationCode) -> bool {
        match self {
            Acting::Any => true,
            Acting::AtLocations(allowed) => allowed.contains(location),
        }
    }
}
