//! A short run of every scenario against an in-process engine on 127.0.0.1:
//! traffic flows, nothing fails, and the end-of-run audit passes. Closed and
//! open loop, and a small rate sweep. (Seconds each; no figure is asserted.)

use crate::support::{config, engine};
use loadtest::run::{RunReport, run};
use loadtest::scenario::Scenario;
use loadtest::stats::Op;
use loadtest::targets::Target;

fn assert_clean(report: &RunReport, ops: &[Op]) {
    let name = report.scenario.name();
    for phase in &report.phases {
        assert_eq!(
            phase.errors, 0,
            "{name} {}: {:?}",
            phase.label, phase.error_samples
        );
        assert!(phase.requests > 0, "{name} {}: no requests", phase.label);
    }
    for op in ops {
        let seen = report
            .phases
            .iter()
            .flat_map(|p| &p.ops)
            .any(|o| o.op == op.name() && o.ok > 0);
        assert!(seen, "{name}: no successful {}", op.name());
    }
    let audit = report.audit.as_ref().expect("audited");
    assert!(audit.passed, "{name}: {:?}", audit.findings);
    assert_eq!(audit.positions_checked, support_positions());
    assert!(report.passed);
}

fn support_positions() -> usize {
    let d = crate::support::data();
    d.skus * (d.stores + d.warehouses) + d.flash_rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_its_audit() {
    let engine = engine().await;
    let url = Some(format!("http://{}", engine.addr));
    let cases = [
        (
            Scenario::Browse,
            vec![
                Op::BrowsePosition,
                Op::BrowseSku,
                Op::BrowseBatch,
                Op::BrowseNearby,
            ],
        ),
        (
            Scenario::Checkout,
            vec![Op::CheckoutReserve, Op::CheckoutCommit, Op::CheckoutRelease],
        ),
        (
            Scenario::Pos,
            vec![Op::PosSale, Op::PosReturn, Op::PosReceipt],
        ),
        (Scenario::Feed, vec![Op::FeedFull, Op::FeedIncremental]),
        (Scenario::Import, vec![Op::Import]),
        (Scenario::Reserve, vec![Op::Reserve]),
        (Scenario::ReserveBatch, vec![Op::ReserveBatch]),
        (
            Scenario::Mixed,
            vec![Op::BrowsePosition, Op::CheckoutReserve],
        ),
    ];
    for (scenario, ops) in cases {
        let report = run(&config(Target::Omnistock, url.clone(), scenario))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
        assert_clean(&report, &ops);
        if scenario == Scenario::Import {
            let audit = report.audit.as_ref().expect("audited");
            assert!(
                audit.positions_counted_by_import > 0,
                "the import counted nothing"
            );
        }
    }
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_grants_exactly_n_per_round() {
    let engine = engine().await;
    let mut config = config(
        Target::Omnistock,
        Some(format!("http://{}", engine.addr)),
        Scenario::FlashSale,
    );
    config.duration = std::time::Duration::from_secs(30); // ends when every buyer was answered
    config.connections = 8;
    let report = run(&config).await.expect("runs");
    assert_clean(&report, &[Op::FlashReserve, Op::FlashCommit]);
    let rounds = &report.audit.as_ref().expect("audited").flash_rounds;
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        assert!(round.complete, "{round:?}");
        assert_eq!(round.granted, 20, "{round:?}");
        assert_eq!(round.answered, 100, "{round:?}");
    }
    let flash = report.phases[0]
        .ops
        .iter()
        .find(|o| o.op == "flash.reserve")
        .expect("flash op");
    assert_eq!((flash.ok, flash.refused), (40, 160));
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_and_a_rate_sweep_run_at_the_offered_rate() {
    let engine = engine().await;
    let url = Some(format!("http://{}", engine.addr));
    let mut open = config(Target::Omnistock, url.clone(), Scenario::Checkout);
    open.rate_per_s = Some(200.0);
    let report = run(&open).await.expect("runs");
    assert_clean(&report, &[Op::CheckoutReserve]);
    assert_eq!(report.phases[0].offered_rate_per_s, Some(200.0));
    assert_eq!(report.phases[0].mode, "open");
    let reserves = report.phases[0]
        .ops
        .iter()
        .find(|o| o.op == "checkout.reserve")
        .expect("op");
    // 200/s for 0.8 s: 160 carts scheduled, whatever the machine (the schedule, not the speed).
    assert!(
        (150..=161).contains(&reserves.requests),
        "{}",
        reserves.requests
    );

    let mut sweep = config(Target::Omnistock, url, Scenario::Reserve);
    sweep.sweep_percent = vec![25.0, 50.0];
    let report = run(&sweep).await.expect("runs");
    assert_clean(&report, &[Op::Reserve]);
    let labels: Vec<&str> = report.phases.iter().map(|p| p.mode.as_str()).collect();
    assert_eq!(labels, ["closed", "open", "open"]);
    // The sweep's maximum is in the open loop's unit: scenario iterations/s.
    let max = report.phases[0].iterations_per_s;
    let offered = report.phases[2].offered_rate_per_s.expect("open");
    assert!((offered - max * 0.5).abs() < 1.0, "{offered} vs {max}");
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_and_the_ceiling_run_the_reservation_scenarios() {
    for (target, scenarios) in [
        (
            Target::RedisLua,
            vec![
                Scenario::Reserve,
                Scenario::ReserveBatch,
                Scenario::Checkout,
                Scenario::FlashSale,
            ],
        ),
        (
            Target::Noop,
            vec![Scenario::Reserve, Scenario::ReserveBatch],
        ),
    ] {
        for scenario in scenarios {
            let mut config = config(target, None, scenario);
            if scenario == Scenario::FlashSale {
                config.duration = std::time::Duration::from_secs(30);
            }
            let report = run(&config)
                .await
                .unwrap_or_else(|e| panic!("{} {}: {e}", target.name(), scenario.name()));
            for phase in &report.phases {
                assert_eq!(
                    phase.errors,
                    0,
                    "{} {}: {:?}",
                    target.name(),
                    scenario.name(),
                    phase.error_samples
                );
                assert!(phase.ok > 0);
            }
            assert!(
                report.passed,
                "{} {}: {:?}",
                target.name(),
                scenario.name(),
                report.audit
            );
            assert_eq!(report.audit.is_some(), target == Target::RedisLua);
            if scenario == Scenario::FlashSale {
                let rounds = &report.audit.as_ref().expect("audited").flash_rounds;
                assert!(
                    rounds.iter().all(|r| r.complete && r.granted == 20),
                    "{rounds:?}"
                );
            }
        }
    }
    // Scenarios the baseline does not implement are refused up front.
    let refused = run(&config(Target::Noop, None, Scenario::Browse)).await;
    assert!(refused.is_err());
}
