//! A headless Chromium driven over the Chrome DevTools Protocol (CDP), for
//! the tests that load the engine's pages in a real browser
//! (`tests/it/browser.rs`).
//!
//! Hand-written on purpose: the CDP crates (chromiumoxide, headless_chrome)
//! generate the whole protocol, hundreds of domains of types, and would add a
//! large build to every CI run on 2 cores, where these tests need a handful
//! of methods: here, a websocket, a map of pending command ids and a log of
//! the events received.
//!
//! Chromium runs headless in a process group of its own, with a profile in a
//! fresh temporary directory and `--remote-debugging-port=0`; the test reads
//! the `DevTools listening on ws://HOST:PORT/...` line of its stderr, finds
//! its tab in `http://HOST:PORT/json/list` and connects to the tab's own
//! websocket. Dropping the `Browser` kills the group and removes the
//! profile. A missing Chromium fails the test with how to install it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Chromium's flags: `--no-sandbox` to run as root (CI), no GPU.
const FLAGS: &str = "--headless=new --no-sandbox --disable-gpu --no-first-run \
    --disable-dev-shm-usage --remote-debugging-port=0";
/// How long one protocol command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
type Events = Arc<Mutex<Vec<(String, Value)>>>;

/// One Chromium, connected to its tab.
pub struct Browser {
    process: Process,
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    pending: Pending,
    /// Every event received, as (method, params), in order.
    events: Events,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

/// The Chromium process group and its profile directory: gone on drop.
struct Process(Child, PathBuf);

impl Drop for Process {
    fn drop(&mut self) {
        // The whole group: the browser, its zygotes and renderers.
        let group = format!("-{}", self.0.id());
        let mut kill = Command::new("kill");
        let _ = kill
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
        // A child may still be closing a file of the profile for a moment.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.1).is_ok() || !self.1.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Browser {
    /// Starts Chromium and connects to its tab: Page, Runtime and Log
    /// enabled, a 1280x900 viewport.
    pub async fn launch() -> Browser {
        static LAUNCHED: AtomicU64 = AtomicU64::new(0);
        let n = LAUNCHED.fetch_add(1, Ordering::Relaxed);
        let profile = format!("omnistock-chromium-{}-{n}", std::process::id());
        let profile = std::env::temp_dir().join(profile);
        let child = Command::new("chromium")
            .args(FLAGS.split_whitespace())
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `chromium` ({e}): these tests drive a headless Chromium; install it (`apt-get install chromium`, as scripts/test.sh does) and rerun"));
        let mut process = Process(child, profile);
        let tab = tab_endpoint(&devtools_endpoint(&mut process.0).await).await;
        let (socket, _) = tokio_tungstenite::connect_async(tab.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Chromium's tab at {tab}: {e}"));
        let (sink, stream) = socket.split();
        let (pending, events): (Pending, Events) = Default::default();
        let reader = tokio::spawn(read(stream, pending.clone(), events.clone()));
        let (sink, next_id) = (tokio::sync::Mutex::new(sink), AtomicU64::new(1));
        let browser = Browser {
            process,
            sink,
            pending,
            events,
            next_id,
            reader,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        let viewport =
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false});
        browser
            .call("Emulation.setDeviceMetricsOverride", viewport)
            .await;
        browser
    }

    /// Sends one command to the tab and returns its result, e.g.
    /// `call("Input.insertText", json!({"text": "x"}))`; a protocol error or
    /// no answer in time fails the test.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        let (answer, answered) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, answer);
        let sent = self.sink.lock().await.send(Message::text(message)).await;
        sent.unwrap_or_else(|e| panic!("{method}: the CDP connection: {e}"));
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, answered).await;
        let reply = reply
            .unwrap_or_else(|_| panic!("{method}: no answer from Chromium in {COMMAND_TIMEOUT:?}"))
            .unwrap_or_else(|_| panic!("{method}: the CDP connection closed"));
        assert!(reply.get("error").is_none(), "{method}: {}", reply["error"]);
        reply["result"].clone()
    }

    /// Opens `url` in the tab (returns once the navigation is committed).
    pub async fn navigate(&self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url})).await;
        let error = &result["errorText"];
        assert!(error.is_null(), "navigating to {url}: {error}");
    }

    /// Evaluates `expression` in the page (a promise is awaited) and returns
    /// its value as JSON, or the exception it threw.
    pub async fn try_evaluate(&self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params).await;
        match result.get("exceptionDetails") {
            Some(details) => Err(exception_text(details)),
            None => Ok(result["result"].get("value").cloned().unwrap_or_default()),
        }
    }

    /// As `try_evaluate`; an exception fails the test.
    pub async fn evaluate(&self, expression: &str) -> Value {
        let value = self.try_evaluate(expression).await;
        value.unwrap_or_else(|e| panic!("`{expression}` threw: {e}"))
    }

    /// Polls `expression` every 50 ms until it is truthy (an exception
    /// counts as not yet) and returns its value; fails after `timeout`.
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> Value {
        // The page judges truthiness: a truthy value comes back as `[value]`.
        let poll = format!("Promise.resolve({expression}).then((v) => (v ? [v] : null))");
        let started = Instant::now();
        loop {
            let last = self.try_evaluate(&poll).await;
            if let Ok(Value::Array(value)) = &last {
                return value[0].clone();
            }
            if started.elapsed() > timeout {
                let errors = self.errors();
                panic!(
                    "waited {timeout:?} for `{expression}`; last: {last:?}; errors: {errors:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the viewport to `path` (its directory is created).
    pub async fn screenshot(&self, path: &Path) {
        let shot = json!({"format": "png"});
        let shot = self.call("Page.captureScreenshot", shot).await;
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD.decode(data);
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("a directory");
        std::fs::write(path, png.expect("base64 PNG")).expect("screenshot written");
    }

    /// What the page reported as errors: `console.error` calls, uncaught
    /// exceptions, and browser log entries of level error (failed loads,
    /// CORS refusals).
    pub fn errors(&self) -> Vec<String> {
        let events = self.events.lock().expect("events");
        let errors = events.iter().filter_map(|(method, p)| error_of(method, p));
        errors.collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort(); // then `process` kills Chromium
    }
}

/// Reads Chromium's stderr until its `DevTools listening on ws://...` line,
/// then keeps draining it (a full pipe would block the browser).
async fn devtools_endpoint(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("piped stderr");
    let (found, endpoint) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = found.send(url.trim().to_owned());
            }
        }
    });
    let within = Duration::from_secs(20);
    let waited = tokio::task::spawn_blocking(move || endpoint.recv_timeout(within)).await;
    let exit = child.try_wait();
    let endpoint = waited.expect("the stderr reader");
    endpoint
        .unwrap_or_else(|e| panic!("Chromium printed no DevTools endpoint ({e}); exit: {exit:?}"))
}

/// The websocket of the tab (`webSocketDebuggerUrl` of its entry in
/// `/json/list`), once Chromium has opened it.
async fn tab_endpoint(browser_endpoint: &str) -> String {
    let address = browser_endpoint
        .trim_start_matches("ws://")
        .split('/')
        .next();
    let list = format!("http://{}/json/list", address.expect("HOST:PORT"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(answer) = reqwest::get(&list).await
            && let Ok(Value::Array(targets)) = answer.json::<Value>().await
            && let Some(tab) = targets.iter().find(|t| t["type"] == "page")
        {
            return tab["webSocketDebuggerUrl"]
                .as_str()
                .expect("a URL")
                .to_owned();
        }
        assert!(Instant::now() < deadline, "Chromium opened no tab ({list})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the websocket: hands each reply to its pending command, and logs
/// every event.
async fn read(mut stream: SplitStream<Socket>, pending: Pending, events: Events) {
    while let Some(Ok(message)) = stream.next().await {
        let Ok(message) = serde_json::from_slice::<Value>(&message.into_data()) else {
            continue;
        };
        if let Some(id) = message["id"].as_u64() {
            if let Some(answer) = pending.lock().expect("pending").remove(&id) {
                let _ = answer.send(message);
            }
        } else if let Some(method) = message["method"].as_str() {
            let event = (method.to_owned(), message["params"].clone());
            events.lock().expect("events").push(event);
        }
    }
    pending.lock().expect("pending").clear(); // the waiting commands fail at once
}

/// The error an event reports, if it reports one.
fn error_of(method: &str, p: &Value) -> Option<String> {
    let describe = |arg: &Value| arg.get("value").unwrap_or(&arg["description"]).to_string();
    let args = p["args"].as_array().into_iter().flatten().map(describe);
    let entry = &p["entry"];
    match method {
        "Runtime.consoleAPICalled" if p["type"] == "error" => Some(format!(
            "console.error: {}",
            args.collect::<Vec<_>>().join(" ")
        )),
        "Runtime.exceptionThrown" => Some(exception_text(&p["exceptionDetails"])),
        "Log.entryAdded" if entry["level"] == "error" => {
            Some(format!("log: {} ({})", entry["text"], entry["url"]))
        }
        _ => None,
    }
}

/// An exception's description (with its stack), else the details' text.
fn exception_text(details: &Value) -> String {
    let description = details["exception"]["description"].as_str();
    let text = description.or(details["text"].as_str());
    format!("exception: {}", text.unwrap_or("?"))
}
