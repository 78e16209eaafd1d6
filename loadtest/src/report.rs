//! Reports: a table for people on stdout, JSON for machines, an SVG chart.

use std::fmt::Write;
use std::path::Path;

use crate::audit::AuditReport;
use crate::chart::{self, Series};
use crate::run::{PhaseReport, RunReport};

/// One phase: `unit` is what an iteration of the scenario is (the unit of
/// the open-loop rate), shown next to the request rate.
pub fn phase_table(phase: &PhaseReport, unit: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} - {} connections, {:.1} s: {}{:.0} {unit}/s = {:.0} req/s{}, {} ok, {} refused (409), {} errors; all requests p50 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms{}",
        phase.label,
        phase.connections,
        phase.duration_s,
        match phase.offered_rate_per_s {
            Some(offered) => format!("offered {offered:.0} {unit}/s, ran "),
            None => String::new(),
        },
        phase.iterations_per_s,
        phase.rate_per_s,
        if phase.lines_per_s > phase.rate_per_s * 1.01 {
            format!(" ({:.0} lines/s)", phase.lines_per_s)
        } else {
            String::new()
        },
        phase.ok,
        phase.refused,
        phase.errors,
        phase.p50_ms,
        phase.p99_ms,
        phase.p999_ms,
        phase.max_ms,
        phase
            .generator_cpu_percent
            .map(|c| format!("; generator CPU {c:.0} %"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>9} {:>8} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "operation",
        "requests",
        "ok",
        "refused",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for op in &phase.ops {
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>8} {:>6} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3}",
            op.op,
            op.requests,
            op.ok,
            op.refused,
            op.errors,
            op.rate_per_s,
            op.p50_ms,
            op.p90_ms,
            op.p99_ms,
            op.p999_ms,
            op.max_ms
        );
    }
    for sample in &phase.error_samples {
        let _ = writeln!(out, "  error: {sample}");
    }
    out
}

/// The audit's verdict, each flash-sale round and every finding.
fn audit_text(audit: Option<&AuditReport>) -> String {
    let mut out = String::new();
    let Some(audit) = audit else {
        out.push_str("\naudit: not applicable (the target holds no stock)\n");
        return out;
    };
    let _ = writeln!(
        out,
        "\naudit: {} - engine audit {}, {} positions read back ({} counted by the import), {} findings{}",
        if audit.passed { "PASSED" } else { "FAILED" },
        if audit.server["ok"] == serde_json::Value::Bool(true) {
            "ok"
        } else {
            "NOT ok"
        },
        audit.positions_checked,
        audit.positions_counted_by_import,
        audit.findings_total,
        if audit.waited_for_expiry_ms > 0 {
            format!(
                ", waited {:.1} s for holds to expire",
                audit.waited_for_expiry_ms as f64 / 1000.0
            )
        } else {
            String::new()
        }
    );
    for round in &audit.flash_rounds {
        let _ = writeln!(
            out,
            "  flash-sale round {}: {} units, {} of {} buyers answered, {} granted: {}",
            round.round,
            round.units,
            round.answered,
            round.buyers,
            round.granted,
            match (round.ok, round.complete) {
                (true, true) => "exactly N",
                (true, false) => "incomplete round, not more than N",
                (false, _) => "WRONG",
            }
        );
    }
    for finding in &audit.findings {
        let _ = writeln!(out, "  finding: {finding}");
    }
    out
}

pub fn run_table(report: &RunReport) -> String {
    let mut out = format!(
        "target {} at {}, scenario {}{}; {} positions ({} SKUs, {} stores, {} warehouses, skew {})",
        report.target.name(),
        report.url,
        report.scenario.name(),
        if report.weights.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.weights)
        },
        report.positions,
        report.skus,
        report.stores,
        report.warehouses,
        report.skew
    );
    for phase in &report.phases {
        out.push_str(&phase_table(phase, report.scenario.unit()));
    }
    out.push_str(&audit_text(report.audit.as_ref()));
    let _ = writeln!(
        out,
        "result: {}",
        if report.passed { "PASSED" } else { "FAILED" }
    );
    out
}

/// Throughput per phase and, for open-loop phases, latency percentiles vs rate.
pub fn run_chart(report: &RunReport) -> String {
    let bars: Vec<(String, f64)> = report
        .phases
        .iter()
        .map(|p| (p.label.clone(), p.rate_per_s))
        .collect();
    let open: Vec<&PhaseReport> = report
        .phases
        .iter()
        .filter(|p| p.offered_rate_per_s.is_some())
        .collect();
    let series: Vec<Series> = [("p50", 0usize), ("p99", 1), ("p99.9", 2)]
        .into_iter()
        .map(|(name, i)| Series {
            label: name.to_string(),
            color: i,
            dash: 0,
            points: open
                .iter()
                .map(|p| {
                    let v = match i {
                        0 => p.p50_ms,
                        1 => p.p99_ms,
                        _ => p.p999_ms,
                    };
                    (p.offered_rate_per_s.unwrap_or(0.0), v)
                })
                .collect(),
        })
        .collect();
    let bar_h = 40.0 + 30.0 * bars.len() as f64;
    let body = format!(
        "{}{}",
        chart::bars(
            "Throughput per phase",
            "req/s",
            &bars,
            20.0,
            70.0,
            860.0,
            bar_h
        ),
        chart::latency_lines(
            "Latency vs offered rate",
            report.scenario.unit(),
            &series,
            20.0,
            90.0 + bar_h,
            860.0,
            360.0
        )
    );
    chart::document(
        &format!(
            "loadtest: {} on {}",
            report.scenario.name(),
            report.target.name()
        ),
        &format!("{} positions, skew {}", report.positions, report.skew),
        900.0,
        470.0 + bar_h,
        &body,
    )
}

pub fn write(dir: &Path, name: &str, contents: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
