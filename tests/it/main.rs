//! The root crate's integration tests, one binary (one link instead of one
//! per file): each file of this directory is a module, named for what it
//! tests; `support` is what they share (a real `redis-server`, the real
//! binary as a child process, the engine in-process, a fault-injecting
//! proxy, and the guards that keep tests which cannot share the process's
//! time or metrics from overlapping).
//!
//! One module: `cargo test --test it <module>::`, e.g.
//! `cargo test --test it chaos:: -- --nocapture`.

mod support;

mod architecture;
mod browser;
mod chaos;
mod cli;
mod cluster_carts;
mod cluster_chaos;
mod cluster_faults;
mod cluster_flash_sale;
mod cluster_nodes;
mod cluster_pages;
mod connection_limits;
mod engine_crash;
mod error_codes;
mod feeds;
mod fuzz_http;
mod http;
mod linearizability;
mod metrics;
mod model;
mod openapi;
mod pages;
mod problem_details;
mod readme;
mod request_caps;
mod shutdown;
mod store;
mod stress;
mod time;
