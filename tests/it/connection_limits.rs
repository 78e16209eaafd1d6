//! Connection-level abuse: a slow-loris client (a request head that never
//! ends, a body trickled or stalled) cannot hold the server, and the
//! connection cap makes extra connections wait instead of costing memory.
//! Raw sockets, so the client can misbehave exactly.

use std::time::Duration;

use crate::support;

use omnistock::server::config::ServeConfig;
use support::engine::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "limits-test-admin-key-0123";
/// Generous: a correctness bound (the server does close), not a timing claim.
const PATIENCE: Duration = Duration::from_secs(10);

/// The engine with `config`'s connection limits and no per-key rate limit.
async fn server(config: ServeConfig) -> Running {
    let config = ServeConfig {
        rate_limit_per_second: 0,
        ..config
    };
    support::engine::start_engine(config, ADMIN).await
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

/// A connection whose request head is sent in part and never finished.
async fn slow_loris(addr: std::net::SocketAddr) -> TcpStream {
    let mut loris = TcpStream::connect(addr).await.expect("connect");
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: 1")
        .await
        .expect("write");
    loris
}

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    read_until_closed(&mut stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_cut_off() {
    let running = server(ServeConfig {
        header_read_timeout_ms: 300,
        ..ServeConfig::default()
    })
    .await;
    let mut loris = slow_loris(running.addr).await;
    // Others are served meanwhile.
    assert!(healthz(running.addr).await.starts_with("HTTP/1.1 200"));
    let answer = read_until_closed(&mut loris).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // An idle keep-alive connection is closed after the same time.
    let mut idle = TcpStream::connect(running.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_changes_nothing() {
    let running = server(ServeConfig {
        body_read_timeout_ms: 300,
        ..ServeConfig::default()
    })
    .await;
    let body = br#"{"kind": "store", "name": "slow"}"#;
    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    let head = format!(
        "PUT /v1/locations/SLOW HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body[..10])
        .await
        .expect("part of the body");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(
        running
            .state
            .ledger()
            .catalog()
            .location_id("SLOW")
            .is_none()
    );
    running.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_their_turn() {
    let running = server(ServeConfig {
        max_connections: 2,
        ..ServeConfig::default()
    })
    .await;
    // Two connections hold both slots (opened, request head unfinished).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(running.addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is accepted by the kernel but not served while both are held.
    let mut third = TcpStream::connect(running.addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = [0_u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buffer)).await;
    assert!(early.is_err(), "served beyond the cap");
    // One leaves: the third is served.
    drop(held.pop());
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    running.shutdown().await.expect("stop");
}

/// The quiet-connection timeout closes connections with nothing in progress,
/// never one whose response is still streaming (a live stream sends nothing
/// between its 15 s keep-alives, far longer than the timeout here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_outlives_the_quiet_connection_timeout() {
    let running = server(ServeConfig {
        header_read_timeout_ms: 200,
        ..ServeConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "GET /v1/streams/availability HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut head = [0_u8; 512];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut head))
        .await
        .expect("stream head in time")
        .expect("read");
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    // A connection opened alongside with nothing in progress is closed ...
    let mut idle = TcpStream::connect(running.addr).await.expect("connect");
    let started = std::time::Instant::now();
    let mut byte = [0_u8; 1];
    let closed = tokio::time::timeout(PATIENCE, idle.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection: {closed:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // ... while the stream, quiet far longer than the timeout, stays open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still_open = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
    assert!(
        still_open.is_err(),
        "the stream was closed or sent data: {still_open:?}"
    );
    // Shutdown ends the stream (it ends itself on stop) and drains.
    tokio::time::timeout(PATIENCE, running.shutdown())
        .await
        .expect("shutdown drains")
        .expect("stop");
}

/// A graceful shutdown waits for requests in progress, not for a request
/// head that never ends: the quiet-connection timeout still closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_an_unfinished_request_head() {
    let running = server(ServeConfig {
        header_read_timeout_ms: 300,
        ..ServeConfig::default()
    })
    .await;
    let loris = slow_loris(running.addr).await;
    // The server has taken the connection (and its partial head) in.
    assert!(healthz(running.addr).await.starts_with("HTTP/1.1 200"));
    tokio::time::timeout(PATIENCE, running.shutdown())
        .await
        .expect("shutdown is not held by the unfinished head")
        .expect("stop");
    drop(loris);
}
