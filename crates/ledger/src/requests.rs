//! What callers send to the ledger and what they get back. Plain data: the
//! HTTP layer maps JSON to and from these; the ledger never sees JSON.

use super::catalog::{GeoPoint, Pickup};
use super::holder::HoldCap;
use super::ids::{Channel, GroupName, LocationCode, Qty, ReservationId, Seq, Sku, TimestampMs};
use super::reservation_state::ReservationState;

/// Units of one SKU at one location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub sku: Sku,
    pub location: LocationCode,
    pub qty: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReserveRequest {
    pub channel: Channel,
    pub lines: Vec<Line>,
    pub ttl_ms: u64,
    /// Hold caps this reservation counts against (the caller's key, the
    /// customer); empty when none applies. The holders are part of the
    /// idempotency fingerprint, the caps' numbers are not: a retry after a
    /// cap changed is still the same request.
    pub caps: Vec<HoldCap>,
}

/// `lines: None` commits everything held. With lines, each listed line
/// commits that many units (0 is allowed) and everything not listed is
/// released.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommitRequest {
    pub id: ReservationId,
    pub lines: Option<Vec<Line>>,
}

/// Moves a held line (or `qty` units of it) to another location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransferRequest {
    pub id: ReservationId,
    pub sku: Sku,
    pub from: LocationCode,
    pub to: LocationCode,
    pub qty: Option<Qty>,
}

/// An immediate sale (POS, kiosk): all lines or none, within what the
/// channel sees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaleRequest {
    pub channel: Channel,
    pub lines: Vec<Line>,
    pub reference: Option<String>,
}

/// A customer return (BORIS): back to on hand, or to the non-sellable bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReturnRequest {
    pub channel: Channel,
    pub line: Line,
    pub sellable: bool,
    pub reason: Option<String>,
    pub reference: Option<String>,
}

/// Goods received. A receipt whose reference matches an expected receipt
/// consumes it (so ATO does not count the units twice).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReceiptRequest {
    pub line: Line,
    pub reference: Option<String>,
}

/// Goods expected (purchase order, transfer in): counts towards ATO.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IncomingRequest {
    pub line: Line,
    pub expected_at: TimestampMs,
    pub reference: Option<String>,
}

/// A signed correction with a mandatory reason (damage, theft, found).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AdjustmentRequest {
    pub sku: Sku,
    pub location: LocationCode,
    pub delta: i64,
    pub reason: String,
    pub reference: Option<String>,
}

/// An absolute count from ERP/WMS/cycle count. It never touches reservations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CountRequest {
    pub sku: Sku,
    pub location: LocationCode,
    pub on_hand: Qty,
    pub safety_stock: Option<Qty>,
    /// Compare-and-set: refused unless the position is at this version
    /// (`Seq(0)`: the position must not exist yet).
    pub expected_version: Option<Seq>,
    /// When the count was taken: on-hand movements applied after it are
    /// re-applied on top, so a sale between count and arrival is not lost.
    pub as_of: Option<TimestampMs>,
    pub reference: Option<String>,
}

/// What one channel sees of a position: its ATF after the channel's policy,
/// and whether the units are display models (feeds publish both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelView {
    pub atf: Qty,
    pub display_only: bool,
}

/// Marks a position's units as display models (or not): shown in the store,
/// not sold off the shelf; ads say `on_display_to_order`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayRequest {
    pub sku: Sku,
    pub location: LocationCode,
    pub display_only: bool,
    pub reference: Option<String>,
}

/// Which locations an availability query covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every location holding a position for the SKU.
    All,
    Locations(Vec<LocationCode>),
    Group(GroupName),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NearbyQuery {
    pub sku: Sku,
    pub point: GeoPoint,
    pub radius_km: f64,
    pub qty: Qty,
    pub channel: Channel,
    /// Only stores that offer pickup (BOPIS).
    pub pickup_only: bool,
    pub limit: usize,
}

/// A position as callers see it. `atf` is after the channel's policy when
/// the query names a channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PositionView {
    pub sku: Sku,
    pub location: LocationCode,
    pub on_hand: Qty,
    pub reserved: Qty,
    pub safety_stock: Qty,
    pub non_sellable: Qty,
    /// Incoming units expected within the ATO horizon.
    pub incoming: u64,
    pub atf: Qty,
    pub ato: u64,
    pub version: Seq,
    /// Units reserved beyond what is on hand (a count found stock missing):
    /// orders that may not be fulfillable from here.
    pub shortage: Qty,
    /// Display models only: not for sale here (ATF 0).
    pub display_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkuAvailability {
    pub sku: Sku,
    pub total_atf: u64,
    pub locations: Vec<PositionView>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NearbyStore {
    pub location: LocationCode,
    pub name: String,
    pub distance_km: f64,
    pub atf: Qty,
    pub pickup: Option<Pickup>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReservationLineView {
    pub sku: Sku,
    pub location: LocationCode,
    pub qty: Qty,
    pub committed: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReservationView {
    pub id: ReservationId,
    pub channel: Channel,
    pub state: ReservationState,
    pub created_at: TimestampMs,
    pub expires_at: TimestampMs,
    pub resolved_at: Option<TimestampMs>,
    pub lines: Vec<ReservationLineView>,
}

/// The outcome of any write, as remembered under an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutput {
    Position(PositionView),
    Positions(Vec<PositionView>),
    Reservation(ReservationView),
}

impl WriteOutput {
    pub fn as_reservation(&self) -> Option<&ReservationView> {
        match self {
            WriteOutput::Reservation(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_position(&self) -> Option<&PositionView> {
        match self {
            WriteOutput::Position(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_positions(&self) -> Option<&Vec<PositionView>> {
        match self {
            WriteOutput::Positions(p) => Some(p),
            _ => None,
        }
    }
}
