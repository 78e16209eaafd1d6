//! The one table of error codes. Every refusal, rejection and limit the API
//! answers with is a [`Code`]: its stable `code` string, HTTP status,
//! problem `title`, `type` URI, `Retry-After` and its line in the OpenAPI
//! document all come from its row here. [`super::error::ApiError`] is built
//! from a `Code` only, so no code string, status or title is written
//! anywhere else (`tests/it/error_codes.rs` holds the table to that, and to the
//! Stable contract: a code clients see keeps its spelling and status).
//!
//! A row: `Variant: "code", STATUS, "title", "what it means"`, and
//! `retry_after N` when a client should retry after N seconds (every 429
//! and 503 says when). Add a row for a new code; never rename or re-status
//! a published one.

use std::borrow::Cow;
use std::fmt;

use axum::http::StatusCode;
use serde::{Serialize, Serializer};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// The prefix of every problem `type` URI: `urn:omnistock:problem:{code}`.
pub const TYPE_URI_PREFIX: &str = "urn:omnistock:problem:";

macro_rules! optional {
    () => {
        None
    };
    ($value:literal) => {
        Some($value)
    };
}

macro_rules! error_codes {
    ($(
        $variant:ident: $code:literal, $status:ident, $title:literal, $description:literal
        $(, retry_after $retry:literal)?;
    )*) => {
        /// A stable error code: one per row of the table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(
                #[doc = $description]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The `code` member of the problem body.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub const fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }

            /// The problem's `title`: the same for every problem of a code.
            pub const fn title(self) -> &'static str {
                match self {
                    $(Code::$variant => $title,)*
                }
            }

            /// What the code means, for the documentation.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Code::$variant => $description,)*
                }
            }

            /// The problem's `type`: `urn:omnistock:problem:{code}`.
            pub const fn type_uri(self) -> &'static str {
                match self {
                    $(Code::$variant => concat!("urn:omnistock:problem:", $code),)*
                }
            }

            /// The `Retry-After` (seconds) a problem of this code carries,
            /// unless the problem sets its own (`ApiError::retry_after`).
            pub const fn retry_after_seconds(self) -> Option<u64> {
                match self {
                    $(Code::$variant => optional!($($retry)?),)*
                }
            }
        }
    };
}

error_codes! {
    // Keys, scopes, rate limits.
    Unauthorized: "unauthorized", UNAUTHORIZED, "Missing or unknown API key",
        "no `Authorization: Bearer` key, or one the server does not know";
    Forbidden: "forbidden", FORBIDDEN, "The API key lacks a scope for this request",
        "the key lacks the scope the request needs, or a pos key acts at a location not its own (`location` names it)";
    RateLimited: "rate_limited", TOO_MANY_REQUESTS, "Too many requests",
        "the key is over its request rate; retry after Retry-After", retry_after 1;
    AddressRateLimited: "address_rate_limited", TOO_MANY_REQUESTS, "Too many requests",
        "a publishable key's requests from this client address are over the per-address rate; retry after Retry-After", retry_after 1;
    KeyInUrl: "key_in_url", UNAUTHORIZED, "Secret key in a URL",
        "a secret key was sent as the `key` query parameter; URLs end up in logs, histories and caches: send it as `Authorization: Bearer` (only publishable keys go in URLs)";
    SecretKeyFromBrowser: "secret_key_from_browser", FORBIDDEN, "Secret key sent from a web page",
        "a secret key came with the `Origin` of another site's page: anyone who opens the page can read it; give pages a publishable key";
    PublishableKeyNotAllowed: "publishable_key_not_allowed", FORBIDDEN, "Publishable keys cannot do this",
        "a publishable key reads availability, nearby stores and the live stream; everything else needs a secret key";
    OriginNotAllowed: "origin_not_allowed", FORBIDDEN, "Origin not allowed for this key",
        "the page's `Origin` is not one of the publishable key's origins";
    ChannelNotAllowed: "channel_not_allowed", FORBIDDEN, "Channel not allowed for this key",
        "a publishable key sees its own channel only; omit `channel` or name the key's";
    TooManyStreams: "too_many_streams", TOO_MANY_REQUESTS, "Too many live streams",
        "this publishable key, or this client address, has as many live streams open as it may; close one or retry after Retry-After", retry_after 5;

    // Routes.
    NoRoute: "no_route", NOT_FOUND, "Not found",
        "no route has this path";
    MethodNotAllowed: "method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "the route does not serve this method";

    // Bodies, parameters and headers.
    MalformedJson: "malformed_json", BAD_REQUEST, "Malformed request",
        "the body is not JSON";
    UnreadableBody: "unreadable_body", BAD_REQUEST, "Malformed request",
        "the body could not be read to its end";
    BodyTimeout: "body_timeout", REQUEST_TIMEOUT, "Request body too slow",
        "the body did not arrive within the body read timeout; nothing was applied";
    BodyTooLarge: "body_too_large", PAYLOAD_TOO_LARGE, "Request body too large",
        "the body is over the size limit";
    UnsupportedMediaType: "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type",
        "the body's Content-Type is not one this route reads";
    InvalidBody: "invalid_body", UNPROCESSABLE_ENTITY, "Invalid request",
        "the JSON body does not fit the request: a missing or unknown field, or a value of the wrong type";
    InvalidPath: "invalid_path", UNPROCESSABLE_ENTITY, "Invalid request",
        "a path parameter is not of its type";
    InvalidQuery: "invalid_query", UNPROCESSABLE_ENTITY, "Invalid request",
        "a query parameter is unknown or not of its type, or parameters that exclude each other were given together";
    InvalidIdempotencyKey: "invalid_idempotency_key", UNPROCESSABLE_ENTITY, "Invalid request",
        "the Idempotency-Key is not 1 to 200 visible ASCII characters";
    InvalidId: "invalid_id", UNPROCESSABLE_ENTITY, "Invalid request",
        "an id (SKU, location code, group name, customer id) is empty, too long or holds control characters; `field` names it";
    InvalidTimestamp: "invalid_timestamp", UNPROCESSABLE_ENTITY, "Invalid request",
        "a time is not an RFC 3339 timestamp, or out of range";
    InvalidText: "invalid_text", UNPROCESSABLE_ENTITY, "Invalid request",
        "a free-text field is empty where it must not be, over 200 characters, or holds control characters";
    UnknownChannel: "unknown_channel", UNPROCESSABLE_ENTITY, "Invalid request",
        "the channel is not one of web, app, pos, kiosk, marketplace, call_centre, ads";
    TooManyItems: "too_many_items", UNPROCESSABLE_ENTITY, "Invalid request",
        "a batch or list is over its limit (`--max-batch-items`, locations per group or per key)";

    // Reservations and movements: the ledger's shape checks.
    NoLines: "no_lines", UNPROCESSABLE_ENTITY, "Invalid request",
        "the request has no line";
    TooManyLines: "too_many_lines", UNPROCESSABLE_ENTITY, "Invalid request",
        "the request has more lines than `--max-lines-per-request`";
    ZeroQuantity: "zero_quantity", UNPROCESSABLE_ENTITY, "Invalid request",
        "a line's quantity is 0";
    QuantityTooLarge: "quantity_too_large", UNPROCESSABLE_ENTITY, "Invalid request",
        "a line's quantity is over the largest a line may have";
    TtlOutOfRange: "ttl_out_of_range", UNPROCESSABLE_ENTITY, "Invalid request",
        "the hold's TTL is below the shortest or above `--max-ttl-seconds`";
    MoreThanHeld: "more_than_held", UNPROCESSABLE_ENTITY, "Invalid request",
        "a partial commit names more units than the line holds";
    DuplicateLine: "duplicate_line", UNPROCESSABLE_ENTITY, "Invalid request",
        "the same position is listed twice";
    TransferToSameLocation: "transfer_to_same_location", UNPROCESSABLE_ENTITY, "Invalid request",
        "a transfer's destination is the line's own location";
    MissingReason: "missing_reason", UNPROCESSABLE_ENTITY, "Invalid request",
        "an adjustment has no reason";
    ZeroDelta: "zero_delta", UNPROCESSABLE_ENTITY, "Invalid request",
        "an adjustment's delta is 0";
    InvalidValue: "invalid_value", UNPROCESSABLE_ENTITY, "Invalid request",
        "a value the ledger refuses (e.g. a position that does not exist, a pickup SLA out of range); `detail` says which";

    // Reservations and positions: the ledger's refusals.
    UnknownLocation: "unknown_location", NOT_FOUND, "Not found",
        "no location has this code (`location` names it)";
    UnknownGroup: "unknown_group", NOT_FOUND, "Not found",
        "no location group has this name (`group` names it)";
    ReservationNotFound: "reservation_not_found", NOT_FOUND, "Not found",
        "no reservation has this id (a resolved one is forgotten after its retention)";
    ReservationNotHeld: "reservation_not_held", CONFLICT, "Reservation is not held",
        "the reservation is committed, released or expired (`state` says which)";
    LineNotInReservation: "line_not_in_reservation", UNPROCESSABLE_ENTITY, "Invalid request",
        "the reservation has no line for this SKU at this location";
    InsufficientStock: "insufficient_stock", CONFLICT, "Insufficient stock",
        "the channel sees fewer units than asked for; `shortfalls` lists the short lines";
    InsufficientOnHand: "insufficient_on_hand", CONFLICT, "Not enough units on hand",
        "fewer units are physically on hand than the movement takes; `shortfalls` lists the short lines";
    HoldCapExceeded: "hold_cap_exceeded", CONFLICT, "Hold cap exceeded",
        "the hold would take a key or customer over its cap of units held (`holder_kind`, `holder`, `held`, `requested`, `max`)";
    QuantityOverflow: "quantity_overflow", UNPROCESSABLE_ENTITY, "Invalid request",
        "the position's quantity would exceed the per-position maximum";
    TooManyIncoming: "too_many_incoming", CONFLICT, "Too many expected receipts",
        "the position already has as many expected receipts as it may";
    StaleVersion: "stale_version", PRECONDITION_FAILED, "Version mismatch",
        "the position is not at `expected_version` (`actual_version` says where it is)";
    StaleCount: "stale_count", CONFLICT, "A newer count was applied",
        "a count taken later than this one was already applied";
    AsOfBeyondHistory: "as_of_beyond_history", CONFLICT, "Count too old to reconcile",
        "the count's `as_of` is older than the movement history kept; count again";
    AsOfInFuture: "as_of_in_future", UNPROCESSABLE_ENTITY, "Invalid request",
        "the count's `as_of` is in the future";

    // Idempotency keys.
    IdempotencyKeyReused: "idempotency_key_reused", UNPROCESSABLE_ENTITY, "Invalid request",
        "the Idempotency-Key was used for a different request";
    IdempotencyInFlight: "idempotency_in_flight", CONFLICT, "Request in progress",
        "a request with this Idempotency-Key is still running; retry after Retry-After", retry_after 1;
    IdempotencyStoreFull: "idempotency_store_full", SERVICE_UNAVAILABLE, "Too many idempotency keys",
        "the server remembers as many idempotency keys as it may; retry after Retry-After", retry_after 5;

    // Availability reads.
    InvalidCoordinates: "invalid_coordinates", UNPROCESSABLE_ENTITY, "Invalid request",
        "lat and lon are not both given, or out of -90..90 and -180..180";
    InvalidRadius: "invalid_radius", UNPROCESSABLE_ENTITY, "Invalid request",
        "radius_km is not above 0 and at most 1000";
    InvalidQuantity: "invalid_quantity", UNPROCESSABLE_ENTITY, "Invalid request",
        "qty is 0 or over the largest a line may have";
    InvalidLimit: "invalid_limit", UNPROCESSABLE_ENTITY, "Invalid request",
        "limit is out of its range";

    // Stock imports.
    InvalidRow: "invalid_row", UNPROCESSABLE_ENTITY, "Invalid request",
        "an import row is not a valid NDJSON object or CSV record";
    RowTooLong: "row_too_long", UNPROCESSABLE_ENTITY, "Invalid request",
        "an import row is over 4 KiB (one that never ends stops the import)";

    // Catalog and keys.
    InvalidKind: "invalid_kind", UNPROCESSABLE_ENTITY, "Invalid request",
        "a location's kind is not store or warehouse";
    InvalidPickup: "invalid_pickup", UNPROCESSABLE_ENTITY, "Invalid request",
        "a pickup method or SLA is not one of those listed";
    InvalidScope: "invalid_scope", UNPROCESSABLE_ENTITY, "Invalid request",
        "a policy names not exactly one of location or group";
    NoScopes: "no_scopes", UNPROCESSABLE_ENTITY, "Invalid request",
        "a key needs at least one scope";
    PosNeedsLocations: "pos_needs_locations", UNPROCESSABLE_ENTITY, "Invalid request",
        "a pos key needs the locations it may act on";
    InvalidPublishableKey: "invalid_publishable_key", UNPROCESSABLE_ENTITY, "Invalid request",
        "a publishable key needs a `channel` and its `origins`, and holds no scopes, locations or hold cap; a secret key takes none of the publishable fields";
    InvalidOrigin: "invalid_origin", UNPROCESSABLE_ENTITY, "Invalid request",
        "an origin is not `http(s)://host[:port]` in lower case, without a path";
    InvalidCacheControl: "invalid_cache_control", UNPROCESSABLE_ENTITY, "Invalid request",
        "`cache_control` is not a header value of visible ASCII, at most 200 characters";
    TooManyKeys: "too_many_keys", UNPROCESSABLE_ENTITY, "Invalid request",
        "the server holds as many API keys as it may; revoke unused ones";
    KeyNotFound: "key_not_found", NOT_FOUND, "Not found",
        "no API key has this id";

    // Journal, feeds, live streams.
    CursorAhead: "cursor_ahead", CONFLICT, "Cursor ahead of the journal",
        "`since` is ahead of the journal: start again without it";
    InvalidFormat: "invalid_format", UNPROCESSABLE_ENTITY, "Invalid request",
        "the feed format is not one this feed offers";
    InvalidCursor: "invalid_cursor", UNPROCESSABLE_ENTITY, "Invalid request",
        "`since` is not a cursor this server hands out";
    InvalidCoalesce: "invalid_coalesce", UNPROCESSABLE_ENTITY, "Invalid request",
        "coalesce_ms is over its maximum";
    InvalidLastEventId: "invalid_last_event_id", UNPROCESSABLE_ENTITY, "Invalid request",
        "Last-Event-ID is not the id of an event a stream sent";
    TooManySubscribers: "too_many_subscribers", SERVICE_UNAVAILABLE, "Temporarily unavailable",
        "as many live streams are open as `--max-stream-subscribers` allows; retry after Retry-After", retry_after 1;

    // The server.
    NotReady: "not_ready", SERVICE_UNAVAILABLE, "Temporarily unavailable",
        "the engine is still loading its state; retry after Retry-After", retry_after 1;
    NotDurable: "not_durable", SERVICE_UNAVAILABLE, "Temporarily unavailable",
        "sync durability: the write is applied in memory but could not be stored; retry with the same Idempotency-Key", retry_after 1;
    // A cluster of nodes.
    NotACluster: "not_a_cluster", NOT_FOUND, "Not found",
        "this engine runs alone (`serve` without `--cluster`): it has no cluster to describe";
    CrossPartitionNotSupported: "cross_partition_not_supported", NOT_IMPLEMENTED, "Not served by a cluster",
        "cluster mode: the request names a position that only one engine has, where a cluster has one per partition (`GET /v1/journal?since=` without `sku`: continue with `cursor`, from `next_cursor`)";
    PartitionUnavailable: "partition_unavailable", SERVICE_UNAVAILABLE, "Temporarily unavailable",
        "cluster mode: the SKU's partition is moving between nodes, or its owner cannot be reached; nothing was applied; retry after Retry-After", retry_after 1;
    ClusterStoreUnavailable: "cluster_store_unavailable", SERVICE_UNAVAILABLE, "Temporarily unavailable",
        "cluster mode: a change to the shared catalog or keys could not be published to the Redis Cluster; retry after Retry-After (the same request is safe to repeat)", retry_after 1;
    Internal: "internal", INTERNAL_SERVER_ERROR, "Internal error",
        "a fault of the server";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialized as its code string (batch results and import reports carry it
/// outside a problem body).
impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The OpenAPI schema `ProblemCode`: a string enum of every code, from
/// [`Code::ALL`], each described (status and meaning) in the description
/// and in `x-enum-descriptions` (in `enum` order).
impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        let mut description = String::from(
            "A stable, machine-readable error code: build on it, not on `title` or `detail`. \
             Each code has one HTTP status; a code, once published, keeps its spelling and status.\n",
        );
        for code in Code::ALL {
            description.push_str(&format!(
                "\n- `{code}` ({}): {}",
                code.status().as_u16(),
                code.description()
            ));
        }
        let descriptions: Vec<String> = Code::ALL
            .iter()
            .map(|code| format!("{} {}", code.status().as_u16(), code.description()))
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Code::ALL.iter().map(|code| code.as_str())))
            .description(Some(description))
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add("x-enum-descriptions", descriptions)
                    .build(),
            ))
            .into()
    }
}

impl ToSchema for Code {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProblemCode")
    }
}
