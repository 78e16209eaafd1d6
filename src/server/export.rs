//! `omnistock feed google|meta --out FILE` with `--from URL` (a running
//! server) or `--redis-url URL` (its store): a feed file for retailers who
//! upload files instead of being polled.
//!
//! From a server, the feed route is streamed into the file (gzip off, so the
//! file is what an uploader expects), `--since` makes it incremental, and
//! the cursor to pass next time is printed. From a store, the store is
//! loaded into a private in-memory ledger (the engine keeps running
//! undisturbed) and the same rows the feed route serves are written; the
//! cursor printed is the store's own (its lineage and the head of its last
//! write), which the server writing that store honours as `?since=`.
//! Either way the file is written under a temporary name and renamed when
//! complete, so a failed export never leaves a truncated feed to upload.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::http::uri::Authority;
use clap::{Args, ValueEnum};

use crate::cursor::SentCursor;
use crate::engine::{Engine, StoreSnapshot};
use crate::feeds::{FeedPlan, Format};
use crate::ledger::{LedgerConfig, UnknownFilter};
use crate::store::redis::{RedisConfig, RedisStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FeedKind {
    /// Google local product inventory (TSV, or XML with --format xml).
    Google,
    /// Meta catalog local inventory (CSV).
    Meta,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "redis_url"])))]
pub struct ExportArgs {
    /// Which feed.
    #[arg(value_enum)]
    pub kind: FeedKind,
    /// A running server to read the feed from, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub from: Option<String>,
    /// With --from: an API key with the feed scope.
    #[arg(long, env = "OMNISTOCK_FEED_KEY")]
    pub key: Option<String>,
    /// With --from: only rows changed after this cursor (the cursor a
    /// previous export printed, from the server or from its store). A
    /// cursor the server cannot answer exactly gets the full feed.
    #[arg(long)]
    pub since: Option<String>,
    /// The Redis store to read (the engine's --redis-url).
    #[arg(long)]
    pub redis_url: Option<String>,
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
    /// With --redis-url: at most this many units is `limited_availability`
    /// (a server applies its own --feed-low-stock-threshold).
    #[arg(long, default_value_t = 2)]
    pub low_stock_threshold: u32,
}

/// The file being written: a temporary sibling renamed over `out` when done.
struct PendingFile {
    temporary: PathBuf,
    out: PathBuf,
}

impl PendingFile {
    fn create(out: &std::path::Path) -> Result<(PendingFile, std::fs::File), String> {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.partial", std::process::id()));
        let temporary = out.with_file_name(name);
        let file = std::fs::File::create(&temporary)
            .map_err(|e| format!("--out {}: {e}", out.display()))?;
        Ok((
            PendingFile {
                temporary,
                out: out.to_path_buf(),
            },
            file,
        ))
    }

    fn commit(self) -> Result<(), String> {
        std::fs::rename(&self.temporary, &self.out)
            .map_err(|e| format!("--out {}: {e}", self.out.display()))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        // After a commit the temporary name is gone and this fails quietly.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

/// Writes the feed; returns a one-line summary.
pub async fn export(args: ExportArgs) -> Result<String, String> {
    let format = match (args.kind, args.format.as_deref()) {
        (FeedKind::Google, None | Some("tsv")) => Format::GoogleTsv,
        (FeedKind::Google, Some("xml")) => Format::GoogleXml,
        (FeedKind::Meta, None | Some("csv")) => Format::MetaCsv,
        (_, Some(other)) => return Err(format!("--format {other:?} is not a format of this feed")),
    };
    match (&args.from, &args.redis_url) {
        (Some(base), None) => export_from_server(&args, base, format).await,
        (None, Some(url)) => export_from_store(&args, url, format).await,
        _ => Err("give exactly one of --from and --redis-url".into()),
    }
}

async fn export_from_store(args: &ExportArgs, url: &str, format: Format) -> Result<String, String> {
    if args.since.is_some() || args.key.is_some() {
        return Err("--since and --key apply with --from (a running server)".into());
    }
    let store = RedisStore::new(RedisConfig {
        key_prefix: args.redis_key_prefix.clone(),
        ..RedisConfig::new(url)
    })
    .map_err(|e| e.to_string())?;
    let StoreSnapshot { engine, cursor } = Engine::snapshot(&store, LedgerConfig::default())
        .await?
        .ok_or_else(|| format!("the store at {url} is empty"))?;
    let ledger = engine.ledger();
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
    let plan = FeedPlan::full(&catalog, &covered, format, args.low_stock_threshold);
    let (pending, file) = PendingFile::create(&args.out)?;
    let mut out = std::io::BufWriter::new(file);
    plan.write_all(ledger, &mut out)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    pending.commit()?;
    let next = match cursor {
        Some(cursor) => format!("next time pass --since {cursor}"),
        None => "no cursor: the store was written by an older omnistock; \
                 the next export from the server is full"
            .to_owned(),
    };
    Ok(format!(
        "wrote {} ({} positions in the store); {next}",
        args.out.display(),
        ledger.position_count(),
    ))
}

/// Streams the feed route of a running server into the file.
async fn export_from_server(
    args: &ExportArgs,
    base: &str,
    format: Format,
) -> Result<String, String> {
    use http_body_util::BodyExt;
    if args.redis_key_prefix != "omnistock" {
        return Err("--redis-key-prefix applies with --redis-url".into());
    }
    let (base, authority) = server_base(base)?;
    let path = feed_path(args, &base, format)?;
    let response = get_feed(&base, &authority, &path, args.key.as_deref()).await?;
    let status = response.status();
    let header = |name: &str| header_text(&response, name);
    let (cursor, snapshot) = (header("x-next-cursor"), header("x-feed-snapshot"));
    let reason = match header("x-feed-snapshot-reason") {
        reason if reason.is_empty() => String::new(),
        reason => format!(": {reason}"),
    };
    let body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(format!("GET {path}: {status}: {text}"));
    }
    let (bytes, lines) = stream_to_file(body, &path, &args.out).await?;
    Ok(format!(
        "wrote {} ({bytes} bytes, {lines} lines, {snapshot} feed{reason}); next time pass --since {cursor}",
        args.out.display(),
    ))
}

/// `--from`: an `http://` URL with a host.
fn server_base(base: &str) -> Result<(axum::http::Uri, Authority), String> {
    let base: axum::http::Uri = base.parse().map_err(|e| format!("--from {base:?}: {e}"))?;
    if base.scheme_str() != Some("http") {
        return Err(format!(
            "--from {base}: only http:// is supported (put a TLS server behind curl)"
        ));
    }
    let authority = base
        .authority()
        .ok_or_else(|| format!("--from {base}: no host"))?
        .clone();
    Ok((base, authority))
}

/// The feed route's path and query under `base`'s path.
fn feed_path(args: &ExportArgs, base: &axum::http::Uri, format: Format) -> Result<String, String> {
    let route = match format {
        Format::GoogleTsv | Format::GoogleXml => "/v1/feeds/google/local-inventory",
        Format::MetaCsv => "/v1/feeds/meta/local-inventory",
    };
    let mut query = Vec::new();
    if format == Format::GoogleXml {
        query.push("format=xml".to_owned());
    }
    if let Some(store) = &args.store {
        query.push(format!("store={}", escape_query_value(store)));
    }
    if let Some(group) = &args.group {
        query.push(format!("group={}", escape_query_value(group)));
    }
    if let Some(since) = &args.since {
        // A single node's cursor, or a cluster's (any node's feed).
        if since.parse::<crate::cursor::ClusterCursor>().is_err() {
            since
                .parse::<SentCursor>()
                .map_err(|e| format!("--since {since:?}: {e}"))?;
        }
        query.push(format!("since={}", escape_query_value(since)));
    }
    let prefix = base.path().trim_end_matches('/');
    Ok(if query.is_empty() {
        format!("{prefix}{route}")
    } else {
        format!("{prefix}{route}?{}", query.join("&"))
    })
}

/// Store codes and group names are validated printable text; escapes what
/// would end a query value.
fn escape_query_value(text: &str) -> String {
    text.replace('%', "%25")
        .replace('&', "%26")
        .replace('#', "%23")
        .replace('+', "%2B")
        .replace(' ', "%20")
}

/// `GET path` over one HTTP/1 connection, uncompressed.
async fn get_feed(
    base: &axum::http::Uri,
    authority: &Authority,
    path: &str,
    key: Option<&str>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| format!("--from {base}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("--from {base}: {e}"))?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::ACCEPT_ENCODING, "identity");
    if let Some(key) = key {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))
}

fn header_text<B>(response: &hyper::Response<B>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Writes the body to `out` (under a temporary name until complete);
/// returns the bytes and lines written.
async fn stream_to_file(
    mut body: hyper::body::Incoming,
    path: &str,
    out: &Path,
) -> Result<(u64, u64), String> {
    use http_body_util::BodyExt;
    let (pending, file) = PendingFile::create(out)?;
    let mut writer = std::io::BufWriter::new(file);
    let mut bytes = 0_u64;
    let mut lines = 0_u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("GET {path}: {e}"))?;
        if let Ok(data) = frame.into_data() {
            bytes += data.len() as u64;
            lines += data.iter().filter(|b| **b == b'\n').count() as u64;
            writer
                .write_all(&data)
                .map_err(|e| format!("writing {}: {e}", out.display()))?;
        }
    }
    writer
        .flush()
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    drop(writer);
    pending.commit()?;
    Ok((bytes, lines))
}
