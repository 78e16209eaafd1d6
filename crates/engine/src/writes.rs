//! Writes, and the durability they promise.
//!
//! Every change to the ledger goes through [`Writes`]: a group of ledger
//! writes made at one instant (the clock is read once, when the group is
//! opened), whose durability is awaited once, by [`Writes::durable`]. In
//! `async` durability mode (or without a store) that returns at once; in
//! `sync` mode it returns when every change the group made is in the store,
//! or says why it is not ([`NotDurable`]: the change stays applied in memory
//! and is written when the store is back, so a client retries with its
//! idempotency key and gets the original outcome).
//!
//! A group waits only if one of its writes succeeded: a refused write
//! changed nothing (or only what its idempotency key remembers, which the
//! next flush writes anyway), so a refusal is answered at once.
//!
//! [`Engine::write`] is the one-operation form: open a group, apply one
//! write, await its durability.

use std::future::Future;

use omnistock_ledger::Acting;
use omnistock_ledger::{
    AdjustmentRequest, CommitRequest, CountRequest, DisplayRequest, IdempotencyKey,
    IncomingRequest, Ledger, PositionView, ReceiptRequest, Refusal, ReservationId, ReservationView,
    ReturnRequest, SaleRequest, TimestampMs, TransferRequest,
};

use crate::Engine;
use crate::write_behind::NotDurable;

/// Why an engine write did not succeed, in precedence order: a refusal is
/// decided before anything is written; a write that succeeded can still
/// fail to be made durable in time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    /// The ledger refused the write: nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The write is applied in memory but not (yet) in the store.
    #[error(transparent)]
    NotDurable(#[from] NotDurable),
}

/// One method per ledger write: the ledger's own, with the group's `now`,
/// its outcome noted (see [`Writes::note`]).
macro_rules! ledger_writes {
    ($( $write:ident($($arg:ident: $type:ty),*) -> $view:ty; )*) => {
        $(
            #[doc = concat!("`Ledger::", stringify!($write), "` at the group's instant.")]
            pub fn $write(
                &mut self,
                $($arg: $type,)*
                key: Option<&IdempotencyKey>,
            ) -> Result<$view, Refusal> {
                let outcome = self.ledger().$write($($arg,)* self.now, key);
                self.note(outcome)
            }
        )*
    };
}

/// A group of ledger writes made at one instant; see the module docs.
pub struct Writes<'e> {
    engine: &'e Engine,
    now: TimestampMs,
    /// Whether any write of the group succeeded (and so must be durable).
    wrote: bool,
}

impl<'e> Writes<'e> {
    pub(crate) fn new(engine: &'e Engine) -> Writes<'e> {
        Writes {
            engine,
            now: engine.now(),
            wrote: false,
        }
    }

    /// The instant every write of the group is made at.
    pub fn now(&self) -> TimestampMs {
        self.now
    }

    fn ledger(&self) -> &'e Ledger {
        self.engine.ledger()
    }

    /// Notes a write's outcome: a success makes the group wait for the store.
    fn note<T>(&mut self, outcome: Result<T, Refusal>) -> Result<T, Refusal> {
        self.wrote |= outcome.is_ok();
        outcome
    }

    ledger_writes! {
        count(request: &CountRequest) -> PositionView;
        set_display(request: &DisplayRequest) -> PositionView;
        receive(request: &ReceiptRequest) -> PositionView;
        expect_incoming(request: &IncomingRequest) -> PositionView;
        adjust(request: &AdjustmentRequest) -> PositionView;
        return_units(request: &ReturnRequest) -> PositionView;
        sell(request: &SaleRequest) -> Vec<PositionView>;
        commit(request: &CommitRequest, acting: Acting<'_>) -> ReservationView;
        release(id: ReservationId, acting: Acting<'_>) -> ReservationView;
        extend(id: ReservationId, ttl_ms: u64, acting: Acting<'_>) -> ReservationView;
        transfer(request: &TransferRequest, acting: Acting<'_>) -> ReservationView;
    }

    /// A write the engine makes on the ledger itself (reservations with
    /// their hold caps, catalog changes): noted like the others.
    pub(crate) fn apply<T>(
        &mut self,
        write: impl FnOnce(&Ledger, TimestampMs) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let outcome = write(self.ledger(), self.now);
        self.note(outcome)
    }

    /// Marks the group as having changed what the store keeps outside the
    /// ledger (API keys).
    pub(crate) fn wrote(&mut self) {
        self.wrote = true;
    }

    /// Returns once every change of the group is as durable as the
    /// engine's durability mode promises (see the module docs).
    pub fn durable(self) -> impl Future<Output = Result<(), NotDurable>> + Send + 'e {
        let engine = self.engine;
        let wait = self.wrote;
        async move {
            match engine.sync_store() {
                Some(write_behind) if wait => {
                    let outcome = write_behind.durable().await;
                    if outcome.is_err() {
                        metrics::counter!("omnistock_writes_not_durable_total").increment(1);
                    }
                    outcome
                }
                _ => Ok(()),
            }
        }
    }
}

impl Engine {
    /// Opens a group of writes at the engine's current time.
    pub fn writes(&self) -> Writes<'_> {
        Writes::new(self)
    }

    /// One write, made now; returns once it is as durable as the
    /// durability mode promises (see [`Writes::durable`]).
    pub async fn write<T>(
        &self,
        write: impl FnOnce(&mut Writes<'_>) -> Result<T, Refusal>,
    ) -> Result<T, WriteError> {
        let mut writes = self.writes();
        let outcome = write(&mut writes)?;
        writes.durable().await?;
        Ok(outcome)
    }
}
