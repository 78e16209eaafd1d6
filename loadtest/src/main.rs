//! `loadtest`: drives a running omnistock (or starts one) with realistic
//! scenarios, audits it, and compares it with the Redis-Lua baseline and the
//! no-op HTTP ceiling. Exit code 0: passed; 1: errors or a failed audit;
//! 2: could not run.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use loadtest::cli::{Cli, Command, CompareArgs, FixedArgs, FloodArgs, PairedArgs, RunArgs};
use loadtest::fixed::{self, Prepared};
use loadtest::http_client::{Endpoint, bearer};
use loadtest::run::RunReport;
use loadtest::{compare, flood, paired, report, run, targets};

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("loadtest: {message}");
    ExitCode::from(2)
}

/// 0 if `passed`, else 1.
fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A multi-threaded runtime with a worker per core, for the servers.
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs `work` on `runtime`, then `then` on its output; a failure to run exits 2.
fn block_on<T>(
    runtime: std::io::Result<tokio::runtime::Runtime>,
    work: impl Future<Output = Result<T, String>>,
    then: impl FnOnce(T) -> Result<ExitCode, String>,
) -> ExitCode {
    let result = runtime
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(work))
        .and_then(then);
    result.unwrap_or_else(fail)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run_command(&args),
        Command::Compare(args) => compare_command(&args),
        Command::Paired(args) => paired_command(&args),
        Command::Fixed(args) => fixed_command(&args),
        Command::Flood(args) => flood_command(&args),
        Command::ServeNoop { listen } => block_on(
            server_runtime(),
            async move {
                targets::noop::serve(listen)
                    .await
                    .map_err(|e| e.to_string())
            },
            |()| Ok(ExitCode::SUCCESS),
        ),
        Command::ServeRedisLua { listen, redis_url } => block_on(
            server_runtime(),
            async move { targets::redis_lua::serve(listen, &redis_url).await },
            |()| Ok(ExitCode::SUCCESS),
        ),
    }
}

/// The table on stdout, the JSON report and the chart in --out-dir (or --json-out).
fn write_run_reports(args: &RunArgs, report: &RunReport) -> Result<(), String> {
    let name = format!("run-{}-{}", report.target.name(), report.scenario.name());
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    } else {
        report::write(&args.out_dir, &format!("{name}.json"), &json)?;
    }
    report::write(
        &args.out_dir,
        &format!("{name}.svg"),
        &report::run_chart(report),
    )
}

fn run_command(args: &RunArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    block_on(runtime(args.threads), run::run(&config), |report| {
        println!("{}", report::run_table(&report));
        write_run_reports(args, &report)?;
        Ok(verdict(report.passed))
    })
}

fn compare_command(args: &CompareArgs) -> ExitCode {
    block_on(runtime(1), compare::compare(args), |report| {
        println!("{}", compare::table(&report));
        Ok(verdict(report.passed))
    })
}

fn paired_command(args: &PairedArgs) -> ExitCode {
    let default_engine = || {
        targets::omnistock_bin(&targets::SpawnOptions {
            pin_core: None,
            omnistock_bin: None,
            redis_server: String::new(),
            loadtest_bin: None,
            log_dir: args.out_dir.join("logs"),
        })
    };
    let config = match args.config(default_engine) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if config.pin && !targets::pin_self(1) {
        eprintln!("loadtest: could not pin the generator to core 1");
    }
    block_on(runtime(1), paired::paired(&config), |report| {
        print!("{}", paired::report_text(&report));
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        report::write(&args.out_dir, "paired.json", &json)?;
        Ok(verdict(report.unexpected == 0))
    })
}

fn fixed_command(args: &FixedArgs) -> ExitCode {
    let duration = match args.duration() {
        Ok(duration) => duration,
        Err(e) => return fail(e),
    };
    if let Some(core) = args.pin_core
        && !targets::pin_self(core)
    {
        eprintln!("loadtest: could not pin to core {core}");
    }
    let work = async {
        let endpoint = Endpoint::parse(&args.url).await?;
        let key = args.admin_key.as_deref().map(bearer).transpose()?;
        let request = Prepared::new(
            args.request,
            args.sku.as_deref(),
            args.location.as_deref(),
            args.hold_ttl_s,
            key,
        );
        let timeout = std::time::Duration::from_secs(10);
        let request = Arc::new(request);
        let result = fixed::slice(&endpoint, &request, args.connections, duration, timeout).await;
        Ok::<_, String>(result)
    };
    block_on(runtime(1), work, |result| {
        println!("{}", result.line());
        Ok(verdict(result.unexpected() == 0))
    })
}

fn flood_command(args: &FloodArgs) -> ExitCode {
    let pin = !args.no_pin && targets::can_pin();
    if pin && !targets::pin_self(1) {
        eprintln!("loadtest: could not pin the good client to core 1");
    }
    block_on(runtime(1), flood::flood(args, pin), |passed| {
        Ok(verdict(passed))
    })
}
