//! Where a reservation is in its life: held -> committed | released | expired.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationState {
    Held,
    Committed,
    Released,
    Expired,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Committed => "committed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        }
    }
}
