//! The `omnistock serve` command line, run as the built binary: `--help`
//! shows every default and every environment variable, `--listen` takes a
//! host name, a missing admin key is refused unless explicitly allowed, and
//! `--demo` on a taken port fails before it loads anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use omnistock::server::config::{ServeArgs, flag_defaults};
use omnistock_testkit::help_sections as sections;

const ADMIN: &str = "cli-test-admin-key-0123456";

fn omnistock() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omnistock"));
    command.env_remove("OMNISTOCK_ADMIN_KEY");
    // No setting may leak in from the environment of the test run.
    for (name, _) in std::env::vars() {
        if name.starts_with("OMNISTOCK_") {
            command.env_remove(name);
        }
    }
    command
}

/// Waits for `child` to exit, at most `timeout`; kills it and panics beyond.
fn exit_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_help_shows_every_default_and_environment_variable() {
    let output = omnistock()
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).expect("utf-8");
    let sections = sections(&help);
    let section = |flag: &str| -> &str {
        sections
            .iter()
            .find(|(name, _)| name == flag)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("--{flag} is not in serve --help:\n{help}"))
    };
    // Every default the engine applies, as it applies it.
    let defaults = flag_defaults();
    assert!(defaults.len() >= 20, "{defaults:?}");
    for (id, value) in &defaults {
        let flag = id.replace('_', "-");
        let text = section(&flag);
        assert!(
            text.contains(&format!("[default: {value}]")),
            "--{flag} does not show its default {value:?}: {text}"
        );
    }
    // Every option that takes a value has a default shown.
    for (name, text) in &sections {
        if text.contains(&format!("--{name} <")) {
            assert!(
                text.contains("[default: "),
                "--{name} shows no default: {text}"
            );
        }
    }
    // Every environment variable a flag reads, next to its flag.
    let args = ServeArgs::augment_args(clap::Command::new("serve"));
    let mut env_vars = 0;
    for arg in args.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let env = env.to_string_lossy();
        assert!(
            section(long).contains(&format!("[env: {env}")),
            "--{long} does not name {env}"
        );
        env_vars += 1;
    }
    assert!(env_vars >= 6, "{env_vars} environment variables");
    // The one setting that is only an environment variable, and its escape hatch.
    assert!(help.contains("OMNISTOCK_ADMIN_KEY"), "{help}");
    assert!(
        section("allow-no-admin-key").contains("OMNISTOCK_ADMIN_KEY"),
        "{help}"
    );
}

/// Reads the engine's JSON log lines until "omnistock serving"; its address.
fn serving_address(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = receiver.recv_timeout(Duration::from_millis(100)) else {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("omnistock exited ({status}): {seen:#?}");
            }
            continue;
        };
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if parsed["fields"]["message"] == "omnistock serving" {
            return parsed["fields"]["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no addr in {line}"));
        }
        seen.push(line);
    }
    panic!("omnistock did not say it was serving: {seen:#?}");
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn listen_takes_a_host_name() {
    let mut child = omnistock()
        .args(["serve", "--listen", "localhost:0", "--log-format", "json"])
        .env("OMNISTOCK_ADMIN_KEY", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let addr = serving_address(&mut child);
    let response = get(addr, "/healthz");
    let _ = child.kill();
    let _ = child.wait();
    assert!(addr.ip().is_loopback(), "localhost resolved to {addr}");
    assert_ne!(addr.port(), 0);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn serve_refuses_to_start_without_an_admin_key_unless_allowed() {
    let mut child = omnistock()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let status = exit_within(&mut child, Duration::from_secs(20), "serve without a key");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("OMNISTOCK_ADMIN_KEY") && stderr.contains("--allow-no-admin-key"),
        "the refusal names the variable and the flag: {stderr}"
    );

    // With the flag it starts (and says no key can call the API).
    let mut child = omnistock()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-no-admin-key",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let addr = serving_address(&mut child);
    let response = get(addr, "/v1/availability/X");
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
}

#[test]
fn demo_on_a_taken_port_fails_before_loading_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port();
    let started = Instant::now();
    let mut child = omnistock()
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("OMNISTOCK_ADMIN_KEY", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let status = exit_within(&mut child, Duration::from_secs(60), "serve on a taken port");
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    drop(taken);
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("demo data loaded"),
        "the demo data was loaded before the port was tried ({elapsed:?}): {stderr}"
    );
    println!("--demo on a taken port failed after {elapsed:?}");
}

/// `serve --demo` ends its start by printing the console's URL and a
/// publishable key for the example storefront: both work as printed.
#[test]
fn demo_prints_the_console_and_a_publishable_key_that_work() {
    let mut child = omnistock()
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .env("OMNISTOCK_ADMIN_KEY", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let (mut console, mut key) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (console.is_none() || key.is_none()) && Instant::now() < deadline {
        let Ok(line) = receiver.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let word = |prefix: &str| {
            line.split_whitespace()
                .find(|w| w.starts_with(prefix))
                .map(str::to_owned)
        };
        if line.trim_start().starts_with("console:") {
            console = word("http://");
        }
        if line.trim_start().starts_with("publishable key:") {
            key = word("opk_");
        }
    }
    let (console, key) = match (console, key) {
        (Some(console), Some(key)) => (console, key),
        other => {
            let _ = child.kill();
            panic!("serve --demo printed no console URL and key: {other:?}");
        }
    };
    let url: reqwest::Url = console.parse().expect("a URL");
    let addr: SocketAddr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    )
    .parse()
    .expect("an address");
    let page = get(addr, url.path());
    let read = get(
        addr,
        &format!("/v1/availability/SKU-00002?group=paris&key={key}"),
    );
    // The example storefront's origin (python3 -m http.server ... 8000).
    let from_storefront = {
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            stream,
            "GET /v1/availability/SKU-00002?key={key} HTTP/1.1\r\nHost: localhost\r\n\
             Origin: http://localhost:8000\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        from_storefront.contains("access-control-allow-origin: http://localhost:8000"),
        "{from_storefront}"
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("content=\"true\""),
        "the console knows it is a demo"
    );
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(read.contains("\"availability\""), "{read}");
    assert!(!read.contains("on_hand"), "{read}");
}
