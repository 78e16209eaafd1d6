//! Which node should own which partition: rendezvous (highest random
//! weight) hashing over the live nodes. Every node computes the same answer
//! from the same membership, with no coordinator; a node joining takes
//! about P/N partitions from the others and a node leaving gives only its
//! own away, each to the node that ranks next for it.

use std::fmt;
use std::sync::Arc;

use crate::partition::{PartitionId, Partitions};

/// Longest node id: it is written into every lease and heartbeat.
pub const MAX_NODE_ID_CHARS: usize = 64;

/// A node of the cluster, as it names itself (`--node-id`): 1 to 64
/// characters of `A-Z a-z 0-9 . _ : -`, so that it is safe in Redis keys,
/// log lines and URLs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

/// A node id that breaks the rule of [`NodeId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a node id is 1 to {MAX_NODE_ID_CHARS} characters of A-Z a-z 0-9 . _ : - (got {0:?})")]
pub struct InvalidNodeId(pub String);

impl NodeId {
    pub fn new(text: &str) -> Result<Self, InvalidNodeId> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if text.is_empty() || text.len() > MAX_NODE_ID_CHARS || !text.chars().all(allowed) {
            return Err(InvalidNodeId(text.to_owned()));
        }
        Ok(NodeId(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A node's weight for a partition: XXH3-64 of the node id seeded with the
/// partition index. Stable across builds, like the partition hash. Ties
/// (two ids with the same weight) go to the smaller id, so every node still
/// agrees.
fn weight(node: &NodeId, partition: PartitionId) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(node.as_str().as_bytes(), u64::from(partition.index()))
}

/// The node that should own `partition` among `live` (none if no node is
/// live).
pub fn owner_of(partition: PartitionId, live: &[NodeId]) -> Option<&NodeId> {
    live.iter()
        .max_by(|a, b| (weight(a, partition), b).cmp(&(weight(b, partition), a)))
}

/// The owner every partition should have, indexed by partition.
pub fn assign(partitions: Partitions, live: &[NodeId]) -> Vec<Option<NodeId>> {
    partitions
        .all()
        .map(|p| owner_of(p, live).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(n).expect("id")).collect()
    }

    fn owned_by(assignment: &[Option<NodeId>], node: &str) -> usize {
        assignment
            .iter()
            .filter(|o| o.as_ref().map(NodeId::as_str) == Some(node))
            .count()
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::new("node-1.eu_west:8080").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("{p1}").is_err());
        assert!(NodeId::new(&"n".repeat(65)).is_err());
    }

    #[test]
    fn every_node_computes_the_same_assignment() {
        let p = Partitions::new(256).expect("count");
        let one = assign(p, &nodes(&["a", "b", "c"]));
        let other = assign(p, &nodes(&["c", "a", "b"]));
        assert_eq!(one, other);
        assert!(one.iter().all(Option::is_some));
    }

    #[test]
    fn no_live_node_owns_nothing() {
        assert!(assign(Partitions::DEFAULT, &[]).iter().all(Option::is_none));
    }

    #[test]
    fn partitions_spread_over_the_nodes() {
        let p = Partitions::new(256).expect("count");
        let assignment = assign(p, &nodes(&["node-1", "node-2", "node-3"]));
        for node in ["node-1", "node-2", "node-3"] {
            let owned = owned_by(&assignment, node);
            // 85 expected; rendezvous over 256 stays well within 60..=110.
            assert!((60..=110).contains(&owned), "{node} owns {owned}");
        }
    }

    #[test]
    fn a_joining_node_takes_about_p_over_n_and_nothing_else_moves() {
        let p = Partitions::new(256).expect("count");
        let before = assign(p, &nodes(&["n1", "n2", "n3"]));
        let after = assign(p, &nodes(&["n1", "n2", "n3", "n4"]));
        let moved: Vec<_> = (0..256).filter(|&i| before[i] != after[i]).collect();
        // Every moved partition went to the new node.
        assert!(
            moved
                .iter()
                .all(|&i| after[i].as_ref().map(NodeId::as_str) == Some("n4"))
        );
        assert!((40..=90).contains(&moved.len()), "moved {}", moved.len());
    }

    #[test]
    fn a_leaving_node_gives_away_only_its_own() {
        let p = Partitions::new(256).expect("count");
        let before = assign(p, &nodes(&["n1", "n2", "n3"]));
        let after = assign(p, &nodes(&["n1", "n3"]));
        for i in 0..256 {
            let was = before[i].as_ref().map(NodeId::as_str);
            if was != Some("n2") {
                assert_eq!(before[i], after[i], "partition {i} moved");
            }
        }
        assert_eq!(owned_by(&after, "n2"), 0);
    }
}
