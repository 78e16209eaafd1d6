//! Holders and hold caps: who a cap counts units for and how many it
//! allows (the vocabulary; `holds.rs` does the counting).

use super::ids::HolderId;

/// What a holder is: whose units a cap counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HolderKind {
    /// An API key (its id): caps one integration, whatever customers it serves.
    Key,
    /// A customer account, across every key and channel it reserves through.
    Customer,
}

impl HolderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HolderKind::Key => "key",
            HolderKind::Customer => "customer",
        }
    }

    pub fn parse(text: &str) -> Option<HolderKind> {
        match text {
            "key" => Some(HolderKind::Key),
            "customer" => Some(HolderKind::Customer),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub kind: HolderKind,
    pub id: HolderId,
}

/// A holder and the most units it may hold across its held reservations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HoldCap {
    pub holder: Holder,
    pub max_units: u64,
}
