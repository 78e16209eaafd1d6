//! The audit catches a deliberately inconsistent state: after a clean
//! checkout run, a sale and a hold the tool does not know about are made
//! behind its back, and the audit must fail with the right findings.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{ADMIN, engine};
use hyper::Method;
use hyper::header::HeaderValue;
use loadtest::audit::audit;
use loadtest::book::Book;
use loadtest::dataset::{DataSet, unix_ms};
use loadtest::driver::{Mode, drive};
use loadtest::http_client::{Call, Conn, Endpoints, bearer};
use loadtest::scenario::{Ctx, Mix, Scenario, ScenarioWorker, Weights};
use loadtest::seed::seed;
use loadtest::stats::{Progress, Recorder};
use loadtest::targets::Target;

/// Seeds the data set and builds the shared context of a checkout and POS blend.
async fn seeded_ctx(conn: &mut Conn, nodes: &Endpoints, admin: &HeaderValue) -> Arc<Ctx> {
    let data = DataSet::new(&crate::support::data());
    let seeded = seed(conn, nodes, &data, Target::Omnistock, admin)
        .await
        .expect("seeded");
    let book = Book::new(&data, unix_ms());
    Arc::new(Ctx {
        mix: Mix::new(
            Scenario::Mixed,
            &"checkout=1,pos=1".parse::<Weights>().expect("weights"),
        ),
        data,
        book,
        target: Target::Omnistock,
        admin: admin.clone(),
        pos_keys: seeded.pos_keys,
        hold_ttl_s: 1,
        batch_lines: 10,
        import_rows: 50,
        feed_incremental_per_full: 3,
    })
}

/// Behind the tool's back: one unit sold at one position, two held at another.
async fn sell_and_hold_unbooked(conn: &mut Conn, ctx: &Ctx, admin: &HeaderValue) {
    let (sku, location) = ctx.data.codes(ctx.data.position(0, 0));
    let sale = format!(
        r#"{{"channel":"pos","lines":[{{"sku":"{sku}","location":"{location}","qty":1}}]}}"#
    );
    let reply = conn
        .call(Call::json(Method::POST, "/v1/sales", Some(admin), sale))
        .await
        .expect("sale");
    assert!(reply.status.is_success(), "{:?}", reply.status);
    let (sku, location) = ctx.data.codes(ctx.data.position(1, 0));
    let hold = format!(
        r#"{{"channel":"web","lines":[{{"sku":"{sku}","location":"{location}","qty":2}}],"ttl_seconds":600}}"#
    );
    let reply = conn
        .call(Call::json(
            Method::POST,
            "/v1/reservations",
            Some(admin),
            hold,
        ))
        .await
        .expect("hold");
    assert_eq!(reply.status.as_u16(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_fails_on_units_and_holds_the_run_did_not_make() {
    let engine = engine().await;
    let nodes = Endpoints::parse(&format!("http://{}", engine.addr))
        .await
        .expect("endpoint");
    let endpoint = nodes.first().clone();
    let admin = bearer(ADMIN).expect("key");
    let mut conn = Conn::new(endpoint.clone(), Duration::from_secs(10));
    let ctx = seeded_ctx(&mut conn, &nodes, &admin).await;
    let progress = Arc::new(Progress::default());
    let workers: Vec<ScenarioWorker> = (0..4)
        .map(|k| {
            ScenarioWorker::new(
                Conn::new(endpoint.clone(), Duration::from_secs(10)),
                k,
                Arc::clone(&ctx),
                Recorder::new(Arc::clone(&progress)),
            )
        })
        .collect();
    drive(workers, Mode::Closed, Duration::from_millis(500), None).await;

    let clean = audit(&mut conn, &ctx.data, &ctx.book, &admin)
        .await
        .expect("audit");
    assert!(clean.passed, "a clean run passes: {:?}", clean.findings);

    sell_and_hold_unbooked(&mut conn, &ctx, &admin).await;
    let dirty = audit(&mut conn, &ctx.data, &ctx.book, &admin)
        .await
        .expect("audit");
    assert!(!dirty.passed);
    assert_eq!(dirty.findings_total, 2, "{:?}", dirty.findings);
    let found = |text: &str| dirty.findings.iter().any(|f| f.contains(text));
    assert!(found("initial/counted + receipts"), "{:?}", dirty.findings);
    assert!(found("reserved 2 but no hold"), "{:?}", dirty.findings);
    // The engine itself is consistent: only the tool's book disagrees.
    assert_eq!(dirty.server["ok"], serde_json::Value::Bool(true));
    engine.shutdown().await.expect("shutdown");
}
