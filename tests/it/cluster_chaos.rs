//! The chaos soak of a cluster: 3 nodes of the real binary on a real
//! Redis Cluster, sync durability, under a mixed load through every node
//! (carts across partitions, POS sales of one or several partitions, ERP
//! counts, an ad-feed poller following its cursor) while a fault injector
//! SIGKILLs a node (and restarts it), pauses one past its leases, kills a
//! Redis master, and cuts the links between nodes (each node is reached by
//! the others through a proxy that resets connections mid-stream). Then:
//!
//! - every request is replayed with its key: each acknowledged one
//!   answers identically (no acknowledged write lost), and what the
//!   others did is what their replay says (a refusal changed nothing, and
//!   only a cart's is kept durably: a refused single-partition request is
//!   judged again once its partition has moved);
//! - once the parts of interrupted carts are settled (an attempt's time),
//!   each SKU's reserved units are exactly those of its granted carts and
//!   its on-hand is its stock less its acknowledged sales: nothing
//!   oversold, nothing held or sold that nobody was told of;
//! - the audit of the whole cluster is clean after every fault;
//! - the poller's feed, built from increments, equals a full feed.
//!
//! `cargo test --test it cluster_chaos:: -- --nocapture` prints the tallies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use omnistock_cluster::Partitions;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::ADMIN;
use crate::support::cluster::Nodes;
use crate::support::proxy::ProxyMode;
use crate::support::rng::Rng;

const PARTITIONS: u16 = 16;
/// SKUs carts and sales take from, and their stock.
const SKUS: usize = 12;
const ON_HAND: u64 = 600;
/// SKUs the ERP counts (never sold: their on-hand is the last count).
const COUNTED: usize = 3;
/// A cart's parts are settled (kept, or undone by their partitions'
/// owners) within an attempt's time, 20 s, a scan and a takeover.
const SETTLED_WITHIN: Duration = Duration::from_secs(27);

fn sku(i: usize) -> String {
    format!("CHAOS-{i}")
}

/// One request a client made, with its key and what it got.
#[derive(Clone, Debug)]
struct Sent {
    method: Method,
    path: String,
    body: Value,
    key: String,
    /// The status and body, or why there was none.
    answer: Result<(StatusCode, Value), String>,
}

async fn send(
    http: &Client,
    base: &str,
    method: Method,
    path: &str,
    body: &Value,
    key: &str,
) -> Result<(StatusCode, Value), String> {
    let request = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .header("idempotency-key", key)
        .json(body);
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    // An answer whose body did not come whole is no answer.
    let body = response
        .json()
        .await
        .map_err(|e| format!("{status}, cut: {e}"))?;
    Ok((status, body))
}

/// A client: `make(rng, n)` is its `n`th request (method, path, body),
/// sent to a random node until `stop`.
async fn client(
    bases: Vec<String>,
    name: &'static str,
    seed: u64,
    stop: watch::Receiver<bool>,
    make: fn(&mut Rng, u64) -> (Method, String, Value),
) -> Vec<Sent> {
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut rng = Rng(seed);
    let mut sent = Vec::new();
    for n in 0.. {
        if *stop.borrow() {
            break;
        }
        let (method, path, body) = make(&mut rng, n);
        let key = format!("{name}-{n}");
        let base = &bases[rng.below(bases.len() as u64) as usize];
        let answer = send(&http, base, method.clone(), &path, &body, &key).await;
        sent.push(Sent {
            method,
            path,
            body,
            key,
            answer,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

/// Distinct SKUs of the sold range, `count` of them.
fn lines(rng: &mut Rng, count: usize, max_qty: u64) -> Vec<Value> {
    let mut picked: Vec<usize> = Vec::new();
    while picked.len() < count {
        let i = rng.below(SKUS as u64) as usize;
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
        .into_iter()
        .map(|i| json!({"sku": sku(i), "location": "PAR-01", "qty": 1 + rng.below(max_qty)}))
        .collect()
}

fn cart(rng: &mut Rng, _: u64) -> (Method, String, Value) {
    let count = 2 + rng.below(2) as usize;
    let body = json!({"channel": "web", "ttl_seconds": 3600, "lines": lines(rng, count, 3)});
    (Method::POST, "/v1/reservations".into(), body)
}

fn sale(rng: &mut Rng, _: u64) -> (Method, String, Value) {
    let count = 1 + rng.below(2) as usize;
    let body = json!({"channel": "pos", "lines": lines(rng, count, 2)});
    (Method::POST, "/v1/sales".into(), body)
}

fn count(rng: &mut Rng, n: u64) -> (Method, String, Value) {
    let i = rng.below(COUNTED as u64) as usize + SKUS;
    (
        Method::PUT,
        format!("/v1/stock/PAR-01/{}", sku(i)),
        json!({"on_hand": 50 + n % 50}),
    )
}

/// The audit of the whole cluster, clean, within 15 s (partitions may be
/// moving).
async fn audit_is_clean(nodes: &Nodes, when: &str) {
    let started = Instant::now();
    loop {
        let (status, audit) = nodes.call(0, Method::GET, "/v1/admin/audit", None).await;
        if status == StatusCode::OK {
            assert_eq!(audit["ok"], json!(true), "{when}: {audit}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{when}: no audit: {audit}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_under_chaos_oversells_nothing_and_loses_no_acknowledged_write() {
    let _serial = crate::support::serial().await;
    let mut nodes = Nodes::start_linked(
        3,
        PARTITIONS,
        &["--durability", "sync", "--rate-limit-per-second", "0"],
    );
    stock(&nodes).await;
    let bases: Vec<String> = (0..3).map(|i| nodes.base(i)).collect();
    let (stop, stopped) = watch::channel(false);
    let mut clients = Vec::new();
    for (name, seed, make) in [
        ("cart-a", 1, cart as fn(&mut Rng, u64) -> _),
        ("cart-b", 2, cart),
        ("cart-c", 3, cart),
        ("sale", 4, sale),
        ("count", 5, count),
    ] {
        clients.push(tokio::spawn(client(
            bases.clone(),
            name,
            seed,
            stopped.clone(),
            make,
        )));
    }
    let poller = tokio::spawn(poll_feed(bases.clone(), stopped.clone()));

    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes.kill9(2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    audit_is_clean(&nodes, "after a node was SIGKILLed").await;
    nodes.restart(2);
    audit_is_clean(&nodes, "after it came back").await;
    nodes.process(1).signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    nodes.process(1).signal("CONT");
    audit_is_clean(&nodes, "after a node was paused past its leases").await;
    let partitions = Partitions::new(u64::from(PARTITIONS)).expect("count");
    let key = format!("omnistock:{}:epoch", partitions.of(&sku(0)).hash_tag());
    let master = nodes.redis.master_of(&key);
    nodes.redis.kill(master);
    let failover = nodes.redis.wait_failover(&key, master);
    nodes.redis.restart(master);
    tokio::time::sleep(Duration::from_secs(2)).await;
    audit_is_clean(&nodes, "after a Redis master failed over").await;
    // The links between nodes cut mid-stream (RST) for 2 s: forwarded
    // requests lost on the way, or their answers.
    nodes.links(ProxyMode::Reset);
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes.links(ProxyMode::Pass);
    audit_is_clean(&nodes, "after the links between nodes were cut").await;
    let _ = stop.send(true);

    let mut sent = Vec::new();
    for client in clients {
        sent.extend(client.await.expect("client"));
    }
    let mut feed = poller.await.expect("poller");
    eprintln!(
        "Redis failover: {failover:?}; feed polls: {} ({} full)",
        feed.polls, feed.full
    );
    // Interrupted carts' parts settle; then every request is replayed.
    tokio::time::sleep(SETTLED_WITHIN).await;
    let replayed = replay_all(&nodes, &sent).await;
    check_stock(&nodes, &replayed).await;
    audit_is_clean(&nodes, "at the end").await;
    // The poller catches up once more, through another node than the
    // full feed it is compared with.
    let http = Client::new();
    let cursor = feed.cursor.clone();
    let last = feed_response(&http, &nodes.base(1), cursor.as_deref()).await;
    feed.take(last.expect("a last increment"));
    let (_, _, full) = feed_response(&http, &nodes.base(0), None)
        .await
        .expect("a full feed");
    assert_eq!(
        feed.rows,
        rows_of(&full),
        "the feed built from increments differs from a full one"
    );
}

async fn stock(nodes: &Nodes) {
    nodes.add_store().await;
    for i in 0..SKUS + COUNTED {
        let path = format!("/v1/stock/PAR-01/{}", sku(i));
        let count = json!({"on_hand": ON_HAND});
        let (status, body) = nodes.call(i % 3, Method::PUT, &path, Some(&count)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

/// Every request replayed with its key through node 0: an acknowledged
/// one must answer the same; the replays are what happened.
async fn replay_all(nodes: &Nodes, sent: &[Sent]) -> Vec<(Sent, StatusCode, Value)> {
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let base = nodes.base(0);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut replayed = Vec::with_capacity(sent.len());
    for request in sent {
        let again = send(
            &http,
            &base,
            request.method.clone(),
            &request.path,
            &request.body,
            &request.key,
        )
        .await;
        let (status, body) =
            again.unwrap_or_else(|e| panic!("replay of {} failed: {e}", request.key));
        assert!(
            status != StatusCode::SERVICE_UNAVAILABLE,
            "replay of {}: {status} {body}",
            request.key
        );
        let kind = request.key.split('-').next().unwrap_or("").to_owned();
        match &request.answer {
            Ok((first, answer)) if first.is_success() => {
                assert_eq!(
                    (first, answer),
                    (&status, &body),
                    "{} replayed differently",
                    request.key
                );
                *tally
                    .entry(format!("{kind} {}", first.as_u16()))
                    .or_default() += 1;
            }
            // A refusal changed nothing, so one partition does not keep it
            // durably (a cart's record does): after its partition moved,
            // the replay is judged again, on the stock of now.
            Ok((first, _)) if first.is_client_error() => {
                *tally
                    .entry(format!("{kind} {}", first.as_u16()))
                    .or_default() += 1;
            }
            other => {
                let what = other
                    .as_ref()
                    .map_or_else(Clone::clone, |(s, b)| format!("{s} {b}"));
                eprintln!("{} failed ({what}); its replay: {status}", request.key);
                *tally.entry(format!("{kind} failed")).or_default() += 1;
            }
        }
        replayed.push((request.clone(), status, body));
    }
    eprintln!("cluster chaos: {} requests: {tally:?}", sent.len());
    replayed
}

/// Each sold SKU's reserved units are its granted carts', its on-hand its
/// stock less its sales; a counted SKU's on-hand is a count it was given.
async fn check_stock(nodes: &Nodes, replayed: &[(Sent, StatusCode, Value)]) {
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    let mut sold: BTreeMap<String, u64> = BTreeMap::new();
    for (request, status, body) in replayed {
        let into = match (request.path.as_str(), *status) {
            ("/v1/reservations", StatusCode::CREATED) => &mut held,
            ("/v1/sales", StatusCode::OK) => &mut sold,
            _ => continue,
        };
        assert!(body.is_object());
        for line in request.body["lines"].as_array().into_iter().flatten() {
            let units = line["qty"].as_u64().unwrap_or(0);
            *into
                .entry(line["sku"].as_str().unwrap_or("").to_owned())
                .or_default() += units;
        }
    }
    for i in 0..SKUS {
        let path = format!("/v1/stock/PAR-01/{}", sku(i));
        let (status, position) = nodes.call(0, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{position}");
        let (reserved, on_hand) = (position["reserved"].as_u64(), position["on_hand"].as_u64());
        let name = sku(i);
        assert_eq!(
            reserved,
            Some(held.get(&name).copied().unwrap_or(0)),
            "{name}: held vs granted carts: {position}"
        );
        assert_eq!(
            on_hand,
            Some(ON_HAND - sold.get(&name).copied().unwrap_or(0)),
            "{name}: sold vs acknowledged sales: {position}"
        );
        assert!(reserved <= on_hand, "{name} oversold: {position}");
    }
}

/// What the feed poller built.
struct Polled {
    rows: BTreeMap<String, String>,
    cursor: Option<String>,
    polls: usize,
    full: usize,
}

impl Polled {
    /// Takes in a feed answer: a full one replaces the rows, an increment
    /// updates them.
    fn take(&mut self, (full, next, body): (bool, String, String)) {
        self.polls += 1;
        if full {
            self.full += 1;
            self.rows.clear();
        }
        self.rows.extend(rows_of(&body));
        self.cursor = Some(next);
    }
}

/// Polls the Google feed through random nodes, following its cursor:
/// rows replaced by a full feed, updated by an increment.
async fn poll_feed(bases: Vec<String>, stop: watch::Receiver<bool>) -> Polled {
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut rng = Rng(77);
    let mut polled = Polled {
        rows: BTreeMap::new(),
        cursor: None,
        polls: 0,
        full: 0,
    };
    while !*stop.borrow() {
        let base = &bases[rng.below(bases.len() as u64) as usize];
        match feed_response(&http, base, polled.cursor.as_deref()).await {
            Some(answer) => polled.take(answer),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    polled
}

/// A feed answer that came whole: (full, next cursor, body).
async fn feed_response(
    http: &Client,
    base: &str,
    since: Option<&str>,
) -> Option<(bool, String, String)> {
    let mut url = format!("{base}/v1/feeds/google/local-inventory");
    if let Some(since) = since {
        url.push_str(&format!("?since={since}"));
    }
    let response = http.get(url).bearer_auth(ADMIN).send().await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)?
            .to_str()
            .ok()
            .map(str::to_owned)
    };
    let (full, next) = (
        header("x-feed-snapshot")? == "full",
        header("x-next-cursor")?,
    );
    Some((full, next, response.text().await.ok()?))
}

/// A TSV feed's rows by their store and id (the first two columns).
fn rows_of(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .skip(1)
        .filter_map(|line| {
            let mut columns = line.splitn(3, '\t');
            let key = format!("{}\t{}", columns.next()?, columns.next()?);
            Some((key, line.to_owned()))
        })
        .collect()
}
