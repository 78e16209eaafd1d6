//! `loadtest flood`: per-key isolation (RELIABILITY.md, abuse resistance).
//! An engine with every key limited to twice the good client's rate; the
//! good client (`run --scenario browse`, open loop, the admin key) alone,
//! then while another key floods reservations with `loadtest fixed` (closed
//! loop, far beyond its limit, answered 429). Engine on core 0, both
//! clients on core 1.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, FloodArgs};
use crate::http_client::{Call, Conn, Endpoint, bearer};
use crate::run::{RunReport, run};
use crate::targets::{self, ServerSpec, SpawnOptions, Spawned};

/// Every key's limit and burst for a good client at `rate` per second: twice
/// its rate, with a burst of 50 ms of that.
pub fn limits(rate: f64) -> (u64, u64) {
    let limit = (rate * 2.0).round().max(1.0) as u64;
    (limit, (limit / 20).max(1))
}

async fn start_engine(args: &FloodArgs, pin: bool) -> Result<Spawned, String> {
    let options = SpawnOptions {
        pin_core: pin.then_some(0),
        omnistock_bin: args.omnistock_bin.clone(),
        redis_server: "redis-server".into(),
        loadtest_bin: None,
        log_dir: args.out_dir.join("logs"),
    };
    let program = targets::omnistock_bin(&options)?;
    let port = targets::free_port()?;
    let key = format!("loadtest-flood-admin-{port}-0123456789");
    let (limit, burst) = limits(args.good_iterations_per_s);
    let mut serve: Vec<String> = ["serve", "--listen", &format!("127.0.0.1:{port}")]
        .into_iter()
        .map(String::from)
        .collect();
    serve.extend(["--rate-limit-per-second".into(), limit.to_string()]);
    serve.extend(["--rate-limit-burst".into(), burst.to_string()]);
    serve.extend(args.serve_args.iter().cloned());
    let spec = ServerSpec {
        name: "omnistock-flood",
        program: &program,
        args: serve,
        env: vec![("OMNISTOCK_ADMIN_KEY", key.clone())],
        port,
        ready_path: "/readyz",
        admin_key: key,
    };
    targets::spawn_server(spec, &options).await
}

/// A key with the `reserve` scope for the flooding client.
async fn flood_key(conn: &mut Conn, admin: &str) -> Result<String, String> {
    let admin = bearer(admin)?;
    let body = r#"{"name": "flooding bot", "scopes": ["reserve"]}"#.to_string();
    let reply = conn
        .call(Call::json(
            hyper::Method::POST,
            "/v1/keys",
            Some(&admin),
            body,
        ))
        .await
        .map_err(|e| format!("creating the flood key: {e}"))?;
    let created: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("creating the flood key: {} {e}", reply.status))?;
    created["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("creating the flood key: {created}"))
}

/// The good client: `loadtest run` in this process, with `run`'s defaults.
async fn good_client(args: &FloodArgs, engine: &Spawned, label: &str) -> Result<RunReport, String> {
    let out_dir: PathBuf = args.out_dir.join(format!("flood-{label}"));
    let argv = [
        "loadtest".to_string(),
        "run".into(),
        "--url".into(),
        engine.url.clone(),
        "--admin-key".into(),
        engine.admin_key.clone(),
        "--scenario".into(),
        "browse".into(),
        "--iterations-per-s".into(),
        args.good_iterations_per_s.to_string(),
        "--duration-s".into(),
        args.duration_s.to_string(),
        "--warmup-s".into(),
        "0".into(),
        "--no-progress".into(),
        "--out-dir".into(),
        out_dir.display().to_string(),
    ];
    let Command::Run(run_args) = Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    else {
        return Err("not a run".into());
    };
    run(&run_args.config()?).await
}

/// One line per good-client run.
pub fn good_line(label: &str, report: &RunReport) -> String {
    let audit = match &report.audit {
        Some(a) if a.passed => "audit passed",
        Some(_) => "audit FAILED",
        None => "no audit",
    };
    match report.phases.last() {
        Some(p) => format!(
            "good client {label}: {:.0} page views/s ({:.0} req/s), p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms, {} errors, {audit}",
            p.iterations_per_s, p.rate_per_s, p.p50_ms, p.p99_ms, p.p999_ms, p.errors
        ),
        None => format!("good client {label}: no phase"),
    }
}

/// `loadtest fixed` flooding reservations under `key`, in its own process.
fn flood_command(
    args: &FloodArgs,
    url: &str,
    key: &str,
    pin: bool,
) -> Result<tokio::process::Command, String> {
    let mut command = crate::compare::loadtest_command(pin)?;
    command
        .args(["fixed", "--url", url, "--request", "reserve"])
        .args(["--sku", "FLOOD", "--location", "FLOOD"])
        .args(["--duration-s", &(args.duration_s + 8.0).to_string()])
        .args(["--connections", &args.flood_connections.to_string()])
        .env("OMNISTOCK_ADMIN_KEY", key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    Ok(command)
}

/// The engine's 429 counters from /metrics.
async fn refused_counters(conn: &mut Conn, admin: &str) -> Vec<String> {
    let Ok(key) = bearer(admin) else {
        return Vec::new();
    };
    let Ok(reply) = conn.call(Call::get("/metrics", Some(&key))).await else {
        return Vec::new();
    };
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter(|l| l.starts_with("omnistock_http_requests_total") && l.contains("status=\"429\""))
        .take(3)
        .map(str::to_owned)
        .collect()
}

/// Runs the comparison, printing as it goes; true if both good runs passed.
pub async fn flood(args: &FloodArgs, pin: bool) -> Result<bool, String> {
    let mut engine = start_engine(args, pin).await?;
    let mut conn = Conn::new(Endpoint::parse(&engine.url).await?, Duration::from_secs(10));
    let key = flood_key(&mut conn, &engine.admin_key).await?;
    let (limit, burst) = limits(args.good_iterations_per_s);
    println!(
        "every key limited to {limit}/s (burst {burst}); {}",
        if pin {
            "engine on core 0, clients on core 1"
        } else {
            "not pinned"
        }
    );
    let alone = good_client(args, &engine, "alone").await?;
    println!("{}", good_line("alone", &alone));
    let flood = flood_command(args, &engine.url, &key, pin)?
        .spawn()
        .map_err(|e| format!("cannot start the flood: {e}"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flooded = good_client(args, &engine, "flooded").await?;
    println!("{}", good_line("flooded", &flooded));
    let output = flood.wait_with_output().await.map_err(|e| e.to_string())?;
    println!(
        "flood (reservations, {} connections): {}",
        args.flood_connections,
        String::from_utf8_lossy(&output.stdout).trim()
    );
    for line in refused_counters(&mut conn, &engine.admin_key).await {
        println!("{line}");
    }
    engine.check_alive()?;
    Ok(alone.passed && flooded.passed)
}
