//! SKU interning: positions are keyed by a 4-byte id, not a string, which
//! keeps a position small and its key cheap to hash. Only writes that create
//! stock (counts, receipts, returns, expected receipts) intern a new SKU;
//! reservations and reads of unknown SKUs never grow the table.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::RwLock;
use rustc_hash::FxBuildHasher;

use super::ids::{Sku, SkuId};
use super::refusal::{Invalid, Refusal};

pub(crate) struct SkuTable {
    by_code: DashMap<Sku, SkuId, FxBuildHasher>,
    /// Reverse lookup, indexed by `SkuId`. Only read off the hot path
    /// (journal consumers, reservation views, snapshots).
    codes: RwLock<Vec<Sku>>,
}

impl Default for SkuTable {
    fn default() -> Self {
        SkuTable {
            by_code: DashMap::with_hasher(FxBuildHasher),
            codes: RwLock::new(Vec::new()),
        }
    }
}

impl SkuTable {
    pub fn get(&self, sku: &Sku) -> Option<SkuId> {
        self.by_code.get(sku.as_str()).map(|id| *id)
    }

    pub fn intern(&self, sku: &Sku) -> Result<SkuId, Refusal> {
        if let Some(id) = self.get(sku) {
            return Ok(id);
        }
        // Lock order: DashMap shard, then `codes`. Readers of `codes` never
        // touch `by_code`, so this cannot deadlock.
        match self.by_code.entry(sku.clone()) {
            Entry::Occupied(entry) => Ok(*entry.get()),
            Entry::Vacant(entry) => {
                let mut codes = self.codes.write();
                let next = u32::try_from(codes.len())
                    .ok()
                    .filter(|next| *next < u32::MAX)
                    .ok_or(Refusal::Invalid(Invalid::Other(
                        "the ledger holds the maximum number of SKUs",
                    )))?;
                codes.push(sku.clone());
                entry.insert(SkuId(next));
                Ok(SkuId(next))
            }
        }
    }

    pub fn code(&self, id: SkuId) -> Option<Sku> {
        self.codes.read().get(id.0 as usize).cloned()
    }

    /// Runs `f` with every code, indexed by `SkuId`, under one read lock.
    pub fn with_codes<R>(&self, f: impl FnOnce(&[Sku]) -> R) -> R {
        f(&self.codes.read())
    }

    pub fn len(&self) -> usize {
        self.codes.read().len()
    }
}
