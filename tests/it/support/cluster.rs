//! An omnistock cluster for tests: a real 6-process Redis Cluster and
//! omnistock nodes as child processes (the real binary, `serve --cluster`),
//! each on its own port, started, stopped, killed and paused by the test.

use std::time::Duration;

use omnistock_testkit::RedisCluster;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use super::engine::send;
use super::{ADMIN, EngineProcess, free_port};

pub struct Nodes {
    pub redis: RedisCluster,
    nodes: Vec<Option<EngineProcess>>,
    ports: Vec<u16>,
    args: Vec<String>,
    pub http: Client,
}

impl Nodes {
    /// A Redis Cluster and `count` nodes (node-0, node-1, ...), started one
    /// after the other, each waited for until ready; `args` are given to
    /// every node after the cluster flags.
    pub fn start(count: usize, partitions: u16, args: &[&str]) -> Nodes {
        let redis = RedisCluster::start();
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--partitions".into(), partitions.to_string()]);
        let mut nodes = Nodes {
            redis,
            nodes: Vec::new(),
            ports: Vec::new(),
            args,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        };
        for _ in 0..count {
            nodes.add();
        }
        nodes
    }

    /// Starts one more node and waits until it is ready; its index.
    pub fn add(&mut self) -> usize {
        let index = self.ports.len();
        self.ports.push(free_port());
        self.nodes.push(None);
        self.restart(index);
        index
    }

    /// (Re)starts node `index` on its port and waits until it is ready.
    pub fn restart(&mut self, index: usize) {
        let seed = self.redis.urls()[index % 6].clone();
        let id = format!("node-{index}");
        let mut args = vec!["--cluster", "--redis-url", &seed, "--node-id", &id];
        args.extend(self.args.iter().map(String::as_str));
        let process = EngineProcess::start_on(self.ports[index], &args, None);
        self.nodes[index] = Some(process);
    }

    pub fn base(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[index])
    }

    pub fn process(&mut self, index: usize) -> &mut EngineProcess {
        self.nodes[index].as_mut().expect("node running")
    }

    pub fn kill9(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.kill9();
        }
    }

    /// SIGTERM: a graceful leave, waited for.
    pub fn stop(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.stop();
        }
    }

    pub async fn call(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        send(&self.http, &self.base(index), method, path, Some(ADMIN), body, &[]).await
    }

    /// `GET /v1/cluster` through node `index`.
    pub async fn view(&self, index: usize) -> Value {
        let (status, view) = self.call(index, Method::GET, "/v1/cluster", None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view
    }
}
