//! Threaded stress: many threads reserving, committing, releasing, selling,
//! returning, receiving and expiring at once, on one hot SKU and on many SKUs. At the
//! end every unit is accounted for (initial + returns + receipts - commits - sales ==
//! on hand), nothing was oversold, and the invariants hold; a monitor thread
//! also checks the invariants on consistent cuts while the load runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread;

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
                    0 => self
                        .ledger
                        .commit(&CommitRequest { id, lines: None }, self.now(), None),
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
                                self.now(),
                                None,
                            )
                        }
                        None => continue,
                    },
                    2 => self.ledger.release(id, self.now(), None),
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
    // One position, far more demand than stock.
    run(World::new(1, 1, 500), 50_000, 1, 500);
}

#[test]
fn many_skus_multi_line_carts_conserve_units() {
    run(World::new(200, 4, 20), 50_000, 5, 20);
}
