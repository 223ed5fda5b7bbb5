//! How many policy loads may hold component bytes at once.
//!
//! A component read from a source is up to 64 MiB once expanded, and it is
//! held until it has compiled, which may mean waiting for a compile slot.
//! Without a bound, one namespace creating many autoscalers with large
//! components could make the operator hold all of them at once. A load
//! therefore enters the gate before it reads: at most [`PER_NAMESPACE`]
//! loads of one namespace at a time (the others wait, holding nothing), and
//! at most [`BUDGET_MIB`] of component bytes in the whole operator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::MAX_COMPONENT_BYTES;

/// Loads of one namespace that may hold bytes at once.
pub const PER_NAMESPACE: usize = 2;
/// Component bytes all loads together may hold, in MiB.
pub const BUDGET_MIB: usize = 320;

/// The gate every policy load that reads bytes passes.
pub struct LoadGate {
    namespaces: Mutex<HashMap<String, Arc<Semaphore>>>,
    mebibytes: Arc<Semaphore>,
}

impl Default for LoadGate {
    fn default() -> Self {
        LoadGate {
            namespaces: Mutex::new(HashMap::new()),
            mebibytes: Arc::new(Semaphore::new(BUDGET_MIB)),
        }
    }
}

/// A load's place in the gate; freed when dropped.
pub struct LoadPermit {
    _namespace: OwnedSemaphorePermit,
    bytes: OwnedSemaphorePermit,
}

impl LoadGate {
    /// Waits for a place for one load of `namespace`, sized for the largest component.
    pub async fn enter(&self, namespace: &str) -> LoadPermit {
        let mine = self.semaphore_of(namespace);
        let namespace_permit = mine.acquire_owned().await.expect("never closed");
        let bytes = Arc::clone(&self.mebibytes)
            .acquire_many_owned(mebibytes(MAX_COMPONENT_BYTES as usize))
            .await
            .expect("never closed");
        LoadPermit {
            _namespace: namespace_permit,
            bytes,
        }
    }
}

impl LoadGate {
    /// [`LoadGate::enter`] when `wait`; otherwise a place only if one is free now.
    pub async fn enter_or_not(&self, namespace: &str, wait: bool) -> Option<LoadPermit> {
        if wait {
            return Some(self.enter(namespace).await);
        }
        let mine = self.semaphore_of(namespace);
        let namespace_permit = mine.try_acquire_owned().ok()?;
        let bytes = Arc::clone(&self.mebibytes)
            .try_acquire_many_owned(mebibytes(MAX_COMPONENT_BYTES as usize))
            .ok()?;
        Some(LoadPermit {
            _namespace: namespace_permit,
            bytes,
        })
    }

    fn semaphore_of(&self, namespace: &str) -> Arc<Semaphore> {
        Arc::clone(
            self.namespaces
                .lock()
                .expect("load gate lock")
                .entry(namespace.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_NAMESPACE))),
        )
    }
}

impl LoadPermit {
    /// Gives back what a component of `len` bytes does not need.
    pub fn shrink_to(&mut self, len: usize) {
        let keep = mebibytes(len) as usize;
        if self.bytes.num_permits() > keep {
            let spare = self.bytes.num_permits() - keep;
            drop(self.bytes.split(spare));
        }
    }
}

/// Whole MiB, at least one.
fn mebibytes(len: usize) -> u32 {
    (len.div_ceil(1 << 20)).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_namespace_holds_at_most_its_share() {
        let gate = Arc::new(LoadGate::default());
        let a1 = gate.enter("a").await;
        let _a2 = gate.enter("a").await;
        // A third load of `a` waits; `b` still gets in.
        let waiting = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.enter("a").await })
        };
        let b = tokio::time::timeout(Duration::from_secs(1), gate.enter("b")).await;
        assert!(b.is_ok(), "another namespace is not held back");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third load of `a` waits");
        assert!(
            gate.enter_or_not("a", false).await.is_none(),
            "or, if it will not wait, gets nothing"
        );
        drop(a1);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("it gets in once one of `a`'s loads is done")
            .unwrap();
    }

    #[tokio::test]
    async fn shrinking_frees_the_bytes_budget() {
        let gate = LoadGate::default();
        let mut permit = gate.enter("a").await;
        assert_eq!(gate.mebibytes.available_permits(), BUDGET_MIB - 64);
        permit.shrink_to(3 << 20);
        assert_eq!(gate.mebibytes.available_permits(), BUDGET_MIB - 3);
        drop(permit);
        assert_eq!(gate.mebibytes.available_permits(), BUDGET_MIB);
    }
}
