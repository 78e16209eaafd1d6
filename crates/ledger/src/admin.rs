//! Catalog changes (admin): locations, groups, channel policies. Writers are
//! serialised and publish a new snapshot (`Ledger::update_catalog`, in
//! `publishing.rs`); readers keep the one they loaded.

use std::sync::Arc;

use super::Ledger;
use super::catalog::{Catalog, ChannelPolicy, Location, PickupMethod, PickupSla, PolicyScope};
use super::ids::{Channel, GroupName, LocId, LocationCode};
use super::persist::CatalogRecord;
use super::refusal::{Invalid, Refusal};

impl Ledger {
    /// A snapshot of locations, groups and policies.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Creates or replaces a location (by code). Its id never changes.
    pub fn put_location(&self, location: Location) -> Result<LocId, Refusal> {
        if location.name.chars().count() > 200 || location.name.chars().any(char::is_control) {
            return Err(Invalid::Other(
                "name must be at most 200 characters, without control characters",
            )
            .into());
        }
        if let Some(pickup) = location.pickup {
            let needs_sla = pickup.method != PickupMethod::NotSupported;
            if needs_sla != pickup.sla.is_some() {
                return Err(Invalid::Other(
                    "pickup sla is required exactly when the pickup method is not 'not supported'",
                )
                .into());
            }
            if let Some(PickupSla::Days(days)) = pickup.sla
                && !(2..=7).contains(&days)
            {
                return Err(Invalid::Other("pickup sla days must be 2 to 7").into());
            }
        }
        self.update_catalog(|catalog| Ok(catalog.put_location(location)))
    }

    /// Creates or replaces a group; every member must be a known location.
    pub fn put_group(&self, name: GroupName, members: &[LocationCode]) -> Result<(), Refusal> {
        self.update_catalog(|catalog| {
            let ids = member_ids(catalog, members)?;
            catalog.put_group(name, ids);
            Ok(())
        })
    }

    /// Sets (or with `None`, removes) a channel's policy at a location or group.
    pub fn put_policy(
        &self,
        channel: Channel,
        scope: PolicyScope,
        policy: Option<ChannelPolicy>,
    ) -> Result<(), Refusal> {
        self.update_catalog(|catalog| {
            match &scope {
                PolicyScope::Location(code) if catalog.location_id(code.as_str()).is_none() => {
                    return Err(Refusal::UnknownLocation(code.clone()));
                }
                PolicyScope::Group(name) if catalog.group(name.as_str()).is_none() => {
                    return Err(Refusal::UnknownGroup(name.clone()));
                }
                _ => {}
            }
            catalog.put_policy(channel, scope, policy);
            Ok(())
        })
    }

    /// Makes this ledger's catalog hold `record`'s locations, groups and
    /// policies (a cluster's shared catalog, adopted by each partition's
    /// ledger): each is created or replaced, and a policy the record does
    /// not have is removed; locations and groups the record lacks stay
    /// (they can be neither deleted nor renumbered while stock names them).
    /// One catalog change, or none when nothing differs (false).
    pub fn adopt_catalog(&self, record: &CatalogRecord) -> Result<bool, Refusal> {
        let (current, wanted) = (
            comparable(CatalogRecord::of(&self.catalog())),
            comparable(record.clone()),
        );
        let same = current.locations == wanted.locations
            && current.groups == wanted.groups
            && current.policies == wanted.policies;
        if same {
            return Ok(false);
        }
        self.update_catalog(|catalog| {
            for location in &record.locations {
                catalog.put_location(location.clone());
            }
            for (name, members) in &record.groups {
                let ids = member_ids(catalog, members)?;
                catalog.put_group(name.clone(), ids);
            }
            let stale: Vec<_> = catalog
                .policies()
                .map(|((channel, scope), _)| (*channel, scope.clone()))
                .filter(|(channel, scope)| {
                    !record
                        .policies
                        .iter()
                        .any(|(c, s, _)| c == channel && s == scope)
                })
                .collect();
            for (channel, scope) in stale {
                catalog.put_policy(channel, scope, None);
            }
            for (channel, scope, policy) in &record.policies {
                catalog.put_policy(*channel, scope.clone(), Some(*policy));
            }
            Ok(true)
        })
    }
}

/// `record` in an order that does not depend on the ledger's location ids
/// (which differ between ledgers that learnt the locations in another order).
fn comparable(mut record: CatalogRecord) -> CatalogRecord {
    record.locations.sort_by(|a, b| a.code.cmp(&b.code));
    for (_, members) in &mut record.groups {
        members.sort();
    }
    record
}

/// The ids of a group's members; every one must be a known location.
fn member_ids(catalog: &Catalog, members: &[LocationCode]) -> Result<Vec<LocId>, Refusal> {
    members
        .iter()
        .map(|code| {
            catalog
                .location_id(code.as_str())
                .ok_or_else(|| Refusal::UnknownLocation(code.clone()))
        })
        .collect()
}
