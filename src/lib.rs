//! omnistock: a real-time inventory availability engine for omnichannel retail.
//!
//! This crate is the HTTP API and the `omnistock` binary. The layers below
//! it are crates of their own, whose manifests carry the architecture rules
//! (see `ARCHITECTURE.md`, "Crates"): the [`ledger`] (pure, synchronous,
//! the single authority for stock), [`feeds`] (feed plans, formats and
//! cursors), the [`store`] (the only code that knows Redis) and the
//! [`engine`] (clock and durability around the ledger). They are re-exported
//! here under their layer names.

pub mod cluster;
pub mod flash_sale;
pub mod http;
pub mod server;

pub use omnistock_engine as engine;
pub use omnistock_engine::clock;
pub use omnistock_feeds as feeds;
pub use omnistock_feeds::cursor;
pub use omnistock_ledger as ledger;
pub use omnistock_store as store;

pub use ledger::Ledger;
