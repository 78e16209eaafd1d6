//! Live streams a publishable key, and a client address, may hold open at
//! once: a page left open in many tabs, or one client opening streams in a
//! loop, gets 429 `too_many_streams` instead of the server's every slot.
//! The counts live only while streams are open, so the maps hold at most
//! as many entries as there are open streams (`--max-stream-subscribers`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Default)]
struct Open {
    by_key: HashMap<String, usize>,
    by_address: HashMap<IpAddr, usize>,
}

pub struct StreamQuota {
    per_key: usize,
    per_address: usize,
    open: Arc<Mutex<Open>>,
}

/// Which quota is full.
#[derive(Debug, PartialEq, Eq)]
pub enum QuotaFull {
    Key(usize),
    Address(usize),
}

/// One open stream's share of the quota, given back when dropped.
pub struct QuotaShare {
    open: Arc<Mutex<Open>>,
    key: String,
    address: Option<IpAddr>,
}

impl StreamQuota {
    pub fn new(per_key: usize, per_address: usize) -> StreamQuota {
        StreamQuota {
            per_key,
            per_address,
            open: Arc::default(),
        }
    }

    /// A share for one more stream of `key` from `address`, or which
    /// quota is full (nothing taken then).
    pub fn take(&self, key: &str, address: Option<IpAddr>) -> Result<QuotaShare, QuotaFull> {
        let mut open = self.open.lock();
        let of_key = open.by_key.get(key).copied().unwrap_or(0);
        if of_key >= self.per_key {
            return Err(QuotaFull::Key(self.per_key));
        }
        if let Some(address) = address {
            let of_address = open.by_address.get(&address).copied().unwrap_or(0);
            if of_address >= self.per_address {
                return Err(QuotaFull::Address(self.per_address));
            }
            *open.by_address.entry(address).or_default() += 1;
        }
        *open.by_key.entry(key.to_owned()).or_default() += 1;
        Ok(QuotaShare {
            open: Arc::clone(&self.open),
            key: key.to_owned(),
            address,
        })
    }
}

impl Drop for QuotaShare {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.by_key.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.by_key.remove(&self.key);
            }
        }
        if let Some(address) = self.address
            && let Some(count) = open.by_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_bounded_per_key_and_address_and_given_back() {
        let quota = StreamQuota::new(3, 2);
        let home: IpAddr = [192, 0, 2, 1].into();
        let office: IpAddr = [192, 0, 2, 2].into();
        let first = quota.take("k", Some(home)).expect("first");
        let _second = quota.take("k", Some(home)).expect("second");
        assert_eq!(
            quota.take("k", Some(home)).err(),
            Some(QuotaFull::Address(2))
        );
        let _third = quota.take("k", Some(office)).expect("another address");
        assert_eq!(quota.take("k", None).err(), Some(QuotaFull::Key(3)));
        assert!(quota.take("other", Some(office)).is_ok());
        drop(first);
        assert!(
            quota.take("k", Some(home)).is_ok(),
            "a closed stream's share is back"
        );
        assert!(quota.open.lock().by_key.len() <= 2);
    }
}
