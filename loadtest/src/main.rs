//! `loadtest`: drives a running omnistock (or starts one) with realistic
//! scenarios, audits it, and compares it with the Redis-Lua baseline and the
//! no-op HTTP ceiling. Exit code 0: passed; 1: errors or a failed audit;
//! 2: could not run.

use std::process::ExitCode;

use clap::Parser;
use loadtest::cli::{Cli, Command};
use loadtest::{compare, report, run, targets};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ServeNoop { listen } => {
            let served = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .and_then(|rt| rt.block_on(targets::noop::serve(listen)));
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::ServeRedisLua { listen, redis_url } => {
            let served = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(targets::redis_lua::serve(listen, &redis_url)));
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Run(args) => {
            let config = match args.config() {
                Ok(config) => config,
                Err(e) => return fail(e),
            };
            let rt = match runtime(args.threads) {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            let report = match rt.block_on(run::run(&config)) {
                Ok(report) => report,
                Err(e) => return fail(e),
            };
            println!("{}", report::run_table(&report));
            let name = format!("run-{}-{}", report.target.name(), report.scenario.name());
            let written = serde_json::to_string_pretty(&report)
                .map_err(|e| e.to_string())
                .and_then(|json| {
                    if let Some(path) = &args.json_out {
                        std::fs::write(path, &json)
                            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    } else {
                        report::write(&args.out_dir, &format!("{name}.json"), &json)?;
                    }
                    report::write(
                        &args.out_dir,
                        &format!("{name}.svg"),
                        &report::run_chart(&report),
                    )
                });
            if let Err(e) = written {
                return fail(e);
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Compare(args) => {
            let rt = match runtime(1) {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            match rt.block_on(compare::compare(&args)) {
                Ok(report) => {
                    println!("{}", compare::table(&report));
                    if report.passed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(e),
            }
        }
    }
}
