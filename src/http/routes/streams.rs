//! Live storefront stream: Server-Sent Events of availability changes.
//!
//! Each subscriber reads the journal from its own cursor (woken by the
//! ledger's change listener, never polling), keeps the positions that match
//! its filters in a pending set (one entry per position: coalescing; bounded
//! by the number of positions), and at most once per `coalesce_ms` sends
//! each pending position's current published state. The last event of a
//! flush carries a cursor (`crate::cursor`) as its id, so `Last-Event-ID`
//! resumes without loss (a flush cut short is sent again); the stream
//! opens with an event that has only an id (where it starts), so a client
//! that reconnects before any change resumes without loss too. A reader that
//! falls behind the journal ring, or resumes from an id this server cannot
//! continue from (another store's, an ended run's, one ahead of the head or
//! from before a restart), gets a `resync` event (with the reason) and
//! should refetch: never a stream that silently skips changes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use utoipa::IntoParams;

use crate::cursor::{Cursor, SentCursor};
use crate::engine::Engine;
use crate::engine::{Band, Publishable};
use crate::feeds::FeedAvailability;
use crate::http::AppState;
use crate::http::auth::Scope;
use crate::http::dto;
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::{self, ApiQuery};
use crate::http::page_json::PageEventJson;
use crate::http::publishable::{Page, Reader};
use crate::http::stream_quota::{QuotaFull, QuotaShare};
use crate::ledger::{
    Channel, JournalRead, LocationCode, Movement, PosKey, PositionView, Scope as Coverage, Seq, Sku,
};
use crate::store::KeySource;

/// Longest coalescing interval a client may ask for.
const MAX_COALESCE_MS: u64 = 10_000;
const DEFAULT_COALESCE_MS: u64 = 50;
/// A stream with nothing to send wakes at least this often, to end itself
/// if its key was revoked meanwhile.
const KEY_CHECK_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Only this SKU.
    #[param(value_type = Option<crate::http::openapi::Sku>)]
    pub sku: Option<String>,
    /// Only this location.
    #[param(value_type = Option<crate::http::openapi::LocationCode>)]
    pub location: Option<String>,
    /// Only the locations of this group.
    #[param(value_type = Option<crate::http::openapi::GroupName>)]
    pub group: Option<String>,
    /// Availability as this channel sees it (default: raw ATF).
    #[param(value_type = Option<crate::http::openapi::ChannelName>)]
    pub channel: Option<String>,
    /// At most one event per position per this many ms (default 50, max 10000).
    #[param(maximum = 10000)]
    pub coalesce_ms: Option<u64>,
    /// A publishable key (an `EventSource` cannot set `Authorization`);
    /// a secret key here is refused (`key_in_url`).
    #[param(pattern = "^opk_[0-9a-f]{64}$")]
    #[expect(
        dead_code,
        reason = "listed for the document; `Reader` reads it from the URL"
    )]
    pub key: Option<String>,
}

/// Availability changes as Server-Sent Events (`Last-Event-ID` resumes).
/// With `sku` (and no `Last-Event-ID`), the current state of every matching
/// position first, so a page shows stock at once. A publishable key (as
/// `?key=`, since an `EventSource` cannot set headers) sees its channel as
/// bands, names a `sku`, and holds at most `--max-streams-per-key` streams,
/// and `--max-streams-per-address` per client address.
#[utoipa::path(get, path = "/v1/streams/availability", tag = "availability",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "resume after this event id (the journal sequence of the last event received); a browser's EventSource sends it when it reconnects")),
    responses((status = 200, description = "text/event-stream of `availability` events: {sku, location, channel, atf, availability, crossing, version} (a publishable key's: {sku, location, kind, availability: in_stock|limited|out_of_stock, atf if the key shows it}, sent only when what it shows changes); `resync` when the stream fell behind", content_type = "text/event-stream", body = String),
        (status = 404, description = "unknown location or group"), (status = 422, description = "invalid parameters, or a Last-Event-ID that is not a number"),
        (status = 429, description = "the publishable key, or the client address, has as many streams open as it may (`too_many_streams`)"),
        (status = 503, description = "too many live streams open (`too_many_subscribers`, with Retry-After)")),
    security(("bearer" = []), ("publishable_key" = [])))]
pub async fn availability(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Response {
    let origin = reader.page_origin();
    open(&state, reader, &headers, &params)
        .unwrap_or_else(|error| error.for_page(origin.as_ref()).into_response())
}

/// The stream `reader` asks for, or why not.
fn open(
    state: &Arc<AppState>,
    reader: Reader,
    headers: &HeaderMap,
    params: &StreamParams,
) -> ApiResult<Response> {
    let sku = params
        .sku
        .as_deref()
        .map(|s| json::sku("sku", s))
        .transpose()?;
    let (channel, page, quota) = reader_terms(state, &reader, sku.as_ref(), params)?;
    let coalesce_ms = coalesce_ms(params)?;
    let locations = selected_locations(state, params)?;
    let head = state.ledger().journal_head();
    let (cursor, resumed) = resume_point(state, headers, head)?;
    let slot = stream_slot(state)?;
    let mut subscriber = Subscriber {
        _slot: slot,
        _quota: quota,
        lineage: state.ledger().cursor_lineage(),
        engine: Arc::clone(&state.engine),
        seen: state.engine.changes().version(),
        stopping: state.stopping.clone(),
        cursor,
        sku,
        locations,
        channel,
        page,
        shown: FxHashMap::default(),
        key_id: reader.key().id.clone(),
        keys_generation: state.engine.keys().generation(),
        coalesce: Duration::from_millis(coalesce_ms),
        threshold: state.feed_low_stock_threshold,
        pending: FxHashMap::default(),
        ready: VecDeque::new(),
        last_flush: Instant::now(),
    };
    match resumed {
        Resumed::No => subscriber.announce(),
        Resumed::Yes => subscriber.announce_cursor(),
        Resumed::Unhonoured(reason) => subscriber.resync(head, reason),
    }
    metrics::gauge!("omnistock_stream_subscribers").increment(1.0);
    let events = stream::unfold(subscriber, |mut subscriber| async move {
        let event = subscriber.next_event().await?;
        Some((Ok::<_, Infallible>(event), subscriber))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(match reader {
        Reader::Secret(_) => sse.into_response(),
        Reader::Page(page) => (page.answer_headers().for_stream(), sse).into_response(),
    })
}

/// What the reader may see (its channel; a page: its key's limits) and,
/// for a page, its share of the stream quotas.
#[allow(clippy::type_complexity)]
fn reader_terms(
    state: &AppState,
    reader: &Reader,
    sku: Option<&Sku>,
    params: &StreamParams,
) -> ApiResult<(
    Option<Channel>,
    Option<Arc<Publishable>>,
    Option<QuotaShare>,
)> {
    match reader {
        Reader::Secret(caller) => {
            caller.require(Scope::Read)?;
            let channel = params.channel.as_deref().map(dto::channel).transpose()?;
            Ok((channel, None, None))
        }
        Reader::Page(page) => {
            if sku.is_none() {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    "a publishable key's stream names its `sku`",
                ));
            }
            let channel = page.channel(params.channel.as_deref())?;
            let quota = stream_quota(state, page)?;
            Ok((
                Some(channel),
                Some(Arc::clone(&page.publishable)),
                Some(quota),
            ))
        }
    }
}

/// A page's share of its key's and address's streams, or 429.
fn stream_quota(state: &AppState, page: &Page) -> ApiResult<QuotaShare> {
    state
        .pages
        .stream_quota
        .take(&page.key.id, page.address)
        .map_err(|full| {
            let detail = match full {
                QuotaFull::Key(max) => format!("this key has {max} live streams open, its most"),
                QuotaFull::Address(max) => {
                    format!("this address has {max} live streams of this kind open, its most")
                }
            };
            ApiError::new(Code::TooManyStreams, detail)
        })
}

fn coalesce_ms(params: &StreamParams) -> ApiResult<u64> {
    let coalesce_ms = params.coalesce_ms.unwrap_or(DEFAULT_COALESCE_MS);
    if coalesce_ms > MAX_COALESCE_MS {
        return Err(ApiError::new(
            Code::InvalidCoalesce,
            format!("coalesce_ms must be at most {MAX_COALESCE_MS}"),
        ));
    }
    Ok(coalesce_ms)
}

/// The locations `?location=` or `?group=` selects (indexed by location id);
/// `None`: every location.
fn selected_locations(state: &AppState, params: &StreamParams) -> ApiResult<Option<Vec<bool>>> {
    if params.location.is_none() && params.group.is_none() {
        return Ok(None);
    }
    let catalog = state.ledger().catalog();
    let selected = json::location_filter(
        &catalog,
        "location",
        params.location.as_deref(),
        params.group.as_deref(),
    )?;
    Ok(Some(selected))
}

/// Whether a stream goes on from a client's `Last-Event-ID`.
enum Resumed {
    /// A new stream (no `Last-Event-ID`).
    No,
    Yes,
    /// This server cannot continue from it (a `resync`, with the reason).
    Unhonoured(&'static str),
}

/// Where the stream starts: after the `Last-Event-ID` when this server can
/// continue from it, else at `head`.
fn resume_point(state: &AppState, headers: &HeaderMap, head: Seq) -> ApiResult<(Seq, Resumed)> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok((head, Resumed::No));
    };
    let sent = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<SentCursor>().ok())
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidLastEventId,
                "Last-Event-ID must be the id of an event this stream sent",
            )
        })?;
    Ok(match Cursor::check(sent, state.ledger(), head) {
        Ok(cursor) => (Seq(cursor.seq.0 + 1), Resumed::Yes),
        Err(why) => (head, Resumed::Unhonoured(why.as_str())),
    })
}

/// One of the server's live-stream slots, or a 503 when all are taken.
fn stream_slot(state: &Arc<AppState>) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    Arc::clone(&state.stream_slots)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                Code::TooManySubscribers,
                format!(
                    "{} live streams are open, the most this server keeps; retry later",
                    state.limits.max_stream_subscribers
                ),
            )
        })
}

struct Subscriber {
    /// Given back when the stream ends.
    _slot: tokio::sync::OwnedSemaphorePermit,
    /// A page's share of its key's and address's streams, given back too.
    _quota: Option<QuotaShare>,
    /// The ledger's cursor lineage (event ids carry it).
    lineage: u64,
    /// Reads the journal and positions through the engine's ledger, waits
    /// on its change signal, and reads its clock.
    engine: Arc<Engine>,
    /// The change-signal version this stream has been woken for.
    seen: u64,
    stopping: watch::Receiver<bool>,
    /// Next journal sequence to read.
    cursor: Seq,
    sku: Option<Sku>,
    /// Indexed by location id; `None`: every location.
    locations: Option<Vec<bool>>,
    channel: Option<Channel>,
    /// A page's key: events show bands, and units as the key says.
    page: Option<Arc<Publishable>>,
    /// For a page: what it was last shown of each location (one SKU's
    /// locations at most).
    shown: FxHashMap<LocationCode, (Band, Option<u64>)>,
    /// The reader's key (its streams end once it is revoked), and the key
    /// store's generation it was last checked at.
    key_id: String,
    keys_generation: u64,
    coalesce: Duration,
    threshold: u32,
    /// Positions changed since the last flush, with what was published
    /// before their first change (for threshold crossings).
    pending: FxHashMap<PosKey, u32>,
    ready: VecDeque<Event>,
    last_flush: Instant,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        metrics::gauge!("omnistock_stream_subscribers").decrement(1.0);
    }
}

impl Subscriber {
    /// The next event; `None` ends the stream (the server is stopping).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if *self.stopping.borrow() || self.key_revoked() {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            self.read_journal();
            if !self.ready.is_empty() {
                continue;
            }
            let since_flush = self.last_flush.elapsed();
            if !self.pending.is_empty() && since_flush >= self.coalesce {
                self.flush();
                continue;
            }
            let wait = if self.pending.is_empty() {
                KEY_CHECK_INTERVAL
            } else {
                self.coalesce - since_flush
            };
            tokio::select! {
                () = self.engine.changes().changed(&mut self.seen) => {}
                stopping = self.stopping.changed() => {
                    if stopping.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether the reader's key was revoked since the stream opened
    /// (checked when the key store changed).
    fn key_revoked(&mut self) -> bool {
        let keys = self.engine.keys();
        let generation = keys.generation();
        if generation == self.keys_generation {
            return false;
        }
        self.keys_generation = generation;
        keys.by_id(&self.key_id).is_none()
    }

    fn matches(&self, movement: &Movement) -> bool {
        if !self.selects(movement.position.loc().0 as usize) {
            return false;
        }
        match &self.sku {
            Some(sku) => self
                .engine
                .ledger()
                .sku_code(movement.position.sku())
                .is_some_and(|code| code == *sku),
            None => true,
        }
    }

    /// What the subscriber's channel saw of the position before `movement`.
    fn published_before(&self, movement: &Movement) -> u32 {
        let after = movement.after;
        let before = |now: u32, delta: i64| (i64::from(now) - delta).max(0) as u32;
        let on_hand = before(after.on_hand.0, movement.on_hand_delta);
        let reserved = before(after.reserved.0, movement.reserved_delta);
        let safety = before(after.safety_stock.0, movement.safety_stock_delta);
        let atf = on_hand.saturating_sub(reserved).saturating_sub(safety);
        match self.channel {
            Some(channel) => self
                .engine
                .ledger()
                .catalog()
                .policy(channel, movement.position.loc())
                .apply(atf),
            None => atf,
        }
    }

    fn read_journal(&mut self) {
        loop {
            match self.engine.ledger().read_journal(self.cursor, 1_024) {
                JournalRead::Movements { movements, next } => {
                    for movement in &movements {
                        if self.matches(movement) && !self.pending.contains_key(&movement.position)
                        {
                            let before = self.published_before(movement);
                            self.pending.insert(movement.position, before);
                        }
                    }
                    self.cursor = next;
                    if movements.is_empty() {
                        return;
                    }
                }
                JournalRead::Lagged { resume_at, .. } => {
                    self.resync(resume_at, "lagged");
                    return;
                }
            }
        }
    }

    /// The id of an event after which the stream goes on at `next`.
    fn event_id(&self, next: Seq) -> String {
        Cursor {
            lineage: self.lineage,
            seq: Seq(next.0.saturating_sub(1)),
        }
        .to_string()
    }

    /// An event with only an id, where the stream starts: a client that
    /// reconnects before any change still resumes from here (an
    /// `EventSource` keeps the id without dispatching an event).
    fn announce_cursor(&mut self) {
        let id = self.event_id(self.cursor);
        self.ready.push_back(Event::default().id(id));
    }

    /// A new stream: where it starts, then, for one SKU, the current state
    /// of every matching position (read after the start, so no change is
    /// missed; one made meanwhile is sent again, as its state then).
    fn announce(&mut self) {
        let snapshot = self.snapshot();
        if snapshot.is_empty() {
            return self.announce_cursor();
        }
        self.ready.extend(snapshot);
        // The id on the snapshot's last event: a client cut off before it
        // reconnects without one and gets the whole snapshot again.
        let id = self.event_id(self.cursor);
        if let Some(last) = self.ready.back_mut() {
            *last = std::mem::take(last).id(id);
        }
    }

    /// For one SKU, an event per matching position: its state now.
    fn snapshot(&mut self) -> Vec<Event> {
        let Some(sku) = self.sku.clone() else {
            return Vec::new();
        };
        let at = self.engine.now();
        let engine = Arc::clone(&self.engine);
        let Ok(view) = engine
            .ledger()
            .availability(&sku, &Coverage::All, self.channel, at)
        else {
            return Vec::new();
        };
        let catalog = engine.ledger().catalog();
        let selected: Vec<&PositionView> = view
            .locations
            .iter()
            .filter(|position| {
                catalog
                    .location_id(position.location.as_str())
                    .is_some_and(|id| self.selects(id.0 as usize))
            })
            .collect();
        selected
            .into_iter()
            .filter_map(|position| self.position_event(position, None))
            .collect()
    }

    /// Whether the stream's location filter takes location `index`.
    fn selects(&self, index: usize) -> bool {
        match &self.locations {
            Some(locations) => locations.get(index).copied().unwrap_or(false),
            None => true,
        }
    }

    /// The `availability` event of a position's state; `before`: what the
    /// channel saw before the change (a threshold crossing), if a change.
    fn position_event(&mut self, view: &PositionView, before: Option<u32>) -> Option<Event> {
        let atf = view.atf.0;
        let data = match &self.page {
            Some(page) => {
                let shown = page.show(u64::from(atf));
                // A page sees its band and units change, nothing else: no
                // version, and no event when what it shows is the same (so
                // a banded key's stream does not count the movements).
                if self.shown.get(&view.location) == Some(&shown) {
                    return None;
                }
                self.shown.insert(view.location.clone(), shown);
                let catalog = self.engine.ledger().catalog();
                // A struct of strings and numbers: serializing it cannot fail.
                serde_json::to_value(PageEventJson::of(view, shown, &catalog)).unwrap_or_default()
            }
            None => {
                let crossing = before.and_then(|before| match (before, atf) {
                    (b, 0) if b > 0 => Some("out_of_stock"),
                    (0, a) if a > 0 => Some("back_in_stock"),
                    (b, a) if b > self.threshold && a <= self.threshold => Some("low_stock"),
                    _ => None,
                });
                json!({
                    "sku": view.sku.as_str(),
                    "location": view.location.as_str(),
                    "channel": self.channel.map(Channel::as_str),
                    "atf": atf,
                    "availability": FeedAvailability::of(atf, view.display_only, self.threshold).google(),
                    "crossing": crossing,
                    "version": view.version.0,
                })
            }
        };
        Some(
            Event::default()
                .event("availability")
                .data(data.to_string()),
        )
    }

    /// Drops what is pending and tells the client to refetch, going on
    /// from `resume_at`.
    fn resync(&mut self, resume_at: Seq, reason: &str) {
        self.pending.clear();
        self.cursor = resume_at;
        let id = self.event_id(resume_at);
        self.ready.push_back(
            Event::default()
                .event("resync")
                .id(id.clone())
                .data(json!({"cursor": id, "reason": reason}).to_string()),
        );
    }

    /// One event per pending position, its state now; the last carries the id.
    fn flush(&mut self) {
        let catalog = self.engine.ledger().catalog();
        let at = self.engine.now();
        let id = self.event_id(self.cursor);
        let pending = std::mem::take(&mut self.pending);
        for (key, before) in pending {
            let (Some(sku), Some(location)) = (
                self.engine.ledger().sku_code(key.sku()),
                catalog.location(key.loc()).map(|l| l.code.clone()),
            ) else {
                continue;
            };
            let Ok(view) = self
                .engine
                .ledger()
                .position(&sku, &location, self.channel, at)
            else {
                continue;
            };
            if let Some(event) = self.position_event(&view, Some(before)) {
                self.ready.push_back(event);
            }
        }
        // Only the last event of the flush moves the client's Last-Event-ID.
        if let Some(last) = self.ready.back_mut() {
            *last = std::mem::take(last).id(id);
        }
        self.last_flush = Instant::now();
    }
}
