//! The store's integration tests, one binary: each module starts the real
//! Redis it needs (a `redis-server`, or a 6-process Redis Cluster).

mod cluster_leases;
mod legacy_stores;
mod partition_store;
