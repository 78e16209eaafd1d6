//! The ad feeds of a whole cluster: every partition's feed (each rendered
//! by its engine, as on a single node), asked for all at once and streamed
//! one after the other under one header and footer, so memory stays flat
//! in the number of rows. `X-Next-Cursor` is a [`ClusterCursor`]: each
//! partition's own cursor, which its engine answers exactly wherever the
//! partition has moved since (its lineage and versions are the
//! partition's store's). An increment is only served when every partition
//! can answer one; otherwise the whole feed is full (a client replaces
//! what it holds), with the first partition's reason.

use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use futures_util::{Stream, StreamExt, stream};

use super::ClusterNode;
use super::dispatch::to_partition;
use super::forward::Envelope;
use crate::cursor::{ClusterCursor, SentCursor};
use crate::feeds::Format;
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use omnistock_cluster::PartitionId;

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// `GET /v1/feeds/{google,meta}/local-inventory` over every partition.
pub async fn feed(node: &ClusterNode, envelope: &Envelope) -> Response {
    if let Err(unauthorized) = super::status::authenticate(node, &envelope.headers) {
        return unauthorized.into_response();
    }
    let partitions: Vec<PartitionId> = node.partitions().all().collect();
    let (since, others) = split_query(envelope.uri.query());
    let (since, forced) = match since
        .as_deref()
        .map(|text| cluster_cursor(text, partitions.len()))
    {
        None => (None, Some("no_cursor")),
        Some(Ok(since)) => since,
        Some(Err(problem)) => return problem.into_response(),
    };
    let mut answers = ask(node, envelope, &partitions, &others, since.as_ref()).await;
    if let Some(problem) = answers.iter().position(|a| !a.status().is_success()) {
        return answers.swap_remove(problem);
    }
    let full = answers
        .iter()
        .find(|a| header_text(a, "x-feed-snapshot") == Some("full"))
        .map(|a| {
            header_text(a, "x-feed-snapshot-reason")
                .unwrap_or("no_cursor")
                .to_owned()
        });
    let reason = match (forced, full) {
        (Some(reason), _) => Some(reason.to_owned()),
        (None, None) => None,
        (None, Some(reason)) => {
            // One partition cannot answer an increment: all in full.
            answers = ask(node, envelope, &partitions, &others, None).await;
            if let Some(problem) = answers.iter().position(|a| !a.status().is_success()) {
                return answers.swap_remove(problem);
            }
            Some(reason)
        }
    };
    combine(envelope, answers, reason)
}

/// A `since` sent to a cluster: its cursor, or why the feed is full (a
/// cursor of another cluster, or of a single node); 422 for text that is
/// no cursor at all.
fn cluster_cursor(
    text: &str,
    partitions: usize,
) -> Result<(Option<ClusterCursor>, Option<&'static str>), ApiError> {
    match ClusterCursor::check(text, partitions) {
        Ok(Ok(cursor)) => Ok((Some(cursor), None)),
        Ok(Err(why)) => Ok((None, Some(why.as_str()))),
        Err(error) => Err(ApiError::new(
            Code::InvalidCursor,
            format!("since: {error}"),
        )),
    }
}

/// `since`, and the other query parameters as they were sent.
fn split_query(query: Option<&str>) -> (Option<String>, Vec<(String, String)>) {
    let mut since = None;
    let mut others = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "since" {
            since = Some(value.into_owned());
        } else {
            others.push((name.into_owned(), value.into_owned()));
        }
    }
    (since, others)
}

/// Every partition's feed, asked for at once (headers only: each body is
/// read when its turn comes).
async fn ask(
    node: &ClusterNode,
    envelope: &Envelope,
    partitions: &[PartitionId],
    others: &[(String, String)],
    since: Option<&ClusterCursor>,
) -> Vec<Response> {
    let shares: Vec<Envelope> = partitions
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(others);
            if let Some(cursor) = since.and_then(|c| c.0.get(i)) {
                query.append_pair("since", &cursor.to_string());
            }
            let query = query.finish();
            let path = envelope.uri.path();
            let uri = if query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{query}")
            };
            let mut share = Envelope {
                uri: uri.parse().unwrap_or_else(|_| Uri::from_static("/")),
                ..envelope.clone()
            };
            // Plain text from each partition: the whole is compressed here.
            share.headers.remove(header::ACCEPT_ENCODING);
            share
        })
        .collect();
    let asking = partitions
        .iter()
        .zip(&shares)
        .map(|(partition, share)| to_partition(node, *partition, share));
    join_all(asking).await
}

fn header_text<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name)?.to_str().ok()
}

/// One feed of every partition's rows: the format's header, each
/// partition's body without its own header and footer, the footer.
fn combine(envelope: &Envelope, answers: Vec<Response>, reason: Option<String>) -> Response {
    let format = format_of(envelope);
    let cursors: Option<Vec<_>> = answers
        .iter()
        .map(|a| match header_text(a, "x-next-cursor")?.parse() {
            Ok(SentCursor::Cursor(cursor)) => Some(cursor),
            _ => None,
        })
        .collect();
    let Some(cursors) = cursors else {
        return ApiError::new(Code::Internal, "a partition's feed had no cursor").into_response();
    };
    let (head, foot) = (format.header().as_bytes(), format.footer().as_bytes());
    let bodies = stream::iter(answers).flat_map(move |answer| {
        let chunks: Chunks = Box::pin(answer.into_body().into_data_stream());
        inner(chunks, head.len(), foot.len())
    });
    let whole = stream::once(async move { Ok::<_, axum::Error>(Bytes::from_static(head)) })
        .chain(bodies)
        .chain(stream::once(async move { Ok(Bytes::from_static(foot)) }));
    let gzip = crate::http::routes::feeds::accepts_gzip(&envelope.headers);
    let mut response = if gzip {
        Response::new(Body::from_stream(crate::http::routes::feeds::gzipped(
            whole,
        )))
    } else {
        Response::new(Body::from_stream(whole))
    };
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(cursor) = HeaderValue::from_str(&ClusterCursor(cursors).to_string()) {
        headers.insert("x-next-cursor", cursor);
    }
    let snapshot = if reason.is_some() {
        "full"
    } else {
        "incremental"
    };
    headers.insert("x-feed-snapshot", HeaderValue::from_static(snapshot));
    if let Some(reason) = reason.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert("x-feed-snapshot-reason", reason);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The feed's format, as its path and `format` say (an invalid one was
/// refused by the partitions already).
fn format_of(envelope: &Envelope) -> Format {
    let xml = envelope.uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(name, value)| name == "format" && value == "xml")
    });
    match (envelope.uri.path().contains("/meta/"), xml) {
        (true, _) => Format::MetaCsv,
        (false, true) => Format::GoogleXml,
        (false, false) => Format::GoogleTsv,
    }
}

/// A partition's body without its first `skip` bytes (its header) and its
/// last `keep_back` bytes (its footer), whatever its chunks.
fn inner(
    chunks: Chunks,
    skip: usize,
    keep_back: usize,
) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send {
    stream::unfold(
        (chunks, skip, Vec::<u8>::new(), false),
        move |(mut chunks, mut skip, mut held, done)| async move {
            if done {
                return None;
            }
            loop {
                match chunks.next().await {
                    Some(Ok(mut chunk)) => {
                        let dropped = skip.min(chunk.len());
                        skip -= dropped;
                        chunk = chunk.slice(dropped..);
                        held.extend_from_slice(&chunk);
                        if held.len() > keep_back {
                            let out = held.split_off(held.len() - keep_back);
                            let ready = std::mem::replace(&mut held, out);
                            return Some((Ok(Bytes::from(ready)), (chunks, skip, held, false)));
                        }
                    }
                    Some(Err(error)) => return Some((Err(error), (chunks, skip, held, true))),
                    // The footer (what is held) is dropped.
                    None => return None,
                }
            }
        },
    )
}
