//! Local-inventory ad feeds (Google TSV/XML, Meta CSV), streamed shard by
//! shard: a feed of millions of rows starts at once, holds one shard's rows
//! in memory at a time, and each shard's lock is held only while its
//! positions are copied, so reservations never wait for a feed.
//!
//! `X-Next-Cursor` is the journal position the snapshot covers: a later
//! `?since=` with it returns every position whose published values (the ads
//! channel's quantity after its policy, availability) changed after it, each
//! once with its latest state; a position that went out of stock and back is
//! listed. A cursor from before the last catalog change (a policy, store or
//! group may change every row) is answered in full, and `X-Feed-Snapshot`
//! says which (`full` or `incremental`). A catalog change takes no journal
//! sequence, so a cursor handed out after it but before the next write
//! cannot be told from one handed out just before it: that cursor is also
//! answered in full, once (a superset, never a missed row). Positions keep their versions and
//! published lags across restarts (the store persists them and sequences only
//! grow), so cursors survive them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::feeds::{FeedPlan, Format};
use crate::http::AppState;
use crate::http::auth::{Caller, Scope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{self, ApiQuery};
use crate::ledger::{Catalog, Seq};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Google: `tsv` (default) or `xml`; Meta: `csv` only.
    #[param(value_type = Option<crate::http::openapi::FeedFormat>)]
    pub format: Option<String>,
    /// A cursor from `X-Next-Cursor` (a whole number): only rows whose published values changed after it.
    pub since: Option<String>,
    /// Only this store.
    #[param(value_type = Option<crate::http::openapi::LocationCode>)]
    pub store: Option<String>,
    /// Only the stores of this group.
    #[param(value_type = Option<crate::http::openapi::GroupName>)]
    pub group: Option<String>,
}

/// Google local product inventory feed.
#[utoipa::path(get, path = "/v1/feeds/google/local-inventory", tag = "feeds", params(FeedParams),
    responses((status = 200, description = "tab-separated text with a header row, or XML with `format=xml` (gzip when the client accepts it)",
            content((String = "text/tab-separated-values; charset=utf-8"), (String = "application/xml; charset=utf-8")),
            headers(("X-Next-Cursor" = u64, description = "the cursor for the next `since`"), ("X-Feed-Snapshot" = String, description = "`full` or `incremental`"))),
        (status = 404, description = "unknown store or group"), (status = 422, description = "invalid parameters")),
    security(("bearer" = [])))]
pub async fn google(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> ApiResult<Response> {
    caller.require(Scope::Feed)?;
    let format = match params.format.as_deref() {
        None | Some("tsv") => Format::GoogleTsv,
        Some("xml") => Format::GoogleXml,
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_format",
                format!("format {other:?}: expected tsv or xml"),
            ));
        }
    };
    feed(state, headers, params, format)
}

/// Meta catalog local inventory feed (CSV).
#[utoipa::path(get, path = "/v1/feeds/meta/local-inventory", tag = "feeds", params(FeedParams),
    responses((status = 200, description = "CSV with a header row (gzip when the client accepts it)", content_type = "text/csv; charset=utf-8", body = String,
            headers(("X-Next-Cursor" = u64, description = "the cursor for the next `since`"), ("X-Feed-Snapshot" = String, description = "`full` or `incremental`"))),
        (status = 404, description = "unknown store or group"), (status = 422, description = "invalid parameters")),
    security(("bearer" = [])))]
pub async fn meta(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> ApiResult<Response> {
    caller.require(Scope::Feed)?;
    if params.format.as_deref().is_some_and(|f| f != "csv") {
        return Err(ApiError::invalid(
            "invalid_format",
            "the Meta feed is CSV only",
        ));
    }
    feed(state, headers, params, Format::MetaCsv)
}

/// Which locations a feed covers (only the published stores among them
/// are listed).
fn covered(catalog: &Catalog, params: &FeedParams) -> ApiResult<Vec<bool>> {
    json::location_filter(
        catalog,
        "store",
        params.store.as_deref(),
        params.group.as_deref(),
    )
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let named = parts
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("gzip"));
            let weight = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            named && weight > 0.0
        })
}

/// Compresses a chunk stream as it goes: each chunk is deflated and
/// flushed, so the first rows leave at once and memory stays flat.
fn gzipped(
    chunks: impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    use std::io::Write;
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let state = (Box::pin(chunks), Some(encoder));
    stream::unfold(state, |(mut chunks, mut encoder)| async move {
        let active = encoder.as_mut()?;
        let result = match chunks.next().await {
            Some(Ok(chunk)) => active
                .write_all(&chunk)
                .and_then(|()| active.flush())
                .map(|()| Bytes::from(std::mem::take(active.get_mut()))),
            Some(Err(never)) => match never {},
            None => encoder
                .take()
                .map_or(Ok(Vec::new()), flate2::write::GzEncoder::finish)
                .map(Bytes::from),
        };
        Some((result, (chunks, encoder)))
    })
}

fn feed(
    state: Arc<AppState>,
    headers: HeaderMap,
    params: FeedParams,
    format: Format,
) -> ApiResult<Response> {
    let since = match &params.since {
        None => None,
        Some(text) => Some(Seq(text.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "invalid_cursor",
                format!("since {text:?}: expected a cursor from X-Next-Cursor (a number)"),
            )
        })?)),
    };
    // Every change below the head is in the snapshot taken after this read
    // (or later); the next poll asks for what came after. The catalog is
    // loaded after the cursor: a catalog change after this load has
    // `changed_at` above the cursor, so the next poll is answered in full.
    let cursor = state.ledger.journal_head().0.saturating_sub(1);
    let catalog = state.ledger.catalog();
    let covered = covered(&catalog, &params)?;
    let plan = FeedPlan::new(
        &catalog,
        &covered,
        since,
        format,
        state.feed_low_stock_threshold,
    );
    let snapshot = if plan.is_full() {
        "full"
    } else {
        "incremental"
    };
    let shards = state.ledger.position_shard_count();
    let ledger = Arc::clone(&state.ledger);
    let rows = stream::iter(0..shards)
        .map(move |shard| Ok::<_, Infallible>(Bytes::from(plan.render_shard(&ledger, shard))));
    let body =
        stream::once(
            async move { Ok::<_, Infallible>(Bytes::from_static(format.header().as_bytes())) },
        )
        .chain(rows)
        .chain(stream::once(async move {
            Ok::<_, Infallible>(Bytes::from_static(format.footer().as_bytes()))
        }));
    let gzip = accepts_gzip(&headers);
    let mut response = if gzip {
        Response::new(Body::from_stream(gzipped(body)))
    } else {
        Response::new(Body::from_stream(body))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert("x-next-cursor", HeaderValue::from(cursor));
    headers.insert("x-feed-snapshot", HeaderValue::from_static(snapshot));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}
