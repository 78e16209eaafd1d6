//! Time: reservation expiry is exact under a clock that jumps forwards and
//! backwards. The ledger never reads a clock (every operation takes `now`),
//! so these tests drive it with whatever time they like:
//! - a hold never expires before its deadline, whatever order the clock
//!   values come in, and is gone once any call has seen its deadline pass;
//! - the server's sweep releases it within one sweep interval of the
//!   deadline (tokio's paused clock makes that exact, not a timing guess);
//! - a commit racing an expiry resolves the reservation exactly once.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use omnistock::ledger::{
    Acting, Channel, CommitRequest, CountRequest, JournalRead, Ledger, LedgerConfig, Line,
    Location, LocationCode, LocationKind, MovementKind, Qty, Refusal, ReservationState,
    ReservationView, ReserveRequest, Seq, Sku, TimestampMs,
};
use proptest::prelude::*;

const T0: TimestampMs = TimestampMs(1_700_000_000_000);

fn ledger_with_stock(units: u32) -> Ledger {
    let ledger = Ledger::new(LedgerConfig::default());
    ledger
        .put_location(Location {
            code: LocationCode::new("S1").expect("code"),
            kind: LocationKind::Store,
            name: "Store".into(),
            coords: None,
            pickup: None,
            ship_from_store: false,
        })
        .expect("location");
    ledger
        .count(
            &CountRequest {
                sku: sku(),
                location: location(),
                on_hand: Qty(units),
                safety_stock: None,
                expected_version: None,
                as_of: None,
                reference: None,
            },
            T0,
            None,
        )
        .expect("count");
    ledger
}

fn sku() -> Sku {
    Sku::new("SKU-1").expect("sku")
}

fn location() -> LocationCode {
    LocationCode::new("S1").expect("code")
}

/// One single-line hold of `qty` units of the one SKU.
fn hold(
    ledger: &Ledger,
    qty: u32,
    ttl_ms: u64,
    now: TimestampMs,
) -> Result<ReservationView, Refusal> {
    ledger.reserve(
        &ReserveRequest {
            caps: Vec::new(),
            channel: Channel::Web,
            lines: vec![Line {
                sku: sku(),
                location: location(),
                qty: Qty(qty),
            }],
            ttl_ms,
        },
        now,
        None,
    )
}

/// What one step of a jumping clock does.
#[derive(Clone, Debug)]
enum Step {
    /// Take a hold of 1 unit for this many ms.
    Hold(u64),
    /// Run the expiry sweep.
    Tick,
    /// Commit the n-th hold (modulo their number): past its deadline that
    /// expires it on the spot instead.
    Commit(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1_000_u64..20_000).prop_map(Step::Hold),
        Just(Step::Tick),
        (0_usize..64).prop_map(Step::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)
    ))]

    /// The clock walks forwards and backwards (NTP steps, a VM resumed,
    /// another node's clock); a hold is expired only once some call has
    /// seen its deadline, and any tick at or past the deadline expires it.
    #[test]
    fn holds_expire_exactly_under_clock_jumps(
        steps in proptest::collection::vec((step(), -30_000_i64..30_000), 1..60)
    ) {
        let ledger = ledger_with_stock(1_000);
        let mut now = T0;
        // (id, deadline, latest time any call touching it has seen)
        let mut holds = Vec::new();
        let mut latest_seen = TimestampMs(i64::MIN);
        for (step, jump_ms) in steps {
            now = TimestampMs(now.0 + jump_ms);
            match step {
                Step::Hold(ttl_ms) => {
                    let id = hold(&ledger, 1, ttl_ms, now)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(id.expires_at, now.plus_ms(ttl_ms));
                    holds.push((id.id, id.expires_at));
                }
                Step::Tick => {
                    ledger.tick(now, usize::MAX);
                    latest_seen = latest_seen.max(now);
                    for (id, deadline) in &holds {
                        let state = ledger.reservation(*id).map(|r| r.state);
                        if *deadline <= now && state != Some(ReservationState::Committed) {
                            prop_assert_eq!(state, Some(ReservationState::Expired));
                        }
                    }
                }
                Step::Commit(n) if !holds.is_empty() => {
                    let (id, deadline) = holds[n % holds.len()];
                    let before = ledger.reservation(id).map(|r| r.state);
                    let result = ledger.commit(&CommitRequest { id, lines: None }, Acting::Any, now, None);
                    let after = ledger.reservation(id).map(|r| r.state);
                    latest_seen = latest_seen.max(now);
                    match before {
                        Some(ReservationState::Held) if now < deadline => {
                            prop_assert!(result.is_ok(), "{:?}", result);
                            prop_assert_eq!(after, Some(ReservationState::Committed));
                        }
                        Some(ReservationState::Held) => {
                            prop_assert!(result.is_err());
                            prop_assert_eq!(after, Some(ReservationState::Expired));
                        }
                        _ => {
                            prop_assert!(result.is_err(), "a resolved hold resolves once");
                            prop_assert_eq!(after, before);
                        }
                    }
                }
                Step::Commit(_) => {}
            }
            for (id, deadline) in &holds {
                let state = ledger.reservation(*id).map(|r| r.state);
                if state == Some(ReservationState::Expired) {
                    prop_assert!(
                        latest_seen >= *deadline,
                        "expired before any call saw its deadline: {deadline:?}, latest {latest_seen:?}"
                    );
                }
            }
            ledger.check_invariants().map_err(TestCaseError::fail)?;
        }
    }
}

/// The server's sweep, on tokio's paused clock with a hand-moved wall clock:
/// nothing is released before the deadline, even when the wall clock jumps
/// back; once the deadline passes, the next sweep (within one interval)
/// releases it.
#[tokio::test(start_paused = true)]
async fn the_sweep_releases_within_one_interval_of_the_deadline() {
    let ledger = Arc::new(ledger_with_stock(10));
    let deadline = hold(&ledger, 4, 60_000, T0).expect("held").expires_at;
    let wall = Arc::new(AtomicI64::new(T0.0));
    let interval = Duration::from_millis(10);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let clock = {
        let wall = Arc::clone(&wall);
        move || TimestampMs(wall.load(Ordering::SeqCst))
    };
    let sweeper = tokio::spawn(omnistock::engine::expiry::sweep(
        Arc::clone(&ledger),
        interval,
        stop,
        clock,
    ));
    let reserved = || {
        ledger
            .position(&sku(), &location(), None, T0)
            .map(|p| p.reserved.0)
            .expect("position")
    };
    // Many sweeps at 1 ms before the deadline, then after a backwards jump.
    for wall_ms in [deadline.0 - 1, deadline.0 - 3_600_000, deadline.0 - 1] {
        wall.store(wall_ms, Ordering::SeqCst);
        tokio::time::sleep(interval * 5).await;
        assert_eq!(reserved(), 4, "still held at {wall_ms}");
    }
    // The deadline passes: within one interval the units are back.
    wall.store(deadline.0, Ordering::SeqCst);
    tokio::time::sleep(interval).await;
    tokio::task::yield_now().await;
    assert_eq!(reserved(), 0, "released within one sweep interval");
    // The clock jumping back afterwards brings nothing back.
    wall.store(T0.0, Ordering::SeqCst);
    tokio::time::sleep(interval * 3).await;
    assert_eq!(reserved(), 0);
    stop_tx.send_replace(true);
    sweeper.await.expect("sweeper stops");
}

/// A commit at the last millisecond racing the sweep at the deadline: one of
/// them wins, the other is refused or finds nothing, and the units move
/// exactly once (committed: gone from on hand; expired: back to ATF).
#[test]
fn a_commit_racing_an_expiry_resolves_once() {
    let rounds = 300;
    let (mut committed, mut expired) = (0, 0);
    for _ in 0..rounds {
        let ledger = Arc::new(ledger_with_stock(10));
        let head = ledger.journal_head();
        let id = hold(&ledger, 3, 1_000, T0).expect("held");
        let deadline = id.expires_at;
        let start = Arc::new(Barrier::new(2));
        let committer = {
            let (ledger, start) = (Arc::clone(&ledger), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                ledger.commit(
                    &CommitRequest {
                        id: id.id,
                        lines: None,
                    },
                    Acting::Any,
                    TimestampMs(deadline.0 - 1),
                    None,
                )
            })
        };
        let sweeper = {
            let (ledger, start) = (Arc::clone(&ledger), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                ledger.tick(deadline, usize::MAX)
            })
        };
        let commit = committer.join().expect("committer");
        let swept = sweeper.join().expect("sweeper");
        let state = ledger.reservation(id.id).map(|r| r.state);
        let position = ledger
            .position(&sku(), &location(), None, deadline)
            .expect("position");
        let JournalRead::Movements { movements, .. } = ledger.read_journal(head, 100) else {
            panic!("journal lagged");
        };
        let resolutions: Vec<MovementKind> = movements
            .iter()
            .filter(|m| m.reservation == Some(id.id))
            .map(|m| m.kind)
            .filter(|k| matches!(k, MovementKind::Commit | MovementKind::Expire))
            .collect();
        assert_eq!(resolutions.len(), 1, "{resolutions:?}");
        match state {
            Some(ReservationState::Committed) => {
                committed += 1;
                assert!(commit.is_ok() && swept == 0);
                assert_eq!((position.on_hand.0, position.reserved.0), (7, 0));
            }
            Some(ReservationState::Expired) => {
                expired += 1;
                assert!(commit.is_err() && swept == 1, "{commit:?} {swept}");
                assert_eq!((position.on_hand.0, position.reserved.0), (10, 0));
            }
            other => panic!("unresolved: {other:?}"),
        }
        ledger.check_invariants().expect("invariants");
        assert!(ledger.journal_head() > Seq(head.0 + 1));
    }
    assert_eq!(committed + expired, rounds);
    eprintln!("commit won {committed}, expiry won {expired} of {rounds} races");
}
