//! The live availability stream of a whole cluster (without `?sku=`; one
//! SKU's stream is its partition's, routed there). The node opens every
//! partition's stream (each a single node's, on the partition's engine
//! wherever it runs) and passes their events on as they come. Each event
//! id is a [`ClusterCursor`]: every partition's position, so
//! `Last-Event-ID` resumes each partition where it was. When a
//! partition's stream ends (its node left or died), it is opened again
//! from that partition's last position on the partition's new owner,
//! which continues exactly or, if it cannot (a takeover after a crash),
//! sends its `resync`.
//!
//! A cluster stream holds one live-stream slot per partition (on the
//! partition's node); the events of all partitions wait in one bounded
//! queue ([`QUEUED_EVENTS`]): a slow client slows the partitions' streams
//! down (their engines coalesce meanwhile), it never grows memory.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use serde_json::json;
use tokio::sync::mpsc;

use super::ClusterNode;
use super::dispatch::to_partition;
use super::forward::Envelope;
use crate::cursor::{ClusterCursor, Cursor, SentCursor};
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use omnistock_cluster::PartitionId;

/// Events of every partition waiting for the client.
const QUEUED_EVENTS: usize = 1_024;
/// Pause before opening a partition's stream again.
const REOPEN_PAUSE: Duration = Duration::from_millis(250);
const LAST_EVENT_ID: &str = "last-event-id";
/// How often a partition's stream checks that its partition has not moved.
const MOVE_CHECK: Duration = Duration::from_secs(1);

/// What a partition's stream passes on: an event, or that the partition
/// refused to open again (a 4xx: the key was revoked, say), which ends the
/// client's stream (its reconnection gets the refusal itself).
enum Part {
    Event(PartEvent),
    Refused,
}

/// One event of a partition's stream.
struct PartEvent {
    index: usize,
    name: Option<String>,
    data: String,
    id: Option<Cursor>,
}

/// `GET /v1/streams/availability` without `?sku=` over every partition.
pub async fn availability(node: Arc<ClusterNode>, envelope: &Envelope) -> Response {
    if let Err(unauthorized) = super::status::authenticate(&node, &envelope.headers) {
        return unauthorized.into_response();
    }
    let partitions: Vec<PartitionId> = node.partitions().all().collect();
    let (resume, unhonoured) = match resume_point(envelope, partitions.len()) {
        Ok(resume) => resume,
        Err(problem) => return problem.into_response(),
    };
    let opening = partitions.iter().enumerate().map(|(i, p)| {
        let share = with_last_event_id(envelope, resume.as_ref().map(|r| r.0[i]));
        let node = &node;
        async move { to_partition(node, *p, &share).await }
    });
    let mut opened = join_all(opening).await;
    if let Some(problem) = opened.iter().position(|r| !r.status().is_success()) {
        return opened.swap_remove(problem);
    }
    let (sender, receiver) = mpsc::channel(QUEUED_EVENTS);
    for (index, (partition, response)) in partitions.iter().zip(opened).enumerate() {
        let following = Following {
            partition: *partition,
            index,
            start: resume.as_ref().map(|r| r.0[index]),
        };
        let follow = follow(
            node.clone(),
            following,
            envelope.clone(),
            response,
            sender.clone(),
        );
        tokio::spawn(follow);
    }
    drop(sender);
    let mut cursors: Vec<Option<Cursor>> = match resume {
        Some(resume) => resume.0.into_iter().map(Some).collect(),
        None => vec![None; partitions.len()],
    };
    let first = unhonoured.map(|reason| {
        Event::default()
            .event("resync")
            .data(json!({"cursor": null, "reason": reason}).to_string())
    });
    let events = stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await? {
            Part::Event(event) => Some((event, receiver)),
            Part::Refused => None,
        }
    })
    .filter_map(move |event| {
        let out = merge(&mut cursors, event);
        async move { out }
    });
    let all = stream::iter(first)
        .chain(events)
        .map(Ok::<_, std::convert::Infallible>);
    Sse::new(all)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Where to resume every partition: the cluster cursor sent as
/// `Last-Event-ID`, or (a single node's id, another cluster's) nowhere,
/// with the reason for a `resync`.
fn resume_point(
    envelope: &Envelope,
    partitions: usize,
) -> Result<(Option<ClusterCursor>, Option<&'static str>), ApiError> {
    let Some(value) = envelope.headers.get(LAST_EVENT_ID) else {
        return Ok((None, None));
    };
    match ClusterCursor::check(value.to_str().unwrap_or(""), partitions) {
        Ok(Ok(cursor)) => Ok((Some(cursor), None)),
        Ok(Err(why)) => Ok((None, Some(why.as_str()))),
        Err(_) => Err(ApiError::new(
            Code::InvalidLastEventId,
            "Last-Event-ID must be the id of an event this stream sent",
        )),
    }
}

fn with_last_event_id(envelope: &Envelope, cursor: Option<Cursor>) -> Envelope {
    let mut share = envelope.clone();
    share.headers.remove(LAST_EVENT_ID);
    if let Some(id) = cursor.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
        share.headers.insert(LAST_EVENT_ID, id);
    }
    share
}

/// The client's event for a partition's: with an id (the cluster cursor)
/// when the partition's had one and every partition's position is known
/// (each stream opens with an id-only event, so that is at once).
fn merge(cursors: &mut [Option<Cursor>], event: PartEvent) -> Option<Event> {
    if let Some(id) = event.id {
        cursors[event.index] = Some(id);
    }
    let whole: Option<Vec<Cursor>> = cursors.iter().copied().collect();
    let id = event
        .id
        .and(whole)
        .map(|whole| ClusterCursor(whole).to_string());
    match (event.name, id) {
        (Some(name), Some(id)) => Some(Event::default().event(name).data(event.data).id(id)),
        (Some(name), None) => Some(Event::default().event(name).data(event.data)),
        // A partition's opening id: the client's once every partition's
        // position is known.
        (None, Some(id)) => Some(Event::default().id(id)),
        (None, None) => None,
    }
}

/// Which partition's stream a follower passes on.
struct Following {
    partition: PartitionId,
    /// Its place in the cluster cursor.
    index: usize,
    /// Where the client resumed it, if it did.
    start: Option<Cursor>,
}

/// Passes a partition's events on until the client is gone or the node
/// stops; opens the stream again, from the partition's last position,
/// when it ends.
async fn follow(
    node: Arc<ClusterNode>,
    following: Following,
    envelope: Envelope,
    mut response: Response,
    sender: mpsc::Sender<Part>,
) {
    let Following {
        partition,
        index,
        start,
    } = following;
    let mut last: Option<Cursor> = start;
    let mut stopping = node.node_state.stopping.clone();
    loop {
        let opened_at = placement(&node, partition);
        let mut body = response.into_body().into_data_stream();
        let mut text: Vec<u8> = Vec::new();
        let mut moved = tokio::time::interval(MOVE_CHECK);
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                () = sender.closed() => return,
                _ = stopping.changed() => return,
                _ = moved.tick() => {
                    // The engine it came from no longer gets the
                    // partition's changes: open it where it is now.
                    if placement(&node, partition) != opened_at {
                        break;
                    }
                    continue;
                }
            };
            let Some(Ok(chunk)) = chunk else { break };
            // Split into blocks as bytes: a chunk may end inside a character.
            text.extend_from_slice(&chunk);
            while let Some(end) = text.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = text.drain(..end + 2).collect();
                let Some(event) = parse(&String::from_utf8_lossy(&block), index) else {
                    continue;
                };
                last = event.id.or(last);
                if sender.send(Part::Event(event)).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(REOPEN_PAUSE).await;
        if sender.is_closed() || *stopping.borrow() {
            return;
        }
        let share = with_last_event_id(&envelope, last);
        response = to_partition(&node, partition, &share).await;
        if response.status().is_client_error() {
            tracing::warn!(%partition, status = %response.status(), "a partition's stream refused to open again: the stream ends");
            let _ = sender.send(Part::Refused).await;
            return;
        }
    }
}

/// Where a partition is served: its owner, and the epoch it is served
/// under here if here.
fn placement(node: &ClusterNode, partition: PartitionId) -> (Option<String>, Option<String>) {
    let owner = node.driver.owner_of(partition).map(|o| o.id.to_string());
    let here = node
        .driver
        .serving(partition)
        .map(|epoch| format!("{epoch:?}"));
    (owner, here)
}

/// One SSE block (`event:`, `data:`, `id:` lines; comments skipped).
fn parse(block: &str, index: usize) -> Option<PartEvent> {
    let (mut name, mut data, mut id) = (None, Vec::new(), None);
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        } else if let Some(value) = line.strip_prefix("id:") {
            id = match value.trim().parse() {
                Ok(SentCursor::Cursor(cursor)) => Some(cursor),
                _ => None,
            };
        }
    }
    (name.is_some() || id.is_some()).then(|| PartEvent {
        index,
        name,
        data: data.join("\n"),
        id,
    })
}
