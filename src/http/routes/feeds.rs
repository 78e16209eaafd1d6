//! Local-inventory ad feeds (Google TSV/XML, Meta CSV), streamed shard by
//! shard: a feed of millions of rows starts at once, holds one shard's rows
//! in memory at a time, and each shard's lock is held only while its
//! positions are copied, so reservations never wait for a feed.
//!
//! `X-Next-Cursor` is an opaque cursor (`crate::cursor`): the journal
//! position the snapshot covers, and the lineage of the positions. A later
//! `?since=` with it returns every row whose published values (the ads
//! channel's quantity after its policy, availability, the store's columns)
//! changed after it, each once with its latest state; a position that went
//! out of stock and back is listed. A catalog change lists only the rows it
//! changed: the stores that joined the feed or changed their columns, and
//! the positions whose quantity a new ads policy moved. A cursor that cannot
//! be answered exactly is answered in full, never with a short increment:
//! one of another store (or of an ended in-memory run), ahead of the head,
//! from before a restart that did not follow a graceful stop, from before
//! the catalog versions kept, or from before a change that took stores out
//! of the feed. `X-Feed-Snapshot` says `full` or `incremental`, and
//! `X-Feed-Snapshot-Reason` why a feed is full. Positions keep their
//! versions and published lags across restarts (the store persists them
//! and sequences only grow), so cursors survive a graceful restart.

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

use crate::cursor::SentCursor;
use crate::feeds::{FeedPlan, FeedRequest, Format};
use crate::http::AppState;
use crate::http::auth::{Caller, Scope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiQuery};
use crate::ledger::Ledger;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Google: `tsv` (default) or `xml`; Meta: `csv` only.
    #[param(value_type = Option<crate::http::openapi::FeedFormat>)]
    pub format: Option<String>,
    /// A cursor from `X-Next-Cursor` (opaque): only rows whose published
    /// values changed after it. One the server cannot answer exactly is
    /// answered in full (`X-Feed-Snapshot: full`, with the reason in
    /// `X-Feed-Snapshot-Reason`).
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
            headers(("X-Next-Cursor" = String, description = "the opaque cursor for the next `since`"), ("X-Feed-Snapshot" = String, description = "`full` or `incremental`"), ("X-Feed-Snapshot-Reason" = String, description = "why a feed is full: `no_cursor`, `legacy_cursor`, `other_lineage` (another store's, or an ended in-memory run's), `ahead_of_head`, `before_restart` (a restart that did not follow a graceful stop), `catalog_history`, `rows_removed` (stores left the feed); absent on an increment"))),
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
            return Err(ApiError::new(
                Code::InvalidFormat,
                format!("format {other:?}: expected tsv or xml"),
            ));
        }
    };
    feed(state, headers, params, format)
}

/// Meta catalog local inventory feed (CSV).
#[utoipa::path(get, path = "/v1/feeds/meta/local-inventory", tag = "feeds", params(FeedParams),
    responses((status = 200, description = "CSV with a header row (gzip when the client accepts it)", content_type = "text/csv; charset=utf-8", body = String,
            headers(("X-Next-Cursor" = String, description = "the opaque cursor for the next `since`"), ("X-Feed-Snapshot" = String, description = "`full` or `incremental`"), ("X-Feed-Snapshot-Reason" = String, description = "why a feed is full: `no_cursor`, `legacy_cursor`, `other_lineage` (another store's, or an ended in-memory run's), `ahead_of_head`, `before_restart` (a restart that did not follow a graceful stop), `catalog_history`, `rows_removed` (stores left the feed); absent on an increment"))),
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
        return Err(ApiError::new(
            Code::InvalidFormat,
            "the Meta feed is CSV only",
        ));
    }
    feed(state, headers, params, Format::MetaCsv)
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not `q=0`).
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
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
pub(crate) fn gzipped<E: std::error::Error + Send + Sync + 'static>(
    chunks: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
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
            Some(Err(error)) => Err(std::io::Error::other(error)),
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
    let since = params
        .since
        .as_deref()
        .map(|text| {
            text.parse::<SentCursor>()
                .map_err(|e| ApiError::new(Code::InvalidCursor, format!("since: {e}")))
        })
        .transpose()?;
    if let Some(store) = params.store.as_deref() {
        json::location("store", store)?;
    }
    let request = FeedRequest {
        since,
        store: params.store.as_deref(),
        group: params.group.as_deref(),
        format,
        low_stock_threshold: state.feed_low_stock_threshold,
    };
    let (plan, cursor) = FeedPlan::plan(state.ledger(), &request).map_err(|unknown| {
        json::unknown_filter(
            unknown,
            "store",
            params.store.as_deref(),
            params.group.as_deref(),
        )
    })?;
    let snapshot = plan.snapshot();
    let body = feed_body(state.ledger(), plan, format);
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
    let cursor = HeaderValue::from_str(&cursor.to_string())
        .map_err(|e| ApiError::new(Code::Internal, format!("cursor header: {e}")))?;
    headers.insert("x-next-cursor", cursor);
    headers.insert(
        "x-feed-snapshot",
        HeaderValue::from_static(snapshot.as_str()),
    );
    if let Some(reason) = snapshot.reason() {
        headers.insert("x-feed-snapshot-reason", HeaderValue::from_static(reason));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// The feed's header, the rows of each position shard rendered as it is
/// reached, then its footer.
fn feed_body(
    ledger: &Arc<Ledger>,
    plan: FeedPlan,
    format: Format,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let shards = ledger.position_shard_count();
    let ledger = Arc::clone(ledger);
    let rows = stream::iter(0..shards)
        .map(move |shard| Ok::<_, Infallible>(Bytes::from(plan.render_shard(&ledger, shard))));
    stream::once(async move { Ok::<_, Infallible>(Bytes::from_static(format.header().as_bytes())) })
        .chain(rows)
        .chain(stream::once(async move {
            Ok::<_, Infallible>(Bytes::from_static(format.footer().as_bytes()))
        }))
}
