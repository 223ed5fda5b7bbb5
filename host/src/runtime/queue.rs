//! Compile slots shared fairly between tenants.
//!
//! Compiling is done a few at a time (it takes hundreds of megabytes and
//! every core). Waiting compiles are queued per tenant (the autoscaler's
//! namespace) and a free slot goes to the tenants in turn, so one namespace
//! submitting many large or hostile components delays any other namespace
//! by at most one of its compiles per turn, never by all of them.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// The slots and the tenants waiting for one.
pub(super) struct CompileQueue {
    slots: usize,
    state: Mutex<State>,
    granted_cv: Condvar,
}

#[derive(Default)]
struct State {
    running: usize,
    next_ticket: u64,
    waiting: BTreeMap<String, VecDeque<u64>>,
    /// Tenants with waiting compiles, in the order they get the next slot.
    turn: VecDeque<String>,
    granted: HashSet<u64>,
}

/// A held slot; freed when dropped.
pub(super) struct Slot<'a> {
    queue: &'a CompileQueue,
}

impl CompileQueue {
    /// A queue with `slots` compiles at a time (at least one).
    pub(super) fn new(slots: usize) -> Self {
        CompileQueue {
            slots: slots.max(1),
            state: Mutex::new(State::default()),
            granted_cv: Condvar::new(),
        }
    }

    /// Waits (blocking the thread) for a slot on behalf of `tenant`.
    pub(super) fn acquire(&self, tenant: &str) -> Slot<'_> {
        let mut state = self.state.lock().expect("compile queue lock");
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let queue = state.waiting.entry(tenant.to_string()).or_default();
        queue.push_back(ticket);
        if queue.len() == 1 {
            state.turn.push_back(tenant.to_string());
        }
        self.dispatch(&mut state);
        while !state.granted.remove(&ticket) {
            state = self.granted_cv.wait(state).expect("compile queue lock");
        }
        Slot { queue: self }
    }

    /// Hands free slots to the tenants whose turn it is.
    fn dispatch(&self, state: &mut State) {
        let mut handed = false;
        while state.running < self.slots {
            let Some(tenant) = state.turn.pop_front() else {
                break;
            };
            let queue = state
                .waiting
                .get_mut(&tenant)
                .expect("a tenant in turn waits");
            let ticket = queue.pop_front().expect("a waiting tenant has a ticket");
            if queue.is_empty() {
                state.waiting.remove(&tenant);
            } else {
                state.turn.push_back(tenant);
            }
            state.granted.insert(ticket);
            state.running += 1;
            handed = true;
        }
        if handed {
            self.granted_cv.notify_all();
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.state.lock().expect("compile queue lock");
        state.running -= 1;
        self.queue.dispatch(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_busy_tenant_waits_its_turn_behind_others() {
        let queue = Arc::new(CompileQueue::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the slot while both tenants queue up: "noisy" first, five deep.
        let first = queue.acquire("noisy");
        let mut threads = Vec::new();
        for (i, tenant) in ["noisy", "noisy", "noisy", "noisy", "noisy", "quiet"]
            .into_iter()
            .enumerate()
        {
            let (shared, order) = (Arc::clone(&queue), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let _slot = shared.acquire(tenant);
                order.lock().unwrap().push(tenant);
                std::thread::sleep(Duration::from_millis(5));
            }));
            // Queue in a known order.
            while queue.state.lock().unwrap().next_ticket < i as u64 + 2 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        let order = order.lock().unwrap();
        let quiet = order.iter().position(|t| *t == "quiet").unwrap();
        assert!(
            quiet <= 1,
            "the quiet tenant got a slot after at most one noisy compile: {order:?}"
        );
        assert_eq!(order.len(), 6);
    }
}
