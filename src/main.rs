//! The `omnistock` binary: `serve` runs the engine; `demo` runs an in-process
//! flash sale on the ledger and audits it.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use omnistock::server::config::{self, LogFormat, ServeArgs};

/// mimalloc instead of the system allocator: the HTTP path allocates small
/// short-lived buffers per request, and glibc malloc (with its
/// consolidation passes) measured as ~10 % of server CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "omnistock",
    version,
    about = "Real-time inventory availability engine for omnichannel retail"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP engine.
    Serve(Box<ServeArgs>),
    /// Write a local-inventory feed file from a running server or its Redis store.
    Feed(Box<omnistock::server::export::ExportArgs>),
    /// Run a flash sale on the in-memory ledger and audit it.
    Demo {
        /// Units on sale.
        #[arg(long, default_value_t = 1_000)]
        units: u32,
        /// Reservation attempts.
        #[arg(long, default_value_t = 200_000)]
        buyers: u64,
    },
}

fn main() -> ExitCode {
    // `serve --help` shows each flag's default (see `config::document_defaults`).
    let command = Cli::command().mut_subcommand("serve", config::document_defaults);
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match cli.command {
        Command::Demo { units, buyers } => report(omnistock::flash_sale::run(units, buyers)),
        Command::Feed(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return report(Err(format!("cannot start the runtime: {e}"))),
            };
            match runtime.block_on(omnistock::server::export::export(*args)) {
                Ok(summary) => {
                    eprintln!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(message) => report(Err(message)),
            }
        }
        Command::Serve(args) => {
            let config = match (*args).resolve(std::env::var("OMNISTOCK_ADMIN_KEY").ok()) {
                Ok(config) => config,
                Err(message) => {
                    eprintln!("omnistock serve: {message}");
                    return ExitCode::from(2);
                }
            };
            init_logging(config.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return report(Err(format!("cannot start the runtime: {e}"))),
            };
            report(runtime.block_on(omnistock::server::serve(config)))
        }
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("omnistock: {message}");
            ExitCode::FAILURE
        }
    }
}
