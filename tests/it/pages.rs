//! Readers in web pages, over real sockets: publishable keys (creation,
//! what they may read and how it is shown), CORS, secret keys refused from
//! URLs and other sites' pages, the browser stream (current state first,
//! `Last-Event-ID`, quotas per key and address), the per-address rate, and
//! the files browsers load (`/sdk/omnistock.js`, `/console`).

use std::time::Duration;

use omnistock::server::config::ServeConfig;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::engine::{Api, Running, base_url, start_engine, unlimited};
use crate::support::{ADMIN, header, sse};

const SHOP: &str = "https://shop.example";

/// An engine with two Paris stores stocking SKU-1 (3 and 10 units).
async fn engine(config: ServeConfig) -> (Running, Api) {
    let running = start_engine(config, ADMIN).await;
    let admin = Api::of(&running, ADMIN);
    for (code, name) in [("PAR-1", "Paris Opéra"), ("PAR-2", "Paris Nord")] {
        let body = json!({"kind": "store", "name": name, "lat": 48.87, "lon": 2.33});
        admin
            .ok(Method::PUT, &format!("/v1/locations/{code}"), body)
            .await;
    }
    admin
        .ok(
            Method::PUT,
            "/v1/groups/paris",
            json!({"locations": ["PAR-1", "PAR-2"]}),
        )
        .await;
    for (code, units) in [("PAR-1", 3), ("PAR-2", 10)] {
        let path = format!("/v1/stock/{code}/SKU-1");
        admin
            .ok(Method::PUT, &path, json!({"on_hand": units}))
            .await;
    }
    (running, admin)
}

async fn publishable(admin: &Api, extra: Value) -> String {
    let mut body =
        json!({"name": "shop", "kind": "publishable", "channel": "web", "origins": [SHOP]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, key) = admin.call(Method::POST, "/v1/keys", Some(body), None).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["kind"], "publishable");
    let secret = key["key"].as_str().expect("the key").to_owned();
    assert!(secret.starts_with("opk_"), "{secret}");
    secret
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("answered")
}

#[tokio::test]
async fn publishable_keys_are_checked_when_created() {
    let (_running, admin) = engine(unlimited()).await;
    let refused = [
        (
            json!({"name": "a", "kind": "publishable", "origins": [SHOP]}),
            "invalid_publishable_key",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "web"}),
            "invalid_publishable_key",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "web", "origins": [SHOP], "scopes": ["read"]}),
            "invalid_publishable_key",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "web", "origins": ["https://shop.example/"]}),
            "invalid_origin",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "web", "origins": ["*"]}),
            "invalid_origin",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "tv", "origins": [SHOP]}),
            "unknown_channel",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "web", "origins": [SHOP], "cache_control": "a\u{7f}"}),
            "invalid_cache_control",
        ),
        (
            json!({"name": "a", "scopes": ["read"], "origins": [SHOP]}),
            "invalid_publishable_key",
        ),
        (
            json!({"name": "a", "kind": "publishable", "channel": "web", "origins": [SHOP], "quantities": "some"}),
            "invalid_body",
        ),
    ];
    for (body, code) in refused {
        let (status, problem) = admin
            .call(Method::POST, "/v1/keys", Some(body.clone()), None)
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(problem["code"], code, "{body}");
    }
    let (_, keys) = admin.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!(keys, json!([]), "a refused key is not created");
    publishable(&admin, json!({"quantities": "banded"})).await;
    let (_, keys) = admin.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!(keys[0]["publishable"]["origins"], json!([SHOP]));
    assert_eq!(keys[0]["publishable"]["quantities"], "banded");
    assert_eq!(keys[0]["publishable"]["quantity_threshold"], 5);
    assert!(keys[0].get("key").is_none(), "the secret is shown once");
}

#[tokio::test]
async fn a_publishable_key_reads_availability_as_a_page_sees_it() {
    let (running, admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({"quantity_threshold": 3})).await;
    let url = format!("{base}/v1/availability/SKU-1?group=paris&key={key}");
    let answer = get(&url, &[("Origin", SHOP)]).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(SHOP)
    );
    assert_eq!(header(&answer, "vary").as_deref(), Some("Origin"));
    assert_eq!(
        header(&answer, "cache-control").as_deref(),
        Some("no-cache")
    );
    let etag = header(&answer, "etag").expect("tagged");
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["channel"], "web");
    assert_eq!(body["availability"], "in_stock");
    assert_eq!(body["total_atf"], 13);
    let locations = body["locations"].as_array().expect("locations");
    assert_eq!(locations[0]["availability"], "limited", "{body}");
    assert_eq!(locations[0]["atf"], 3);
    assert_eq!(locations[0]["name"], "Paris Opéra");
    assert_eq!(locations[1]["availability"], "in_stock");
    for hidden in ["on_hand", "reserved", "safety_stock", "ato"] {
        assert!(
            !body.to_string().contains(hidden),
            "a page never sees {hidden}: {body}"
        );
    }
    // The same key as a bearer answers the same; unchanged: 304, with the
    // key's caching headers.
    let same = get(
        &format!("{base}/v1/availability/SKU-1?group=paris"),
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("If-None-Match", &etag),
        ],
    )
    .await;
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&same, "cache-control").as_deref(), Some("no-cache"));
    // Its own channel only.
    let other = get(&format!("{url}&channel=app"), &[]).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let problem: Value = other.json().await.expect("problem");
    assert_eq!(problem["code"], "channel_not_allowed");
}

#[tokio::test]
async fn quantities_are_shown_exactly_banded_or_below_the_threshold() {
    let (running, admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let banded = publishable(&admin, json!({"quantities": "banded", "cache_control": "public, max-age=1, stale-while-revalidate=5"})).await;
    let threshold = publishable(&admin, json!({"quantities": "threshold"})).await;
    let read = |key: String| {
        let url = format!("{base}/v1/availability/SKU-1?group=paris&key={key}");
        async move { get(&url, &[]).await }
    };
    let answer = read(banded).await;
    assert_eq!(
        header(&answer, "cache-control").as_deref(),
        Some("public, max-age=1, stale-while-revalidate=5"),
        "the key's caching policy"
    );
    assert!(
        header(&answer, "access-control-allow-origin").is_none(),
        "no Origin, no CORS"
    );
    let body: Value = answer.json().await.expect("JSON");
    assert!(body.get("total_atf").is_none(), "{body}");
    assert!(body["locations"][0].get("atf").is_none(), "{body}");
    assert_eq!(body["locations"][0]["availability"], "limited");
    let body: Value = read(threshold).await.json().await.expect("JSON");
    assert!(body.get("total_atf").is_none(), "13 is above 5: {body}");
    assert_eq!(body["locations"][0]["atf"], 3, "3 is at most 5: {body}");
    assert!(body["locations"][1].get("atf").is_none(), "{body}");
}

#[tokio::test]
async fn pages_keys_are_refused_where_they_do_not_belong() {
    let (running, admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({})).await;
    let problem = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = response.json().await.expect("problem");
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    // Another site's page with the key: refused (and no CORS header).
    let foreign = get(
        &format!("{base}/v1/availability/SKU-1?key={key}"),
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert!(header(&foreign, "access-control-allow-origin").is_none());
    assert_eq!(
        problem(foreign).await,
        (StatusCode::FORBIDDEN, "origin_not_allowed".into())
    );
    // A publishable key cannot write, nor read what pages do not read.
    let bearer = format!("Bearer {key}");
    let (status, body) = admin_free_call(&base, Method::POST, "/v1/reservations", &bearer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("publishable_key_not_allowed"))
    );
    let (status, body) =
        admin_free_call(&base, Method::GET, "/v1/stock/PAR-1/SKU-1", &bearer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("publishable_key_not_allowed"))
    );
    // A secret key in a URL, or from another site's page: refused.
    let in_url = get(&format!("{base}/v1/availability/SKU-1?key={ADMIN}"), &[]).await;
    assert_eq!(
        problem(in_url).await,
        (StatusCode::UNAUTHORIZED, "key_in_url".into())
    );
    let in_url = get(
        &format!("{base}/v1/locations?key={ADMIN}"),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(
        problem(in_url).await,
        (StatusCode::UNAUTHORIZED, "key_in_url".into())
    );
    let admin_bearer = format!("Bearer {ADMIN}");
    let from_page = get(
        &format!("{base}/v1/locations"),
        &[("Authorization", &admin_bearer), ("Origin", SHOP)],
    )
    .await;
    assert_eq!(
        problem(from_page).await,
        (StatusCode::FORBIDDEN, "secret_key_from_browser".into())
    );
    // The engine's own pages (the console) may send one.
    let own_origin = format!("http://{}", running.addr);
    let from_console = get(
        &format!("{base}/v1/locations"),
        &[("Authorization", &admin_bearer), ("Origin", &own_origin)],
    )
    .await;
    assert_eq!(from_console.status(), StatusCode::OK);
    // A revoked key stops at once.
    let (_, keys) = admin.call(Method::GET, "/v1/keys", None, None).await;
    let id = keys[0]["id"].as_str().expect("id");
    admin
        .call(Method::DELETE, &format!("/v1/keys/{id}"), None, None)
        .await;
    let revoked = get(&format!("{base}/v1/availability/SKU-1?key={key}"), &[]).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
}

async fn admin_free_call(
    base: &str,
    method: Method,
    path: &str,
    bearer: &str,
) -> (StatusCode, Value) {
    let response = Client::new()
        .request(method, format!("{base}{path}"))
        .header("Authorization", bearer)
        .json(&json!({}))
        .send()
        .await
        .expect("answered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cors_is_answered_on_the_pages_reads_and_nowhere_else() {
    let (running, admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({})).await;
    let preflight = |path: String, origin: &'static str| async move {
        Client::new()
            .request(Method::OPTIONS, path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .await
            .expect("answered")
    };
    for path in [
        format!("{base}/v1/availability/SKU-1"),
        format!("{base}/v1/nearby?sku=SKU-1&lat=48.8&lon=2.3"),
        format!("{base}/v1/streams/availability?sku=SKU-1&key={key}"),
    ] {
        let allowed = preflight(path.clone(), SHOP).await;
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            header(&allowed, "access-control-allow-origin").as_deref(),
            Some(SHOP)
        );
        let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
        assert!(headers.contains("Authorization") && headers.contains("Last-Event-ID"));
        assert_eq!(header(&allowed, "vary").as_deref(), Some("Origin"));
        let refused = preflight(path.clone(), "https://evil.example").await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(header(&refused, "access-control-allow-origin").is_none());
    }
    for path in ["/v1/reservations", "/v1/locations", "/v1/stock/PAR-1/SKU-1"] {
        let answer = preflight(format!("{base}{path}"), SHOP).await;
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(
            header(&answer, "access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    // Nearby as a page sees it.
    let nearby = get(
        &format!("{base}/v1/nearby?sku=SKU-1&lat=48.87&lon=2.33&key={key}"),
        &[("Origin", SHOP)],
    )
    .await;
    assert_eq!(
        header(&nearby, "access-control-allow-origin").as_deref(),
        Some(SHOP)
    );
    let body: Value = nearby.json().await.expect("JSON");
    assert_eq!(body["stores"][0]["availability"], "limited", "{body}");
    assert_eq!(body["stores"][1]["availability"], "in_stock", "{body}");
    assert!(!body.to_string().contains("on_hand"));
}

#[tokio::test]
async fn a_pages_stream_starts_with_the_current_state_and_resumes() {
    let (running, admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({"quantities": "exact"})).await;
    let url =
        format!("{base}/v1/streams/availability?sku=SKU-1&group=paris&coalesce_ms=10&key={key}");
    let mut stream = get(&url, &[("Origin", SHOP)]).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        header(&stream, "access-control-allow-origin").as_deref(),
        Some(SHOP)
    );
    assert_eq!(
        header(&stream, "cache-control").as_deref(),
        Some("no-cache")
    );
    let mut buffer = String::new();
    let within = Duration::from_secs(5);
    let snapshot = sse::read(&mut stream, &mut buffer, within, |events| {
        events.iter().filter(|e| e.0 == "availability").count() >= 2
    })
    .await;
    assert_eq!(
        snapshot.len(),
        2,
        "the snapshot, and nothing before it: {snapshot:?}"
    );
    assert!(
        snapshot[0].2.is_none(),
        "only the snapshot's last event has the id"
    );
    let start_id = snapshot[1]
        .2
        .clone()
        .expect("the snapshot's last event carries where the stream goes on");
    let states: Vec<(&str, &Value)> = snapshot
        .iter()
        .filter(|e| e.0 == "availability")
        .map(|e| (e.1["location"].as_str().unwrap_or(""), &e.1["atf"]))
        .collect();
    assert_eq!(states, vec![("PAR-1", &json!(3)), ("PAR-2", &json!(10))]);
    assert!(!snapshot[1].1.to_string().contains("on_hand"));
    let reserve = json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "PAR-1", "qty": 2}], "ttl_seconds": 60});
    admin
        .call(
            Method::POST,
            "/v1/reservations",
            Some(reserve),
            Some("page-1"),
        )
        .await;
    let changed = sse::next_availability(&mut stream, &mut buffer, within, "the change").await;
    assert_eq!(
        (changed["atf"].clone(), changed["availability"].clone()),
        (json!(1), json!("limited"))
    );
    drop(stream);
    // Resumed from where it started: the change again, no snapshot.
    let mut resumed = get(&url, &[("Last-Event-ID", &start_id)]).await;
    let mut buffer = String::new();
    let first = sse::next_availability(&mut resumed, &mut buffer, within, "an event").await;
    assert_eq!(
        first["location"], "PAR-1",
        "the change, not a snapshot: {first}"
    );
    assert_eq!(first["atf"], 1);
    // A page's stream names its SKU.
    let no_sku = get(&format!("{base}/v1/streams/availability?key={key}"), &[]).await;
    assert_eq!(no_sku.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// Opens a page's stream (status only; the stream stays open while held).
async fn open_stream(url: &str) -> reqwest::Response {
    get(url, &[]).await
}

#[tokio::test]
async fn streams_are_bounded_per_key_and_address() {
    let config = ServeConfig {
        max_streams_per_address: 2,
        max_streams_per_key: 3,
        rate_limit_per_address: 0,
        ..unlimited()
    };
    let (running, admin) = engine(config).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({})).await;
    let url = format!("{base}/v1/streams/availability?sku=SKU-1&key={key}");
    let first = open_stream(&url).await;
    let second = open_stream(&url).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open_stream(&url).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&third, "retry-after").is_some());
    let body: Value = third.json().await.expect("problem");
    assert_eq!(body["code"], "too_many_streams");
    // From another address (a cluster front names it; here the same
    // header from a client is ignored: the connection's peer wins).
    let spoofed = get(
        &url,
        &[
            ("omnistock-forwarded-client", "192.0.2.7"),
            ("omnistock-forwarded-by", "x"),
        ],
    )
    .await;
    assert_eq!(
        spoofed.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a client cannot name its own address"
    );
    drop(first);
    // The closed stream's share comes back (once the server sees it end).
    let mut reopened = StatusCode::TOO_MANY_REQUESTS;
    let mut kept = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = open_stream(&url).await;
        reopened = response.status();
        if reopened == StatusCode::OK {
            kept.push(response);
            break;
        }
    }
    assert_eq!(
        reopened,
        StatusCode::OK,
        "a closed stream's share is given back"
    );
    // An <img> on another site cannot hold the key's streams.
    let tag = get(&url, &[("Sec-Fetch-Mode", "no-cors")]).await;
    assert_eq!(tag.status(), StatusCode::FORBIDDEN);
    // A secret key's stream in a URL is refused.
    let secret = get(
        &format!("{base}/v1/streams/availability?sku=SKU-1&key={ADMIN}"),
        &[],
    )
    .await;
    let body: Value = secret.json().await.expect("problem");
    assert_eq!(body["code"], "key_in_url");
}

#[tokio::test]
async fn a_pages_requests_are_limited_per_address_and_its_streams_end_with_its_key() {
    let config = ServeConfig {
        rate_limit_per_address: 2,
        ..unlimited()
    };
    let (running, admin) = engine(config).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({})).await;
    let stream_url = format!("{base}/v1/streams/availability?sku=SKU-1&key={key}");
    let mut stream = open_stream(&stream_url).await;
    assert_eq!(stream.status(), StatusCode::OK);
    // A burst of 4 (twice the rate), then 429 address_rate_limited.
    let read = format!("{base}/v1/availability/SKU-1?key={key}");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&read, &[]).await.status());
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited >= 2, "{statuses:?}");
    // The page can read why, and when to retry: its refusal carries CORS.
    let response = get(&read, &[("Origin", SHOP)]).await;
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(SHOP)
    );
    let exposed = header(&response, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("Retry-After"), "{exposed}");
    let body: Value = response.json().await.expect("problem");
    assert_eq!(body["code"], "address_rate_limited");
    let unknown_group = get(&format!("{read}&group=nope"), &[("Origin", SHOP)]).await;
    assert!(unknown_group.status().is_client_error());
    // The admin's reads are not limited per address.
    let (status, _) = admin
        .call(Method::GET, "/v1/availability/SKU-1", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Revoked: its open stream ends (at the next change or within 15 s).
    let (_, keys) = admin.call(Method::GET, "/v1/keys", None, None).await;
    let id = keys[0]["id"].as_str().expect("id");
    admin
        .call(Method::DELETE, &format!("/v1/keys/{id}"), None, None)
        .await;
    admin
        .ok(Method::PUT, "/v1/stock/PAR-2/SKU-1", json!({"on_hand": 11}))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "a revoked key's stream ends");
}

#[tokio::test]
async fn a_banded_pages_stream_shows_only_band_changes() {
    let (running, admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({"quantities": "banded"})).await;
    let url =
        format!("{base}/v1/streams/availability?sku=SKU-1&location=PAR-2&coalesce_ms=10&key={key}");
    let mut stream = get(&url, &[("Authorization", "ignored")]).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut buffer = String::new();
    let within = Duration::from_secs(5);
    let has = |events: &[sse::SseEvent]| events.iter().any(|e| e.0 == "availability");
    let snapshot = sse::read(&mut stream, &mut buffer, within, has).await;
    let state = &snapshot
        .iter()
        .find(|e| e.0 == "availability")
        .expect("the state")
        .1;
    assert_eq!(
        state,
        &json!({"sku": "SKU-1", "location": "PAR-2", "kind": "store", "availability": "in_stock"})
    );
    // 10 -> 8 units: still in stock, nothing sent; 8 -> 4: limited.
    let hold = |qty: u32| json!({"channel": "web", "lines": [{"sku": "SKU-1", "location": "PAR-2", "qty": qty}], "ttl_seconds": 60});
    admin
        .call(
            Method::POST,
            "/v1/reservations",
            Some(hold(2)),
            Some("band-1"),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin
        .call(
            Method::POST,
            "/v1/reservations",
            Some(hold(4)),
            Some("band-2"),
        )
        .await;
    let change = sse::read(&mut stream, &mut buffer, within, has).await;
    let events: Vec<&Value> = change
        .iter()
        .filter(|e| e.0 == "availability")
        .map(|e| &e.1)
        .collect();
    assert_eq!(
        events,
        vec![
            &json!({"sku": "SKU-1", "location": "PAR-2", "kind": "store", "availability": "limited"})
        ]
    );
}

#[tokio::test]
async fn the_sdk_and_the_console_are_served_to_browsers() {
    let (running, _admin) = engine(unlimited()).await;
    let base = base_url(&running);
    let sdk = get(&format!("{base}/sdk/omnistock.js"), &[("Origin", SHOP)]).await;
    assert_eq!(sdk.status(), StatusCode::OK);
    assert_eq!(
        header(&sdk, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(header(&sdk, "content-type").is_some_and(|t| t.starts_with("text/javascript")));
    let text = sdk.text().await.expect("text");
    assert!(
        text.contains("export function watchAvailability"),
        "the SDK exports its helper"
    );
    assert!(text.contains("omnistock-availability"));
    let console = get(&format!("{base}/console"), &[]).await;
    assert_eq!(console.status(), StatusCode::OK);
    let policy = header(&console, "content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("connect-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "the console talks only to its engine and is never framed: {policy}"
    );
    let page = console.text().await.expect("text");
    assert!(
        page.contains("<meta name=\"omnistock-demo\" content=\"false\">"),
        "not a demo"
    );
    assert!(!page.contains("{{"), "every marker replaced");
    assert!(
        !page.contains("https://") || !page.contains("<script src=\"http"),
        "no external script"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_shopper_is_counted_on_their_own() {
    let config = ServeConfig {
        max_streams_per_address: 1,
        trusted_proxies: vec!["127.0.0.0/8".parse().expect("a CIDR block")],
        ..unlimited()
    };
    let (running, admin) = engine(config).await;
    let base = base_url(&running);
    let key = publishable(&admin, json!({})).await;
    let url = format!("{base}/v1/streams/availability?sku=SKU-1&key={key}");
    let via_proxy = |client: &'static str| {
        let url = url.clone();
        async move { get(&url, &[("X-Forwarded-For", client)]).await }
    };
    let first = via_proxy("203.0.113.1").await;
    let second = via_proxy("203.0.113.2").await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let again = via_proxy("203.0.113.1").await;
    assert_eq!(
        again.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the same shopper's second stream"
    );
    // A shopper cannot name someone else: only the last hop counts.
    let forged = via_proxy("203.0.113.7, 203.0.113.1").await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// The SDK itself, under Node (`tests/sdk/sharing.mjs`): one stream per
/// query however many elements watch it, closed with the last; a secret
/// key refused before it is sent.
#[test]
fn the_sdk_shares_one_stream_per_query_and_refuses_secret_keys() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("node")
        .arg(root.join("tests/sdk/sharing.mjs"))
        .arg(root.join("web/sdk/omnistock.js"))
        .output()
        .expect("node runs (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("sdk sharing ok"), "{stdout}");
}
