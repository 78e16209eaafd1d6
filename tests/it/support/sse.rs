//! Reading a live stream (Server-Sent Events) in tests.

use std::time::Duration;

use serde_json::Value;

/// One event: its name (empty for one with only an id), its data as JSON,
/// its id.
pub type SseEvent = (String, Value, Option<String>);

/// Reads events from `response` until `done` holds for what was read or
/// `within` passes; a partial event stays in `buffer` for the next call.
pub async fn read(
    response: &mut reqwest::Response,
    buffer: &mut String,
    within: Duration,
    done: impl Fn(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    let deadline = tokio::time::Instant::now() + within;
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data, mut id) = (String::new(), Value::Null, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).expect("JSON data");
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                }
            }
            if !name.is_empty() || id.is_some() {
                events.push((name, data, id));
            }
        }
        if done(&events) {
            return events;
        }
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8")),
            _ => return events,
        }
    }
}

/// The data of the next `availability` event of `response` (within
/// `within`); fails the test, saying `what` was awaited, without one.
pub async fn next_availability(
    response: &mut reqwest::Response,
    buffer: &mut String,
    within: Duration,
    what: &str,
) -> Value {
    let is_availability = |e: &SseEvent| e.0 == "availability";
    let events = read(response, buffer, within, |events| {
        events.iter().any(is_availability)
    })
    .await;
    let found = events.iter().find(|e| is_availability(e));
    found
        .map(|e| e.1.clone())
        .unwrap_or_else(|| panic!("{what}: no availability event in {events:?}"))
}
