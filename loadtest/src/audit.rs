//! The end-of-run audit, through the API only. Three checks, any failure
//! fails the run: the engine's own invariant audit (`GET /v1/admin/audit`:
//! nothing oversold, reserved equal to the held lines, on a consistent cut);
//! every position of the data set read back and compared with the tool's own
//! book (reserved must be 0 once every hold the tool left has expired;
//! reserved never above on hand; on hand = initial or counted value +
//! receipts + returns - sales - commits); and every completed flash-sale
//! round granted exactly its N units.
//!
//! A cluster is audited like a single node, through its first node: the
//! engine audit is every partition's, added up, and the batch read-back asks
//! each item's partition, so every position is checked.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::Method;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::book::Book;
use crate::dataset::{DataSet, unix_ms};
use crate::http_client::{Call, Conn};

/// How long after the last hold's deadline the audit waits (the engine's
/// expiry sweep runs every 10 ms; the rest is slack for a loaded machine).
const EXPIRY_GRACE_MS: u64 = 1_500;
const READ_CHUNK: usize = 1_000;
const FINDINGS_KEPT: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionState {
    pub on_hand: i64,
    pub reserved: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlashCheck {
    pub round: usize,
    pub units: u32,
    pub buyers: u64,
    pub answered: u64,
    pub granted: u64,
    /// Every buyer of the round got an answer.
    pub complete: bool,
    pub ok: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditReport {
    pub passed: bool,
    /// The engine's `/v1/admin/audit` answer.
    pub server: Value,
    pub positions_checked: usize,
    pub positions_counted_by_import: usize,
    pub waited_for_expiry_ms: u64,
    pub findings_total: usize,
    /// The first findings.
    pub findings: Vec<String>,
    pub flash_rounds: Vec<FlashCheck>,
}

/// Compares the positions read back (`states[position]`) with the book.
/// Pure, so tests can hand it a deliberately inconsistent state.
pub fn check_positions(
    data: &DataSet,
    book: &Book,
    states: &[Option<PositionState>],
) -> Vec<String> {
    let mut findings = Vec::new();
    for (position, state) in states.iter().copied().enumerate() {
        let (sku, location) = data.codes(position);
        let Some(state) = state else {
            findings.push(format!("{location}/{sku}: missing"));
            continue;
        };
        if state.on_hand < 0 || state.reserved < 0 {
            findings.push(format!(
                "{location}/{sku}: negative: on hand {}, reserved {}",
                state.on_hand, state.reserved
            ));
        }
        if state.reserved > state.on_hand {
            findings.push(format!(
                "{location}/{sku}: oversold: reserved {} > on hand {}",
                state.reserved, state.on_hand
            ));
        }
        if state.reserved != 0 {
            findings.push(format!(
                "{location}/{sku}: reserved {} but no hold of the run is active",
                state.reserved
            ));
        }
        let expected = book.expected_on_hand(data, position);
        if state.on_hand != expected {
            findings.push(format!(
                "{location}/{sku}: on hand {} but initial/counted + receipts + returns - sales - commits = {expected}",
                state.on_hand
            ));
        }
    }
    findings
}

pub fn check_flash(data: &DataSet, book: &Book) -> Vec<FlashCheck> {
    book.flash
        .iter()
        .enumerate()
        .filter(|(_, r)| r.answered.load(Ordering::Relaxed) > 0)
        .map(|(round, r)| {
            let answered = r.answered.load(Ordering::Relaxed);
            let granted = r.granted.load(Ordering::Relaxed);
            let complete = answered >= data.flash_buyers;
            let units = u64::from(data.flash_units);
            FlashCheck {
                round,
                units: data.flash_units,
                buyers: data.flash_buyers,
                answered,
                granted,
                complete,
                ok: if complete {
                    granted == units
                } else {
                    granted <= units
                },
            }
        })
        .collect()
}

/// Reads every position of the data set (batch reads of 1,000).
pub async fn read_positions(
    conn: &mut Conn,
    data: &DataSet,
    admin: &HeaderValue,
) -> Result<Vec<Option<PositionState>>, String> {
    let mut states = Vec::with_capacity(data.positions());
    let positions: Vec<usize> = (0..data.positions()).collect();
    for chunk in positions.chunks(READ_CHUNK) {
        let items: Vec<String> = chunk
            .iter()
            .map(|p| {
                let (sku, location) = data.codes(*p);
                format!(r#"{{"sku":"{sku}","location":"{location}"}}"#)
            })
            .collect();
        let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
        let reply = conn
            .call(Call::json(
                Method::POST,
                "/v1/availability/batch",
                Some(admin),
                body,
            ))
            .await
            .map_err(|e| format!("audit read: {e}"))?;
        if !reply.status.is_success() {
            return Err(format!(
                "audit read: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            ));
        }
        let answer: Value =
            serde_json::from_slice(&reply.body).map_err(|e| format!("audit read: {e}"))?;
        let results = answer["results"]
            .as_array()
            .ok_or("audit read: no results")?;
        if results.len() != chunk.len() {
            return Err("audit read: wrong number of results".into());
        }
        states.extend(results.iter().map(|r| {
            Some(PositionState {
                on_hand: r["on_hand"].as_i64()?,
                reserved: r["reserved"].as_i64()?,
            })
        }));
    }
    Ok(states)
}

/// Waits until the run's last holds have expired (plus a grace); how long.
async fn wait_for_expiry(book: &Book) -> u64 {
    let latest = book.latest_hold_deadline_ms();
    let wait_ms = (latest + EXPIRY_GRACE_MS).saturating_sub(unix_ms());
    if wait_ms > 0 {
        eprintln!(
            "audit: waiting {:.1} s for the run's last holds to expire",
            wait_ms as f64 / 1000.0
        );
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
    wait_ms
}

/// The audit, through `conn` (the first node on a cluster). Nothing is
/// skipped: an engine audit that is not `ok` (whatever its status) is a
/// finding, and a read-back that fails is an error; either fails the run.
pub async fn audit(
    conn: &mut Conn,
    data: &DataSet,
    book: &Book,
    admin: &HeaderValue,
) -> Result<AuditReport, String> {
    let wait_ms = wait_for_expiry(book).await;
    let reply = conn
        .call(Call::get("/v1/admin/audit", Some(admin)))
        .await
        .map_err(|e| format!("audit: {e}"))?;
    let server: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let mut findings = Vec::new();
    if !reply.status.is_success() || server["ok"] != Value::Bool(true) {
        findings.push(format!("engine audit: {} {server}", reply.status));
    }
    let states = read_positions(conn, data, admin).await?;
    findings.extend(check_positions(data, book, &states));
    let flash_rounds = check_flash(data, book);
    for round in flash_rounds.iter().filter(|r| !r.ok) {
        findings.push(format!(
            "flash-sale round {}: {} of {} units granted to {} buyers",
            round.round, round.granted, round.units, round.answered
        ));
    }
    let findings_total = findings.len();
    findings.truncate(FINDINGS_KEPT);
    Ok(AuditReport {
        passed: findings_total == 0,
        server,
        positions_checked: states.len(),
        positions_counted_by_import: (0..data.positions())
            .filter(|p| book.was_counted(*p))
            .count(),
        waited_for_expiry_ms: wait_ms,
        findings_total,
        findings,
        flash_rounds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DataSetConfig;
    use crate::rng::Skew;

    fn data() -> DataSet {
        DataSet::new(&DataSetConfig {
            skus: 4,
            stores: 2,
            warehouses: 1,
            initial_on_hand: 10,
            skew: Skew::Uniform,
            flash_units: 5,
            flash_rounds: 1,
            flash_buyers_per_unit: 4,
            seed: 9,
        })
    }

    fn consistent(data: &DataSet, book: &Book) -> Vec<Option<PositionState>> {
        (0..data.positions())
            .map(|p| {
                Some(PositionState {
                    on_hand: book.expected_on_hand(data, p),
                    reserved: 0,
                })
            })
            .collect()
    }

    #[test]
    fn a_consistent_state_passes() {
        let data = data();
        let book = Book::new(&data, 0);
        book.moved(0, -2);
        book.moved(3, 7);
        book.counted(5);
        let states = consistent(&data, &book);
        assert_eq!(
            states[0].map(|s| s.on_hand),
            Some(data.initial[0] as i64 - 2)
        );
        assert!(check_positions(&data, &book, &states).is_empty());
    }

    #[test]
    fn every_kind_of_inconsistency_is_found() {
        let data = data();
        let book = Book::new(&data, 0);
        let mut states = consistent(&data, &book);
        // A sale the tool never made (units not conserved).
        states[1] = states[1].map(|s| PositionState {
            on_hand: s.on_hand - 1,
            ..s
        });
        // Oversold, and a hold nobody holds.
        states[2] = Some(PositionState {
            on_hand: 1,
            reserved: 3,
        });
        // A position that vanished.
        states[4] = None;
        let findings = check_positions(&data, &book, &states);
        assert!(
            findings
                .iter()
                .any(|f| f.contains("on hand") && f.contains("initial/counted")),
            "{findings:?}"
        );
        assert!(
            findings.iter().any(|f| f.contains("oversold")),
            "{findings:?}"
        );
        assert!(
            findings.iter().any(|f| f.contains("no hold of the run")),
            "{findings:?}"
        );
        assert!(
            findings.iter().any(|f| f.contains("missing")),
            "{findings:?}"
        );
    }

    #[test]
    fn negative_counts_are_found() {
        let data = data();
        let book = Book::new(&data, 0);
        let mut states = consistent(&data, &book);
        states[2] = Some(PositionState {
            on_hand: -1,
            reserved: 0,
        });
        let findings = check_positions(&data, &book, &states);
        assert!(
            findings.iter().any(|f| f.contains("negative")),
            "{findings:?}"
        );
    }

    #[test]
    fn flash_rounds_must_grant_exactly_n_once_complete() {
        let data = data();
        let book = Book::new(&data, 0);
        let round = &book.flash[0];
        round.answered.store(data.flash_buyers, Ordering::Relaxed);
        round.granted.store(4, Ordering::Relaxed);
        assert!(
            !check_flash(&data, &book)[0].ok,
            "4 of 5 granted with every buyer answered"
        );
        round.granted.store(5, Ordering::Relaxed);
        assert!(check_flash(&data, &book)[0].ok);
        round.answered.store(3, Ordering::Relaxed);
        round.granted.store(3, Ordering::Relaxed);
        let check = &check_flash(&data, &book)[0];
        assert!(check.ok && !check.complete);
        round.granted.store(6, Ordering::Relaxed);
        assert!(
            !check_flash(&data, &book)[0].ok,
            "more than N is never fine"
        );
    }
}
