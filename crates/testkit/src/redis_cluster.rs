//! A real Redis Cluster on loopback: 6 `redis-server` processes, 3 masters
//! and 3 replicas, made into a cluster with `redis-cli --cluster create`.
//! The configuration is the one `CLUSTER-NOTES` measured: a node timeout of
//! 1 s (failover in about 2 s), AOF every second, no diskless-sync delay.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const NODES: usize = 6;
/// Redis's cluster bus listens on the client port + 10,000.
const BUS_OFFSET: u16 = 10_000;
/// Client ports are picked from here, so that the bus ports (+10,000) stay
/// below the ephemeral range (32768 and up), where the tests' own client
/// sockets could take them.
const PORT_RANGE: std::ops::Range<u16> = 17_000..22_000;
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Ports are chosen under this lock, so that two clusters started by
/// parallel tests of one binary never pick the same ones.
static PICKING: Mutex<u16> = Mutex::new(0);

/// A running Redis Cluster; everything it started is stopped on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts the 6 processes and creates the cluster; returns once every
    /// node reports `cluster_state:ok` with all slots and every replica's
    /// link to its master is up.
    pub fn start() -> RedisCluster {
        let ports = free_ports();
        let dir = std::env::temp_dir().join(format!(
            "omnistock-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).expect("cluster temp dir");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for port in ports {
            let child = cluster.spawn(port);
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for node in &cluster.nodes {
            wait_until("redis-server answers PING", || {
                cli(node.port, &["PING"]).is_some_and(|out| out.trim() == "PONG")
            });
        }
        cluster.create();
        cluster.wait_ready();
        cluster
    }

    /// The seed URLs of the cluster (any one reaches all of it).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The client ports of the 6 nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis-cli -p PORT ARGS...` against one node, its output if it ran.
    pub fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        cli(port, args)
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub fn master_of(&self, key: &str) -> u16 {
        self.try_master_of(key)
            .unwrap_or_else(|| panic!("no live master serves {key}'s slot"))
    }

    fn try_master_of(&self, key: &str) -> Option<u16> {
        let live = self.live_port();
        let slot: u16 = cli(live, &["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .ok()?;
        let nodes = cli(live, &["CLUSTER", "NODES"])?;
        nodes
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .find(|line| serves(line, slot))
            .and_then(node_port)
    }

    /// The ports of the replicas of the master on `master`, as a live node
    /// sees them.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        let nodes = cli(self.live_port(), &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
        let master_id = nodes
            .lines()
            .find(|line| node_port(line) == Some(master))
            .and_then(|line| line.split(' ').next())
            .expect("the master's node id");
        nodes
            .lines()
            .filter(|line| line.contains("slave") && line.split(' ').nth(3) == Some(master_id))
            .filter_map(node_port)
            .collect()
    }

    /// `SIGKILL` of the node on `port` (a master crash).
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port);
        let child = node.and_then(|n| n.child.take());
        let mut child = child.unwrap_or_else(|| panic!("no running node on port {port}"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the node on `port` again after [`Self::kill`]: with its old
    /// cluster config it rejoins, as a replica of the master that replaced
    /// it. Returns once its replication link is up.
    pub fn restart(&mut self, port: u16) {
        let child = self.spawn(port);
        let node = self.nodes.iter_mut().find(|n| n.port == port);
        node.expect("a node of this cluster").child = Some(child);
        wait_until("the restarted node's replication link", || {
            cli(port, &["INFO", "replication"]).is_some_and(|info| {
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
        });
    }

    /// Waits until another master serves `key`'s slot and the cluster is
    /// whole again (after [`Self::kill`] of its master); how long it took.
    pub fn wait_failover(&self, key: &str, dead: u16) -> Duration {
        let started = Instant::now();
        wait_until("a failover", || self.has_failed_over(key, dead));
        started.elapsed()
    }

    /// Whether a master other than `dead` serves `key`'s slot and the
    /// cluster is whole again.
    pub fn has_failed_over(&self, key: &str, dead: u16) -> bool {
        let live = self.live_port();
        cli(live, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))
            && self.try_master_of(key).is_some_and(|port| port != dead)
    }

    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .expect("a live node")
    }

    fn spawn(&self, port: u16) -> Child {
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let config = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ncluster-enabled yes\n\
             cluster-config-file nodes.conf\ncluster-node-timeout 1000\nappendonly yes\n\
             appendfsync everysec\nsave \"\"\nrepl-diskless-sync-delay 0\ndir {}\n",
            node_dir.display()
        );
        let config_path = node_dir.join("redis.conf");
        std::fs::write(&config_path, config).expect("node config");
        Command::new("redis-server")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the cluster tests need a real Redis. \
                     Install it (apt-get install redis-server redis-tools) or run \
                     `bash scripts/test.sh`, which installs it"
                )
            })
    }

    fn create(&self) {
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let output = Command::new("redis-cli")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): apt-get install redis-tools"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    fn wait_ready(&self) {
        for node in &self.nodes {
            wait_until("cluster_state:ok with all slots", || {
                cli(node.port, &["CLUSTER", "INFO"]).is_some_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            });
            wait_until("replica links up", || {
                cli(node.port, &["INFO", "replication"]).is_some_and(|info| {
                    !info.contains("role:slave") || info.contains("master_link_status:up")
                })
            });
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a `CLUSTER NODES` line's slot ranges (fields 9 and on, `a-b`
/// or `a`) hold `slot`.
fn serves(line: &str, slot: u16) -> bool {
    line.split(' ').skip(8).any(|range| {
        let mut bounds = range.split('-').map(|b| b.parse::<u16>());
        match (bounds.next(), bounds.next()) {
            (Some(Ok(low)), Some(Ok(high))) => (low..=high).contains(&slot),
            (Some(Ok(only)), None) => only == slot,
            _ => false,
        }
    })
}

/// The client port of a `CLUSTER NODES` line (`ip:port@busport`).
fn node_port(line: &str) -> Option<u16> {
    let address = line.split(' ').nth(1)?;
    address.split('@').next()?.rsplit(':').next()?.parse().ok()
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < READY_WITHIN,
            "redis cluster: no {what} within {READY_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Six client ports whose bus ports are free too, none handed out before
/// by this process.
fn free_ports() -> [u16; NODES] {
    let mut next = PICKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *next == 0 {
        // Start where this process's id points, so that test binaries
        // running at the same time look in different places first.
        let span = PORT_RANGE.end - PORT_RANGE.start;
        *next = PORT_RANGE.start + (std::process::id() % u32::from(span)) as u16;
    }
    let mut ports = [0u16; NODES];
    let mut found = 0;
    for _ in 0..(PORT_RANGE.end - PORT_RANGE.start) {
        let port = *next;
        *next = if port + 1 >= PORT_RANGE.end {
            PORT_RANGE.start
        } else {
            port + 1
        };
        if is_free(port) && is_free(port + BUS_OFFSET) {
            ports[found] = port;
            found += 1;
            if found == NODES {
                return ports;
            }
        }
    }
    panic!("no 6 free port pairs in {PORT_RANGE:?} (+{BUS_OFFSET})");
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}
