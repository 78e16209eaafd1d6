//! The engine's pages in a real browser: a headless Chromium
//! (`support::browser`) loads the example storefront
//! (`examples/storefront/index.html`, served from another origin by a small
//! server in the test, as a shop would serve it) and the operator console
//! (`/console`), while the test changes stock over the API and reads what
//! the page shows.
//!
//! Each test holds `support::serial()`: a Chromium loads both cores while it
//! starts, and the storefront's test measures how soon a reservation
//! reaches the page. Each is bounded (`within`), and drops its browser
//! (killed, profile removed) and servers whatever happens. Screenshots go to
//! `target/browser/` (the README shows them).

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use omnistock::server::config::ServeConfig;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::browser::Browser;
use crate::support::engine::{Api, Running, base_url, start_engine, unlimited};
use crate::support::{ADMIN, serial};

const SKU: &str = "SKU-1";
const GROUP: &str = "paris";
/// What a page gets to show a state the test waits for.
const SHOWN: Duration = Duration::from_secs(10);
/// The issue's requirement: a reservation is on the page within a second.
const LIVE: Duration = Duration::from_secs(1);

/// Runs a test's body with a hard time limit.
async fn within<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::time::timeout(limit, body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"));
}

/// The storefront page served at `/` of its own origin (`http://127.0.0.1:PORT`).
struct Shop {
    origin: String,
    server: tokio::task::JoinHandle<()>,
}

impl Shop {
    async fn start() -> Shop {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/storefront/index.html"
        );
        let page = std::fs::read_to_string(path).expect("the storefront page");
        let app = Router::new().route("/", get(move || async move { Html(page) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let origin = format!("http://{}", listener.local_addr().expect("its address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the shop serves");
        });
        Shop { origin, server }
    }

    /// The storefront's URL for `SKU` in `GROUP`, reading from `api`.
    fn page(&self, api: &str, key: &str) -> String {
        format!(
            "{}/?api={api}&key={key}&sku={SKU}&group={GROUP}",
            self.origin
        )
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An engine with three Paris stores in group `paris`: `SKU` has 6 units
/// at the Opéra, 2 in the Marais and none at Bastille (8 in all).
async fn stocked_engine() -> (Running, Api) {
    let running = start_engine(unlimited(), ADMIN).await;
    let admin = Api::of(&running, ADMIN);
    let stores = [
        ("PAR-OPERA", "Paris Opéra", 48.871, 2.332, 6),
        ("PAR-MARAIS", "Paris Marais", 48.859, 2.362, 2),
        ("PAR-BASTILLE", "Paris Bastille", 48.853, 2.369, 0),
    ];
    for (code, name, lat, lon, _) in stores {
        let body = json!({"kind": "store", "name": name, "lat": lat, "lon": lon});
        let path = format!("/v1/locations/{code}");
        admin.ok(Method::PUT, &path, body).await;
    }
    let codes: Vec<&str> = stores.iter().map(|s| s.0).collect();
    let path = format!("/v1/groups/{GROUP}");
    admin
        .ok(Method::PUT, &path, json!({ "locations": codes }))
        .await;
    for (code, _, _, _, units) in stores {
        let path = format!("/v1/stock/{code}/{SKU}");
        admin
            .ok(Method::PUT, &path, json!({"on_hand": units}))
            .await;
    }
    (running, admin)
}

/// A publishable key of the `web` channel with exact quantities, for pages
/// of `origin` only.
async fn publishable_key(admin: &Api, origin: &str) -> String {
    let body = json!({"name": "storefront", "kind": "publishable", "channel": "web",
        "origins": [origin], "quantities": "exact"});
    let (status, key) = admin.call(Method::POST, "/v1/keys", Some(body), None).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key["key"].as_str().expect("the key").to_owned()
}

/// Holds `qty` units of `SKU` at `location` for the web channel.
async fn reserve(admin: &Api, location: &str, qty: u32, idempotency_key: &str) {
    let body = json!({"channel": "web", "lines": [{"sku": SKU, "location": location, "qty": qty}],
        "ttl_seconds": 600});
    let path = "/v1/reservations";
    let (status, held) = admin
        .call(Method::POST, path, Some(body), Some(idempotency_key))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
}

fn unix_ms() -> f64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.expect("after 1970").as_secs_f64() * 1000.0
}

/// Where the screenshots go (the README shows them).
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/browser")
        .join(name)
}

/// Watches `#availability` from inside the page: the first render that
/// changes its text or `data-atf` is stamped with the page's `Date.now()`.
const WATCH_WIDGET: &str = r#"(() => {
  const w = document.getElementById('availability');
  const shown = () => `${w.textContent}|${w.dataset.atf}`;
  const before = shown();
  window.widgetChange = null;
  const observer = new MutationObserver(() => {
    if (shown() === before) return;
    window.widgetChange = { at: Date.now(), text: w.textContent, atf: w.dataset.atf ?? null };
    observer.disconnect();
  });
  observer.observe(w, { attributes: true, childList: true, characterData: true, subtree: true });
  return true;
})()"#;

/// Reserves, and returns what the widget then showed and how long after the
/// request was sent (and after it was answered) the page showed it.
async fn reserve_and_watch(
    browser: &Browser,
    admin: &Api,
    location: &str,
    qty: u32,
    idempotency_key: &str,
) -> (Value, f64, f64) {
    browser.evaluate(WATCH_WIDGET).await;
    let sent = unix_ms();
    reserve(admin, location, qty, idempotency_key).await;
    let answered = unix_ms();
    let change = browser.wait_for("window.widgetChange", SHOWN).await;
    let at = change["at"].as_f64().expect("a time");
    (change, at - sent, at - answered)
}

/// The storefront's store list as `CODE:ATF` in the page's order.
const STORE_LIST: &str = "[...document.querySelectorAll('#stores > li[data-location]')]
    .map((li) => `${li.dataset.location}:${li.dataset.atf}`).join(',')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_on_another_origin_shows_stock_and_follows_a_reservation() {
    let _serial = serial().await;
    within(Duration::from_secs(30), async {
        let (engine, admin) = stocked_engine().await;
        let shop = Shop::start().await;
        let key = publishable_key(&admin, &shop.origin).await;
        let browser = Browser::launch().await;
        browser.navigate(&shop.page(&base_url(&engine), &key)).await;

        let shown = "(() => { const w = document.getElementById('availability');
            return w.dataset.atf === '8' && w.textContent; })()";
        let text = browser.wait_for(shown, SHOWN).await;
        assert_eq!(text, "In stock at 2 stores near you");
        let stores = "PAR-OPERA:6,PAR-MARAIS:2,PAR-BASTILLE:0";
        let listed = format!("{STORE_LIST} === '{stores}'");
        browser.wait_for(&listed, SHOWN).await;
        // Names come from one read; the stream's events carry codes only.
        let named = "document.getElementById('stores').textContent.includes('Paris Opéra')";
        browser.wait_for(named, SHOWN).await;
        let sdk = browser.evaluate("document.documentElement.dataset.sdk").await;
        assert_eq!(sdk, "ready");
        browser.screenshot(&screenshot_path("storefront.png")).await;

        // All six at the Opéra: two left, in the Marais.
        let (change, sent, answered) =
            reserve_and_watch(&browser, &admin, "PAR-OPERA", 6, "shop-1").await;
        println!("storefront: a reservation was on the page {sent:.0} ms after it was sent ({answered:.0} ms after it was answered)");
        assert_eq!(change["text"], "Only 2 left", "{change}");
        assert_eq!(change["atf"], "2", "{change}");
        assert!(sent < LIVE.as_secs_f64() * 1000.0, "{sent:.0} ms to show a reservation");
        // In stock first, then by code.
        let stores = "PAR-MARAIS:2,PAR-BASTILLE:0,PAR-OPERA:0";
        browser.wait_for(&format!("{STORE_LIST} === '{stores}'"), SHOWN).await;

        // The last two: sold out, and the button says so.
        let (change, sent, answered) =
            reserve_and_watch(&browser, &admin, "PAR-MARAIS", 2, "shop-2").await;
        println!("storefront: the last units' reservation was on the page {sent:.0} ms after it was sent ({answered:.0} ms after it was answered)");
        assert_eq!(change["text"], "Out of stock", "{change}");
        assert!(sent < LIVE.as_secs_f64() * 1000.0, "{sent:.0} ms to show a reservation");
        let availability = "document.getElementById('availability').dataset.availability";
        assert_eq!(browser.evaluate(availability).await, "out_of_stock");
        let sold_out = "(() => { const b = document.getElementById('buy');
            return b.disabled && b.textContent; })()";
        let button = browser.wait_for(sold_out, SHOWN).await;
        assert_eq!(button, "Sold out in these stores");

        let error_box = browser.evaluate("document.getElementById('error').hidden").await;
        assert_eq!(error_box, true, "the page shows an error");
        let errors = browser.errors();
        assert!(errors.is_empty(), "the storefront logged errors: {errors:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_not_on_the_keys_list_is_refused() {
    let _serial = serial().await;
    within(Duration::from_secs(30), async {
        let (engine, admin) = stocked_engine().await;
        let base = base_url(&engine);
        let listed = Shop::start().await;
        let elsewhere = Shop::start().await;
        let key = publishable_key(&admin, &listed.origin).await;
        let url = format!("{base}/v1/availability/{SKU}?key={key}&group={GROUP}");
        // The engine's answer to that origin, as a browser would ask.
        let refused = Client::new()
            .get(&url)
            .header("Origin", &elsewhere.origin)
            .send()
            .await
            .expect("answered");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );

        let browser = Browser::launch().await;
        browser.navigate(&elsewhere.page(&base, &key)).await;
        let failed = "(() => { const w = document.getElementById('availability');
            return w.hasAttribute('data-error') && !document.getElementById('error').hidden
                && w.textContent; })()";
        let text = browser.wait_for(failed, SHOWN).await;
        assert_eq!(text, "Stock information unavailable");
        let shown = browser.evaluate(STORE_LIST).await;
        assert_eq!(shown, "", "the page lists stock it may not read");
        let availability = "document.getElementById('availability').dataset.availability ?? null";
        assert_eq!(browser.evaluate(availability).await, Value::Null);

        // The page's own fetch of that URL: the browser refuses it (CORS).
        let read =
            format!("fetch('{url}', {{cache: 'no-store'}}).then(() => 'read', () => 'refused')");
        assert_eq!(browser.evaluate(&read).await, "refused");
        let errors = browser.errors();
        println!("refused origin: the browser logged {} errors", errors.len());
        assert!(
            errors.iter().any(|e| e.contains("CORS")),
            "the browser reports the refusal: {errors:#?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_read_is_answered_304_in_the_browser() {
    let _serial = serial().await;
    within(Duration::from_secs(30), async {
        let (engine, admin) = stocked_engine().await;
        let base = base_url(&engine);
        let shop = Shop::start().await;
        let key = publishable_key(&admin, &shop.origin).await;
        let browser = Browser::launch().await;
        browser.navigate(&shop.page(&base, &key)).await;
        let shown = "document.getElementById('availability').dataset.atf === '8'";
        browser.wait_for(shown, SHOWN).await;

        // `no-store`: neither fetch is answered from the browser's cache, so
        // the second one's status is the engine's own. `If-None-Match` is not
        // a CORS-safelisted header: the engine's preflight allows it.
        let url = format!("{base}/v1/availability/{SKU}?key={key}&group={GROUP}");
        let revalidate = format!(
            "(async () => {{
                const first = await fetch('{url}', {{ cache: 'no-store' }});
                await first.text();
                const etag = first.headers.get('ETag');
                const again = await fetch('{url}', {{ cache: 'no-store', headers: {{ 'If-None-Match': etag }} }});
                window.etag = etag;
                return {{ first: first.status, etag, again: again.status, body: await again.text() }};
            }})()"
        );
        let answer = browser.evaluate(&revalidate).await;
        assert_eq!(answer["first"], 200, "{answer}");
        assert!(answer["etag"].as_str().is_some_and(|t| !t.is_empty()), "{answer}");
        assert_eq!(answer["again"], 304, "{answer}");
        assert_eq!(answer["body"], "", "{answer}");

        // Once the stock changed, the same tag gets the new state.
        reserve(&admin, "PAR-OPERA", 1, "etag-1").await;
        let changed = format!(
            "fetch('{url}', {{ cache: 'no-store', headers: {{ 'If-None-Match': window.etag }} }})
                .then(async (r) => ({{ status: r.status, body: await r.json() }}))"
        );
        let answer = browser.evaluate(&changed).await;
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["body"]["total_atf"], 7, "{answer}");
        let errors = browser.errors();
        assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    })
    .await;
}

/// Waits until `/readyz` answers 200 (the demo data set loads first).
async fn wait_ready(http: &Client, base: &str) {
    let started = Instant::now();
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the demo engine never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Most requests one load worker sends, whatever the time left.
const LOAD_PER_WORKER: u64 = 40_000;

/// At most `length` of load from `workers` clients (and `LOAD_PER_WORKER`
/// requests each): one-unit reservations of demo SKUs at `store` (many are
/// refused: that is load too) and reads. Returns how many were answered.
async fn drive_load(base: &str, store: &str, workers: usize, length: Duration) -> u64 {
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (base, store) = (base.to_owned(), store.to_owned());
            tokio::spawn(async move {
                let http = Client::new();
                let mut answered = 0u64;
                for n in 0..LOAD_PER_WORKER {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let sku = format!("SKU-{:05}", 2 + (n % 50));
                    let request = if n % 2 == 0 {
                        let body = json!({"channel": "web", "ttl_seconds": 60,
                            "lines": [{"sku": sku, "location": store, "qty": 1}]});
                        http.post(format!("{base}/v1/reservations"))
                            .header("Idempotency-Key", format!("load-{worker}-{n}"))
                            .json(&body)
                    } else {
                        http.get(format!("{base}/v1/availability/{sku}"))
                    };
                    let sent = request
                        .bearer_auth(ADMIN)
                        .timeout(Duration::from_secs(5))
                        .send();
                    if sent.await.is_ok() {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a load worker");
    }
    total
}

/// A number the console shows, from its `data-value`.
fn stat(id: &str) -> String {
    format!("Number(document.getElementById('{id}').dataset.value ?? NaN)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_engine_at_work_without_errors() {
    let _serial = serial().await;
    within(Duration::from_secs(40), async {
        let config = ServeConfig { demo: true, ..unlimited() };
        let engine = start_engine(config, ADMIN).await;
        let base = base_url(&engine);
        let http = Client::new();
        wait_ready(&http, &base).await;
        let browser = Browser::launch().await;
        browser.navigate(&format!("{base}/console")).await;
        let scraping = "document.body.dataset.demo === 'true' && Number(document.body.dataset.scrapes) >= 1";
        browser.wait_for(scraping, SHOWN).await;

        // The key, typed into the form: kept in the tab's sessionStorage only.
        browser.evaluate("document.getElementById('admin-key').focus()").await;
        browser.call("Input.insertText", json!({"text": ADMIN})).await;
        browser
            .evaluate("document.querySelector('#key-form button[type=submit]').click()")
            .await;
        browser.wait_for("document.body.dataset.key === 'set'", SHOWN).await;
        let kept = browser.evaluate("sessionStorage.getItem('omnistock.adminKey')").await;
        assert_eq!(kept, ADMIN);
        assert_eq!(browser.evaluate("document.getElementById('admin-key').value").await, "");
        // The SKU panel: a row per location, with its ATF.
        let rows = "document.querySelectorAll('#sku-table tbody tr[data-location]:not([data-atf=\"\"])[data-atf]').length";
        let rows = browser.wait_for(rows, SHOWN).await;
        println!("console: {rows} locations in the SKU table");

        let total = stat("requests-total");
        let before = browser.wait_for(&format!("{total} >= 0 && {total}"), SHOWN).await;
        let before = before.as_f64().expect("a number");
        let scrapes_before = browser.evaluate("Number(document.body.dataset.scrapes)").await;
        let locations: Value = http
            .get(format!("{base}/v1/locations"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("locations")
            .json()
            .await
            .expect("JSON");
        let store = locations
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["kind"] == "store")
            .and_then(|l| l["code"].as_str())
            .expect("a demo store")
            .to_owned();
        let load = tokio::spawn({
            let base = base.clone();
            async move { drive_load(&base, &store, 4, Duration::from_secs(3)).await }
        });
        let busy = format!("{} > 0 && {} > 0", stat("reservations-per-second"), stat("reads-per-second"));
        browser.wait_for(&busy, Duration::from_secs(5)).await;
        let sent = load.await.expect("the load") as f64; // exact up to 2^53
        let counted = format!("{total} >= {}", before + sent);
        browser.wait_for(&counted, Duration::from_secs(5)).await;
        let scrapes = browser.evaluate("Number(document.body.dataset.scrapes)").await;
        let (scrapes, scrapes_before) = (scrapes.as_f64().unwrap_or(0.0), scrapes_before.as_f64().unwrap_or(0.0));
        println!("console: {sent} requests sent in 3 s; requests-total {before} -> at least {}; {scrapes} scrapes", before + sent);
        assert!(scrapes >= 3.0 && scrapes > scrapes_before, "{scrapes_before} then {scrapes} scrapes");

        // The demo's flash sale: 400 one-unit orders for 50 units, no oversell.
        browser.wait_for("!document.getElementById('flash-sale').disabled", SHOWN).await;
        browser.evaluate("document.getElementById('flash-sale').click()").await;
        let done = "document.getElementById('flash-sale-result').dataset.state === 'done'";
        browser.wait_for(done, Duration::from_secs(20)).await;
        let result = browser
            .evaluate("({...document.getElementById('flash-sale-result').dataset})")
            .await;
        let verdict = browser.evaluate("document.getElementById('flash-verdict').textContent").await;
        println!("console: flash sale {result}: {verdict}");
        assert_eq!(result["oversell"], "false", "{result}");
        assert_eq!(result["sent"], "400", "{result}");
        assert_eq!(result["errors"], "0", "{result}");
        // Every unit the web channel could sell there, and not one more: the
        // 50 set, less what the demo's policy holds back from the channel.
        let count = |field: &str| result[field].as_str().and_then(|n| n.parse::<u32>().ok());
        let available = count("available").expect("the units available");
        assert!((1..=50).contains(&available), "{result}");
        assert_eq!(count("granted"), Some(available), "{result}");
        assert_eq!(count("refused"), Some(400 - available), "{result}");
        // The whole console in the picture (the README shows it): the SKU
        // table, its map and the flash sale's result below the charts.
        let whole = json!({"width": 1280, "height": 1900, "deviceScaleFactor": 1, "mobile": false});
        browser.call("Emulation.setDeviceMetricsOverride", whole).await;
        let next = format!("Number(document.body.dataset.scrapes) > {scrapes}");
        browser.wait_for(&next, SHOWN).await;
        browser.evaluate("document.activeElement.blur()").await;
        browser.screenshot(&screenshot_path("console.png")).await;

        // Chromium logs every refused reservation (409) as a failed load.
        let errors: Vec<String> = browser
            .errors()
            .into_iter()
            .filter(|e| !e.contains("the server responded with a status of 409"))
            .collect();
        assert!(errors.is_empty(), "the console logged errors: {errors:#?}");
    })
    .await;
}
