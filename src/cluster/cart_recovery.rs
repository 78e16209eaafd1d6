//! Finishing what a cart's coordinator left: every second, a node looks
//! at the parts listed in each partition it serves for longer than an
//! attempt may take (`ATTEMPT_MS`). A part whose attempt was granted is
//! unlisted (a granted sale's part is committed first); one whose attempt
//! was refused or aborted, or is still pending (its coordinator stopped:
//! the node aborts it, by compare-and-set), is
//! undone on the partition's engine here: placed again under its
//! idempotency key, which answers with the part if it was placed (or
//! places it, if its coordinator never got that far), and released. So no
//! part of a cart that was not granted stays held longer than
//! `ATTEMPT_MS`, a scan and, should the partition move, a takeover.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ClusterNode;
use super::carts::{ATTEMPT_MS, SALE_HOLD_SECONDS, commit_key, part_key};
use crate::engine::WriteError;
use crate::http::dto::{self, ReserveBody, SaleBody};
use crate::ledger::{Acting, CommitRequest, IdempotencyKey};
use crate::store::cluster_carts::{CartKind, CartRecord, CartState, Decided, Decision};
use omnistock_cluster::{PartitionId, cart_home};

const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Most listed parts looked at per partition and scan.
const PARTS_PER_SCAN: usize = 100;

/// Scans every [`SCAN_EVERY`] until `stopped`.
pub async fn run(node: Arc<ClusterNode>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SCAN_EVERY) => {}
            _ = stopped.changed() => return,
        }
        for partition in node.driver.served() {
            if let Err(error) = scan(&node, partition).await {
                tracing::warn!(%partition, %error, "cannot finish the carts listed here yet");
            }
        }
    }
}

async fn scan(node: &ClusterNode, partition: PartitionId) -> Result<(), String> {
    let store = &node.store;
    let due = store
        .due_cart_parts(partition, ATTEMPT_MS, PARTS_PER_SCAN)
        .await
        .map_err(|e| e.to_string())?;
    for (id, attempt) in due {
        let record = match cart_home(node.partitions(), id) {
            Some(home) => store.cart(home, id).await.map_err(|e| e.to_string())?,
            None => None,
        };
        let settle = match &record {
            // Its retention (its hold and a day) has passed: so has the part's hold.
            None => None,
            Some(r) if r.attempt == attempt && r.state == CartState::Granted => {
                // A granted sale's parts are committed; a cart's stay held.
                (r.kind == CartKind::Sale).then_some(Settle::Commit)
            }
            Some(r) if r.attempt == attempt && r.state == CartState::Pending => {
                match abandon(node, r).await? {
                    Some(true) => Some(Settle::Release),
                    // Decided meanwhile, or not old enough: next scan.
                    Some(false) | None => continue,
                }
            }
            Some(_) => Some(Settle::Release),
        };
        let done = match (&record, settle) {
            (Some(r), Some(settle)) => settle_part(node, partition, r, attempt, settle).await?,
            _ => true,
        };
        if done {
            store
                .forget_cart_part(partition, id, attempt)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Aborts a pending attempt that is too old; whether its parts are to be
/// undone (`None`: look again at the next scan).
async fn abandon(node: &ClusterNode, record: &CartRecord) -> Result<Option<bool>, String> {
    let Some(home) = cart_home(node.partitions(), record.id) else {
        return Ok(Some(true));
    };
    let decision = Decision {
        attempt: record.attempt,
        from: CartState::Pending,
        to: CartState::Aborted,
        status: 0,
        answer: b"",
        parts: &[],
        min_age_ms: ATTEMPT_MS,
    };
    let decided = node.store.decide_cart(home, record.id, decision).await;
    Ok(match decided.map_err(|e| e.to_string())? {
        Decided::Done | Decided::NotReplicated => {
            tracing::info!(
                cart = record.id,
                attempt = record.attempt,
                "aborted a cart its coordinator left pending"
            );
            Some(true)
        }
        Decided::Lost(Some(CartState::Granted)) => Some(false),
        Decided::Lost(Some(_)) => Some(true),
        Decided::Lost(None) => None,
    })
}

/// What becomes of a listed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    /// Its attempt was not granted: released.
    Release,
    /// Its attempt is a granted sale: committed.
    Commit,
}

/// Settles cart `record`'s part of `attempt` in `partition` on this node's
/// engine; `Ok(false)` when it could not be done now.
async fn settle_part(
    node: &ClusterNode,
    partition: PartitionId,
    record: &CartRecord,
    attempt: u32,
    settle: Settle,
) -> Result<bool, String> {
    let Some(serving) = node.engines.enter(partition).await else {
        return Ok(false);
    };
    let Some(caller) = node.shared.engine().keys().by_id(&record.caller) else {
        tracing::warn!(
            cart = record.id,
            key = record.caller,
            "the cart's key was revoked: its part lapses at its deadline"
        );
        return Ok(true);
    };
    let mut body = part_body(record).map_err(|e| format!("cart {}: {e}", record.id))?;
    body.lines
        .retain(|line| node.partitions().of(&line.sku) == partition);
    let max_lines = serving.engine.ledger().config().max_lines_per_request;
    let order = dto::lines(&body.lines, max_lines)
        .and_then(|lines| crate::http::routes::reservations::order(&body, lines));
    let Ok(order) = order else {
        // Refused as it was when placed: nothing was held.
        return Ok(true);
    };
    let key = IdempotencyKey::new(&format!("{}:{}", caller.id, part_key(record.id, attempt)))
        .map_err(|e| e.to_string())?;
    let part = match serving.engine.reserve(&caller, order, Some(&key)).await {
        Ok(part) => part,
        Err(WriteError::Refused(_)) => return Ok(true),
        Err(WriteError::NotDurable(_)) => return Ok(false),
    };
    let settled = match settle {
        Settle::Release => serving
            .engine
            .write(|writes| writes.release(part.id, Acting::Any, None))
            .await
            .map(drop),
        Settle::Commit => {
            let key =
                IdempotencyKey::new(&format!("{}:{}", caller.id, commit_key(record.id, attempt)))
                    .map_err(|e| e.to_string())?;
            let commit = CommitRequest {
                id: part.id,
                lines: None,
            };
            serving
                .engine
                .write(|writes| writes.commit(&commit, Acting::Any, Some(&key)))
                .await
                .map(drop)
        }
    };
    match settled {
        Err(WriteError::NotDurable(_)) => Ok(false),
        Err(WriteError::Refused(refusal)) if settle == Settle::Commit => {
            tracing::error!(cart = record.id, %refusal, "a granted sale's part could not be committed");
            Ok(true)
        }
        _ => Ok(true),
    }
}

/// The reservation a part was placed as, all lines (a sale's, as held).
fn part_body(record: &CartRecord) -> Result<ReserveBody, serde_json::Error> {
    match record.kind {
        CartKind::Reservation => serde_json::from_slice(&record.request),
        CartKind::Sale => {
            let sale: SaleBody = serde_json::from_slice(&record.request)?;
            Ok(ReserveBody {
                channel: sale.channel,
                lines: sale.lines,
                ttl_seconds: SALE_HOLD_SECONDS,
                customer_id: None,
            })
        }
    }
}
