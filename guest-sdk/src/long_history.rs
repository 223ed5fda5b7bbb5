//! Each metric's long history: days at a coarse step, for predictors that
//! know the time of day or week. Inside Wasm this is the contract's
//! `long-history` import (a policy exported with `export_history_predictor!`);
//! natively, in a policy's unit tests, it is what [`set_for_tests`] put there.

pub use crate::__bindings::history_predictor::wasm_autoscaler::policy::long_history::CoarseHistory;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE: std::cell::RefCell<Vec<CoarseHistory>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The long history of metric `name`; none when the autoscaler keeps none.
pub fn get(name: &str) -> Option<CoarseHistory> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__bindings::history_predictor::wasm_autoscaler::policy::long_history::get(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    NATIVE.with(|n| n.borrow().iter().find(|h| h.name == name).cloned())
}

/// Natively, makes [`get`] return `history` for its metric on this thread,
/// replacing what was there (or removes metric `name`'s, with `None`).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_for_tests(name: &str, history: Option<CoarseHistory>) {
    NATIVE.with(|n| {
        let mut n = n.borrow_mut();
        n.retain(|h| h.name != name);
        if let Some(h) = history {
            n.push(h);
        }
    });
}
