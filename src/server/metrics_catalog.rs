//! Every metric the engine exports, with its HELP text, in one table.
//! `describe_all` registers the descriptions once, when the process-wide
//! recorder is installed (`server::metrics_handle`): a Prometheus scraper and
//! `promtool check metrics` need a HELP line per family, and a description
//! given after the recorder exists is the only kind that reaches it.
//!
//! Counters that may legitimately stay at zero (flush errors, expiries,
//! replays, durability failures) are registered at 0 here too: a series that
//! only appears after its first event breaks `rate()` and alerts written as
//! `x > 0` until that event, and hides the difference between "never
//! happened" and "not exported".

/// What kind of Prometheus family a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric family.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label sets to register at 0 at start (counters only); empty: the
    /// family appears with its first event (its labels are not known before).
    pub zero: &'static [&'static [(&'static str, &'static str)]],
}

const NO_LABELS: &[&[(&str, &str)]] = &[&[]];

/// Every metric family of the engine. A test (`tests/it/metrics.rs`) holds this
/// table equal to the names used in `src/`.
pub const CATALOG: &[Metric] = &[
    // HTTP (src/http/track.rs, src/http/request_metrics.rs, src/server/listen.rs)
    Metric {
        name: "omnistock_http_requests_total",
        kind: Kind::Counter,
        help: "HTTP requests answered, by matched route, method and status; a streamed response is counted when its body ends",
        zero: &[],
    },
    Metric {
        name: "omnistock_http_request_duration_seconds",
        kind: Kind::Histogram,
        help: "Time from receiving a request to the end of its response body (the whole stream for feeds and live streams), by matched route",
        zero: &[],
    },
    Metric {
        name: "omnistock_http_response_body_bytes_total",
        kind: Kind::Counter,
        help: "Response body bytes handed to the connection (before any transfer encoding), by matched route",
        zero: &[],
    },
    Metric {
        name: "omnistock_http_connections",
        kind: Kind::Gauge,
        help: "HTTP connections open (at most --max-connections)",
        zero: &[],
    },
    Metric {
        name: "omnistock_writes_not_durable_total",
        kind: Kind::Counter,
        help: "Sync durability mode: successful writes answered 503 not_durable because the store did not confirm them",
        zero: NO_LABELS,
    },
    // Reservations (src/http/routes/reservations.rs, expiry)
    Metric {
        name: "omnistock_reservations_total",
        kind: Kind::Counter,
        help: "Reservation requests by outcome: granted (new holds), refused (new refusals), replayed (an Idempotency-Key retry answered with the stored outcome, granted or refused)",
        zero: &[
            &[("outcome", "granted")],
            &[("outcome", "refused")],
            &[("outcome", "replayed")],
        ],
    },
    Metric {
        name: "omnistock_oversell_refused_total",
        kind: Kind::Counter,
        help: "Reservation requests refused for insufficient stock (oversells prevented); replays not counted",
        zero: NO_LABELS,
    },
    Metric {
        name: "omnistock_reservations_expired_total",
        kind: Kind::Counter,
        help: "Held reservations expired at their deadline (units returned to availability)",
        zero: NO_LABELS,
    },
    // Imports (src/http/routes/stock.rs)
    Metric {
        name: "omnistock_import_rows_total",
        kind: Kind::Counter,
        help: "Rows of streamed count imports, by outcome (applied or failed)",
        zero: &[&[("outcome", "applied")], &[("outcome", "failed")]],
    },
    // Ledger sizes, sampled at each scrape (src/http/routes/system.rs)
    Metric {
        name: "omnistock_positions",
        kind: Kind::Gauge,
        help: "Stock positions (SKU at location) held in memory",
        zero: &[],
    },
    Metric {
        name: "omnistock_reservations_stored",
        kind: Kind::Gauge,
        help: "Reservations held in memory, held or resolved within their retention",
        zero: &[],
    },
    Metric {
        name: "omnistock_idempotency_keys",
        kind: Kind::Gauge,
        help: "Idempotency keys remembered",
        zero: &[],
    },
    Metric {
        name: "omnistock_journal_head",
        kind: Kind::Gauge,
        help: "Sequence number the next stock movement will get (the feeds' cursor)",
        zero: &[],
    },
    // Live streams (src/http/routes/streams.rs)
    Metric {
        name: "omnistock_stream_subscribers",
        kind: Kind::Gauge,
        help: "Live availability streams (SSE) open",
        zero: &[],
    },
    // Write-behind store (src/store/write_behind.rs)
    Metric {
        name: "omnistock_write_behind_flushes_total",
        kind: Kind::Counter,
        help: "Write-behind flushes written to the store",
        zero: NO_LABELS,
    },
    Metric {
        name: "omnistock_write_behind_items_written_total",
        kind: Kind::Counter,
        help: "Positions, reservations and idempotency records written to the store",
        zero: NO_LABELS,
    },
    Metric {
        name: "omnistock_write_behind_flush_seconds",
        kind: Kind::Histogram,
        help: "Duration of successful write-behind flushes",
        zero: &[],
    },
    Metric {
        name: "omnistock_write_behind_full_rewrites_total",
        kind: Kind::Counter,
        help: "Full rewrites of the whole state to the store (first write, or the store came back empty or replaced)",
        zero: NO_LABELS,
    },
    Metric {
        name: "omnistock_write_behind_flush_errors_total",
        kind: Kind::Counter,
        help: "Write-behind flushes that failed (retried with backoff while serving from memory)",
        zero: NO_LABELS,
    },
    Metric {
        name: "omnistock_write_behind_backlog_items",
        kind: Kind::Gauge,
        help: "Changed items waiting to be written to the store",
        zero: &[],
    },
    Metric {
        name: "omnistock_write_behind_flush_lag_seconds",
        kind: Kind::Gauge,
        help: "Age of the oldest change not yet written to the store (async mode: the loss window now)",
        zero: &[],
    },
    Metric {
        name: "omnistock_write_behind_stream_backlog",
        kind: Kind::Gauge,
        help: "Movements (entries) waiting for the store's journal stream",
        zero: &[],
    },
    Metric {
        name: "omnistock_write_behind_stream_dropped",
        kind: Kind::Gauge,
        help: "Movements (entries) dropped from the store's journal stream backlog while the store was down, since start",
        zero: &[],
    },
    Metric {
        name: "omnistock_store_degraded",
        kind: Kind::Gauge,
        help: "1 while the last write to the store failed (serving from memory), else 0",
        zero: &[],
    },
];

/// Registers every description, and every zero-able counter at 0. Called
/// once per process, right after the recorder is installed; registering a
/// counter by `increment(0)` never resets one that already counts.
pub fn describe_all() {
    for metric in CATALOG {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
        if metric.kind != Kind::Counter {
            continue;
        }
        for labels in metric.zero {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|(key, value)| metrics::Label::new(*key, *value))
                .collect();
            metrics::counter!(metric.name, labels).increment(0);
        }
    }
}
