//! Idempotency: a write carrying a key is applied at most once; a retry with
//! the same key and the same request gets the original outcome back.
//!
//! A key is claimed (`Pending`) before the operation runs and completed after,
//! so two concurrent duplicates can never both apply: the second sees
//! `Pending` and is refused with `IdempotencyInFlight` (retry later).
//! Memory is bounded by `max_idempotency_keys`; past it new keyed writes are
//! refused rather than evicting a live key, which would silently break the
//! at-most-once promise.
//!
//! A key remembers the fingerprint of its request (`fingerprint.rs`): a
//! retry is the same request when the fingerprints match, in the version
//! the key remembers (a key restored from a store written before the
//! current version compares the retry's fingerprint in that version).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::Mutex;

pub(crate) use super::fingerprint::{Fingerprint, FingerprintVersion};
use super::ids::{IdempotencyKey, TimestampMs};
use super::refusal::Refusal;

enum Slot<T> {
    Pending(Fingerprint),
    Done {
        fingerprint: Fingerprint,
        outcome: Arc<Result<T, Refusal>>,
        expires_at: TimestampMs,
    },
}

/// A completed key with a successful outcome, as a store persists it.
/// (Refusals are remembered in memory only: a refused write changed nothing,
/// so after a restart its retry is simply evaluated afresh.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord<T> {
    pub key: IdempotencyKey,
    /// Of any version: a record written by an older engine keeps its own.
    pub fingerprint: Fingerprint,
    pub expires_at: TimestampMs,
    pub outcome: T,
}

/// What a caller should do after [`IdempotencyStore::begin`].
pub(crate) enum Claim<T> {
    /// First use: run the operation, then `complete` (or `abandon`).
    Run,
    /// Already done: return this outcome.
    Replay(Arc<Result<T, Refusal>>),
}

pub(crate) struct IdempotencyStore<T> {
    slots: DashMap<IdempotencyKey, Slot<T>>,
    /// Completed keys in completion order with their expiry, for purging.
    expiries: Mutex<VecDeque<(TimestampMs, IdempotencyKey)>>,
    len: AtomicUsize,
    ttl_ms: u64,
    max_keys: usize,
}

impl<T> IdempotencyStore<T> {
    pub fn new(ttl_ms: u64, max_keys: usize) -> Self {
        IdempotencyStore {
            slots: DashMap::new(),
            expiries: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            ttl_ms,
            max_keys,
        }
    }

    /// Claims `key` for the request whose current fingerprint is
    /// `fingerprint`; `fingerprint_as` gives its fingerprint in another
    /// version, asked only to compare with a key remembered in that version.
    pub fn begin(
        &self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        fingerprint_as: impl Fn(FingerprintVersion) -> Fingerprint,
    ) -> Result<Claim<T>, Refusal> {
        match self.slots.entry(key.clone()) {
            Entry::Occupied(entry) => match entry.get() {
                Slot::Pending(f) if f.matches(fingerprint, &fingerprint_as) => {
                    Err(Refusal::IdempotencyInFlight)
                }
                Slot::Done {
                    fingerprint: f,
                    outcome,
                    ..
                } if f.matches(fingerprint, &fingerprint_as) => {
                    Ok(Claim::Replay(Arc::clone(outcome)))
                }
                _ => Err(Refusal::IdempotencyKeyReused),
            },
            Entry::Vacant(entry) => {
                if self.len.load(Ordering::Relaxed) >= self.max_keys {
                    return Err(Refusal::IdempotencyStoreFull);
                }
                self.len.fetch_add(1, Ordering::Relaxed);
                entry.insert(Slot::Pending(fingerprint));
                Ok(Claim::Run)
            }
        }
    }

    pub fn complete(
        &self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        outcome: Arc<Result<T, Refusal>>,
        now: TimestampMs,
    ) {
        let expires_at = now.plus_ms(self.ttl_ms);
        self.slots.insert(
            key.clone(),
            Slot::Done {
                fingerprint,
                outcome,
                expires_at,
            },
        );
        self.expiries.lock().push_back((expires_at, key.clone()));
    }

    /// The persistable form of `keys` that are done with a successful
    /// outcome. A key still pending belongs to an operation whose effects
    /// are already applied (its movements named it) and that is about to
    /// complete, without holding any lock: it is waited for, briefly, so a
    /// store never holds an operation's effects without its key.
    pub fn records(
        &self,
        keys: impl IntoIterator<Item = IdempotencyKey>,
    ) -> Vec<IdempotencyRecord<T>>
    where
        T: Clone,
    {
        const MAX_WAIT_SPINS: usize = 100_000;
        let mut records = Vec::new();
        for key in keys {
            for spin in 0..=MAX_WAIT_SPINS {
                let Some(slot) = self.slots.get(&key) else {
                    break;
                };
                match &*slot {
                    Slot::Done {
                        fingerprint,
                        outcome,
                        expires_at,
                    } => {
                        if let Ok(output) = &**outcome {
                            records.push(IdempotencyRecord {
                                key: key.clone(),
                                fingerprint: *fingerprint,
                                expires_at: *expires_at,
                                outcome: output.clone(),
                            });
                        }
                        break;
                    }
                    Slot::Pending(_) => {
                        drop(slot);
                        if spin == MAX_WAIT_SPINS {
                            break;
                        }
                        std::thread::yield_now();
                    }
                }
            }
        }
        records
    }

    /// Every persistable record (a full rewrite).
    pub fn all_keys(&self) -> Vec<IdempotencyKey> {
        self.slots.iter().map(|entry| entry.key().clone()).collect()
    }

    /// Puts back a record loaded from a store (skipped if expired or if the
    /// store is full: the store bound holds for restored keys too).
    pub fn restore(&self, record: IdempotencyRecord<T>, now: TimestampMs) -> bool {
        if record.expires_at <= now || self.len.load(Ordering::Relaxed) >= self.max_keys {
            return false;
        }
        let previous = self.slots.insert(
            record.key.clone(),
            Slot::Done {
                fingerprint: record.fingerprint,
                outcome: Arc::new(Ok(record.outcome)),
                expires_at: record.expires_at,
            },
        );
        if previous.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        // Purging pops from the front in order; restored keys are sorted by
        // the caller, so the queue stays ordered by expiry.
        self.expiries
            .lock()
            .push_back((record.expires_at, record.key));
        true
    }

    /// Releases a claim whose operation must not be remembered.
    pub fn abandon(&self, key: &IdempotencyKey) {
        if self.slots.remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets keys whose time is up; at most `budget` per call.
    pub fn purge(&self, now: TimestampMs, budget: usize) -> usize {
        let mut purged = 0;
        let mut expiries = self.expiries.lock();
        while purged < budget {
            match expiries.front() {
                Some((expires_at, _)) if *expires_at <= now => {}
                _ => break,
            }
            if let Some((_, key)) = expiries.pop_front()
                && self.slots.remove(&key).is_some()
            {
                self.len.fetch_sub(1, Ordering::Relaxed);
                purged += 1;
            }
        }
        purged
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}
