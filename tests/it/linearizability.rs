//! Linearizability of the HTTP API on hot positions.
//!
//! Concurrent clients run reserve (1-3 units), commit, release, POS sale,
//! receipt, shrinkage (a negative adjustment) and reads against a few hot
//! positions with little stock, over real HTTP against an in-process engine
//! (in memory, then with sync durability on a real Redis), and against a
//! cluster: three nodes (the real binary) on a real Redis Cluster, each
//! request sent to a node its client picks, so one owner serves a position
//! while the other two forward to it, and each history mixes all three.
//! Every operation is recorded with its invocation and completion instants
//! (taken by the client, so the real effect happened in between) and its
//! result. Each position's history is then checked against a sequential
//! model of one position with a Wing-Gong search with Lowe's memoization of
//! (set of operations linearized, model state): the history is accepted only
//! if some order of the operations, consistent with real time, gives every
//! observed result when applied one by one to the model.
//!
//! Every request has a single line, so positions are independent and can be
//! checked one by one (small histories, fast search). Counts are left out:
//! a count re-applies the movements stamped after its `as_of`, so it is not a
//! plain "set on hand" whose outcome the model could predict from the order
//! alone (the model-based test covers counts).
//!
//! `LINEARIZABILITY_SEED` fixes every client's choices (printed at start; a
//! failing seed reruns the same workload); `LINEARIZABILITY_ROUNDS` (10 in
//! memory, 3 with Redis or a cluster) and `LINEARIZABILITY_OPS` (operations
//! per client per round, 200) size it.
//! `cargo test --release --test it linearizability:: -- --nocapture`.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omnistock::server::config::{Durability, ServeConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::Nodes;
use support::rng::Rng;
use support::{ADMIN, RedisServer};
const POSITIONS: usize = 3;
const CLIENTS: usize = 6;
const START_ON_HAND: u32 = 8;
const SAFETY_STOCK: u32 = 1;

// ---------- history ----------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Reserve(u32),
    Commit(u64),
    Release(u64),
    Sale(u32),
    Receipt(u32),
    /// An adjustment of `-qty` (stock found damaged).
    Shrink(u32),
    Read,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Seen {
    on_hand: u32,
    reserved: u32,
    atf: u32,
    version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Resolution {
    Held,
    Committed,
    Released,
    Expired,
}

impl Resolution {
    fn parse(state: &str) -> Resolution {
        match state {
            "held" => Resolution::Held,
            "committed" => Resolution::Committed,
            "released" => Resolution::Released,
            "expired" => Resolution::Expired,
            other => panic!("unknown reservation state {other:?}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    /// 201 with the new reservation's id.
    Reserved(u64),
    /// 409 `insufficient_stock`, with what the channel saw.
    Refused { available: u32 },
    /// 409 `insufficient_on_hand` (commit, shrink), with the units on hand.
    OnHandShort { available: u32 },
    /// 409 `reservation_not_held`, with its state.
    NotHeld(Resolution),
    /// 200 from commit or release: the reservation's new state.
    Resolved(Resolution),
    /// 200 with the position (sale, receipt, shrink, read).
    Position(Seen),
}

#[derive(Clone, Debug)]
struct Op {
    client: usize,
    /// The node it was sent to (an index into the bases).
    node: usize,
    call: Call,
    ret: Ret,
    invoked: Instant,
    completed: Instant,
}

// ---------- the sequential model of one position ----------

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    on_hand: u32,
    reserved: u32,
    safety: u32,
    /// The position's version, exact, or (`exact` false) a lower bound: a
    /// reservation change does not show the version it produced.
    version: u64,
    exact: bool,
    holds: BTreeMap<u64, (u32, Resolution)>,
}

impl State {
    fn atf(&self) -> u32 {
        self.on_hand.saturating_sub(self.reserved + self.safety)
    }

    fn matches(&self, seen: &Seen) -> bool {
        seen.on_hand == self.on_hand && seen.reserved == self.reserved && seen.atf == self.atf()
    }

    /// A write that shows its version: it must be above everything before.
    fn written(mut self, seen: &Seen) -> Option<State> {
        if !self.matches(seen) || seen.version <= self.version {
            return None;
        }
        self.version = seen.version;
        self.exact = true;
        Some(self)
    }

    /// The state after `call` returned `ret`, if that can happen.
    fn step(&self, call: Call, ret: Ret) -> Option<State> {
        let mut next = self.clone();
        match (call, ret) {
            (Call::Reserve(qty), Ret::Reserved(id)) => {
                if self.atf() < qty || self.holds.contains_key(&id) {
                    return None;
                }
                next.reserved += qty;
                next.holds.insert(id, (qty, Resolution::Held));
                next.exact = false;
                Some(next)
            }
            (Call::Reserve(qty) | Call::Sale(qty), Ret::Refused { available }) => {
                (self.atf() < qty && available == self.atf()).then_some(next)
            }
            (Call::Sale(qty), Ret::Position(seen)) => {
                if self.atf() < qty {
                    return None;
                }
                next.on_hand -= qty;
                next.written(&seen)
            }
            (Call::Receipt(qty), Ret::Position(seen)) => {
                next.on_hand += qty;
                next.written(&seen)
            }
            (Call::Shrink(qty), Ret::Position(seen)) => {
                if self.on_hand < qty {
                    return None;
                }
                next.on_hand -= qty;
                next.written(&seen)
            }
            (Call::Shrink(qty), Ret::OnHandShort { available }) => {
                (self.on_hand < qty && available == self.on_hand).then_some(next)
            }
            (Call::Commit(id) | Call::Release(id), ret) => {
                let &(qty, resolution) = self.holds.get(&id)?;
                match ret {
                    Ret::NotHeld(state) => {
                        (resolution != Resolution::Held && state == resolution).then_some(next)
                    }
                    Ret::OnHandShort { available } => (matches!(call, Call::Commit(_))
                        && resolution == Resolution::Held
                        && self.on_hand < qty
                        && available == self.on_hand)
                        .then_some(next),
                    Ret::Resolved(state) if resolution == Resolution::Held => {
                        let wanted = if matches!(call, Call::Commit(_)) {
                            if self.on_hand < qty {
                                return None;
                            }
                            next.on_hand -= qty;
                            Resolution::Committed
                        } else {
                            Resolution::Released
                        };
                        if state != wanted {
                            return None;
                        }
                        next.reserved -= qty;
                        next.holds.insert(id, (qty, wanted));
                        next.exact = false;
                        Some(next)
                    }
                    _ => None,
                }
            }
            (Call::Read, Ret::Position(seen)) => {
                let version_ok = if self.exact {
                    seen.version == self.version
                } else {
                    seen.version > self.version
                };
                if !self.matches(&seen) || !version_ok {
                    return None;
                }
                next.version = seen.version;
                next.exact = true;
                Some(next)
            }
            _ => None,
        }
    }
}

// ---------- the checker ----------

/// Why a history is not linearizable: the longest prefix found, and the
/// operations none of which could come next.
struct NotLinearizable {
    linearized: usize,
    total: usize,
    state: State,
    stuck: Vec<Op>,
}

impl std::fmt::Display for NotLinearizable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "at most {} of {} operations linearize; then the model is at {:?} and none of these can come next:",
            self.linearized, self.total, self.state
        )?;
        let origin = self.stuck.iter().map(|op| op.invoked).min();
        for op in &self.stuck {
            let offset = |t: Instant| origin.map_or(0, |o| t.duration_since(o).as_micros());
            writeln!(
                f,
                "  client {} via node {} [{} us .. {} us] {:?} -> {:?}",
                op.client,
                op.node,
                offset(op.invoked),
                offset(op.completed),
                op.call,
                op.ret
            )?;
        }
        Ok(())
    }
}

struct Search<'a> {
    ops: &'a [Op],
    done: Vec<bool>,
    /// Lowe's cache: (linearized set, state) pairs already explored.
    seen: HashSet<(Vec<u64>, State)>,
    bits: Vec<u64>,
    order: Vec<usize>,
    best: (usize, Option<State>, Vec<usize>),
    explored: u64,
}

impl Search<'_> {
    fn run(&mut self, state: &State, linearized: usize) -> bool {
        self.explored += 1;
        if linearized == self.ops.len() {
            return true;
        }
        // Every pending operation that completed before one was invoked
        // must come before it: candidates are those invoked before the
        // earliest completion among the pending ones.
        let earliest = (0..self.ops.len())
            .filter(|&i| !self.done[i])
            .map(|i| self.ops[i].completed)
            .min()
            .expect("pending operations");
        let candidates: Vec<usize> = (0..self.ops.len())
            .filter(|&i| !self.done[i] && self.ops[i].invoked <= earliest)
            .collect();
        if linearized >= self.best.0 {
            self.best = (linearized, Some(state.clone()), candidates.clone());
        }
        for i in candidates {
            let op = &self.ops[i];
            let Some(next) = state.step(op.call, op.ret) else {
                continue;
            };
            self.done[i] = true;
            self.bits[i / 64] |= 1 << (i % 64);
            if self.seen.insert((self.bits.clone(), next.clone())) {
                self.order.push(i);
                if self.run(&next, linearized + 1) {
                    return true;
                }
                self.order.pop();
            }
            self.done[i] = false;
            self.bits[i / 64] &= !(1 << (i % 64));
        }
        false
    }
}

/// Some real-time-consistent order of `ops` that the model accepts, or why
/// there is none. Returns the number of configurations explored.
fn check(ops: &[Op], initial: &State) -> Result<(Vec<usize>, u64), NotLinearizable> {
    let mut search = Search {
        ops,
        done: vec![false; ops.len()],
        seen: HashSet::new(),
        bits: vec![0; ops.len().div_ceil(64)],
        order: Vec::new(),
        best: (0, None, Vec::new()),
        explored: 0,
    };
    if search.run(initial, 0) {
        return Ok((search.order, search.explored));
    }
    let (linearized, state, stuck) = search.best;
    Err(NotLinearizable {
        linearized,
        total: ops.len(),
        state: state.unwrap_or_else(|| initial.clone()),
        stuck: stuck.into_iter().map(|i| ops[i].clone()).collect(),
    })
}

/// Runs the check on a thread with a large stack (the search recurses once
/// per operation).
fn check_on_big_stack(ops: Vec<Op>, initial: State) -> Result<(Vec<usize>, u64), String> {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || check(&ops, &initial).map_err(|e| e.to_string()))
        .expect("checker thread")
        .join()
        .expect("checker")
}

// ---------- the workload ----------

fn seen(p: &Value) -> Seen {
    let field = |name: &str| {
        p[name]
            .as_u64()
            .unwrap_or_else(|| panic!("position without {name}: {p}"))
    };
    Seen {
        on_hand: field("on_hand") as u32,
        reserved: field("reserved") as u32,
        atf: field("atf") as u32,
        version: field("version"),
    }
}

fn shortfall(body: &Value) -> u32 {
    body["shortfalls"][0]["available"]
        .as_u64()
        .unwrap_or_else(|| panic!("refusal without shortfalls: {body}")) as u32
}

/// What the answer means for the model; any other answer fails the test.
fn parse(call: Call, status: StatusCode, body: &Value) -> Ret {
    let code = body["code"].as_str().unwrap_or("");
    match (call, status.as_u16(), code) {
        (Call::Reserve(_), 201, _) => Ret::Reserved(
            body["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("reservation id: {body}")),
        ),
        (Call::Reserve(_) | Call::Sale(_), 409, "insufficient_stock") => Ret::Refused {
            available: shortfall(body),
        },
        (Call::Commit(_) | Call::Shrink(_), 409, "insufficient_on_hand") => Ret::OnHandShort {
            available: shortfall(body),
        },
        (Call::Commit(_) | Call::Release(_), 409, "reservation_not_held") => {
            Ret::NotHeld(Resolution::parse(body["state"].as_str().unwrap_or("")))
        }
        (Call::Commit(_) | Call::Release(_), 200, _) => {
            Ret::Resolved(Resolution::parse(body["state"].as_str().unwrap_or("")))
        }
        (Call::Sale(_), 200, _) => Ret::Position(seen(&body["positions"][0])),
        (Call::Receipt(_) | Call::Shrink(_) | Call::Read, 200, _) => Ret::Position(seen(body)),
        _ => panic!("{call:?}: unexpected answer {status} {body}"),
    }
}

/// Where the clients send: one engine, or every node of a cluster.
struct Target {
    bases: Vec<String>,
    http: Client,
}

impl Target {
    async fn send(
        &self,
        node: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.bases[node]))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the engine answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Performs `call` on `sku` at S1 through `node` and records it.
    async fn perform(&self, node: usize, client: usize, sku: &str, call: Call) -> Op {
        let (method, path, body) = match call {
            Call::Reserve(qty) => (
                Method::POST,
                "/v1/reservations".to_owned(),
                Some(
                    json!({"channel": "web", "lines": [{"sku": sku, "location": "S1", "qty": qty}], "ttl_seconds": 3600}),
                ),
            ),
            Call::Commit(id) => (
                Method::POST,
                format!("/v1/reservations/{id}/commit"),
                Some(json!({})),
            ),
            Call::Release(id) => (
                Method::POST,
                format!("/v1/reservations/{id}/release"),
                Some(json!({})),
            ),
            Call::Sale(qty) => (
                Method::POST,
                "/v1/sales".to_owned(),
                Some(
                    json!({"channel": "pos", "lines": [{"sku": sku, "location": "S1", "qty": qty}]}),
                ),
            ),
            Call::Receipt(qty) => (
                Method::POST,
                "/v1/receipts".to_owned(),
                Some(json!({"sku": sku, "location": "S1", "qty": qty})),
            ),
            Call::Shrink(qty) => (
                Method::POST,
                "/v1/adjustments".to_owned(),
                Some(
                    json!({"sku": sku, "location": "S1", "delta": -i64::from(qty), "reason": "damaged"}),
                ),
            ),
            Call::Read => (Method::GET, format!("/v1/stock/S1/{sku}"), None),
        };
        let invoked = Instant::now();
        let (status, answer) = self.send(node, method, &path, body).await;
        let completed = Instant::now();
        Op {
            client,
            node,
            call,
            ret: parse(call, status, &answer),
            invoked,
            completed,
        }
    }
}

/// One client: `ops` operations on random hot positions, each through a
/// random node. Commit and release pick any reservation of that position
/// that any client got back.
async fn client(
    target: Arc<Target>,
    skus: Arc<Vec<String>>,
    ids: Arc<Mutex<Vec<Vec<u64>>>>,
    client: usize,
    seed: u64,
    ops: usize,
) -> Vec<(usize, Op)> {
    let mut rng = Rng(seed);
    // The nodes come from a stream of their own: which node each request
    // goes to is fixed by the seed alone (the calls also depend on which
    // reservations other clients got back by then), and one engine's
    // workloads are those of the same seed before there were clusters.
    let mut nodes = Rng(!seed);
    let mut history = Vec::with_capacity(ops);
    for _ in 0..ops {
        let position = rng.below(skus.len() as u64) as usize;
        let known = {
            let ids = ids.lock().expect("ids");
            let list = &ids[position];
            // One of the newest: most are still held, and clients race
            // to resolve the same ones.
            let newest = list.len().min(4) as u64;
            (!list.is_empty()).then(|| list[list.len() - 1 - rng.below(newest.max(1)) as usize])
        };
        let roll = rng.below(100);
        let qty = 1 + rng.below(3) as u32;
        let call = match (roll, known) {
            (0..=29, _) | (30..=53, None) => Call::Reserve(qty),
            (30..=41, Some(id)) => Call::Commit(id),
            (42..=53, Some(id)) => Call::Release(id),
            (54..=67, _) => Call::Sale(qty.min(2)),
            (68..=79, _) => Call::Receipt(qty),
            (80..=83, _) => Call::Shrink(qty),
            _ => Call::Read,
        };
        let node = nodes.below(target.bases.len() as u64) as usize;
        let op = target.perform(node, client, &skus[position], call).await;
        if let Ret::Reserved(id) = op.ret {
            ids.lock().expect("ids")[position].push(id);
        }
        history.push((position, op));
    }
    history
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed_and_sizes(label: &str, default_rounds: u64) -> (u64, usize, usize) {
    let seed = env_u64("LINEARIZABILITY_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let rounds = env_u64("LINEARIZABILITY_ROUNDS").unwrap_or(default_rounds) as usize;
    let per_client = env_u64("LINEARIZABILITY_OPS").unwrap_or(200) as usize;
    println!(
        "linearizability ({label}): LINEARIZABILITY_SEED={seed} LINEARIZABILITY_ROUNDS={rounds} LINEARIZABILITY_OPS={per_client}"
    );
    (seed, rounds, per_client)
}

fn config() -> ServeConfig {
    support::engine::unlimited()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_http_histories_on_hot_positions_are_linearizable() {
    let _serial = support::serial().await;
    let label = "in memory";
    let (seed, rounds, per_client) = seed_and_sizes(label, 10);
    run(config(), label, seed, rounds, per_client).await;
}

/// The same through the sync-durability gate (every 2xx write waits for
/// its flush to a real Redis): still linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_sync_durability_histories_are_linearizable_too() {
    let _serial = support::serial().await;
    let label = "sync durability, Redis";
    let (seed, rounds, per_client) = seed_and_sizes(label, 3);
    let redis = RedisServer::start();
    let config = ServeConfig {
        redis_url: Some(redis.url()),
        durability: Durability::Sync,
        ..config()
    };
    run(config, label, seed, rounds, per_client).await;
}

/// The same through the three nodes of a cluster on a real Redis Cluster,
/// with sync durability: every client sends each request to a node of its
/// own seeded choosing, so each position's history mixes the node that owns
/// its partition (which serves) and the other two (which forward to it).
/// Still linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_taken_through_different_cluster_nodes_are_linearizable() {
    let _serial = support::serial().await;
    let label = "cluster of 3 nodes, sync durability";
    let (seed, rounds, per_client) = seed_and_sizes(label, 3);
    let nodes = Nodes::start(3, 16, &["--durability", "sync"]);
    let bases = (0..3).map(|i| nodes.base(i)).collect();
    drive(
        bases,
        add_location_on_every_node,
        label,
        seed,
        rounds,
        per_client,
    )
    .await;
}

/// One in-process engine with `config`, driven through its one address.
async fn run(config: ServeConfig, label: &str, seed: u64, rounds: usize, per_client: usize) {
    let mut running = support::engine::start_engine(config, ADMIN).await;
    running
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("ready");
    let bases = vec![format!("http://{}", running.addr)];
    drive(bases, add_location, label, seed, rounds, per_client).await;
    running.shutdown().await.expect("stop");
}

/// Adds the store S1 through the first node.
async fn add_location(target: &Target) {
    let (status, body) = target
        .send(
            0,
            Method::PUT,
            "/v1/locations/S1",
            Some(json!({"kind": "store", "name": "S1"})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
}

/// Adds the store S1 through the first node of a cluster, then waits until
/// every node's copy of the shared catalog has it (the others poll it every
/// 250 ms): until then, a count through another node could be refused.
async fn add_location_on_every_node(target: &Target) {
    add_location(target).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    for node in 0..target.bases.len() {
        loop {
            let (status, locations) = target.send(node, Method::GET, "/v1/locations", None).await;
            if status == StatusCode::OK && locations.to_string().contains("\"S1\"") {
                break;
            }
            assert!(Instant::now() < deadline, "node {node} never learnt S1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the checked histories add up to.
#[derive(Default)]
struct Tally {
    histories: usize,
    operations: usize,
    /// Histories that went through more than one node.
    mixed: usize,
    /// Operations sent through each node.
    via: Vec<usize>,
    outcomes: BTreeMap<&'static str, usize>,
    /// Pairs of concurrent operations on the same position.
    overlapping: usize,
    explored: u64,
    check_time: Duration,
}

/// After `setup` (the location S1, known to every node), `rounds` rounds:
/// fresh hot positions counted, `CLIENTS` clients sending `per_client`
/// operations each through the nodes at `bases`, every position's history
/// checked. Then the audit through the first node, and what it all added
/// up to.
async fn drive(
    bases: Vec<String>,
    setup: impl AsyncFnOnce(&Target),
    label: &str,
    seed: u64,
    rounds: usize,
    per_client: usize,
) {
    let target = Arc::new(Target {
        bases,
        http: Client::new(),
    });
    setup(&target).await;

    let mut rng = Rng(seed);
    let mut tally = Tally {
        via: vec![0; target.bases.len()],
        ..Tally::default()
    };
    let started = Instant::now();
    for round in 0..rounds {
        let (skus, initial) = count_hot_positions(&target, round).await;
        let histories = take_histories(&target, &skus, &mut rng, per_client).await;
        for (position, ops) in histories.into_iter().enumerate() {
            if let Err(why) = check_history(ops, &initial[position], &mut tally) {
                panic!(
                    "{label}, round {round}, position {}: not linearizable (LINEARIZABILITY_SEED={seed}):\n{why}",
                    skus[position]
                );
            }
        }
    }
    let (status, audit) = target.send(0, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(audit["ok"], true, "{audit}");
    let Tally {
        histories,
        operations,
        mixed,
        via,
        outcomes,
        overlapping,
        explored,
        check_time,
    } = tally;
    println!(
        "linearizability ({label}): {histories} histories, {operations} operations linearizable ({outcomes:?}); \
         {overlapping} pairs of concurrent operations on the same position; \
         operations through each node {via:?}, {mixed} histories through more than one node; \
         {explored} configurations explored, check {} ms, whole run {} ms",
        check_time.as_millis(),
        started.elapsed().as_millis()
    );
    assert!(
        outcomes
            .get("refused (insufficient stock)")
            .copied()
            .unwrap_or(0)
            > 0
            && outcomes.get("reserved").copied().unwrap_or(0) > 0,
        "the workload must run out of stock: {outcomes:?}"
    );
    assert!(
        overlapping > operations / 10,
        "too little concurrency to test anything: {overlapping} overlapping pairs"
    );
    assert!(
        via.len() == 1 || mixed > 0,
        "no history went through several nodes: {via:?}"
    );
}

/// Fresh hot positions for `round` (small stock, a safety stock of 1),
/// each counted through another node: their SKUs and the model's states.
async fn count_hot_positions(target: &Target, round: usize) -> (Vec<String>, Vec<State>) {
    let skus: Vec<String> = (0..POSITIONS).map(|p| format!("HOT-{round}-{p}")).collect();
    let mut initial = Vec::new();
    for (p, sku) in skus.iter().enumerate() {
        let (status, position) = target
            .send(
                (round + p) % target.bases.len(),
                Method::PUT,
                &format!("/v1/stock/S1/{sku}"),
                Some(json!({"on_hand": START_ON_HAND, "safety_stock": SAFETY_STOCK})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{position}");
        let seen = seen(&position);
        initial.push(State {
            on_hand: seen.on_hand,
            reserved: seen.reserved,
            safety: SAFETY_STOCK,
            version: seen.version,
            exact: true,
            holds: BTreeMap::new(),
        });
    }
    (skus, initial)
}

/// Runs the clients of one round (their seeds drawn from `rng`) on
/// `skus`: each position's history, in invocation order.
async fn take_histories(
    target: &Arc<Target>,
    skus: &[String],
    rng: &mut Rng,
    per_client: usize,
) -> Vec<Vec<Op>> {
    let skus = Arc::new(skus.to_vec());
    let ids = Arc::new(Mutex::new(vec![Vec::new(); skus.len()]));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(client(
            Arc::clone(target),
            Arc::clone(&skus),
            Arc::clone(&ids),
            c,
            rng.next(),
            per_client,
        )));
    }
    let mut by_position: Vec<Vec<Op>> = vec![Vec::new(); skus.len()];
    for task in tasks {
        for (position, op) in task.await.expect("client") {
            by_position[position].push(op);
        }
    }
    // The recorder itself: each client's operations are sequential.
    let mut last: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut all: Vec<&Op> = by_position.iter().flatten().collect();
    all.sort_by_key(|op| op.invoked);
    for op in all {
        if let Some(previous) = last.insert(op.client, op.completed) {
            assert!(
                previous <= op.invoked,
                "client {} overlaps itself",
                op.client
            );
        }
    }
    for ops in &mut by_position {
        ops.sort_by_key(|op| op.invoked);
    }
    by_position
}

/// Checks one position's history (in invocation order) from `initial`,
/// and that the check refuses it with one read's answer falsified; adds
/// it to `tally`. Why it is not linearizable, if it is not.
fn check_history(mut ops: Vec<Op>, initial: &State, tally: &mut Tally) -> Result<(), String> {
    let mut nodes = HashSet::new();
    for op in &ops {
        *tally
            .outcomes
            .entry(match op.ret {
                Ret::Reserved(_) => "reserved",
                Ret::Refused { .. } => "refused (insufficient stock)",
                Ret::OnHandShort { .. } => "refused (insufficient on hand)",
                Ret::NotHeld(_) => "refused (not held)",
                Ret::Resolved(_) => "committed or released",
                Ret::Position(_) => "position",
            })
            .or_default() += 1;
        tally.via[op.node] += 1;
        nodes.insert(op.node);
    }
    let checking = Instant::now();
    let result = check_on_big_stack(ops.clone(), initial.clone());
    tally.check_time += checking.elapsed();
    let (order, configurations) = result?;
    assert_eq!(order.len(), ops.len());
    tally.explored += configurations;
    tally.histories += 1;
    tally.operations += ops.len();
    tally.mixed += usize::from(nodes.len() > 1);
    tally.overlapping += ops
        .iter()
        .enumerate()
        .map(|(i, a)| {
            ops[i + 1..]
                .iter()
                .take_while(|b| b.invoked < a.completed)
                .count()
        })
        .sum::<usize>();

    // The same history with one read's answer falsified must be refused:
    // the check has teeth on real data too.
    if let Some(index) = ops.iter().position(|op| matches!(op.ret, Ret::Position(_))) {
        if let Ret::Position(seen) = &mut ops[index].ret {
            seen.on_hand += 1_000;
        }
        assert!(
            check_on_big_stack(ops, initial.clone()).is_err(),
            "a falsified history was accepted"
        );
    }
    Ok(())
}

// ---------- the checker itself ----------

fn at(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

fn op(base: Instant, from: u64, to: u64, call: Call, ret: Ret) -> Op {
    Op {
        client: 0,
        node: 0,
        call,
        ret,
        invoked: at(base, from),
        completed: at(base, to),
    }
}

fn position(on_hand: u32, reserved: u32, version: u64) -> Seen {
    Seen {
        on_hand,
        reserved,
        atf: on_hand.saturating_sub(reserved + 1),
        version,
    }
}

/// 5 on hand, safety stock 1: ATF 4.
fn five() -> State {
    State {
        on_hand: 5,
        reserved: 0,
        safety: 1,
        version: 10,
        exact: true,
        holds: BTreeMap::new(),
    }
}

#[test]
fn checker_accepts_linearizable_histories() {
    let t = Instant::now();
    // Two overlapping reserves of 3 on ATF 4: one wins, the other sees 1.
    let ops = vec![
        op(t, 0, 10, Call::Reserve(3), Ret::Refused { available: 1 }),
        op(t, 1, 9, Call::Reserve(3), Ret::Reserved(7)),
        op(t, 11, 12, Call::Read, Ret::Position(position(5, 3, 11))),
    ];
    assert!(check(&ops, &five()).is_ok());
    // A read overlapping a receipt may see either state.
    let ops = vec![
        op(
            t,
            0,
            10,
            Call::Receipt(2),
            Ret::Position(position(7, 0, 12)),
        ),
        op(t, 1, 9, Call::Read, Ret::Position(position(5, 0, 10))),
        op(t, 2, 8, Call::Read, Ret::Position(position(7, 0, 12))),
    ];
    assert!(check(&ops, &five()).is_ok());
    // Concurrent commit and release of one hold: one wins, the other is told
    // the state the winner left.
    let ops = vec![
        op(t, 0, 1, Call::Reserve(2), Ret::Reserved(3)),
        op(
            t,
            2,
            10,
            Call::Commit(3),
            Ret::NotHeld(Resolution::Released),
        ),
        op(
            t,
            3,
            9,
            Call::Release(3),
            Ret::Resolved(Resolution::Released),
        ),
        op(t, 11, 12, Call::Read, Ret::Position(position(5, 0, 20))),
    ];
    assert!(check(&ops, &five()).is_ok());
}

#[test]
fn checker_rejects_histories_that_are_not_linearizable() {
    let t = Instant::now();
    // Oversell: one after the other, both reserves of 3 granted on ATF 4.
    let ops = vec![
        op(t, 0, 1, Call::Reserve(3), Ret::Reserved(1)),
        op(t, 2, 3, Call::Reserve(3), Ret::Reserved(2)),
    ];
    let refused = check(&ops, &five()).expect_err("oversold");
    assert_eq!(refused.linearized, 1);
    // Also when they overlap: no order grants both.
    let ops = vec![
        op(t, 0, 5, Call::Reserve(3), Ret::Reserved(1)),
        op(t, 1, 4, Call::Reserve(3), Ret::Reserved(2)),
    ];
    assert!(check(&ops, &five()).is_err());
    // A stale read: the receipt completed before the read began.
    let ops = vec![
        op(t, 0, 1, Call::Receipt(2), Ret::Position(position(7, 0, 12))),
        op(t, 2, 3, Call::Read, Ret::Position(position(5, 0, 10))),
    ];
    assert!(check(&ops, &five()).is_err());
    // A refusal that names the wrong availability.
    let ops = vec![op(t, 0, 1, Call::Reserve(5), Ret::Refused { available: 3 })];
    assert!(check(&ops, &five()).is_err());
    // One hold resolved twice.
    let ops = vec![
        op(t, 0, 1, Call::Reserve(2), Ret::Reserved(3)),
        op(
            t,
            2,
            10,
            Call::Commit(3),
            Ret::Resolved(Resolution::Committed),
        ),
        op(
            t,
            3,
            9,
            Call::Release(3),
            Ret::Resolved(Resolution::Released),
        ),
    ];
    assert!(check(&ops, &five()).is_err());
    // A version that goes backwards.
    let ops = vec![
        op(t, 0, 1, Call::Receipt(1), Ret::Position(position(6, 0, 12))),
        op(t, 2, 3, Call::Receipt(1), Ret::Position(position(7, 0, 11))),
    ];
    assert!(check(&ops, &five()).is_err());
    // A sale that takes units held for a reservation.
    let ops = vec![
        op(t, 0, 1, Call::Reserve(3), Ret::Reserved(1)),
        op(t, 2, 3, Call::Sale(2), Ret::Position(position(3, 3, 12))),
    ];
    assert!(check(&ops, &five()).is_err());
}
