//! One connection type for the Redis store, to a single Redis server or to
//! a Redis Cluster: the store's code is the same on both, the cluster
//! client routes each command and single-slot pipeline by its keys.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub enum Connection {
    /// One Redis server (reconnects by itself).
    Single(ConnectionManager),
    /// A Redis Cluster: one multiplexed connection per Redis node.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `command` on the master serving `key`'s slot (on a single
    /// server: on it). For keyless commands that must reach the node a
    /// write went to, such as `WAIT`.
    pub async fn run_on_master_of(&mut self, key: &str, command: Cmd) -> RedisResult<Value> {
        match self {
            Connection::Single(con) => command.query_async(con).await,
            Connection::Cluster(con) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                con.route_command(command, routing).await
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(con) => con.req_packed_command(cmd),
            Connection::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(con) => con.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(con) => con.get_db(),
            Connection::Cluster(con) => con.get_db(),
        }
    }
}
