//! omnistock: a real-time inventory availability engine for omnichannel retail.
//!
//! The [`ledger`] is the single authority for stock of every SKU at every
//! location: a pure, synchronous, lock-sharded core. [`http`] and [`server`]
//! are the shells that serve it; [`store`] makes it durable (Redis write-behind). See `ARCHITECTURE.md`.

pub mod clock;
pub mod cursor;
pub mod feeds;
pub mod flash_sale;
pub mod http;
pub mod ledger;
pub mod server;
pub mod store;

pub use ledger::Ledger;
