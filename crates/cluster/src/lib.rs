//! Partition ownership for a cluster of engines, pure and synchronous: no
//! I/O, no async runtime, no clock reads (time is an argument).
//!
//! - [`partition`]: how many partitions a cluster has and which one holds a
//!   SKU (a stable hash), and the Redis hash tag of a partition's keys.
//! - [`assignment`]: which live node should own each partition (rendezvous
//!   hashing: every node computes the same answer).
//! - [`lease`]: what a node may conclude from its lease on a partition
//!   (serve until a local deadline that ends before Redis's; the epoch is
//!   the fencing token its writes carry).
//! - [`ownership`]: one node's partitions as a deterministic state machine
//!   (`handle_*` inputs, `poll_action` outputs, `poll_timeout`).
//! - [`cart`]: the ids of carts across partitions (their home partition,
//!   and a bit no part's id has).
//!
//! The store holds the leases and epochs in Redis and checks the fence; the
//! engine drives these types with its clock.

pub mod assignment;
pub mod cart;
pub mod lease;
pub mod ownership;
pub mod partition;

pub use assignment::{InvalidNodeId, MAX_NODE_ID_CHARS, NodeId, assign, owner_of};
pub use cart::{CART_BIT, cart_home, cart_id};
pub use lease::{Epoch, Lease, LeaseTiming, LeaseTimingError};
pub use ownership::{Action, Ownership, RETRY_MS};
pub use partition::{MAX_PARTITIONS, PartitionId, Partitions, PartitionsOutOfRange};
