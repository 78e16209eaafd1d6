//! The cluster target: a run given several nodes' URLs spreads its
//! connections over them, seeds through the first (the import sends each row
//! to its partition) and audits every position of the whole cluster. Three
//! in-process nodes on a real 6-process Redis Cluster.

use std::time::{Duration, Instant};

use loadtest::http_client::{Call, Conn, Endpoint};
use loadtest::run::run;
use loadtest::scenario::Scenario;
use loadtest::targets::Target;
use omnistock::cluster::RunningNode;
use omnistock::server::config::{Durability, ServeConfig};
use omnistock_testkit::RedisCluster;
use tokio::net::TcpListener;

use crate::support::{ADMIN, config};

const NODES: usize = 3;
const PARTITIONS: u16 = 6;

async fn start_node(redis: &RedisCluster, index: usize) -> RunningNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        redis_url: Some(redis.urls()[index].clone()),
        durability: Durability::Sync,
        admin_key: Some(ADMIN.into()),
        rate_limit_per_second: 0,
        cluster: true,
        node_id: Some(format!("node-{index}")),
        partitions: PARTITIONS,
        ..ServeConfig::default()
    };
    omnistock::cluster::start(listener, &config)
        .await
        .expect("the node joins")
}

/// Waits until every node's `/readyz` answers 200 (each has loaded the
/// partitions it owns).
async fn wait_ready(urls: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for url in urls {
        let endpoint = Endpoint::parse(url).await.expect("url");
        let mut conn = Conn::new(endpoint, Duration::from_secs(5));
        loop {
            let reply = conn.call(Call::get("/readyz", None)).await;
            if reply.is_ok_and(|r| r.status.is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "{url} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_over_three_nodes_passes_the_audit_of_every_position() {
    let redis = RedisCluster::start();
    let mut nodes = Vec::new();
    for index in 0..NODES {
        nodes.push(start_node(&redis, index).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.addr)).collect();
    wait_ready(&urls).await;

    let mut config = config(Target::Omnistock, Some(urls.join(",")), Scenario::Mixed);
    config.connections = 6;
    config.duration = Duration::from_secs(2);
    let report = run(&config).await.expect("the run completes");

    for phase in &report.phases {
        assert_eq!(phase.errors, 0, "{:?}", phase.error_samples);
        assert!(phase.ok > 0, "{phase:?}");
    }
    let audit = report
        .audit
        .as_ref()
        .expect("a cluster keeps stock: audited");
    assert!(audit.passed, "{:?}", audit.findings);
    assert_eq!(
        audit.server["ok"],
        serde_json::Value::Bool(true),
        "the engine audit of every partition: {}",
        audit.server
    );
    assert_eq!(audit.positions_checked, report.positions, "every position");
    assert!(report.passed);
    for node in nodes {
        node.shutdown().await.expect("the node leaves");
    }
}
