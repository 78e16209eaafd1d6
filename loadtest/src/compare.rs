//! `loadtest compare`: the side-by-side figures. For each target and
//! scenario, a fresh target process is started (pinned to core 0 when the
//! machine has 2+ cores) and this binary's `run` drives it from another
//! process (pinned to core 1), so every target gets the same server CPU and
//! the same generator. Then the ratios, a table, JSON and an SVG chart.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chart::{self, Series};
use crate::cli::CompareArgs;
use crate::report;
use crate::run::RunReport;
use crate::scenario::Scenario;
use crate::targets::{self, SpawnOptions, Target};

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
    let this = std::env::current_exe().map_err(|e| e.to_string())?;
    let json = args.out_dir.join("runs").join(format!(
        "run-{}-{}{}.json",
        target.name(),
        scenario.name(),
        if sweep_of_max.is_some() { "-sweep" } else { "" }
    ));
    let mut command = if pin {
        let mut c = tokio::process::Command::new("taskset");
        c.args(["-c", "1"]).arg(&this);
        c
    } else {
        tokio::process::Command::new(&this)
    };
    let d = &args.data;
    command
        .arg("run")
        .args([
            "--target",
            target.name(),
            "--scenario",
            scenario.name(),
            "--url",
            &spawned.url,
        ])
        // A flash sale ends when every round's buyers were answered (bounded).
        .args([
            "--duration-s",
            &if scenario == Scenario::FlashSale {
                FLASH_MAX_S
            } else {
                args.duration_s
            }
            .to_string(),
        ])
        .args([
            "--warmup-s",
            &if scenario == Scenario::FlashSale {
                0.0
            } else {
                args.warmup_s
            }
            .to_string(),
        ])
        .args(["--connections", &args.connections.to_string()])
        .args(["--batch-lines", &args.batch_lines.to_string()])
        .args([
            "--skus",
            &d.skus.to_string(),
            "--stores",
            &d.stores.to_string(),
            "--warehouses",
            &d.warehouses.to_string(),
        ])
        .args([
            "--initial-on-hand",
            &d.initial_on_hand.to_string(),
            "--skew",
            &d.skew.to_string(),
        ])
        .args([
            "--flash-units",
            &d.flash_units.to_string(),
            "--flash-buyers-per-unit",
            &d.flash_buyers_per_unit.to_string(),
        ])
        .args([
            "--flash-rounds",
            &d.flash_rounds.to_string(),
            "--seed",
            &d.seed.to_string(),
        ])
        .arg("--out-dir")
        .arg(args.out_dir.join("runs"))
        .arg("--json-out")
        .arg(&json)
        .env("OMNISTOCK_ADMIN_KEY", &spawned.admin_key);
    if let Some(max) = sweep_of_max {
        let sweep: Vec<String> = args.sweep.iter().map(|p| p.to_string()).collect();
        command.args([
            "--sweep",
            &sweep.join(","),
            "--max-iterations-per-s",
            &max.to_string(),
        ]);
    }
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

pub fn figures(runs: &[RunReport]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let rate = |t, s| median_closed(runs, t, s, false);
    let lines = |t, s| median_closed(runs, t, s, true);
    let single = rate(Target::Omnistock, Scenario::Reserve);
    let mut push = |name: &str, value: Option<f64>, unit: &str, target: &str, met: Option<bool>| {
        if let Some(value) = value {
            out.push(Ratio {
                name: name.into(),
                value,
                unit: unit.into(),
                target: target.into(),
                met,
            });
        }
    };
    let vs_noop = single
        .zip(rate(Target::Noop, Scenario::Reserve))
        .map(|(a, b)| a / b);
    push(
        "single-line reservations: omnistock / no-op ceiling",
        vs_noop.map(|r| r * 100.0),
        "%",
        ">= 90 %",
        vs_noop.map(|r| r >= 0.9),
    );
    let vs_lua = single
        .zip(rate(Target::RedisLua, Scenario::Reserve))
        .map(|(a, b)| a / b);
    push(
        "single-line reservations: omnistock / redis-lua",
        vs_lua,
        "x",
        ">= 1.9x",
        vs_lua.map(|r| r >= 1.9),
    );
    push(
        "single-line reservations, omnistock",
        single,
        "req/s",
        "",
        None,
    );
    push(
        "single-line reservations, redis-lua",
        rate(Target::RedisLua, Scenario::Reserve),
        "req/s",
        "",
        None,
    );
    push(
        "single-line reservations, no-op",
        rate(Target::Noop, Scenario::Reserve),
        "req/s",
        "",
        None,
    );
    let batch = lines(Target::Omnistock, Scenario::ReserveBatch);
    push(
        "batched reservations, omnistock",
        batch,
        "lines/s",
        ">= 1M lines/s",
        batch.map(|l| l >= 1e6),
    );
    push(
        "batched reservations, redis-lua",
        lines(Target::RedisLua, Scenario::ReserveBatch),
        "lines/s",
        "",
        None,
    );
    push(
        "batched reservations, no-op",
        lines(Target::Noop, Scenario::ReserveBatch),
        "lines/s",
        "",
        None,
    );
    let batch_vs_lua = batch
        .zip(lines(Target::RedisLua, Scenario::ReserveBatch))
        .map(|(a, b)| a / b);
    push(
        "batched reservations: omnistock / redis-lua",
        batch_vs_lua,
        "x",
        "",
        None,
    );
    if let Some(run) = runs.iter().find(|r| {
        r.target == Target::Omnistock
            && r.scenario == Scenario::Reserve
            && r.phases.iter().any(|p| p.mode == "open")
    }) && let Some(half) = run.phases.iter().find(|p| p.label.starts_with("open 50%"))
    {
        push(
            "omnistock open loop at 50 % of max: p99",
            Some(half.p99_ms),
            "ms",
            "<= 1 ms",
            Some(half.p99_ms <= 1.0),
        );
        push(
            "omnistock open loop at 50 % of max: p99.9",
            Some(half.p999_ms),
            "ms",
            "<= 5 ms",
            Some(half.p999_ms <= 5.0),
        );
    }
    for target in [Target::Omnistock, Target::RedisLua] {
        if let Some(run) = find(runs, target, Scenario::FlashSale) {
            let exact = run.audit.as_ref().map(|a| {
                a.passed
                    && a.flash_rounds.iter().all(|r| r.ok && r.complete)
                    && !a.flash_rounds.is_empty()
            });
            push(
                &format!("flash sale, {}: buyer attempts/s", target.name()),
                max_phase(run).map(|p| p.rate_per_s),
                "req/s",
                "exactly N granted",
                exact,
            );
        }
    }
    let async_rate = rate(Target::OmnistockAsync, Scenario::Reserve);
    let sync_rate = rate(Target::OmnistockSync, Scenario::Reserve);
    push(
        "single-line reservations, omnistock + Redis store, async",
        async_rate,
        "req/s",
        "",
        None,
    );
    push(
        "single-line reservations, omnistock + Redis store, sync",
        sync_rate,
        "req/s",
        "",
        None,
    );
    push(
        "sync / async",
        sync_rate.zip(async_rate).map(|(s, a)| 100.0 * s / a),
        "%",
        "",
        None,
    );
    out
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

pub fn chart(report: &CompareReport) -> String {
    let mut targets: Vec<Target> = Vec::new();
    for run in &report.runs {
        if !targets.contains(&run.target) {
            targets.push(run.target);
        }
    }
    let closed = |scenario: Scenario, lines: bool| -> Vec<(String, f64)> {
        targets
            .iter()
            .filter_map(|t| {
                median_closed(&report.runs, *t, scenario, lines).map(|v| (t.name().to_string(), v))
            })
            .collect()
    };
    let single = closed(Scenario::Reserve, false);
    let batch = closed(Scenario::ReserveBatch, true);
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
    let h1 = 40.0 + 30.0 * single.len() as f64;
    let h2 = 40.0 + 30.0 * batch.len() as f64;
    let body = format!(
        "{}{}{}",
        chart::bars(
            "Single-line reservations, closed loop (max; median of the rounds)",
            "req/s",
            &single,
            20.0,
            70.0,
            860.0,
            h1
        ),
        chart::bars(
            &format!(
                "Reservations of {} lines each, closed loop (max)",
                report.batch_lines
            ),
            "lines/s",
            &batch,
            20.0,
            80.0 + h1,
            860.0,
            h2
        ),
        chart::latency_lines(
            "Single-line reservations: latency percentiles vs offered rate",
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
        &format!(
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
        ),
        900.0,
        500.0 + h1 + h2,
        &body,
    )
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
    let mut runs = Vec::new();
    let mut planned = 0usize;
    let run_step = async |step: Step, runs: &mut Vec<RunReport>| {
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
        match one(args, step, pin).await {
            Ok(run) => runs.push(run),
            Err(e) => eprintln!("{} {}: {e}", step.target.name(), step.scenario.name()),
        }
    };
    for step in rounds(args) {
        planned += 1;
        run_step(step, &mut runs).await;
    }
    // Then the rate sweep at percentages of each target's median maximum, and
    // the flash sale (it ends when every buyer was answered).
    for target in &args.targets {
        if !args.sweep.is_empty()
            && let Some(max) = median_closed(&runs, *target, Scenario::Reserve, false)
        {
            planned += 1;
            run_step(
                Step {
                    target: *target,
                    scenario: Scenario::Reserve,
                    sweep_of_max: Some(max),
                },
                &mut runs,
            )
            .await;
        }
    }
    for target in &args.targets {
        if Scenario::FlashSale.supported_by(*target) && target.has_state() {
            planned += 1;
            run_step(
                Step {
                    target: *target,
                    scenario: Scenario::FlashSale,
                    sweep_of_max: None,
                },
                &mut runs,
            )
            .await;
        }
    }
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
