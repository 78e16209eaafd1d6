//! Graceful shutdown of the real binary: on SIGTERM it stops accepting
//! connections, finishes the request in flight, then exits 0.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "shutdown-test-admin-key-123";

struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One request on its own connection; returns the whole response.
fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_omnistock"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OMNISTOCK_ADMIN_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut engine = Engine(child);
    let started = Instant::now();
    while request(port, "GET", "/readyz", "").map_or(true, |r| !r.starts_with("HTTP/1.1 200")) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the engine never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let created = request(
        port,
        "PUT",
        "/v1/locations/S1",
        r#"{"kind":"store","name":"Paris"}"#,
    )
    .expect("location");
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");

    // A streamed import, half sent.
    let rows = "{\"sku\":\"A\",\"location\":\"S1\",\"on_hand\":3}\n{\"sku\":\"B\",\"location\":\"S1\",\"on_hand\":4}\n";
    let (first, second) = rows.split_at(rows.len() / 2);
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        in_flight,
        "POST /v1/stock/import HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        rows.len()
    )
    .expect("first half");
    std::thread::sleep(Duration::from_millis(200));

    let pid = engine.0.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections after SIGTERM"
    );
    assert!(
        engine.0.try_wait().expect("status").is_none(),
        "still finishing the request in flight"
    );

    in_flight.write_all(second.as_bytes()).expect("second half");
    let mut response = String::new();
    in_flight.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"applied\":2"), "{response}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = engine.0.try_wait().expect("status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not exit after its last request"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
