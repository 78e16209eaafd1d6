//! Test harness shared by the crates' tests: real `redis-server` processes
//! on loopback, stopped (and their files removed) when dropped. A test never
//! skips because a server is missing: it fails, saying how to install it.

mod redis_cluster;
mod redis_server;

pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;
