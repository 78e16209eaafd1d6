//! `loadtest paired`: omnistock binaries next to the no-op ceiling, slice by
//! slice. Every server runs at once (pinned to core 0 with 2+ cores, the
//! generator on core 1); each round loads every server in turn for one
//! slice of each request (a fixed single-line reservation, a fixed read), so
//! the slow swings of a shared host hit every server alike. A round gives
//! one ratio per engine (its slice over the no-op's slice of the same
//! round); the report is the median ratio with a bootstrap interval. With a
//! warm-up of continuous reservations first (65 s, 60 s holds), the engines
//! are measured in steady state: holds expire as fast as they are granted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fixed::{FixedRequest, Prepared, SliceResult, slice};
use crate::http_client::{Call, Conn, Endpoint, bearer};
use crate::rng::Rng;
use crate::targets::{self, ServerSpec, SpawnOptions, Spawned, Target};

/// The reference every engine is divided by.
pub const NOOP: &str = "noop";

#[derive(Clone, Debug)]
pub struct PairedConfig {
    /// (label, omnistock binary), in order.
    pub engines: Vec<(String, PathBuf)>,
    pub requests: Vec<FixedRequest>,
    pub rounds: usize,
    pub slice: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub hold_ttl_s: u64,
    /// Another no-op build (e.g. `examples/noop_server`); `None`: `serve-noop`.
    pub noop_bin: Option<PathBuf>,
    pub pin: bool,
    pub resamples: usize,
    pub log_dir: PathBuf,
}

/// `LABEL=BINARY`: a label of letters, digits, `-`, `_` or `.`, not `noop`.
pub fn parse_engine(text: &str) -> Result<(String, PathBuf), String> {
    let (label, binary) = text
        .split_once('=')
        .ok_or_else(|| format!("expected LABEL=BINARY, found {text:?}"))?;
    let label_ok = !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !label_ok {
        return Err(format!(
            "label {label:?}: letters, digits, '-', '_' or '.' only"
        ));
    }
    if label == NOOP {
        return Err(format!("the label {NOOP:?} names the ceiling"));
    }
    if binary.is_empty() {
        return Err(format!("{label}: no binary"));
    }
    Ok((label.to_string(), PathBuf::from(binary)))
}

/// The median (the mean of the middle two of an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The 95 % percentile bootstrap interval of the median: the medians of
/// `resamples` resamples (with replacement, seeded), their 2.5th and 97.5th
/// percentiles. `None` if `values` or `resamples` is empty.
pub fn bootstrap_median_interval(
    values: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut sample = vec![0.0; values.len()];
    let mut medians: Vec<f64> = (0..resamples)
        .map(|_| {
            for slot in sample.iter_mut() {
                *slot = values[rng.below(values.len())];
            }
            median(&sample).unwrap_or(f64::NAN)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let cut = resamples * 25 / 1000;
    Some((medians[cut], medians[resamples - 1 - cut]))
}

/// One slice: a server, a request, a round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SliceRecord {
    pub round: usize,
    pub request: FixedRequest,
    pub label: String,
    pub result: SliceResult,
}

/// A label's rate over a reference's, round by round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RatioSummary {
    pub reference: String,
    /// In %, one per round both were measured in.
    pub per_round: Vec<f64>,
    pub median: f64,
    /// The 95 % bootstrap interval of the median.
    pub low: f64,
    pub high: f64,
}

/// The rates of `label`'s slices of `request`, by round.
fn rates(slices: &[SliceRecord], request: FixedRequest, label: &str) -> Vec<(usize, f64)> {
    slices
        .iter()
        .filter(|s| s.request == request && s.label == label)
        .map(|s| (s.round, s.result.rate_per_s))
        .collect()
}

/// `label` over `reference`, per round (in %), with the median and its interval.
pub fn ratio_summary(
    slices: &[SliceRecord],
    request: FixedRequest,
    label: &str,
    reference: &str,
    resamples: usize,
) -> Option<RatioSummary> {
    let reference_rates = rates(slices, request, reference);
    let per_round: Vec<f64> = rates(slices, request, label)
        .into_iter()
        .filter_map(|(round, rate)| {
            let (_, base) = reference_rates.iter().find(|(r, _)| *r == round)?;
            (*base > 0.0).then(|| 100.0 * rate / base)
        })
        .collect();
    let median = median(&per_round)?;
    let (low, high) = bootstrap_median_interval(&per_round, resamples, 1)?;
    Some(RatioSummary {
        reference: reference.to_string(),
        per_round,
        median,
        low,
        high,
    })
}

/// One server and request over every round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelSummary {
    pub request: FixedRequest,
    pub label: String,
    pub rates: Vec<f64>,
    pub median_rate: f64,
    pub median_p50_ms: f64,
    pub median_p99_ms: f64,
    /// Over the no-op, then (for the second engine on) over the first engine.
    pub ratios: Vec<RatioSummary>,
}

/// `labels[0]` is the no-op; every other label is divided by it, and from
/// the third on also by `labels[1]` (the first engine).
pub fn summarize(
    slices: &[SliceRecord],
    labels: &[String],
    requests: &[FixedRequest],
    resamples: usize,
) -> Vec<LabelSummary> {
    let mut out = Vec::new();
    for request in requests {
        for (i, label) in labels.iter().enumerate() {
            let mine: Vec<&SliceResult> = slices
                .iter()
                .filter(|s| s.request == *request && s.label == *label)
                .map(|s| &s.result)
                .collect();
            let column =
                |f: fn(&SliceResult) -> f64| median(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
            let Some(median_rate) = column(|r| r.rate_per_s) else {
                continue;
            };
            let references = labels.iter().take(i.min(2));
            let ratios = references
                .filter_map(|reference| {
                    ratio_summary(slices, *request, label, reference, resamples)
                })
                .collect();
            out.push(LabelSummary {
                request: *request,
                label: label.clone(),
                rates: mine.iter().map(|r| r.rate_per_s).collect(),
                median_rate,
                median_p50_ms: column(|r| r.p50_ms).unwrap_or(0.0),
                median_p99_ms: column(|r| r.p99_ms).unwrap_or(0.0),
                ratios,
            });
        }
    }
    out
}

/// The summary for people: one line per request and server.
pub fn table(summaries: &[LabelSummary]) -> String {
    let mut out = String::new();
    for s in summaries {
        let ratios: Vec<String> = s
            .ratios
            .iter()
            .map(|r| {
                format!(
                    "vs {} {:.1} % (95 % bootstrap {:.1}-{:.1})",
                    r.reference, r.median, r.low, r.high
                )
            })
            .collect();
        let runs: Vec<String> = s.rates.iter().map(|r| format!("{r:.0}")).collect();
        out.push_str(&format!(
            "{:<8} {:<12} median {:>9.0} req/s  p50 {:.3} / p99 {:.3} ms  {}  runs {}\n",
            s.request.name(),
            s.label,
            s.median_rate,
            s.median_p50_ms,
            s.median_p99_ms,
            ratios.join("  "),
            runs.join(" ")
        ));
    }
    out
}

/// In steady state an engine's reservation slices should recur at a period
/// that divides the hold TTL, so each sweeps as many expired holds as it
/// grants; a note when they do not.
pub fn steady_state_note(
    slice_s: f64,
    servers: usize,
    requests: usize,
    hold_ttl_s: u64,
) -> Option<String> {
    let cycle = slice_s * (servers * requests) as f64;
    let turns = hold_ttl_s as f64 / cycle;
    ((turns - turns.round()).abs() > 1e-6 || turns < 1.0).then(|| {
        format!(
            "note: a round takes {cycle} s, which does not divide the {hold_ttl_s} s hold TTL: the engines' reservation slices will not sweep as many expired holds as they grant"
        )
    })
}

/// Everything `paired` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairedReport {
    pub command: String,
    pub pinned: bool,
    pub rounds: usize,
    pub slice_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub labels: Vec<String>,
    /// "held N, rss M MB" per engine, after the warm-up and at the end.
    pub states: Vec<String>,
    pub slices: Vec<SliceRecord>,
    pub summaries: Vec<LabelSummary>,
    /// Slices with requests answered neither 2xx nor at all.
    pub unexpected: u64,
}

/// A started server.
struct Server {
    label: String,
    spawned: Spawned,
    endpoint: Endpoint,
    engine: bool,
}

fn spawn_options(config: &PairedConfig) -> SpawnOptions {
    SpawnOptions {
        pin_core: config.pin.then_some(0),
        omnistock_bin: None,
        redis_server: "redis-server".into(),
        loadtest_bin: None,
        log_dir: config.log_dir.clone(),
    }
}

async fn start_noop(config: &PairedConfig, options: &SpawnOptions) -> Result<Spawned, String> {
    let Some(program) = &config.noop_bin else {
        return targets::spawn(Target::Noop, options).await;
    };
    let port = targets::free_port()?;
    let spec = ServerSpec {
        name: NOOP,
        program,
        args: vec![format!("127.0.0.1:{port}")],
        env: Vec::new(),
        port,
        ready_path: "/v1/stock/A/B",
        admin_key: String::new(),
    };
    targets::spawn_server(spec, options).await
}

/// omnistock with the demo data set, rate limiting off.
async fn start_engine(
    label: &str,
    program: &std::path::Path,
    options: &SpawnOptions,
) -> Result<Spawned, String> {
    let port = targets::free_port()?;
    let key = format!(
        "loadtest-admin-{:016x}",
        Rng::new(crate::dataset::unix_ms() ^ port as u64).next_u64()
    );
    let spec = ServerSpec {
        name: label,
        program,
        args: ["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")]
            .into_iter()
            .map(String::from)
            .chain(["--rate-limit-per-second".into(), "0".into()])
            .collect(),
        env: vec![("OMNISTOCK_ADMIN_KEY", key.clone())],
        port,
        ready_path: "/readyz",
        admin_key: key,
    };
    targets::spawn_server(spec, options).await
}

/// Enough stock on the reserved position that every reservation is granted.
async fn stock_hot(server: &Server) -> Result<(), String> {
    let key = bearer(&server.spawned.admin_key)?;
    let (sku, location) = FixedRequest::Reserve.default_position();
    let path = format!("/v1/stock/{location}/{sku}");
    let call = Call::json(
        hyper::Method::PUT,
        &path,
        Some(&key),
        r#"{"on_hand": 4000000000}"#.into(),
    );
    let mut conn = Conn::new(server.endpoint.clone(), Duration::from_secs(10));
    match conn.call(call).await {
        Ok(reply) if reply.status.is_success() => Ok(()),
        Ok(reply) => Err(format!("{}: PUT {path}: {}", server.label, reply.status)),
        Err(e) => Err(format!("{}: PUT {path}: {e}", server.label)),
    }
}

async fn start_servers(config: &PairedConfig) -> Result<Vec<Server>, String> {
    let options = spawn_options(config);
    let noop = start_noop(config, &options).await?;
    let mut servers = vec![Server {
        label: NOOP.into(),
        endpoint: Endpoint::parse(&noop.url).await?,
        spawned: noop,
        engine: false,
    }];
    for (label, program) in &config.engines {
        eprintln!("starting {label} ({})", program.display());
        let spawned = start_engine(label, program, &options).await?;
        let server = Server {
            label: label.clone(),
            endpoint: Endpoint::parse(&spawned.url).await?,
            spawned,
            engine: true,
        };
        stock_hot(&server).await?;
        servers.push(server);
    }
    Ok(servers)
}

/// "held N, rss M MB": units held on the reserved position, resident memory.
async fn engine_state(server: &Server) -> String {
    let (sku, location) = FixedRequest::Reserve.default_position();
    let path = format!("/v1/stock/{location}/{sku}");
    let key = bearer(&server.spawned.admin_key).ok();
    let mut conn = Conn::new(server.endpoint.clone(), Duration::from_secs(10));
    let held = match conn.call(Call::get(&path, key.as_ref())).await {
        Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v["reserved"].as_u64())
            .map_or("?".to_string(), |n| n.to_string()),
        Err(_) => "?".into(),
    };
    let rss_mb = server
        .spawned
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or("?".to_string(), |kb| (kb / 1024).to_string());
    format!("{}: held {held}, rss {rss_mb} MB", server.label)
}

/// Continuous reservations on every engine, then their state.
async fn warm_up(config: &PairedConfig, servers: &[Server], states: &mut Vec<String>) {
    if config.warmup.is_zero() {
        return;
    }
    for server in servers.iter().filter(|s| s.engine) {
        let request = prepared(config, FixedRequest::Reserve, server);
        let result = slice(
            &server.endpoint,
            &request,
            config.connections,
            config.warmup,
            TIMEOUT,
        )
        .await;
        eprintln!("warm-up {}: {}", server.label, result.line());
        let state = format!("after warm-up, {}", engine_state(server).await);
        eprintln!("{state}");
        states.push(state);
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn prepared(config: &PairedConfig, request: FixedRequest, server: &Server) -> Arc<Prepared> {
    // The no-op gets the same requests, Authorization header included.
    let key_owner = &server.spawned.admin_key;
    let key = bearer(if key_owner.is_empty() {
        "loadtest-admin-0000000000000000"
    } else {
        key_owner
    })
    .ok();
    Arc::new(Prepared::new(request, None, None, config.hold_ttl_s, key))
}

async fn measure_rounds(config: &PairedConfig, servers: &[Server]) -> Vec<SliceRecord> {
    let mut slices = Vec::new();
    for round in 1..=config.rounds {
        let mut line = format!("round {round}/{}:", config.rounds);
        for server in servers {
            for request in &config.requests {
                let prepared = prepared(config, *request, server);
                let result = slice(
                    &server.endpoint,
                    &prepared,
                    config.connections,
                    config.slice,
                    TIMEOUT,
                )
                .await;
                line.push_str(&format!(
                    " {} {} {:.0}",
                    server.label,
                    request.name(),
                    result.rate_per_s
                ));
                if result.unexpected() > 0 {
                    eprintln!("{} {}: {}", server.label, request.name(), result.line());
                }
                slices.push(SliceRecord {
                    round,
                    request: *request,
                    label: server.label.clone(),
                    result,
                });
            }
        }
        eprintln!("{line}");
    }
    slices
}

/// Starts the servers, warms the engines up, runs the rounds, summarizes.
pub async fn paired(config: &PairedConfig) -> Result<PairedReport, String> {
    let mut servers = start_servers(config).await?;
    let labels: Vec<String> = servers.iter().map(|s| s.label.clone()).collect();
    if !config.warmup.is_zero()
        && let Some(note) = steady_state_note(
            config.slice.as_secs_f64(),
            servers.len(),
            config.requests.len(),
            config.hold_ttl_s,
        )
    {
        eprintln!("{note}");
    }
    let mut states = Vec::new();
    warm_up(config, &servers, &mut states).await;
    let slices = measure_rounds(config, &servers).await;
    for server in servers.iter().filter(|s| s.engine) {
        states.push(format!("at the end, {}", engine_state(server).await));
    }
    for server in &mut servers {
        server.spawned.check_alive()?;
    }
    Ok(PairedReport {
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        pinned: config.pin,
        rounds: config.rounds,
        slice_s: config.slice.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        connections: config.connections,
        summaries: summarize(&slices, &labels, &config.requests, config.resamples),
        unexpected: slices.iter().map(|s| s.result.unexpected()).sum(),
        labels,
        states,
        slices,
    })
}

/// The report's header and table.
pub fn report_text(report: &PairedReport) -> String {
    let mut out = format!(
        "paired: {} rounds of {} s slices, {} connections{}{}\n",
        report.rounds,
        report.slice_s,
        report.connections,
        if report.warmup_s > 0.0 {
            format!(
                ", after {} s of reservations on each engine",
                report.warmup_s
            )
        } else {
            String::new()
        },
        if report.pinned {
            "; servers on core 0, generator on core 1"
        } else {
            "; not pinned"
        }
    );
    for state in &report.states {
        out.push_str(state);
        out.push('\n');
    }
    out.push_str(&table(&report.summaries));
    if report.unexpected > 0 {
        out.push_str(&format!(
            "{} requests were not answered 2xx (see the slices in the JSON report)\n",
            report.unexpected
        ));
    }
    out
}
