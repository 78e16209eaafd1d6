//! Hold caps: the most units one holder (an API key, a customer account) may
//! hold at once across its held reservations, so a bot with a valid key
//! cannot hoard stock with carts it never means to buy.
//!
//! Counting is opt-in per reservation: a reservation remembers only the
//! holders it was counted against (none when no cap applies, the common
//! case, which then costs nothing), and gives exactly those units back when
//! it resolves (commit, release, expiry). The counts are derived state,
//! rebuilt from the held reservations on restore.
//!
//! Architecture invariant: for every holder, the count equals the sum of the
//! units of its held reservations, and a reserve that would take a count
//! above its cap is refused without changing anything.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use rustc_hash::FxHashMap;

use super::holder::{HoldCap, Holder};
use super::refusal::Refusal;

/// Units held per counted holder. Entries at zero are removed, so the map
/// is bounded by the number of held reservations with a holder.
#[derive(Default)]
pub(crate) struct HeldUnits {
    by_holder: DashMap<Holder, u64>,
}

impl HeldUnits {
    /// Counts `units` against every cap, all or none: refuses with the first
    /// cap it would exceed and leaves every count as it was.
    pub fn claim(&self, caps: &[HoldCap], units: u64) -> Result<(), Refusal> {
        for (index, cap) in caps.iter().enumerate() {
            if let Err(held) = self.add(cap, units) {
                self.give_back(caps[..index].iter().map(|c| &c.holder), units);
                return Err(Refusal::HoldCapExceeded {
                    kind: cap.holder.kind,
                    holder: cap.holder.id.clone(),
                    held,
                    requested: units,
                    max: cap.max_units,
                });
            }
        }
        Ok(())
    }

    /// Adds `units` to the holder's count unless that would exceed its cap
    /// (then returns what it holds). The entry lock is held only here.
    fn add(&self, cap: &HoldCap, units: u64) -> Result<(), u64> {
        let fits = |held: u64| held.checked_add(units).is_some_and(|n| n <= cap.max_units);
        if let Some(mut held) = self.by_holder.get_mut(&cap.holder) {
            if !fits(*held) {
                return Err(*held);
            }
            *held += units;
            return Ok(());
        }
        match self.by_holder.entry(cap.holder.clone()) {
            Entry::Occupied(mut held) => {
                if !fits(*held.get()) {
                    return Err(*held.get());
                }
                *held.get_mut() += units;
            }
            Entry::Vacant(slot) => {
                if !fits(0) {
                    return Err(0);
                }
                slot.insert(units);
            }
        }
        Ok(())
    }

    /// Gives `units` back for each holder (a reservation resolved, or a
    /// claim whose reserve was refused).
    pub fn give_back<'a>(&self, holders: impl Iterator<Item = &'a Holder>, units: u64) {
        for holder in holders {
            if let Entry::Occupied(mut held) = self.by_holder.entry(holder.clone()) {
                debug_assert!(*held.get() >= units, "a holder gives back what it took");
                let left = held.get().saturating_sub(units);
                if left == 0 {
                    held.remove();
                } else {
                    *held.get_mut() = left;
                }
            }
        }
    }

    /// Counts units of a restored held reservation (no cap: restore rebuilds
    /// what was granted).
    pub fn restore(&self, holder: &Holder, units: u64) {
        if units > 0 {
            *self.by_holder.entry(holder.clone()).or_insert(0) += units;
        }
    }

    /// Every count (for the invariant check).
    pub fn snapshot(&self) -> FxHashMap<Holder, u64> {
        self.by_holder
            .iter()
            .map(|entry| (entry.key().clone(), *entry.value()))
            .collect()
    }

    pub fn held(&self, holder: &Holder) -> u64 {
        self.by_holder.get(holder).map_or(0, |held| *held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holder::HolderKind;
    use crate::ids::HolderId;

    fn cap(kind: HolderKind, id: &str, max_units: u64) -> HoldCap {
        HoldCap {
            holder: Holder {
                kind,
                id: HolderId::new(id).expect("valid id"),
            },
            max_units,
        }
    }

    #[test]
    fn claims_all_caps_or_none() {
        let held = HeldUnits::default();
        let key = cap(HolderKind::Key, "key_a", 10);
        let customer = cap(HolderKind::Customer, "c-1", 4);
        held.claim(&[key.clone(), customer.clone()], 3)
            .expect("fits");
        let refusal = held
            .claim(&[key.clone(), customer.clone()], 2)
            .expect_err("customer over its cap");
        assert_eq!(
            refusal,
            Refusal::HoldCapExceeded {
                kind: HolderKind::Customer,
                holder: customer.holder.id.clone(),
                held: 3,
                requested: 2,
                max: 4,
            }
        );
        // The key's count was rolled back with the customer's refusal.
        assert_eq!(held.held(&key.holder), 3);
        assert_eq!(held.held(&customer.holder), 3);
        held.claim(&[key.clone(), customer.clone()], 1)
            .expect("exactly at the cap");
        assert_eq!(held.held(&customer.holder), 4);
        held.give_back([&key.holder, &customer.holder].into_iter(), 4);
        assert_eq!(held.held(&key.holder), 0);
        assert!(held.by_holder.is_empty(), "zero counts are removed");
    }

    #[test]
    fn a_first_claim_above_the_cap_leaves_no_entry() {
        let held = HeldUnits::default();
        let small = cap(HolderKind::Customer, "c-2", 2);
        assert!(held.claim(std::slice::from_ref(&small), 3).is_err());
        assert!(held.by_holder.is_empty());
        assert!(held.claim(std::slice::from_ref(&small), u64::MAX).is_err());
    }
}
