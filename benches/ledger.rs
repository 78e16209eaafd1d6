//! Ledger benchmarks (criterion). Run: `cargo bench --bench ledger`.
//! Figures and the machine they were measured on are in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use omnistock::ledger::*;

const T0: i64 = 1_700_000_000_000;

fn code(s: &str) -> LocationCode {
    LocationCode::new(s).expect("valid location code")
}

fn sku(i: usize) -> Sku {
    Sku::new(&format!("SKU-{i:07}")).expect("valid sku")
}

/// A ledger with `locations` stores and `skus` SKUs stocked at each.
fn stocked(skus: usize, locations: usize, units: u32, config: LedgerConfig) -> Ledger {
    let ledger = Ledger::new(config);
    for l in 0..locations {
        let location = Location {
            code: code(&format!("L{l}")),
            kind: LocationKind::Store,
            name: format!("Store {l}"),
            coords: None,
            pickup: None,
            ship_from_store: false,
        };
        ledger.put_location(location).expect("location");
    }
    for s in 0..skus {
        for l in 0..locations {
            let count = CountRequest {
                sku: sku(s),
                location: code(&format!("L{l}")),
                on_hand: Qty(units),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            };
            ledger.count(&count, TimestampMs(T0), None).expect("count");
        }
    }
    ledger
}

fn reserve_release(ledger: &Ledger, request: &ReserveRequest, now: i64) {
    let held = ledger
        .reserve(black_box(request), TimestampMs(now), None)
        .expect("granted");
    ledger
        .release(held.id, Acting::Any, TimestampMs(now), None)
        .expect("released");
}

fn single_line(c: &mut Criterion) {
    let ledger = stocked(1, 1, u32::MAX / 2, LedgerConfig::default());
    let request = ReserveRequest {
        caps: Vec::new(),
        channel: Channel::Web,
        lines: vec![Line {
            sku: sku(0),
            location: code("L0"),
            qty: Qty(1),
        }],
        ttl_ms: 60_000,
    };
    let mut group = c.benchmark_group("reserve_release");
    group.throughput(Throughput::Elements(1));
    let mut now = T0;
    group.bench_function("single_line_uncontended", |b| {
        b.iter(|| {
            now += 1;
            reserve_release(&ledger, &request, now);
        })
    });

    // The same pair with an `Idempotency-Key` on the reservation: adds the
    // request's SHA-256 fingerprint and the remembered outcome. The key
    // limit is raised so that criterion's millions of iterations never hit it.
    let keyed_ledger = stocked(
        1,
        1,
        u32::MAX / 2,
        LedgerConfig {
            max_idempotency_keys: usize::MAX,
            ..LedgerConfig::default()
        },
    );
    let mut key_number = 0u64;
    group.bench_function("single_line_keyed", |b| {
        b.iter_batched(
            || {
                key_number += 1;
                IdempotencyKey::new(&format!("bench-{key_number}")).expect("key")
            },
            |key| {
                now += 1;
                let held = keyed_ledger
                    .reserve(black_box(&request), TimestampMs(now), Some(&key))
                    .expect("granted");
                keyed_ledger
                    .release(held.id, Acting::Any, TimestampMs(now), None)
                    .expect("released");
            },
            BatchSize::SmallInput,
        )
    });

    let cart_ledger = stocked(1_000, 4, u32::MAX / 2, LedgerConfig::default());
    let cart = ReserveRequest {
        caps: Vec::new(),
        channel: Channel::Web,
        lines: (0..5)
            .map(|i| Line {
                sku: sku(i * 97),
                location: code(&format!("L{}", i % 4)),
                qty: Qty(1 + i as u32),
            })
            .collect(),
        ttl_ms: 60_000,
    };
    group.bench_function("five_line_cart", |b| {
        b.iter(|| {
            now += 1;
            reserve_release(&cart_ledger, &cart, now);
        })
    });

    // Two threads on one position: the worst case for a sharded ledger.
    let hot = stocked(1, 1, u32::MAX / 2, LedgerConfig::default());
    group.bench_function("hot_sku_two_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(2);
            let start_line = Barrier::new(2);
            let elapsed: Vec<Duration> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| {
                            let request = ReserveRequest {
                                caps: Vec::new(),
                                channel: Channel::Web,
                                lines: vec![Line {
                                    sku: sku(0),
                                    location: code("L0"),
                                    qty: Qty(1),
                                }],
                                ttl_ms: 60_000,
                            };
                            start_line.wait();
                            let start = Instant::now();
                            for i in 0..per_thread {
                                reserve_release(&hot, &request, T0 + i as i64);
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("worker"))
                    .collect()
            });
            // Together the threads ran `iters` pairs; the wall time is the slower one's.
            elapsed.into_iter().max().unwrap_or_default()
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let ledger = stocked(10_000, 10, 100, LedgerConfig::default());
    let skus: Vec<Sku> = (0..10_000).map(sku).collect();
    let locations: Vec<LocationCode> = (0..10).map(|l| code(&format!("L{l}"))).collect();
    let mut group = c.benchmark_group("availability");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("one_position", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let view = ledger.position(
                &skus[i % skus.len()],
                &locations[i % locations.len()],
                Some(Channel::Web),
                TimestampMs(T0),
            );
            black_box(view).expect("known location")
        })
    });
    group.bench_function("sku_across_10_locations", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(ledger.availability(
                &skus[i % skus.len()],
                &Scope::All,
                Some(Channel::Web),
                TimestampMs(T0),
            ))
            .expect("ok")
        })
    });
    group.finish();
}

fn counts(c: &mut Criterion) {
    const BATCH: usize = 10_000;
    let ledger = stocked(BATCH, 1, 10, LedgerConfig::default());
    let requests: Vec<CountRequest> = (0..BATCH)
        .map(|s| CountRequest {
            sku: sku(s),
            location: code("L0"),
            on_hand: Qty(50 + (s % 7) as u32),
            safety_stock: None,
            expected_version: None,
            as_of: None,
            reference: None,
        })
        .collect();
    let mut group = c.benchmark_group("absolute_count");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("batch_of_10k", |b| {
        b.iter(|| {
            for request in &requests {
                black_box(ledger.count(request, TimestampMs(T0 + 1), None)).expect("count");
            }
        })
    });
    group.finish();
}

fn expiry(c: &mut Criterion) {
    const DUE: usize = 100_000;
    let mut group = c.benchmark_group("expiry");
    group.throughput(Throughput::Elements(DUE as u64));
    group.sample_size(10);
    group.bench_function("expire_100k_due", |b| {
        b.iter_batched(
            || {
                let ledger = stocked(1_000, 1, 1_000, LedgerConfig::default());
                for i in 0..DUE {
                    let request = ReserveRequest {
                        caps: Vec::new(),
                        channel: Channel::Web,
                        lines: vec![Line {
                            sku: sku(i % 1_000),
                            location: code("L0"),
                            qty: Qty(1),
                        }],
                        ttl_ms: 1_000 + (i % 5_000) as u64,
                    };
                    ledger
                        .reserve(&request, TimestampMs(T0), None)
                        .expect("granted");
                }
                ledger
            },
            |ledger| {
                let expired = ledger.expire_due(TimestampMs(T0 + 10_000), usize::MAX);
                assert_eq!(expired, DUE);
                ledger
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, single_line, reads, counts, expiry);
criterion_main!(benches);
