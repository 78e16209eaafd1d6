//! Locations, location groups and channel policies: the read-mostly part of
//! the ledger. It changes a few times a day and is read on every reservation,
//! so it lives in an immutable snapshot swapped atomically (copy on write):
//! readers never take a lock.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::ids::{Channel, GroupName, LocId, LocationCode, Qty, Seq};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocationKind {
    Store,
    Warehouse,
}

/// Google's `pickup_method` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PickupMethod {
    Buy,
    Reserve,
    ShipToStore,
    NotSupported,
}

/// Google's `pickup_sla` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PickupSla {
    SameDay,
    NextDay,
    /// 2 to 7 days.
    Days(u8),
    MultiWeek,
}

// The one spelling of each of these enums: the API, the feeds and the store
// read and write these names (Google's own for pickups).

impl LocationKind {
    pub const ALL: [LocationKind; 2] = [LocationKind::Store, LocationKind::Warehouse];

    pub const fn as_str(self) -> &'static str {
        match self {
            LocationKind::Store => "store",
            LocationKind::Warehouse => "warehouse",
        }
    }

    pub fn parse(text: &str) -> Option<LocationKind> {
        LocationKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl PickupMethod {
    pub const ALL: [PickupMethod; 4] = [
        PickupMethod::Buy,
        PickupMethod::Reserve,
        PickupMethod::ShipToStore,
        PickupMethod::NotSupported,
    ];

    /// Google's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            PickupMethod::Buy => "buy",
            PickupMethod::Reserve => "reserve",
            PickupMethod::ShipToStore => "ship to store",
            PickupMethod::NotSupported => "not supported",
        }
    }

    pub fn parse(text: &str) -> Option<PickupMethod> {
        PickupMethod::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl PickupSla {
    /// Builds a `Days` SLA, refusing counts Google has no value for.
    pub fn days(days: u8) -> Option<PickupSla> {
        match days {
            0 => Some(PickupSla::SameDay),
            1 => Some(PickupSla::NextDay),
            2..=7 => Some(PickupSla::Days(days)),
            _ => None,
        }
    }

    /// Google's spelling: `same day`, `next day`, `2-day` ... `7-day`,
    /// `multi-week` (a day count of 0 or 1 has its own name, not `N-day`).
    pub fn parse(text: &str) -> Option<PickupSla> {
        match text {
            "same day" => Some(PickupSla::SameDay),
            "next day" => Some(PickupSla::NextDay),
            "multi-week" => Some(PickupSla::MultiWeek),
            other => match other.strip_suffix("-day")?.parse::<u8>().ok()? {
                days @ 2..=7 => Some(PickupSla::Days(days)),
                _ => None,
            },
        }
    }
}

/// Google's spelling (see [`PickupSla::parse`]).
impl std::fmt::Display for PickupSla {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickupSla::SameDay => f.write_str("same day"),
            PickupSla::NextDay => f.write_str("next day"),
            PickupSla::Days(days) => write!(f, "{days}-day"),
            PickupSla::MultiWeek => f.write_str("multi-week"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pickup {
    pub method: PickupMethod,
    /// Required by Google unless the method is `NotSupported`.
    pub sla: Option<PickupSla>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl GeoPoint {
    /// Refuses NaN and out-of-range coordinates.
    pub fn new(lat: f64, lon: f64) -> Option<GeoPoint> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(GeoPoint { lat, lon })
    }

    /// Great-circle distance (haversine), good to well under 0.5% for store search.
    pub fn distance_km(self, other: GeoPoint) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// A store or warehouse as registered by an admin.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    pub code: LocationCode,
    pub kind: LocationKind,
    pub name: String,
    pub coords: Option<GeoPoint>,
    pub pickup: Option<Pickup>,
    pub ship_from_store: bool,
}

/// What a channel may see of a position: `held_back` units are kept from it
/// (e.g. the last 2 units in a store for walk-in customers) and it never sees
/// more than `cap` (e.g. a marketplace sees at most 20).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChannelPolicy {
    pub held_back: Qty,
    pub cap: Option<Qty>,
}

impl ChannelPolicy {
    /// What a channel sees of `atf` units.
    pub fn apply(self, atf: u32) -> u32 {
        let after_buffer = atf.saturating_sub(self.held_back.0);
        match self.cap {
            Some(cap) => after_buffer.min(cap.0),
            None => after_buffer,
        }
    }

    /// The stricter of two policies: more held back, lower cap.
    fn strictest(self, other: ChannelPolicy) -> ChannelPolicy {
        ChannelPolicy {
            held_back: self.held_back.max(other.held_back),
            cap: match (self.cap, other.cap) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Where a policy is attached. A group policy applies to every member
/// location; a location's own policy overrides any group policy; where several
/// groups of a location carry policies for one channel, the strictest wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PolicyScope {
    Location(LocationCode),
    Group(GroupName),
}

/// Which part of a location filter names nothing known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownFilter {
    Location,
    Group,
}

/// One immutable snapshot of the catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    locations: Vec<Location>,
    by_code: FxHashMap<LocationCode, LocId>,
    groups: FxHashMap<GroupName, Arc<[LocId]>>,
    policies: FxHashMap<(Channel, PolicyScope), ChannelPolicy>,
    /// `effective[loc][channel]`, recomputed on every catalog change so the
    /// reservation path does one array index instead of walking groups.
    effective: Vec<[ChannelPolicy; Channel::COUNT]>,
    /// Incremented by every change; orders persisted copies of the catalog.
    generation: u64,
    /// The journal head (next sequence) when the catalog last changed: a
    /// policy or store change can change every published row, so an
    /// incremental feed from an older cursor is answered in full.
    changed_at: Seq,
}

impl Catalog {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    pub fn changed_at(&self) -> Seq {
        self.changed_at
    }

    pub(crate) fn set_changed_at(&mut self, changed_at: Seq) {
        self.changed_at = changed_at;
    }

    pub fn location_id(&self, code: &str) -> Option<LocId> {
        self.by_code.get(code).copied()
    }

    pub fn location(&self, id: LocId) -> Option<&Location> {
        self.locations.get(id.0 as usize)
    }

    pub fn locations(&self) -> impl Iterator<Item = (LocId, &Location)> {
        self.locations
            .iter()
            .enumerate()
            .map(|(i, l)| (LocId(i as u32), l))
    }

    /// The locations a filter selects, indexed by location id: one location,
    /// the members of a group, both (the intersection), or neither (all).
    pub fn select_locations(
        &self,
        location: Option<&str>,
        group: Option<&str>,
    ) -> Result<Vec<bool>, UnknownFilter> {
        let mut selected = vec![true; self.locations.len()];
        if let Some(code) = location {
            let id = self.location_id(code).ok_or(UnknownFilter::Location)?;
            for (index, slot) in selected.iter_mut().enumerate() {
                *slot &= index == id.0 as usize;
            }
        }
        if let Some(name) = group {
            let members = self.group(name).ok_or(UnknownFilter::Group)?;
            for (index, slot) in selected.iter_mut().enumerate() {
                *slot &= members.contains(&LocId(index as u32));
            }
        }
        Ok(selected)
    }

    pub fn location_count(&self) -> usize {
        self.locations.len()
    }

    pub fn group(&self, name: &str) -> Option<&Arc<[LocId]>> {
        self.groups.get(name)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&GroupName, &Arc<[LocId]>)> {
        self.groups.iter()
    }

    pub fn policies(&self) -> impl Iterator<Item = (&(Channel, PolicyScope), &ChannelPolicy)> {
        self.policies.iter()
    }

    /// The policy a channel is under at a location (default: sees all ATF).
    pub fn policy(&self, channel: Channel, loc: LocId) -> ChannelPolicy {
        self.effective
            .get(loc.0 as usize)
            .map(|row| row[channel.index()])
            .unwrap_or_default()
    }

    /// Inserts or replaces a location; returns its id (stable across updates).
    pub(crate) fn put_location(&mut self, location: Location) -> LocId {
        if let Some(&id) = self.by_code.get(&location.code) {
            self.locations[id.0 as usize] = location;
            return id;
        }
        let id = LocId(self.locations.len() as u32);
        self.by_code.insert(location.code.clone(), id);
        self.locations.push(location);
        self.recompute_policies();
        id
    }

    pub(crate) fn put_group(&mut self, name: GroupName, members: Vec<LocId>) {
        let mut members = members;
        members.sort_unstable();
        members.dedup();
        self.groups.insert(name, members.into());
        self.recompute_policies();
    }

    pub(crate) fn put_policy(
        &mut self,
        channel: Channel,
        scope: PolicyScope,
        policy: Option<ChannelPolicy>,
    ) {
        match policy {
            Some(policy) => self.policies.insert((channel, scope), policy),
            None => self.policies.remove(&(channel, scope)),
        };
        self.recompute_policies();
    }

    fn recompute_policies(&mut self) {
        let mut effective = vec![[ChannelPolicy::default(); Channel::COUNT]; self.locations.len()];
        let mut from_groups: Vec<[Option<ChannelPolicy>; Channel::COUNT]> =
            vec![[None; Channel::COUNT]; self.locations.len()];
        for ((channel, scope), policy) in &self.policies {
            if let PolicyScope::Group(name) = scope {
                for loc in self.groups.get(name).map(|m| &m[..]).unwrap_or_default() {
                    let slot = &mut from_groups[loc.0 as usize][channel.index()];
                    *slot = Some(slot.map_or(*policy, |p| p.strictest(*policy)));
                }
            }
        }
        for (loc, row) in from_groups.iter().enumerate() {
            for (channel_index, policy) in row.iter().enumerate() {
                if let Some(policy) = policy {
                    effective[loc][channel_index] = *policy;
                }
            }
        }
        for ((channel, scope), policy) in &self.policies {
            if let PolicyScope::Location(code) = scope
                && let Some(loc) = self.by_code.get(code)
            {
                effective[loc.0 as usize][channel.index()] = *policy;
            }
        }
        self.effective = effective;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(code: &str) -> Location {
        Location {
            code: LocationCode::new(code).expect("valid code"),
            kind: LocationKind::Store,
            name: code.to_string(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        }
    }

    #[test]
    fn policy_application_table() {
        let cases = [
            (ChannelPolicy::default(), 10, 10),
            (
                ChannelPolicy {
                    held_back: Qty(2),
                    cap: None,
                },
                10,
                8,
            ),
            (
                ChannelPolicy {
                    held_back: Qty(2),
                    cap: None,
                },
                1,
                0,
            ),
            (
                ChannelPolicy {
                    held_back: Qty(0),
                    cap: Some(Qty(20)),
                },
                50,
                20,
            ),
            (
                ChannelPolicy {
                    held_back: Qty(5),
                    cap: Some(Qty(20)),
                },
                22,
                17,
            ),
        ];
        for (policy, atf, seen) in cases {
            assert_eq!(policy.apply(atf), seen, "{policy:?} on {atf}");
        }
    }

    #[test]
    fn location_policy_overrides_group_and_groups_combine_strictest() {
        let mut catalog = Catalog::default();
        let a = catalog.put_location(loc("A"));
        let b = catalog.put_location(loc("B"));
        let g1 = GroupName::new("g1").expect("valid");
        let g2 = GroupName::new("g2").expect("valid");
        catalog.put_group(g1.clone(), vec![a, b]);
        catalog.put_group(g2.clone(), vec![b]);
        let web = Channel::Web;
        catalog.put_policy(
            web,
            PolicyScope::Group(g1),
            Some(ChannelPolicy {
                held_back: Qty(1),
                cap: Some(Qty(50)),
            }),
        );
        catalog.put_policy(
            web,
            PolicyScope::Group(g2),
            Some(ChannelPolicy {
                held_back: Qty(3),
                cap: None,
            }),
        );
        assert_eq!(
            catalog.policy(web, a),
            ChannelPolicy {
                held_back: Qty(1),
                cap: Some(Qty(50))
            }
        );
        assert_eq!(
            catalog.policy(web, b),
            ChannelPolicy {
                held_back: Qty(3),
                cap: Some(Qty(50))
            }
        );
        assert_eq!(catalog.policy(Channel::Pos, b), ChannelPolicy::default());
        let own = ChannelPolicy {
            held_back: Qty(0),
            cap: None,
        };
        catalog.put_policy(
            web,
            PolicyScope::Location(LocationCode::new("B").expect("valid")),
            Some(own),
        );
        assert_eq!(catalog.policy(web, b), own);
    }

    #[test]
    fn distance_is_plausible() {
        let paris = GeoPoint::new(48.8566, 2.3522).expect("valid");
        let london = GeoPoint::new(51.5074, -0.1278).expect("valid");
        let d = paris.distance_km(london);
        assert!((d - 343.5).abs() < 2.0, "{d}");
        assert!(GeoPoint::new(91.0, 0.0).is_none());
        assert!(GeoPoint::new(f64::NAN, 0.0).is_none());
    }

    #[test]
    fn every_name_reads_back_as_itself_and_only_google_values_are_read() {
        for kind in [LocationKind::Store, LocationKind::Warehouse] {
            assert_eq!(LocationKind::parse(kind.as_str()), Some(kind));
        }
        for method in PickupMethod::ALL {
            assert_eq!(PickupMethod::parse(method.as_str()), Some(method));
        }
        let slas = [PickupSla::SameDay, PickupSla::NextDay, PickupSla::MultiWeek]
            .into_iter()
            .chain((2..=7).map(PickupSla::Days));
        for sla in slas {
            assert_eq!(PickupSla::parse(&sla.to_string()), Some(sla), "{sla}");
        }
        assert_eq!(PickupSla::Days(3).to_string(), "3-day");
        for refused in [
            "0-day", "1-day", "8-day", "-day", "same-day", "Same day", "",
        ] {
            assert_eq!(PickupSla::parse(refused), None, "{refused:?}");
        }
        assert_eq!(PickupMethod::parse("ship_to_store"), None);
        assert_eq!(LocationKind::parse("Store"), None);
    }
}
