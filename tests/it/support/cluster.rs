//! An omnistock cluster for tests: a real 6-process Redis Cluster and
//! omnistock nodes as child processes (the real binary, `serve --cluster`),
//! each on its own port, started, stopped, killed and paused by the test.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;

use omnistock_testkit::RedisCluster;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use super::engine::send;
use super::proxy::{ChaosProxy, ProxyMode};
use super::{ADMIN, EngineProcess, free_port};

pub struct Nodes {
    pub redis: RedisCluster,
    nodes: Vec<Option<EngineProcess>>,
    ports: Vec<u16>,
    args: Vec<String>,
    /// With `linked`: the proxy each node is reached through by the others
    /// (its `--advertise-url`); clients still reach it directly.
    links: Vec<ChaosProxy>,
    linked: bool,
    pub http: Client,
}

impl Nodes {
    /// A Redis Cluster and `count` nodes (node-0, node-1, ...), started one
    /// after the other, each waited for until ready; `args` are given to
    /// every node after the cluster flags.
    pub fn start(count: usize, partitions: u16, args: &[&str]) -> Nodes {
        Nodes::start_with(count, partitions, args, false)
    }

    /// As `start`, each node reached by the others through a proxy of its
    /// own, so the links between nodes can be cut ([`Nodes::links`]).
    pub fn start_linked(count: usize, partitions: u16, args: &[&str]) -> Nodes {
        Nodes::start_with(count, partitions, args, true)
    }

    fn start_with(count: usize, partitions: u16, args: &[&str], linked: bool) -> Nodes {
        let redis = RedisCluster::start();
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--partitions".into(), partitions.to_string()]);
        let mut nodes = Nodes {
            redis,
            nodes: Vec::new(),
            ports: Vec::new(),
            args,
            links: Vec::new(),
            linked,
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
        if self.linked {
            self.links.push(ChaosProxy::start(self.ports[index]));
        }
        self.restart(index);
        index
    }

    /// (Re)starts node `index` on its port and waits until it is ready.
    pub fn restart(&mut self, index: usize) {
        let seed = self.redis.urls()[index % 6].clone();
        let id = format!("node-{index}");
        let mut args = vec!["--cluster", "--redis-url", &seed, "--node-id", &id];
        let advertise = self
            .links
            .get(index)
            .map(|link| format!("http://127.0.0.1:{}", link.port));
        if let Some(url) = &advertise {
            args.extend(["--advertise-url", url.as_str()]);
        }
        args.extend(self.args.iter().map(String::as_str));
        let process = EngineProcess::start_on(self.ports[index], &args, None);
        self.nodes[index] = Some(process);
    }

    /// Sets what every link between nodes does (`start_linked`).
    pub fn links(&self, mode: ProxyMode) {
        for link in &self.links {
            link.set_mode(mode);
        }
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
        send(
            &self.http,
            &self.base(index),
            method,
            path,
            Some(ADMIN),
            body,
            &[],
        )
        .await
    }

    /// Adds the store PAR-01 through node 0 and waits until every running
    /// node knows it (they poll the shared catalog every 250 ms).
    pub async fn add_store(&self) {
        self.add_location("PAR-01").await;
    }

    /// Adds the store `code` through node 0 and waits until every running
    /// node knows it.
    pub async fn add_location(&self, code: &str) {
        let store = serde_json::json!({"kind": "store", "name": "Paris Rivoli",
            "lat": 48.86, "lon": 2.34});
        let path = format!("/v1/locations/{code}");
        let (status, body) = self.call(0, Method::PUT, &path, Some(&store)).await;
        assert!(status.is_success(), "{status} {body}");
        let started = std::time::Instant::now();
        for index in (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()) {
            loop {
                let (_, locations) = self.call(index, Method::GET, "/v1/locations", None).await;
                if locations.to_string().contains(code) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "node {index} never learnt {code}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `GET /v1/cluster` through node `index`.
    pub async fn view(&self, index: usize) -> Value {
        let (status, view) = self.call(index, Method::GET, "/v1/cluster", None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view
    }
}

/// What one keyed reservation request got.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// 201: the reservation, as answered.
    Granted(Value),
    /// 409 insufficient stock.
    SoldOut,
    /// Anything else (a 503 while a partition moved, a connection error):
    /// the request may or may not have been applied.
    Failed(String),
}

/// One request of a [`Load`].
#[derive(Clone, Debug)]
pub struct Attempt {
    pub key: String,
    pub sku: String,
    pub via: String,
    pub outcome: Outcome,
}

/// The nodes clients send to (the rest are out of rotation, as a load
/// balancer takes a node out before it is restarted).
pub type Rotation = std::sync::Arc<parking_lot::Mutex<Vec<String>>>;

/// A reservation of one unit of `sku` at PAR-01 for 10 minutes.
pub fn one_unit(sku: &str) -> Value {
    serde_json::json!({"channel": "web", "ttl_seconds": 600,
        "lines": [{"sku": sku, "location": "PAR-01", "qty": 1}]})
}

pub async fn reserve(http: &Client, base: &str, key: &str, sku: &str) -> Outcome {
    let request = http
        .post(format!("{base}/v1/reservations"))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", key)
        .json(&one_unit(sku));
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(error.to_string()),
    };
    let status = response.status();
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(error) => return Outcome::Failed(format!("{status}: {error}")),
    };
    match status {
        StatusCode::CREATED => Outcome::Granted(body),
        StatusCode::CONFLICT if body["code"] == "insufficient_stock" => Outcome::SoldOut,
        _ => Outcome::Failed(format!("{status}: {body}")),
    }
}

/// `clients` clients reserving one unit of a random one of `skus` at a
/// time, each through a random node of `rotation`, until `stop`.
pub async fn load(
    rotation: Rotation,
    skus: Vec<String>,
    clients: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Attempt> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (rotation, skus, stop) = (rotation.clone(), skus.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let mut rng = super::rng::Rng(0x5EED ^ (client << 17));
            let mut attempts = Vec::new();
            for n in 0.. {
                if *stop.borrow() {
                    break;
                }
                let via = {
                    let bases = rotation.lock();
                    bases[rng.below(bases.len() as u64) as usize].clone()
                };
                let sku = skus[rng.below(skus.len() as u64) as usize].clone();
                let key = format!("c{client}-{n}");
                let outcome = reserve(&http, &via, &key, &sku).await;
                attempts.push(Attempt {
                    key,
                    sku,
                    via,
                    outcome,
                });
            }
            attempts
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    all
}

/// Replays sent at once while checking.
const REPLAYS_IN_FLIGHT: usize = 16;

/// What a fault test found once the cluster settled: every request
/// replayed with its key through `via`.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: usize,
    pub granted: usize,
    pub sold_out: usize,
    pub failed: usize,
}

/// Checks, after a fault: every acknowledged reservation replayed with its
/// key returns the identical answer (none was lost), a request that failed
/// has one outcome or the other, and each SKU's reserved units are exactly
/// its granted reservations, never above its stock (`on_hand` each).
pub async fn check(nodes: &Nodes, via: usize, attempts: &[Attempt], on_hand: u64) -> Tally {
    let mut tally = Tally {
        requests: attempts.len(),
        ..Tally::default()
    };
    let mut granted: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let base = nodes.base(via);
    let replays = futures_util::stream::iter(attempts)
        .map(|attempt| {
            let (http, base) = (&nodes.http, &base);
            async move {
                let replay = reserve(http, base, &attempt.key, &attempt.sku).await;
                (attempt, replay)
            }
        })
        .buffered(REPLAYS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for (attempt, replay) in replays {
        match (&attempt.outcome, &replay) {
            (Outcome::Granted(first), Outcome::Granted(again)) => {
                assert_eq!(first, again, "{} replayed differently", attempt.key);
            }
            (Outcome::Granted(first), other) => {
                panic!("acknowledged {} lost: {first} then {other:?}", attempt.key)
            }
            (_, Outcome::Failed(error)) => panic!("replay of {} failed: {error}", attempt.key),
            _ => {}
        }
        match (&attempt.outcome, &replay) {
            (Outcome::Failed(_), _) => tally.failed += 1,
            (Outcome::SoldOut, _) => tally.sold_out += 1,
            (Outcome::Granted(_), _) => tally.granted += 1,
        }
        if let Outcome::Granted(body) = replay {
            let id = body["id"].as_str().expect("id").to_owned();
            granted.entry(attempt.sku.clone()).or_default().insert(id);
        }
    }
    for (sku, ids) in &granted {
        let (status, position) = nodes
            .call(via, Method::GET, &format!("/v1/stock/PAR-01/{sku}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{position}");
        assert_eq!(
            position["on_hand"],
            serde_json::json!(on_hand),
            "{sku}: {position}"
        );
        let reserved = position["reserved"].as_u64().expect("reserved");
        assert_eq!(
            reserved,
            ids.len() as u64,
            "{sku}: reserved vs granted reservations"
        );
        assert!(reserved <= on_hand, "{sku} oversold: {position}");
    }
    tally
}
