//! The ownership state machine, step by step and in a simulated cluster
//! whose lease table behaves as the Redis scripts do.

use std::collections::BTreeMap;

use super::*;

const T: LeaseTiming = LeaseTiming::DEFAULT;

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("id")
}

fn p(index: u16) -> PartitionId {
    Partitions::new(4).expect("count").get(index).expect("p")
}

/// A node alone in its cluster, of 4 partitions.
fn four(me: &str) -> Ownership {
    let mut o = Ownership::new(node(me), Partitions::new(4).expect("count"), T);
    o.handle_members(vec![node(me)]);
    o
}

fn drain(o: &mut Ownership, now: u64) -> Vec<Action> {
    std::iter::from_fn(|| o.poll_action(now)).collect()
}

/// Acquires, loads and serves every partition a lone node is given.
fn serve_all(o: &mut Ownership, now: u64) {
    for action in drain(o, now) {
        let Action::Acquire {
            partition,
            sent_at_ms,
        } = action
        else {
            panic!("{action:?}")
        };
        o.handle_acquired(partition, Epoch(1), sent_at_ms);
    }
    for action in drain(o, now) {
        let Action::Load { partition, epoch } = action else {
            panic!("{action:?}")
        };
        o.handle_loaded(partition, epoch);
    }
}

#[test]
fn a_lone_node_acquires_loads_then_serves_everything() {
    let mut o = four("a");
    assert_eq!(o.poll_timeout(), Some(0));
    let first = drain(&mut o, 0);
    assert_eq!(first.len(), 4);
    o.handle_acquired(p(0), Epoch(9), 0);
    assert_eq!(o.serving(p(0), 0), None, "not served before it is loaded");
    assert_eq!(
        o.poll_action(0),
        Some(Action::Load {
            partition: p(0),
            epoch: Epoch(9)
        })
    );
    o.handle_loaded(p(0), Epoch(9));
    assert_eq!(o.serving(p(0), 0), Some(Epoch(9)));
    assert_eq!(o.served(0), vec![p(0)]);
}

#[test]
fn renewals_come_one_at_a_time_and_keep_the_lease() {
    let mut o = four("a");
    serve_all(&mut o, 0);
    assert_eq!(o.poll_timeout(), Some(1_000));
    let renewals = drain(&mut o, 1_000);
    assert_eq!(renewals.len(), 4);
    assert!(
        drain(&mut o, 1_100).is_empty(),
        "no second renewal while one is in flight"
    );
    // With renewals in flight, the next thing to watch is the deadline.
    assert_eq!(o.poll_timeout(), Some(2_500));
    for partition in [p(0), p(1), p(2), p(3)] {
        o.handle_renewed(partition, Epoch(1), 1_000);
    }
    assert_eq!(o.serving(p(0), 3_499), Some(Epoch(1)));
}

#[test]
fn a_lease_not_renewed_is_dropped_at_its_local_deadline() {
    let mut o = four("a");
    serve_all(&mut o, 0);
    drain(&mut o, 1_000);
    for partition in [p(0), p(1), p(2), p(3)] {
        o.handle_renew_failed(partition, 1_000);
    }
    // A failed renewal is tried again, not at once (no busy loop on an
    // error answered immediately), but after the retry pause.
    assert!(drain(&mut o, 1_199).is_empty());
    assert_eq!(o.poll_timeout(), Some(1_200));
    assert_eq!(drain(&mut o, 1_200).len(), 4, "renewals again");
    for partition in [p(0), p(1), p(2), p(3)] {
        o.handle_renew_failed(partition, 1_200);
    }
    assert_eq!(o.serving(p(2), 2_499), Some(Epoch(1)));
    assert_eq!(o.serving(p(2), 2_500), None, "fail closed at the deadline");
    let actions = drain(&mut o, 2_500);
    let drops = actions
        .iter()
        .filter(|a| matches!(a, Action::Drop { .. }))
        .count();
    assert_eq!(drops, 4, "{actions:?}");
}

#[test]
fn a_refused_renewal_stops_serving_at_once() {
    let mut o = four("a");
    serve_all(&mut o, 0);
    drain(&mut o, 1_000);
    o.handle_lost(p(1), Epoch(1));
    assert_eq!(o.serving(p(1), 1_001), None);
    assert_eq!(o.poll_action(1_001), Some(Action::Drop { partition: p(1) }));
}

#[test]
fn a_late_load_of_an_earlier_lease_is_ignored() {
    let mut o = four("a");
    drain(&mut o, 0);
    o.handle_acquired(p(0), Epoch(1), 0);
    assert!(matches!(o.poll_action(0), Some(Action::Load { .. })));
    // The load is slow; the lease lapses and is taken again under epoch 2.
    assert_eq!(o.poll_action(2_500), Some(Action::Drop { partition: p(0) }));
    assert_eq!(o.poll_action(2_500), None, "asked again only after a pause");
    assert!(matches!(o.poll_action(2_700), Some(Action::Acquire { .. })));
    o.handle_acquired(p(0), Epoch(2), 2_700);
    assert!(matches!(o.poll_action(2_700), Some(Action::Load { .. })));
    o.handle_loaded(p(0), Epoch(1));
    assert_eq!(
        o.serving(p(0), 2_800),
        None,
        "the first load does not count"
    );
    o.handle_loaded(p(0), Epoch(2));
    assert_eq!(o.serving(p(0), 2_800), Some(Epoch(2)));
}

#[test]
fn nothing_is_acquired_before_the_first_membership() {
    let mut o = Ownership::new(node("a"), Partitions::new(4).expect("count"), T);
    assert_eq!(o.poll_action(0), None);
    assert_eq!(o.poll_timeout(), None);
    o.handle_members(vec![node("a")]);
    assert!(matches!(o.poll_action(0), Some(Action::Acquire { .. })));
}

#[test]
fn a_failed_load_gives_the_lease_up_and_a_failed_handover_serves_on() {
    let mut o = four("a");
    drain(&mut o, 0);
    o.handle_acquired(p(0), Epoch(1), 0);
    assert!(matches!(o.poll_action(0), Some(Action::Load { .. })));
    o.handle_load_failed(p(0), Epoch(1));
    assert_eq!(o.poll_action(1), Some(Action::Drop { partition: p(0) }));

    let mut o = four("a");
    serve_all(&mut o, 0);
    o.handle_leaving();
    let Some(Action::HandOver { partition, epoch }) = o.poll_action(5) else {
        panic!("a handover")
    };
    o.handle_handover_failed(partition, epoch, 6);
    assert_eq!(o.serving(partition, 6), Some(epoch), "still the owner");
    let at_once = drain(&mut o, 6);
    assert!(
        !at_once.contains(&Action::HandOver { partition, epoch }),
        "not retried at once"
    );
    assert_eq!(o.poll_timeout(), Some(206));
    assert_eq!(
        o.poll_action(206),
        Some(Action::HandOver { partition, epoch })
    );
}

#[test]
fn a_joining_node_gets_its_partitions_handed_over() {
    let mut a = four("a");
    serve_all(&mut a, 0);
    a.handle_members(vec![node("a"), node("b")]);
    let handovers: Vec<PartitionId> = drain(&mut a, 10)
        .into_iter()
        .map(|action| match action {
            Action::HandOver { partition, .. } => partition,
            other => panic!("{other:?}"),
        })
        .collect();
    let assignment = crate::assign(Partitions::new(4).expect("4"), &[node("a"), node("b")]);
    for partition in &handovers {
        assert_eq!(assignment[usize::from(partition.index())], Some(node("b")));
        assert_eq!(
            a.serving(*partition, 10),
            None,
            "not served while handed over"
        );
        a.handle_released(*partition, Epoch(1));
        assert_eq!(
            a.poll_action(10),
            Some(Action::Drop {
                partition: *partition
            })
        );
    }
}

#[test]
fn a_leaving_node_hands_everything_over_and_ends_empty() {
    let mut o = four("a");
    serve_all(&mut o, 0);
    o.handle_leaving();
    for action in drain(&mut o, 5) {
        let Action::HandOver { partition, epoch } = action else {
            panic!("{action:?}")
        };
        o.handle_released(partition, epoch);
    }
    assert_eq!(drain(&mut o, 5).len(), 4);
    assert!(o.is_empty());
    assert_eq!(o.poll_timeout(), None, "nothing more to do");
}

/// The lease table as the Redis scripts keep it.
#[derive(Default)]
struct Leases {
    /// partition -> (holder, expires_at_ms), and the epoch counter.
    held: BTreeMap<u16, (String, u64)>,
    epochs: BTreeMap<u16, u64>,
}

impl Leases {
    fn acquire(&mut self, p: PartitionId, me: &str, now: u64) -> Option<Epoch> {
        let index = p.index();
        if let Some((holder, expires)) = self.held.get(&index)
            && *expires > now
            && holder != me
        {
            return None;
        }
        let epoch = self.epochs.entry(index).or_default();
        *epoch += 1;
        self.held.insert(index, (me.to_owned(), now + T.ttl_ms()));
        Some(Epoch(*epoch))
    }

    fn renew(&mut self, p: PartitionId, me: &str, epoch: Epoch, now: u64) -> bool {
        let index = p.index();
        let current = self.epochs.get(&index).copied() == Some(epoch.0);
        match self.held.get_mut(&index) {
            Some((holder, expires)) if holder == me && *expires > now && current => {
                *expires = now + T.ttl_ms();
                true
            }
            _ => false,
        }
    }

    fn release(&mut self, p: PartitionId, me: &str, epoch: Epoch) {
        let current = self.epochs.get(&p.index()).copied() == Some(epoch.0);
        if current && self.held.get(&p.index()).is_some_and(|(h, _)| h == me) {
            self.held.remove(&p.index());
        }
    }
}

/// xorshift64: the simulation's only randomness, seeded.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Three nodes on a simulated clock, talking to a lease table that behaves
/// as the Redis scripts do, through a network that delays answers (Redis
/// runs a request up to 200 ms after it is sent, the answer takes up to
/// 300 ms more), loses some (the request may have run), and runs some
/// acquisitions twice (a client re-send). Nodes pause (they send nothing,
/// and the others see them die) and come back; loads and flushes sometimes
/// fail. Whatever happens, no partition is ever served by two nodes, a node
/// serves only under the partition's current epoch, and every partition
/// ends up served.
#[test]
fn no_partition_is_ever_served_twice_in_a_simulated_cluster() {
    for seed in 1..=40u64 {
        simulate(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
}

/// A request on its way: who sent it, what, when Redis runs it, and when
/// its answer arrives (`None`: lost; the node sees a failure after 500 ms).
struct InFlight {
    node: usize,
    action: Action,
    runs_at: u64,
    answer_at: Option<u64>,
    ran: Option<Ran>,
}

/// What the lease table answered.
#[derive(Clone, Copy)]
enum Ran {
    Acquired(Option<Epoch>),
    Renewed(bool),
    Done,
    Failed,
}

struct Sim {
    rng: u64,
    leases: Leases,
    flight: Vec<InFlight>,
    /// The last 10 s: no pauses, losses or failures, so everything settles.
    calm: bool,
}

impl Sim {
    fn below(&mut self, n: u64) -> u64 {
        next(&mut self.rng) % n
    }

    /// True one time in `n`, never once calm.
    fn fails(&mut self, n: u64) -> bool {
        self.below(n) == 0 && !self.calm
    }

    fn send(&mut self, node: usize, action: Action, now: u64) {
        let runs_at = now + self.below(200);
        let answer_at = (!self.fails(10)).then(|| runs_at + self.below(300));
        self.flight.push(InFlight {
            node,
            action,
            runs_at,
            answer_at,
            ran: None,
        });
    }

    fn run(&mut self, index: usize, now: u64) {
        let me = format!("n{}", self.flight[index].node + 1);
        let ran = match self.flight[index].action.clone() {
            Action::Acquire { partition, .. } => {
                let mut epoch = self.leases.acquire(partition, &me, now);
                if epoch.is_some() && self.below(20) == 0 {
                    // Re-sent by the client: the answer is the second run's.
                    epoch = self.leases.acquire(partition, &me, now);
                }
                Ran::Acquired(epoch)
            }
            Action::Renew {
                partition, epoch, ..
            } => Ran::Renewed(self.leases.renew(partition, &me, epoch, now)),
            Action::HandOver { partition, epoch } => {
                if self.fails(10) {
                    Ran::Failed // the flush failed: nothing released
                } else {
                    self.leases.release(partition, &me, epoch);
                    Ran::Done
                }
            }
            Action::Load { .. } if self.fails(10) => Ran::Failed,
            Action::Load { .. } | Action::Drop { .. } => Ran::Done,
        };
        self.flight[index].ran = Some(ran);
    }
}

/// Feeds an answer (or, for a lost one, the failure the node would see)
/// back into the node.
fn deliver(o: &mut Ownership, action: &Action, ran: Option<Ran>, now: u64) {
    match (action.clone(), ran) {
        (
            Action::Acquire {
                partition,
                sent_at_ms,
            },
            Some(Ran::Acquired(Some(epoch))),
        ) => o.handle_acquired(partition, epoch, sent_at_ms),
        (Action::Acquire { partition, .. }, _) => o.handle_refused(partition, now),
        (
            Action::Renew {
                partition,
                epoch,
                sent_at_ms,
            },
            Some(Ran::Renewed(true)),
        ) => o.handle_renewed(partition, epoch, sent_at_ms),
        (
            Action::Renew {
                partition, epoch, ..
            },
            Some(Ran::Renewed(false)),
        ) => o.handle_lost(partition, epoch),
        (Action::Renew { partition, .. }, _) => o.handle_renew_failed(partition, now),
        (Action::HandOver { partition, epoch }, Some(Ran::Failed)) => {
            o.handle_handover_failed(partition, epoch, now)
        }
        // Once a release may have run, the node never serves again.
        (Action::HandOver { partition, epoch }, _) => o.handle_released(partition, epoch),
        (Action::Load { partition, epoch }, Some(Ran::Done)) => o.handle_loaded(partition, epoch),
        (Action::Load { partition, epoch }, _) => o.handle_load_failed(partition, epoch),
        (Action::Drop { .. }, _) => {}
    }
}

fn simulate(rng: u64) {
    let names = ["n1", "n2", "n3"];
    let parts = Partitions::new(16).expect("count");
    let mut nodes: Vec<Ownership> = names
        .iter()
        .map(|n| Ownership::new(node(n), parts, T))
        .collect();
    let mut sim = Sim {
        rng,
        leases: Leases::default(),
        flight: Vec::new(),
        calm: false,
    };
    let mut paused_until = [0u64; 3];
    let mut heartbeat_at = [0u64; 3];
    for now in (0..60_000u64).step_by(10) {
        sim.calm = now >= 50_000;
        if sim.fails(2_000) {
            let victim = sim.below(3) as usize;
            paused_until[victim] = now + 500 + sim.below(4_000);
        }
        for i in 0..3 {
            if paused_until[i] <= now {
                heartbeat_at[i] = now;
            }
        }
        let live: Vec<NodeId> = (0..3)
            .filter(|&i| heartbeat_at[i] + 2_000 > now)
            .map(|i| node(names[i]))
            .collect();
        for index in 0..sim.flight.len() {
            if sim.flight[index].ran.is_none() && sim.flight[index].runs_at <= now {
                sim.run(index, now);
            }
        }
        let mut waiting = Vec::new();
        for request in std::mem::take(&mut sim.flight) {
            let due = request.answer_at.unwrap_or(request.runs_at + 500);
            if due > now || request.ran.is_none() || paused_until[request.node] > now {
                waiting.push(request);
                continue;
            }
            let ran = request.answer_at.and(request.ran);
            deliver(&mut nodes[request.node], &request.action, ran, now);
        }
        sim.flight = waiting;
        for (i, o) in nodes.iter_mut().enumerate() {
            if paused_until[i] > now {
                continue;
            }
            o.handle_members(live.clone());
            while let Some(action) = o.poll_action(now) {
                if !matches!(action, Action::Drop { .. }) {
                    sim.send(i, action, now);
                }
            }
        }
        check(&nodes, &sim.leases, parts, now);
    }
    for partition in parts.all() {
        assert!(
            nodes.iter().any(|o| o.serving(partition, 59_990).is_some()),
            "{partition} ends up served: {:?}, lease {:?}",
            nodes
                .iter()
                .map(|o| o.slots[usize::from(partition.index())])
                .collect::<Vec<_>>(),
            sim.leases.held.get(&partition.index()),
        );
    }
}

/// At most one node serves each partition, under its current epoch.
fn check(nodes: &[Ownership], leases: &Leases, parts: Partitions, now: u64) {
    for partition in parts.all() {
        let serving: Vec<Epoch> = nodes
            .iter()
            .filter_map(|o| o.serving(partition, now))
            .collect();
        assert!(
            serving.len() <= 1,
            "{partition} served by {} nodes at {now} ms",
            serving.len()
        );
        let current = leases.epochs.get(&partition.index()).copied();
        if let Some(epoch) = serving.first() {
            assert_eq!(
                Some(epoch.0),
                current,
                "{partition} served under a stale epoch at {now} ms"
            );
        }
    }
}
