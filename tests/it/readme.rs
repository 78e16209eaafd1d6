//! The README runs as written: every fenced block, in order, against the
//! servers its own commands start.
//!
//! Blocks by their fence's info string:
//! - `sh`: run with bash (`set -eu`: a failing command fails the block; no
//!   `pipefail`, as in a terminal, where `curl ... | head` is fine) in a
//!   scratch directory, in order; the variables a block sets carry to the
//!   next (every assignment is exported, and the environment is handed
//!   on), as in one terminal.
//! - `sh server`: commands that start servers. A command with ` serve`
//!   starts the engine in the background (after a graceful stop of the one
//!   before) and waits for `/readyz`; a `redis-server` command starts Redis;
//!   `bash scripts/test.sh` is what runs this test, so it is skipped.
//! - `sh stream`: a command that never ends (a live stream): run while the
//!   test makes the change the README suggests; its output must show it.
//! - `sh manual`: not run (load tests of minutes, which the load-test
//!   tool's own tests cover).
//! - `rust`: must be `examples/quickstart.rs`, from its `use` line on.
//! - `html`: markup for pages; must load the SDK the engine serves and use
//!   only attributes its element observes (`tests/it/browser.rs` drives the
//!   same element in a real browser).
//!
//! What the test changes, and only that: the engine listens on a free port
//! (`OMNISTOCK_LISTEN`; `localhost:8080` in the blocks becomes that port),
//! Redis on a free port instead of 6379, and `cargo run --release --` is the
//! binary built for the tests. Every curl answer of 400 or more fails the
//! block, except the one 409 of the over-sized hold the README shows on
//! purpose.

use crate::support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::free_port;

/// One fenced block: its info string and its text.
struct Block {
    info: String,
    text: String,
    line: usize,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in readme.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    text: String::new(),
                    line: index + 1,
                })
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "a fenced block of README.md is never closed"
    );
    blocks
}

/// The commands of a block: continuation lines joined, comments and blank
/// lines dropped.
fn commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// The servers the README's commands started.
struct Servers {
    engine_port: u16,
    redis_port: u16,
    engine: Option<Child>,
    redis_started: bool,
    dir: PathBuf,
}

impl Servers {
    /// The block's text as the test runs it (see the module docs).
    fn rewrite(&self, text: &str) -> String {
        text.replace("localhost:8080", &format!("127.0.0.1:{}", self.engine_port))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", self.engine_port))
            .replace("--port 6379", &format!("--port {}", self.redis_port))
            .replace("127.0.0.1:6379", &format!("127.0.0.1:{}", self.redis_port))
            .replace(
                "cargo run --release --",
                &format!("'{}'", env!("CARGO_BIN_EXE_omnistock")),
            )
    }

    fn start(&mut self, command: &str, block: &Block) {
        if command.contains("scripts/test.sh") {
            return;
        }
        let command = self.rewrite(command);
        if command.starts_with("redis-server") {
            let status = Command::new("bash")
                .args(["-c", &command])
                .current_dir(&self.dir)
                .status()
                .expect("bash runs");
            assert!(status.success(), "README line {}: {command}", block.line);
            self.redis_started = true;
            wait_for(Duration::from_secs(10), || {
                Command::new("redis-cli")
                    .args(["-p", &self.redis_port.to_string(), "ping"])
                    .output()
                    .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
            });
            return;
        }
        assert!(
            command.contains(" serve"),
            "README line {}: a server block runs only servers: {command}",
            block.line
        );
        self.stop_engine();
        let log = std::fs::File::create(self.dir.join("engine.log")).expect("log");
        let child = Command::new("bash")
            // `env` so that leading assignments apply and the engine itself
            // is the child (a SIGTERM reaches it, as Ctrl-C would).
            .args(["-c", &format!("exec env {command}")])
            .current_dir(&self.dir)
            .env(
                "OMNISTOCK_LISTEN",
                format!("127.0.0.1:{}", self.engine_port),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bash runs");
        let port = self.engine_port;
        let engine = self.engine.insert(child);
        let ready = wait_for(Duration::from_secs(120), || {
            let exited = engine.try_wait().is_ok_and(|s| s.is_some());
            exited || http_status(port, "/readyz") == Some(200)
        }) && engine.try_wait().is_ok_and(|s| s.is_none());
        assert!(
            ready,
            "README line {}: the engine never became ready: {}",
            block.line,
            std::fs::read_to_string(self.dir.join("engine.log")).unwrap_or_default()
        );
    }

    /// SIGTERM and wait: a graceful stop, as Ctrl-C would.
    fn stop_engine(&mut self) {
        if let Some(mut child) = self.engine.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let stopped = wait_for(Duration::from_secs(20), || {
                child.try_wait().is_ok_and(|s| s.is_some())
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the engine did not stop on SIGTERM");
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(mut child) = self.engine.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.redis_started {
            let _ = Command::new("redis-cli")
                .args(["-p", &self.redis_port.to_string(), "shutdown", "nosave"])
                .output();
        }
    }
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The status of a GET on loopback, without a client library.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// What every block sources first: curl records each answer's status.
const PRELUDE: &str = r#"
curl() { command curl -w '%{stderr}readme-http-status %{http_code}\n' "$@" 2>>"$README_CURL_LOG"; }
"#;

/// Runs one `sh` block with the environment the blocks before left;
/// returns its output and the environment it leaves.
fn run_block(
    block: &Block,
    text: &str,
    env: &BTreeMap<String, String>,
    dir: &Path,
) -> (String, BTreeMap<String, String>) {
    let state = dir.join("environment");
    let log = dir.join("curl.log");
    let _ = std::fs::remove_file(&log);
    let script = format!(
        "set -a\nsource '{}'\nset -eu\n{text}\nenv -0 > '{}'\n",
        dir.join("prelude.sh").display(),
        state.display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .env("README_CURL_LOG", &log)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let curl_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        output.status.success(),
        "README block at line {} failed ({}):\n{text}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- curl\n{curl_log}",
        block.line,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    check_statuses(block, &curl_log);
    (stdout, read_environment(&state))
}

/// Every curl of the block answered below 400, but for the refusals the
/// README shows on purpose: one 409 per over-sized hold (`"qty":500`).
fn check_statuses(block: &Block, curl_log: &str) {
    let mut refusals_allowed = block.text.matches("\"qty\":500").count();
    for line in curl_log.lines() {
        if let Some(status) = line.strip_prefix("readme-http-status ") {
            let status: u16 = status.trim().parse().unwrap_or(0);
            let allowed = status == 409 && refusals_allowed > 0;
            refusals_allowed -= usize::from(allowed);
            assert!(
                (200..400).contains(&status) || allowed,
                "README block at line {}: a curl answered {status}:\n{}\n{curl_log}",
                block.line,
                block.text
            );
        }
    }
}

fn read_environment(path: &Path) -> BTreeMap<String, String> {
    let bytes = std::fs::read(path).expect("the block's environment");
    bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Runs a live-stream block, makes the change the README suggests (a hold
/// of SKU-00002 at PAR-01), and returns what the stream printed.
fn run_stream(
    block: &Block,
    text: &str,
    env: &BTreeMap<String, String>,
    dir: &Path,
    engine_port: u16,
) -> String {
    let script = format!(
        "source '{}'\nset -eu\n{text}",
        dir.join("prelude.sh").display()
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .env("README_CURL_LOG", dir.join("stream-curl.log"))
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    std::thread::sleep(Duration::from_millis(500));
    let hold = r#"{"channel":"web","lines":[{"sku":"SKU-00002","location":"PAR-01","qty":1}],"ttl_seconds":600}"#;
    let key = env
        .get("OMNISTOCK_ADMIN_KEY")
        .expect("the README exports the key");
    let made = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["-H", "content-type: application/json", "-d", hold])
        .arg(format!("http://127.0.0.1:{engine_port}/v1/reservations"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&made.stdout), "201", "the change");
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill")
        .args(["-s", "TERM", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut output);
    }
    assert!(
        output.contains("event: availability") && output.contains("\"location\":\"PAR-01\""),
        "README block at line {}: the stream did not show the change:\n{output}",
        block.line
    );
    output
}

#[test]
fn every_readme_block_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let dir = std::env::temp_dir().join(format!("omnistock-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("prelude.sh"), PRELUDE).expect("prelude");
    let mut servers = Servers {
        engine_port: free_port(),
        redis_port: free_port(),
        engine: None,
        redis_started: false,
        dir: dir.clone(),
    };
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    let mut transcript = String::new();
    let mut ran = BTreeMap::<&str, usize>::new();
    let blocks = blocks(&readme);
    for block in &blocks {
        let kind = match block.info.as_str() {
            "sh" => "sh",
            "sh server" => "server",
            "sh stream" => "stream",
            "sh manual" => "manual",
            "rust" => "rust",
            "html" => "html",
            other => panic!("README line {}: unknown block kind {other:?}", block.line),
        };
        *ran.entry(kind).or_default() += 1;
        match kind {
            "server" => {
                for command in commands(&block.text) {
                    servers.start(&command, block);
                }
            }
            "sh" => {
                let text = servers.rewrite(&block.text);
                let (output, next) = run_block(block, &text, &env, &dir);
                transcript.push_str(&output);
                env = next;
            }
            "stream" => {
                let text = servers.rewrite(&block.text);
                let output = run_stream(block, &text, &env, &dir, servers.engine_port);
                transcript.push_str(&output);
            }
            "rust" => {
                let example = std::fs::read_to_string(root.join("examples/quickstart.rs"))
                    .expect("examples/quickstart.rs");
                let from_use = example
                    .find("use omnistock")
                    .map(|at| &example[at..])
                    .expect("the example's use line");
                assert_eq!(
                    block.text, from_use,
                    "README line {}: the Rust snippet must be examples/quickstart.rs",
                    block.line
                );
            }
            "html" => check_markup(block, root),
            _ => {}
        }
    }
    servers.stop_engine();
    let found = |kind: &str| ran.get(kind).copied().unwrap_or(0);
    assert!(
        found("sh") >= 5 && found("server") >= 3 && found("stream") >= 1 && found("rust") == 1,
        "the README's blocks were found: {ran:?}"
    );
    // What the README promises its examples show.
    for promise in [
        "\"total_atf\"",
        "\"state\": \"held\"",
        "\"state\": \"committed\"",
        "\"shortfalls\"",
        "\"distance_km\"",
        "osk_",
        "store_code\tid\tavailability\tquantity",
        "x-feed-snapshot: incremental",
        "PAR-01\tSKU-00001\tin_stock\t4\t",
        "id,store_code,availability,quantity",
        "on_display_to_order",
        "event: availability",
        "access-control-allow-origin: https://shop.example",
        "\"availability\":\"in_stock\"",
        "204\n",
        "\"status\": \"ready\"",
    ] {
        assert!(
            transcript.contains(promise),
            "the README's examples never showed {promise:?}:\n{transcript}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `html` block loads `/sdk/omnistock.js` and uses the element's
/// observed attributes only.
fn check_markup(block: &Block, root: &Path) {
    let sdk = std::fs::read_to_string(root.join("web/sdk/omnistock.js")).expect("the SDK");
    assert!(
        block.text.contains("/sdk/omnistock.js") && block.text.contains("<omnistock-availability"),
        "README line {}: the markup loads the SDK and uses its element",
        block.line
    );
    let observed = sdk
        .split("observedAttributes = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the element's observed attributes");
    for attribute in [
        "sku",
        "group",
        "location",
        "key",
        "api",
        "channel",
        "quantities",
    ] {
        if block.text.contains(&format!(" {attribute}=\"")) {
            assert!(
                observed.contains(&format!("'{attribute}'")),
                "README line {}: the element does not observe `{attribute}`",
                block.line
            );
        }
    }
}
