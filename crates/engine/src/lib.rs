//! The engine: the ledger with everything that makes it a service but is
//! not a transport. It owns the ledger, the clock, expiry, the API keys and
//! their store, the hold-cap policy, the change signal, readiness and
//! durability. Transports (the HTTP API, `omnistock feed`, the in-process
//! demo) call its operations.
//!
//! Its write operations are async and say what they guarantee: they return
//! once the outcome is as durable as the configured mode promises
//! ([`Engine::write`], [`Engine::reserve`], [`writes`]). Reads are the
//! ledger's own synchronous queries ([`Engine::ledger`]); a transport never
//! writes to the ledger but through the engine (`tests/it/architecture.rs`
//! holds the HTTP crate to it).
//!
//! Architecture invariant: the engine knows no transport. No HTTP type
//! reaches it and none of its types knows a status code; its manifest lists
//! no axum, hyper or serde_json, so it cannot.

pub mod change_signal;
pub mod clock;
pub mod cluster_shared;
pub mod demo;
pub mod expiry;
pub mod keys;
mod lifecycle;
mod operations;
pub mod ownership_driver;
pub mod partition_engines;
pub mod write_behind;
pub mod writes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use omnistock_cluster::{PartitionId, Partitions};
use omnistock_ledger::{Ledger, TimestampMs};

pub use change_signal::ChangeSignal;
pub use keys::{ApiKey, Band, KeySpec, KeyStore, NoRandomness, Publishable, Quantities, Scope};
pub use lifecycle::{EngineTasks, Stops, StoreSnapshot};
pub use operations::{HoldPolicy, KeyWriteError, MAX_KEYS, Outcomes, ReserveOrder};
pub use write_behind::{NotDurable, WriteBehind, WriteBehindConfig};
pub use writes::{WriteError, Writes};

/// Where the engine reads the time (tests pass their own).
pub type Clock = Arc<dyn Fn() -> TimestampMs + Send + Sync>;

/// What an engine is made with.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// The secret of the key that holds every scope (`OMNISTOCK_ADMIN_KEY`).
    pub admin_key: Option<String>,
    pub hold_policy: HoldPolicy,
    /// The write-behind store's settings, when the engine has a store.
    pub store: Option<WriteBehindConfig>,
    /// How often expired holds are swept (they also expire when touched).
    pub expiry_sweep_interval_ms: u64,
    /// Load the demo data set into an empty engine.
    pub demo: bool,
    /// Set for the engine of one partition of a cluster: it holds only the
    /// SKUs of this partition (the demo data set is cut to them).
    pub partition: Option<(Partitions, PartitionId)>,
}

pub struct Engine {
    ledger: Arc<Ledger>,
    clock: Clock,
    /// Shared by every partition engine of a cluster node.
    keys: Arc<KeyStore>,
    hold_policy: HoldPolicy,
    /// Bumped after every ledger write (the ledger's change listener):
    /// live streams wait on it instead of polling.
    changes: Arc<ChangeSignal>,
    /// False until the engine has loaded its state and can serve.
    ready: AtomicBool,
    write_behind: Option<Arc<WriteBehind>>,
    outcomes: Outcomes,
    config: EngineConfig,
}

impl Engine {
    /// An engine around `ledger`, reading the wall clock. Not ready until
    /// started ([`Engine::start`]).
    pub fn new(config: EngineConfig, ledger: Arc<Ledger>) -> Arc<Engine> {
        Engine::with_clock(config, ledger, Arc::new(clock::now))
    }

    pub fn with_clock(config: EngineConfig, ledger: Arc<Ledger>, clock: Clock) -> Arc<Engine> {
        let keys = Arc::new(KeyStore::new(config.admin_key.as_deref()));
        Engine::with_key_store(config, ledger, clock, keys)
    }

    /// An engine that authenticates with `keys`, which other engines may
    /// share (a cluster node's partition engines share the node's).
    pub fn with_key_store(
        config: EngineConfig,
        ledger: Arc<Ledger>,
        clock: Clock,
        keys: Arc<KeyStore>,
    ) -> Arc<Engine> {
        let changes = Arc::new(ChangeSignal::default());
        let publisher = Arc::clone(&changes);
        if !ledger.set_change_listener(Box::new(move |_seq| publisher.publish())) {
            tracing::warn!(
                "the ledger already has a change listener: live streams wake only on their timers"
            );
        }
        Arc::new(Engine {
            keys,
            hold_policy: config.hold_policy,
            write_behind: config.store.clone().map(WriteBehind::new),
            ledger,
            clock,
            changes,
            ready: AtomicBool::new(false),
            outcomes: Outcomes::default(),
            config,
        })
    }

    /// The ledger, for reads. Writes go through [`Engine::write`] and the
    /// engine's operations, which carry the durability promise.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The engine's time now: the one clock read of an operation.
    pub fn now(&self) -> TimestampMs {
        (self.clock)()
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The key store, to share with another engine.
    pub fn key_store(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    pub fn changes(&self) -> &Arc<ChangeSignal> {
        &self.changes
    }

    /// Whether the engine has loaded its state and serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The write-behind store, when the engine has one.
    pub fn write_behind(&self) -> Option<&Arc<WriteBehind>> {
        self.write_behind.as_ref()
    }

    /// The store writers wait for, in sync durability mode only.
    fn sync_store(&self) -> Option<&Arc<WriteBehind>> {
        self.write_behind.as_ref().filter(|w| w.config().sync)
    }
}

/// The flusher persists the keys through the engine.
impl omnistock_store::KeySource for Engine {
    fn generation(&self) -> u64 {
        self.keys.generation()
    }

    fn export(&self) -> omnistock_store::KeysRecord {
        self.keys.export()
    }
}
