//! The engine's integration tests, one binary: each module starts the real
//! Redis it needs.

mod ownership;
mod partition_handover;
