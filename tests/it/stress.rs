//! Threaded stress: many threads reserving, committing, releasing, selling,
//! returning, receiving and expiring at once, on one hot SKU and on many SKUs. At the
//! end every unit is accounted for (initial + returns + receipts - commits - sales ==
//! on hand), nothing was oversold, and the invariants hold; a monitor thread
//! also checks the invariants on consistent cuts while the load runs. And a
//! POS caller's location check racing a transfer of the line it acts on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use omnistock::ledger::*;

const WORKERS: usize = 4;
const T0: i64 = 1_700_000_000_000;

/// A tiny deterministic generator per thread (no shared RNG state).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn location(code: &str) -> Location {
    Location {
        code: LocationCode::new(code).expect("code"),
        kind: LocationKind::Store,
        name: code.into(),
        coords: None,
        pickup: None,
        ship_from_store: false,
    }
}

struct World {
    ledger: Ledger,
    skus: Vec<Sku>,
    locations: Vec<LocationCode>,
    /// Units that left (commits, sales) or came back (returns), per position.
    shipped: Vec<AtomicU64>,
    added: Vec<AtomicU64>,
    clock_ms: AtomicI64,
    granted: AtomicU64,
    refused: AtomicU64,
}

impl World {
    fn new(sku_count: usize, location_count: usize, units: u32) -> Arc<World> {
        let ledger = Ledger::new(LedgerConfig::default());
        let locations: Vec<_> = (0..location_count)
            .map(|i| LocationCode::new(&format!("L{i}")).expect("code"))
            .collect();
        for code in &locations {
            ledger
                .put_location(location(code.as_str()))
                .expect("location");
        }
        let skus: Vec<_> = (0..sku_count)
            .map(|i| Sku::new(&format!("SKU-{i}")).expect("sku"))
            .collect();
        for sku in &skus {
            for code in &locations {
                let count = CountRequest {
                    sku: sku.clone(),
                    location: code.clone(),
                    on_hand: Qty(units),
                    safety_stock: None,
                    expected_version: None,
                    as_of: None,
                    reference: None,
                };
                ledger.count(&count, TimestampMs(T0), None).expect("count");
            }
        }
        let positions = sku_count * location_count;
        Arc::new(World {
            ledger,
            skus,
            locations,
            shipped: (0..positions).map(|_| AtomicU64::new(0)).collect(),
            added: (0..positions).map(|_| AtomicU64::new(0)).collect(),
            clock_ms: AtomicI64::new(T0),
            granted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn now(&self) -> TimestampMs {
        TimestampMs(self.clock_ms.load(Ordering::Relaxed))
    }

    fn index(&self, sku: usize, loc: usize) -> usize {
        sku * self.locations.len() + loc
    }

    fn line(&self, sku: usize, loc: usize, qty: u32) -> Line {
        Line {
            sku: self.skus[sku].clone(),
            location: self.locations[loc].clone(),
            qty: Qty(qty),
        }
    }

    fn index_of(&self, sku: &Sku, location: &LocationCode) -> usize {
        let s = self.skus.iter().position(|x| x == sku).expect("known sku");
        let l = self
            .locations
            .iter()
            .position(|x| x == location)
            .expect("known location");
        self.index(s, l)
    }

    fn worker(&self, seed: u64, iterations: usize, max_lines: u64) {
        let mut rng = Rng(seed);
        let mut open: Vec<ReservationId> = Vec::new();
        for i in 0..iterations {
            let lines: Vec<Line> = (0..1 + rng.below(max_lines))
                .map(|_| {
                    self.line(
                        rng.below(self.skus.len() as u64) as usize,
                        rng.below(self.locations.len() as u64) as usize,
                        1 + rng.below(3) as u32,
                    )
                })
                .collect();
            match rng.below(10) {
                // Sales straight off the shelf.
                0 => {
                    if let Ok(views) = self.ledger.sell(
                        &SaleRequest {
                            channel: Channel::Pos,
                            lines: lines.clone(),
                            reference: None,
                        },
                        self.now(),
                        None,
                    ) {
                        for view in views {
                            let sold: u32 = lines
                                .iter()
                                .filter(|l| l.sku == view.sku && l.location == view.location)
                                .map(|l| l.qty.0)
                                .sum();
                            self.shipped[self.index_of(&view.sku, &view.location)]
                                .fetch_add(u64::from(sold), Ordering::Relaxed);
                        }
                    }
                }
                // Returns and deliveries put units back on the shelf.
                1 | 2 => {
                    let line = lines[0].clone();
                    let index = self.index_of(&line.sku, &line.location);
                    let applied = if i % 2 == 0 {
                        let request = ReturnRequest {
                            channel: Channel::Pos,
                            line: line.clone(),
                            sellable: true,
                            reason: None,
                            reference: None,
                        };
                        self.ledger.return_units(&request, self.now(), None)
                    } else {
                        self.ledger.receive(
                            &ReceiptRequest {
                                line: line.clone(),
                                reference: None,
                            },
                            self.now(),
                            None,
                        )
                    };
                    applied.expect("returns and receipts always apply");
                    self.added[index].fetch_add(u64::from(line.qty.0), Ordering::Relaxed);
                }
                _ => {
                    let ttl_ms = 1_000 + rng.below(4_000);
                    match self.ledger.reserve(
                        &ReserveRequest {
                            caps: Vec::new(),
                            channel: Channel::Web,
                            lines,
                            ttl_ms,
                        },
                        self.now(),
                        None,
                    ) {
                        Ok(r) => {
                            self.granted.fetch_add(1, Ordering::Relaxed);
                            open.push(r.id);
                        }
                        Err(Refusal::InsufficientStock { .. }) => {
                            self.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => panic!("unexpected refusal {other:?}"),
                    }
                }
            }
            // Resolve one open reservation: commit (full or partial), release, or leave it to expire.
            if open.len() > 8 {
                let id = open.swap_remove(rng.below(open.len() as u64) as usize);
                let outcome = match rng.below(4) {
                    0 => self.ledger.commit(
                        &CommitRequest { id, lines: None },
                        Acting::Any,
                        self.now(),
                        None,
                    ),
                    1 => match self.ledger.reservation(id) {
                        Some(view) => {
                            let first = &view.lines[0];
                            let partial = Line {
                                sku: first.sku.clone(),
                                location: first.location.clone(),
                                qty: Qty(first.qty.0 / 2),
                            };
                            self.ledger.commit(
                                &CommitRequest {
                                    id,
                                    lines: Some(vec![partial]),
                                },
                                Acting::Any,
                                self.now(),
                                None,
                            )
                        }
                        None => continue,
                    },
                    2 => self.ledger.release(id, Acting::Any, self.now(), None),
                    _ => continue,
                };
                match outcome {
                    Ok(view) if view.state == ReservationState::Committed => {
                        for line in &view.lines {
                            self.shipped[self.index_of(&line.sku, &line.location)]
                                .fetch_add(u64::from(line.committed.0), Ordering::Relaxed);
                        }
                    }
                    Ok(_)
                    | Err(Refusal::ReservationNotHeld {
                        state: ReservationState::Expired,
                        ..
                    }) => {}
                    Err(other) => panic!("unexpected refusal {other:?}"),
                }
            }
        }
    }
}

fn run(world: Arc<World>, iterations: usize, max_lines: u64, initial_units: u32) {
    let done = Arc::new(AtomicBool::new(false));
    let cuts_checked = Arc::new(AtomicU64::new(0));
    let expired = Arc::new(AtomicU64::new(0));
    thread::scope(|scope| {
        // The clock: advances 1 ms per step and expires what is due.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let now = TimestampMs(world.clock_ms.fetch_add(1, Ordering::Relaxed) + 1);
                expired.fetch_add(
                    world.ledger.expire_due(now, 10_000) as u64,
                    Ordering::Relaxed,
                );
                thread::yield_now();
            }
        });
        // The monitor: invariants on consistent cuts while load runs.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let report = world
                    .ledger
                    .check_invariants()
                    .expect("invariants hold mid-flight");
                assert!(report.reserved <= report.on_hand, "oversold: {report:?}");
                cuts_checked.fetch_add(1, Ordering::Relaxed);
                thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        // Stops the helper threads even if a worker panics, so a failure
        // fails the test instead of hanging it.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&done);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let world = &world;
                scope.spawn(move || {
                    world.worker(0x9E37_79B9 + w as u64 * 7919, iterations, max_lines)
                })
            })
            .collect();
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        done.store(true, Ordering::Relaxed);
        for result in results {
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    });

    // Everything still held expires; then every unit must be accounted for.
    let later = TimestampMs(world.clock_ms.load(Ordering::Relaxed) + 10_000);
    expired.fetch_add(
        world.ledger.expire_due(later, usize::MAX) as u64,
        Ordering::Relaxed,
    );
    let report = world
        .ledger
        .check_invariants()
        .expect("invariants hold at the end");
    assert_eq!(report.reserved, 0, "nothing held after everything expired");
    assert_eq!(report.held_reservations, 0);
    for (s, sku) in world.skus.iter().enumerate() {
        for (l, code) in world.locations.iter().enumerate() {
            let index = world.index(s, l);
            let shipped = world.shipped[index].load(Ordering::Relaxed);
            let added = world.added[index].load(Ordering::Relaxed);
            let on_hand = world
                .ledger
                .position(sku, code, None, later)
                .expect("position")
                .on_hand
                .0;
            assert_eq!(
                u64::from(initial_units) + added,
                shipped + u64::from(on_hand),
                "units of {sku} at {code}: initial {initial_units} + added {added} != shipped {shipped} + on hand {on_hand}"
            );
        }
    }
    let granted = world.granted.load(Ordering::Relaxed);
    let refused = world.refused.load(Ordering::Relaxed);
    assert!(
        granted > 0 && refused > 0,
        "the load must both grant and refuse (granted {granted}, refused {refused})"
    );
    assert!(cuts_checked.load(Ordering::Relaxed) > 0, "the monitor ran");
    eprintln!(
        "granted {granted}, refused {refused}, expired {}, invariant cuts checked {}",
        expired.load(Ordering::Relaxed),
        cuts_checked.load(Ordering::Relaxed)
    );
}

#[test]
fn hot_sku_from_many_threads_never_oversells() {
    let _serial = crate::support::serial_blocking();
    // One position, far more demand than stock.
    run(World::new(1, 1, 500), 50_000, 1, 500);
}

#[test]
fn many_skus_multi_line_carts_conserve_units() {
    let _serial = crate::support::serial_blocking();
    run(World::new(200, 4, 20), 50_000, 5, 20);
}

/// What a POS caller does to a reservation at its store.
#[derive(Clone, Copy, Debug)]
enum PosAct {
    Commit,
    Release,
    Extend,
}

/// The POS caller's request: one ledger operation, which checks the
/// caller's stores under the reservation's lock, in the same step as it acts.
fn pos_acts(
    ledger: &Ledger,
    act: PosAct,
    id: ReservationId,
    stores: &[LocationCode],
) -> Result<ReservationView, Refusal> {
    let acting = Acting::AtLocations(stores);
    let now = TimestampMs(T0);
    match act {
        PosAct::Commit => ledger.commit(&CommitRequest { id, lines: None }, acting, now, None),
        PosAct::Release => ledger.release(id, acting, now, None),
        PosAct::Extend => ledger.extend(id, 120_000, acting, now, None),
    }
}

/// Spins (yielding now and then) until `done`; false if `stop` came first.
fn spin_until(done: impl Fn() -> bool, stop: &AtomicBool) -> bool {
    let mut spins = 0u64;
    while !done() {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        spins += 1;
        if spins.is_multiple_of(1_024) {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    true
}

/// Sets `stop` when dropped, so a thread that panics never leaves the other
/// spinning.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A POS caller at store A commits, releases or extends a one-line
/// reservation at A while another caller transfers that line to store B,
/// both starting within a few microseconds of each other (both threads
/// spin, never sleep, between rounds; offsets vary round by round, so
/// each side goes first, and often lands in the midst of the other).
/// Whichever lands first, the POS caller must never act on a line that is
/// at B: either it acts while the line is at A (and the transfer finds the
/// reservation resolved, or moves it afterwards), or the transfer moves
/// the line first and the POS caller is refused at B. Runs until each
/// order was seen `EACH` times (or a round or time budget is spent).
/// Checking the reservation with one read and acting with a second call
/// (as the HTTP layer once did) lets the transfer land in between, and
/// this test fails.
#[test]
fn a_pos_caller_never_acts_on_a_line_a_concurrent_transfer_moved_away() {
    let _serial = crate::support::serial_blocking();
    const EACH: u64 = 2_000;
    const MAX_ROUNDS: u64 = 100_000;
    let budget = Duration::from_secs(5);
    let ledger = Ledger::new(LedgerConfig::default());
    let (a, b) = (
        LocationCode::new("A").expect("code"),
        LocationCode::new("B").expect("code"),
    );
    let sku = Sku::new("SKU-1").expect("sku");
    for code in [&a, &b] {
        ledger
            .put_location(location(code.as_str()))
            .expect("location");
        let count = CountRequest {
            sku: sku.clone(),
            location: code.clone(),
            on_hand: Qty(MAX_ROUNDS as u32),
            safety_stock: None,
            expected_version: None,
            as_of: None,
            reference: None,
        };
        ledger.count(&count, TimestampMs(T0), None).expect("count");
    }
    let now = TimestampMs(T0);
    let act_of = |round: u64| match round % 3 {
        0 => PosAct::Commit,
        1 => PosAct::Release,
        _ => PosAct::Extend,
    };
    // Round `n` starts when `go` reaches `n` (its reservation in `target`)
    // and ends when `answered` does (the POS caller's outcome in `answer`).
    let go = AtomicU64::new(0);
    let target = AtomicU64::new(0);
    let answered = AtomicU64::new(0);
    let answer = std::sync::Mutex::new(None);
    let stop = AtomicBool::new(false);
    // Up to 4 µs on each side (an operation takes about one).
    let pause = |ns: u64| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_nanos(ns) {
            std::hint::spin_loop();
        }
    };
    let (mut rounds, mut pos_first, mut transfer_first) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    thread::scope(|scope| {
        scope.spawn(|| {
            let _stop = StopOnDrop(&stop);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let stores = [a.clone()];
            for round in 1.. {
                if !spin_until(|| go.load(Ordering::Acquire) >= round, &stop) {
                    return;
                }
                let id = ReservationId(target.load(Ordering::Acquire));
                pause(rng.below(4_000));
                let outcome = pos_acts(&ledger, act_of(round), id, &stores);
                *answer.lock().expect("answer") = Some(outcome);
                answered.store(round, Ordering::Release);
            }
        });
        let _stop = StopOnDrop(&stop);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        while rounds < MAX_ROUNDS
            && (pos_first < EACH || transfer_first < EACH)
            && started.elapsed() < budget
        {
            rounds += 1;
            let round = rounds;
            let held = ledger
                .reserve(
                    &ReserveRequest {
                        caps: Vec::new(),
                        channel: Channel::Pos,
                        lines: vec![Line {
                            sku: sku.clone(),
                            location: a.clone(),
                            qty: Qty(1),
                        }],
                        ttl_ms: 60_000,
                    },
                    now,
                    None,
                )
                .expect("units at A");
            target.store(held.id.0, Ordering::Release);
            go.store(round, Ordering::Release);
            pause(rng.below(4_000));
            let transfer = TransferRequest {
                id: held.id,
                sku: sku.clone(),
                from: a.clone(),
                to: b.clone(),
                qty: None,
            };
            let moved = ledger.transfer(&transfer, Acting::Any, now, None);
            assert!(
                spin_until(|| answered.load(Ordering::Acquire) >= round, &stop),
                "the POS caller stopped"
            );
            let acted = answer.lock().expect("answer").take().expect("answered");
            let act = act_of(round);
            match (&acted, &moved) {
                (Ok(view), _) => {
                    assert!(
                        view.lines.iter().all(|line| line.location == a),
                        "round {round}: the POS caller at A could {act:?} a reservation \
                         at {:?} (transfer: {moved:?})",
                        view.lines
                            .iter()
                            .map(|l| l.location.as_str())
                            .collect::<Vec<_>>()
                    );
                    match act {
                        PosAct::Extend => {}
                        PosAct::Commit | PosAct::Release => assert!(
                            matches!(moved, Err(Refusal::ReservationNotHeld { .. })),
                            "round {round}: {act:?} went first, so the transfer finds it resolved: {moved:?}"
                        ),
                    }
                    pos_first += 1;
                }
                (Err(Refusal::LocationNotAllowed { location }), Ok(_)) if *location == b => {
                    transfer_first += 1;
                }
                _ => panic!("round {round}: {act:?} {acted:?}, transfer {moved:?}"),
            }
            // Whatever is still held goes back, so each round starts alike.
            let _ = ledger.release(held.id, Acting::Any, now, None);
        }
    });
    ledger.check_invariants().expect("invariants hold");
    eprintln!(
        "{rounds} rounds in {:?}: the POS caller acted first {pos_first} times, the transfer {transfer_first} times",
        started.elapsed()
    );
}
