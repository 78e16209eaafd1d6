//! The two load modes. Closed loop: every connection sends its next request as
//! soon as the previous one is answered (maximum throughput). Open loop: a
//! fixed rate spread over the connections on a precomputed schedule, with
//! latency measured from each request's *scheduled* send time, so a server
//! that stalls is charged for the requests it delayed (no coordinated
//! omission, as wrk2 does it).

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::Progress;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Closed,
    Open { rate_per_s: f64 },
}

/// What an iteration says about the work left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The scenario has nothing more to do (e.g. every flash-sale buyer tried).
    Done,
}

/// One connection's worth of work; `scheduled` is when the iteration should
/// have started (open loop) or when it did (closed loop).
pub trait Worker: Send + 'static {
    fn iteration(&mut self, scheduled: Instant) -> impl Future<Output = Flow> + Send;
}

/// The open-loop schedule: connection `k` of `connections` at `rate_per_s`
/// sends its `j`-th request at `offset + k / rate + j * connections / rate`,
/// so the sends of all connections interleave evenly.
pub fn scheduled_at(rate_per_s: f64, connections: usize, k: usize, j: u64) -> Duration {
    let interval_s = connections as f64 / rate_per_s;
    Duration::from_secs_f64(k as f64 / rate_per_s + j as f64 * interval_s)
}

/// One connection's task: iterations until the deadline (or a scenario out
/// of work, which stops every task); returns the worker.
fn spawn_worker<W: Worker>(
    mut worker: W,
    k: usize,
    connections: usize,
    mode: Mode,
    start: Instant,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<W> {
    tokio::spawn(async move {
        let mut j: u64 = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let scheduled = match mode {
                Mode::Closed => Instant::now(),
                Mode::Open { rate_per_s } => start + scheduled_at(rate_per_s, connections, k, j),
            };
            if scheduled >= deadline || Instant::now() >= deadline {
                break;
            }
            if scheduled > Instant::now() {
                tokio::time::sleep_until(scheduled).await;
            }
            j += 1;
            if worker.iteration(scheduled).await == Flow::Done {
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        worker
    })
}

/// Ends the progress line: a newline on a terminal, the phase's totals in a log.
fn end_progress(progress: &Progress, label: &str, elapsed: Duration) {
    if std::io::stderr().is_terminal() {
        eprintln!();
    } else {
        // A log gets the phase's end too, not only its 5 s marks.
        let requests = progress.requests.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        eprintln!(
            "{label} done: {requests} req in {seconds:.1} s ({:.0} req/s), errors {errors}",
            requests as f64 / seconds.max(1e-9)
        );
    }
}

/// Runs `workers` (one task each) for `duration`; returns them with their
/// recorders filled, and the time the phase took.
pub async fn drive<W: Worker>(
    workers: Vec<W>,
    mode: Mode,
    duration: Duration,
    progress: Option<(Arc<Progress>, String)>,
) -> (Vec<W>, Duration) {
    let connections = workers.len();
    let start = Instant::now();
    let deadline = start + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(k, worker)| {
            let stop = Arc::clone(&stop);
            spawn_worker(worker, k, connections, mode, start, deadline, stop)
        })
        .collect();
    let reporter = progress.map(|(progress, label)| {
        let task = tokio::spawn(report_progress(
            Arc::clone(&progress),
            label.clone(),
            start,
            duration,
        ));
        (task, progress, label)
    });
    let mut workers = Vec::with_capacity(connections);
    for task in tasks {
        if let Ok(worker) = task.await {
            workers.push(worker);
        }
    }
    let elapsed = start.elapsed();
    if let Some((reporter, progress, label)) = reporter {
        reporter.abort();
        end_progress(&progress, &label, elapsed);
    }
    (workers, elapsed)
}

/// How often the progress line is printed when stderr is not a terminal (a
/// CI log, a file): one line per this many seconds, not a redraw per second.
pub const LOG_PROGRESS_EVERY_S: u64 = 5;

/// A progress line on stderr: redrawn every second on a terminal, printed
/// every `LOG_PROGRESS_EVERY_S` otherwise (with the rate over that window).
async fn report_progress(progress: Arc<Progress>, label: String, start: Instant, total: Duration) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { 1 } else { LOG_PROGRESS_EVERY_S };
    let mut last = 0u64;
    let mut ticks = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        ticks += 1;
        if !ticks.is_multiple_of(every) {
            continue;
        }
        let now = progress.requests.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        let width = 30usize;
        let done =
            ((elapsed / total.as_secs_f64().max(1e-9)) * width as f64).min(width as f64) as usize;
        let line = format!(
            "{label} [{}{}] {:>4.0}/{:.0} s  {:>10} req  {:>9.0} req/s  errors {}",
            "#".repeat(done),
            ".".repeat(width - done),
            elapsed,
            total.as_secs_f64(),
            now,
            (now - last) as f64 / every as f64,
            errors
        );
        last = now;
        if terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spreads_sends_evenly_over_connections() {
        // 1,000/s over 4 connections: one send every 1 ms overall, every 4 ms per connection.
        let at = |k, j| scheduled_at(1_000.0, 4, k, j).as_micros();
        assert_eq!(at(0, 0), 0);
        assert_eq!(at(1, 0), 1_000);
        assert_eq!(at(3, 0), 3_000);
        assert_eq!(at(0, 1), 4_000);
        assert_eq!(at(2, 5), 22_000);
        let mut all: Vec<u128> = (0..4)
            .flat_map(|k| (0..25).map(move |j| at(k, j)))
            .collect();
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[1] - w[0] == 1_000));
    }
}
