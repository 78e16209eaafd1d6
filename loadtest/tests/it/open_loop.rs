//! The open-loop timer: sends follow the schedule, and a slow server is
//! charged for the requests it delayed (latency from the scheduled send time,
//! no coordinated omission). Tokio's paused clock makes the figures exact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadtest::driver::{Flow, Mode, Worker, drive};
use tokio::time::Instant;

/// A "server" that takes 20 ms per request; records (scheduled, latency).
struct Slow {
    log: Arc<Mutex<Vec<(Instant, Duration)>>>,
}

impl Worker for Slow {
    async fn iteration(&mut self, scheduled: Instant) -> Flow {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let latency = scheduled.elapsed();
        self.log.lock().expect("log").push((scheduled, latency));
        Flow::Continue
    }
}

async fn run(mode: Mode, duration: Duration) -> (Instant, Vec<(Instant, Duration)>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    drive(
        vec![Slow {
            log: Arc::clone(&log),
        }],
        mode,
        duration,
        None,
    )
    .await;
    let entries = log.lock().expect("log").clone();
    (start, entries)
}

#[tokio::test(start_paused = true)]
async fn open_loop_charges_queueing_from_the_scheduled_time() {
    // 200/s on one connection: a send every 5 ms, but each takes 20 ms.
    let (start, log) = run(Mode::Open { rate_per_s: 200.0 }, Duration::from_millis(500)).await;
    assert!(log.len() >= 20, "{} iterations", log.len());
    for (j, (scheduled, latency)) in log.iter().enumerate() {
        assert_eq!(
            scheduled.duration_since(start),
            Duration::from_millis(5 * j as u64),
            "send {j} is scheduled on the 5 ms grid"
        );
        // Started 15 ms later than scheduled for every send before it, plus its own 20 ms.
        assert_eq!(
            *latency,
            Duration::from_millis(20 + 15 * j as u64),
            "latency of send {j} includes its wait in the queue"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn open_loop_waits_for_the_schedule_when_the_server_is_fast() {
    // 20/s on one connection: a send every 50 ms; each takes 20 ms, so no queueing.
    let (start, log) = run(Mode::Open { rate_per_s: 20.0 }, Duration::from_millis(500)).await;
    assert_eq!(log.len(), 10, "one send per 50 ms over 500 ms");
    for (j, (scheduled, latency)) in log.iter().enumerate() {
        assert_eq!(
            scheduled.duration_since(start),
            Duration::from_millis(50 * j as u64)
        );
        assert_eq!(*latency, Duration::from_millis(20));
    }
}

#[tokio::test(start_paused = true)]
async fn closed_loop_sends_back_to_back() {
    let (_, log) = run(Mode::Closed, Duration::from_millis(500)).await;
    assert_eq!(log.len(), 25, "500 ms / 20 ms");
    assert!(
        log.iter()
            .all(|(_, latency)| *latency == Duration::from_millis(20))
    );
}

#[tokio::test(start_paused = true)]
async fn connections_interleave_on_the_schedule() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let workers = (0..4)
        .map(|_| Slow {
            log: Arc::clone(&log),
        })
        .collect();
    // 100/s over 4 connections, each able to do 50/s: no queueing.
    drive(
        workers,
        Mode::Open { rate_per_s: 100.0 },
        Duration::from_millis(400),
        None,
    )
    .await;
    let mut sends: Vec<Duration> = log
        .lock()
        .expect("log")
        .iter()
        .map(|(s, _)| s.duration_since(start))
        .collect();
    sends.sort();
    assert_eq!(sends.len(), 40);
    for (i, at) in sends.iter().enumerate() {
        assert_eq!(*at, Duration::from_millis(10 * i as u64));
    }
}
