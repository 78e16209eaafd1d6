//! omnistock: a real-time inventory availability engine for omnichannel retail.
//!
//! The [`ledger`] is the single authority for stock of every SKU at every
//! location: a pure, synchronous, lock-sharded core. [`http`] and [`server`]
//! are the shells that serve it. See `ARCHITECTURE.md`.

pub mod flash_sale;
pub mod http;
pub mod ledger;
pub mod server;

pub use ledger::Ledger;
