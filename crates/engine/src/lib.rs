//! The engine: the ledger with everything that makes it a service but is
//! not a transport: the wall clock, and the write-behind durability that
//! feeds the store. Transports (the HTTP API, the `omnistock feed` export,
//! the in-process demo) call it; it knows no transport: no HTTP type
//! reaches it and none of its types knows a status code (its manifest
//! lists no axum, hyper or serde_json).

pub mod clock;
pub mod write_behind;
