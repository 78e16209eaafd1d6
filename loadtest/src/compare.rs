//! `loadtest compare`: the side-by-side figures. For each target and
//! scenario, a fresh target process is started (pinned to core 0 when the
//! machine has 2+ cores) and this binary's `run` drives it from another
//! process (pinned to core 1), so every target gets the same server CPU and
//! the same generator. Then the ratios, a table, JSON and an SVG chart.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chart::{self, Series};
use crate::cli::{CompareArgs, DataArgs};
use crate::report;
use crate::run::RunReport;
use crate::scenario::Scenario;
use crate::targets::{self, SpawnOptions, Spawned, Target};

/// Longest a flash-sale run may take (it normally ends when its rounds do).
const FLASH_MAX_S: f64 = 120.0;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ratio {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub target: String,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareReport {
    pub machine: String,
    /// /proc/loadavg before the first run: other work on the machine skews every figure.
    pub load_average_before: String,
    pub pinned: bool,
    pub duration_s: f64,
    pub connections: usize,
    pub batch_lines: usize,
    pub command: String,
    pub runs: Vec<RunReport>,
    pub figures: Vec<Ratio>,
    pub passed: bool,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

fn taskset_available() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One step of the plan: a fresh target, one scenario; `sweep` runs the
/// open-loop phases at percentages of the given maximum instead of a closed loop.
#[derive(Clone, Copy, Debug)]
struct Step {
    target: Target,
    scenario: Scenario,
    sweep_of_max: Option<f64>,
}

/// Closed-loop steps, interleaved over `--repeat` rounds (so a burst of other
/// work on a shared machine hits every target alike; the figures are medians).
fn rounds(args: &CompareArgs) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..args.repeat.max(1) {
        for target in &args.targets {
            for scenario in [Scenario::Reserve, Scenario::ReserveBatch] {
                steps.push(Step {
                    target: *target,
                    scenario,
                    sweep_of_max: None,
                });
            }
        }
        if args.durability {
            for target in [Target::OmnistockAsync, Target::OmnistockSync] {
                steps.push(Step {
                    target,
                    scenario: Scenario::Reserve,
                    sweep_of_max: None,
                });
            }
        }
    }
    steps
}

/// The data set's flags, as `run` takes them.
fn data_flags(d: &DataArgs) -> Vec<String> {
    [
        ("--skus", d.skus.to_string()),
        ("--stores", d.stores.to_string()),
        ("--warehouses", d.warehouses.to_string()),
        ("--initial-on-hand", d.initial_on_hand.to_string()),
        ("--skew", d.skew.to_string()),
        ("--flash-units", d.flash_units.to_string()),
        (
            "--flash-buyers-per-unit",
            d.flash_buyers_per_unit.to_string(),
        ),
        ("--flash-rounds", d.flash_rounds.to_string()),
        ("--seed", d.seed.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// How long a step runs: a flash sale ends when every round's buyers were
/// answered (bounded), without a warm-up.
fn timing_flags(args: &CompareArgs, scenario: Scenario) -> Vec<String> {
    let flash = scenario == Scenario::FlashSale;
    let duration = if flash { FLASH_MAX_S } else { args.duration_s };
    let warmup = if flash { 0.0 } else { args.warmup_s };
    vec![
        "--duration-s".into(),
        duration.to_string(),
        "--warmup-s".into(),
        warmup.to_string(),
    ]
}

/// This loadtest binary as a command, pinned to core 1 (the generator's)
/// if `pin`.
pub(crate) fn loadtest_command(pin: bool) -> Result<tokio::process::Command, String> {
    let this = std::env::current_exe().map_err(|e| e.to_string())?;
    Ok(if pin {
        let mut command = tokio::process::Command::new("taskset");
        command.args(["-c", "1"]).arg(&this);
        command
    } else {
        tokio::process::Command::new(&this)
    })
}

/// `loadtest run` against the started target, pinned to core 1 if `pin`,
/// writing its report to `json`.
fn generator_command(
    args: &CompareArgs,
    step: Step,
    spawned: &Spawned,
    json: &Path,
    pin: bool,
) -> Result<tokio::process::Command, String> {
    let mut command = loadtest_command(pin)?;
    command
        .arg("run")
        .args(["--target", step.target.name()])
        .args(["--scenario", step.scenario.name(), "--url", &spawned.url])
        .args(timing_flags(args, step.scenario))
        .args(["--connections", &args.connections.to_string()])
        .args(["--batch-lines", &args.batch_lines.to_string()])
        .args(data_flags(&args.data))
        .arg("--out-dir")
        .arg(args.out_dir.join("runs"))
        .arg("--json-out")
        .arg(json)
        .env("OMNISTOCK_ADMIN_KEY", &spawned.admin_key);
    if let Some(max) = step.sweep_of_max {
        let sweep: Vec<String> = args.sweep.iter().map(|p| p.to_string()).collect();
        command.args([
            "--sweep",
            &sweep.join(","),
            "--max-iterations-per-s",
            &max.to_string(),
        ]);
    }
    Ok(command)
}

/// One step: a fresh target (pinned to core 0 if `pin`), driven by `run` in
/// another process; its JSON report.
async fn one(args: &CompareArgs, step: Step, pin: bool) -> Result<RunReport, String> {
    let Step {
        target,
        scenario,
        sweep_of_max,
    } = step;
    let options = SpawnOptions {
        pin_core: pin.then_some(0),
        omnistock_bin: args.spawn.omnistock_bin.clone(),
        redis_server: args.spawn.redis_server.clone(),
        loadtest_bin: None,
        log_dir: args.out_dir.join("runs").join("logs"),
    };
    let spawned = targets::spawn(target, &options).await?;
    let json = args.out_dir.join("runs").join(format!(
        "run-{}-{}{}.json",
        target.name(),
        scenario.name(),
        if sweep_of_max.is_some() { "-sweep" } else { "" }
    ));
    let mut command = generator_command(args, step, &spawned, &json, pin)?;
    let _ = std::fs::remove_file(&json);
    let status = command
        .status()
        .await
        .map_err(|e| format!("cannot run the generator: {e}"))?;
    drop(spawned);
    let text = std::fs::read_to_string(&json).map_err(|e| {
        format!(
            "{} {}: no report ({status}): {e}",
            target.name(),
            scenario.name()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))
}

fn find(runs: &[RunReport], target: Target, scenario: Scenario) -> Option<&RunReport> {
    runs.iter()
        .find(|r| r.target == target && r.scenario == scenario)
}

/// The closed-loop (maximum) phase of a run.
fn max_phase(run: &RunReport) -> Option<&crate::run::PhaseReport> {
    run.phases.iter().find(|p| p.mode == "closed")
}

/// The median over a target's closed-loop runs of a scenario.
pub fn median_closed(
    runs: &[RunReport],
    target: Target,
    scenario: Scenario,
    lines: bool,
) -> Option<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter(|r| r.target == target && r.scenario == scenario)
        .filter_map(max_phase)
        .map(|p| if lines { p.lines_per_s } else { p.rate_per_s })
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len().checked_sub(1)? / 2).copied()
}

/// Every value of a median, for the table: "44.4k (42.1k-45.0k)".
fn spread(runs: &[RunReport], target: Target, scenario: Scenario, lines: bool) -> String {
    let values: Vec<String> = runs
        .iter()
        .filter(|r| r.target == target && r.scenario == scenario)
        .filter_map(max_phase)
        .map(|p| chart::human(if lines { p.lines_per_s } else { p.rate_per_s }))
        .collect();
    values.join(", ")
}

/// The figures being collected: a figure without a value is left out.
struct Figures(Vec<Ratio>);

impl Figures {
    fn push(
        &mut self,
        name: &str,
        value: Option<f64>,
        unit: &str,
        target: &str,
        met: Option<bool>,
    ) {
        if let Some(value) = value {
            self.0.push(Ratio {
                name: name.into(),
                value,
                unit: unit.into(),
                target: target.into(),
                met,
            });
        }
    }
}

fn rate(runs: &[RunReport], target: Target, scenario: Scenario) -> Option<f64> {
    median_closed(runs, target, scenario, false)
}

fn lines_rate(runs: &[RunReport], target: Target, scenario: Scenario) -> Option<f64> {
    median_closed(runs, target, scenario, true)
}

/// Single-line reservations: the ratios to the ceiling and the baseline, and each rate.
fn single_line_figures(runs: &[RunReport], out: &mut Figures) {
    let single = rate(runs, Target::Omnistock, Scenario::Reserve);
    let noop = rate(runs, Target::Noop, Scenario::Reserve);
    let lua = rate(runs, Target::RedisLua, Scenario::Reserve);
    let vs_noop = single.zip(noop).map(|(a, b)| a / b);
    out.push(
        "single-line reservations: omnistock / no-op ceiling",
        vs_noop.map(|r| r * 100.0),
        "%",
        ">= 90 %",
        vs_noop.map(|r| r >= 0.9),
    );
    let vs_lua = single.zip(lua).map(|(a, b)| a / b);
    out.push(
        "single-line reservations: omnistock / redis-lua",
        vs_lua,
        "x",
        ">= 1.9x",
        vs_lua.map(|r| r >= 1.9),
    );
    out.push(
        "single-line reservations, omnistock",
        single,
        "req/s",
        "",
        None,
    );
    out.push(
        "single-line reservations, redis-lua",
        lua,
        "req/s",
        "",
        None,
    );
    out.push("single-line reservations, no-op", noop, "req/s", "", None);
}

/// Batched reservations: lines per second of each target, and omnistock over the baseline.
fn batch_figures(runs: &[RunReport], out: &mut Figures) {
    let batch = lines_rate(runs, Target::Omnistock, Scenario::ReserveBatch);
    let lua = lines_rate(runs, Target::RedisLua, Scenario::ReserveBatch);
    out.push(
        "batched reservations, omnistock",
        batch,
        "lines/s",
        ">= 1M lines/s",
        batch.map(|l| l >= 1e6),
    );
    out.push("batched reservations, redis-lua", lua, "lines/s", "", None);
    let noop = lines_rate(runs, Target::Noop, Scenario::ReserveBatch);
    out.push("batched reservations, no-op", noop, "lines/s", "", None);
    let batch_vs_lua = batch.zip(lua).map(|(a, b)| a / b);
    out.push(
        "batched reservations: omnistock / redis-lua",
        batch_vs_lua,
        "x",
        "",
        None,
    );
}

/// omnistock's tail latency in the open loop at half its maximum.
fn open_loop_figures(runs: &[RunReport], out: &mut Figures) {
    if let Some(run) = runs.iter().find(|r| {
        r.target == Target::Omnistock
            && r.scenario == Scenario::Reserve
            && r.phases.iter().any(|p| p.mode == "open")
    }) && let Some(half) = run.phases.iter().find(|p| p.label.starts_with("open 50%"))
    {
        out.push(
            "omnistock open loop at 50 % of max: p99",
            Some(half.p99_ms),
            "ms",
            "<= 1 ms",
            Some(half.p99_ms <= 1.0),
        );
        out.push(
            "omnistock open loop at 50 % of max: p99.9",
            Some(half.p999_ms),
            "ms",
            "<= 5 ms",
            Some(half.p999_ms <= 5.0),
        );
    }
}

/// The flash sale's rate, and whether exactly N were granted per round.
fn flash_figures(runs: &[RunReport], out: &mut Figures) {
    for target in [Target::Omnistock, Target::RedisLua] {
        if let Some(run) = find(runs, target, Scenario::FlashSale) {
            let exact = run.audit.as_ref().map(|a| {
                a.passed
                    && a.flash_rounds.iter().all(|r| r.ok && r.complete)
                    && !a.flash_rounds.is_empty()
            });
            out.push(
                &format!("flash sale, {}: buyer attempts/s", target.name()),
                max_phase(run).map(|p| p.rate_per_s),
                "req/s",
                "exactly N granted",
                exact,
            );
        }
    }
}

/// omnistock with the Redis store, async and sync.
fn durability_figures(runs: &[RunReport], out: &mut Figures) {
    let async_rate = rate(runs, Target::OmnistockAsync, Scenario::Reserve);
    let sync_rate = rate(runs, Target::OmnistockSync, Scenario::Reserve);
    out.push(
        "single-line reservations, omnistock + Redis store, async",
        async_rate,
        "req/s",
        "",
        None,
    );
    out.push(
        "single-line reservations, omnistock + Redis store, sync",
        sync_rate,
        "req/s",
        "",
        None,
    );
    out.push(
        "sync / async",
        sync_rate.zip(async_rate).map(|(s, a)| 100.0 * s / a),
        "%",
        "",
        None,
    );
}

pub fn figures(runs: &[RunReport]) -> Vec<Ratio> {
    let mut out = Figures(Vec::new());
    single_line_figures(runs, &mut out);
    batch_figures(runs, &mut out);
    open_loop_figures(runs, &mut out);
    flash_figures(runs, &mut out);
    durability_figures(runs, &mut out);
    out.0
}

pub fn table(report: &CompareReport) -> String {
    let mut out = format!(
        "\nside by side on {} ({}), {} connections, {} s per phase; load average before: {}\n",
        report.machine,
        if report.pinned {
            "targets pinned to core 0, generator to core 1"
        } else {
            "not pinned"
        },
        report.connections,
        report.duration_s,
        report.load_average_before
    );
    out.push_str(&format!(
        "{:<62} {:>14} {:>16}  {}\n",
        "figure", "value", "target", "status"
    ));
    for f in &report.figures {
        let value = match f.unit.as_str() {
            "x" => format!("{:.2}x", f.value),
            "%" => format!("{:.1} %", f.value),
            "ms" => format!("{:.3} ms", f.value),
            unit => format!("{} {unit}", chart::human(f.value)),
        };
        let status = match f.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        out.push_str(&format!(
            "{:<62} {:>14} {:>16}  {status}\n",
            f.name, value, f.target
        ));
    }
    out.push_str("\nclosed-loop runs (the figures above are their medians):\n");
    let mut seen: Vec<(Target, Scenario)> = Vec::new();
    for run in report
        .runs
        .iter()
        .filter(|r| r.phases.iter().any(|p| p.mode == "closed"))
    {
        if seen.contains(&(run.target, run.scenario)) {
            continue;
        }
        seen.push((run.target, run.scenario));
        let lines = run.scenario == Scenario::ReserveBatch;
        out.push_str(&format!(
            "  {:<16} {:<14} {} {}\n",
            run.target.name(),
            run.scenario.name(),
            spread(&report.runs, run.target, run.scenario, lines),
            if lines { "lines/s" } else { "req/s" }
        ));
    }
    for run in &report.runs {
        if !run.passed {
            out.push_str(&format!(
                "run {} {} FAILED (see its JSON report)\n",
                run.target.name(),
                run.scenario.name()
            ));
        }
    }
    out
}

/// The targets of the runs, in order of first appearance (their colours).
fn chart_targets(report: &CompareReport) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for run in &report.runs {
        if !targets.contains(&run.target) {
            targets.push(run.target);
        }
    }
    targets
}

/// Each target's median closed-loop rate of `scenario` (lines/s if `lines`).
fn closed_bars(
    report: &CompareReport,
    targets: &[Target],
    scenario: Scenario,
    lines: bool,
) -> Vec<(String, f64)> {
    targets
        .iter()
        .filter_map(|t| {
            median_closed(&report.runs, *t, scenario, lines).map(|v| (t.name().to_string(), v))
        })
        .collect()
}

/// p50, p99 and p99.9 against the offered rate, per target with open-loop
/// single-line reservation phases (the target's colour, one dash each).
fn sweep_series(report: &CompareReport, targets: &[Target]) -> Vec<Series> {
    let mut series = Vec::new();
    for run in report
        .runs
        .iter()
        .filter(|r| r.scenario == Scenario::Reserve)
    {
        let i = targets.iter().position(|t| *t == run.target).unwrap_or(0);
        let open: Vec<_> = run
            .phases
            .iter()
            .filter(|p| p.offered_rate_per_s.is_some())
            .collect();
        if open.is_empty() {
            continue;
        }
        for (dash, (name, pick)) in [("p50", 0), ("p99", 1), ("p99.9", 2)]
            .into_iter()
            .enumerate()
        {
            series.push(Series {
                label: format!("{} {name}", run.target.name()),
                color: i,
                dash,
                points: open
                    .iter()
                    .map(|p| {
                        (
                            p.offered_rate_per_s.unwrap_or(0.0),
                            [p.p50_ms, p.p99_ms, p.p999_ms][pick],
                        )
                    })
                    .collect(),
            });
        }
    }
    series
}

/// The machine, pinning, connections, load and command under the title.
fn chart_subtitle(report: &CompareReport) -> String {
    format!(
        "{}; {}; {} connections; load average before: {}; `loadtest {}`",
        report.machine,
        if report.pinned {
            "servers on core 0, generator on core 1"
        } else {
            "not pinned"
        },
        report.connections,
        report
            .load_average_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        report.command
    )
}

pub fn chart(report: &CompareReport) -> String {
    let targets = chart_targets(report);
    let single = closed_bars(report, &targets, Scenario::Reserve, false);
    let batch = closed_bars(report, &targets, Scenario::ReserveBatch, true);
    let series = sweep_series(report, &targets);
    let h1 = 40.0 + 30.0 * single.len() as f64;
    let h2 = 40.0 + 30.0 * batch.len() as f64;
    let single_title = "Single-line reservations, closed loop (max; median of the rounds)";
    let batch_title = format!(
        "Reservations of {} lines each, closed loop (max)",
        report.batch_lines
    );
    let latency_title = "Single-line reservations: latency percentiles vs offered rate";
    let body = format!(
        "{}{}{}",
        chart::bars(single_title, "req/s", &single, 20.0, 70.0, 860.0, h1),
        chart::bars(&batch_title, "lines/s", &batch, 20.0, 80.0 + h1, 860.0, h2),
        chart::latency_lines(
            latency_title,
            Scenario::Reserve.unit(),
            &series,
            20.0,
            100.0 + h1 + h2,
            860.0,
            380.0
        )
    );
    chart::document(
        "omnistock vs Redis-Lua baseline vs no-op HTTP ceiling",
        &chart_subtitle(report),
        900.0,
        500.0 + h1 + h2,
        &body,
    )
}

/// Runs the steps one by one, keeping the reports of those that ran.
struct Runner<'a> {
    args: &'a CompareArgs,
    pin: bool,
    runs: Vec<RunReport>,
    planned: usize,
}

impl Runner<'_> {
    async fn step(&mut self, step: Step) {
        self.planned += 1;
        eprintln!(
            "\n=== {} / {}{} ===",
            step.target.name(),
            step.scenario.name(),
            if step.sweep_of_max.is_some() {
                " (sweep)"
            } else {
                ""
            }
        );
        match one(self.args, step, self.pin).await {
            Ok(run) => self.runs.push(run),
            Err(e) => eprintln!("{} {}: {e}", step.target.name(), step.scenario.name()),
        }
    }

    /// The rate sweep at percentages of each target's median maximum, then
    /// the flash sale (it ends when every buyer was answered).
    async fn sweeps_and_flash_sales(&mut self) {
        let args = self.args;
        for target in &args.targets {
            if !args.sweep.is_empty()
                && let Some(max) = median_closed(&self.runs, *target, Scenario::Reserve, false)
            {
                let sweep_of_max = Some(max);
                let scenario = Scenario::Reserve;
                self.step(Step {
                    target: *target,
                    scenario,
                    sweep_of_max,
                })
                .await;
            }
        }
        for target in &args.targets {
            if Scenario::FlashSale.supported_by(*target) && target.has_state() {
                let scenario = Scenario::FlashSale;
                self.step(Step {
                    target: *target,
                    scenario,
                    sweep_of_max: None,
                })
                .await;
            }
        }
    }
}

pub async fn compare(args: &CompareArgs) -> Result<CompareReport, String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pin = !args.no_pin && cores >= 2 && taskset_available();
    let load_average_before = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    eprintln!(
        "load average before the runs: {load_average_before} (anything above ~0.2 on an idle machine skews the figures)"
    );
    let mut runner = Runner {
        args,
        pin,
        runs: Vec::new(),
        planned: 0,
    };
    for step in rounds(args) {
        runner.step(step).await;
    }
    runner.sweeps_and_flash_sales().await;
    let Runner { runs, planned, .. } = runner;
    let passed = runs.iter().all(|r| r.passed) && runs.len() == planned;
    let report = CompareReport {
        machine: machine(),
        load_average_before,
        pinned: pin,
        duration_s: args.duration_s,
        connections: args.connections,
        batch_lines: args.batch_lines,
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        figures: figures(&runs),
        runs,
        passed,
    };
    write_reports(&args.out_dir, &report)?;
    Ok(report)
}

fn write_reports(dir: &Path, report: &CompareReport) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    report::write(dir, "compare.json", &json)?;
    report::write(dir, "compare.svg", &chart(report))?;
    Ok(())
}
