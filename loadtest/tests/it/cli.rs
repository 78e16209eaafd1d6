//! The command line says what it does: every flag of `run` and `compare` is
//! described, the open-loop rate's unit (scenario iterations, not requests)
//! is in its name, its help, the report and the chart, the old flag names
//! still work, and a run whose stderr is not a terminal still prints a
//! progress line every few seconds.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{ADMIN, engine};
use loadtest::driver::LOG_PROGRESS_EVERY_S;
use omnistock_testkit::help_sections as sections;

fn help(subcommand: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([subcommand, "--help"])
        .output()
        .expect("loadtest runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn every_flag_is_described_and_the_rate_names_its_unit() {
    for subcommand in ["run", "compare", "paired", "fixed", "flood"] {
        let help = help(subcommand);
        let sections = sections(&help);
        assert!(sections.len() >= 8, "{subcommand}: {help}");
        for (name, text) in &sections {
            // The flag, its value name, aliases and default removed: a
            // description must be left.
            let description: Vec<&str> = text
                .split(' ')
                .filter(|word| {
                    !word.starts_with("--")
                        && !word.starts_with('<')
                        && !word.starts_with('[')
                        && !word.ends_with(']')
                        && !word.ends_with(',')
                })
                .collect();
            assert!(
                description.len() >= 2,
                "{subcommand} --{name} has no description: {text}"
            );
        }
    }
    let run = help("run");
    let sections = sections(&run);
    let section = |flag: &str| {
        sections
            .iter()
            .find(|(name, _)| name == flag)
            .map(|(_, text)| text.clone())
            .unwrap_or_else(|| panic!("--{flag} is not in run --help:\n{run}"))
    };
    let rate = section("iterations-per-s");
    assert!(
        rate.contains("iterations") && rate.contains("not a request"),
        "the rate's unit: {rate}"
    );
    assert!(
        rate.contains("rate-per-s"),
        "the old name is shown as an alias: {rate}"
    );
    assert!(section("max-iterations-per-s").contains("max-rate-per-s"));
    assert!(
        section("scenario").contains("checkout = a cart"),
        "what an iteration is, per scenario"
    );
    assert!(
        section("out-dir").contains("[default: target/loadtest-reports]"),
        "{}",
        section("out-dir")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_run_reports_its_unit_and_logs_progress_without_a_terminal() {
    let engine = engine().await;
    let out_dir = crate::support::log_dir().join("cli-run");
    let seconds = LOG_PROGRESS_EVERY_S + 1;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "--url", &format!("http://{}", engine.addr)])
        .args(["--admin-key", ADMIN, "--scenario", "checkout"])
        // The old flag name, as README and bench scripts use it.
        .args(["--rate-per-s", "40", "--connections", "4"])
        .args(["--duration-s", &seconds.to_string(), "--warmup-s", "0"])
        .args(["--skus", "40", "--stores", "2", "--warehouses", "1"])
        .args(["--flash-rounds", "1", "--flash-units", "5"])
        .arg("--out-dir")
        .arg(&out_dir)
        .stdin(Stdio::null())
        // Pipes, not a terminal: the progress goes to a log.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the run ends")
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(" req/s") && line.contains("errors"))
        .collect();
    assert!(
        progress
            .iter()
            .any(|line| line.contains(&format!("{LOG_PROGRESS_EVERY_S}/{seconds} s"))),
        "a progress line every {LOG_PROGRESS_EVERY_S} s in a log: {stderr}"
    );
    assert!(
        progress.iter().any(|line| line.contains(" done: ")),
        "the phase's end is logged: {stderr}"
    );
    assert!(
        stdout.contains("open (40 checkouts/s)") && stdout.contains("offered 40 checkouts/s"),
        "the report states the rate's unit: {stdout}"
    );
    let chart = std::fs::read_to_string(out_dir.join("run-omnistock-checkout.svg")).expect("chart");
    assert!(
        chart.contains("offered rate (checkouts/s, open loop)"),
        "the chart's axis states the unit"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("run-omnistock-checkout.json")).expect("report"),
    )
    .expect("json");
    let phase = &report["phases"][0];
    let iterations = phase["iterations"].as_u64().expect("iterations");
    let requests = phase["requests"].as_u64().expect("requests");
    // 40 carts/s for the run, each a hold plus a commit or release (most of them).
    let scheduled = 40 * seconds;
    assert!(
        iterations * 10 >= scheduled * 9 && iterations <= scheduled,
        "{iterations} checkouts for {scheduled} scheduled"
    );
    assert!(
        requests > iterations,
        "a checkout is more than one request: {requests} requests, {iterations} checkouts"
    );
    engine.shutdown().await.expect("shutdown");
}
