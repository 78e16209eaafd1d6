//! `loadtest fixed`: one fixed request in a closed loop, as wrk with a Lua
//! script did it (the bench scripts' generator). Every connection sends the
//! same request again as soon as the previous one is answered; the slice
//! reports requests, statuses and latency. `paired` measures with it, `flood`
//! floods with it, and `bench/instructions.sh` counts requests with it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::driver::{Flow, Mode, Worker, drive};
use crate::http_client::{Call, Conn, Endpoint};
use crate::stats::histogram;

/// The request a slice repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixedRequest {
    /// `POST /v1/reservations`: one line, one unit (default HOT at WH-NORD).
    Reserve,
    /// `GET /v1/stock/{location}/{sku}` (default SKU-00042 at WH-NORD).
    Read,
}

impl FixedRequest {
    pub fn name(self) -> &'static str {
        match self {
            FixedRequest::Reserve => "reserve",
            FixedRequest::Read => "read",
        }
    }

    /// The position the request names unless told otherwise: the demo data
    /// set's (`omnistock serve --demo`).
    pub fn default_position(self) -> (&'static str, &'static str) {
        match self {
            FixedRequest::Reserve => ("HOT", "WH-NORD"),
            FixedRequest::Read => ("SKU-00042", "WH-NORD"),
        }
    }
}

/// A request ready to be sent again and again.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub key: Option<HeaderValue>,
}

impl Prepared {
    /// `sku`/`location` default to the request's demo position.
    pub fn new(
        request: FixedRequest,
        sku: Option<&str>,
        location: Option<&str>,
        hold_ttl_s: u64,
        key: Option<HeaderValue>,
    ) -> Prepared {
        let (default_sku, default_location) = request.default_position();
        let sku = sku.unwrap_or(default_sku);
        let location = location.unwrap_or(default_location);
        match request {
            FixedRequest::Reserve => Prepared {
                method: Method::POST,
                path: "/v1/reservations".into(),
                body: Some(Bytes::from(format!(
                    r#"{{"channel":"web","lines":[{{"sku":"{sku}","location":"{location}","qty":1}}],"ttl_seconds":{hold_ttl_s}}}"#
                ))),
                key,
            },
            FixedRequest::Read => Prepared {
                method: Method::GET,
                path: format!("/v1/stock/{location}/{sku}"),
                body: None,
                key,
            },
        }
    }

    fn call(&self) -> Call<'_> {
        Call {
            method: self.method.clone(),
            path: &self.path,
            body: self.body.clone().map(|b| ("application/json", b)),
            key: self.key.as_ref(),
        }
    }
}

/// What one connection saw.
pub struct Tally {
    pub ok: u64,
    /// 429: refused by the rate limit.
    pub rate_limited: u64,
    /// Any other non-2xx status.
    pub other_status: u64,
    /// No answer: connection error or timeout.
    pub failed: u64,
    pub latency_us: Histogram<u64>,
    pub first_problem: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            rate_limited: 0,
            other_status: 0,
            failed: 0,
            latency_us: histogram(),
            first_problem: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.rate_limited += other.rate_limited;
        self.other_status += other.other_status;
        self.failed += other.failed;
        let _ = self.latency_us.add(&other.latency_us);
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

struct FixedWorker {
    conn: Conn,
    request: Arc<Prepared>,
    tally: Tally,
}

impl Worker for FixedWorker {
    async fn iteration(&mut self, scheduled: Instant) -> Flow {
        let result = self.conn.call(self.request.call()).await;
        let us = (scheduled.elapsed().as_micros() as u64).max(1);
        let _ = self.tally.latency_us.record(us.min(60_000_000));
        let problem = match result {
            Ok(reply) if reply.status.is_success() => {
                self.tally.ok += 1;
                None
            }
            Ok(reply) if reply.status.as_u16() == 429 => {
                self.tally.rate_limited += 1;
                None
            }
            Ok(reply) => {
                self.tally.other_status += 1;
                let body = &reply.body[..reply.body.len().min(200)];
                Some(format!(
                    "{} {}",
                    reply.status,
                    String::from_utf8_lossy(body)
                ))
            }
            Err(error) => {
                self.tally.failed += 1;
                Some(error.to_string())
            }
        };
        if self.tally.first_problem.is_none() {
            self.tally.first_problem = problem;
        }
        Flow::Continue
    }
}

/// One slice's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SliceResult {
    pub requests: u64,
    pub ok: u64,
    pub rate_limited: u64,
    pub other_status: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Answered requests (any status) per second.
    pub rate_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_problem: Option<String>,
}

impl SliceResult {
    fn from_tally(tally: &Tally, elapsed: Duration) -> SliceResult {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let answered = tally.ok + tally.rate_limited + tally.other_status;
        let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1000.0;
        SliceResult {
            requests: answered + tally.failed,
            ok: tally.ok,
            rate_limited: tally.rate_limited,
            other_status: tally.other_status,
            failed: tally.failed,
            seconds,
            rate_per_s: answered as f64 / seconds,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: tally.latency_us.max() as f64 / 1000.0,
            first_problem: tally.first_problem.clone(),
        }
    }

    /// Requests that did not get a 2xx or a 429.
    pub fn unexpected(&self) -> u64 {
        self.other_status + self.failed
    }

    /// One line; starts "N requests in S s" as wrk's summary does.
    pub fn line(&self) -> String {
        format!(
            "{} requests in {:.1} s = {:.0} req/s; 2xx {}, 429 {}, other status {}, no answer {}; p50 {:.3} / p99 {:.3} / max {:.3} ms{}",
            self.requests,
            self.seconds,
            self.rate_per_s,
            self.ok,
            self.rate_limited,
            self.other_status,
            self.failed,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.first_problem
                .as_deref()
                .map(|p| format!("; first problem: {p}"))
                .unwrap_or_default()
        )
    }
}

/// Sends `request` over `connections` fresh connections for `duration`,
/// closed loop.
pub async fn slice(
    endpoint: &Endpoint,
    request: &Arc<Prepared>,
    connections: usize,
    duration: Duration,
    timeout: Duration,
) -> SliceResult {
    let workers: Vec<FixedWorker> = (0..connections.max(1))
        .map(|_| FixedWorker {
            conn: Conn::new(endpoint.clone(), timeout),
            request: Arc::clone(request),
            tally: Tally::new(),
        })
        .collect();
    let (workers, elapsed) = drive(workers, Mode::Closed, duration, None).await;
    let mut total = Tally::new();
    for worker in workers {
        total.merge(worker.tally);
    }
    SliceResult::from_tally(&total, elapsed)
}
