//! Carts across partitions, all or nothing. A reservation whose lines live
//! in several partitions is coordinated by the node that received it:
//!
//! 1. Its request is checked as the single node checks it (lines, scope
//!    at every location) before anything is written.
//! 2. Its decision record is started in its home partition (the partition
//!    of its namespaced `Idempotency-Key`, else of its first line), which
//!    gives the cart its id; a retry finds the record through the key.
//!    Nothing is placed under an id no replica has confirmed.
//! 3. Each partition's share of the lines is listed in that partition
//!    (`carts:parts`, confirmed by a replica), then placed there as an
//!    ordinary reservation (a part) under the idempotency key
//!    `~cart/ID/ATTEMPT`, all at once.
//! 4. The decision is recorded by compare-and-set on the pending attempt:
//!    granted (every part placed: the answer is the cart), refused (a part
//!    was refused: the answer is that refusal, every short line of every
//!    part in one 409), or aborted (a partition could not answer: 503, a
//!    retry with the same key undoes this attempt's parts and starts the
//!    next).
//! 5. A refused or aborted attempt's placed parts are released; a grant
//!    not known to be recorded keeps them (it may stand).
//!
//! A coordinator that stops anywhere leaves a pending or decided record
//! and listed parts: the owner of each partition undoes, after
//! [`ATTEMPT_MS`], the parts of an attempt that was not granted
//! (`cart_recovery.rs`), so nothing stays held longer than that (plus a
//! scan and, if the partition moves, a takeover). Operations on a granted
//! cart act on every part (`cart_ops.rs`).

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ClusterNode;
use super::dispatch::call;
use super::forward::Envelope;
use super::spread::{PartAnswer, ask_each};
use crate::engine::Scope;
use crate::http::auth::Caller;
use crate::http::dto::{self, ReserveBody, SaleBody};
use crate::http::error::ApiError;
use crate::http::error_codes::Code;
use crate::http::routes::reservations::order;
use crate::http::{IdempotencyHeader, idempotency_key};
use crate::store::cluster_carts::{
    Begun, CartKind, CartRecord, CartStart, CartState, Decided, Decision,
};
use omnistock_cluster::PartitionId;

/// An attempt that has not decided within this long may be aborted (by a
/// partition's owner, or by a retry): longer than placing its parts can
/// take (a moving partition is waited for 5 s, a forward 10 s).
pub(super) const ATTEMPT_MS: u64 = 20_000;
/// How long a cart's record and key are kept beyond its hold.
pub(super) const RETENTION_MS: u64 = 24 * 3_600_000;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// How long the parts of a sale are held before they are committed: past
/// an attempt's time, so a partition's owner can still commit the parts
/// of a granted sale whose coordinator stopped.
pub(super) const SALE_HOLD_SECONDS: u64 = 120;

/// The idempotency key a part of a cart's attempt is placed under (in the
/// caller's namespace, as every key).
pub(super) fn part_key(id: u64, attempt: u32) -> String {
    format!("~cart/{id}/{attempt}")
}

/// The idempotency key a part of a sale is committed under.
pub(super) fn commit_key(id: u64, attempt: u32) -> String {
    format!("~cart/{id}/{attempt}/commit")
}

/// One attempt of one cart.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attempt {
    /// Where the cart's record lives.
    pub(super) home: PartitionId,
    pub(super) id: u64,
    pub(super) number: u32,
}

/// A cart's request: its body, and its lines grouped by partition.
pub(super) struct Cart {
    kind: CartKind,
    pub(super) body: Value,
    pub(super) parts: Vec<CartPart>,
    fingerprint: String,
    ttl_ms: u64,
}

pub(super) struct CartPart {
    pub(super) partition: PartitionId,
    lines: Vec<Value>,
}

impl Cart {
    /// The cart in a reservation (or sale) body, checked as the single
    /// node checks it before anything is written: its lines, channel,
    /// customer or reference, and the caller's scope at every location.
    /// `None` when the body is not valid JSON of that shape (the node's API
    /// answers its problem, as any engine would).
    pub(super) fn parse(
        node: &ClusterNode,
        kind: CartKind,
        body: &[u8],
        caller: &Caller,
    ) -> Option<Result<Cart, ApiError>> {
        let max_lines = node.shared.engine().ledger().config().max_lines_per_request;
        let admitted = match kind {
            CartKind::Reservation => {
                let typed: ReserveBody = serde_json::from_slice(body).ok()?;
                admit_reservation(&typed, max_lines, caller).map(|()| typed.ttl_seconds)
            }
            CartKind::Sale => {
                let typed: SaleBody = serde_json::from_slice(body).ok()?;
                admit_sale(&typed, max_lines, caller).map(|()| SALE_HOLD_SECONDS)
            }
        };
        Some(admitted.and_then(|ttl_seconds| {
            Cart::grouped(node, kind, body, ttl_seconds)
                .ok_or_else(|| ApiError::new(Code::InvalidBody, "every line needs a `sku`"))
        }))
    }

    fn grouped(node: &ClusterNode, kind: CartKind, body: &[u8], ttl_seconds: u64) -> Option<Cart> {
        let body: Value = serde_json::from_slice(body).ok()?;
        let mut parts: Vec<CartPart> = Vec::new();
        for line in body.get("lines")?.as_array()? {
            let partition = node.partitions().of(line.get("sku")?.as_str()?);
            match parts.iter_mut().find(|p| p.partition == partition) {
                Some(part) => part.lines.push(line.clone()),
                None => parts.push(CartPart {
                    partition,
                    lines: vec![line.clone()],
                }),
            }
        }
        parts.sort_by_key(|p| p.partition);
        // Parsed again, the body's text no longer depends on its spacing
        // or its members' order.
        let digest = Sha256::digest(format!("{kind:?} {body}").as_bytes());
        let fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(Cart {
            kind,
            body,
            parts,
            fingerprint,
            ttl_ms: ttl_seconds.saturating_mul(1_000),
        })
    }
}

/// A reservation's checks on a single node (`routes::reservations::create`).
fn admit_reservation(
    body: &ReserveBody,
    max_lines: usize,
    caller: &Caller,
) -> Result<(), ApiError> {
    let lines = dto::lines(&body.lines, max_lines)?;
    caller.require_at(Scope::Reserve, lines.iter().map(|l| &l.location))?;
    order(body, lines).map(|_| ())
}

/// A sale's checks on a single node (`routes::stock::sale`); and, as its
/// lines are first held in their partitions, the scope to hold them.
fn admit_sale(body: &SaleBody, max_lines: usize, caller: &Caller) -> Result<(), ApiError> {
    let lines = dto::lines(&body.lines, max_lines)?;
    caller.require_at(Scope::StockWrite, lines.iter().map(|l| &l.location))?;
    dto::channel(&body.channel)?;
    dto::free_text("reference", body.reference.as_ref())?;
    caller
        .require_at(Scope::Reserve, lines.iter().map(|l| &l.location))
        .map_err(|_| {
            ApiError::new(
                Code::Forbidden,
                "a sale whose lines live in several partitions holds them before it sells them: \
                 it needs the `pos` scope at its locations, or `reserve` with `stock_write`",
            )
        })
}

/// `POST /v1/reservations` or `POST /v1/sales` with lines in several
/// partitions.
pub async fn create(node: &ClusterNode, kind: CartKind, envelope: &Envelope) -> Response {
    let caller = match super::status::authenticate(node, &envelope.headers) {
        Ok(caller) => caller,
        Err(unauthorized) => return unauthorized.into_response(),
    };
    let caller = Caller(caller);
    let cart = match Cart::parse(node, kind, &envelope.body, &caller) {
        Some(Ok(cart)) => cart,
        Some(Err(problem)) => return problem.into_response(),
        None => return call(&node.node_app, envelope).await,
    };
    let key = match namespaced_key(envelope, &caller) {
        Ok(key) => key,
        Err(problem) => return problem.into_response(),
    };
    let home = match &key {
        Some(key) => node.partitions().of(key),
        None => cart.parts[0].partition,
    };
    let start = CartStart {
        kind,
        fingerprint: &cart.fingerprint,
        caller: &caller.0.id,
        request: &envelope.body,
    };
    let retain_ms = cart.ttl_ms.saturating_add(RETENTION_MS);
    let begun = node
        .store
        .begin_cart(home, key.as_deref(), start, retain_ms)
        .await;
    match begun {
        Ok(Begun::New(record)) => {
            let at = Attempt {
                home,
                id: record.id,
                number: 1,
            };
            run(node, envelope, &cart, at).await
        }
        Ok(Begun::Existing(record)) => again(node, envelope, &cart, home, record).await,
        Ok(Begun::NotReplicated(id)) => {
            // Nothing placed: aborted at once, so a retry starts afresh.
            let at = Attempt {
                home,
                id,
                number: 1,
            };
            let _ = abort(node, at).await;
            ApiError::new(
                Code::NotDurable,
                "the cart's record is on the Redis master, but no replica confirmed it; retry with the same Idempotency-Key",
            )
            .into_response()
        }
        Err(error) => store_unavailable(&error.to_string()),
    }
}

/// The request's `Idempotency-Key` in the caller's namespace, checked as
/// every handler checks it.
fn namespaced_key(envelope: &Envelope, caller: &Caller) -> Result<Option<String>, ApiError> {
    let header = IdempotencyHeader(envelope.headers.get(IDEMPOTENCY_KEY).cloned());
    let key = idempotency_key(&header, caller)?;
    Ok(key.map(|k| k.as_str().to_owned()))
}

/// A retry of a cart this key started: the same answer once decided (a
/// granted sale not yet committed is finished first); a new attempt after
/// an aborted one (or one left pending too long).
async fn again(
    node: &ClusterNode,
    envelope: &Envelope,
    cart: &Cart,
    home: PartitionId,
    record: CartRecord,
) -> Response {
    if record.fingerprint != cart.fingerprint {
        return ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key was used with another request",
        )
        .into_response();
    }
    let at = Attempt {
        home,
        id: record.id,
        number: record.attempt,
    };
    let abandoned = record.state == CartState::Pending
        && matches!(
            move_on(node, at, CartState::Pending, CartState::Aborted, ATTEMPT_MS).await,
            Ok(Decided::Done | Decided::NotReplicated)
        );
    match record.state {
        CartState::Granted if record.kind == CartKind::Sale && record.status == 0 => {
            return super::cart_sale::finish(node, envelope, cart, at, &record.parts).await;
        }
        CartState::Granted | CartState::Refused => return stored_answer(&record),
        CartState::Pending if !abandoned => return in_flight(),
        CartState::Pending | CartState::Aborted => {}
    }
    match move_on(node, at, CartState::Aborted, CartState::Pending, 0).await {
        Ok(Decided::Done | Decided::NotReplicated) => {
            undo_parts(node, envelope, cart, at).await;
            let next = Attempt {
                number: at.number + 1,
                ..at
            };
            run(node, envelope, cart, next).await
        }
        Ok(Decided::Lost(_)) => in_flight(),
        Err(error) => store_unavailable(&error.to_string()),
    }
}

/// Undoes aborted attempt `at`'s parts before the next attempt places its
/// own (which would otherwise find their units still held): each part is
/// placed again under its key, which answers the part if it was placed
/// (or places it, if its coordinator never got that far), and released.
/// A part that cannot be undone now is undone by its partition's owner.
async fn undo_parts(node: &ClusterNode, envelope: &Envelope, cart: &Cart, at: Attempt) {
    let answers = place_parts(node, envelope, cart, at).await;
    let placed = placed_parts(cart, &answers);
    super::cart_ops::release_parts(node, envelope, &placed).await;
}

/// Moves the attempt from `from` to `to` with no answer (to `Pending`:
/// starts the next attempt), if it is at least `min_age_ms` old.
pub(super) async fn move_on(
    node: &ClusterNode,
    at: Attempt,
    from: CartState,
    to: CartState,
    min_age_ms: u64,
) -> Result<Decided, crate::store::cluster::ClusterStoreError> {
    let decision = Decision {
        attempt: at.number,
        from,
        to,
        status: 0,
        answer: b"",
        parts: &[],
        min_age_ms,
    };
    node.store.decide_cart(at.home, at.id, decision).await
}

/// One attempt: list and place every part, decide, tidy up, answer.
async fn run(node: &ClusterNode, envelope: &Envelope, cart: &Cart, at: Attempt) -> Response {
    let listed = join_all(
        cart.parts
            .iter()
            .map(|p| node.store.list_cart_part(p.partition, at.id, at.number)),
    )
    .await;
    if let Some(Err(error)) = listed.into_iter().find(Result::is_err) {
        let _ = abort(node, at).await;
        return store_unavailable(&error.to_string());
    }
    let answers = place_parts(node, envelope, cart, at).await;
    let outcome = Outcome::of(at.id, &answers);
    let placed = placed_parts(cart, &answers);
    let decided = decide(node, at, outcome.decision(cart.kind), &placed).await;
    // A grant not known to be recorded may yet stand: its parts stay (if
    // the attempt is aborted instead, the partitions' owners release them).
    let may_stand = matches!(outcome, Outcome::Granted(_))
        && matches!(decided, Ok(()) | Err(Unrecorded::Unsure(_)));
    if !may_stand {
        super::cart_ops::release_parts(node, envelope, &placed).await;
    }
    match (decided, outcome) {
        (Err(unrecorded), _) => unrecorded.into_response(),
        (Ok(()), Outcome::Granted(_)) if cart.kind == CartKind::Sale => {
            super::cart_sale::finish(node, envelope, cart, at, &placed).await
        }
        (Ok(()), Outcome::Granted(body)) => {
            forget_parts(node, cart, at).await;
            json_answer(StatusCode::CREATED, body)
        }
        (Ok(()), Outcome::Refused(status, body)) => json_answer(status, body),
        (Ok(()), Outcome::Failed(problem)) => problem,
    }
}

/// Places every part of attempt `at` at once; their answers, in order.
async fn place_parts(
    node: &ClusterNode,
    envelope: &Envelope,
    cart: &Cart,
    at: Attempt,
) -> Vec<PartAnswer> {
    let shares: Vec<(PartitionId, Envelope)> = cart
        .parts
        .iter()
        .map(|part| (part.partition, part_request(envelope, cart, part, at)))
        .collect();
    ask_each(node, &shares).await
}

/// Records `decision` (the record's new state, status and answer; `None`:
/// aborted) for attempt `at`, with the parts `placed` if granted.
async fn decide(
    node: &ClusterNode,
    at: Attempt,
    decision: Option<(CartState, u16, Bytes)>,
    placed: &[(u16, u64)],
) -> Result<(), Unrecorded> {
    let Some((to, status, body)) = decision else {
        return abort(node, at).await;
    };
    let parts = if to == CartState::Granted {
        placed
    } else {
        &[]
    };
    record(node, at, CartState::Pending, (to, status, &body), parts).await
}

/// What the parts' answers decide.
enum Outcome {
    /// Every part placed: the cart, as its client sees it.
    Granted(Bytes),
    /// A part refused: the answer, for good.
    Refused(StatusCode, Bytes),
    /// A part could not answer (unavailable, not durable, lost, rate
    /// limited): this attempt is aborted; the problem is the answer.
    Failed(Response),
}

impl Outcome {
    /// The record's move this outcome makes: its state, status and answer
    /// (a sale's status is 0 until its parts are committed); `None`: the
    /// attempt is aborted.
    fn decision(&self, kind: CartKind) -> Option<(CartState, u16, Bytes)> {
        match self {
            Outcome::Granted(body) if kind == CartKind::Sale => {
                Some((CartState::Granted, 0, body.clone()))
            }
            Outcome::Granted(body) => Some((
                CartState::Granted,
                StatusCode::CREATED.as_u16(),
                body.clone(),
            )),
            Outcome::Refused(status, body) => {
                Some((CartState::Refused, status.as_u16(), body.clone()))
            }
            Outcome::Failed(_) => None,
        }
    }

    fn of(id: u64, answers: &[PartAnswer]) -> Outcome {
        let passing = |status: StatusCode| {
            status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
        };
        if let Some(failed) = answers
            .iter()
            .find_map(|a| a.as_ref().err().filter(|p| passing(p.status)))
        {
            return Outcome::Failed(failed.to_response());
        }
        let refusals: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
        if refusals.is_empty() {
            let parts: Vec<&Value> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
            let cart = super::cart_ops::merge(id, &parts);
            return Outcome::Granted(Bytes::from(cart.to_string()));
        }
        // Another refusal than stock comes first (as on one engine, where
        // a request is checked before stock is); short lines are reported
        // together, every part's.
        let short = |code: &Value| code.as_str() == Some(Code::InsufficientStock.as_str());
        if let Some(first) = refusals.iter().find(|p| !short(&p.problem["code"])) {
            return Outcome::Refused(first.status, first.body.clone());
        }
        let first = refusals[0];
        let mut problem = first.problem.clone();
        let shortfalls: Vec<Value> = refusals
            .iter()
            .filter_map(|p| p.problem["shortfalls"].as_array())
            .flatten()
            .cloned()
            .collect();
        problem["shortfalls"] = Value::Array(shortfalls);
        Outcome::Refused(first.status, Bytes::from(problem.to_string()))
    }
}

/// The parts placed by this attempt: (partition, part id).
fn placed_parts(cart: &Cart, answers: &[PartAnswer]) -> Vec<(u16, u64)> {
    cart.parts
        .iter()
        .zip(answers)
        .filter_map(|(part, answer)| {
            let id = answer.as_ref().ok()?["id"].as_str()?.parse().ok()?;
            Some((part.partition.index(), id))
        })
        .collect()
}

/// Why a decision was not recorded.
pub(super) enum Unrecorded {
    /// Another decision came first (the attempt was aborted).
    Lost,
    /// Not known to be recorded (no replica confirmed it, or the store
    /// could not be reached): it may yet stand. The problem to answer.
    Unsure(Response),
}

impl IntoResponse for Unrecorded {
    fn into_response(self) -> Response {
        match self {
            Unrecorded::Lost => too_late(),
            Unrecorded::Unsure(problem) => problem,
        }
    }
}

/// Records the attempt's move from `from` to `to` with its answer (status
/// 0: not yet, a sale's; from `Granted` to `Granted`: a sale's answer);
/// else why not (a retry with the same key finds out how it ended).
pub(super) async fn record(
    node: &ClusterNode,
    at: Attempt,
    from: CartState,
    (to, status, answer): (CartState, u16, &[u8]),
    parts: &[(u16, u64)],
) -> Result<(), Unrecorded> {
    let decision = Decision {
        attempt: at.number,
        from,
        to,
        status,
        answer,
        parts,
        min_age_ms: 0,
    };
    match node.store.decide_cart(at.home, at.id, decision).await {
        Ok(Decided::Done) => Ok(()),
        Ok(Decided::NotReplicated) => Err(Unrecorded::Unsure(
            ApiError::new(
                Code::NotDurable,
                "the cart's decision is on the Redis master, but no replica confirmed it; retry with the same Idempotency-Key",
            )
            .into_response(),
        )),
        Ok(Decided::Lost(_)) => Err(Unrecorded::Lost),
        Err(error) => Err(Unrecorded::Unsure(store_unavailable(&error.to_string()))),
    }
}

/// Aborts the attempt (its parts are released by the caller, or later by
/// their partitions' owners).
async fn abort(node: &ClusterNode, at: Attempt) -> Result<(), Unrecorded> {
    match move_on(node, at, CartState::Pending, CartState::Aborted, 0).await {
        Ok(Decided::Done | Decided::NotReplicated) => Ok(()),
        Ok(Decided::Lost(_)) => Err(Unrecorded::Lost),
        Err(error) => Err(Unrecorded::Unsure(store_unavailable(&error.to_string()))),
    }
}

/// A granted attempt's parts need no undoing: no longer listed.
pub(super) async fn forget_parts(node: &ClusterNode, cart: &Cart, at: Attempt) {
    let forgetting = cart
        .parts
        .iter()
        .map(|p| node.store.forget_cart_part(p.partition, at.id, at.number));
    for result in join_all(forgetting).await {
        if let Err(error) = result {
            // Left listed: its partition's owner drops it (the cart is granted).
            tracing::warn!(%error, cart = at.id, "cannot unlist a cart's part");
        }
    }
}

/// The reservation of one partition's share of the cart (for a sale: held
/// for [`SALE_HOLD_SECONDS`], then committed).
fn part_request(envelope: &Envelope, cart: &Cart, part: &CartPart, at: Attempt) -> Envelope {
    let lines = Value::Array(part.lines.clone());
    let body = match cart.kind {
        CartKind::Reservation => {
            let mut body = cart.body.clone();
            body["lines"] = lines;
            body
        }
        CartKind::Sale => json!({"channel": cart.body["channel"], "lines": lines,
                                 "ttl_seconds": SALE_HOLD_SECONDS}),
    };
    let mut share = Envelope {
        method: axum::http::Method::POST,
        uri: axum::http::Uri::from_static("/v1/reservations"),
        body: Bytes::from(body.to_string()),
        ..envelope.clone()
    };
    if let Ok(key) = HeaderValue::from_str(&part_key(at.id, at.number)) {
        share.headers.insert(IDEMPOTENCY_KEY, key);
    }
    share
}

/// An answer made here (a cart, or a problem).
pub(super) fn json_answer(status: StatusCode, body: Bytes) -> Response {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn stored_answer(record: &CartRecord) -> Response {
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_answer(status, Bytes::from(record.answer.clone()))
}

fn in_flight() -> Response {
    ApiError::new(
        Code::IdempotencyInFlight,
        "a request with this Idempotency-Key is in progress; retry later",
    )
    .into_response()
}

fn too_late() -> Response {
    ApiError::new(
        Code::PartitionUnavailable,
        "the cart's parts took too long to place and were given up; retry with the same Idempotency-Key",
    )
    .into_response()
}

pub(super) fn store_unavailable(why: &str) -> Response {
    ApiError::new(
        Code::ClusterStoreUnavailable,
        format!("the cart's record could not be read or written: {why}"),
    )
    .into_response()
}
