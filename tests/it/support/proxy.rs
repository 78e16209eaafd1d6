//! A TCP proxy for fault injection, put between the engine and Redis. It
//! forwards both directions on loopback and, when told to, adds latency to
//! every chunk, drops connections (a clean close, and refuses new ones by
//! closing them at once), or resets them mid-stream (forwards part of a
//! chunk, then closes with `SO_LINGER 0` so the peers get a RST: a pipeline
//! cut in the middle, or a reply lost after Redis executed it).
//!
//! Threads, not tasks: two per connection, blocking I/O, so the proxy keeps
//! forwarding whatever the test's runtime is doing.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything at once.
    Pass,
    /// Wait this long before forwarding each chunk (both directions).
    Latency(Duration),
    /// Close every connection; close new ones as soon as they are accepted.
    Drop,
    /// Forward a random number of bytes (0 to 4 KiB, drawn per connection
    /// when the mode is entered or the connection opens), then reset it
    /// (RST): the cut usually falls inside a pipeline or its replies.
    Reset,
}

/// Counts of what the proxy did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyStats {
    pub connections: u64,
    pub dropped: u64,
    pub reset: u64,
    /// Resets that cut a chunk: part of it forwarded, the rest not.
    pub cut_mid_chunk: u64,
    pub delayed_chunks: u64,
}

struct Shared {
    upstream: u16,
    mode: Mutex<ProxyMode>,
    stop: AtomicBool,
    /// Live connections, so they can be closed or reset from outside.
    live: Mutex<Vec<Arc<Conn>>>,
    next_id: AtomicU64,
    connections: AtomicU64,
    dropped: AtomicU64,
    reset: AtomicU64,
    cut_mid_chunk: AtomicU64,
    delayed_chunks: AtomicU64,
    seed: AtomicU64,
}

const RESET_BUDGET: u64 = 4096;

/// One proxied connection: clones of both streams (the pumps own others).
struct Conn {
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
    /// Reset: the pumps must not close it gracefully (that would send FIN).
    aborted: AtomicBool,
    /// Bytes (both directions) still forwarded in `Reset` mode.
    budget: AtomicI64,
}

impl Conn {
    /// `SO_LINGER 0`, then wake both pumps without sending anything
    /// (`shutdown(Read)`); when the last descriptor closes the kernel sends RST.
    fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        for stream in [&self.client, &self.upstream] {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
            let _ = stream.shutdown(Shutdown::Read);
        }
    }

    /// A clean close of both sides (FIN).
    fn close(&self) {
        if !self.aborted.load(Ordering::Acquire) {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }
}

pub struct ChaosProxy {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ChaosProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listens");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(ProxyMode::Pass),
            stop: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            connections: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reset: AtomicU64::new(0),
            cut_mid_chunk: AtomicU64::new(0),
            delayed_chunks: AtomicU64::new(0),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("chaos-proxy-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("proxy thread")
        };
        ChaosProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn mode(&self) -> ProxyMode {
        *self.shared.mode.lock().expect("mode")
    }

    /// Switches mode. Entering `Drop` closes every live connection at once;
    /// entering `Reset` resets each at its next chunk.
    pub fn set_mode(&self, mode: ProxyMode) {
        *self.shared.mode.lock().expect("mode") = mode;
        if mode == ProxyMode::Reset {
            for conn in self.shared.live.lock().expect("live").iter() {
                let budget = next_random(&self.shared) % (RESET_BUDGET + 1);
                conn.budget.store(budget as i64, Ordering::Release);
            }
        }
        if mode == ProxyMode::Drop {
            let live = std::mem::take(&mut *self.shared.live.lock().expect("live"));
            for conn in live {
                conn.close();
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Resets every live connection now (RST to both peers).
    pub fn reset_all(&self) {
        let live = std::mem::take(&mut *self.shared.live.lock().expect("live"));
        for conn in live {
            conn.abort();
            self.shared.reset.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            reset: self.shared.reset.load(Ordering::Relaxed),
            cut_mid_chunk: self.shared.cut_mid_chunk.load(Ordering::Relaxed),
            delayed_chunks: self.shared.delayed_chunks.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let live = std::mem::take(&mut *self.shared.live.lock().expect("live"));
        for conn in live {
            conn.close();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = incoming else { continue };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        if *shared.mode.lock().expect("mode") == ProxyMode::Drop {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            continue; // dropped: closed at once
        }
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
            continue; // Redis is down: the client sees the connection closed
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let clones = (|| {
            Some((
                client.try_clone().ok()?,
                upstream.try_clone().ok()?,
                client.try_clone().ok()?,
                upstream.try_clone().ok()?,
            ))
        })();
        let Some((client_2, upstream_2, client_3, upstream_3)) = clones else {
            continue;
        };
        let conn = Arc::new(Conn {
            id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            client: client_3,
            upstream: upstream_3,
            aborted: AtomicBool::new(false),
            budget: AtomicI64::new((next_random(&shared) % (RESET_BUDGET + 1)) as i64),
        });
        shared.live.lock().expect("live").push(Arc::clone(&conn));
        let id = conn.id;
        for (from, to, name) in [(client, upstream, "up"), (upstream_2, client_2, "down")] {
            let (conn, shared) = (Arc::clone(&conn), Arc::clone(&shared));
            let _ = std::thread::Builder::new()
                .name(format!("chaos-proxy-{name}-{id}"))
                .spawn(move || pump(&conn, from, to, &shared));
        }
    }
}

/// Copies `from` -> `to` until either side closes, applying the mode to
/// every chunk; then closes the connection (unless it was reset).
fn pump(conn: &Conn, mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mode = *shared.mode.lock().expect("mode");
        match mode {
            ProxyMode::Pass => {}
            ProxyMode::Latency(delay) => {
                shared.delayed_chunks.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(delay);
            }
            ProxyMode::Drop => break,
            ProxyMode::Reset => {
                let before = conn.budget.fetch_sub(n as i64, Ordering::AcqRel);
                if before < n as i64 {
                    if !conn.aborted.load(Ordering::Acquire) {
                        let cut = before.max(0) as usize;
                        let _ = to.write_all(&buffer[..cut]);
                        conn.abort();
                        shared.reset.fetch_add(1, Ordering::Relaxed);
                        if cut > 0 {
                            shared.cut_mid_chunk.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    break;
                }
            }
        }
        if conn.aborted.load(Ordering::Acquire) || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    conn.close();
    shared
        .live
        .lock()
        .expect("live")
        .retain(|live| live.id != conn.id);
}

fn next_random(shared: &Shared) -> u64 {
    // SplitMix64 over a shared counter: good enough to pick a cut point.
    let mut z = shared
        .seed
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
