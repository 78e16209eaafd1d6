//! The accept loop: HTTP/1.1 connections served by hyper with the limits
//! `axum::serve` does not offer, so one slow or greedy client cannot starve
//! the others.
//!
//! - **Quiet connection timeout** (`--header-read-timeout-ms`): a connection
//!   that starts no request and has no response in progress for that long (a
//!   slow-loris head that never ends, or an idle keep-alive connection) is
//!   closed, within a quarter of the timeout after it expires.
//! - **Connection cap** (`--max-connections`): at the cap, the loop stops
//!   accepting; new connections wait in the kernel's backlog (and time out
//!   there) instead of each costing a task and buffers here.
//! - **Graceful shutdown**: on stop, no new connections; idle ones are closed,
//!   in-flight requests finish (live streams end themselves on stop); the
//!   quiet-connection timeout keeps running, so a request head that never
//!   ends cannot hold the shutdown.
//!
//! Why not hyper's own header read timeout: it allocates and registers a
//! timer for every request (and `GracefulShutdown` polls a watch channel on
//! every wake of every connection), which measured as ~9 % of throughput.
//! Here a request costs two atomic counter updates; one reaper task per
//! server looks at every connection's counters a few times per timeout.
//!
//! Architecture invariant: the connection-level limits cost nothing per
//! request beyond atomic counters: no timer, lock or allocation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use crate::http::publishable::ClientAddr;

/// Limits of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
}

/// What one connection has been doing, shared by its service (which counts)
/// and the reaper (which reads the counts and may tell it to stop).
#[derive(Default)]
struct Activity {
    /// Requests started (hyper parsed a head and called the service).
    requests: AtomicU64,
    /// Responses in progress: started and whose body is not yet finished
    /// (a live stream stays in progress as long as it streams).
    in_flight: AtomicU64,
    /// 0 (serve), `DRAIN` (finish what is in progress, then close) or
    /// `CLOSE` (now); only ever raised.
    command: AtomicU8,
    /// Wakes the connection's task when `command` changes.
    waker: AtomicWaker,
}

const DRAIN: u8 = 1;
const CLOSE: u8 = 2;

impl Activity {
    fn tell(&self, command: u8) {
        self.command.fetch_max(command, Ordering::AcqRel);
        self.waker.wake();
    }
}

/// An open connection as the reaper sees it.
struct Watched {
    activity: Arc<Activity>,
    /// `activity.requests` when the reaper last saw it change.
    requests_seen: u64,
    /// Since when nothing has started or been in progress (as of a tick).
    quiet_since: Instant,
}

/// The open connections the reaper watches, by connection number.
type Registry = Mutex<HashMap<u64, Watched>>;

/// Serves `router` on `listener` until `stop` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry: Arc<Registry> = Arc::default();
    // Runs until the drain is over: a request head that never ends must
    // not hold the shutdown either.
    let reaper = tokio::spawn(reap(
        Arc::clone(&registry),
        Duration::from_millis(limits.header_read_timeout_ms.max(1)),
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    // No timer: hyper's per-request header timeout stays off (see above).
    http.keep_alive(true);
    let mut next_connection: u64 = 0;
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        metrics::gauge!("omnistock_http_connections")
            .set((limits.max_connections - slots.available_permits()) as f64);
        let (stream, peer) = match accept(&listener, &mut stop).await {
            Accepted::Stream(stream, peer) => (stream, peer),
            Accepted::Failed => continue,
            Accepted::Stopping => break,
        };
        let _ = stream.set_nodelay(true);
        next_connection += 1;
        let id = next_connection;
        let activity = watch_connection(&registry, id);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            ConnectionService {
                router: router.clone(),
                activity: Arc::clone(&activity),
                peer: ClientAddr(peer),
            },
        );
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            run_connection(connection, &activity).await;
            registry.lock().remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    drain(&registry, &slots, limits.max_connections).await;
    reaper.abort();
    Ok(())
}

enum Accepted {
    Stream(TcpStream, std::net::IpAddr),
    /// The accept failed (and was waited out): try again.
    Failed,
    Stopping,
}

async fn accept(listener: &TcpListener, stop: &mut watch::Receiver<bool>) -> Accepted {
    tokio::select! {
        accepted = listener.accept() => match accepted {
            Ok((stream, peer)) => Accepted::Stream(stream, peer.ip()),
            Err(error) => {
                // Per-connection errors (reset before accept) are the
                // client's; running out of descriptors is ours: back off.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                Accepted::Failed
            }
        },
        _ = stop.changed() => Accepted::Stopping,
    }
}

/// Registers connection `id` with the reaper; returns its activity.
fn watch_connection(registry: &Registry, id: u64) -> Arc<Activity> {
    let activity = Arc::new(Activity::default());
    registry.lock().insert(
        id,
        Watched {
            activity: Arc::clone(&activity),
            requests_seen: 0,
            quiet_since: Instant::now(),
        },
    );
    activity
}

/// Serves one connection until it ends, draining it gracefully or closing
/// it at once as `activity`'s command says.
async fn run_connection(
    connection: hyper::server::conn::http1::Connection<TokioIo<TcpStream>, ConnectionService>,
    activity: &Activity,
) {
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    let ended = std::future::poll_fn(|cx| {
        activity.waker.register(cx.waker());
        match activity.command.load(Ordering::Acquire) {
            CLOSE => return Poll::Ready(Ok(())),
            DRAIN if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        connection.as_mut().poll(cx)
    })
    .await;
    // Errors here are the client's (reset, malformed): hyper has
    // already answered what could be answered.
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended");
    }
}

/// Idle connections close now, busy ones after their response; returns
/// once every connection task has given its slot back.
async fn drain(registry: &Registry, slots: &Semaphore, max_connections: usize) {
    for watched in registry.lock().values() {
        watched.activity.tell(DRAIN);
    }
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Closes connections that have been quiet (no request started, no response
/// in progress) for `timeout`. Looks every quarter of it, so a connection is
/// closed between `timeout` and 1.25 x `timeout` after it fell quiet.
async fn reap(registry: Arc<Registry>, timeout: Duration) {
    let mut ticker = tokio::time::interval((timeout / 4).max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        for watched in registry.lock().values_mut() {
            let requests = watched.activity.requests.load(Ordering::Relaxed);
            let busy = watched.activity.in_flight.load(Ordering::Relaxed) > 0;
            if busy || requests != watched.requests_seen {
                watched.requests_seen = requests;
                watched.quiet_since = now;
            } else if now.duration_since(watched.quiet_since) >= timeout {
                watched.activity.tell(CLOSE);
            }
        }
    }
}

/// The router as one connection's hyper service, counting its requests.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
    /// Set on every request (publishable keys are limited per address).
    peer: ClientAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<CountedBody>;
    type Error = Infallible;
    type Future = CountedResponse;

    fn call(&self, request: hyper::Request<Incoming>) -> CountedResponse {
        self.activity.requests.fetch_add(1, Ordering::Relaxed);
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Arc::clone(&self.activity));
        // `Router` is always ready (axum documents it), so no poll_ready.
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.peer);
        let inner = self.router.clone().call(request);
        CountedResponse {
            inner,
            guard: Some(guard),
        }
    }
}

/// One response in progress; ends when dropped (with the body).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

type RouterFuture = <Router as Service<axum::extract::Request>>::Future;

struct CountedResponse {
    inner: RouterFuture,
    guard: Option<InFlight>,
}

impl Future for CountedResponse {
    type Output = Result<hyper::Response<CountedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(Ok(response)) = Pin::new(&mut this.inner).poll(cx) else {
            return Poll::Pending;
        };
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|body| CountedBody {
            inner: body,
            _in_flight: guard,
        })))
    }
}

/// A response body that keeps its request in progress until it is done.
struct CountedBody {
    inner: Body,
    _in_flight: Option<InFlight>,
}

impl http_body::Body for CountedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
