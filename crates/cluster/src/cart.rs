//! Carts across partitions: the ids that name them. A cart whose lines live
//! in several partitions is one reservation to its client, made of one part
//! (an ordinary reservation) per partition. Its own id carries its home
//! partition, where its decision record is kept, in the top 16 bits, as a
//! part's id does, and [`CART_BIT`] to tell it from a part's.

use crate::partition::{PartitionId, Partitions};

/// Set in every cart's id, never in an engine's reservation ids: those
/// count up from 0 below the partition's 16 bits, and would need 2^44
/// reservations in one partition to reach it.
pub const CART_BIT: u64 = 1 << 47;

/// The id of the `seq`th cart whose record lives in `home` (`seq` below
/// 2^47).
pub fn cart_id(home: PartitionId, seq: u64) -> u64 {
    (u64::from(home.index()) << 48) | CART_BIT | (seq & (CART_BIT - 1))
}

/// The home partition of a cart's id; `None` for any other id (a part's,
/// or one naming no partition of `partitions`).
pub fn cart_home(partitions: Partitions, id: u64) -> Option<PartitionId> {
    if id & CART_BIT == 0 {
        return None;
    }
    partitions.get(u16::try_from(id >> 48).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cart_id_names_its_home_and_is_never_a_parts() {
        let partitions = Partitions::new(64).expect("count");
        let home = partitions.get(17).expect("p17");
        let id = cart_id(home, 5);
        assert_eq!(cart_home(partitions, id), Some(home));
        assert_eq!(id >> 48, 17);
        // An engine's id in the same partition: not a cart.
        assert_eq!(cart_home(partitions, (17 << 48) | 12_345), None);
        // Beyond the partitions: no home.
        assert_eq!(cart_home(partitions, cart_id(home, 1) | (70 << 48)), None);
    }
}
