//! Per-operation outcomes and latency histograms (HDR, microseconds). Each
//! connection task records into its own `Recorder` (no locks on the hot
//! path); recorders are merged when a phase ends. Shared atomic counters feed
//! the progress line only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Every operation the scenarios issue, one histogram each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    BrowsePosition,
    BrowseSku,
    BrowseBatch,
    BrowseNearby,
    CheckoutReserve,
    CheckoutCommit,
    CheckoutRelease,
    PosSale,
    PosReturn,
    PosReceipt,
    FlashReserve,
    FlashCommit,
    FeedFull,
    FeedIncremental,
    Import,
    Reserve,
    ReserveBatch,
}

impl Op {
    pub const ALL: [Op; 17] = [
        Op::BrowsePosition,
        Op::BrowseSku,
        Op::BrowseBatch,
        Op::BrowseNearby,
        Op::CheckoutReserve,
        Op::CheckoutCommit,
        Op::CheckoutRelease,
        Op::PosSale,
        Op::PosReturn,
        Op::PosReceipt,
        Op::FlashReserve,
        Op::FlashCommit,
        Op::FeedFull,
        Op::FeedIncremental,
        Op::Import,
        Op::Reserve,
        Op::ReserveBatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::BrowsePosition => "browse.position",
            Op::BrowseSku => "browse.sku",
            Op::BrowseBatch => "browse.batch",
            Op::BrowseNearby => "browse.nearby",
            Op::CheckoutReserve => "checkout.reserve",
            Op::CheckoutCommit => "checkout.commit",
            Op::CheckoutRelease => "checkout.release",
            Op::PosSale => "pos.sale",
            Op::PosReturn => "pos.return",
            Op::PosReceipt => "pos.receipt",
            Op::FlashReserve => "flash.reserve",
            Op::FlashCommit => "flash.commit",
            Op::FeedFull => "feed.full",
            Op::FeedIncremental => "feed.incremental",
            Op::Import => "import.count",
            Op::Reserve => "reserve",
            Op::ReserveBatch => "reserve.batch",
        }
    }
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// An expected refusal (409: not enough stock).
    Refused,
    /// Anything else: unexpected status, transport error, timeout.
    Error,
}

/// Longest latency a histogram holds (beyond: clamped), in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram (microseconds, 1 us to 60 s, 3 digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

pub struct OpStats {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    /// Reservation or sale lines carried by the successful requests.
    pub lines: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency_us: histogram(),
            ok: 0,
            refused: 0,
            errors: 0,
            lines: 0,
        }
    }
}

/// Counters shared by every connection, for the progress line.
#[derive(Default)]
pub struct Progress {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// One connection's statistics (allocated per operation on first use).
pub struct Recorder {
    ops: Vec<Option<OpStats>>,
    progress: Arc<Progress>,
    /// First few error messages, to show the user what went wrong.
    pub error_samples: Vec<String>,
    /// Scenario iterations started (the unit of the open-loop rate; one may
    /// send several requests).
    pub iterations: u64,
}

impl Recorder {
    pub fn new(progress: Arc<Progress>) -> Recorder {
        Recorder {
            ops: Op::ALL.iter().map(|_| None).collect(),
            progress,
            error_samples: Vec::new(),
            iterations: 0,
        }
    }

    pub fn record(&mut self, op: Op, outcome: Outcome, latency: Duration, lines: u64) {
        let stats = self.ops[op as usize].get_or_insert_with(OpStats::new);
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let _ = stats.latency_us.record(us);
        match outcome {
            Outcome::Ok => {
                stats.ok += 1;
                stats.lines += lines;
            }
            Outcome::Refused => stats.refused += 1,
            Outcome::Error => {
                stats.errors += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn note_error(&mut self, message: String) {
        if self.error_samples.len() < 5 {
            self.error_samples.push(message);
        }
    }

    /// Adds another recorder's figures into this one.
    pub fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(other.ops) {
            let Some(theirs) = theirs else { continue };
            match mine {
                None => *mine = Some(theirs),
                Some(mine) => {
                    let _ = mine.latency_us.add(&theirs.latency_us);
                    mine.ok += theirs.ok;
                    mine.refused += theirs.refused;
                    mine.errors += theirs.errors;
                    mine.lines += theirs.lines;
                }
            }
        }
        self.iterations += other.iterations;
        for sample in other.error_samples {
            self.note_error(sample);
        }
    }

    /// The per-operation summary over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Vec<OpSummary> {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Op::ALL
            .iter()
            .zip(&self.ops)
            .filter_map(|(op, stats)| {
                let stats = stats.as_ref()?;
                let h = &stats.latency_us;
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                let requests = stats.ok + stats.refused + stats.errors;
                Some(OpSummary {
                    op: op.name().to_string(),
                    requests,
                    ok: stats.ok,
                    refused: stats.refused,
                    errors: stats.errors,
                    rate_per_s: requests as f64 / seconds,
                    lines_per_s: stats.lines as f64 / seconds,
                    p50_ms: ms(0.50),
                    p90_ms: ms(0.90),
                    p99_ms: ms(0.99),
                    p999_ms: ms(0.999),
                    max_ms: h.max() as f64 / 1000.0,
                    mean_ms: h.mean() / 1000.0,
                })
            })
            .collect()
    }

    /// All requests of every operation in one histogram.
    pub fn overall(&self) -> Histogram<u64> {
        let mut all = histogram();
        for stats in self.ops.iter().flatten() {
            let _ = all.add(&stats.latency_us);
        }
        all
    }

    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.ops.iter().flatten().fold((0, 0, 0, 0), |acc, s| {
            (
                acc.0 + s.ok,
                acc.1 + s.refused,
                acc.2 + s.errors,
                acc.3 + s.lines,
            )
        })
    }
}

/// One operation's figures in a report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpSummary {
    pub op: String,
    pub requests: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    pub rate_per_s: f64,
    pub lines_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_latencies() {
        let progress = Arc::new(Progress::default());
        let mut a = Recorder::new(Arc::clone(&progress));
        let mut b = Recorder::new(Arc::clone(&progress));
        a.record(Op::Reserve, Outcome::Ok, Duration::from_micros(100), 1);
        b.record(Op::Reserve, Outcome::Refused, Duration::from_micros(300), 1);
        b.record(Op::PosSale, Outcome::Error, Duration::from_millis(2), 1);
        a.merge(b);
        let summary = a.summary(Duration::from_secs(1));
        assert_eq!(summary.len(), 2);
        let reserve = summary.iter().find(|s| s.op == "reserve").expect("reserve");
        assert_eq!((reserve.ok, reserve.refused, reserve.errors), (1, 1, 0));
        assert_eq!(reserve.lines_per_s, 1.0);
        assert!((0.29..0.31).contains(&reserve.max_ms), "{}", reserve.max_ms);
        let sale = summary.iter().find(|s| s.op == "pos.sale").expect("sale");
        assert_eq!(sale.errors, 1);
        assert_eq!(progress.requests.load(Ordering::Relaxed), 3);
        assert_eq!(progress.errors.load(Ordering::Relaxed), 1);
        assert_eq!(a.totals(), (1, 1, 1, 1));
    }
}
