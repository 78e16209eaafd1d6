//! API keys and scopes. Keys are random 256-bit secrets shown once at
//! creation; only their SHA-256 is kept, and they are never logged.
//! `OMNISTOCK_ADMIN_KEY` holds every scope. The key store is the engine's:
//! transports authenticate a caller with [`KeyStore::authenticate`] and pass
//! the key to the operations it may call; the write-behind store persists it
//! through [`KeySource`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use omnistock_ledger::{Acting, Channel, LocationCode};
use omnistock_store::{KeyRecord, KeySource, KeysRecord, PublishableRecord};
use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The system could not supply randomness for a new key's secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no randomness for a key: {0}")]
pub struct NoRandomness(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    /// A publishable key (made to be embedded in web pages): what it may
    /// see. Such a key holds no scope, so every operation that checks one
    /// refuses it; only the reads made for pages accept it.
    pub publishable: Option<Arc<Publishable>>,
}

/// What the key's pages are shown of a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantities {
    /// The units available to promise, always.
    Exact,
    /// Only a band: in stock, limited, out of stock.
    Banded,
    /// The band, and the units only at or below the threshold ("only 3 left").
    Threshold,
}

impl Quantities {
    pub const ALL: [Quantities; 3] = [Quantities::Exact, Quantities::Banded, Quantities::Threshold];

    pub const fn as_str(self) -> &'static str {
        match self {
            Quantities::Exact => "exact",
            Quantities::Banded => "banded",
            Quantities::Threshold => "threshold",
        }
    }

    pub fn parse(text: &str) -> Option<Quantities> {
        Quantities::ALL.into_iter().find(|q| q.as_str() == text)
    }
}

/// The band a page shows for a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Band {
    InStock,
    /// At or below the key's threshold, above zero.
    Limited,
    OutOfStock,
}

impl Band {
    pub const fn as_str(self) -> &'static str {
        match self {
            Band::InStock => "in_stock",
            Band::Limited => "limited",
            Band::OutOfStock => "out_of_stock",
        }
    }
}

/// What a publishable key may see, and where from: one channel's
/// availability (after its policy), to pages of its origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publishable {
    pub channel: Channel,
    /// Web origins (`https://shop.example`) whose pages may use the key.
    pub origins: Vec<String>,
    pub quantities: Quantities,
    /// Units at or below which a quantity is `limited` (and, with
    /// [`Quantities::Threshold`], shown).
    pub quantity_threshold: u32,
    /// The `Cache-Control` of the key's answers (default `no-cache`:
    /// shared caches may keep them but must revalidate, by `ETag`).
    pub cache_control: Option<String>,
}

impl Publishable {
    /// Whether a page of `origin` may use the key (exact match: scheme,
    /// host and port, as the browser sends it).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| allowed == origin)
    }

    /// What a page is shown of `atf` units: the band, and the units when
    /// the key shows them.
    pub fn show(&self, atf: u64) -> (Band, Option<u64>) {
        let threshold = u64::from(self.quantity_threshold);
        let band = match atf {
            0 => Band::OutOfStock,
            units if units <= threshold => Band::Limited,
            _ => Band::InStock,
        };
        let units = match self.quantities {
            Quantities::Exact => Some(atf),
            Quantities::Banded => None,
            Quantities::Threshold => (atf <= threshold).then_some(atf),
        };
        (band, units)
    }
}

/// A key to create: what it is allowed.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    pub locations: Vec<LocationCode>,
    pub max_held_units: Option<u64>,
    pub publishable: Option<Publishable>,
}

impl Scope {
    /// Every scope, in order of breadth.
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Reserve,
        Scope::Pos,
        Scope::StockWrite,
        Scope::Feed,
        Scope::Admin,
    ];

    /// The scope's name: in API bodies (serde's `snake_case` spelling of
    /// the variant, held equal by a test) and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Reserve => "reserve",
            Scope::Pos => "pos",
            Scope::StockWrite => "stock_write",
            Scope::Feed => "feed",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl ApiKey {
    /// Whether the key holds `scope` (admin holds every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// On whose authority the key acts on a reservation: `broad` (or admin)
    /// on any; `pos` only at the key's own locations; `None` with neither.
    pub fn acting(&self, broad: Scope) -> Option<Acting<'_>> {
        if self.has(broad) {
            Some(Acting::Any)
        } else if self.scopes.contains(&Scope::Pos) {
            Some(Acting::AtLocations(&self.locations))
        } else {
            None
        }
    }
}

/// The SHA-256 of a key's secret: what the store keeps instead of the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Digest256([u8; 32]);

/// A digest is already uniformly random, so its first eight bytes are as
/// good a hash as any; hashing all 32 again (SipHash) would only cost time.
/// Only digests of stored keys are ever inserted, so an attacker choosing
/// the secrets it presents cannot crowd one bucket.
impl std::hash::Hash for Digest256 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(prefix));
    }
}

fn digest(secret: &str) -> Digest256 {
    Digest256(Sha256::digest(secret.as_bytes()).into())
}

/// How a created secret key's text starts.
pub const SECRET_PREFIX: &str = "osk_";
/// How a created publishable key's text starts.
pub const PUBLISHABLE_PREFIX: &str = "opk_";

type KeyMap = HashMap<Digest256, Arc<ApiKey>, FxBuildHasher>;

/// Every request reads the keys and almost none change them, so the map is
/// immutable and shared: a lookup takes no lock (one `ArcSwap` load); a
/// create, revoke or restore copies the map (at most `MAX_KEYS` entries)
/// and swaps the copy in, one writer at a time.
pub struct KeyStore {
    by_digest: ArcSwap<KeyMap>,
    /// Every publishable key's origins (at most `MAX_KEYS` x 50).
    page_origins: ArcSwap<HashSet<String>>,
    /// Serialises writers, so no change is lost between copy and swap.
    writer: Mutex<()>,
    /// Bumped by every create and revoke, so the write-behind store knows
    /// when to persist the keys.
    generation: AtomicU64,
}

impl KeyStore {
    pub fn new(admin_secret: Option<&str>) -> KeyStore {
        let mut keys = KeyMap::default();
        if let Some(secret) = admin_secret {
            let admin = ApiKey {
                id: "admin".into(),
                name: "OMNISTOCK_ADMIN_KEY".into(),
                scopes: [Scope::Admin].into(),
                locations: Vec::new(),
                max_held_units: None,
                publishable: None,
            };
            keys.insert(digest(secret), Arc::new(admin));
        }
        KeyStore {
            by_digest: ArcSwap::from_pointee(keys),
            page_origins: ArcSwap::default(),
            writer: Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn authenticate(&self, secret: &str) -> Option<Arc<ApiKey>> {
        self.by_digest.load().get(&digest(secret)).map(Arc::clone)
    }

    /// Whether any publishable key's pages may come from `origin` (a CORS
    /// preflight that names no key): one set lookup, not a walk of the keys.
    pub fn any_page_origin(&self, origin: &str) -> bool {
        self.page_origins.load().contains(origin)
    }

    /// Applies `change` to a copy of the keys and publishes the copy (and
    /// the publishable keys' origins with it).
    fn update<T>(&self, change: impl FnOnce(&mut KeyMap) -> T) -> T {
        let _writer = self.writer.lock();
        let mut keys = KeyMap::clone(&self.by_digest.load());
        let outcome = change(&mut keys);
        let origins: HashSet<String> = keys
            .values()
            .filter_map(|key| key.publishable.as_deref())
            .flat_map(|p| p.origins.iter().cloned())
            .collect();
        self.page_origins.store(Arc::new(origins));
        self.by_digest.store(Arc::new(keys));
        outcome
    }

    /// Creates a key; returns it with its secret (shown once): `opk_` for
    /// a publishable key, `osk_` for a secret one, so either is told apart
    /// at a glance (and a secret one refused where it does not belong).
    pub fn create(&self, spec: KeySpec) -> Result<(Arc<ApiKey>, String), NoRandomness> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
        let prefix = match spec.publishable {
            Some(_) => PUBLISHABLE_PREFIX,
            None => SECRET_PREFIX,
        };
        let secret = format!("{prefix}{}", hex(&bytes));
        let id = format!("key_{}", &hex(&digest(&secret).0)[..16]);
        let key = Arc::new(ApiKey {
            id,
            name: spec.name,
            scopes: spec.scopes,
            locations: spec.locations,
            max_held_units: spec.max_held_units,
            publishable: spec.publishable.map(Arc::new),
        });
        self.update(|keys| keys.insert(digest(&secret), Arc::clone(&key)));
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok((key, secret))
    }

    pub fn list(&self) -> Vec<Arc<ApiKey>> {
        let mut keys: Vec<_> = self
            .by_digest
            .load()
            .values()
            .filter(|k| k.id != "admin")
            .map(Arc::clone)
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }

    /// The key with this id, the admin key included (work a node finishes
    /// on a client's behalf: a cart's coordinator that stopped).
    pub fn by_id(&self, id: &str) -> Option<Arc<ApiKey>> {
        self.by_digest
            .load()
            .values()
            .find(|k| k.id == id)
            .map(Arc::clone)
    }

    /// Keys held, the admin key included.
    pub fn count(&self) -> usize {
        self.by_digest.load().len()
    }

    pub fn revoke(&self, id: &str) -> bool {
        let revoked = self.update(|keys| {
            let before = keys.len();
            keys.retain(|_, key| key.id != id || id == "admin");
            keys.len() < before
        });
        if revoked {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        revoked
    }

    /// Puts back keys loaded from the store (the admin key comes from the
    /// environment and is never stored). Refuses records it cannot read.
    pub fn restore(&self, record: KeysRecord) -> Result<usize, String> {
        let generation = record.generation;
        let restored = parse_record(record)?;
        let count = restored.len();
        self.update(|keys| keys.extend(restored));
        self.generation.store(generation, Ordering::SeqCst);
        Ok(count)
    }

    /// Makes the stored keys exactly `record`'s (a cluster's shared keys):
    /// a key it lacks is revoked here too; the admin key stays. All or
    /// nothing, like [`KeyStore::restore`].
    pub fn adopt(&self, record: KeysRecord) -> Result<usize, String> {
        let generation = record.generation;
        let adopted = parse_record(record)?;
        let count = adopted.len();
        self.update(|keys| {
            keys.retain(|_, key| key.id == "admin");
            keys.extend(adopted);
        });
        self.generation.store(generation, Ordering::SeqCst);
        Ok(count)
    }
}

/// The keys of a stored record, or why one of them cannot be read.
fn parse_record(record: KeysRecord) -> Result<Vec<(Digest256, Arc<ApiKey>)>, String> {
    let mut restored = Vec::with_capacity(record.keys.len());
    for key in record.keys {
        let digest = parse_digest(&key.digest_hex)
            .ok_or_else(|| format!("key {}: invalid digest", key.id))?;
        let scopes = key
            .scopes
            .iter()
            .map(|s| Scope::parse(s).ok_or_else(|| format!("key {}: scope {s:?}", key.id)))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let locations = key
            .locations
            .iter()
            .map(|l| LocationCode::new(l).map_err(|e| format!("key {}: {e}", key.id)))
            .collect::<Result<Vec<_>, _>>()?;
        let publishable = key
            .publishable
            .map(|record| parse_publishable(record).map_err(|e| format!("key {}: {e}", key.id)))
            .transpose()?
            .map(Arc::new);
        restored.push((
            digest,
            Arc::new(ApiKey {
                id: key.id,
                name: key.name,
                scopes,
                locations,
                max_held_units: key.max_held_units,
                publishable,
            }),
        ));
    }
    Ok(restored)
}

fn parse_publishable(record: PublishableRecord) -> Result<Publishable, String> {
    Ok(Publishable {
        channel: Channel::parse(&record.channel)
            .ok_or_else(|| format!("channel {:?}", record.channel))?,
        origins: record.origins,
        quantities: Quantities::parse(&record.quantities)
            .ok_or_else(|| format!("quantities {:?}", record.quantities))?,
        quantity_threshold: record.quantity_threshold,
        cache_control: record.cache_control,
    })
}

fn publishable_record(publishable: &Publishable) -> PublishableRecord {
    PublishableRecord {
        channel: publishable.channel.as_str().to_owned(),
        origins: publishable.origins.clone(),
        quantities: publishable.quantities.as_str().to_owned(),
        quantity_threshold: publishable.quantity_threshold,
        cache_control: publishable.cache_control.clone(),
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
            .load()
            .iter()
            .filter(|(_, key)| key.id != "admin")
            .map(|(digest, key)| KeyRecord {
                id: key.id.clone(),
                name: key.name.clone(),
                scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                locations: key
                    .locations
                    .iter()
                    .map(|l| l.as_str().to_owned())
                    .collect(),
                digest_hex: hex(&digest.0),
                max_held_units: key.max_held_units,
                publishable: key.publishable.as_deref().map(publishable_record),
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
    Some(Digest256(out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_are_serdes_spelling() {
        for scope in Scope::ALL {
            let named: Scope =
                serde::de::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                    serde::de::value::Error,
                >::new(scope.as_str()))
                .expect("serde reads the name");
            assert_eq!(named, scope);
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }

    fn reserve_key(store: &KeyStore, name: &str) -> (Arc<ApiKey>, String) {
        store
            .create(KeySpec {
                name: name.into(),
                scopes: [Scope::Reserve].into(),
                locations: Vec::new(),
                max_held_units: Some(5),
                publishable: None,
            })
            .expect("a key is created")
    }

    #[test]
    fn created_keys_authenticate_until_revoked_and_admin_stays() {
        let store = KeyStore::new(Some("admin-secret-0123456789"));
        let (key, secret) = reserve_key(&store, "web");
        let generation = store.generation();
        assert_eq!(store.count(), 2);
        let found = store
            .authenticate(&secret)
            .expect("the new key authenticates");
        assert_eq!(found.id, key.id);
        assert!(store.authenticate("osk_not-a-key").is_none());
        assert_eq!(
            store
                .authenticate("admin-secret-0123456789")
                .map(|k| k.id.clone()),
            Some("admin".to_owned())
        );
        assert!(!store.revoke("admin"), "the admin key cannot be revoked");
        assert!(store.revoke(&key.id));
        assert!(store.generation() > generation);
        assert!(store.authenticate(&secret).is_none());
        assert!(!store.revoke(&key.id), "revoked once");
        assert_eq!(store.count(), 1);
    }

    #[test]
    fn exported_keys_restore_elsewhere_and_a_bad_record_changes_nothing() {
        let source = KeyStore::new(Some("admin-secret-0123456789"));
        let (first, first_secret) = reserve_key(&source, "web");
        let (_, second_secret) = reserve_key(&source, "app");
        let record = source.export();
        assert_eq!(record.keys.len(), 2, "the admin key is never exported");

        let target = KeyStore::new(None);
        assert_eq!(target.restore(record.clone()), Ok(2));
        assert_eq!(target.generation(), record.generation);
        let restored = target.authenticate(&first_secret).expect("restored");
        assert_eq!(restored.id, first.id);
        assert_eq!(restored.max_held_units, Some(5));
        assert!(target.authenticate(&second_secret).is_some());

        let mut bad = record;
        bad.keys[1].digest_hex = "not hex".into();
        let empty = KeyStore::new(None);
        assert!(empty.restore(bad).is_err());
        assert_eq!(empty.count(), 0, "no key of a bad record is restored");
        assert!(empty.authenticate(&first_secret).is_none());
    }

    fn publishable(quantities: Quantities) -> Publishable {
        Publishable {
            channel: Channel::Web,
            origins: vec!["https://shop.example".into()],
            quantities,
            quantity_threshold: 3,
            cache_control: Some("max-age=1".into()),
        }
    }

    #[test]
    fn a_publishable_key_shows_bands_and_units_as_its_option_says() {
        let exact = publishable(Quantities::Exact);
        assert_eq!(exact.show(0), (Band::OutOfStock, Some(0)));
        assert_eq!(exact.show(3), (Band::Limited, Some(3)));
        assert_eq!(exact.show(4), (Band::InStock, Some(4)));
        let banded = publishable(Quantities::Banded);
        assert_eq!(banded.show(2), (Band::Limited, None));
        assert_eq!(banded.show(40), (Band::InStock, None));
        let threshold = publishable(Quantities::Threshold);
        assert_eq!(threshold.show(3), (Band::Limited, Some(3)));
        assert_eq!(threshold.show(4), (Band::InStock, None));
        assert!(exact.allows_origin("https://shop.example"));
        assert!(!exact.allows_origin("https://shop.example:8443"));
        assert!(!exact.allows_origin("http://shop.example"));
    }

    #[test]
    fn a_publishable_key_holds_no_scope_and_survives_export() {
        let source = KeyStore::new(None);
        let (key, secret) = source
            .create(KeySpec {
                name: "storefront".into(),
                scopes: BTreeSet::new(),
                locations: Vec::new(),
                max_held_units: None,
                publishable: Some(publishable(Quantities::Threshold)),
            })
            .expect("created");
        assert!(secret.starts_with(PUBLISHABLE_PREFIX));
        assert!(source.any_page_origin("https://shop.example"));
        assert!(!source.any_page_origin("https://evil.example"));
        assert!(Scope::ALL.iter().all(|scope| !key.has(*scope)));
        assert!(key.acting(Scope::Reserve).is_none());
        let target = KeyStore::new(None);
        assert_eq!(target.restore(source.export()), Ok(1));
        let restored = target.authenticate(&secret).expect("restored");
        assert_eq!(
            restored.publishable.as_deref(),
            Some(&publishable(Quantities::Threshold))
        );
        assert!(
            target.any_page_origin("https://shop.example"),
            "restored too"
        );
        assert!(source.revoke(&key.id));
        assert!(
            !source.any_page_origin("https://shop.example"),
            "revoked with its key"
        );
    }
}
