//! omnistock: a real-time inventory availability engine for omnichannel retail.
//!
//! The [`ledger`] is the single authority for stock of every SKU at every
//! location: a pure, synchronous, lock-sharded core. See `ARCHITECTURE.md`.

pub mod ledger;

pub use ledger::Ledger;
