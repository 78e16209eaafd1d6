//! API keys and scopes. Keys are random 256-bit secrets shown once at
//! creation; only their SHA-256 is kept, and they are never logged.
//! `OMNISTOCK_ADMIN_KEY` holds every scope.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::ledger::LocationCode;
use crate::store::{KeyRecord, KeySource, KeysRecord};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Availability, positions, reservations by id, locations.
    Read,
    /// Reserve and resolve reservations at any location.
    Reserve,
    /// Reserve, sell and take returns, only at the key's own locations.
    Pos,
    /// Counts, receipts, adjustments, expected receipts, imports.
    StockWrite,
    /// Ad feeds.
    Feed,
    /// Everything, including keys, locations, groups, policies, the journal.
    Admin,
}

/// A key as stored (without the secret).
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    /// For `pos` keys: the stores the key may act on.
    pub locations: Vec<LocationCode>,
    /// Most units this key may hold at once across its held reservations
    /// (overrides `--max-held-units-per-key`; 0: no cap).
    pub max_held_units: Option<u64>,
}

type Digest256 = [u8; 32];

fn digest(secret: &str) -> Digest256 {
    Sha256::digest(secret.as_bytes()).into()
}

pub struct KeyStore {
    by_digest: DashMap<Digest256, Arc<ApiKey>>,
    /// Bumped by every create and revoke, so the write-behind store knows
    /// when to persist the keys.
    generation: AtomicU64,
}

impl KeyStore {
    pub fn new(admin_secret: Option<&str>) -> KeyStore {
        let store = KeyStore {
            by_digest: DashMap::new(),
            generation: AtomicU64::new(0),
        };
        if let Some(secret) = admin_secret {
            let admin = ApiKey {
                id: "admin".into(),
                name: "OMNISTOCK_ADMIN_KEY".into(),
                scopes: [Scope::Admin].into(),
                locations: Vec::new(),
                max_held_units: None,
            };
            store.by_digest.insert(digest(secret), Arc::new(admin));
        }
        store
    }

    pub fn authenticate(&self, secret: &str) -> Option<Arc<ApiKey>> {
        self.by_digest.get(&digest(secret)).map(|k| Arc::clone(&k))
    }

    /// Creates a key; returns it with its secret (shown once).
    pub fn create(
        &self,
        name: String,
        scopes: BTreeSet<Scope>,
        locations: Vec<LocationCode>,
        max_held_units: Option<u64>,
    ) -> Result<(Arc<ApiKey>, String), ApiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::internal(format!("no randomness for a key: {e}")))?;
        let secret = format!("osk_{}", hex(&bytes));
        let id = format!("key_{}", &hex(&digest(&secret))[..16]);
        let key = Arc::new(ApiKey {
            id,
            name,
            scopes,
            locations,
            max_held_units,
        });
        self.by_digest.insert(digest(&secret), Arc::clone(&key));
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok((key, secret))
    }

    pub fn list(&self) -> Vec<Arc<ApiKey>> {
        let mut keys: Vec<_> = self
            .by_digest
            .iter()
            .map(|k| Arc::clone(k.value()))
            .filter(|k| k.id != "admin")
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }

    /// Keys held, the admin key included.
    pub fn count(&self) -> usize {
        self.by_digest.len()
    }

    pub fn revoke(&self, id: &str) -> bool {
        let before = self.by_digest.len();
        self.by_digest
            .retain(|_, key| key.id != id || id == "admin");
        let revoked = self.by_digest.len() < before;
        if revoked {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        revoked
    }

    /// Puts back keys loaded from the store (the admin key comes from the
    /// environment and is never stored). Refuses records it cannot read.
    pub fn restore(&self, record: KeysRecord) -> Result<usize, String> {
        let mut restored = 0;
        for key in record.keys {
            let digest = parse_digest(&key.digest_hex)
                .ok_or_else(|| format!("key {}: invalid digest", key.id))?;
            let scopes = key
                .scopes
                .iter()
                .map(|s| parse_scope(s).ok_or_else(|| format!("key {}: scope {s:?}", key.id)))
                .collect::<Result<BTreeSet<_>, _>>()?;
            let locations = key
                .locations
                .iter()
                .map(|l| LocationCode::new(l).map_err(|e| format!("key {}: {e}", key.id)))
                .collect::<Result<Vec<_>, _>>()?;
            self.by_digest.insert(
                digest,
                Arc::new(ApiKey {
                    id: key.id,
                    name: key.name,
                    scopes,
                    locations,
                    max_held_units: key.max_held_units,
                }),
            );
            restored += 1;
        }
        self.generation.store(record.generation, Ordering::SeqCst);
        Ok(restored)
    }
}

impl KeySource for KeyStore {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn export(&self) -> KeysRecord {
        // Generation first: a key added meanwhile bumps it again, so it is
        // written by the next flush at the latest.
        let generation = self.generation.load(Ordering::SeqCst);
        let mut keys: Vec<KeyRecord> = self
            .by_digest
            .iter()
            .filter(|entry| entry.value().id != "admin")
            .map(|entry| {
                let key = entry.value();
                KeyRecord {
                    id: key.id.clone(),
                    name: key.name.clone(),
                    scopes: key
                        .scopes
                        .iter()
                        .map(|s| scope_name(*s).to_owned())
                        .collect(),
                    locations: key
                        .locations
                        .iter()
                        .map(|l| l.as_str().to_owned())
                        .collect(),
                    digest_hex: hex(entry.key()),
                    max_held_units: key.max_held_units,
                }
            })
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        KeysRecord { generation, keys }
    }
}

fn parse_digest(text: &str) -> Option<Digest256> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_scope(text: &str) -> Option<Scope> {
    [
        Scope::Read,
        Scope::Reserve,
        Scope::Pos,
        Scope::StockWrite,
        Scope::Feed,
        Scope::Admin,
    ]
    .into_iter()
    .find(|s| scope_name(*s) == text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The authenticated caller of a request.
pub struct Caller(pub Arc<ApiKey>);

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.0.scopes.contains(&Scope::Admin) || self.0.scopes.contains(&scope)
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this request needs the `{}` scope",
                scope_name(scope)
            )))
        }
    }

    /// Writes at `locations` need `broad` (any location) or `pos` limited to
    /// the key's own locations.
    pub fn require_at<'a>(
        &self,
        broad: Scope,
        locations: impl IntoIterator<Item = &'a LocationCode>,
    ) -> Result<(), ApiError> {
        if self.has(broad) {
            return Ok(());
        }
        if !self.0.scopes.contains(&Scope::Pos) {
            return Err(ApiError::forbidden(format!(
                "this request needs the `{}` or `pos` scope",
                scope_name(broad)
            )));
        }
        for location in locations {
            if !self.0.locations.contains(location) {
                return Err(ApiError::forbidden(format!(
                    "this pos key may not act on location {location}"
                ))
                .with("location", serde_json::json!(location.as_str())));
            }
        }
        Ok(())
    }
}

pub fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Reserve => "reserve",
        Scope::Pos => "pos",
        Scope::StockWrite => "stock_write",
        Scope::Feed => "feed",
        Scope::Admin => "admin",
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let secret = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let key = state
            .keys
            .authenticate(secret.trim())
            .ok_or_else(ApiError::unauthorized)?;
        if let Err(retry_after_s) = state.rate_limiter.check(&key.id, Instant::now()) {
            // Tarpit: a flooding client on keep-alive connections can only
            // send as fast as these answers come back, so its refused
            // requests stop competing with other keys' for the CPU.
            // Jittered (half to all of the delay) so a flood's connections
            // do not wake, and come back, in lockstep bursts.
            let delay_ms = state
                .limits
                .rate_limited_delay_ms
                .min(retry_after_s.saturating_mul(1_000));
            if delay_ms > 0 {
                let jitter_ms = u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos()),
                ) % (delay_ms / 2 + 1);
                tokio::time::sleep(Duration::from_millis(delay_ms / 2 + jitter_ms)).await;
            }
            return Err(ApiError::rate_limited(retry_after_s));
        }
        Ok(Caller(key))
    }
}
