//! Where a request goes on a cluster node: to the node itself (probes,
//! documents, the shared catalog and keys), to the partition that holds its
//! SKU or reservation, or nowhere yet (it spans partitions). A pure
//! function of the request's method, path, query and body, so every node
//! sends a request to the same place.

use axum::http::Method;
use omnistock_cluster::{PartitionId, Partitions};
use serde_json::Value;

/// A request's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Answered by this node: probes, documents, reads of the catalog and
    /// keys, unknown routes, and bodies too broken to name a SKU (whose
    /// answer is the same validation problem on any engine).
    Node,
    /// This node's cluster view (`GET /v1/cluster`).
    ClusterStatus,
    /// This node's readiness (`GET /readyz`).
    Ready,
    /// A change of the shared catalog (locations, groups, policies).
    SharedCatalog,
    /// A change of the shared API keys.
    SharedKeys,
    /// The engine of this partition, wherever it runs.
    Partition(PartitionId),
    /// Split by its items' partitions, answered together.
    Spread(Spread),
    /// An operation on a cart across partitions, whose record lives in
    /// this partition (its id says so).
    Cart(PartitionId),
    /// A form a cluster cannot answer; the detail says what to send.
    CrossPartition(String),
}

/// The requests a node splits over the partitions they concern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// `POST /v1/availability/batch`: one batch per partition of its items.
    AvailabilityBatch,
    /// `POST /v1/movements/batch`: one batch per partition of its items.
    MovementBatch,
    /// `GET /v1/admin/audit`: every partition's audit, added up.
    Audit,
    /// `GET /v1/feeds/...`: every partition's feed, one after the other.
    Feed,
    /// `GET /v1/streams/availability` without `?sku=`: every partition's
    /// stream at once.
    Stream,
    /// `POST /v1/stock/import`: each row to its partition, in batches.
    Import,
    /// `GET /v1/journal` without `?sku=`: every partition's, merged.
    Journal,
    /// `POST /v1/reservations` with lines in several partitions: a cart,
    /// one part per partition, all or nothing.
    Cart,
    /// `POST /v1/sales` with lines in several partitions: a cart whose
    /// parts are committed once all are placed.
    Sale,
}

/// The operations a cluster node may refuse with 501
/// `cross_partition_not_supported` (a form only one engine can answer: the
/// journal's `since`): the OpenAPI document lists the 501 on each.
pub const CROSS_PARTITION_OPERATIONS: &[(&str, &str)] = &[("GET", "/v1/journal")];

/// A path segment, percent-decoded (a SKU may hold any character).
fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The destination of a request. `body` is the whole request body (empty
/// for reads).
pub fn target(
    partitions: Partitions,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Target {
    by_path(partitions, method, path, query)
        .unwrap_or_else(|| by_path_and_body(partitions, method, path, body))
}

/// The destination as far as the method, path and query tell it; `None`
/// when the body's SKUs decide. What spans partitions is known without the
/// body, so a streamed import is refused before it is read.
pub fn by_path(
    partitions: Partitions,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let write = method != Method::GET && method != Method::HEAD;
    let get = method == Method::GET;
    let known = match segments.as_slice() {
        // Other methods: the node's API answers 405.
        ["readyz"] if get => Target::Ready,
        ["v1", "cluster"] if get => Target::ClusterStatus,
        ["v1", "locations", _] | ["v1", "groups", _] | ["v1", "policies"] if write => {
            Target::SharedCatalog
        }
        ["v1", "keys"] | ["v1", "keys", _] if write => Target::SharedKeys,
        ["v1", "availability", "batch"] if method == Method::POST => {
            Target::Spread(Spread::AvailabilityBatch)
        }
        ["v1", "movements", "batch"] if method == Method::POST => {
            Target::Spread(Spread::MovementBatch)
        }
        ["v1", "availability", "batch"] | ["v1", "movements", "batch"] => Target::Node,
        ["v1", "admin", "audit"] if get => Target::Spread(Spread::Audit),
        ["v1", "availability", sku]
        | ["v1", "stock", _, sku]
        | ["v1", "stock", _, sku, "display"] => Target::Partition(partitions.of(&decoded(sku))),
        ["v1", "nearby"] => by_query_sku(partitions, query),
        ["v1", "reservations"]
        | ["v1", "sales"]
        | ["v1", "returns"]
        | ["v1", "receipts"]
        | ["v1", "incoming"]
        | ["v1", "adjustments"] => return None,
        ["v1", "reservations", id, ..] => by_reservation_id(partitions, id),
        ["v1", "stock", "import"] if method == Method::POST => Target::Spread(Spread::Import),
        // One SKU's movements are all in its partition's journal; every
        // SKU's are every partition's, continued with `cursor`.
        ["v1", "journal"] if get => {
            match (query_param(query, "sku"), query_param(query, "since")) {
                (Some(sku), _) => Target::Partition(partitions.of(&sku)),
                (None, Some(_)) => cross(
                    "`since` is a sequence of one partition's journal: a cluster's journal of every \
                 SKU continues with `cursor` (from `next_cursor`), or ask for one SKU's (`?sku=`)",
                ),
                (None, None) => Target::Spread(Spread::Journal),
            }
        }
        ["v1", "feeds", ..] if get => Target::Spread(Spread::Feed),
        // One SKU's stream is its partition's.
        ["v1", "streams", ..] if get => match query_param(query, "sku") {
            Some(sku) => Target::Partition(partitions.of(&sku)),
            None => Target::Spread(Spread::Stream),
        },
        _ => Target::Node,
    };
    Some(known)
}

fn cross(detail: &str) -> Target {
    Target::CrossPartition(detail.to_owned())
}

/// `?sku=` of the nearby query; without one, the node answers the
/// validation problem.
fn by_query_sku(partitions: Partitions, query: Option<&str>) -> Target {
    let sku = query_param(query, "sku");
    sku.map_or(Target::Node, |sku| Target::Partition(partitions.of(&sku)))
}

/// The first value of `name` in the query, decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(found, _)| found == name)
        .map(|(_, value)| value.into_owned())
}

/// A reservation lives in the partition its id names (its top 16 bits);
/// an id that names none is not found on any engine, the node says so.
fn by_reservation_id(partitions: Partitions, id: &str) -> Target {
    let id = id.parse::<u64>().ok();
    if let Some(home) = id.and_then(|id| omnistock_cluster::cart_home(partitions, id)) {
        return Target::Cart(home);
    }
    let partition = id
        .and_then(|id| u16::try_from(id >> 48).ok())
        .and_then(|index| partitions.get(index));
    partition.map_or(Target::Node, Target::Partition)
}

/// The destination of a write whose body decides (`by_path` said `None`):
/// a reservation with lines in several partitions is a cart.
pub fn by_path_and_body(
    partitions: Partitions,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Target {
    match by_body(partitions, body) {
        Target::CrossPartition(_) if method == Method::POST && path == "/v1/reservations" => {
            Target::Spread(Spread::Cart)
        }
        Target::CrossPartition(_) if method == Method::POST && path == "/v1/sales" => {
            Target::Spread(Spread::Sale)
        }
        // No other body names several SKUs: the node's API answers its
        // validation problem, as any engine would.
        Target::CrossPartition(_) => Target::Node,
        other => other,
    }
}

/// The SKUs a write or batch body names: its own `sku`, and those of its
/// `lines` and `items`. One partition: there; several: not yet; none (a
/// body that is not JSON, or has no SKU): the node's validation problem.
pub fn by_body(partitions: Partitions, body: &[u8]) -> Target {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Target::Node;
    };
    let mut skus = Vec::new();
    if let Some(sku) = value.get("sku").and_then(Value::as_str) {
        skus.push(sku);
    }
    for list in ["lines", "items"] {
        if let Some(entries) = value.get(list).and_then(Value::as_array) {
            skus.extend(entries.iter().filter_map(|e| e.get("sku")?.as_str()));
        }
    }
    let mut found: Vec<PartitionId> = skus.iter().map(|sku| partitions.of(sku)).collect();
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [] => Target::Node,
        [one] => Target::Partition(*one),
        several => Target::CrossPartition(format!(
            "the SKUs of this request live in {} partitions; send one request per partition",
            several.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions() -> Partitions {
        Partitions::new(64).expect("count")
    }

    fn post(path: &str, body: &str) -> Target {
        target(partitions(), &Method::POST, path, None, body.as_bytes())
    }

    fn get(path: &str, query: Option<&str>) -> Target {
        target(partitions(), &Method::GET, path, query, b"")
    }

    /// Two SKUs of different partitions.
    fn two_partitions() -> (String, String) {
        let p = partitions();
        let a = "SKU-00042".to_owned();
        let b = (0..)
            .map(|i| format!("SKU-{i}"))
            .find(|s| p.of(s) != p.of(&a))
            .expect("another partition");
        (a, b)
    }

    #[test]
    fn a_sku_routes_to_its_partition_however_it_comes() {
        let p = partitions();
        let here = Target::Partition(p.of("SKU-00042"));
        assert_eq!(get("/v1/availability/SKU-00042", None), here);
        assert_eq!(get("/v1/stock/PAR-01/SKU-00042", None), here);
        assert_eq!(get("/v1/nearby", Some("lat=1&sku=SKU-00042&lon=2")), here);
        let line = r#"{"channel":"web","lines":[{"sku":"SKU-00042","location":"A","qty":1}]}"#;
        assert_eq!(post("/v1/reservations", line), here);
        assert_eq!(post("/v1/returns", r#"{"sku":"SKU-00042"}"#), here);
        // Percent-encoded in a path: the SKU as decoded.
        let odd = "ÉTÉ 2026/x";
        let encoded = "%C3%89T%C3%89%202026%2Fx";
        assert_eq!(
            get(&format!("/v1/availability/{encoded}"), None),
            Target::Partition(p.of(odd))
        );
    }

    #[test]
    fn carts_and_sales_across_partitions_are_coordinated() {
        let (a, b) = two_partitions();
        let cart = format!(
            r#"{{"lines":[{{"sku":"{a}","location":"A","qty":1}},{{"sku":"{b}","location":"A","qty":1}}]}}"#
        );
        assert_eq!(
            post("/v1/reservations", &cart),
            Target::Spread(Spread::Cart)
        );
        assert_eq!(post("/v1/sales", &cart), Target::Spread(Spread::Sale));
        // No other body names SKUs of several partitions: the node's API
        // answers its validation problem.
        assert_eq!(post("/v1/returns", &cart), Target::Node);
        // A cart's id names its home partition.
        let home = partitions().get(9).expect("p9");
        let id = omnistock_cluster::cart_id(home, 77);
        assert_eq!(
            post(&format!("/v1/reservations/{id}/commit"), ""),
            Target::Cart(home)
        );
        assert_eq!(get("/v1/journal", None), Target::Spread(Spread::Journal));
        assert!(matches!(
            get("/v1/journal", Some("since=5")),
            Target::CrossPartition(_)
        ));
        assert_eq!(post("/v1/stock/import", ""), Target::Spread(Spread::Import));
    }

    #[test]
    fn batches_and_the_audit_are_spread_and_one_skus_journal_is_its_partitions() {
        let (a, b) = two_partitions();
        let items = format!(r#"{{"items":[{{"sku":"{a}"}},{{"sku":"{b}"}}]}}"#);
        let spread = |s| Target::Spread(s);
        assert_eq!(
            post("/v1/availability/batch", &items),
            spread(Spread::AvailabilityBatch)
        );
        assert_eq!(
            post("/v1/movements/batch", &items),
            spread(Spread::MovementBatch)
        );
        assert_eq!(get("/v1/admin/audit", None), spread(Spread::Audit));
        let feed = get("/v1/feeds/meta/local-inventory", Some("since=k1.1.1"));
        assert_eq!(feed, spread(Spread::Feed));
        assert_eq!(
            get("/v1/journal", Some("limit=5&sku=SKU-1")),
            Target::Partition(partitions().of("SKU-1"))
        );
        // Other methods: the node answers 405.
        assert_eq!(get("/v1/availability/batch", None), Target::Node);
    }

    #[test]
    fn the_documented_cross_partition_operations_are_those_refused() {
        let (a, b) = two_partitions();
        let body = format!(
            r#"{{"lines":[{{"sku":"{a}"}},{{"sku":"{b}"}}],"items":[{{"sku":"{a}"}},{{"sku":"{b}"}}]}}"#
        );
        for (method, path) in CROSS_PARTITION_OPERATIONS {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let found = target(
                partitions(),
                &method,
                path,
                Some("since=1"),
                body.as_bytes(),
            );
            assert!(
                matches!(found, Target::CrossPartition(_)),
                "{method} {path}: {found:?}"
            );
        }
        // Probes answer their own methods only.
        let trace = Method::from_bytes(b"TRACE").expect("method");
        assert_eq!(
            target(partitions(), &trace, "/readyz", None, b""),
            Target::Node
        );
        assert_eq!(
            target(partitions(), &Method::POST, "/v1/cluster", None, b""),
            Target::Node
        );
    }

    #[test]
    fn reservation_ids_name_their_partition() {
        let id = (17_u64 << 48) | 12_345;
        let path = format!("/v1/reservations/{id}/commit");
        assert_eq!(
            post(&path, ""),
            Target::Partition(partitions().get(17).expect("p17"))
        );
        // Beyond the partitions, or not a number: no engine has it.
        let beyond = (64_u64 << 48) | 1;
        assert_eq!(
            get(&format!("/v1/reservations/{beyond}"), None),
            Target::Node
        );
        assert_eq!(get("/v1/reservations/abc", None), Target::Node);
    }

    #[test]
    fn the_shared_catalog_and_keys_and_the_node_routes() {
        let put = |path: &str| target(partitions(), &Method::PUT, path, None, b"{}");
        assert_eq!(put("/v1/locations/PAR-01"), Target::SharedCatalog);
        assert_eq!(put("/v1/groups/paris"), Target::SharedCatalog);
        assert_eq!(put("/v1/policies"), Target::SharedCatalog);
        assert_eq!(post("/v1/keys", "{}"), Target::SharedKeys);
        let delete = target(partitions(), &Method::DELETE, "/v1/keys/key_1", None, b"");
        assert_eq!(delete, Target::SharedKeys);
        assert_eq!(get("/v1/locations", None), Target::Node);
        assert_eq!(get("/v1/keys", None), Target::Node);
        assert_eq!(get("/readyz", None), Target::Ready);
        assert_eq!(get("/v1/cluster", None), Target::ClusterStatus);
        assert_eq!(get("/metrics", None), Target::Node);
        assert_eq!(post("/v1/reservations", "not json"), Target::Node);
        assert_eq!(post("/v1/reservations", r#"{"lines":[]}"#), Target::Node);
    }
}
