//! Idle policy instances kept for the next call of the same tenant, under a
//! memory budget.
//!
//! An instance is only ever handed to a call of the tenant (namespace) it was
//! made for, so guest memory never passes between tenants; a call that failed
//! never returns its instance here (see [`super::Session`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::{Digest, Instance};

/// How much idle guest memory the pool may keep.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Most linear memory all idle instances together may hold, in bytes.
    pub idle_bytes: usize,
    /// Most idle instances kept per tenant and component.
    pub idle_per_key: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            idle_bytes: 128 << 20,
            idle_per_key: 4,
        }
    }
}

type Key = (Arc<str>, Digest);

/// Idle instances by tenant and digest; the least recently returned goes first
/// when the budget is full.
pub(super) struct InstancePool {
    limits: PoolLimits,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// Per key, the idle instances with the sequence number they were returned at.
    by_key: HashMap<Key, Vec<(u64, Instance)>>,
    /// Every idle instance's key by sequence number, oldest first.
    order: BTreeMap<u64, Key>,
    bytes: usize,
    next: u64,
}

impl InstancePool {
    pub(super) fn new(limits: PoolLimits) -> Self {
        InstancePool {
            limits,
            idle: Mutex::new(Idle::default()),
        }
    }

    /// The most recently returned idle instance of `digest` made for `tenant`.
    pub(super) fn take(&self, tenant: &Arc<str>, digest: Digest) -> Option<Instance> {
        let mut idle = self.idle.lock().expect("instance pool lock");
        let key = (Arc::clone(tenant), digest);
        let list = idle.by_key.get_mut(&key)?;
        let (seq, instance) = list.pop()?;
        if list.is_empty() {
            idle.by_key.remove(&key);
        }
        idle.order.remove(&seq);
        idle.bytes -= instance.memory_bytes();
        Some(instance)
    }

    /// Keeps `instance` for `tenant`'s next call, evicting the least recently
    /// returned ones to stay within the budget; an instance larger than the
    /// whole budget is dropped.
    pub(super) fn put(&self, tenant: Arc<str>, instance: Instance) {
        let size = instance.memory_bytes();
        if size > self.limits.idle_bytes || self.limits.idle_per_key == 0 {
            return;
        }
        let key = (tenant, instance.policy().digest());
        // Dropping a store frees its memory: done after the lock is released.
        let mut evicted = Vec::new();
        {
            let mut idle = self.idle.lock().expect("instance pool lock");
            let full = idle
                .by_key
                .get(&key)
                .is_some_and(|l| l.len() >= self.limits.idle_per_key);
            if full {
                evicted.push(idle.remove_oldest_of(&key));
            }
            while idle.bytes + size > self.limits.idle_bytes {
                match idle.order.keys().next().copied() {
                    Some(seq) => {
                        let key = idle.order[&seq].clone();
                        evicted.push(idle.remove_oldest_of(&key));
                    }
                    None => break,
                }
            }
            let seq = idle.next;
            idle.next += 1;
            idle.bytes += size;
            idle.order.insert(seq, key.clone());
            idle.by_key.entry(key).or_default().push((seq, instance));
        }
        drop(evicted);
    }

    /// Idle instances and the linear memory they hold.
    pub(super) fn usage(&self) -> (usize, usize) {
        let idle = self.idle.lock().expect("instance pool lock");
        (idle.order.len(), idle.bytes)
    }
}

impl Idle {
    /// Removes `key`'s least recently returned instance; the key has one.
    fn remove_oldest_of(&mut self, key: &Key) -> Instance {
        let list = self
            .by_key
            .get_mut(key)
            .expect("an indexed key has instances");
        let (seq, instance) = list.remove(0);
        if list.is_empty() {
            self.by_key.remove(key);
        }
        self.order.remove(&seq);
        self.bytes -= instance.memory_bytes();
        instance
    }
}
