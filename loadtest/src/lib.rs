//! omnistock's load-test tool as a library: the binary (`src/main.rs`) is a
//! thin CLI over it, and the tests drive the same code against an in-process
//! engine. See the README section "Load-test tool" and BENCHMARKS.md.

pub mod audit;
pub mod book;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod dataset;
pub mod driver;
pub mod fixed;
pub mod flood;
pub mod http_client;
pub mod paired;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod stats;
pub mod targets;
