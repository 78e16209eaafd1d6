//! The targets a run can drive, and how the tool starts them: each in its own
//! process (so the load generator and the server never share a runtime),
//! optionally pinned to one core, stopped when the run ends. omnistock is the
//! release binary next to this one (`cargo build --release` builds both);
//! the baseline and the ceiling are this binary's hidden `serve-redis-lua`
//! and `serve-noop` subcommands; the baseline's Redis is a `redis-server` on
//! a free loopback port, without persistence.

pub mod noop;
pub mod redis_lua;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// omnistock, in memory.
    Omnistock,
    /// omnistock with the Redis write-behind store, `--durability async`.
    OmnistockAsync,
    /// omnistock with the Redis write-behind store, `--durability sync`.
    OmnistockSync,
    /// Reservations as a Lua script in Redis behind a minimal HTTP service.
    RedisLua,
    /// An HTTP handler that only parses the request: the ceiling.
    Noop,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Omnistock => "omnistock",
            Target::OmnistockAsync => "omnistock-async",
            Target::OmnistockSync => "omnistock-sync",
            Target::RedisLua => "redis-lua",
            Target::Noop => "noop",
        }
    }

    pub fn is_omnistock(self) -> bool {
        matches!(
            self,
            Target::Omnistock | Target::OmnistockAsync | Target::OmnistockSync
        )
    }

    /// Whether the target keeps stock (and so can be seeded and audited).
    pub fn has_state(self) -> bool {
        self != Target::Noop
    }
}

#[derive(Clone, Debug)]
pub struct SpawnOptions {
    /// Pin the target (and its Redis) to this core with `taskset`.
    pub pin_core: Option<usize>,
    pub omnistock_bin: Option<PathBuf>,
    pub redis_server: String,
    /// The loadtest binary that serves the baseline and the ceiling
    /// (default: this executable; tests pass the built binary).
    pub loadtest_bin: Option<PathBuf>,
    /// Where the targets' stderr goes (one log file each).
    pub log_dir: PathBuf,
}

/// A started target; stopped (children killed, then reaped) when dropped.
pub struct Spawned {
    pub url: String,
    pub admin_key: String,
    children: Vec<(String, Child)>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Spawned {
    /// The process id of the server itself (the last child started).
    pub fn pid(&self) -> Option<u32> {
        self.children.last().map(|(_, child)| child.id())
    }

    /// Fails if a child has exited (e.g. crashed under load).
    pub fn check_alive(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited: {status}"));
            }
        }
        Ok(())
    }
}

/// A free loopback port (bound, read, released; the target binds it next).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Pins this process (every thread it has now, and so every thread it
/// starts later) to `core` with `taskset`; false if that was not possible.
pub fn pin_self(core: usize) -> bool {
    which("taskset")
        && Command::new("taskset")
            .args([
                "-a",
                "-p",
                "-c",
                &core.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Whether targets can be pinned apart from the generator: 2+ cores and taskset.
pub fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) && which("taskset")
}

fn pinned(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) if which("taskset") => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(core.to_string()).arg(program);
            command
        }
        _ => Command::new(program),
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn log_file(options: &SpawnOptions, name: &str) -> Result<Stdio, String> {
    std::fs::create_dir_all(&options.log_dir)
        .map_err(|e| format!("cannot create {}: {e}", options.log_dir.display()))?;
    let path = options.log_dir.join(format!("{name}.log"));
    std::fs::File::create(&path)
        .map(Stdio::from)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// The omnistock binary: `--omnistock-bin`, else next to this executable.
pub fn omnistock_bin(options: &SpawnOptions) -> Result<PathBuf, String> {
    let path = match &options.omnistock_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("omnistock"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "omnistock binary not found at {}: run `cargo build --release` (it builds omnistock and loadtest) or pass --omnistock-bin",
            path.display()
        ))
    }
}

/// Starts a `redis-server` on a free loopback port, without persistence.
fn start_redis(options: &SpawnOptions, children: &mut Vec<(String, Child)>) -> Result<u16, String> {
    let port = free_port()?;
    let mut command = pinned(Path::new(&options.redis_server), options.pin_core);
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(log_file(options, "redis-server")?)
        .stderr(Stdio::null());
    let child = command.spawn().map_err(|e| {
        format!(
            "cannot start {} ({e}): the redis targets need redis-server (Debian: apt-get install redis-server)",
            options.redis_server
        )
    })?;
    children.push(("redis-server".into(), child));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if redis_ping(port) {
            return Ok(port);
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server did not answer on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// Starts `target` and waits until it answers `/readyz`.
pub async fn spawn(target: Target, options: &SpawnOptions) -> Result<Spawned, String> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let admin_key = format!(
        "loadtest-admin-{:016x}",
        crate::rng::Rng::new(crate::dataset::unix_ms()).next_u64()
    );
    let mut children = Vec::new();
    let this = match &options.loadtest_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let mut command = match target {
        Target::Omnistock | Target::OmnistockAsync | Target::OmnistockSync => {
            let bin = omnistock_bin(options)?;
            let mut command = pinned(&bin, options.pin_core);
            command
                .args(["serve", "--listen", &listen, "--rate-limit-per-second", "0"])
                .env("OMNISTOCK_ADMIN_KEY", &admin_key);
            if target != Target::Omnistock {
                let redis_port = start_redis(options, &mut children)?;
                let durability = if target == Target::OmnistockSync {
                    "sync"
                } else {
                    "async"
                };
                command
                    .arg("--redis-url")
                    .arg(format!("redis://127.0.0.1:{redis_port}"))
                    .args(["--durability", durability]);
            }
            command
        }
        Target::RedisLua => {
            let redis_port = start_redis(options, &mut children)?;
            let mut command = pinned(&this, options.pin_core);
            command
                .args(["serve-redis-lua", "--listen", &listen])
                .arg("--redis-url")
                .arg(format!("redis://127.0.0.1:{redis_port}"));
            command
        }
        Target::Noop => {
            let mut command = pinned(&this, options.pin_core);
            command.args(["serve-noop", "--listen", &listen]);
            command
        }
    };
    command
        .stdout(Stdio::null())
        .stderr(log_file(options, target.name())?);
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", target.name()))?;
    children.push((target.name().to_string(), child));
    let mut spawned = Spawned {
        url: format!("http://{listen}"),
        admin_key,
        children,
    };
    wait_ready(&mut spawned, target.name(), "/readyz").await?;
    Ok(spawned)
}

/// A server the caller describes: `program args...` with `env`, listening on
/// `port` (pinned, its stderr logged to NAME.log), ready once GET
/// `ready_path` answers 2xx. `admin_key` is what the caller gave it.
pub struct ServerSpec<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
    pub port: u16,
    pub ready_path: &'a str,
    pub admin_key: String,
}

/// Starts a server described by `spec` and waits until it is ready.
pub async fn spawn_server(spec: ServerSpec<'_>, options: &SpawnOptions) -> Result<Spawned, String> {
    let mut command = pinned(spec.program, options.pin_core);
    command.args(&spec.args);
    for (name, value) in &spec.env {
        command.env(name, value);
    }
    command
        .stdout(Stdio::null())
        .stderr(log_file(options, spec.name)?);
    let child = command.spawn().map_err(|e| {
        format!(
            "cannot start {} ({}): {e}",
            spec.name,
            spec.program.display()
        )
    })?;
    let mut spawned = Spawned {
        url: format!("http://127.0.0.1:{}", spec.port),
        admin_key: spec.admin_key,
        children: vec![(spec.name.to_string(), child)],
    };
    wait_ready(&mut spawned, spec.name, spec.ready_path).await?;
    Ok(spawned)
}

async fn wait_ready(spawned: &mut Spawned, name: &str, ready_path: &str) -> Result<(), String> {
    let endpoint = crate::http_client::Endpoint::parse(&spawned.url).await?;
    let addr: SocketAddr = endpoint.addr;
    let mut conn = crate::http_client::Conn::new(endpoint, Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        spawned.check_alive()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && let Ok(reply) = conn
                .call(crate::http_client::Call::get(ready_path, None))
                .await
            && reply.status.is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} did not become ready at {}", spawned.url));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
