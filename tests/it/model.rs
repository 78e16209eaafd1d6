//! Model-based property test: random sequences of every ledger operation over
//! a few SKUs and locations, applied both to the real ledger and to a naive
//! reference model (plain maps, full history, linear scans). After every step
//! the outcomes must agree, every position must be equal, and the ledger's
//! own invariant check must pass.
//!
//! Case count: `PROPTEST_CASES` (default 50,000, the CI figure).

use std::collections::BTreeMap;

use omnistock::ledger::*;
use proptest::prelude::*;

const SKUS: [&str; 3] = ["S0", "S1", "S2"];
const LOCS: [&str; 3] = ["L0", "L1", "L2"];
const CHANNELS: [Channel; 3] = [Channel::Web, Channel::Pos, Channel::Marketplace];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const T0: i64 = 1_700_000_000_000;

/// Web holds back 1 unit at L0; the marketplace sees at most 3 at L1.
fn seen(channel: Channel, loc: usize, atf: u32) -> u32 {
    match (channel, loc) {
        (Channel::Web, 0) => atf.saturating_sub(1),
        (Channel::Marketplace, 1) => atf.min(3),
        _ => atf,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Count {
        sku: usize,
        loc: usize,
        on_hand: u32,
        as_of_back_ms: Option<i64>,
    },
    Receive {
        sku: usize,
        loc: usize,
        qty: u32,
    },
    Adjust {
        sku: usize,
        loc: usize,
        delta: i64,
    },
    Sell {
        channel: usize,
        lines: Vec<(usize, usize, u32)>,
    },
    Return {
        sku: usize,
        loc: usize,
        qty: u32,
        sellable: bool,
    },
    Reserve {
        channel: usize,
        lines: Vec<(usize, usize, u32)>,
        ttl_ms: u64,
        key: Option<usize>,
    },
    Commit {
        which: usize,
        first_line_share: Option<u8>,
    },
    Release {
        which: usize,
    },
    Extend {
        which: usize,
        ttl_ms: u64,
    },
    Transfer {
        which: usize,
        to: usize,
    },
    Advance {
        ms: i64,
    },
    Expire,
}

fn lines() -> impl Strategy<Value = Vec<(usize, usize, u32)>> {
    prop::collection::vec((0..SKUS.len(), 0..LOCS.len(), 1u32..5), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    let ttl = prop::sample::select(vec![1_000u64, 2_000, 5_000]);
    prop_oneof![
        3 => (0..3usize, 0..3usize, 0u32..12, prop::option::of(0i64..3_000))
            .prop_map(|(sku, loc, on_hand, as_of_back_ms)| Op::Count { sku, loc, on_hand, as_of_back_ms }),
        2 => (0..3usize, 0..3usize, 1u32..6).prop_map(|(sku, loc, qty)| Op::Receive { sku, loc, qty }),
        1 => (0..3usize, 0..3usize, -6i64..6).prop_filter("non-zero", |(_, _, d)| *d != 0)
            .prop_map(|(sku, loc, delta)| Op::Adjust { sku, loc, delta }),
        2 => (0..3usize, lines()).prop_map(|(channel, lines)| Op::Sell { channel, lines }),
        1 => (0..3usize, 0..3usize, 1u32..4, any::<bool>()).prop_map(|(sku, loc, qty, sellable)| Op::Return { sku, loc, qty, sellable }),
        6 => (0..3usize, lines(), ttl.clone(), prop::option::of(0..KEYS.len()))
            .prop_map(|(channel, lines, ttl_ms, key)| Op::Reserve { channel, lines, ttl_ms, key }),
        3 => (any::<usize>(), prop::option::of(any::<u8>())).prop_map(|(which, first_line_share)| Op::Commit { which, first_line_share }),
        2 => any::<usize>().prop_map(|which| Op::Release { which }),
        1 => (any::<usize>(), ttl).prop_map(|(which, ttl_ms)| Op::Extend { which, ttl_ms }),
        1 => (any::<usize>(), 0..3usize).prop_map(|(which, to)| Op::Transfer { which, to }),
        2 => (0i64..2_500).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Expire),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ModelPosition {
    on_hand: u32,
    reserved: u32,
    non_sellable: u32,
    last_count_as_of: Option<i64>,
    /// Every on-hand movement (time, delta), never trimmed.
    history: Vec<(i64, i64)>,
}

/// A position (sku index, location index) and the units held there.
type HeldModelLine = ((usize, usize), u32);

#[derive(Clone, Debug)]
struct ModelReservation {
    id: ReservationId,
    channel: Channel,
    lines: Vec<((usize, usize), u32)>,
    expires_at: i64,
    state: ReservationState,
}

/// Outcome shape compared between model and ledger.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Ok,
    Refused(String),
}

fn refused(r: &Refusal) -> Outcome {
    // Compare the variant and its payload, except ids the model cannot know.
    Outcome::Refused(match r {
        Refusal::ReservationNotHeld { state, .. } => format!("not held: {state:?}"),
        other => format!("{other:?}"),
    })
}

#[derive(Default)]
struct Model {
    now: i64,
    positions: BTreeMap<(usize, usize), ModelPosition>,
    reservations: Vec<ModelReservation>,
    keys: BTreeMap<usize, (String, Outcome, Option<usize>)>,
}

impl Model {
    fn atf(&self, pos: (usize, usize)) -> u32 {
        self.positions
            .get(&pos)
            .map_or(0, |p| p.on_hand.saturating_sub(p.reserved))
    }

    fn shortfalls(
        &self,
        channel: Channel,
        lines: &[(usize, usize, u32)],
    ) -> (Vec<HeldModelLine>, Vec<Shortfall>) {
        let mut merged: Vec<((usize, usize), u32)> = Vec::new();
        for &(sku, loc, qty) in lines {
            match merged.iter_mut().find(|(p, _)| *p == (sku, loc)) {
                Some((_, q)) => *q += qty,
                None => merged.push(((sku, loc), qty)),
            }
        }
        let short = merged
            .iter()
            .filter_map(|&((sku, loc), qty)| {
                let available = seen(channel, loc, self.atf((sku, loc)));
                (available < qty).then(|| Shortfall {
                    sku: sku_of(sku),
                    location: loc_of(loc),
                    requested: Qty(qty),
                    available: Qty(available),
                })
            })
            .collect();
        (merged, short)
    }

    fn move_on_hand(&mut self, pos: (usize, usize), delta: i64) {
        let p = self.positions.entry(pos).or_default();
        p.on_hand = (i64::from(p.on_hand) + delta) as u32;
        if delta != 0 {
            p.history.push((self.now, delta));
        }
    }

    fn unhold(&mut self, index: usize, state: ReservationState) {
        let lines = self.reservations[index].lines.clone();
        for (pos, qty) in lines {
            self.positions.entry(pos).or_default().reserved -= qty;
        }
        self.reservations[index].state = state;
    }

    /// The reservation `which` picks, expiring it if it is past due.
    fn touch(&mut self, which: usize) -> Result<usize, Outcome> {
        if self.reservations.is_empty() {
            return Err(Outcome::Refused("none".into()));
        }
        let index = which % self.reservations.len();
        let r = &self.reservations[index];
        if r.state != ReservationState::Held {
            return Err(Outcome::Refused(format!("not held: {:?}", r.state)));
        }
        if r.expires_at <= self.now {
            self.unhold(index, ReservationState::Expired);
            return Err(Outcome::Refused("not held: Expired".into()));
        }
        Ok(index)
    }
}

fn sku_of(i: usize) -> Sku {
    Sku::new(SKUS[i]).expect("sku")
}
fn loc_of(i: usize) -> LocationCode {
    LocationCode::new(LOCS[i]).expect("loc")
}
fn to_lines(lines: &[(usize, usize, u32)]) -> Vec<Line> {
    lines
        .iter()
        .map(|&(s, l, q)| Line {
            sku: sku_of(s),
            location: loc_of(l),
            qty: Qty(q),
        })
        .collect()
}

fn ledger() -> Ledger {
    let ledger = Ledger::new(LedgerConfig {
        position_shards: 4,
        reservation_shards: 2,
        position_history_len: 10_000,
        journal_capacity: 1 << 10,
        ..LedgerConfig::default()
    });
    for code in LOCS {
        let location = Location {
            code: LocationCode::new(code).expect("code"),
            kind: LocationKind::Store,
            name: code.into(),
            coords: None,
            pickup: None,
            ship_from_store: true,
        };
        ledger.put_location(location).expect("location");
    }
    ledger
        .put_policy(
            Channel::Web,
            PolicyScope::Location(loc_of(0)),
            Some(ChannelPolicy {
                held_back: Qty(1),
                cap: None,
            }),
        )
        .expect("policy");
    ledger
        .put_policy(
            Channel::Marketplace,
            PolicyScope::Location(loc_of(1)),
            Some(ChannelPolicy {
                held_back: Qty(0),
                cap: Some(Qty(3)),
            }),
        )
        .expect("policy");
    ledger
}

fn result<T>(r: &Result<T, Refusal>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => refused(e),
    }
}

/// Applies one op to both; returns (ledger outcome, model outcome).
fn step(ledger: &Ledger, model: &mut Model, op: &Op) -> (Outcome, Outcome) {
    let now = TimestampMs(T0 + model.now);
    match op.clone() {
        Op::Count {
            sku,
            loc,
            on_hand,
            as_of_back_ms,
        } => {
            let as_of = as_of_back_ms.map(|back| model.now - back);
            let request = CountRequest {
                sku: sku_of(sku),
                location: loc_of(loc),
                on_hand: Qty(on_hand),
                safety_stock: None,
                expected_version: None,
                as_of: as_of.map(|t| TimestampMs(T0 + t)),
                reference: None,
            };
            let real = result(&ledger.count(&request, now, None));
            let as_of = as_of.unwrap_or(model.now);
            let p = model.positions.entry((sku, loc)).or_default();
            let expected = match p.last_count_as_of {
                Some(last) if as_of < last => Outcome::Refused(format!(
                    "{:?}",
                    Refusal::CountOlderThanLast {
                        as_of: TimestampMs(T0 + as_of),
                        last_as_of: TimestampMs(T0 + last)
                    }
                )),
                _ => {
                    let since: i64 = p
                        .history
                        .iter()
                        .filter(|(t, _)| *t > as_of)
                        .map(|(_, d)| d)
                        .sum();
                    p.on_hand = (i64::from(on_hand) + since).max(0) as u32;
                    p.last_count_as_of = Some(as_of);
                    Outcome::Ok
                }
            };
            (real, expected)
        }
        Op::Receive { sku, loc, qty } => {
            let real = result(&ledger.receive(
                &ReceiptRequest {
                    line: Line {
                        sku: sku_of(sku),
                        location: loc_of(loc),
                        qty: Qty(qty),
                    },
                    reference: None,
                },
                now,
                None,
            ));
            model.move_on_hand((sku, loc), i64::from(qty));
            (real, Outcome::Ok)
        }
        Op::Adjust { sku, loc, delta } => {
            let request = AdjustmentRequest {
                sku: sku_of(sku),
                location: loc_of(loc),
                delta,
                reason: "model".into(),
                reference: None,
            };
            let real = result(&ledger.adjust(&request, now, None));
            let on_hand = model.positions.get(&(sku, loc)).map_or(0, |p| p.on_hand);
            let expected = if i64::from(on_hand) + delta < 0 {
                Outcome::Refused(format!(
                    "{:?}",
                    Refusal::InsufficientOnHand {
                        shortfalls: vec![Shortfall {
                            sku: sku_of(sku),
                            location: loc_of(loc),
                            requested: Qty(delta.unsigned_abs() as u32),
                            available: Qty(on_hand)
                        }]
                    }
                ))
            } else {
                model.move_on_hand((sku, loc), delta);
                Outcome::Ok
            };
            (real, expected)
        }
        Op::Sell { channel, lines } => {
            let channel = CHANNELS[channel];
            let real = result(&ledger.sell(
                &SaleRequest {
                    channel,
                    lines: to_lines(&lines),
                    reference: None,
                },
                now,
                None,
            ));
            let (merged, short) = model.shortfalls(channel, &lines);
            let expected = if short.is_empty() {
                for (pos, qty) in merged {
                    model.move_on_hand(pos, -i64::from(qty));
                }
                Outcome::Ok
            } else {
                refused(&Refusal::InsufficientStock { shortfalls: short })
            };
            (real, expected)
        }
        Op::Return {
            sku,
            loc,
            qty,
            sellable,
        } => {
            let request = ReturnRequest {
                channel: Channel::Pos,
                line: Line {
                    sku: sku_of(sku),
                    location: loc_of(loc),
                    qty: Qty(qty),
                },
                sellable,
                reason: None,
                reference: None,
            };
            let real = result(&ledger.return_units(&request, now, None));
            if sellable {
                model.move_on_hand((sku, loc), i64::from(qty));
            } else {
                model.positions.entry((sku, loc)).or_default().non_sellable += qty;
            }
            (real, Outcome::Ok)
        }
        Op::Reserve {
            channel,
            lines,
            ttl_ms,
            key,
        } => {
            let channel = CHANNELS[channel];
            let request = ReserveRequest {
                caps: Vec::new(),
                channel,
                lines: to_lines(&lines),
                ttl_ms,
            };
            let idempotency_key = key.map(|k| IdempotencyKey::new(KEYS[k]).expect("key"));
            let granted = ledger.reserve(&request, now, idempotency_key.as_ref());
            let real = result(&granted);
            let fingerprint = format!("{request:?}");
            if let Some(k) = key
                && let Some((previous, outcome, index)) = model.keys.get(&k).cloned()
            {
                let expected = if previous == fingerprint {
                    outcome
                } else {
                    refused(&Refusal::IdempotencyKeyReused)
                };
                if let (Ok(view), Some(index)) = (&granted, index) {
                    assert_eq!(
                        view.id, model.reservations[index].id,
                        "a replay returns the original reservation"
                    );
                }
                return (real, expected);
            }
            let (merged, short) = model.shortfalls(channel, &lines);
            let (expected, index) = if short.is_empty() {
                for (pos, qty) in &merged {
                    model.positions.entry(*pos).or_default().reserved += qty;
                }
                let id = granted.as_ref().map(|v| v.id).unwrap_or(ReservationId(0));
                model.reservations.push(ModelReservation {
                    id,
                    channel,
                    lines: merged,
                    expires_at: model.now + ttl_ms as i64,
                    state: ReservationState::Held,
                });
                (Outcome::Ok, Some(model.reservations.len() - 1))
            } else {
                (
                    refused(&Refusal::InsufficientStock { shortfalls: short }),
                    None,
                )
            };
            if let Some(k) = key {
                model.keys.insert(k, (fingerprint, expected.clone(), index));
            }
            (real, expected)
        }
        Op::Commit {
            which,
            first_line_share,
        } => {
            let Some(id) = pick(model, which) else {
                return (
                    Outcome::Refused("none".into()),
                    Outcome::Refused("none".into()),
                );
            };
            let r = &model.reservations[which % model.reservations.len()];
            let mut ship: Vec<u32> = r.lines.iter().map(|(_, q)| *q).collect();
            let lines = first_line_share.map(|share| {
                let ((sku, loc), held) = r.lines[0];
                let q = u32::from(share) * held / 255;
                ship = vec![0; r.lines.len()];
                ship[0] = q;
                vec![Line {
                    sku: sku_of(sku),
                    location: loc_of(loc),
                    qty: Qty(q),
                }]
            });
            let real = result(&ledger.commit(&CommitRequest { id, lines }, Acting::Any, now, None));
            let expected = match model.touch(which) {
                Err(outcome) => outcome,
                Ok(index) => {
                    let r = model.reservations[index].clone();
                    let short: Vec<_> = r
                        .lines
                        .iter()
                        .zip(&ship)
                        .filter_map(|(((sku, loc), _), q)| {
                            let on_hand =
                                model.positions.get(&(*sku, *loc)).map_or(0, |p| p.on_hand);
                            (on_hand < *q).then(|| Shortfall {
                                sku: sku_of(*sku),
                                location: loc_of(*loc),
                                requested: Qty(*q),
                                available: Qty(on_hand),
                            })
                        })
                        .collect();
                    if short.is_empty() {
                        for ((pos, held), q) in r.lines.iter().zip(&ship) {
                            model.positions.entry(*pos).or_default().reserved -= held;
                            model.move_on_hand(*pos, -i64::from(*q));
                        }
                        model.reservations[index].state = ReservationState::Committed;
                        Outcome::Ok
                    } else {
                        refused(&Refusal::InsufficientOnHand { shortfalls: short })
                    }
                }
            };
            (real, expected)
        }
        Op::Release { which } => {
            let Some(id) = pick(model, which) else {
                return (
                    Outcome::Refused("none".into()),
                    Outcome::Refused("none".into()),
                );
            };
            let real = result(&ledger.release(id, Acting::Any, now, None));
            let expected = match model.touch(which) {
                Err(outcome) => outcome,
                Ok(index) => {
                    model.unhold(index, ReservationState::Released);
                    Outcome::Ok
                }
            };
            (real, expected)
        }
        Op::Extend { which, ttl_ms } => {
            let Some(id) = pick(model, which) else {
                return (
                    Outcome::Refused("none".into()),
                    Outcome::Refused("none".into()),
                );
            };
            let real = result(&ledger.extend(id, ttl_ms, Acting::Any, now, None));
            let expected = match model.touch(which) {
                Err(outcome) => outcome,
                Ok(index) => {
                    model.reservations[index].expires_at = model.now + ttl_ms as i64;
                    Outcome::Ok
                }
            };
            (real, expected)
        }
        Op::Transfer { which, to } => {
            let Some(id) = pick(model, which) else {
                return (
                    Outcome::Refused("none".into()),
                    Outcome::Refused("none".into()),
                );
            };
            let r = &model.reservations[which % model.reservations.len()];
            let ((sku, from), qty) = r.lines[0];
            let request = TransferRequest {
                id,
                sku: sku_of(sku),
                from: loc_of(from),
                to: loc_of(to),
                qty: None,
            };
            let real = result(&ledger.transfer(&request, Acting::Any, now, None));
            let expected = if from == to {
                refused(&Refusal::Invalid(Invalid::TransferToSameLocation))
            } else {
                match model.touch(which) {
                    Err(outcome) => outcome,
                    Ok(index) => {
                        let channel = model.reservations[index].channel;
                        let available = seen(channel, to, model.atf((sku, to)));
                        if available < qty {
                            refused(&Refusal::InsufficientStock {
                                shortfalls: vec![Shortfall {
                                    sku: sku_of(sku),
                                    location: loc_of(to),
                                    requested: Qty(qty),
                                    available: Qty(available),
                                }],
                            })
                        } else {
                            model.positions.entry((sku, from)).or_default().reserved -= qty;
                            model.positions.entry((sku, to)).or_default().reserved += qty;
                            let lines = &mut model.reservations[index].lines;
                            lines[0].1 -= qty;
                            match lines.iter_mut().find(|(p, _)| *p == (sku, to)) {
                                Some((_, q)) => *q += qty,
                                None => lines.push(((sku, to), qty)),
                            }
                            lines.retain(|(_, q)| *q > 0);
                            Outcome::Ok
                        }
                    }
                }
            };
            (real, expected)
        }
        Op::Advance { ms } => {
            model.now += ms;
            (Outcome::Ok, Outcome::Ok)
        }
        Op::Expire => {
            let expired = ledger.expire_due(now, usize::MAX);
            let mut count = 0;
            for index in 0..model.reservations.len() {
                let r = &model.reservations[index];
                if r.state == ReservationState::Held && r.expires_at <= model.now {
                    model.unhold(index, ReservationState::Expired);
                    count += 1;
                }
            }
            (
                Outcome::Refused(format!("expired {expired}")),
                Outcome::Refused(format!("expired {count}")),
            )
        }
    }
}

fn pick(model: &Model, which: usize) -> Option<ReservationId> {
    (!model.reservations.is_empty())
        .then(|| model.reservations[which % model.reservations.len()].id)
}

fn compare(ledger: &Ledger, model: &Model, context: &str) -> Result<(), TestCaseError> {
    let now = TimestampMs(T0 + model.now);
    for (sku, sku_name) in SKUS.iter().enumerate() {
        for (loc, loc_name) in LOCS.iter().enumerate() {
            let real = ledger
                .position(&sku_of(sku), &loc_of(loc), None, now)
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let m = model
                .positions
                .get(&(sku, loc))
                .cloned()
                .unwrap_or_default();
            prop_assert_eq!(
                (real.on_hand.0, real.reserved.0, real.non_sellable.0),
                (m.on_hand, m.reserved, m.non_sellable),
                "position {} at {} after {}",
                sku_name,
                loc_name,
                context
            );
        }
    }
    for r in &model.reservations {
        let state = ledger.reservation(r.id).map(|v| v.state);
        prop_assert_eq!(
            state,
            Some(r.state),
            "reservation {} after {}",
            r.id,
            context
        );
    }
    let report = ledger.check_invariants().map_err(TestCaseError::fail)?;
    let held = model
        .reservations
        .iter()
        .filter(|r| r.state == ReservationState::Held)
        .count();
    prop_assert_eq!(report.held_reservations, held);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(50_000),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ledger_matches_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        let ledger = ledger();
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let (real, expected) = step(&ledger, &mut model, op);
            prop_assert_eq!(&real, &expected, "step {} {:?}", i, op);
            compare(&ledger, &model, &format!("step {i} {op:?}"))?;
        }
    }
}
