//! Shared by the tests: an in-process omnistock on 127.0.0.1:0 and a small,
//! fast run configuration. (Each module uses a part of it.)
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loadtest::dataset::DataSetConfig;
use loadtest::rng::Skew;
use loadtest::run::RunConfig;
use loadtest::scenario::{Scenario, Weights};
use loadtest::targets::{SpawnOptions, Target};
use omnistock::ledger::{Ledger, LedgerConfig};
use omnistock::server::config::ServeConfig;
use omnistock::server::{Running, start};

pub const ADMIN: &str = "loadtest-test-admin-key-0123456789";

pub async fn engine() -> Running {
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_key: Some(ADMIN.into()),
        rate_limit_per_second: 0,
        ..ServeConfig::default()
    };
    start(&config, Arc::new(Ledger::new(LedgerConfig::default())))
        .await
        .expect("engine starts")
}

pub fn data() -> DataSetConfig {
    DataSetConfig {
        skus: 60,
        stores: 4,
        warehouses: 1,
        initial_on_hand: 40,
        skew: Skew::Zipf(1.0),
        flash_units: 20,
        flash_rounds: 2,
        flash_buyers_per_unit: 5,
        seed: 7,
    }
}

pub fn log_dir() -> PathBuf {
    std::env::temp_dir().join(format!("loadtest-tests-{}", std::process::id()))
}

pub fn config(target: Target, url: Option<String>, scenario: Scenario) -> RunConfig {
    RunConfig {
        target,
        url,
        admin_key: Some(ADMIN.into()),
        scenario,
        weights: Weights::default(),
        connections: 4,
        duration: Duration::from_millis(800),
        warmup: Duration::ZERO,
        rate_per_s: None,
        sweep_percent: Vec::new(),
        max_rate_per_s: None,
        data: data(),
        hold_ttl_s: 1,
        batch_lines: 10,
        import_rows: 50,
        feed_incremental_per_full: 3,
        request_timeout: Duration::from_secs(10),
        spawn: SpawnOptions {
            pin_core: None,
            omnistock_bin: None,
            redis_server: "redis-server".into(),
            loadtest_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_loadtest"))),
            log_dir: log_dir(),
        },
        progress: false,
    }
}
