//! Runs one node's partition ownership: the shell around the pure state
//! machine [`Ownership`]. It beats the node's heartbeat into the cluster
//! store, feeds the live members and the answers to lease requests into
//! the state machine, carries its actions out, and sleeps until its
//! `poll_timeout` or the next answer.
//!
//! Requests run as their own tasks, so a slow partition load never delays
//! another partition's renewal; their answers come back on a channel
//! bounded by the number of partitions (each partition has at most one
//! acquisition or renewal and one load or handover in flight).
//!
//! Time is a monotonic clock in milliseconds (a wall-clock step must not
//! stretch a lease); tests pass their own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistock_cluster::{Action, Epoch, LeaseTiming, NodeId, Ownership, PartitionId, Partitions};
use omnistock_store::cluster::{Acquired, ClusterStore, Member, Renewed};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Longest a partition load may take; the lease is renewed meanwhile. One
/// that takes longer gives the lease up (it is taken again and reloaded).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the flush before a handover may take; one that takes longer is
/// retried, and the node serves on meanwhile.
pub const HANDOVER_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a leaving node with nothing else to wait for looks again.
const LEAVING_POLL: Duration = Duration::from_millis(50);

/// A monotonic clock in milliseconds.
pub type MonotonicMs = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The process's monotonic clock: milliseconds since it was first read.
pub fn monotonic_ms() -> MonotonicMs {
    let origin = Instant::now();
    Arc::new(move || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Why a flush before a handover did not complete.
#[derive(Debug)]
pub enum FlushError {
    /// The store refused it: the partition's epoch is no longer this node's
    /// (another node took it). The node stops serving it at once.
    Fenced,
    /// Anything else (the store unreachable): the handover is retried.
    Failed(String),
}

/// What the engine does when a partition comes or goes. The ownership
/// driver calls these; a partition is served only between a successful
/// `load` and the next `flush` or `forget`.
///
/// A load may still be running when its partition is forgotten (its lease
/// lapsed meanwhile), and a later load of the same partition under a newer
/// epoch may overlap it: an implementation keys what it builds by
/// `(partition, epoch)` and never lets an older epoch's load replace a
/// newer one's.
pub trait PartitionHost: Send + Sync + 'static {
    /// Loads the partition's state from the store, for `epoch`.
    fn load(
        &self,
        partition: PartitionId,
        epoch: Epoch,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Flushes the partition's last changes under `epoch` before the lease
    /// is released.
    fn flush(
        &self,
        partition: PartitionId,
        epoch: Epoch,
    ) -> impl Future<Output = Result<(), FlushError>> + Send;
    /// Forgets the partition's state in memory.
    fn forget(&self, partition: PartitionId);
}

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node: NodeId,
    /// How other nodes reach this node's API.
    pub advertise_url: String,
    pub partitions: Partitions,
    pub timing: LeaseTiming,
    /// A node whose heartbeat is older than this is dead to the others.
    pub node_ttl_ms: u64,
    pub heartbeat_every_ms: u64,
}

impl NodeConfig {
    /// A node with the default lease timing: heartbeats every 500 ms, dead
    /// after 2 s of silence.
    pub fn new(node: NodeId, advertise_url: String, partitions: Partitions) -> NodeConfig {
        NodeConfig {
            node,
            advertise_url,
            partitions,
            timing: LeaseTiming::DEFAULT,
            node_ttl_ms: 2_000,
            heartbeat_every_ms: 500,
        }
    }
}

/// The answer to one request, fed back into the state machine.
enum Answer {
    Acquired(PartitionId, Epoch, u64),
    Refused(PartitionId),
    Renewed(PartitionId, Epoch, u64),
    Lost(PartitionId, Epoch),
    RenewFailed(PartitionId),
    Loaded(PartitionId, Epoch),
    LoadFailed(PartitionId, Epoch),
    Released(PartitionId, Epoch),
    HandOverFailed(PartitionId, Epoch),
    Members(Vec<Member>),
    HeartbeatFailed,
}

/// A live node as the last heartbeat saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveNode {
    pub id: NodeId,
    /// How to reach its API (`--advertise-url`).
    pub url: String,
}

/// A running ownership driver.
pub struct OwnershipDriver {
    ownership: Arc<Mutex<Ownership>>,
    node: NodeId,
    partitions: Partitions,
    /// Every node the last heartbeat knew, alive or recently dead (empty
    /// until the first heartbeat is answered).
    members: Arc<Mutex<Vec<Member>>>,
    clock: MonotonicMs,
    leaving: watch::Sender<bool>,
    /// Longest a graceful leave waits for every handover.
    leave_within: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl OwnershipDriver {
    /// Joins the cluster: checks the partition count, then runs until
    /// [`Self::leave`] or until dropped.
    pub async fn start<H: PartitionHost>(
        config: NodeConfig,
        store: ClusterStore,
        host: Arc<H>,
        clock: MonotonicMs,
    ) -> Result<OwnershipDriver, String> {
        store
            .ensure_partitions(config.partitions)
            .await
            .map_err(|e| e.to_string())?;
        let ownership = Arc::new(Mutex::new(Ownership::new(
            config.node.clone(),
            config.partitions,
            config.timing,
        )));
        let (leaving, leaving_rx) = watch::channel(false);
        let leave_within = Duration::from_millis(3 * config.timing.ttl_ms());
        let members = Arc::new(Mutex::new(Vec::new()));
        let (node, partitions) = (config.node.clone(), config.partitions);
        let run = Run {
            members: members.clone(),
            config,
            store,
            host,
            clock: clock.clone(),
            ownership: ownership.clone(),
            tasks: JoinSet::new(),
            heartbeat_in_flight: false,
        };
        let task = tokio::spawn(run.run(leaving_rx));
        Ok(OwnershipDriver {
            ownership,
            node,
            partitions,
            members,
            clock,
            leaving,
            leave_within,
            task: Mutex::new(Some(task)),
        })
    }

    /// The epoch to serve `partition` under now, if this node serves it.
    pub fn serving(&self, partition: PartitionId) -> Option<Epoch> {
        self.ownership.lock().serving(partition, (self.clock)())
    }

    /// The partitions this node serves now.
    pub fn served(&self) -> Vec<PartitionId> {
        self.ownership.lock().served((self.clock)())
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn partitions(&self) -> Partitions {
        self.partitions
    }

    /// Every node the last heartbeat knew, alive or recently dead.
    pub fn members(&self) -> Vec<Member> {
        self.members.lock().clone()
    }

    /// The nodes alive at the last heartbeat, by id.
    pub fn live(&self) -> Vec<LiveNode> {
        let members = self.members.lock();
        members
            .iter()
            .filter(|m| m.alive)
            .filter_map(|m| {
                let id = NodeId::new(&m.id).ok()?;
                Some(LiveNode {
                    id,
                    url: m.url.clone(),
                })
            })
            .collect()
    }

    /// The node `partition` belongs to among the live ones (the one every
    /// node computes, so the one that owns it once moves settle). A
    /// leaving node counts itself out: its partitions go to the others.
    pub fn owner_of(&self, partition: PartitionId) -> Option<LiveNode> {
        let mut live = self.live();
        if *self.leaving.borrow() {
            live.retain(|n| n.id != self.node);
        }
        let ids: Vec<NodeId> = live.iter().map(|n| n.id.clone()).collect();
        let owner = omnistock_cluster::owner_of(partition, &ids)?.clone();
        live.into_iter().find(|n| n.id == owner)
    }

    /// Why this node cannot yet serve or forward every partition (`None`:
    /// it can): it has not joined, a partition has no live node, or one
    /// that belongs to this node is not loaded yet.
    pub fn unready_reason(&self) -> Option<String> {
        let live = self.live();
        if !live.iter().any(|n| n.id == self.node) {
            return Some("not joined: no heartbeat answered yet".into());
        }
        let ids: Vec<NodeId> = live.iter().map(|n| n.id.clone()).collect();
        let now = (self.clock)();
        let own = self.ownership.lock();
        let waiting = self
            .partitions
            .all()
            .filter(|p| omnistock_cluster::owner_of(*p, &ids) == Some(&self.node))
            .filter(|p| own.serving(*p, now).is_none())
            .count();
        (waiting > 0).then(|| format!("{waiting} partitions of this node are not loaded yet"))
    }

    /// Graceful leave: hands every partition over (flush, release), leaves
    /// the heartbeats, and returns once nothing is held, or after three
    /// lease TTLs (what is still held then lapses by itself). True if every
    /// partition was handed over.
    pub async fn leave(&self) -> bool {
        let _ = self.leaving.send(true);
        let Some(mut task) = self.task.lock().take() else {
            return true;
        };
        match tokio::time::timeout(self.leave_within, &mut task).await {
            Ok(Ok(())) => true,
            Ok(Err(_panicked)) => false,
            Err(_elapsed) => {
                task.abort();
                false
            }
        }
    }
}

/// Dropping the driver stops it at once without handing anything over, as
/// a crash would: its leases lapse and other nodes take the partitions.
impl Drop for OwnershipDriver {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

struct Run<H> {
    members: Arc<Mutex<Vec<Member>>>,
    config: NodeConfig,
    store: ClusterStore,
    host: Arc<H>,
    clock: MonotonicMs,
    ownership: Arc<Mutex<Ownership>>,
    /// Every request the driver started; dropped (so aborted) with it.
    tasks: JoinSet<()>,
    /// One heartbeat at a time, so that answers cannot arrive out of order
    /// and none can land after a leave.
    heartbeat_in_flight: bool,
}

impl<H: PartitionHost> Run<H> {
    async fn run(mut self, mut leaving: watch::Receiver<bool>) {
        let capacity = 4 * usize::from(self.config.partitions.count()) + 4;
        let (answers_tx, mut answers) = mpsc::channel(capacity);
        let mut next_heartbeat = 0;
        loop {
            let now = (self.clock)();
            let is_leaving = *leaving.borrow();
            if is_leaving && self.ownership.lock().is_empty() && !self.heartbeat_in_flight {
                let _ = self.store.leave(&self.config.node).await;
                return;
            }
            if now >= next_heartbeat && !is_leaving && !self.heartbeat_in_flight {
                next_heartbeat = now + self.config.heartbeat_every_ms;
                self.spawn_heartbeat(answers_tx.clone());
            }
            self.carry_out_actions(now, &answers_tx);
            while self.tasks.try_join_next().is_some() {}
            let timeout = self.ownership.lock().poll_timeout();
            let wake_at = if is_leaving {
                timeout.unwrap_or(now + LEAVING_POLL.as_millis() as u64)
            } else {
                timeout.map_or(next_heartbeat, |t| t.min(next_heartbeat))
            };
            let sleep = Duration::from_millis(wake_at.saturating_sub(now).max(1));
            tokio::select! {
                answer = answers.recv() => {
                    if let Some(answer) = answer {
                        self.apply(answer);
                    }
                }
                changed = leaving.changed() => {
                    // The handle is gone only while it aborts this task.
                    if changed.is_err() {
                        return;
                    }
                    if *leaving.borrow() {
                        // Leave the heartbeats first, so the others start
                        // asking for the partitions while they are handed
                        // over; they get each as soon as it is released.
                        let _ = self.store.leave(&self.config.node).await;
                        self.ownership.lock().handle_leaving();
                    }
                }
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn apply(&mut self, answer: Answer) {
        let now = (self.clock)();
        if matches!(answer, Answer::Members(_) | Answer::HeartbeatFailed) {
            self.heartbeat_in_flight = false;
        }
        let mut own = self.ownership.lock();
        match answer {
            Answer::Acquired(p, epoch, sent_at) => own.handle_acquired(p, epoch, sent_at),
            Answer::Refused(p) => own.handle_refused(p, now),
            Answer::Renewed(p, epoch, sent_at) => own.handle_renewed(p, epoch, sent_at),
            Answer::Lost(p, epoch) => own.handle_lost(p, epoch),
            Answer::RenewFailed(p) => own.handle_renew_failed(p, now),
            Answer::Loaded(p, epoch) => own.handle_loaded(p, epoch),
            Answer::LoadFailed(p, epoch) => own.handle_load_failed(p, epoch),
            Answer::Released(p, epoch) => own.handle_released(p, epoch),
            Answer::HandOverFailed(p, epoch) => own.handle_handover_failed(p, epoch, now),
            Answer::Members(members) => {
                let live = members
                    .iter()
                    .filter(|m| m.alive)
                    .filter_map(|m| NodeId::new(&m.id).ok())
                    .collect();
                own.handle_members(live);
                *self.members.lock() = members;
            }
            Answer::HeartbeatFailed => {}
        }
    }

    fn carry_out_actions(&mut self, now: u64, answers: &mpsc::Sender<Answer>) {
        loop {
            let action = self.ownership.lock().poll_action(now);
            let Some(action) = action else { return };
            if let Action::Drop { partition } = action {
                self.host.forget(partition);
                continue;
            }
            let (store, host, node) = (
                self.store.clone(),
                self.host.clone(),
                self.config.node.clone(),
            );
            let ttl_ms = self.config.timing.ttl_ms();
            let answers = answers.clone();
            self.tasks.spawn(async move {
                if let Some(answer) = carry_out(action, &store, &*host, &node, ttl_ms).await {
                    // Closed only if the driver is gone: nobody to tell.
                    let _ = answers.send(answer).await;
                }
            });
        }
    }

    fn spawn_heartbeat(&mut self, answers: mpsc::Sender<Answer>) {
        self.heartbeat_in_flight = true;
        let (store, node, url) = (
            self.store.clone(),
            self.config.node.clone(),
            self.config.advertise_url.clone(),
        );
        let ttl_ms = self.config.node_ttl_ms;
        self.tasks.spawn(async move {
            let answer = match store.heartbeat(&node, &url, ttl_ms).await {
                Ok(members) => Answer::Members(members),
                Err(error) => {
                    tracing::warn!(%error, "cluster heartbeat failed");
                    Answer::HeartbeatFailed
                }
            };
            let _ = answers.send(answer).await;
        });
    }
}

/// Carries out one action against the store or the host; its answer
/// (none for a drop, which the driver does in place).
async fn carry_out<H: PartitionHost>(
    action: Action,
    store: &ClusterStore,
    host: &H,
    node: &NodeId,
    ttl_ms: u64,
) -> Option<Answer> {
    Some(match action {
        Action::Acquire {
            partition,
            sent_at_ms,
        } => match store.acquire(partition, node, ttl_ms).await {
            Ok(Acquired::Granted(epoch)) => Answer::Acquired(partition, epoch, sent_at_ms),
            Ok(Acquired::HeldBy(_) | Acquired::NotReplicated) => Answer::Refused(partition),
            Err(error) => {
                tracing::warn!(%error, %partition, "lease acquisition failed");
                Answer::Refused(partition)
            }
        },
        Action::Renew {
            partition,
            epoch,
            sent_at_ms,
        } => match store.renew(partition, node, epoch, ttl_ms).await {
            Ok(Renewed::Yes) => Answer::Renewed(partition, epoch, sent_at_ms),
            Ok(Renewed::Lost) => Answer::Lost(partition, epoch),
            // Only the master has it: the deadline stays where the last
            // confirmed renewal put it.
            Ok(Renewed::Unconfirmed) => Answer::RenewFailed(partition),
            Err(error) => {
                tracing::warn!(%error, %partition, "lease renewal failed");
                Answer::RenewFailed(partition)
            }
        },
        Action::Load { partition, epoch } => {
            match tokio::time::timeout(LOAD_TIMEOUT, host.load(partition, epoch)).await {
                Ok(Ok(())) => Answer::Loaded(partition, epoch),
                Ok(Err(error)) => {
                    tracing::warn!(%error, %partition, "partition load failed; the lease is given up");
                    Answer::LoadFailed(partition, epoch)
                }
                Err(_elapsed) => {
                    tracing::warn!(%partition, "partition load timed out; the lease is given up");
                    Answer::LoadFailed(partition, epoch)
                }
            }
        }
        Action::HandOver { partition, epoch } => {
            hand_over(partition, epoch, store, host, node).await
        }
        Action::Drop { .. } => return None,
    })
}

/// The flush before a handover, then the release of the lease.
async fn hand_over<H: PartitionHost>(
    partition: PartitionId,
    epoch: Epoch,
    store: &ClusterStore,
    host: &H,
    node: &NodeId,
) -> Answer {
    let flushed = tokio::time::timeout(HANDOVER_FLUSH_TIMEOUT, host.flush(partition, epoch)).await;
    match flushed {
        Ok(Ok(())) => {}
        // Another node has it already: stop serving, release nothing.
        Ok(Err(FlushError::Fenced)) => return Answer::Lost(partition, epoch),
        Ok(Err(FlushError::Failed(error))) => {
            tracing::warn!(%error, %partition, "flush before handover failed; serving on");
            return Answer::HandOverFailed(partition, epoch);
        }
        Err(_elapsed) => {
            tracing::warn!(%partition, "flush before handover timed out; serving on");
            return Answer::HandOverFailed(partition, epoch);
        }
    }
    if let Err(error) = store.release(partition, node, epoch).await {
        tracing::warn!(%error, %partition, "lease release failed; it will lapse");
    }
    Answer::Released(partition, epoch)
}
