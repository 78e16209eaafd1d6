//! Command-line arguments (clap). Names carry their units.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::dataset::DataSetConfig;
use crate::fixed::FixedRequest;
use crate::paired::{PairedConfig, parse_engine};
use crate::rng::Skew;
use crate::run::RunConfig;
use crate::scenario::{Scenario, Weights};
use crate::targets::{SpawnOptions, Target};

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    about = "Load-test omnistock over HTTP, audit it, and compare it with a Redis-Lua baseline and a no-op ceiling"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Drive one target with a scenario, audit it, report.
    Run(RunArgs),
    /// omnistock, the Redis-Lua baseline and the no-op ceiling back to back, with ratios.
    Compare(CompareArgs),
    /// omnistock binaries next to the no-op ceiling, alternating slices of fixed requests;
    /// each engine's rate over the no-op's, per round, with a bootstrap interval.
    Paired(PairedArgs),
    /// One fixed request (a reservation or a read) in a closed loop against a running
    /// server, as wrk did: requests, statuses, latency.
    Fixed(FixedArgs),
    /// Per-key isolation: a well-behaved client's latency alone, then while another key
    /// floods the engine with reservations far beyond its rate limit.
    Flood(FloodArgs),
    /// The no-op HTTP target (the ceiling); started by `run` and `compare`.
    #[command(hide = true)]
    ServeNoop {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18090")]
        listen: std::net::SocketAddr,
    },
    /// The Redis-Lua baseline target; started by `run` and `compare`.
    #[command(hide = true)]
    ServeRedisLua {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18091")]
        listen: std::net::SocketAddr,
        /// The Redis holding the baseline's stock (redis://host:port).
        #[arg(long)]
        redis_url: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Regular SKUs in the data set (each at every location).
    #[arg(long, default_value_t = 2_000)]
    pub skus: usize,
    /// Stores in the data set (locations that sell, in the store group).
    #[arg(long, default_value_t = 20)]
    pub stores: usize,
    /// Warehouses in the data set (locations that ship online orders).
    #[arg(long, default_value_t = 2)]
    pub warehouses: usize,
    /// Mean initial on hand per position.
    #[arg(long, default_value_t = 100)]
    pub initial_on_hand: u32,
    /// Popularity of SKUs: uniform, zipf (s = 1) or zipf:S.
    #[arg(long, default_value = "uniform")]
    pub skew: Skew,
    /// Units of the hot SKU in each flash-sale round (N).
    #[arg(long, default_value_t = 1_000)]
    pub flash_units: u32,
    /// Buyers per unit in a flash-sale round.
    #[arg(long, default_value_t = 20)]
    pub flash_buyers_per_unit: u32,
    /// Flash-sale rounds, one hot SKU each, run one after the other.
    #[arg(long, default_value_t = 5)]
    pub flash_rounds: usize,
    /// Seed of the workload's randomness (same seed, same requests).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl DataArgs {
    pub fn config(&self) -> DataSetConfig {
        DataSetConfig {
            skus: self.skus.max(1),
            stores: self.stores,
            warehouses: self.warehouses,
            initial_on_hand: self.initial_on_hand,
            skew: self.skew.clone(),
            flash_units: self.flash_units,
            flash_rounds: self.flash_rounds,
            flash_buyers_per_unit: self.flash_buyers_per_unit,
            // Time mixed in: run ids (and SKU codes) differ between runs.
            seed: self.seed ^ crate::dataset::unix_ms().rotate_left(17),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SpawnArgs {
    /// The omnistock binary the tool starts (default: next to this one, target/release/omnistock).
    #[arg(long)]
    pub omnistock_bin: Option<PathBuf>,
    /// The redis-server binary the tool starts for the Redis targets (a name is looked up in PATH).
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// What to drive: omnistock (in memory), omnistock-async / omnistock-sync (with a
    /// Redis store the tool starts), redis-lua (the baseline) or noop (the ceiling).
    #[arg(long, value_enum, default_value = "omnistock")]
    pub target: Target,
    /// A running target (e.g. http://127.0.0.1:8080); without it the tool starts one.
    /// A cluster: its nodes' URLs separated by commas (http://127.0.0.1:8081,http://127.0.0.1:8082);
    /// connection i goes to URL i % n, so the load splits evenly over the nodes. Seeding (the
    /// catalog, then the counts by import) and the audit (of every position) go through the first.
    #[arg(long, value_name = "URL[,URL...]")]
    pub url: Option<String>,
    /// The running target's admin key (needed with --url; a started target gets its own).
    #[arg(long, env = "OMNISTOCK_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The workload. One iteration of each (the unit of --iterations-per-s): browse = a
    /// page view (1 request); checkout = a cart held, then committed or released (1-2
    /// requests); pos = a till transaction (1); flash-sale = a buyer (reserve, commit if
    /// granted: 1-2); feed = a feed poll (1); import = an ERP import of --import-rows rows
    /// (1); reserve / reserve-batch = a reservation (1); mixed = one of the blend's.
    #[arg(long, value_enum, default_value = "mixed")]
    pub scenario: Scenario,
    /// Blend of `mixed` (per mille), e.g. browse=700,checkout=150,pos=100,flash-sale=45,feed=4,import=1.
    #[arg(long, default_value_t = Weights::default())]
    pub weights: Weights,
    /// Connections (one worker task each) the load is spread over.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Closed-loop warm-up before measuring (not reported).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Open loop: start this many scenario iterations per second, in total over the
    /// connections (an iteration, not a request: a checkout or a flash-sale buyer may send
    /// 2 requests; see --scenario); latency is measured from each scheduled start.
    /// Default: closed loop (each connection starts its next iteration when one ends).
    /// (Alias: --rate-per-s.)
    #[arg(
        long = "iterations-per-s",
        visible_alias = "rate-per-s",
        value_name = "ITERATIONS"
    )]
    pub rate_per_s: Option<f64>,
    /// Rate sweep: open-loop phases at these % of the maximum iterations per second
    /// (measured first by a closed-loop phase), e.g. 25,50,75,90.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// The maximum, in scenario iterations per second, the sweep's percentages apply to
    /// (skips measuring it). (Alias: --max-rate-per-s.)
    #[arg(
        long = "max-iterations-per-s",
        visible_alias = "max-rate-per-s",
        value_name = "ITERATIONS"
    )]
    pub max_rate_per_s: Option<f64>,
    /// TTL of holds left to expire (reserve scenarios, abandoned carts).
    #[arg(long, default_value_t = 2)]
    pub hold_ttl_s: u64,
    /// Lines per reservation in reserve-batch.
    #[arg(long, default_value_t = 100)]
    pub batch_lines: usize,
    /// Rows per ERP import request (at most 1,000, what the engine reports per request).
    #[arg(long, default_value_t = 1_000)]
    pub import_rows: usize,
    /// Feed scenario: incremental polls (?since=cursor) between two full feeds.
    #[arg(long, default_value_t = 20)]
    pub feed_incremental_per_full: u32,
    /// A request unanswered after this long counts as an error.
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout_s: f64,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin a target the tool starts to this core (taskset).
    #[arg(long)]
    pub pin_target_core: Option<usize>,
    /// Reports (run-TARGET-SCENARIO.json and .svg) and the logs of started targets
    /// (logs/) go here; a relative path is relative to the current directory.
    #[arg(long, default_value = "target/loadtest-reports")]
    pub out_dir: PathBuf,
    /// Write the JSON report to exactly this path instead of --out-dir.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// No progress line on stderr (by default: redrawn every second on a terminal,
    /// one line every 5 s otherwise).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub spawn: SpawnArgs,
}

impl RunArgs {
    pub fn config(&self) -> Result<RunConfig, String> {
        let seconds = |name: &str, s: f64| {
            if (0.0..86_400.0).contains(&s) {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(format!("{name} must be between 0 and 86400 seconds"))
            }
        };
        if self.connections == 0 || self.connections > 10_000 {
            return Err("--connections must be 1 to 10000".into());
        }
        if let Some(rate) = self.rate_per_s
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err("--iterations-per-s must be above 0".into());
        }
        if self
            .sweep
            .iter()
            .any(|p| !(p.is_finite() && *p > 0.0 && *p <= 200.0))
        {
            return Err("--sweep percentages must be in (0, 200]".into());
        }
        if !(1..=1_000).contains(&self.import_rows) {
            return Err("--import-rows must be 1 to 1000".into());
        }
        if !(1..=100).contains(&self.batch_lines) {
            return Err(
                "--batch-lines must be 1 to 100 (the engine's lines per reservation)".into(),
            );
        }
        Ok(RunConfig {
            target: self.target,
            url: self.url.clone(),
            admin_key: self.admin_key.clone(),
            scenario: self.scenario,
            weights: self.weights.clone(),
            connections: self.connections,
            duration: seconds("--duration-s", self.duration_s)?,
            warmup: seconds("--warmup-s", self.warmup_s)?,
            rate_per_s: self.rate_per_s,
            sweep_percent: self.sweep.clone(),
            max_rate_per_s: self.max_rate_per_s,
            data: self.data.config(),
            hold_ttl_s: self.hold_ttl_s.clamp(1, 3_600),
            batch_lines: self.batch_lines,
            import_rows: self.import_rows,
            feed_incremental_per_full: self.feed_incremental_per_full,
            request_timeout: seconds("--request-timeout-s", self.request_timeout_s)?
                .max(Duration::from_millis(10)),
            spawn: SpawnOptions {
                pin_core: self.pin_target_core,
                omnistock_bin: self.spawn.omnistock_bin.clone(),
                redis_server: self.spawn.redis_server.clone(),
                loadtest_bin: None,
                log_dir: self.out_dir.join("logs"),
            },
            progress: !self.no_progress,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Targets, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "omnistock,redis-lua,noop"
    )]
    pub targets: Vec<Target>,
    /// Also run omnistock with the Redis write-behind store, async and sync.
    #[arg(long)]
    pub durability: bool,
    /// Rounds of closed-loop runs, interleaved across targets; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Length of each measured run.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Closed-loop warm-up before each run (not reported).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Open-loop phases of the single-line reservation run, in % of its maximum
    /// (reservations per second; one request each).
    #[arg(long, value_delimiter = ',', default_value = "25,50,75,90")]
    pub sweep: Vec<f64>,
    /// Lines per reservation in the batch run.
    #[arg(long, default_value_t = 100)]
    pub batch_lines: usize,
    /// Do not pin (default: with 2+ cores and taskset, targets on core 0, the generator on core 1).
    #[arg(long)]
    pub no_pin: bool,
    /// compare.json, compare.svg and each run's report (runs/) go here; a relative
    /// path is relative to the current directory.
    #[arg(long, default_value = "bench/reports")]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub spawn: SpawnArgs,
}

/// Seconds as a `Duration`, if in `[min, 86400)`.
fn seconds(name: &str, s: f64, min: f64) -> Result<Duration, String> {
    if (min..86_400.0).contains(&s) && s.is_finite() {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "{name} must be at least {min} and below 86400 seconds"
        ))
    }
}

fn connections(name: &str, n: usize) -> Result<usize, String> {
    if (1..=10_000).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{name} must be 1 to 10000"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct PairedArgs {
    /// An omnistock binary to measure, as LABEL=BINARY (repeat for an A/B of builds); each is
    /// started with `serve --demo`, rate limiting off. Default: current=the omnistock next to
    /// this binary (target/release/omnistock).
    #[arg(long = "engine", value_name = "LABEL=BINARY", value_parser = parse_engine)]
    pub engines: Vec<(String, PathBuf)>,
    /// The fixed requests measured, each in its own slices: reserve (a single-line hold of
    /// HOT at WH-NORD) and read (GET SKU-00042 at WH-NORD).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "reserve,read"
    )]
    pub requests: Vec<FixedRequest>,
    /// Rounds; each loads every server for one slice of each request, in turn.
    #[arg(long, default_value_t = 8)]
    pub rounds: usize,
    /// Length of one slice.
    #[arg(long, default_value_t = 2.0)]
    pub slice_s: f64,
    /// Continuous reservations on each engine before the rounds (65 with the default 60 s
    /// holds: steady state, holds expire as fast as they are granted). Default: none.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_s: f64,
    /// Connections of the generator (wrk -c).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// TTL of the reservations' holds.
    #[arg(long, default_value_t = 60)]
    pub hold_ttl_s: u64,
    /// Another no-op build as the ceiling, e.g. target/release/examples/noop_server (it is
    /// given 127.0.0.1:PORT); default: this binary's built-in no-op.
    #[arg(long)]
    pub noop_bin: Option<PathBuf>,
    /// Bootstrap resamples of the median ratio's interval.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Do not pin (default: with 2+ cores and taskset, servers on core 0, the generator on core 1).
    #[arg(long)]
    pub no_pin: bool,
    /// paired.json and the servers' logs (logs/) go here.
    #[arg(long, default_value = "target/loadtest-reports")]
    pub out_dir: PathBuf,
}

impl PairedArgs {
    /// `default_engine`: the omnistock binary used when no --engine is given.
    pub fn config(
        &self,
        default_engine: impl FnOnce() -> Result<PathBuf, String>,
    ) -> Result<PairedConfig, String> {
        if !(1..=100_000).contains(&self.rounds) {
            return Err("--rounds must be 1 to 100000".into());
        }
        if self.requests.is_empty() {
            return Err("--requests names no request".into());
        }
        let mut engines = self.engines.clone();
        if engines.is_empty() {
            engines.push(("current".into(), default_engine()?));
        }
        for (i, (label, _)) in engines.iter().enumerate() {
            if engines[..i].iter().any(|(other, _)| other == label) {
                return Err(format!("the label {label:?} is given twice"));
            }
        }
        Ok(PairedConfig {
            engines,
            requests: self.requests.clone(),
            rounds: self.rounds,
            slice: seconds("--slice-s", self.slice_s, 0.1)?,
            warmup: seconds("--warmup-s", self.warmup_s, 0.0)?,
            connections: connections("--connections", self.connections)?,
            hold_ttl_s: self.hold_ttl_s.clamp(1, 3_600),
            noop_bin: self.noop_bin.clone(),
            pin: !self.no_pin && crate::targets::can_pin(),
            resamples: self.resamples.clamp(100, 1_000_000),
            log_dir: self.out_dir.join("logs"),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct FixedArgs {
    /// The running server (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub url: String,
    /// The key sent as `Authorization: Bearer` (none: no header).
    #[arg(long, env = "OMNISTOCK_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The request: reserve (POST /v1/reservations, one line of one unit) or read (GET one position).
    #[arg(long, value_enum, default_value = "reserve")]
    pub request: FixedRequest,
    /// The SKU the request names (default: HOT for reserve, SKU-00042 for read).
    #[arg(long)]
    pub sku: Option<String>,
    /// The location the request names (default: WH-NORD).
    #[arg(long)]
    pub location: Option<String>,
    /// TTL of the reservations' holds.
    #[arg(long, default_value_t = 60)]
    pub hold_ttl_s: u64,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Connections, each sending its next request when the last is answered.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Pin this process to this core (taskset).
    #[arg(long)]
    pub pin_core: Option<usize>,
}

impl FixedArgs {
    pub fn duration(&self) -> Result<Duration, String> {
        connections("--connections", self.connections)?;
        seconds("--duration-s", self.duration_s, 0.1)
    }
}

#[derive(Args, Debug, Clone)]
pub struct FloodArgs {
    /// Length of each of the good client's runs (alone, then flooded).
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// The well-behaved client's open-loop rate: storefront page views (browse) per second,
    /// under the admin key. Every key's limit is twice this, with a burst of 50 ms of it.
    #[arg(long, default_value_t = 1_000.0)]
    pub good_iterations_per_s: f64,
    /// Connections of the flooding key (closed loop, reservations).
    #[arg(long, default_value_t = 64)]
    pub flood_connections: usize,
    /// An extra `omnistock serve` argument (repeat), e.g. --serve-arg=--rate-limited-delay-ms
    /// --serve-arg=0 to see the flood without the tarpit.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// The omnistock binary (default: next to this one, target/release/omnistock).
    #[arg(long)]
    pub omnistock_bin: Option<PathBuf>,
    /// Do not pin (default: with 2+ cores and taskset, the engine on core 0, both clients on core 1).
    #[arg(long)]
    pub no_pin: bool,
    /// The good client's reports and the engine's log (logs/) go here.
    #[arg(long, default_value = "target/loadtest-reports")]
    pub out_dir: PathBuf,
}
