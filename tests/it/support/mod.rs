//! Shared by the integration tests: a real `redis-server` (the testkit's
//! `RedisServer`, re-exported), the real
//! `omnistock` binary as a child process (so it can be `kill -9`ed), the
//! engine in-process with a client (`engine`), and the guards for tests
//! that cannot share this process freely with the others (`serial`,
//! `metrics_gate`).
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod engine;
pub mod metrics_gate;
pub mod proxy;
pub mod rng;
pub mod sse;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use omnistock_testkit::RedisServer;

pub const ADMIN: &str = "store-test-admin-key-0123";

/// One heavy test at a time. The heavy tests (the chaos soak, `kill -9` of
/// the engine under load, Redis killed under load, the threaded stress, the
/// linearizability runs) each load every core for seconds and assert on
/// what must happen within a time (a write acknowledged within the durability
/// window, a client answered before its timeout). Each file used to be a
/// binary of its own, run one after the other; now they share one process,
/// so each holds this guard for its whole run and never overlaps another
/// (lighter tests still run beside them). Async tests take it with
/// `serial().await`, plain ones with `serial_blocking()`. A tokio mutex:
/// held across awaits, and a failed test does not poison it for the rest.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `serial` for a test that is not async (must not be called from a runtime).
pub fn serial_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A response header as text, if present and visible ASCII.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    let value = response.headers().get(name)?;
    value.to_str().ok().map(str::to_owned)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `redis-server --version` as (major, minor).
pub fn redis_version() -> (u32, u32) {
    let output = Command::new("redis-server")
        .arg("--version")
        .output()
        .expect("redis-server --version");
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .expect("a v= field");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The `omnistock` binary serving on a free port.
pub struct EngineProcess {
    child: Option<Child>,
    pub port: u16,
}

impl EngineProcess {
    /// Starts `omnistock serve` with `args` and waits until `/readyz` is 200.
    pub fn start(args: &[&str]) -> EngineProcess {
        EngineProcess::start_on(free_port(), args, None)
    }

    /// As `start`, on a given port (a restart keeps the clients' address),
    /// with the engine's log appended to `log` instead of the test's stderr.
    pub fn start_on(port: u16, args: &[&str], log: Option<&Path>) -> EngineProcess {
        let mut engine = EngineProcess::spawn_on(port, args, log);
        engine.wait_ready(Duration::from_secs(60));
        engine
    }

    /// Starts the process without waiting for it to be ready.
    pub fn spawn_on(port: u16, args: &[&str], log: Option<&Path>) -> EngineProcess {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("engine log file"),
            ),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_omnistock"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("OMNISTOCK_ADMIN_KEY", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the omnistock binary starts");
        EngineProcess {
            child: Some(child),
            port,
        }
    }

    /// Waits until `/readyz` is 200; panics if the process exits or the
    /// timeout passes.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("omnistock exited at start: {status}");
            }
            if raw_get(self.port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return;
            }
            assert!(started.elapsed() < timeout, "omnistock never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `kill -9`: the process gets no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, name: &str) {
        if let Some(child) = self.child.as_ref() {
            let sent = Command::new("kill")
                .args([format!("-{name}"), child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(sent.success(), "kill -{name}");
        }
    }

    /// SIGTERM and wait for a clean exit (the last flush included).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "omnistock exit status {status}");
                    return;
                }
                assert!(Instant::now() < deadline, "omnistock did not exit");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn raw_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
