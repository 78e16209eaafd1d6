//! The stored records: serde mirrors of the ledger's persist types (the
//! ledger knows no serde), encoded by [`super::codec`]. They borrow their
//! text from what they are made of (a ledger record when writing, the
//! stored bytes when reading), so a million positions are written and read
//! without copying their ids.
//!
//! Enums the API and the feeds name are stored in the ledger's one spelling
//! (`as_str`, read back with `parse`): channels, reservation states, holder
//! kinds, location kinds, pickup methods and SLAs. Changing a record's
//! layout needs a new format (see [`super::codec::FORMAT`]).

use std::borrow::Cow;

use omnistock_ledger::{
    CatalogRecord, Channel, ChannelPolicy, Fingerprint, GeoPoint, GroupName, Holder, HolderId,
    HolderKind, IdempotencyKey, IdempotencyRecord, Location, LocationCode, LocationKind, Pickup,
    PickupMethod, PickupSla, PolicyScope, PositionRecord, PositionView, Qty, ReservationId,
    ReservationLineRecord, ReservationLineView, ReservationRecord, ReservationState,
    ReservationView, Seq, Sku, TimestampMs, WriteOutput,
};
use serde::{Deserialize, Serialize};

use super::codec::{CodecError, EngineState, bad};
use super::{KeyRecord, KeysRecord, PublishableRecord};

// ---- enums and ids, in the ledger's spelling --------------------------------

fn channel(text: &str) -> Result<Channel, CodecError> {
    Channel::parse(text).ok_or_else(|| bad("channel", text))
}

pub(crate) fn state(text: &str) -> Result<ReservationState, CodecError> {
    [
        ReservationState::Held,
        ReservationState::Committed,
        ReservationState::Released,
        ReservationState::Expired,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| bad("reservation state", text))
}

pub(crate) fn sku(text: &str) -> Result<Sku, CodecError> {
    Sku::new(text).map_err(|e| bad("sku", e.to_string()))
}

pub(crate) fn location(text: &str) -> Result<LocationCode, CodecError> {
    LocationCode::new(text).map_err(|e| bad("location", e.to_string()))
}

pub(crate) fn group(text: &str) -> Result<GroupName, CodecError> {
    GroupName::new(text).map_err(|e| bad("group", e.to_string()))
}

// ---- positions ----------------------------------------------------------------

/// One position of a SKU (the SKU is the hash field).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Position<'a> {
    pub location: &'a str,
    pub version: u64,
    pub on_hand: u32,
    pub reserved: u32,
    pub safety_stock: u32,
    pub non_sellable: u32,
    pub last_count_as_of: i64,
    pub history_horizon: i64,
    #[serde(borrow)]
    pub incoming: Vec<Incoming<'a>>,
    /// (time, on-hand delta), oldest first.
    pub history: Vec<(i64, i64)>,
    pub display_only: bool,
    pub published_lag: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Incoming<'a> {
    pub qty: u32,
    pub expected_at: i64,
    #[serde(borrow)]
    pub reference: Option<&'a str>,
}

impl<'a> Position<'a> {
    pub fn of(p: &'a PositionRecord) -> Position<'a> {
        Position {
            location: p.location.as_str(),
            version: p.version.0,
            on_hand: p.on_hand.0,
            reserved: p.reserved.0,
            safety_stock: p.safety_stock.0,
            non_sellable: p.non_sellable.0,
            last_count_as_of: p.last_count_as_of.0,
            history_horizon: p.history_horizon.0,
            incoming: p
                .incoming
                .iter()
                .map(|i| Incoming {
                    qty: i.qty.0,
                    expected_at: i.expected_at.0,
                    reference: i.reference.as_deref(),
                })
                .collect(),
            history: p.history.iter().map(|(at, d)| (at.0, *d)).collect(),
            display_only: p.display_only,
            published_lag: p.published_lag,
        }
    }

    /// The ledger's record of `sku` at `location` (this position's code,
    /// already checked and shared by the caller).
    pub fn into_record(self, sku: Sku, location: LocationCode) -> PositionRecord {
        PositionRecord {
            sku,
            location,
            on_hand: Qty(self.on_hand),
            reserved: Qty(self.reserved),
            safety_stock: Qty(self.safety_stock),
            non_sellable: Qty(self.non_sellable),
            version: Seq(self.version),
            last_count_as_of: TimestampMs(self.last_count_as_of),
            incoming: self
                .incoming
                .into_iter()
                .map(|i| omnistock_ledger::Incoming {
                    qty: Qty(i.qty),
                    expected_at: TimestampMs(i.expected_at),
                    reference: i.reference.map(str::to_owned),
                })
                .collect(),
            history: self
                .history
                .into_iter()
                .map(|(at, d)| (TimestampMs(at), d))
                .collect(),
            history_horizon: TimestampMs(self.history_horizon),
            display_only: self.display_only,
            published_lag: self.published_lag,
        }
    }
}

// ---- reservations --------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Line<'a> {
    pub sku: &'a str,
    pub location: &'a str,
    pub qty: u32,
    pub committed: u32,
}

impl Line<'_> {
    fn parts(&self) -> Result<(Sku, LocationCode, Qty, Qty), CodecError> {
        Ok((
            sku(self.sku)?,
            location(self.location)?,
            Qty(self.qty),
            Qty(self.committed),
        ))
    }
}

/// A hold-cap holder: its kind and id.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct HolderRecord<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

/// A reservation (its id is the hash field).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Reservation<'a> {
    pub version: u64,
    pub channel: &'a str,
    pub state: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub resolved_at: Option<i64>,
    #[serde(borrow)]
    pub lines: Vec<Line<'a>>,
    #[serde(borrow)]
    pub holders: Vec<HolderRecord<'a>>,
}

impl<'a> Reservation<'a> {
    pub fn of(r: &'a ReservationRecord) -> Reservation<'a> {
        Reservation {
            version: r.version.0,
            channel: r.channel.as_str(),
            state: r.state.as_str(),
            created_at: r.created_at.0,
            expires_at: r.expires_at.0,
            resolved_at: r.resolved_at.map(|t| t.0),
            lines: r
                .lines
                .iter()
                .map(|l| Line {
                    sku: l.sku.as_str(),
                    location: l.location.as_str(),
                    qty: l.qty.0,
                    committed: l.committed.0,
                })
                .collect(),
            holders: r
                .holders
                .iter()
                .map(|h| HolderRecord {
                    kind: h.kind.as_str(),
                    id: h.id.as_str(),
                })
                .collect(),
        }
    }

    pub fn into_record(self, id: ReservationId) -> Result<ReservationRecord, CodecError> {
        Ok(ReservationRecord {
            id,
            version: Seq(self.version),
            channel: channel(self.channel)?,
            state: state(self.state)?,
            created_at: TimestampMs(self.created_at),
            expires_at: TimestampMs(self.expires_at),
            resolved_at: self.resolved_at.map(TimestampMs),
            lines: self
                .lines
                .iter()
                .map(|l| {
                    let (sku, location, qty, committed) = l.parts()?;
                    Ok(ReservationLineRecord {
                        sku,
                        location,
                        qty,
                        committed,
                    })
                })
                .collect::<Result<_, CodecError>>()?,
            holders: self
                .holders
                .iter()
                .map(|h| {
                    Ok(Holder {
                        kind: HolderKind::parse(h.kind)
                            .ok_or_else(|| bad("holder kind", h.kind))?,
                        id: HolderId::new(h.id).map_err(|e| bad("holder id", e.to_string()))?,
                    })
                })
                .collect::<Result<_, CodecError>>()?,
        })
    }
}

// ---- idempotency records ---------------------------------------------------------

/// A request's fingerprint, of its version (see `omnistock_ledger::Fingerprint`).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum FingerprintRecord {
    /// Legacy SipHash, kept by records stored before fingerprint version 2.
    V1(u64),
    V2([u8; 16]),
}

/// A position as an idempotent write answered it.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct View<'a> {
    pub sku: &'a str,
    pub location: &'a str,
    pub on_hand: u32,
    pub reserved: u32,
    pub safety_stock: u32,
    pub non_sellable: u32,
    pub incoming: u64,
    pub atf: u32,
    pub ato: u64,
    pub version: u64,
    pub shortage: u32,
    pub display_only: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct ReservationViewRecord<'a> {
    pub id: u64,
    pub channel: &'a str,
    pub state: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub resolved_at: Option<i64>,
    #[serde(borrow)]
    pub lines: Vec<Line<'a>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Outcome<'a> {
    #[serde(borrow)]
    Position(View<'a>),
    #[serde(borrow)]
    Positions(Vec<View<'a>>),
    #[serde(borrow)]
    Reservation(ReservationViewRecord<'a>),
}

/// An idempotency record (its key is the hash field).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Idempotency<'a> {
    pub fingerprint: FingerprintRecord,
    pub expires_at: i64,
    #[serde(borrow)]
    pub outcome: Outcome<'a>,
}

impl<'a> View<'a> {
    fn of(v: &'a PositionView) -> View<'a> {
        View {
            sku: v.sku.as_str(),
            location: v.location.as_str(),
            on_hand: v.on_hand.0,
            reserved: v.reserved.0,
            safety_stock: v.safety_stock.0,
            non_sellable: v.non_sellable.0,
            incoming: v.incoming,
            atf: v.atf.0,
            ato: v.ato,
            version: v.version.0,
            shortage: v.shortage.0,
            display_only: v.display_only,
        }
    }

    fn to_view(&self) -> Result<PositionView, CodecError> {
        Ok(PositionView {
            sku: sku(self.sku)?,
            location: location(self.location)?,
            on_hand: Qty(self.on_hand),
            reserved: Qty(self.reserved),
            safety_stock: Qty(self.safety_stock),
            non_sellable: Qty(self.non_sellable),
            incoming: self.incoming,
            atf: Qty(self.atf),
            ato: self.ato,
            version: Seq(self.version),
            shortage: Qty(self.shortage),
            display_only: self.display_only,
        })
    }
}

impl<'a> ReservationViewRecord<'a> {
    fn of(v: &'a ReservationView) -> ReservationViewRecord<'a> {
        ReservationViewRecord {
            id: v.id.0,
            channel: v.channel.as_str(),
            state: v.state.as_str(),
            created_at: v.created_at.0,
            expires_at: v.expires_at.0,
            resolved_at: v.resolved_at.map(|t| t.0),
            lines: v
                .lines
                .iter()
                .map(|l| Line {
                    sku: l.sku.as_str(),
                    location: l.location.as_str(),
                    qty: l.qty.0,
                    committed: l.committed.0,
                })
                .collect(),
        }
    }

    fn to_view(&self) -> Result<ReservationView, CodecError> {
        Ok(ReservationView {
            id: ReservationId(self.id),
            channel: channel(self.channel)?,
            state: state(self.state)?,
            created_at: TimestampMs(self.created_at),
            expires_at: TimestampMs(self.expires_at),
            resolved_at: self.resolved_at.map(TimestampMs),
            lines: self
                .lines
                .iter()
                .map(|l| {
                    let (sku, location, qty, committed) = l.parts()?;
                    Ok(ReservationLineView {
                        sku,
                        location,
                        qty,
                        committed,
                    })
                })
                .collect::<Result<_, CodecError>>()?,
        })
    }
}

impl<'a> Idempotency<'a> {
    pub fn of(r: &'a IdempotencyRecord) -> Idempotency<'a> {
        Idempotency {
            fingerprint: match r.fingerprint {
                Fingerprint::V1(hash) => FingerprintRecord::V1(hash),
                Fingerprint::V2(digest) => FingerprintRecord::V2(digest),
            },
            expires_at: r.expires_at.0,
            outcome: match &r.outcome {
                WriteOutput::Position(v) => Outcome::Position(View::of(v)),
                WriteOutput::Positions(vs) => Outcome::Positions(vs.iter().map(View::of).collect()),
                WriteOutput::Reservation(v) => Outcome::Reservation(ReservationViewRecord::of(v)),
            },
        }
    }

    pub fn into_record(self, key: IdempotencyKey) -> Result<IdempotencyRecord, CodecError> {
        Ok(IdempotencyRecord {
            key,
            fingerprint: match self.fingerprint {
                FingerprintRecord::V1(hash) => Fingerprint::V1(hash),
                FingerprintRecord::V2(digest) => Fingerprint::V2(digest),
            },
            expires_at: TimestampMs(self.expires_at),
            outcome: match self.outcome {
                Outcome::Position(v) => WriteOutput::Position(v.to_view()?),
                Outcome::Positions(vs) => {
                    WriteOutput::Positions(vs.iter().map(View::to_view).collect::<Result<_, _>>()?)
                }
                Outcome::Reservation(v) => WriteOutput::Reservation(v.to_view()?),
            },
        })
    }
}

// ---- catalog ---------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct PickupRecord<'a> {
    pub method: &'a str,
    #[serde(borrow)]
    pub sla: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct LocationRecord<'a> {
    pub code: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    /// (latitude, longitude)
    pub coords: Option<(f64, f64)>,
    #[serde(borrow)]
    pub pickup: Option<PickupRecord<'a>>,
    pub ship_from_store: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Scope<'a> {
    Location(&'a str),
    Group(&'a str),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Policy<'a> {
    pub channel: &'a str,
    #[serde(borrow)]
    pub scope: Scope<'a>,
    pub held_back: u32,
    pub cap: Option<u32>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Catalog<'a> {
    pub generation: u64,
    pub changed_at: u64,
    #[serde(borrow)]
    pub locations: Vec<LocationRecord<'a>>,
    /// (group, member locations)
    #[serde(borrow)]
    pub groups: Vec<(&'a str, Vec<&'a str>)>,
    #[serde(borrow)]
    pub policies: Vec<Policy<'a>>,
}

impl<'a> LocationRecord<'a> {
    fn of(l: &'a Location) -> LocationRecord<'a> {
        LocationRecord {
            code: l.code.as_str(),
            kind: l.kind.as_str(),
            name: &l.name,
            coords: l.coords.map(|p| (p.lat, p.lon)),
            pickup: l.pickup.map(|p| PickupRecord {
                method: p.method.as_str(),
                sla: p.sla.map(|sla| Cow::Owned(sla.to_string())),
            }),
            ship_from_store: l.ship_from_store,
        }
    }

    fn to_location(&self) -> Result<Location, CodecError> {
        let pickup = match &self.pickup {
            None => None,
            Some(p) => Some(Pickup {
                method: PickupMethod::parse(p.method)
                    .ok_or_else(|| bad("pickup method", p.method))?,
                sla: match p.sla.as_deref() {
                    None => None,
                    Some(sla) => Some(PickupSla::parse(sla).ok_or_else(|| bad("pickup sla", sla))?),
                },
            }),
        };
        Ok(Location {
            code: location(self.code)?,
            kind: LocationKind::parse(self.kind).ok_or_else(|| bad("location kind", self.kind))?,
            name: self.name.to_owned(),
            coords: match self.coords {
                None => None,
                Some((lat, lon)) => Some(
                    GeoPoint::new(lat, lon).ok_or_else(|| bad("coords", format!("{lat},{lon}")))?,
                ),
            },
            pickup,
            ship_from_store: self.ship_from_store,
        })
    }
}

impl<'a> Policy<'a> {
    fn of((channel, scope, policy): &'a (Channel, PolicyScope, ChannelPolicy)) -> Policy<'a> {
        Policy {
            channel: channel.as_str(),
            scope: match scope {
                PolicyScope::Location(code) => Scope::Location(code.as_str()),
                PolicyScope::Group(name) => Scope::Group(name.as_str()),
            },
            held_back: policy.held_back.0,
            cap: policy.cap.map(|c| c.0),
        }
    }

    fn to_policy(&self) -> Result<(Channel, PolicyScope, ChannelPolicy), CodecError> {
        let scope = match self.scope {
            Scope::Location(code) => PolicyScope::Location(location(code)?),
            Scope::Group(name) => PolicyScope::Group(group(name)?),
        };
        let policy = ChannelPolicy {
            held_back: Qty(self.held_back),
            cap: self.cap.map(Qty),
        };
        Ok((channel(self.channel)?, scope, policy))
    }
}

impl<'a> Catalog<'a> {
    pub fn of(c: &'a CatalogRecord) -> Catalog<'a> {
        Catalog {
            generation: c.generation,
            changed_at: c.changed_at.0,
            locations: c.locations.iter().map(LocationRecord::of).collect(),
            groups: c
                .groups
                .iter()
                .map(|(name, members)| {
                    (
                        name.as_str(),
                        members.iter().map(LocationCode::as_str).collect(),
                    )
                })
                .collect(),
            policies: c.policies.iter().map(Policy::of).collect(),
        }
    }

    pub fn to_record(&self) -> Result<CatalogRecord, CodecError> {
        Ok(CatalogRecord {
            generation: self.generation,
            changed_at: Seq(self.changed_at),
            locations: self
                .locations
                .iter()
                .map(LocationRecord::to_location)
                .collect::<Result<_, _>>()?,
            groups: self
                .groups
                .iter()
                .map(|(name, members)| {
                    let members = members.iter().map(|m| location(m));
                    Ok((group(name)?, members.collect::<Result<_, _>>()?))
                })
                .collect::<Result<_, CodecError>>()?,
            policies: self
                .policies
                .iter()
                .map(Policy::to_policy)
                .collect::<Result<_, _>>()?,
        })
    }
}

// ---- API keys and engine state -----------------------------------------------------

#[derive(Clone, Serialize, Deserialize, Debug, PartialEq)]
pub struct Key<'a> {
    pub id: &'a str,
    pub name: &'a str,
    #[serde(borrow)]
    pub scopes: Vec<&'a str>,
    #[serde(borrow)]
    pub locations: Vec<&'a str>,
    pub digest_hex: &'a str,
    pub max_held_units: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Keys<'a> {
    pub generation: u64,
    #[serde(borrow)]
    pub keys: Vec<Key<'a>>,
}

impl<'a> Keys<'a> {
    pub fn of(k: &'a KeysRecord) -> Keys<'a> {
        let texts = |list: &'a [String]| list.iter().map(String::as_str).collect();
        Keys {
            generation: k.generation,
            keys: k
                .keys
                .iter()
                .map(|key| Key {
                    id: &key.id,
                    name: &key.name,
                    scopes: texts(&key.scopes),
                    locations: texts(&key.locations),
                    digest_hex: &key.digest_hex,
                    max_held_units: key.max_held_units,
                })
                .collect(),
        }
    }

    pub fn to_record(&self) -> KeysRecord {
        let texts = |list: &[&str]| list.iter().map(|t| (*t).to_owned()).collect();
        KeysRecord {
            generation: self.generation,
            keys: self
                .keys
                .iter()
                .map(|key| KeyRecord {
                    id: key.id.to_owned(),
                    name: key.name.to_owned(),
                    scopes: texts(&key.scopes),
                    locations: texts(&key.locations),
                    digest_hex: key.digest_hex.to_owned(),
                    max_held_units: key.max_held_units,
                    publishable: None,
                })
                .collect(),
        }
    }
}

/// A publishable key's limits (keys format 2).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Publishable<'a> {
    pub channel: &'a str,
    #[serde(borrow)]
    pub origins: Vec<&'a str>,
    pub quantities: &'a str,
    pub quantity_threshold: u32,
    pub cache_control: Option<&'a str>,
}

/// A key in keys format 2: format 1's, and a publishable key's limits.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct KeyV2<'a> {
    #[serde(borrow)]
    pub key: Key<'a>,
    #[serde(borrow)]
    pub publishable: Option<Publishable<'a>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct KeysV2<'a> {
    pub generation: u64,
    #[serde(borrow)]
    pub keys: Vec<KeyV2<'a>>,
}

impl<'a> KeysV2<'a> {
    pub fn of(k: &'a KeysRecord) -> KeysV2<'a> {
        let format_1 = Keys::of(k);
        KeysV2 {
            generation: k.generation,
            keys: format_1
                .keys
                .into_iter()
                .zip(&k.keys)
                .map(|(key, record)| KeyV2 {
                    key,
                    publishable: record.publishable.as_ref().map(|p| Publishable {
                        channel: &p.channel,
                        origins: p.origins.iter().map(String::as_str).collect(),
                        quantities: &p.quantities,
                        quantity_threshold: p.quantity_threshold,
                        cache_control: p.cache_control.as_deref(),
                    }),
                })
                .collect(),
        }
    }

    pub fn to_record(&self) -> KeysRecord {
        let (keys, publishable): (Vec<_>, Vec<_>) =
            self.keys.iter().map(|k| (&k.key, &k.publishable)).unzip();
        let mut record = Keys {
            generation: self.generation,
            keys: keys.into_iter().cloned().collect(),
        }
        .to_record();
        for (key, publishable) in record.keys.iter_mut().zip(publishable) {
            key.publishable = publishable.as_ref().map(|p| PublishableRecord {
                channel: p.channel.to_owned(),
                origins: p.origins.iter().map(|o| (*o).to_owned()).collect(),
                quantities: p.quantities.to_owned(),
                quantity_threshold: p.quantity_threshold,
                cache_control: p.cache_control.map(str::to_owned),
            });
        }
        record
    }
}

/// The engine's counters (see [`EngineState`]).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct State {
    pub head: u64,
    pub reservation_shards: u64,
    pub reservation_next_local: Vec<u64>,
    pub written_at: i64,
    pub cursor_lineage: Option<u64>,
    pub cursor_floor: u64,
    pub clean: bool,
}

impl State {
    pub fn of(s: &EngineState) -> State {
        State {
            head: s.head.0,
            reservation_shards: s.reservation_shards as u64,
            reservation_next_local: s.reservation_next_local.clone(),
            written_at: s.written_at.0,
            cursor_lineage: s.cursor_lineage,
            cursor_floor: s.cursor_floor.0,
            clean: s.clean,
        }
    }

    pub fn into_state(self) -> Result<EngineState, CodecError> {
        Ok(EngineState {
            head: Seq(self.head),
            reservation_shards: usize::try_from(self.reservation_shards)
                .map_err(|_| bad("reservation shards", self.reservation_shards.to_string()))?,
            reservation_next_local: self.reservation_next_local,
            written_at: TimestampMs(self.written_at),
            cursor_lineage: self.cursor_lineage,
            cursor_floor: Seq(self.cursor_floor),
            clean: self.clean,
        })
    }
}
