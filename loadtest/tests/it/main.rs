//! loadtest's tests, one binary: the command line, the open-loop timer, a
//! smoke run of every scenario, the audit, the cluster target, and the paired measurement's
//! arguments, generator and statistics.

mod audit;
mod cli;
mod cluster;
mod open_loop;
mod paired;
mod smoke;
mod support;
