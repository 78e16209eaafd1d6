//! Test harness shared by the crates' tests: real `redis-server` processes
//! on loopback, stopped (and their files removed) when dropped. A test never
//! skips because a server is missing: it fails, saying how to install it.
//! Also the small readers several test binaries share (`help_sections`).

mod cli_help;
mod redis_cluster;
mod redis_server;

pub use cli_help::help_sections;
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;
