//! The engine's own operations: what is more than one ledger write. A
//! reservation gets its hold caps from the engine's policy and its outcome
//! counted; catalog and key changes are writes without a ledger clock. Each
//! returns once its outcome is as durable as the durability mode promises.

use std::sync::Arc;

use metrics::Counter;
use omnistock_ledger::{
    Channel, ChannelPolicy, GroupName, HoldCap, Holder, HolderId, HolderKind, IdempotencyKey,
    Invalid, Line, LocId, Location, LocationCode, Origin, PolicyScope, Refusal, ReservationView,
    ReserveRequest,
};

use crate::keys::{ApiKey, KeySpec, NoRandomness};
use crate::writes::WriteError;
use crate::{Engine, NotDurable};

/// Most API keys an engine holds (the admin key included): every request
/// reads the key map, and a create or revoke copies it.
pub const MAX_KEYS: usize = 10_000;

/// Why a key was not created, in precedence order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyWriteError {
    #[error("at most {max} keys; revoke unused ones")]
    TooManyKeys { max: usize },
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
    /// The key exists (and works) but is not stored yet.
    #[error(transparent)]
    NotDurable(#[from] NotDurable),
}

/// Hold caps: most units held at once across held reservations (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldPolicy {
    /// Per customer (`customer_id`), across every key and channel.
    pub max_held_units_per_customer: u64,
    /// Per API key without a `max_held_units` of its own.
    pub max_held_units_per_key: u64,
}

/// A reservation as a caller asks for it: the engine adds the hold caps.
#[derive(Clone, Debug)]
pub struct ReserveOrder {
    pub channel: Channel,
    pub lines: Vec<Line>,
    pub ttl_ms: u64,
    pub customer: Option<HolderId>,
}

impl HoldPolicy {
    /// The caps a reservation by `key` for `customer` counts against: the
    /// key's own `max_held_units`, else the per-key cap; the customer cap.
    fn caps(&self, key: &ApiKey, customer: Option<HolderId>) -> Result<Vec<HoldCap>, Refusal> {
        let mut caps = Vec::new();
        let key_cap = key.max_held_units.unwrap_or(self.max_held_units_per_key);
        if key_cap > 0 {
            // Key ids are made by the key store, always valid holder ids.
            let id = HolderId::new(&key.id).map_err(|error| Invalid::BadId {
                field: "key id",
                error,
            })?;
            caps.push(HoldCap {
                holder: Holder {
                    kind: HolderKind::Key,
                    id,
                },
                max_units: key_cap,
            });
        }
        if let (Some(id), cap @ 1..) = (customer, self.max_held_units_per_customer) {
            caps.push(HoldCap {
                holder: Holder {
                    kind: HolderKind::Customer,
                    id,
                },
                max_units: cap,
            });
        }
        Ok(caps)
    }
}

/// Counters of reservation outcomes, registered once.
pub struct Outcomes {
    granted: Counter,
    refused: Counter,
    /// Idempotent retries answered with the stored outcome: neither a new
    /// grant nor a new refusal.
    replayed: Counter,
    oversell_refused: Counter,
}

impl Default for Outcomes {
    fn default() -> Outcomes {
        Outcomes {
            granted: metrics::counter!("omnistock_reservations_total", "outcome" => "granted"),
            refused: metrics::counter!("omnistock_reservations_total", "outcome" => "refused"),
            replayed: metrics::counter!("omnistock_reservations_total", "outcome" => "replayed"),
            oversell_refused: metrics::counter!("omnistock_oversell_refused_total"),
        }
    }
}

impl Outcomes {
    fn count(&self, outcome: &Result<ReservationView, Refusal>, origin: Origin) {
        if origin == Origin::Replayed {
            self.replayed.increment(1);
            return;
        }
        match outcome {
            Ok(_) => self.granted.increment(1),
            Err(refusal) => {
                self.refused.increment(1);
                if matches!(refusal, Refusal::InsufficientStock { .. }) {
                    self.oversell_refused.increment(1);
                }
            }
        }
    }
}

impl Engine {
    /// Holds units for a channel, every line or none, counted against the
    /// caps of `caller` and the order's customer.
    pub async fn reserve(
        &self,
        caller: &ApiKey,
        order: ReserveOrder,
        key: Option<&IdempotencyKey>,
    ) -> Result<ReservationView, WriteError> {
        let request = ReserveRequest {
            caps: self.hold_policy.caps(caller, order.customer)?,
            channel: order.channel,
            lines: order.lines,
            ttl_ms: order.ttl_ms,
        };
        self.write(|writes| {
            writes.apply(|ledger, now| {
                let (outcome, origin) = ledger.reserve_with_origin(&request, now, key);
                self.outcomes.count(&outcome, origin);
                outcome
            })
        })
        .await
    }

    /// Adds or replaces a location.
    pub async fn put_location(&self, location: Location) -> Result<LocId, WriteError> {
        self.write(|writes| writes.apply(|ledger, _| ledger.put_location(location)))
            .await
    }

    /// Sets a group's members (all must exist).
    pub async fn put_group(
        &self,
        name: GroupName,
        members: &[LocationCode],
    ) -> Result<(), WriteError> {
        self.write(|writes| writes.apply(|ledger, _| ledger.put_group(name, members)))
            .await
    }

    /// Sets (or with `None`, removes) a channel's policy at a location or group.
    pub async fn put_policy(
        &self,
        channel: Channel,
        scope: PolicyScope,
        policy: Option<ChannelPolicy>,
    ) -> Result<(), WriteError> {
        self.write(|writes| writes.apply(|ledger, _| ledger.put_policy(channel, scope, policy)))
            .await
    }

    /// Creates an API key; returns it with its secret (shown once), once
    /// the key is as durable as the mode promises.
    pub async fn create_key(&self, spec: KeySpec) -> Result<(Arc<ApiKey>, String), KeyWriteError> {
        if self.keys.count() >= MAX_KEYS {
            return Err(KeyWriteError::TooManyKeys { max: MAX_KEYS });
        }
        let mut writes = self.writes();
        let created = self.keys.create(spec)?;
        writes.wrote();
        writes.durable().await?;
        Ok(created)
    }

    /// Revokes a key (never the admin key); `false` if no such key.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, NotDurable> {
        let mut writes = self.writes();
        let revoked = self.keys.revoke(id);
        if revoked {
            writes.wrote();
        }
        writes.durable().await?;
        Ok(revoked)
    }
}
