//! One run: start or reach the target, seed the data set, run the phases
//! (a warm-up, then closed loop, open loop at a fixed rate, or a rate sweep
//! at percentages of the measured maximum), audit, and return the report.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditReport};
use crate::book::Book;
use crate::dataset::{DataSet, DataSetConfig, unix_ms};
use crate::driver::{Mode, drive};
use crate::http_client::{Conn, Endpoints, bearer};
use crate::scenario::{Ctx, Mix, Scenario, ScenarioWorker, Weights};
use crate::seed;
use crate::stats::{OpSummary, Progress, Recorder};
use crate::targets::{self, SpawnOptions, Target};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: Target,
    /// A running target: one base URL, or several separated by commas (the
    /// nodes of a cluster, connections spread round-robin); `None`: the tool
    /// starts one.
    pub url: Option<String>,
    pub admin_key: Option<String>,
    pub scenario: Scenario,
    pub weights: Weights,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Open loop at this many scenario iterations per second (not requests:
    /// see `Scenario::unit`); `None`: closed loop.
    pub rate_per_s: Option<f64>,
    /// Open-loop phases at these percentages of the maximum.
    pub sweep_percent: Vec<f64>,
    /// The maximum for the sweep, in scenario iterations per second; `None`:
    /// measured by a closed-loop phase first.
    pub max_rate_per_s: Option<f64>,
    pub data: DataSetConfig,
    pub hold_ttl_s: u64,
    pub batch_lines: usize,
    pub import_rows: usize,
    pub feed_incremental_per_full: u32,
    pub request_timeout: Duration,
    pub spawn: SpawnOptions,
    pub progress: bool,
}

/// One phase's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseReport {
    pub label: String,
    /// `closed` or `open`.
    pub mode: String,
    pub connections: usize,
    /// Open loop: scenario iterations started per second, as scheduled (the
    /// unit is the scenario's, `Scenario::unit`: e.g. checkouts, not requests).
    pub offered_rate_per_s: Option<f64>,
    pub duration_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    /// Requests per second.
    pub rate_per_s: f64,
    /// Scenario iterations run (each one or more requests).
    #[serde(default)]
    pub iterations: u64,
    /// Scenario iterations per second: what the open-loop rate offers.
    #[serde(default)]
    pub iterations_per_s: f64,
    pub lines_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// CPU the load generator itself used, in % of one core (None off Linux).
    pub generator_cpu_percent: Option<f64>,
    pub ops: Vec<OpSummary>,
    pub error_samples: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub target: Target,
    pub scenario: Scenario,
    pub weights: String,
    pub url: String,
    pub skus: usize,
    pub stores: usize,
    pub warehouses: usize,
    pub positions: usize,
    pub skew: String,
    pub phases: Vec<PhaseReport>,
    /// None where the target holds no stock (noop).
    pub audit: Option<AuditReport>,
    pub passed: bool,
    pub started_unix_ms: u64,
}

/// CPU time of this process (user + system), from /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

fn phase_report(
    label: String,
    mode: Mode,
    connections: usize,
    rec: &Recorder,
    elapsed: Duration,
    cpu: Option<Duration>,
) -> PhaseReport {
    let overall = rec.overall();
    let (ok, refused, errors, lines) = rec.totals();
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ms = |q: f64| overall.value_at_quantile(q) as f64 / 1000.0;
    let requests = ok + refused + errors;
    PhaseReport {
        label,
        mode: match mode {
            Mode::Closed => "closed".into(),
            Mode::Open { .. } => "open".into(),
        },
        connections,
        offered_rate_per_s: match mode {
            Mode::Closed => None,
            Mode::Open { rate_per_s } => Some(rate_per_s),
        },
        duration_s: seconds,
        requests,
        ok,
        refused,
        errors,
        rate_per_s: requests as f64 / seconds,
        iterations: rec.iterations,
        iterations_per_s: rec.iterations as f64 / seconds,
        lines_per_s: lines as f64 / seconds,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: overall.max() as f64 / 1000.0,
        generator_cpu_percent: cpu.map(|c| 100.0 * c.as_secs_f64() / seconds),
        ops: rec.summary(elapsed),
        error_samples: rec.error_samples.clone(),
    }
}

async fn phase(
    ctx: &Arc<Ctx>,
    nodes: &Endpoints,
    config: &RunConfig,
    mode: Mode,
    duration: Duration,
    label: String,
    seed: u64,
) -> PhaseReport {
    let progress = Arc::new(Progress::default());
    let workers: Vec<ScenarioWorker> = (0..config.connections)
        .map(|k| {
            ScenarioWorker::new(
                // Round-robin over the nodes: each takes an equal share of connections.
                Conn::new(nodes.for_connection(k).clone(), config.request_timeout),
                seed.wrapping_mul(1_000_003).wrapping_add(k as u64),
                Arc::clone(ctx),
                Recorder::new(Arc::clone(&progress)),
            )
        })
        .collect();
    let cpu_before = cpu_time();
    let (workers, elapsed) = drive(
        workers,
        mode,
        duration,
        config
            .progress
            .then(|| (Arc::clone(&progress), label.clone())),
    )
    .await;
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let mut merged = Recorder::new(progress);
    for worker in workers {
        merged.merge(worker.rec);
    }
    phase_report(label, mode, config.connections, &merged, elapsed, cpu)
}

/// Fails if the target does not implement the scenario (or, for `mixed`,
/// one of the blend's scenarios with a weight above 0).
fn check_supported(config: &RunConfig) -> Result<(), String> {
    let target = config.target;
    if !config.scenario.supported_by(target) {
        return Err(format!(
            "the {} target does not implement the {} scenario",
            target.name(),
            config.scenario.name()
        ));
    }
    if config.scenario == Scenario::Mixed {
        for (scenario, weight) in &config.weights.0 {
            if *weight > 0 && !scenario.supported_by(target) {
                return Err(format!(
                    "the {} target does not implement {}",
                    target.name(),
                    scenario.name()
                ));
            }
        }
    }
    Ok(())
}

/// The target's URL and admin key: the running one given, or one started
/// here (returned too: it stops when dropped).
async fn reach_target(
    config: &RunConfig,
) -> Result<(String, String, Option<targets::Spawned>), String> {
    match &config.url {
        Some(url) => Ok((
            url.clone(),
            config
                .admin_key
                .clone()
                .ok_or("--admin-key or OMNISTOCK_ADMIN_KEY is needed with --url")?,
            None,
        )),
        None => {
            eprintln!("starting the {} target", config.target.name());
            let started = targets::spawn(config.target, &config.spawn).await?;
            Ok((
                started.url.clone(),
                started.admin_key.clone(),
                Some(started),
            ))
        }
    }
}

/// Seeds the data set (where the target keeps stock) and builds what the
/// workers share, its book "as of" the instant after seeding.
async fn prepare(
    config: &RunConfig,
    conn: &mut Conn,
    nodes: &Endpoints,
    admin: &HeaderValue,
) -> Result<Arc<Ctx>, String> {
    let target = config.target;
    let data = DataSet::new(&config.data);
    let seeded = if target.has_state() {
        eprintln!(
            "seeding {} positions ({} SKUs x {} locations, {} flash-sale rounds) as run {}",
            data.positions(),
            data.regular_skus,
            data.locations.len(),
            data.flash_rounds(),
            data.run_id
        );
        seed::seed(conn, nodes, &data, target, admin).await?
    } else {
        seed::Seeded {
            pos_keys: Vec::new(),
        }
    };
    // Every count the run sends is "as of" this instant: after seeding, before any movement.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let as_of_ms = unix_ms();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let book = Book::new(&data, as_of_ms);
    let ctx = Arc::new(Ctx {
        mix: Mix::new(config.scenario, &config.weights),
        data,
        book,
        target,
        admin: admin.clone(),
        pos_keys: seeded.pos_keys,
        hold_ttl_s: config.hold_ttl_s,
        batch_lines: config.batch_lines,
        import_rows: config.import_rows,
        feed_incremental_per_full: config.feed_incremental_per_full,
    });
    Ok(ctx)
}

/// The rate sweep: the maximum (given, or measured by a closed-loop phase
/// that is reported too), then an open-loop phase at each percentage of it.
async fn sweep_phases(ctx: &Arc<Ctx>, nodes: &Endpoints, config: &RunConfig) -> Vec<PhaseReport> {
    let mut phases = Vec::new();
    let max = match config.max_rate_per_s {
        Some(max) => max,
        None => {
            let closed = phase(
                ctx,
                nodes,
                config,
                Mode::Closed,
                config.duration,
                "closed (max)".into(),
                2,
            )
            .await;
            // In the open loop's unit: iterations, not requests.
            let max = closed.iterations_per_s;
            phases.push(closed);
            max
        }
    };
    for (i, percent) in config.sweep_percent.iter().enumerate() {
        let rate_per_s = (max * percent / 100.0).max(1.0);
        let label = format!(
            "open {percent}% ({rate_per_s:.0} {}/s)",
            config.scenario.unit()
        );
        let mode = Mode::Open { rate_per_s };
        phases.push(
            phase(
                ctx,
                nodes,
                config,
                mode,
                config.duration,
                label,
                3 + i as u64,
            )
            .await,
        );
    }
    phases
}

/// One measured phase: closed loop, or open loop at the configured rate.
async fn single_phase(ctx: &Arc<Ctx>, nodes: &Endpoints, config: &RunConfig) -> PhaseReport {
    let mode = match config.rate_per_s {
        Some(rate_per_s) => Mode::Open { rate_per_s },
        None => Mode::Closed,
    };
    let label = match mode {
        Mode::Closed => "closed".to_string(),
        Mode::Open { rate_per_s } => {
            format!("open ({rate_per_s:.0} {}/s)", config.scenario.unit())
        }
    };
    phase(ctx, nodes, config, mode, config.duration, label, 2).await
}

/// The warm-up (not reported), then the measured phases.
async fn run_phases(ctx: &Arc<Ctx>, nodes: &Endpoints, config: &RunConfig) -> Vec<PhaseReport> {
    if !config.warmup.is_zero() {
        let label = "warm-up".to_string();
        phase(ctx, nodes, config, Mode::Closed, config.warmup, label, 1).await;
    }
    if config.sweep_percent.is_empty() {
        vec![single_phase(ctx, nodes, config).await]
    } else {
        sweep_phases(ctx, nodes, config).await
    }
}

pub async fn run(config: &RunConfig) -> Result<RunReport, String> {
    check_supported(config)?;
    let target = config.target;
    let (url, admin_key, mut spawned) = reach_target(config).await?;
    let nodes = Endpoints::parse(&url).await?;
    let admin = bearer(&admin_key)?;
    // Seeding and the audit talk to the first node. On a cluster it serves
    // them as a single node would: the catalog is shared, the import sends
    // each row to its partition, and the audit adds up every partition's.
    let mut conn = Conn::new(nodes.first().clone(), Duration::from_secs(60));
    let ctx = prepare(config, &mut conn, &nodes, &admin).await?;
    let started_unix_ms = unix_ms();
    let phases = run_phases(&ctx, &nodes, config).await;
    if let Some(spawned) = spawned.as_mut() {
        spawned.check_alive()?;
    }
    let audit = if target.has_state() {
        Some(audit::audit(&mut conn, &ctx.data, &ctx.book, &admin).await?)
    } else {
        None
    };
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    let passed = errors == 0 && audit.as_ref().is_none_or(|a| a.passed);
    Ok(RunReport {
        target,
        scenario: config.scenario,
        weights: if config.scenario == Scenario::Mixed {
            config.weights.to_string()
        } else {
            String::new()
        },
        url,
        skus: config.data.skus,
        stores: config.data.stores,
        warehouses: config.data.warehouses,
        positions: ctx.data.positions(),
        skew: config.data.skew.to_string(),
        phases,
        audit,
        passed,
        started_unix_ms,
    })
}
