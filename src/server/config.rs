//! `omnistock serve` settings: flags, environment variables and an optional
//! TOML file, in that order of precedence, validated before anything starts.

use std::net::ToSocketAddrs;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::ledger::LedgerConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge at once; Redis is written behind.
    Async,
    /// Acknowledge once the change is in Redis.
    Sync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `omnistock serve`. Every flag may also come from the config file.
/// The flags are `Option`s (a flag left out falls back to the file, then to
/// the default), so clap cannot show the defaults itself: `--help` gets them
/// from [`flag_defaults`] (see [`document_defaults`]).
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT or HOST:PORT (a host name such as
    /// localhost is resolved; port 0 picks a free port).
    #[arg(long, env = "OMNISTOCK_LISTEN")]
    pub listen: Option<String>,
    /// Redis URL of the write-behind store (redis://, rediss:// or unix://).
    #[arg(long, env = "OMNISTOCK_REDIS_URL")]
    pub redis_url: Option<String>,
    /// When a write is acknowledged.
    #[arg(long, env = "OMNISTOCK_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// A TOML file with any of these settings (flags and environment win).
    #[arg(long, env = "OMNISTOCK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Load the demo data set: stores, warehouses, groups, policies, thousands of SKUs
    /// (after the listener is bound; with --redis-url only into an empty store).
    #[arg(long)]
    pub demo: bool,
    /// Start even though OMNISTOCK_ADMIN_KEY is not set. No key can call the
    /// API then (not even to create keys): only for probes and experiments.
    #[arg(long)]
    pub allow_no_admin_key: bool,
    /// Requests per second per API key (0: unlimited).
    #[arg(long, env = "OMNISTOCK_RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<u32>,
    /// Requests a key may burst above its rate.
    #[arg(long)]
    pub rate_limit_burst: Option<u32>,
    /// Largest JSON request body, in bytes.
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// How often expired holds are swept back to ATF.
    #[arg(long)]
    pub expiry_sweep_interval_ms: Option<u64>,
    /// Log format (to stderr).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Write-behind: longest a change waits before it is written to Redis
    /// (async mode: the loss window on a crash).
    #[arg(long, env = "OMNISTOCK_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Write-behind: flush early once this many changed items wait.
    #[arg(long, env = "OMNISTOCK_FLUSH_MAX_ITEMS")]
    pub flush_max_items: Option<usize>,
    /// Redis command timeout; a slower write counts as failed and is retried.
    #[arg(long)]
    pub redis_timeout_ms: Option<u64>,
    /// Prefix of every Redis key.
    #[arg(long)]
    pub redis_key_prefix: Option<String>,
    /// Sync mode: also wait until Redis has fsynced its AOF (WAITAOF, Redis >= 7.2).
    #[arg(long)]
    pub wait_aof: bool,
    /// Sync mode: longest a write waits for Redis before answering 503.
    #[arg(long)]
    pub sync_wait_timeout_ms: Option<u64>,
    /// Ad feeds: a store showing the ads channel 1 to this many units is
    /// `limited_availability` (0: never).
    #[arg(long, env = "OMNISTOCK_FEED_LOW_STOCK_THRESHOLD")]
    pub feed_low_stock_threshold: Option<u32>,
    /// Live streams open at once; one more is refused with 503.
    #[arg(long)]
    pub max_stream_subscribers: Option<usize>,
    /// Connections served at once; beyond, new ones wait in the backlog.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// A connection that starts no request and has no response in progress
    /// for this long (a request head that never ends, an idle keep-alive) is
    /// closed, within a quarter of this time more (slow loris).
    #[arg(long)]
    pub header_read_timeout_ms: Option<u64>,
    /// A JSON body must arrive within this time (408 beyond).
    #[arg(long)]
    pub body_read_timeout_ms: Option<u64>,
    /// A request over its key's rate limit gets its 429 after this delay
    /// (at most the Retry-After): a client ignoring Retry-After slows itself
    /// down instead of costing the engine a request at once (0: at once).
    #[arg(long)]
    pub rate_limited_delay_ms: Option<u64>,
    /// Most units one customer (`customer_id` of a reservation) may hold
    /// across its held reservations (0: no cap).
    #[arg(long)]
    pub max_held_units_per_customer: Option<u64>,
    /// A publishable key's requests per second from one client address
    /// (burst: twice as many; 0: no per-address limit).
    #[arg(long)]
    pub rate_limit_per_address: Option<u32>,
    /// Live streams one publishable key may hold open at once.
    #[arg(long)]
    pub max_streams_per_key: Option<usize>,
    /// Live streams of publishable keys one client address may hold open.
    #[arg(long)]
    pub max_streams_per_address: Option<usize>,
    /// Proxies in front of the engine (TLS terminators, load balancers,
    /// CDNs), as addresses or CIDR blocks, comma-separated: for a request
    /// from one of them, the client is the last address of
    /// `X-Forwarded-For` that is not one of them (the per-address limits of
    /// publishable keys count it). Empty: every peer is the client.
    #[arg(long, env = "OMNISTOCK_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Most units one API key may hold across its held reservations, for keys
    /// created without their own `max_held_units` (0: no cap).
    #[arg(long)]
    pub max_held_units_per_key: Option<u64>,
    /// Most lines in one reservation or sale (422 `too_many_lines` beyond).
    #[arg(long)]
    pub max_lines_per_request: Option<usize>,
    /// Longest hold a reservation may ask for, in seconds (422 `ttl_out_of_range` beyond).
    #[arg(long)]
    pub max_ttl_seconds: Option<u64>,
    /// Most items in one batch request (availability, movements; 422 `too_many_items` beyond).
    #[arg(long)]
    pub max_batch_items: Option<usize>,
    /// Run as one node of an omnistock cluster: --redis-url names any seed
    /// node of a Redis Cluster, which holds the stock, partition leases and
    /// the shared catalog and keys.
    #[arg(long, env = "OMNISTOCK_CLUSTER")]
    pub cluster: bool,
    /// This node's id in the cluster (1 to 64 characters of A-Z a-z 0-9 . _ : -).
    #[arg(long, env = "OMNISTOCK_NODE_ID")]
    pub node_id: Option<String>,
    /// How the other nodes reach this node's API (--cluster).
    #[arg(long, env = "OMNISTOCK_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Partitions of the cluster's stock, fixed when the cluster's store is
    /// created (a node with another number refuses to start).
    #[arg(long, env = "OMNISTOCK_PARTITIONS")]
    pub partitions: Option<u16>,
}

/// The same settings as they may appear in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    redis_url: Option<String>,
    durability: Option<Durability>,
    demo: Option<bool>,
    allow_no_admin_key: Option<bool>,
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    max_body_bytes: Option<usize>,
    expiry_sweep_interval_ms: Option<u64>,
    log_format: Option<LogFormat>,
    flush_interval_ms: Option<u64>,
    flush_max_items: Option<usize>,
    redis_timeout_ms: Option<u64>,
    redis_key_prefix: Option<String>,
    wait_aof: Option<bool>,
    sync_wait_timeout_ms: Option<u64>,
    feed_low_stock_threshold: Option<u32>,
    max_stream_subscribers: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    max_held_units_per_customer: Option<u64>,
    max_held_units_per_key: Option<u64>,
    rate_limited_delay_ms: Option<u64>,
    rate_limit_per_address: Option<u32>,
    max_streams_per_key: Option<usize>,
    max_streams_per_address: Option<usize>,
    trusted_proxies: Option<String>,
    max_lines_per_request: Option<usize>,
    max_ttl_seconds: Option<u64>,
    max_batch_items: Option<usize>,
    cluster: Option<bool>,
    node_id: Option<String>,
    advertise_url: Option<String>,
    partitions: Option<u16>,
}

/// Settings after merging and validation.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `IP:PORT` or `HOST:PORT`; a host name is resolved when binding, and
    /// every address it resolves to is tried in turn.
    pub listen: String,
    pub redis_url: Option<String>,
    pub durability: Durability,
    pub demo: bool,
    /// Start without `OMNISTOCK_ADMIN_KEY` (refused otherwise).
    pub allow_no_admin_key: bool,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub max_body_bytes: usize,
    pub expiry_sweep_interval_ms: u64,
    pub log_format: LogFormat,
    pub flush_interval_ms: u64,
    pub flush_max_items: usize,
    pub redis_timeout_ms: u64,
    pub redis_key_prefix: String,
    pub wait_aof: bool,
    pub sync_wait_timeout_ms: u64,
    pub feed_low_stock_threshold: u32,
    pub max_stream_subscribers: usize,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub max_held_units_per_customer: u64,
    pub max_held_units_per_key: u64,
    pub rate_limited_delay_ms: u64,
    pub rate_limit_per_address: u32,
    pub max_streams_per_key: usize,
    pub max_streams_per_address: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_lines_per_request: usize,
    pub max_ttl_seconds: u64,
    pub max_batch_items: usize,
    /// One node of a cluster (`--cluster`).
    pub cluster: bool,
    pub node_id: Option<String>,
    pub advertise_url: Option<String>,
    pub partitions: u16,
    /// From `OMNISTOCK_ADMIN_KEY` only: secrets do not belong in flags or files.
    pub admin_key: Option<String>,
}

impl ServeConfig {
    /// The ledger's limits: production defaults with this server's request
    /// limits (`--max-lines-per-request`, `--max-ttl-seconds`).
    pub fn ledger_config(&self) -> LedgerConfig {
        LedgerConfig {
            max_lines_per_request: self.max_lines_per_request,
            max_ttl_ms: self.max_ttl_seconds.saturating_mul(1_000),
            ..LedgerConfig::default()
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            redis_url: None,
            durability: Durability::Async,
            demo: false,
            allow_no_admin_key: false,
            rate_limit_per_second: 20_000,
            rate_limit_burst: 40_000,
            max_body_bytes: 256 * 1024,
            expiry_sweep_interval_ms: 10,
            log_format: LogFormat::Text,
            flush_interval_ms: 10,
            flush_max_items: 50_000,
            redis_timeout_ms: 2_000,
            redis_key_prefix: "omnistock".into(),
            wait_aof: false,
            sync_wait_timeout_ms: 5_000,
            feed_low_stock_threshold: 2,
            max_stream_subscribers: 10_000,
            max_connections: 20_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_held_units_per_customer: 500,
            max_held_units_per_key: 0,
            rate_limited_delay_ms: 200,
            rate_limit_per_address: 50,
            max_streams_per_key: 5_000,
            max_streams_per_address: 10,
            trusted_proxies: Vec::new(),
            max_lines_per_request: 100,
            max_ttl_seconds: 604_800,
            max_batch_items: 1_000,
            cluster: false,
            node_id: None,
            advertise_url: None,
            partitions: 64,
            admin_key: None,
        }
    }
}

impl ServeArgs {
    /// Merges flags/environment over the file over defaults, and validates.
    pub fn resolve(self, admin_key: Option<String>) -> Result<ServeConfig, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = ServeConfig::default();
        // A flag or environment variable, else the file, else the default.
        macro_rules! merged {
            ($field:ident) => {
                self.$field.or(file.$field).unwrap_or(defaults.$field)
            };
        }
        let config = ServeConfig {
            listen: merged!(listen),
            redis_url: self.redis_url.or(file.redis_url).filter(|u| !u.is_empty()),
            durability: merged!(durability),
            demo: self.demo || file.demo.unwrap_or(false),
            allow_no_admin_key: self.allow_no_admin_key || file.allow_no_admin_key.unwrap_or(false),
            rate_limit_per_second: merged!(rate_limit_per_second),
            rate_limit_burst: merged!(rate_limit_burst),
            max_body_bytes: merged!(max_body_bytes),
            expiry_sweep_interval_ms: merged!(expiry_sweep_interval_ms),
            log_format: merged!(log_format),
            flush_interval_ms: merged!(flush_interval_ms),
            flush_max_items: merged!(flush_max_items),
            redis_timeout_ms: merged!(redis_timeout_ms),
            redis_key_prefix: merged!(redis_key_prefix),
            wait_aof: self.wait_aof || file.wait_aof.unwrap_or(false),
            sync_wait_timeout_ms: merged!(sync_wait_timeout_ms),
            feed_low_stock_threshold: merged!(feed_low_stock_threshold),
            max_stream_subscribers: merged!(max_stream_subscribers),
            max_connections: merged!(max_connections),
            header_read_timeout_ms: merged!(header_read_timeout_ms),
            body_read_timeout_ms: merged!(body_read_timeout_ms),
            max_held_units_per_customer: merged!(max_held_units_per_customer),
            max_held_units_per_key: merged!(max_held_units_per_key),
            rate_limited_delay_ms: merged!(rate_limited_delay_ms),
            rate_limit_per_address: merged!(rate_limit_per_address),
            max_streams_per_key: merged!(max_streams_per_key),
            max_streams_per_address: merged!(max_streams_per_address),
            trusted_proxies: parse_proxies(self.trusted_proxies.or(file.trusted_proxies))?,
            max_lines_per_request: merged!(max_lines_per_request),
            max_ttl_seconds: merged!(max_ttl_seconds),
            max_batch_items: merged!(max_batch_items),
            cluster: self.cluster || file.cluster.unwrap_or(false),
            node_id: self.node_id.or(file.node_id).filter(|n| !n.is_empty()),
            advertise_url: self
                .advertise_url
                .or(file.advertise_url)
                .filter(|u| !u.is_empty()),
            partitions: merged!(partitions),
            admin_key: admin_key.filter(|k| !k.is_empty()),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Resolves `--listen`: `IP:PORT` as is, `HOST:PORT` through the resolver.
pub fn listen_addresses(listen: &str) -> Result<Vec<std::net::SocketAddr>, String> {
    let addresses: Vec<_> = listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {listen}: {e} (expected IP:PORT or HOST:PORT)"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!(
            "--listen {listen}: the host name resolves to no address"
        ));
    }
    Ok(addresses)
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), String> {
        listen_addresses(&self.listen)?;
        self.validate_store()?;
        self.validate_cluster()?;
        self.validate_limits()?;
        self.validate_admin_key()
    }

    /// The store and durability flags.
    fn validate_store(&self) -> Result<(), String> {
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
        {
            return Err(format!(
                "--redis-url {url:?}: expected redis://, rediss:// or unix://"
            ));
        }
        if self.redis_url.is_none() {
            if self.durability == Durability::Sync {
                return Err(
                    "--durability sync needs a store to be durable in: set --redis-url".into(),
                );
            }
            if self.wait_aof {
                return Err("--wait-aof needs --redis-url".into());
            }
        }
        if self.wait_aof && self.durability != Durability::Sync {
            return Err("--wait-aof only applies with --durability sync".into());
        }
        if !(1..=60_000).contains(&self.flush_interval_ms) {
            return Err("--flush-interval-ms must be between 1 and 60000".into());
        }
        if !(1..=10_000_000).contains(&self.flush_max_items) {
            return Err("--flush-max-items must be between 1 and 10000000".into());
        }
        if !(10..=600_000).contains(&self.redis_timeout_ms) {
            return Err("--redis-timeout-ms must be between 10 and 600000".into());
        }
        if !(10..=600_000).contains(&self.sync_wait_timeout_ms) {
            return Err("--sync-wait-timeout-ms must be between 10 and 600000".into());
        }
        if self.redis_key_prefix.is_empty()
            || self.redis_key_prefix.len() > 64
            || !self
                .redis_key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err("--redis-key-prefix must be 1 to 64 characters of [A-Za-z0-9._-]".into());
        }
        Ok(())
    }

    /// The cluster flags: only with --cluster, and what a cluster needs.
    fn validate_cluster(&self) -> Result<(), String> {
        if !self.cluster {
            if self.node_id.is_some() || self.advertise_url.is_some() {
                return Err("--node-id and --advertise-url need --cluster".into());
            }
            return Ok(());
        }
        match &self.redis_url {
            Some(url) if url.starts_with("redis://") => {}
            _ => {
                return Err(
                    "--cluster needs --redis-url redis://HOST:PORT naming a node of a Redis Cluster"
                        .into(),
                );
            }
        }
        if self.wait_aof {
            return Err("--wait-aof is not available with --cluster".into());
        }
        omnistock_cluster::Partitions::new(u64::from(self.partitions))
            .map_err(|e| format!("--partitions: {e}"))?;
        if let Some(id) = &self.node_id {
            omnistock_cluster::NodeId::new(id).map_err(|e| format!("--node-id: {e}"))?;
        }
        if let Some(url) = &self.advertise_url
            && !(url.starts_with("http://") && url.len() > "http://".len())
        {
            return Err(format!(
                "--advertise-url {url:?}: expected http://HOST:PORT"
            ));
        }
        Ok(())
    }

    /// Request, connection and ledger limits.
    fn validate_limits(&self) -> Result<(), String> {
        if !(1_024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err("--max-body-bytes must be between 1 KiB and 64 MiB".into());
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err("--max-connections must be between 1 and 1000000".into());
        }
        if !(100..=600_000).contains(&self.header_read_timeout_ms) {
            return Err("--header-read-timeout-ms must be between 100 and 600000".into());
        }
        if !(100..=600_000).contains(&self.body_read_timeout_ms) {
            return Err("--body-read-timeout-ms must be between 100 and 600000".into());
        }
        if !(1..=1_000_000).contains(&self.max_stream_subscribers) {
            return Err("--max-stream-subscribers must be between 1 and 1000000".into());
        }
        if !(1..=1_000_000).contains(&self.max_streams_per_key)
            || !(1..=1_000_000).contains(&self.max_streams_per_address)
        {
            return Err(
                "--max-streams-per-key and --max-streams-per-address must be between 1 and 1000000"
                    .into(),
            );
        }
        if self.rate_limited_delay_ms > 10_000 {
            return Err("--rate-limited-delay-ms must be at most 10000".into());
        }
        if !(1..=10_000).contains(&self.max_lines_per_request) {
            return Err("--max-lines-per-request must be between 1 and 10000".into());
        }
        if !(1..=30 * 86_400).contains(&self.max_ttl_seconds) {
            return Err("--max-ttl-seconds must be between 1 and 2592000 (30 days)".into());
        }
        if !(1..=100_000).contains(&self.max_batch_items) {
            return Err("--max-batch-items must be between 1 and 100000".into());
        }
        if !(1..=60_000).contains(&self.expiry_sweep_interval_ms) {
            return Err("--expiry-sweep-interval-ms must be between 1 and 60000".into());
        }
        Ok(())
    }

    fn validate_admin_key(&self) -> Result<(), String> {
        match &self.admin_key {
            Some(key) if key.len() < 16 => {
                return Err("OMNISTOCK_ADMIN_KEY must be at least 16 characters".into());
            }
            // Without a key nothing can call the API; starting like that by
            // accident (a deployment that lost its secret) must not look
            // like a healthy start.
            None if !self.allow_no_admin_key => {
                return Err(
                    "OMNISTOCK_ADMIN_KEY is not set, so no key could call the API: \
                     set it to an admin key of at least 16 characters, \
                     or pass --allow-no-admin-key to start without one"
                        .into(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// The default of every `serve` flag that takes a value, by argument id, as
/// `--help` shows it (taken from [`ServeConfig::default`], so the help
/// cannot drift from the behaviour).
/// `--trusted-proxies`: addresses (a single host) or CIDR blocks.
fn parse_proxies(text: Option<String>) -> Result<Vec<ipnet::IpNet>, String> {
    let text = text.unwrap_or_default();
    let proxies = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("--trusted-proxies: {item:?} is not an address or CIDR block"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if proxies.len() > 1_000 {
        return Err("--trusted-proxies: at most 1000 entries".into());
    }
    Ok(proxies)
}

pub fn flag_defaults() -> Vec<(&'static str, String)> {
    let d = ServeConfig::default();
    let name = |value: Option<clap::builder::PossibleValue>| {
        value.map_or_else(String::new, |v| v.get_name().to_owned())
    };
    vec![
        ("listen", d.listen.clone()),
        (
            "redis_url",
            "none: the embedded in-memory store, state lost on exit".into(),
        ),
        ("durability", name(d.durability.to_possible_value())),
        ("config", "none".into()),
        ("rate_limit_per_second", d.rate_limit_per_second.to_string()),
        ("rate_limit_burst", d.rate_limit_burst.to_string()),
        ("max_body_bytes", d.max_body_bytes.to_string()),
        (
            "expiry_sweep_interval_ms",
            d.expiry_sweep_interval_ms.to_string(),
        ),
        ("log_format", name(d.log_format.to_possible_value())),
        ("flush_interval_ms", d.flush_interval_ms.to_string()),
        ("flush_max_items", d.flush_max_items.to_string()),
        ("redis_timeout_ms", d.redis_timeout_ms.to_string()),
        ("redis_key_prefix", d.redis_key_prefix.clone()),
        ("sync_wait_timeout_ms", d.sync_wait_timeout_ms.to_string()),
        (
            "feed_low_stock_threshold",
            d.feed_low_stock_threshold.to_string(),
        ),
        (
            "max_stream_subscribers",
            d.max_stream_subscribers.to_string(),
        ),
        ("max_connections", d.max_connections.to_string()),
        (
            "header_read_timeout_ms",
            d.header_read_timeout_ms.to_string(),
        ),
        ("body_read_timeout_ms", d.body_read_timeout_ms.to_string()),
        ("rate_limited_delay_ms", d.rate_limited_delay_ms.to_string()),
        (
            "rate_limit_per_address",
            d.rate_limit_per_address.to_string(),
        ),
        ("max_streams_per_key", d.max_streams_per_key.to_string()),
        (
            "max_streams_per_address",
            d.max_streams_per_address.to_string(),
        ),
        ("trusted_proxies", "none".into()),
        (
            "max_held_units_per_customer",
            d.max_held_units_per_customer.to_string(),
        ),
        (
            "max_held_units_per_key",
            d.max_held_units_per_key.to_string(),
        ),
        ("max_lines_per_request", d.max_lines_per_request.to_string()),
        ("max_ttl_seconds", d.max_ttl_seconds.to_string()),
        ("max_batch_items", d.max_batch_items.to_string()),
        ("node_id", "derived from --advertise-url".into()),
        ("advertise_url", "http:// and the listen address".into()),
        ("partitions", d.partitions.to_string()),
    ]
}

/// What `serve --help` says after the flags: the one setting that is not a
/// flag, and the precedence.
pub const SERVE_AFTER_HELP: &str = "\
Environment:
  OMNISTOCK_ADMIN_KEY  The admin API key, at least 16 characters (environment only: no \
secrets in flags or files). Required unless --allow-no-admin-key is given.

Each setting comes from its flag, else its environment variable, else the --config file \
(same names as the flags, with underscores), else its default.";

/// Adds each flag's default to its help text in the `serve` command
/// (`[default: ...]`, as clap shows the defaults it knows).
pub fn document_defaults(serve: clap::Command) -> clap::Command {
    flag_defaults()
        .into_iter()
        .fold(serve, |command, (id, value)| {
            command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {value}]"))
            })
        })
        .after_help(SERVE_AFTER_HELP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("omnistock-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("omnistock.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nrate_limit_per_second = 5\nmax_body_bytes = 4096\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path.clone()),
            rate_limit_per_second: Some(7),
            allow_no_admin_key: true,
            ..ServeArgs::default()
        };
        let config = args.resolve(None).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:9999");
        assert_eq!(config.rate_limit_per_second, 7);
        assert_eq!(config.max_body_bytes, 4096);
        assert_eq!(config.expiry_sweep_interval_ms, 10);
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\nunknown = 1\n").expect("write");
        let error = ServeArgs {
            config: Some(path),
            allow_no_admin_key: true,
            ..ServeArgs::default()
        }
        .resolve(None)
        .expect_err("unknown key");
        assert!(error.contains("unknown"), "{error}");
    }

    #[test]
    fn a_missing_admin_key_is_allowed_only_when_asked_for() {
        let error = ServeArgs::default().resolve(None).expect_err("refused");
        assert!(
            error.contains("OMNISTOCK_ADMIN_KEY") && error.contains("--allow-no-admin-key"),
            "{error}"
        );
        let config = ServeArgs {
            allow_no_admin_key: true,
            ..ServeArgs::default()
        }
        .resolve(None)
        .expect("allowed");
        assert!(config.admin_key.is_none());
        ServeArgs::default()
            .resolve(Some("a-long-enough-admin-key".into()))
            .expect("a key is enough");
    }

    #[test]
    fn listen_accepts_host_names() {
        let config = ServeArgs {
            listen: Some("localhost:0".into()),
            ..ServeArgs::default()
        }
        .resolve(Some("a-long-enough-admin-key".into()))
        .expect("valid");
        let addresses = listen_addresses(&config.listen).expect("resolves");
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
    }

    #[test]
    fn invalid_settings_are_refused_with_a_reason() {
        let cases = [
            (
                ServeArgs {
                    durability: Some(Durability::Sync),
                    ..ServeArgs::default()
                },
                None,
                "--redis-url",
            ),
            (
                ServeArgs {
                    redis_url: Some("redis://127.0.0.1:1".into()),
                    flush_interval_ms: Some(0),
                    ..ServeArgs::default()
                },
                None,
                "flush-interval-ms",
            ),
            (
                ServeArgs {
                    redis_url: Some("redis://127.0.0.1:1".into()),
                    wait_aof: true,
                    ..ServeArgs::default()
                },
                None,
                "durability sync",
            ),
            (
                ServeArgs {
                    redis_key_prefix: Some("a b".into()),
                    ..ServeArgs::default()
                },
                None,
                "prefix",
            ),
            (
                ServeArgs {
                    redis_url: Some("http://x".into()),
                    ..ServeArgs::default()
                },
                None,
                "redis://",
            ),
            (
                ServeArgs {
                    max_body_bytes: Some(10),
                    ..ServeArgs::default()
                },
                None,
                "max-body-bytes",
            ),
            (
                ServeArgs {
                    cluster: true,
                    ..ServeArgs::default()
                },
                None,
                "--cluster needs --redis-url",
            ),
            (
                ServeArgs {
                    cluster: true,
                    redis_url: Some("redis://127.0.0.1:7000".into()),
                    partitions: Some(0),
                    ..ServeArgs::default()
                },
                None,
                "--partitions",
            ),
            (
                ServeArgs {
                    cluster: true,
                    redis_url: Some("redis://127.0.0.1:7000".into()),
                    node_id: Some("node one".into()),
                    ..ServeArgs::default()
                },
                None,
                "--node-id",
            ),
            (
                ServeArgs {
                    cluster: true,
                    redis_url: Some("redis://127.0.0.1:7000".into()),
                    advertise_url: Some("127.0.0.1:8081".into()),
                    ..ServeArgs::default()
                },
                None,
                "--advertise-url",
            ),
            (
                ServeArgs {
                    node_id: Some("node-1".into()),
                    ..ServeArgs::default()
                },
                None,
                "need --cluster",
            ),
            (
                ServeArgs::default(),
                Some("short".to_string()),
                "16 characters",
            ),
            (ServeArgs::default(), None, "--allow-no-admin-key"),
            (
                ServeArgs {
                    listen: Some("8080".into()),
                    allow_no_admin_key: true,
                    ..ServeArgs::default()
                },
                None,
                "--listen 8080",
            ),
        ];
        for (args, key, expected) in cases {
            let error = args.resolve(key).expect_err("invalid");
            assert!(error.contains(expected), "{error}");
        }
    }
}
