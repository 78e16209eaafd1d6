//! Problem details are written for people: no Rust debug formatting
//! (`Seq(71087)`, `Some(..)`, `Committed`) and no phrase said twice
//! ("store unavailable: store unavailable"). Every refusal's own text, and a
//! table of refusals served over HTTP.

use crate::support;

use omnistock::http::error_codes::Code;
use omnistock::ledger::{
    GroupName, HolderId, HolderKind, Invalid, LocationCode, Qty, Refusal, ReservationId,
    ReservationState, Seq, Shortfall, Sku, TimestampMs,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::engine::{Api, start_engine, unlimited};

const ADMIN: &str = "details-test-admin-key-0123";

/// What Rust's `{:?}` leaves in a text: newtype and option wrappers, and
/// enum variant names in their Rust spelling.
const DEBUG_MARKS: [&str; 14] = [
    "Seq(",
    "Qty(",
    "Some(",
    "None",
    "TimestampMs(",
    "ReservationId(",
    "Sku(",
    "LocationCode(",
    "HolderId(",
    "Held",
    "Committed",
    "Released",
    "Expired",
    "{ ",
];

/// Panics when `text` shows debug formatting or repeats a phrase in a row
/// ("a: a: b", "x; x").
fn assert_readable(what: &str, text: &str) {
    for mark in DEBUG_MARKS {
        assert!(!text.contains(mark), "{what}: {mark:?} in {text:?}");
    }
    let parts: Vec<String> = text
        .split([':', ';', '(', ')'])
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    for pair in parts.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "{what}: {text:?} says {:?} twice",
            pair[0]
        );
    }
    for word in ["unavailable", "store unavailable"] {
        assert!(
            text.matches(word).count() <= 1,
            "{what}: {word:?} more than once in {text:?}"
        );
    }
}

#[test]
fn every_refusal_reads_without_debug_formatting() {
    let sku = Sku::new("SKU-1").expect("sku");
    let location = LocationCode::new("S1").expect("location");
    let shortfall = Shortfall {
        sku: sku.clone(),
        location: location.clone(),
        requested: Qty(5),
        available: Qty(2),
    };
    let mut refusals = vec![
        Refusal::UnknownLocation(location.clone()),
        Refusal::UnknownGroup(GroupName::new("paris").expect("group")),
        Refusal::IdempotencyKeyReused,
        Refusal::IdempotencyInFlight,
        Refusal::IdempotencyStoreFull,
        Refusal::ReservationNotFound(ReservationId(42)),
        Refusal::LocationNotAllowed {
            location: location.clone(),
        },
        Refusal::LineNotInReservation {
            sku: sku.clone(),
            location: location.clone(),
        },
        Refusal::StaleVersion {
            expected: Seq(71_086),
            actual: Seq(71_087),
        },
        Refusal::CountOlderThanLast {
            as_of: TimestampMs(1_700_000_000_000),
            last_as_of: TimestampMs(1_700_000_100_000),
        },
        Refusal::AsOfBeyondHistory {
            as_of: TimestampMs(1_600_000_000_000),
            horizon: TimestampMs(1_700_000_000_000),
        },
        Refusal::AsOfInFuture {
            as_of: TimestampMs(1_900_000_000_000),
        },
        Refusal::HoldCapExceeded {
            kind: HolderKind::Customer,
            holder: HolderId::new("customer-9").expect("holder"),
            held: 400,
            requested: 200,
            max: 500,
        },
        Refusal::InsufficientStock {
            shortfalls: vec![shortfall.clone()],
        },
        Refusal::InsufficientOnHand {
            shortfalls: vec![shortfall],
        },
        Refusal::TooManyIncoming {
            sku: sku.clone(),
            location: location.clone(),
        },
        Refusal::QuantityOverflow {
            sku: sku.clone(),
            location: location.clone(),
        },
    ];
    for state in [
        ReservationState::Committed,
        ReservationState::Released,
        ReservationState::Expired,
    ] {
        refusals.push(Refusal::ReservationNotHeld {
            id: ReservationId(7),
            state,
        });
    }
    for invalid in [
        Invalid::NoLines,
        Invalid::TooManyLines { max: 100 },
        Invalid::ZeroQuantity { line: 1 },
        Invalid::QuantityTooLarge {
            line: 2,
            max: 1_000,
        },
        Invalid::TtlOutOfRange {
            min_ms: 1_000,
            max_ms: 604_800_000,
        },
        Invalid::CommitMoreThanHeld {
            line: 0,
            requested: Qty(3),
            held: Qty(2),
        },
        Invalid::DuplicateLine { line: 1 },
        Invalid::TransferToSameLocation,
        Invalid::MissingReason,
        Invalid::ZeroDelta,
        Invalid::Other("bad"),
    ] {
        refusals.push(Refusal::Invalid(invalid));
    }
    for refusal in &refusals {
        assert_readable(&format!("{refusal:?}"), &refusal.to_string());
    }
    let stale = Refusal::StaleVersion {
        expected: Seq(71_086),
        actual: Seq(71_087),
    }
    .to_string();
    assert!(
        stale.contains("71087") && stale.contains("71086"),
        "the versions are still said: {stale}"
    );
}

/// A request that must be refused: (what, method, path, body, idempotency
/// key, expected status, expected code).
type Case = (
    &'static str,
    Method,
    String,
    Option<Value>,
    Option<&'static str>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_http_have_readable_details() {
    let running = start_engine(unlimited(), ADMIN).await;
    let server = Api::of(&running, ADMIN);
    server
        .ok(
            Method::PUT,
            "/v1/locations/S1",
            json!({"kind": "store", "name": "S1"}),
        )
        .await;
    let position = server
        .ok(Method::PUT, "/v1/stock/S1/A", json!({"on_hand": 10}))
        .await;
    let version = position["version"].as_u64().expect("version");
    let hold = |qty: u32| json!({"channel": "web", "lines": [{"sku": "A", "location": "S1", "qty": qty}], "ttl_seconds": 600});
    let held = server.ok(Method::POST, "/v1/reservations", hold(1)).await;
    let id = held["id"].as_str().expect("id").to_owned();
    server
        .ok(
            Method::POST,
            &format!("/v1/reservations/{id}/commit"),
            json!({}),
        )
        .await;
    server.ok(Method::POST, "/v1/reservations", hold(1)).await;
    let (status, first) = server
        .call(
            Method::POST,
            "/v1/reservations",
            Some(hold(1)),
            Some("details-key"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    // (what, method, path, body, idempotency key, expected status, expected code)
    let cases: Vec<Case> = vec![
        (
            "stale version",
            Method::PUT,
            "/v1/stock/S1/A".into(),
            Some(json!({"on_hand": 9, "expected_version": version})),
            None,
            412,
            "stale_version",
        ),
        (
            "commit twice",
            Method::POST,
            format!("/v1/reservations/{id}/commit"),
            Some(json!({})),
            None,
            409,
            "reservation_not_held",
        ),
        (
            "release a committed one",
            Method::POST,
            format!("/v1/reservations/{id}/release"),
            Some(json!({})),
            None,
            409,
            "reservation_not_held",
        ),
        (
            "a count older than the last",
            Method::PUT,
            "/v1/stock/S1/A".into(),
            Some(json!({"on_hand": 9, "as_of": "2020-01-01T00:00:00Z"})),
            None,
            409,
            "stale_count",
        ),
        (
            "a count from the future",
            Method::PUT,
            "/v1/stock/S1/A".into(),
            Some(json!({"on_hand": 9, "as_of": "2999-01-01T00:00:00Z"})),
            None,
            422,
            "as_of_in_future",
        ),
        (
            "more than there is",
            Method::POST,
            "/v1/reservations".into(),
            Some(hold(500)),
            None,
            409,
            "insufficient_stock",
        ),
        (
            "over the customer's hold cap",
            Method::POST,
            "/v1/reservations".into(),
            Some(
                json!({"channel": "web", "customer_id": "c-1", "lines": [{"sku": "A", "location": "S1", "qty": 501}], "ttl_seconds": 600}),
            ),
            None,
            409,
            "hold_cap_exceeded",
        ),
        (
            "an unknown location",
            Method::POST,
            "/v1/reservations".into(),
            Some(
                json!({"channel": "web", "lines": [{"sku": "A", "location": "NOWHERE", "qty": 1}], "ttl_seconds": 600}),
            ),
            None,
            404,
            "unknown_location",
        ),
        (
            "a TTL out of range",
            Method::POST,
            "/v1/reservations".into(),
            Some(
                json!({"channel": "web", "lines": [{"sku": "A", "location": "S1", "qty": 1}], "ttl_seconds": 0}),
            ),
            None,
            422,
            "ttl_out_of_range",
        ),
        (
            "an unknown reservation",
            Method::POST,
            "/v1/reservations/999999/commit".into(),
            Some(json!({})),
            None,
            404,
            "reservation_not_found",
        ),
        (
            "an idempotency key reused for another request",
            Method::POST,
            "/v1/reservations".into(),
            Some(hold(2)),
            Some("details-key"),
            422,
            "idempotency_key_reused",
        ),
        (
            "a bad channel",
            Method::POST,
            "/v1/reservations".into(),
            Some(
                json!({"channel": "fax", "lines": [{"sku": "A", "location": "S1", "qty": 1}], "ttl_seconds": 600}),
            ),
            None,
            422,
            "unknown_channel",
        ),
    ];
    for (what, method, path, body, key, status, code) in cases {
        let (got, problem) = server.call(method, &path, body, key).await;
        assert_eq!(got.as_u16(), status, "{what}: {problem}");
        assert_eq!(problem["code"], code, "{what}: {problem}");
        // The rest of the body is the code's row of the table.
        let row = Code::ALL
            .iter()
            .find(|row| row.as_str() == code)
            .unwrap_or_else(|| panic!("{what}: `{code}` is not in the table"));
        assert_eq!(problem["status"], status, "{what}: {problem}");
        assert_eq!(row.status().as_u16(), status, "{what}");
        assert_eq!(problem["title"], row.title(), "{what}: {problem}");
        assert_eq!(problem["type"], row.type_uri(), "{what}: {problem}");
        let detail = problem["detail"].as_str().expect("a detail");
        assert!(!detail.is_empty(), "{what}");
        assert_readable(what, detail);
    }
    running.shutdown().await.expect("shutdown");
}
