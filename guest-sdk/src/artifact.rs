//! Data packed into the component beside its code (`wasm-autoscaler pack`),
//! such as a model. Inside Wasm this is the contract's `artifact` import
//! (a policy exported with `export_model_predictor!`); natively, in a
//! policy's unit tests, it is what [`set_for_tests`] put there.

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE: std::cell::RefCell<Vec<(String, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes packed under `name`, if any.
pub fn get(name: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__bindings::model_predictor::wasm_autoscaler::policy::artifact::get(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    NATIVE.with(|n| {
        n.borrow()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

/// Natively, makes [`get`] return `bytes` for `name` on this thread (or
/// nothing, with `None`).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_for_tests(name: &str, bytes: Option<Vec<u8>>) {
    NATIVE.with(|n| {
        let mut n = n.borrow_mut();
        n.retain(|(k, _)| k != name);
        if let Some(b) = bytes {
            n.push((name.to_string(), b));
        }
    });
}
