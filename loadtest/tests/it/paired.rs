//! `paired`, `fixed` and `flood`: their arguments, the fixed-request
//! generator against an in-process no-op and engine, and the statistics
//! (median, bootstrap interval, per-round ratios). No figure of the machine
//! is asserted.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use loadtest::cli::{Cli, Command, FixedArgs, FloodArgs, PairedArgs};
use loadtest::fixed::{FixedRequest, Prepared, SliceResult, slice};
use loadtest::flood::limits;
use loadtest::http_client::{Endpoint, bearer};
use loadtest::paired::{
    SliceRecord, bootstrap_median_interval, median, parse_engine, ratio_summary, steady_state_note,
    summarize,
};

use crate::support::{ADMIN, engine};

fn paired_args(args: &[&str]) -> Result<PairedArgs, String> {
    let argv = ["loadtest", "paired"].iter().chain(args);
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Command::Paired(args) => Ok(args),
        other => Err(format!("not paired: {other:?}")),
    }
}

fn fixed_args(args: &[&str]) -> FixedArgs {
    let argv = ["loadtest", "fixed"].iter().chain(args);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Fixed(args) => args,
        other => panic!("not fixed: {other:?}"),
    }
}

fn flood_args(args: &[&str]) -> FloodArgs {
    let argv = ["loadtest", "flood"].iter().chain(args);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Flood(args) => args,
        other => panic!("not flood: {other:?}"),
    }
}

fn default_engine() -> Result<std::path::PathBuf, String> {
    Ok("/opt/omnistock".into())
}

#[test]
fn engines_are_label_equals_binary() {
    assert_eq!(
        parse_engine("base=/tmp/omnistock-old").expect("valid"),
        ("base".to_string(), "/tmp/omnistock-old".into())
    );
    assert_eq!(
        parse_engine("v1.2_x=target/a=b")
            .expect("only the first = splits")
            .1,
        std::path::PathBuf::from("target/a=b")
    );
    for bad in [
        "target/release/omnistock",
        "=bin",
        "a b=bin",
        "noop=bin",
        "x=",
    ] {
        assert!(parse_engine(bad).is_err(), "{bad} must be refused");
    }
}

#[test]
fn paired_defaults_alternate_reservations_and_reads_against_the_current_binary() {
    let config = paired_args(&[])
        .expect("parses")
        .config(default_engine)
        .expect("valid");
    assert_eq!(
        config.engines,
        vec![("current".to_string(), "/opt/omnistock".into())]
    );
    assert_eq!(
        config.requests,
        vec![FixedRequest::Reserve, FixedRequest::Read]
    );
    assert_eq!(config.rounds, 8);
    assert_eq!(config.slice, Duration::from_secs(2));
    assert_eq!(config.warmup, Duration::ZERO);
    assert_eq!(config.connections, 64);
    assert_eq!(config.hold_ttl_s, 60);
    assert!(config.noop_bin.is_none());
}

#[test]
fn paired_takes_several_engines_a_warm_up_and_a_request_list() {
    let args = paired_args(&[
        "--engine",
        "base=/a",
        "--engine",
        "run=/b",
        "--requests",
        "reserve",
        "--rounds",
        "12",
        "--warmup-s",
        "65",
        "--slice-s",
        "5",
        "--noop-bin",
        "/n",
        "--no-pin",
    ])
    .expect("parses");
    let config = args.config(|| Err("not asked for".into())).expect("valid");
    let labels: Vec<&str> = config.engines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["base", "run"]);
    assert_eq!(config.requests, vec![FixedRequest::Reserve]);
    assert_eq!(
        (config.rounds, config.slice, config.warmup),
        (12, Duration::from_secs(5), Duration::from_secs(65))
    );
    assert_eq!(config.noop_bin, Some("/n".into()));
    assert!(!config.pin);
}

#[test]
fn paired_refuses_what_cannot_be_measured() {
    assert!(paired_args(&["--engine", "nolabel"]).is_err());
    assert!(paired_args(&["--requests", "write"]).is_err());
    assert!(paired_args(&["--slice-s", "-1"]).is_err());
    for bad in [
        &["--engine", "a=/x", "--engine", "a=/y"][..],
        &["--rounds", "0"],
        &["--slice-s", "0"],
        &["--connections", "0"],
        &["--warmup-s", "100000"],
    ] {
        let args = paired_args(bad).expect("parses");
        assert!(
            args.config(default_engine).is_err(),
            "{bad:?} must be refused"
        );
    }
    let missing = paired_args(&[]).expect("parses");
    let error = missing
        .config(|| Err("omnistock binary not found".into()))
        .expect_err("no engine to measure");
    assert!(error.contains("not found"), "{error}");
}

#[test]
fn fixed_and_flood_arguments() {
    let fixed = fixed_args(&[
        "--url",
        "http://127.0.0.1:1",
        "--request",
        "read",
        "--duration-s",
        "3",
    ]);
    assert_eq!(fixed.request, FixedRequest::Read);
    assert_eq!(fixed.duration().expect("valid"), Duration::from_secs(3));
    assert_eq!(fixed.connections, 64);
    let zero = fixed_args(&["--url", "http://x", "--connections", "0"]);
    assert!(zero.duration().is_err());
    let flood = flood_args(&[
        "--serve-arg=--rate-limited-delay-ms",
        "--serve-arg",
        "0",
        "--duration-s",
        "4",
    ]);
    assert_eq!(flood.serve_args, ["--rate-limited-delay-ms", "0"]);
    assert_eq!(flood.duration_s, 4.0);
    assert_eq!(
        limits(1_000.0),
        (2_000, 100),
        "twice the good rate, 50 ms of it as burst"
    );
    assert_eq!(limits(10.0), (20, 1));
}

#[test]
fn prepared_requests_name_their_position() {
    let key = bearer(ADMIN).ok();
    let reserve = Prepared::new(FixedRequest::Reserve, None, None, 60, key.clone());
    assert_eq!(reserve.path, "/v1/reservations");
    let body = String::from_utf8(reserve.body.expect("a body").to_vec()).expect("utf-8");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["lines"][0]["sku"], "HOT");
    assert_eq!(json["lines"][0]["location"], "WH-NORD");
    assert_eq!(json["ttl_seconds"], 60);
    let read = Prepared::new(FixedRequest::Read, Some("S-1"), Some("L-2"), 60, key);
    assert_eq!(read.path, "/v1/stock/L-2/S-1");
    assert!(read.body.is_none());
}

#[test]
fn medians_and_bootstrap_intervals() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(bootstrap_median_interval(&[], 1000, 1), None);
    assert_eq!(bootstrap_median_interval(&[1.0], 0, 1), None);
    assert_eq!(
        bootstrap_median_interval(&[7.0; 5], 1000, 1),
        Some((7.0, 7.0))
    );
    let values: Vec<f64> = (1..=21).map(f64::from).collect();
    let (lo, hi) = bootstrap_median_interval(&values, 10_000, 1).expect("interval");
    assert!(lo < 11.0 && 11.0 < hi, "{lo}-{hi} holds the median");
    assert!(
        lo >= 1.0 && hi <= 21.0 && lo > 5.0 && hi < 17.0,
        "{lo}-{hi}"
    );
    assert_eq!(
        bootstrap_median_interval(&values, 10_000, 1),
        Some((lo, hi)),
        "seeded: the same interval every time"
    );
    let wide: Vec<f64> = values.iter().map(|v| v * 10.0).collect();
    let (wide_lo, wide_hi) = bootstrap_median_interval(&wide, 10_000, 1).expect("interval");
    assert!(
        wide_hi - wide_lo > hi - lo,
        "a wider spread, a wider interval"
    );
}

fn record(round: usize, label: &str, rate: f64) -> SliceRecord {
    SliceRecord {
        round,
        request: FixedRequest::Reserve,
        label: label.into(),
        result: SliceResult {
            requests: rate as u64,
            ok: rate as u64,
            rate_limited: 0,
            other_status: 0,
            failed: 0,
            seconds: 1.0,
            rate_per_s: rate,
            p50_ms: rate / 1000.0,
            p99_ms: rate / 100.0,
            max_ms: rate / 10.0,
            first_problem: None,
        },
    }
}

#[test]
fn ratios_are_taken_round_by_round() {
    let slices = vec![
        record(1, "noop", 100.0),
        record(1, "a", 90.0),
        record(1, "b", 45.0),
        record(2, "noop", 200.0),
        record(2, "a", 180.0),
        record(2, "b", 180.0),
        record(3, "noop", 100.0),
        record(3, "a", 80.0),
        // b has no slice in round 3: that round gives b no ratio.
    ];
    let a = ratio_summary(&slices, FixedRequest::Reserve, "a", "noop", 1000).expect("ratios");
    assert_eq!(a.per_round, [90.0, 90.0, 80.0]);
    assert_eq!(a.median, 90.0);
    assert!(a.low <= a.median && a.median <= a.high);
    assert!(ratio_summary(&slices, FixedRequest::Read, "a", "noop", 1000).is_none());
    let labels = ["noop", "a", "b"].map(String::from);
    let summaries = summarize(&slices, &labels, &[FixedRequest::Reserve], 1000);
    assert_eq!(summaries.len(), 3);
    assert!(summaries[0].ratios.is_empty(), "the no-op is the reference");
    assert_eq!(summaries[0].median_rate, 100.0);
    let references: Vec<&str> = summaries[1]
        .ratios
        .iter()
        .map(|r| r.reference.as_str())
        .collect();
    assert_eq!(references, ["noop"]);
    let b = &summaries[2];
    let references: Vec<&str> = b.ratios.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(
        references,
        ["noop", "a"],
        "later engines against the first too"
    );
    assert_eq!(b.ratios[0].per_round, [45.0, 90.0]);
    assert_eq!(b.ratios[1].per_round, [50.0, 100.0]);
    assert_eq!(b.rates, [45.0, 180.0]);
    assert_eq!(b.median_rate, 112.5);
}

#[test]
fn steady_state_wants_rounds_that_divide_the_hold_ttl() {
    // One engine and the no-op, reservations only, 10 s slices: 20 s rounds.
    assert_eq!(steady_state_note(10.0, 2, 1, 60), None);
    assert_eq!(steady_state_note(5.0, 3, 2, 60), None);
    assert!(steady_state_note(2.0, 2, 2, 60).is_some(), "8 s rounds");
    assert!(
        steady_state_note(40.0, 2, 1, 60).is_some(),
        "longer than the TTL"
    );
}

async fn serve_noop() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, loadtest::targets::noop::router()).await;
    });
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_generator_counts_answers_by_status() {
    let (addr, server) = serve_noop().await;
    let endpoint = Endpoint::parse(&format!("http://{addr}"))
        .await
        .expect("endpoint");
    let timeout = Duration::from_secs(10);
    for request in [FixedRequest::Reserve, FixedRequest::Read] {
        let prepared = Arc::new(Prepared::new(request, None, None, 60, bearer(ADMIN).ok()));
        let result = slice(&endpoint, &prepared, 4, Duration::from_millis(300), timeout).await;
        assert!(result.ok > 0, "{}", result.line());
        assert_eq!(result.unexpected(), 0, "{}", result.line());
        assert_eq!(result.requests, result.ok);
        assert!(
            result
                .line()
                .starts_with(&format!("{} requests in ", result.requests))
        );
    }
    server.abort();
    // The engine knows no HOT at WH-NORD: every reservation is refused, and counted so.
    let engine = engine().await;
    let endpoint = Endpoint::parse(&format!("http://{}", engine.addr))
        .await
        .expect("endpoint");
    let prepared = Arc::new(Prepared::new(
        FixedRequest::Reserve,
        None,
        None,
        60,
        bearer(ADMIN).ok(),
    ));
    let result = slice(&endpoint, &prepared, 2, Duration::from_millis(300), timeout).await;
    assert!(
        result.other_status > 0 && result.ok == 0,
        "{}",
        result.line()
    );
    assert!(result.first_problem.is_some(), "{}", result.line());
    engine.shutdown().await.expect("shutdown");
}
