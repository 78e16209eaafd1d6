//! The JSON shapes of the API (the Stable contract: the names README.md
//! documents) and their conversion to and from the ledger's types. Only this layer knows JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::error_codes::Code;
use super::json::{self, JsonTime};
use crate::ledger::{
    Channel, Line, Location, LocationCode, LocationKind, NearbyStore, Pickup, PickupMethod,
    PickupSla, PositionView, Qty, ReservationView, Sku, SkuAvailability,
};

// ---------- shared pieces ----------

pub fn channel(text: &str) -> Result<Channel, ApiError> {
    Channel::parse(text).ok_or_else(|| {
        ApiError::new(
            Code::UnknownChannel,
            format!(
                "channel {:?} is not one of web, app, pos, kiosk, marketplace, call_centre, ads",
                text.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// Units of one SKU at one location.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    pub sku: String,
    pub location: String,
    /// Units, 1 or more.
    pub qty: u32,
}

impl LineBody {
    pub fn to_line(&self, index: usize) -> Result<Line, ApiError> {
        Ok(Line {
            sku: json::sku(format_args!("lines[{index}].sku"), &self.sku)?,
            location: json::location(format_args!("lines[{index}].location"), &self.location)?,
            qty: Qty(self.qty),
        })
    }
}

pub fn lines(bodies: &[LineBody], max: usize) -> Result<Vec<Line>, ApiError> {
    if bodies.len() > max {
        return Err(ApiError::new(
            Code::TooManyLines,
            format!("at most {max} lines per request"),
        ));
    }
    bodies
        .iter()
        .enumerate()
        .map(|(i, l)| l.to_line(i))
        .collect()
}

// ---------- positions and availability ----------

/// A position as the Stable contract defines it, plus extra detail fields.
/// Made from the ledger's view without copying its ids (they are shared).
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionJson {
    #[serde(serialize_with = "id_text")]
    #[schema(value_type = String)]
    pub sku: Sku,
    #[serde(serialize_with = "id_text")]
    #[schema(value_type = String)]
    pub location: LocationCode,
    pub on_hand: u32,
    pub reserved: u32,
    pub safety_stock: u32,
    /// Available to fulfil, after the requesting channel's policy if one was named.
    pub atf: u32,
    /// ATF plus receipts expected within the ATO horizon.
    pub ato: u64,
    /// Grows with every change; use as `expected_version` for compare-and-set.
    pub version: u64,
    pub non_sellable: u32,
    pub incoming: u64,
    /// Units reserved beyond what is on hand (a count found stock missing).
    pub shortage: u32,
    /// Display models only: not for sale here (ATF 0); ads say `on_display_to_order`.
    pub display_only: bool,
}

/// An id (SKU, location code) as its text.
fn id_text<S: serde::Serializer>(
    id: &impl std::borrow::Borrow<str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(id.borrow())
}

/// A number written as a JSON string (reservation ids: beyond what a
/// JavaScript number holds exactly).
fn number_text<S: serde::Serializer>(number: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(itoa::Buffer::new().format(*number))
}

impl From<&PositionView> for PositionJson {
    fn from(p: &PositionView) -> PositionJson {
        PositionJson {
            sku: p.sku.clone(),
            location: p.location.clone(),
            on_hand: p.on_hand.0,
            reserved: p.reserved.0,
            safety_stock: p.safety_stock.0,
            atf: p.atf.0,
            ato: p.ato,
            version: p.version.0,
            non_sellable: p.non_sellable.0,
            incoming: p.incoming,
            shortage: p.shortage.0,
            display_only: p.display_only,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityJson {
    pub sku: String,
    pub total_atf: u64,
    pub locations: Vec<PositionJson>,
}

impl From<&SkuAvailability> for AvailabilityJson {
    fn from(a: &SkuAvailability) -> AvailabilityJson {
        AvailabilityJson {
            sku: a.sku.to_string(),
            total_atf: a.total_atf,
            locations: a.locations.iter().map(PositionJson::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    pub sku: String,
    pub location: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchAvailabilityBody {
    /// See availability after this channel's policy.
    pub channel: Option<String>,
    pub items: Vec<BatchItem>,
}

/// One answer per requested item, in order: a position or a problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAvailabilityJson {
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Position(PositionJson),
    Error {
        sku: String,
        location: String,
        code: Code,
        detail: String,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NearbyStoreJson {
    pub location: String,
    pub name: String,
    pub distance_km: f64,
    pub atf: u32,
    pub pickup_method: Option<&'static str>,
    pub pickup_sla: Option<String>,
}

impl From<&NearbyStore> for NearbyStoreJson {
    fn from(s: &NearbyStore) -> NearbyStoreJson {
        NearbyStoreJson {
            location: s.location.to_string(),
            name: s.name.clone(),
            distance_km: (s.distance_km * 1000.0).round() / 1000.0,
            atf: s.atf.0,
            pickup_method: s.pickup.map(|p| p.method.as_str()),
            pickup_sla: s.pickup.and_then(|p| p.sla).map(|sla| sla.to_string()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NearbyJson {
    pub sku: String,
    pub stores: Vec<NearbyStoreJson>,
}

// ---------- reservations ----------

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    pub channel: String,
    pub lines: Vec<LineBody>,
    pub ttl_seconds: u64,
    /// The customer the units are held for: counted against the
    /// per-customer hold cap (`--max-held-units-per-customer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// Commit only these lines and quantities; everything else is released.
    pub lines: Option<Vec<LineBody>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub ttl_seconds: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    pub sku: String,
    pub from: String,
    pub to: String,
    /// Units to move (default: the whole line).
    pub qty: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationLineJson {
    #[serde(serialize_with = "id_text")]
    #[schema(value_type = String)]
    pub sku: Sku,
    #[serde(serialize_with = "id_text")]
    #[schema(value_type = String)]
    pub location: LocationCode,
    pub qty: u32,
    pub committed: u32,
}

/// A reservation, made from the ledger's view (its ids shared, its lines'
/// storage reused, its times written without allocating).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationJson {
    #[serde(serialize_with = "number_text")]
    #[schema(value_type = String)]
    pub id: u64,
    /// `held`, `committed`, `released` or `expired`.
    pub state: &'static str,
    pub channel: &'static str,
    #[schema(value_type = String)]
    pub created_at: JsonTime,
    #[schema(value_type = String)]
    pub expires_at: JsonTime,
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<JsonTime>,
    pub lines: Vec<ReservationLineJson>,
}

impl From<ReservationView> for ReservationJson {
    fn from(r: ReservationView) -> ReservationJson {
        ReservationJson {
            id: r.id.0,
            state: r.state.as_str(),
            channel: r.channel.as_str(),
            created_at: JsonTime(r.created_at),
            expires_at: JsonTime(r.expires_at),
            resolved_at: r.resolved_at.map(JsonTime),
            lines: r
                .lines
                .into_iter()
                .map(|l| ReservationLineJson {
                    sku: l.sku,
                    location: l.location,
                    qty: l.qty.0,
                    committed: l.committed.0,
                })
                .collect(),
        }
    }
}

// ---------- stock movements ----------

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountBody {
    pub on_hand: u32,
    pub safety_stock: Option<u32>,
    /// Compare-and-set: refused with 412 unless the position is at this version (0: must not exist).
    pub expected_version: Option<u64>,
    /// RFC 3339 time the count was taken; movements after it are re-applied.
    pub as_of: Option<String>,
    pub reference: Option<String>,
}

/// Marks a position's units as display models (or clears the mark).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisplayBody {
    /// `true`: the units are display models, not sold off the shelf (ATF 0 for
    /// every channel; ads publish `on_display_to_order`).
    pub display_only: bool,
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleBody {
    pub channel: String,
    pub lines: Vec<LineBody>,
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    pub channel: String,
    pub sku: String,
    pub location: String,
    pub qty: u32,
    /// false: to the non-sellable bucket. Default true.
    pub sellable: Option<bool>,
    pub reason: Option<String>,
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    pub sku: String,
    pub location: String,
    pub qty: u32,
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingBody {
    pub sku: String,
    pub location: String,
    pub qty: u32,
    /// RFC 3339.
    pub expected_at: String,
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentBody {
    pub sku: String,
    pub location: String,
    pub delta: i64,
    pub reason: String,
    pub reference: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionsJson {
    pub positions: Vec<PositionJson>,
}

/// Limits free-text fields (reasons, references) so a body cannot smuggle
/// megabytes into the journal or control characters into logs and feeds.
pub fn free_text(field: &str, text: Option<&String>) -> Result<Option<String>, ApiError> {
    match text {
        None => Ok(None),
        Some(t) if t.chars().count() > 200 || t.chars().any(char::is_control) => {
            Err(ApiError::new(
                Code::InvalidText,
                format!("{field}: at most 200 characters, no control characters"),
            ))
        }
        Some(t) => Ok(Some(t.clone())),
    }
}

// ---------- catalog ----------

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickupBody {
    /// `buy`, `reserve`, `ship to store` or `not supported`.
    pub method: String,
    /// `same day`, `next day`, `2-day` ... `7-day`, `multi-week`; required unless the method is `not supported`.
    pub sla: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationBody {
    /// `store` or `warehouse`.
    pub kind: String,
    pub name: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub pickup: Option<PickupBody>,
    pub ship_from_store: Option<bool>,
}

fn parse_pickup(body: &PickupBody) -> Result<Pickup, ApiError> {
    let method = PickupMethod::parse(&body.method).ok_or_else(|| {
        ApiError::new(
            Code::InvalidPickup,
            "pickup.method must be buy, reserve, ship to store or not supported",
        )
    })?;
    let sla = body
        .sla
        .as_deref()
        .map(|text| {
            PickupSla::parse(text).ok_or_else(|| {
                ApiError::new(
                    Code::InvalidPickup,
                    "pickup.sla must be same day, next day, 2-day ... 7-day or multi-week",
                )
            })
        })
        .transpose()?;
    Ok(Pickup { method, sla })
}

impl LocationBody {
    pub fn to_location(&self, code: crate::ledger::LocationCode) -> Result<Location, ApiError> {
        let kind = LocationKind::parse(&self.kind)
            .ok_or_else(|| ApiError::new(Code::InvalidKind, "kind must be store or warehouse"))?;
        let coords = match (self.lat, self.lon) {
            (None, None) => None,
            (Some(lat), Some(lon)) => {
                Some(crate::ledger::GeoPoint::new(lat, lon).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidCoordinates,
                        "lat must be within -90..90 and lon within -180..180",
                    )
                })?)
            }
            _ => {
                return Err(ApiError::new(
                    Code::InvalidCoordinates,
                    "give both lat and lon, or neither",
                ));
            }
        };
        Ok(Location {
            code,
            kind,
            name: self.name.clone(),
            coords,
            pickup: self.pickup.as_ref().map(parse_pickup).transpose()?,
            ship_from_store: self.ship_from_store.unwrap_or(false),
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LocationJson {
    pub code: String,
    pub kind: &'static str,
    pub name: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub pickup_method: Option<&'static str>,
    pub pickup_sla: Option<String>,
    pub ship_from_store: bool,
}

impl From<&Location> for LocationJson {
    fn from(l: &Location) -> LocationJson {
        LocationJson {
            code: l.code.to_string(),
            kind: l.kind.as_str(),
            name: l.name.clone(),
            lat: l.coords.map(|c| c.lat),
            lon: l.coords.map(|c| c.lon),
            pickup_method: l.pickup.map(|p| p.method.as_str()),
            pickup_sla: l.pickup.and_then(|p| p.sla).map(|sla| sla.to_string()),
            ship_from_store: l.ship_from_store,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    pub locations: Vec<String>,
}

/// A channel policy at a location or a group; `null` for both fields removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub channel: String,
    pub location: Option<String>,
    pub group: Option<String>,
    /// Units held back from the channel (buffer).
    pub held_back: Option<u32>,
    /// The most the channel may see.
    pub cap: Option<u32>,
}

// ---------- keys ----------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    pub name: String,
    /// `secret` (default): a server's key, with scopes. `publishable`: a
    /// key for web pages, bound to a `channel` and its `origins`, that
    /// reads availability, nearby stores and the live stream only.
    pub kind: Option<KeyKind>,
    /// A secret key's scopes (at least one); none for a publishable key.
    #[serde(default)]
    #[schema(value_type = Vec<super::auth::ScopeSchema>)]
    pub scopes: Vec<super::auth::Scope>,
    /// Publishable: the channel whose availability (after its policy) the
    /// key's pages see.
    pub channel: Option<String>,
    /// Publishable: the web origins (`https://shop.example`, lower case,
    /// no path) whose pages may use the key; at most 50.
    pub origins: Option<Vec<String>>,
    /// Publishable: quantities shown `exact` (default), `banded` (only
    /// in_stock / limited / out_of_stock), or at or below the threshold
    /// only (`threshold`: "only 3 left").
    pub quantities: Option<QuantitiesBody>,
    /// Publishable: units at or below which stock is `limited` (default 5).
    #[schema(maximum = 1000000)]
    pub quantity_threshold: Option<u32>,
    /// Publishable: the `Cache-Control` of the key's answers (default
    /// `no-cache`: shared caches revalidate by `ETag`), e.g.
    /// `public, max-age=1, stale-while-revalidate=5`.
    pub cache_control: Option<String>,
    /// Required for `pos` keys: the stores the key may act on.
    pub locations: Option<Vec<String>>,
    /// Most units this key may hold at once across its held reservations
    /// (anti-hoarding; 0: no cap). Default: the server's
    /// `--max-held-units-per-key`.
    pub max_held_units: Option<u64>,
}

/// What a key is for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Secret,
    Publishable,
}

/// How a publishable key's pages are shown quantities.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuantitiesBody {
    Exact,
    Banded,
    Threshold,
}

/// A publishable key's limits, as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublishableJson {
    pub channel: String,
    pub origins: Vec<String>,
    pub quantities: QuantitiesBody,
    pub quantity_threshold: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyJson {
    pub id: String,
    pub name: String,
    #[schema(value_type = Vec<super::auth::ScopeSchema>)]
    pub scopes: Vec<super::auth::Scope>,
    pub locations: Vec<String>,
    /// The key's own hold cap, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_held_units: Option<u64>,
    pub kind: KeyKind,
    /// A publishable key's channel, origins and quantity option.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishable: Option<PublishableJson>,
    /// The secret, shown only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

// ---------- journal ----------

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementJson {
    pub seq: u64,
    pub at: String,
    pub kind: &'static str,
    pub sku: String,
    pub location: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub safety_stock_delta: i64,
    pub non_sellable_delta: i64,
    pub incoming_delta: i64,
    pub on_hand: u32,
    pub reserved: u32,
    pub channel: Option<&'static str>,
    pub reservation: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JournalJson {
    pub movements: Vec<MovementJson>,
    /// Pass as `since` to continue (a cluster: 0, see `next_cursor`).
    pub next: u64,
    /// Set when `since` is older than the journal keeps: movements were skipped.
    pub lagged: bool,
    /// A cluster's journal of every SKU: the position to pass as `cursor`
    /// to continue (every partition's next sequence; opaque). Absent on a
    /// single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A node of a cluster, as `GET /v1/cluster` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNodeJson {
    pub id: String,
    /// How the other nodes reach it (`--advertise-url`).
    pub url: String,
    /// Whether its heartbeat is recent.
    pub alive: bool,
    /// How many partitions' leases it holds.
    pub owned: usize,
}

/// Who holds a partition's lease, under which epoch.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionOwnerJson {
    pub partition: u16,
    /// `null` while nobody holds the partition's lease.
    pub node_id: Option<String>,
    /// The partition's epoch: the last one granted (0: never owned).
    pub epoch: u64,
}

/// `GET /v1/cluster`: the node answering, the nodes and the owners.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterJson {
    pub node_id: String,
    pub partitions: u16,
    pub nodes: Vec<ClusterNodeJson>,
    pub owners: Vec<PartitionOwnerJson>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{
        Channel, LocationCode, ReservationId, ReservationLineView, ReservationState, Sku,
        TimestampMs,
    };

    fn view(resolved_at: Option<TimestampMs>, created_at: TimestampMs) -> ReservationView {
        ReservationView {
            id: ReservationId(18_446_744_073_709_551_615),
            channel: Channel::Marketplace,
            state: ReservationState::Committed,
            created_at,
            expires_at: TimestampMs(1_795_345_424_275),
            resolved_at,
            lines: vec![
                ReservationLineView {
                    sku: Sku::new("SKU \"quoted\" \\ é ü 😀").expect("valid"),
                    location: LocationCode::new("STORE-ÖST").expect("valid"),
                    qty: Qty(7),
                    committed: Qty(3),
                },
                ReservationLineView {
                    sku: Sku::new("B").expect("valid"),
                    location: LocationCode::new("WH").expect("valid"),
                    qty: Qty(u32::MAX),
                    committed: Qty(0),
                },
            ],
        }
    }

    #[test]
    fn a_position_is_written_with_every_documented_field() {
        let view = PositionView {
            sku: Sku::new("SKU \"q\" é").expect("valid"),
            location: LocationCode::new("S-1").expect("valid"),
            on_hand: Qty(10),
            reserved: Qty(4),
            safety_stock: Qty(1),
            atf: Qty(5),
            ato: 9,
            version: crate::ledger::Seq(3),
            non_sellable: Qty(2),
            incoming: 4,
            shortage: Qty(0),
            display_only: true,
        };
        let written = serde_json::to_string(&PositionJson::from(&view)).expect("json");
        assert_eq!(
            written,
            r#"{"sku":"SKU \"q\" é","location":"S-1","on_hand":10,"reserved":4,"safety_stock":1,"atf":5,"ato":9,"version":3,"non_sellable":2,"incoming":4,"shortage":0,"display_only":true}"#
        );
    }

    /// The documented shape, field by field, times in RFC 3339 (the slow
    /// path beyond year 9999 included), the id as text.
    #[test]
    fn a_reservation_is_written_with_every_documented_field() {
        let cases = [
            (None, TimestampMs(0), "1970-01-01T00:00:00.000Z", "null"),
            (
                Some(TimestampMs(1_795_345_424_999)),
                TimestampMs(-1),
                "1969-12-31T23:59:59.999Z",
                "\"2026-11-22T11:03:44.999Z\"",
            ),
            (
                Some(TimestampMs(253_402_300_800_000)),
                TimestampMs(-62_000_000_000_000),
                "0005-04-19T09:46:40.000Z",
                // RFC 3339 has no year 10000: the time crate refuses it, and
                // the milliseconds are written as they are.
                "\"253402300800000\"",
            ),
        ];
        for (resolved_at, created_at, created_text, resolved_text) in cases {
            let written =
                serde_json::to_string(&ReservationJson::from(view(resolved_at, created_at)))
                    .expect("json");
            let expected = format!(
                r#"{{"id":"18446744073709551615","state":"committed","channel":"marketplace","created_at":"{created_text}","expires_at":"2026-11-22T11:03:44.275Z","resolved_at":{resolved_text},"lines":[{{"sku":"SKU \"quoted\" \\ é ü 😀","location":"STORE-ÖST","qty":7,"committed":3}},{{"sku":"B","location":"WH","qty":4294967295,"committed":0}}]}}"#
            );
            assert_eq!(written, expected);
        }
    }
}
