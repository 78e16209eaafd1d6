//! `omnistock feed google|meta --redis-url URL --out FILE`: a feed file
//! written from the Redis store, for retailers who upload files instead of
//! being polled. It loads the store into a private in-memory ledger (the
//! engine keeps running undisturbed) and writes the same rows the feed route
//! serves.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::feeds::{FeedPlan, Format};
use crate::http::now;
use crate::ledger::{Ledger, LedgerConfig, UnknownFilter};
use crate::store::Store;
use crate::store::redis::{RedisConfig, RedisStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FeedKind {
    /// Google local product inventory (TSV, or XML with --format xml).
    Google,
    /// Meta catalog local inventory (CSV).
    Meta,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Which feed.
    #[arg(value_enum)]
    pub kind: FeedKind,
    /// The Redis store to read (the engine's --redis-url).
    #[arg(long, env = "OMNISTOCK_REDIS_URL")]
    pub redis_url: String,
    /// The engine's --redis-key-prefix.
    #[arg(long, default_value = "omnistock")]
    pub redis_key_prefix: String,
    /// Where to write the feed.
    #[arg(long)]
    pub out: PathBuf,
    /// Google only: `tsv` (default) or `xml`.
    #[arg(long)]
    pub format: Option<String>,
    /// Only this store.
    #[arg(long)]
    pub store: Option<String>,
    /// Only the stores of this group.
    #[arg(long)]
    pub group: Option<String>,
    /// At most this many units is `limited_availability`.
    #[arg(long, default_value_t = 2)]
    pub low_stock_threshold: u32,
}

/// Writes the feed; returns a one-line summary.
pub async fn export(args: ExportArgs) -> Result<String, String> {
    let format = match (args.kind, args.format.as_deref()) {
        (FeedKind::Google, None | Some("tsv")) => Format::GoogleTsv,
        (FeedKind::Google, Some("xml")) => Format::GoogleXml,
        (FeedKind::Meta, None | Some("csv")) => Format::MetaCsv,
        (_, Some(other)) => return Err(format!("--format {other:?} is not a format of this feed")),
    };
    let store = RedisStore::new(RedisConfig {
        key_prefix: args.redis_key_prefix.clone(),
        ..RedisConfig::new(&args.redis_url)
    })
    .map_err(|e| e.to_string())?;
    let loaded = store
        .load(now())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the store at {} is empty", args.redis_url))?;
    let ledger = Ledger::new(LedgerConfig::default());
    ledger
        .restore(loaded.restore, now())
        .map_err(|e| e.to_string())?;
    let catalog = ledger.catalog();
    let covered = catalog
        .select_locations(args.store.as_deref(), args.group.as_deref())
        .map_err(|unknown| match unknown {
            UnknownFilter::Location => {
                format!(
                    "unknown store {}",
                    args.store.as_deref().unwrap_or_default()
                )
            }
            UnknownFilter::Group => format!(
                "unknown location group {}",
                args.group.as_deref().unwrap_or_default()
            ),
        })?;
    let plan = FeedPlan::new(&catalog, &covered, None, format, args.low_stock_threshold);
    let file = std::fs::File::create(&args.out)
        .map_err(|e| format!("--out {}: {e}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let cursor = plan
        .write_all(&ledger, &mut out)
        .and_then(|cursor| out.flush().map(|()| cursor))
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    Ok(format!(
        "wrote {} ({} positions in the store; cursor of the snapshot: {})",
        args.out.display(),
        ledger.position_count(),
        cursor.0
    ))
}
