//! Reads: positions, per-SKU availability, batches, nearby stores, snapshots,
//! and the full invariant check used by tests and operators.

use rustc_hash::FxHashMap;

use super::catalog::LocationKind;
use super::holder::Holder;
use super::ids::{Channel, LocId, LocationCode, PosKey, Qty, Seq, Sku, SkuId, TimestampMs};
use super::refusal::Refusal;
use super::requests::{
    ChannelView, NearbyQuery, NearbyStore, PositionView, Scope, SkuAvailability,
};
use super::reservation_state::ReservationState;
use super::{HeldByPosition, Ledger};

/// Totals gathered by [`Ledger::check_invariants`] on a consistent cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvariantReport {
    pub positions: usize,
    pub held_reservations: usize,
    pub on_hand: u64,
    pub reserved: u64,
    /// Positions where a count left fewer units on hand than reserved.
    pub positions_short: usize,
}

impl Ledger {
    /// One position; a SKU never stocked there reads as all zeros.
    pub fn position(
        &self,
        sku: &Sku,
        location: &LocationCode,
        channel: Option<Channel>,
        now: TimestampMs,
    ) -> Result<PositionView, Refusal> {
        self.with_catalog(|catalog| {
            let loc = self.resolve_location(catalog, location)?;
            let Some(sku_id) = self.skus.get(sku) else {
                return Ok(self.view(catalog, sku.clone(), loc, None, channel, now));
            };
            let key = PosKey::new(sku_id, loc);
            let shard = self.positions.lock_one(key);
            Ok(self.view(catalog, sku.clone(), loc, shard.get(&key), channel, now))
        })
    }

    /// A SKU across locations: every location stocking it, a list, or a group.
    pub fn availability(
        &self,
        sku: &Sku,
        scope: &Scope,
        channel: Option<Channel>,
        now: TimestampMs,
    ) -> Result<SkuAvailability, Refusal> {
        let catalog = self.catalog.load();
        let locations = match scope {
            Scope::All => catalog.locations().map(|(id, _)| id).collect::<Vec<_>>(),
            Scope::Locations(codes) => codes
                .iter()
                .map(|code| self.resolve_location(&catalog, code))
                .collect::<Result<Vec<_>, _>>()?,
            Scope::Group(name) => catalog
                .group(name.as_str())
                .ok_or_else(|| Refusal::UnknownGroup(name.clone()))?
                .to_vec(),
        };
        let sku_id = self.skus.get(sku);
        let mut views = Vec::new();
        for loc in locations {
            let stored = sku_id.and_then(|s| {
                let key = PosKey::new(s, loc);
                self.positions.lock_one(key).get(&key).cloned()
            });
            if stored.is_none() && *scope == Scope::All {
                continue;
            }
            views.push(self.view(&catalog, sku.clone(), loc, stored.as_ref(), channel, now));
        }
        Ok(SkuAvailability {
            sku: sku.clone(),
            total_atf: views.iter().map(|v| u64::from(v.atf.0)).sum(),
            locations: views,
        })
    }

    /// Stores within `radius_km` that can supply `qty` to the channel,
    /// nearest first.
    pub fn nearby(&self, query: &NearbyQuery) -> Vec<NearbyStore> {
        let catalog = self.catalog.load();
        let sku_id = self.skus.get(&query.sku);
        let mut stores: Vec<NearbyStore> = catalog
            .locations()
            .filter(|(_, l)| l.kind == LocationKind::Store)
            .filter(|(_, l)| !query.pickup_only || l.pickup.is_some_and(|p| p.sla.is_some()))
            .filter_map(|(loc, l)| {
                let distance_km = l.coords?.distance_km(query.point);
                (distance_km <= query.radius_km).then_some((loc, l, distance_km))
            })
            .filter_map(|(loc, l, distance_km)| {
                let key = PosKey::new(sku_id?, loc);
                let atf = self.positions.lock_one(key).get(&key).map(|p| p.atf())?;
                let seen = catalog.policy(query.channel, loc).apply(atf);
                (seen >= query.qty.0 && seen > 0).then(|| NearbyStore {
                    location: l.code.clone(),
                    name: l.name.clone(),
                    distance_km,
                    atf: Qty(seen),
                    pickup: l.pickup,
                })
            })
            .collect();
        stores.sort_by(|a, b| {
            a.distance_km
                .total_cmp(&b.distance_km)
                .then_with(|| a.location.cmp(&b.location))
        });
        stores.truncate(query.limit);
        stores
    }

    /// The SKU code behind an interned id (journal consumers use this).
    pub fn sku_code(&self, id: SkuId) -> Option<Sku> {
        self.skus.code(id)
    }

    pub fn sku_count(&self) -> usize {
        self.skus.len()
    }

    pub fn position_shard_count(&self) -> usize {
        self.positions.count()
    }

    /// Every position of one shard, copied out under the shard's lock so the
    /// lock is held only for the copy. Iterate `0..position_shard_count()`
    /// for a full snapshot with memory bounded by one shard.
    pub fn positions_in_shard(
        &self,
        shard: usize,
        channel: Option<Channel>,
        now: TimestampMs,
    ) -> Vec<PositionView> {
        self.positions_in_shard_where(shard, channel, now, |_, _| true)
    }

    /// The positions of one shard that pass `keep(location, version)`,
    /// tested under the lock before anything is copied (an incremental feed
    /// copies only what changed; a store-filtered one only its locations).
    pub fn positions_in_shard_where(
        &self,
        shard: usize,
        channel: Option<Channel>,
        now: TimestampMs,
        keep: impl Fn(LocId, Seq) -> bool,
    ) -> Vec<PositionView> {
        let catalog = self.catalog.load();
        let copied: Vec<_> = {
            let map = self.positions.lock_index(shard);
            map.iter()
                .filter(|(key, position)| keep(key.loc(), position.version))
                .map(|(key, position)| (*key, position.clone()))
                .collect()
        };
        copied
            .into_iter()
            .filter_map(|(key, position)| {
                let sku = self.skus.code(key.sku())?;
                Some(self.view(&catalog, sku, key.loc(), Some(&position), channel, now))
            })
            .collect()
    }

    /// What the ads channel publishes (ATF after its policy, display flag)
    /// of every position of one shard that passes `keep(location,
    /// published_version)`, `published_version` bounding from above the last
    /// change of those values: the lean form of
    /// [`Ledger::positions_in_shard_where`] for feeds, which need only that.
    /// The shard's lock is held while the quantities are read; SKU codes are
    /// resolved after, under one read lock.
    pub fn ads_view_in_shard(
        &self,
        shard: usize,
        keep: impl Fn(LocId, Seq) -> bool,
    ) -> Vec<(Sku, LocId, ChannelView)> {
        let seen: Vec<(PosKey, ChannelView)> = {
            let map = self.positions.lock_index(shard);
            // Loaded under the shard's lock: a catalog change holds every
            // shard, so this is the catalog the shard's marks belong to.
            let catalog = self.catalog.load();
            map.iter()
                .filter(|(key, position)| {
                    keep(
                        key.loc(),
                        position.published_version(|| self.publish_mark(shard)),
                    )
                })
                .map(|(key, position)| {
                    let view = ChannelView {
                        atf: Qty(catalog
                            .policy(Channel::Ads, key.loc())
                            .apply(position.atf())),
                        display_only: position.display_only(),
                    };
                    (*key, view)
                })
                .collect()
        };
        self.skus.with_codes(|codes| {
            seen.into_iter()
                .filter_map(|(key, view)| {
                    let sku = codes.get(key.sku().0 as usize)?.clone();
                    Some((sku, key.loc(), view))
                })
                .collect()
        })
    }

    /// Reservations remembered (held and recently resolved), for metrics.
    pub fn reservation_count(&self) -> usize {
        (0..self.reservations.count())
            .map(|i| self.reservations.lock_index(i).stored())
            .sum()
    }

    /// Number of positions (walks every shard; for metrics, not hot paths).
    pub fn position_count(&self) -> usize {
        (0..self.positions.count())
            .map(|i| self.positions.lock_index(i).len())
            .sum()
    }

    /// Checks every invariant on a consistent cut: all reservation shards,
    /// then all position shards, are locked in the global lock order, so no
    /// operation is half-applied while it runs. Expensive (stops writers for
    /// the duration): for tests, audits and operators, not for hot paths.
    ///
    /// - `reserved` of each position equals the sum of its held lines;
    /// - every held line points at an existing position;
    /// - versions never exceed the journal head.
    pub fn check_invariants(&self) -> Result<InvariantReport, String> {
        let reservation_guards: Vec<_> = (0..self.reservations.count())
            .map(|i| self.reservations.lock_index(i))
            .collect();
        let position_guards = self.positions.lock_all();
        let head = self.journal.head();

        let mut held = HeldByPosition::default();
        let mut held_by_holder: FxHashMap<Holder, u64> = FxHashMap::default();
        let mut report = InvariantReport::default();
        for shard in &reservation_guards {
            shard.check_deadlines()?;
            for (id, reservation) in shard.iter() {
                if reservation.state != ReservationState::Held {
                    continue;
                }
                report.held_reservations += 1;
                for holder in reservation.holders.iter().flatten() {
                    *held_by_holder.entry(holder.clone()).or_default() += reservation.units();
                }
                for line in &reservation.lines {
                    if line.qty.0 == 0 {
                        return Err(format!("reservation {id} holds an empty line"));
                    }
                    *held.entry(line.position).or_default() += u64::from(line.qty.0);
                }
            }
        }
        for map in &position_guards {
            for (key, position) in map.iter() {
                report.positions += 1;
                report.on_hand += u64::from(position.on_hand);
                report.reserved += u64::from(position.reserved);
                if position.reserved > position.on_hand {
                    report.positions_short += 1;
                }
                let expected = held.remove(key).unwrap_or(0);
                if u64::from(position.reserved) != expected {
                    return Err(format!(
                        "position {key:?}: reserved {} but held lines sum to {expected}",
                        position.reserved
                    ));
                }
                if position.version >= head {
                    return Err(format!(
                        "position {key:?}: version {:?} not below journal head {head:?}",
                        position.version
                    ));
                }
            }
        }
        if let Some((key, units)) = held.into_iter().next() {
            return Err(format!(
                "held line of {units} units on missing position {key:?}"
            ));
        }
        let counted = self.held_units.snapshot();
        if counted != held_by_holder {
            return Err(format!(
                "hold-cap counts {counted:?} differ from the held reservations' {held_by_holder:?}"
            ));
        }
        Ok(report)
    }
}
